//! The APIs: [`rest`] (axum), [`grpc`] (tonic) and [`pusher`] (Pusher's
//! HTTP API, for apps in Pusher mode), served together on one port.
//! HTTP/1.1 and h2c requests go to the REST routes (`/v1/…`, operations)
//! and the Pusher routes (`/apps/{app_id}/…`); requests with
//! `content-type: application/grpc` on a `/herald.api.v1.<Service>/<Method>`
//! path go to the gRPC services. [`observe`] gives every request an id, a
//! count and latency in the metrics, and an access-log line.

pub mod grpc;
pub mod observe;
pub mod pusher;
pub mod rest;
pub mod strict_json;

use std::sync::Arc;

use axum::Router;

use crate::core::Core;

/// The router serving the three APIs, every request observed
/// ([`observe`]: request id, metrics, access log).
pub fn router(core: Arc<Core>) -> Router {
    grpc::add_services(rest::router(core.clone()).merge(pusher::router(core.clone())), core.clone())
        .route_layer(axum::middleware::from_fn(observe::mark_route))
        .layer(axum::middleware::from_fn(tag_source))
        .layer(axum::middleware::from_fn_with_state(core, observe::observe))
}

/// Runs each request as coming through its API, which the debug events
/// of its publishes name (`crate::debug_tap::source`).
async fn tag_source(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let source = if grpc::is_grpc(req.headers()) {
        "grpc"
    } else if req.uri().path().starts_with("/apps/") {
        "pusher_http"
    } else {
        "rest"
    };
    crate::debug_tap::with_source(source, next.run(req)).await
}
