//! The gRPC API (tonic): `herald.api.v1.AdminService`, `TokenService`,
//! `PublishService`, `UserService`, `NamespaceService`, `ChannelService`,
//! `PresenceService`, `WebhookService`, `StatsService` and `DebugService` (a
//! server stream), with server reflection
//! (`grpc.reflection.v1` and `v1alpha`) and the standard health service
//! (`grpc.health.v1`), on the REST port (h2c).
//!
//! Request messages are bounded in size by `max_body_size` and in time
//! by the body limits of REST ([`deadline`]): a call whose request stalls
//! ends with `DEADLINE_EXCEEDED` (`request_timeout`).
//!
//! Credentials travel in the `authorization` metadata entry, exactly like
//! the REST header (`Bearer <admin token>` or `Bearer <API key>`). Errors are
//! the same [`ApiError`](crate::error::ApiError)s as REST, as a status with
//! the mapped gRPC code and the error code's name in `herald-error-code`.
//! Each service's module only translates messages: the checks live in
//! [`crate::services`].

mod admin;
mod channels;
mod deadline;
mod debug;
pub mod health;
mod namespaces;
mod presence;
mod publish;
mod stats;
mod tokens;
mod users;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use herald_proto::api::admin_service_server::AdminServiceServer;
use herald_proto::api::channel_service_server::ChannelServiceServer;
use herald_proto::api::debug_service_server::DebugServiceServer;
use herald_proto::api::namespace_service_server::NamespaceServiceServer;
use herald_proto::api::presence_service_server::PresenceServiceServer;
use herald_proto::api::publish_service_server::PublishServiceServer;
use herald_proto::api::stats_service_server::StatsServiceServer;
use herald_proto::api::token_service_server::TokenServiceServer;
use herald_proto::api::user_service_server::UserServiceServer;
use herald_proto::api::webhook_service_server::WebhookServiceServer;
use tonic::server::NamedService;
use tonic::{Request, Status};
use tonic_health::pb::health_server::HealthServer;
use tonic_reflection::pb::{v1 as reflection_v1, v1alpha as reflection_v1alpha};

use crate::auth::Principal;
use crate::core::Core;

/// The gRPC services over the shared core.
#[derive(Clone)]
pub struct Grpc {
    core: Arc<Core>,
}

/// The full names of the API's services (what reflection lists and health
/// answers for, besides `""`).
pub const SERVICES: [&str; 10] = [
    <AdminServiceServer<Grpc> as NamedService>::NAME,
    <TokenServiceServer<Grpc> as NamedService>::NAME,
    <PublishServiceServer<Grpc> as NamedService>::NAME,
    <NamespaceServiceServer<Grpc> as NamedService>::NAME,
    <ChannelServiceServer<Grpc> as NamedService>::NAME,
    <PresenceServiceServer<Grpc> as NamedService>::NAME,
    <UserServiceServer<Grpc> as NamedService>::NAME,
    <WebhookServiceServer<Grpc> as NamedService>::NAME,
    <StatsServiceServer<Grpc> as NamedService>::NAME,
    <DebugServiceServer<Grpc> as NamedService>::NAME,
];

fn path(service: &str) -> String {
    format!("/{service}/{{*method}}")
}

/// The reflection service's source: Herald's schemas and the health
/// service's.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(herald_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Adds the gRPC services, reflection and health to `router`, each under
/// `/<package.Service>/…`.
pub fn add_services(router: Router, core: Arc<Core>) -> Router {
    // Every service bounds the messages it reads (by their length prefix,
    // before buffering one) and writes.
    let max = core.config.max_body_size.as_usize();
    let out = core.config.grpc_max_response_size.as_usize();
    // ... and reads them in time (see [`deadline`]).
    let bounds = deadline::Bounds::new(&core.config);
    let svc = Grpc { core: core.clone() };
    macro_rules! bounded {
        ($server:expr) => {
            tower::util::MapRequest::new(
                $server.max_decoding_message_size(max).max_encoding_message_size(out),
                move |req: axum::extract::Request| bounds.apply(req),
            )
        };
    }
    let admin = bounded!(AdminServiceServer::new(svc.clone()));
    let token = bounded!(TokenServiceServer::new(svc.clone()));
    let publish = bounded!(PublishServiceServer::new(svc.clone()));
    let namespaces = bounded!(NamespaceServiceServer::new(svc.clone()));
    let channels = bounded!(ChannelServiceServer::new(svc.clone()));
    let presence = bounded!(PresenceServiceServer::new(svc.clone()));
    let users = bounded!(UserServiceServer::new(svc.clone()));
    let webhooks = bounded!(WebhookServiceServer::new(svc.clone()));
    let stats = bounded!(StatsServiceServer::new(svc.clone()));
    let debug = bounded!(DebugServiceServer::new(svc));
    let health = bounded!(HealthServer::new(health::Health::new(core)));
    let mut router = router
        .route_service(&path(SERVICES[0]), admin)
        .route_service(&path(SERVICES[1]), token)
        .route_service(&path(SERVICES[2]), publish)
        .route_service(&path(SERVICES[3]), namespaces)
        .route_service(&path(SERVICES[4]), channels)
        .route_service(&path(SERVICES[5]), presence)
        .route_service(&path(SERVICES[6]), users)
        .route_service(&path(SERVICES[7]), webhooks)
        .route_service(&path(SERVICES[8]), stats)
        .route_service(&path(SERVICES[9]), debug)
        .route_service(&path(health::SERVICE), health);
    // The descriptor sets are built into the binary: a failure here is a
    // build defect, which the tests catch; serving goes on without
    // reflection.
    match reflection().build_v1() {
        Ok(v1) => {
            let v1 = bounded!(v1);
            router = router.route_service(&path(reflection_v1::server_reflection_server::SERVICE_NAME), v1);
        }
        Err(e) => tracing::error!(error = %e, "grpc reflection v1 not served"),
    }
    match reflection().build_v1alpha() {
        Ok(v1alpha) => {
            let v1alpha = bounded!(v1alpha);
            router = router.route_service(&path(reflection_v1alpha::server_reflection_server::SERVICE_NAME), v1alpha);
        }
        Err(e) => tracing::error!(error = %e, "grpc reflection v1alpha not served"),
    }
    router
}

/// Whether a request is a gRPC call.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The answer to a call of an unknown gRPC service.
pub(crate) fn unimplemented() -> Response {
    Status::unimplemented("no such gRPC service on this server").into_http::<axum::body::Body>().into_response()
}

impl Grpc {
    /// The caller, from the `authorization` metadata entry.
    async fn caller<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let value = req.metadata().get("authorization").map(|v| v.as_bytes());
        Ok(self.core.auth.authenticate_raw(value).await?)
    }
}
