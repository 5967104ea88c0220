//! The gRPC API (tonic): `herald.api.v1.AdminService`, `TokenService`,
//! `PublishService`, `NamespaceService`, `ChannelService` and
//! `PresenceService`, on the REST port (h2c).
//!
//! Credentials travel in the `authorization` metadata entry, exactly like
//! the REST header (`Bearer <admin token>` or `Bearer <API key>`). Errors are
//! the same [`ApiError`]s as REST, as a status with the mapped gRPC code and
//! the error code's name in `herald-error-code`. `PublishStream` publishes
//! messages as they arrive, up to `max_publishes_in_flight` at once, and
//! answers with every result when the stream ends.

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use herald_proto::api::admin_service_server::{AdminService, AdminServiceServer};
use herald_proto::api::channel_service_server::{ChannelService, ChannelServiceServer};
use herald_proto::api::namespace_service_server::{NamespaceService, NamespaceServiceServer};
use herald_proto::api::presence_service_server::{PresenceService, PresenceServiceServer};
use herald_proto::api::publish_service_server::{PublishService, PublishServiceServer};
use herald_proto::api::token_service_server::{TokenService, TokenServiceServer};
use herald_proto::api::{self as pb, publish_result};
use herald_proto::{Capabilities, bus};
use tonic::server::NamedService;
use tonic::{Request, Response as GrpcResponse, Status, Streaming};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::publish::Published;
use crate::publish::{InOrder, channel_key};
use crate::service::{AppSpec, Core};
use crate::store::{ApiKey, App, LimitOverrides, Namespace};

/// The gRPC services over the shared core.
#[derive(Clone)]
pub struct Grpc {
    core: Arc<Core>,
}

/// Adds the gRPC services to `router`, each under `/<package.Service>/…`.
pub fn add_services(router: Router, core: Arc<Core>) -> Router {
    let max = core.config.max_body_size.as_usize();
    let svc = Grpc { core };
    let admin = AdminServiceServer::new(svc.clone()).max_decoding_message_size(max);
    let token = TokenServiceServer::new(svc.clone()).max_decoding_message_size(max);
    let publish = PublishServiceServer::new(svc.clone()).max_decoding_message_size(max);
    let namespaces = NamespaceServiceServer::new(svc.clone()).max_decoding_message_size(max);
    let channels = ChannelServiceServer::new(svc.clone()).max_decoding_message_size(max);
    let presence = PresenceServiceServer::new(svc).max_decoding_message_size(max);
    router
        .route_service(&format!("/{}/{{*method}}", <AdminServiceServer<Grpc> as NamedService>::NAME), admin)
        .route_service(&format!("/{}/{{*method}}", <TokenServiceServer<Grpc> as NamedService>::NAME), token)
        .route_service(&format!("/{}/{{*method}}", <PublishServiceServer<Grpc> as NamedService>::NAME), publish)
        .route_service(&format!("/{}/{{*method}}", <NamespaceServiceServer<Grpc> as NamedService>::NAME), namespaces)
        .route_service(&format!("/{}/{{*method}}", <ChannelServiceServer<Grpc> as NamedService>::NAME), channels)
        .route_service(&format!("/{}/{{*method}}", <PresenceServiceServer<Grpc> as NamedService>::NAME), presence)
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
    async fn caller<T>(&self, req: &Request<T>) -> Result<Principal, Status> {
        let value = match req.metadata().get("authorization") {
            Some(v) => Some(v.to_str().map_err(|_| Status::from(ApiError::unauthorized("malformed authorization")))?),
            None => None,
        };
        Ok(self.core.auth.authenticate(value).await?)
    }

    async fn publish_one(&self, who: &Principal, m: pb::PublishRequest) -> Result<pb::PublishResponse, ApiError> {
        let (app, key, limits) = self.core.publish_context(who, &m.app_id).await?;
        let channels: Vec<&str> = match (m.channel.is_empty(), m.channels.is_empty()) {
            (false, true) => vec![m.channel.as_str()],
            (true, false) => m.channels.iter().map(String::as_str).collect(),
            (false, false) => return Err(ApiError::bad_request("give `channel` or `channels`, not both")),
            (true, true) => return Err(ApiError::bad_request("give `channel` or `channels`")),
        };
        let msg = self.core.prepare(key, &limits, &channels, m.data, m.event, m.idempotency_id)?;
        let published = self.core.publish_one(&app, &limits, msg).await?;
        Ok(publish_response(published))
    }
}

fn publish_response(p: Published) -> pb::PublishResponse {
    match (p.channels, p.positions.as_slice()) {
        (1, [(_, pos)]) => pb::PublishResponse {
            id: p.id,
            seq: Some(pos.seq),
            position: Some(pb::HistoryPosition { seq: pos.seq, epoch: pos.epoch.clone() }),
            positions: Vec::new(),
        },
        _ => pb::PublishResponse {
            id: p.id,
            seq: None,
            position: None,
            positions: p
                .positions
                .into_iter()
                .map(|(c, pos)| pb::ChannelPosition { channel: c.to_string(), seq: pos.seq, epoch: pos.epoch })
                .collect(),
        },
    }
}

fn options_from_pb(o: Option<pb::NamespaceOptions>) -> bus::NamespaceOptions {
    let o = o.unwrap_or_default();
    bus::NamespaceOptions {
        presence: o.presence,
        join_leave: o.join_leave,
        client_publish: o.client_publish.unwrap_or(true),
        history_size: o.history_size,
        history_ttl_ms: o.history_ttl_ms,
    }
}

fn namespace_to_pb(ns: &Namespace) -> pb::Namespace {
    let o = &ns.options;
    pb::Namespace {
        name: ns.name.to_string(),
        options: Some(pb::NamespaceOptions {
            presence: o.presence,
            join_leave: o.join_leave,
            client_publish: Some(o.client_publish),
            history_size: o.history_size,
            history_ttl_ms: o.history_ttl_ms,
        }),
        created_at_ms: ns.created_at_ms,
        updated_at_ms: ns.updated_at_ms,
    }
}

/// The channels a request publishes to, as ordering keys.
fn order_keys(m: &pb::PublishRequest) -> Vec<String> {
    let mut keys: Vec<String> = m.channels.iter().map(|c| channel_key(&m.app_id, c)).collect();
    if !m.channel.is_empty() {
        keys.push(channel_key(&m.app_id, &m.channel));
    }
    keys
}

fn result(r: Result<pb::PublishResponse, ApiError>) -> pb::PublishResult {
    pb::PublishResult {
        result: Some(match r {
            Ok(ok) => publish_result::Result::Ok(ok),
            Err(e) => publish_result::Result::Error(pb::ApiError {
                code: e.code.name().to_owned(),
                message: e.message.into_owned(),
            }),
        }),
    }
}

fn caps_from_pb(caps: &[pb::Capability]) -> Result<Option<Capabilities>, ApiError> {
    if caps.is_empty() {
        return Ok(None);
    }
    Capabilities::from_pairs(caps.iter().map(|c| (c.pattern.as_str(), c.operations.iter().map(String::as_str))))
        .map(Some)
        .map_err(|e| ApiError::bad_request(format!("`capabilities`: {e}")))
}

fn caps_to_pb(caps: &Capabilities) -> Vec<pb::Capability> {
    caps.iter()
        .map(|(pattern, ops)| pb::Capability {
            pattern: pattern.to_string(),
            operations: ops.iter().map(|o| o.as_str().to_owned()).collect(),
        })
        .collect()
}

fn limits_from_pb(l: Option<pb::AppLimits>) -> LimitOverrides {
    let l = l.unwrap_or_default();
    LimitOverrides {
        max_connections: Some(l.max_connections),
        max_message_bytes: Some(l.max_message_bytes),
        publish_rate_per_sec: Some(l.publish_rate_per_sec),
    }
}

fn app_to_pb(core: &Core, app: &App) -> pb::App {
    let l = core.effective_limits(app);
    pb::App {
        id: app.id.to_string(),
        name: app.name.clone(),
        limits: Some(pb::AppLimits {
            max_connections: l.max_connections,
            max_message_bytes: l.max_message_bytes,
            publish_rate_per_sec: l.publish_rate_per_sec,
        }),
        allowed_origins: app.allowed_origins.clone(),
        created_at_ms: app.created_at_ms,
    }
}

fn key_to_pb(key: &ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        id: key.id.to_string(),
        app_id: key.app_id.to_string(),
        name: key.name.clone(),
        capabilities: caps_to_pb(&key.capabilities),
        created_at_ms: key.created_at_ms,
        revoked_at_ms: key.revoked_at_ms.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl AdminService for Grpc {
    async fn create_app(&self, req: Request<pb::CreateAppRequest>) -> Result<GrpcResponse<pb::App>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let spec =
            AppSpec { name: Some(r.name), limits: limits_from_pb(r.limits), allowed_origins: Some(r.allowed_origins) };
        let app = self.core.create_app(&who, None, spec).await?;
        Ok(GrpcResponse::new(app_to_pb(&self.core, &app)))
    }

    async fn list_apps(&self, req: Request<pb::ListAppsRequest>) -> Result<GrpcResponse<pb::ListAppsResponse>, Status> {
        let who = self.caller(&req).await?;
        let apps = self.core.list_apps(&who).await?;
        Ok(GrpcResponse::new(pb::ListAppsResponse { apps: apps.iter().map(|a| app_to_pb(&self.core, a)).collect() }))
    }

    async fn get_app(&self, req: Request<pb::GetAppRequest>) -> Result<GrpcResponse<pb::App>, Status> {
        let who = self.caller(&req).await?;
        let app = self.core.get_app(&who, &req.get_ref().app_id).await?;
        Ok(GrpcResponse::new(app_to_pb(&self.core, &app)))
    }

    async fn delete_app(
        &self,
        req: Request<pb::DeleteAppRequest>,
    ) -> Result<GrpcResponse<pb::DeleteAppResponse>, Status> {
        let who = self.caller(&req).await?;
        self.core.delete_app(&who, &req.get_ref().app_id).await?;
        Ok(GrpcResponse::new(pb::DeleteAppResponse {}))
    }

    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<GrpcResponse<pb::CreateKeyResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let caps = caps_from_pb(&r.capabilities)?;
        let (key, secret) = self.core.create_key(&who, &r.app_id, &r.name, caps).await?;
        Ok(GrpcResponse::new(pb::CreateKeyResponse { key: Some(key_to_pb(&key)), secret }))
    }

    async fn list_keys(&self, req: Request<pb::ListKeysRequest>) -> Result<GrpcResponse<pb::ListKeysResponse>, Status> {
        let who = self.caller(&req).await?;
        let keys = self.core.list_keys(&who, &req.get_ref().app_id).await?;
        Ok(GrpcResponse::new(pb::ListKeysResponse { keys: keys.iter().map(key_to_pb).collect() }))
    }

    async fn revoke_key(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Result<GrpcResponse<pb::RevokeKeyResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        self.core.revoke_key(&who, &r.app_id, &r.key_id).await?;
        Ok(GrpcResponse::new(pb::RevokeKeyResponse {}))
    }
}

#[tonic::async_trait]
impl TokenService for Grpc {
    async fn mint_token(
        &self,
        req: Request<pb::MintTokenRequest>,
    ) -> Result<GrpcResponse<pb::MintTokenResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let caps = caps_from_pb(&r.capabilities)?;
        let ttl = (r.ttl_seconds != 0).then_some(u64::from(r.ttl_seconds));
        let info = if r.info.is_empty() {
            None
        } else {
            Some(
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&r.info)
                    .map_err(|e| ApiError::bad_request(format!("`info` must be a JSON object: {e}")))?,
            )
        };
        let (token, expires_at) = self.core.mint_token(&who, &r.app_id, &r.client_id, caps, ttl, info).await?;
        Ok(GrpcResponse::new(pb::MintTokenResponse { token, expires_at_ms: expires_at.saturating_mul(1000) }))
    }
}

#[tonic::async_trait]
impl PublishService for Grpc {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Result<GrpcResponse<pb::PublishResponse>, Status> {
        let who = self.caller(&req).await?;
        Ok(GrpcResponse::new(self.publish_one(&who, req.into_inner()).await?))
    }

    async fn publish_batch(
        &self,
        req: Request<pb::PublishBatchRequest>,
    ) -> Result<GrpcResponse<pb::PublishBatchResponse>, Status> {
        let who = self.caller(&req).await?;
        let messages = req.into_inner().messages;
        let max = self.core.config.max_batch_messages;
        if messages.is_empty() {
            return Err(ApiError::bad_request("`messages` is empty").into());
        }
        if messages.len() > max {
            return Err(ApiError::limit_exceeded(format!(
                "{} messages in the batch; the limit is {max}",
                messages.len()
            ))
            .into());
        }
        let mut results = Vec::with_capacity(messages.len());
        let mut in_order = InOrder::new(self.core.config.max_publishes_in_flight);
        for m in messages {
            in_order.push(order_keys(&m), self.publish_one(&who, m), &mut results).await;
        }
        in_order.drain(&mut results).await;
        let results = results.into_iter().map(result).collect();
        Ok(GrpcResponse::new(pb::PublishBatchResponse { results }))
    }

    async fn publish_stream(
        &self,
        req: Request<Streaming<pb::PublishRequest>>,
    ) -> Result<GrpcResponse<pb::PublishBatchResponse>, Status> {
        let who = self.caller(&req).await?;
        let mut stream = req.into_inner();
        let max = self.core.config.max_stream_messages;
        let in_flight = self.core.config.max_publishes_in_flight;
        let mut in_order = InOrder::new(in_flight);
        let mut results = Vec::new();
        let mut count = 0usize;
        let mut open = true;
        while open || !in_order.is_empty() {
            tokio::select! {
                Some(r) = in_order.next(), if !in_order.is_empty() => results.push(r),
                next = stream.next(), if open => match next {
                    Some(Ok(m)) => {
                        count += 1;
                        if count > max {
                            open = false;
                            in_order.drain(&mut results).await;
                            results.push(Err(ApiError::limit_exceeded(format!(
                                "the stream carried more than {max} messages; the rest were not read"
                            ))));
                        } else {
                            in_order.push(order_keys(&m), self.publish_one(&who, m), &mut results).await;
                        }
                    }
                    Some(Err(status)) => return Err(status),
                    None => open = false,
                },
            }
        }
        let results = results.into_iter().map(result).collect();
        Ok(GrpcResponse::new(pb::PublishBatchResponse { results }))
    }
}

#[tonic::async_trait]
impl NamespaceService for Grpc {
    async fn put_namespace(
        &self,
        req: Request<pb::PutNamespaceRequest>,
    ) -> Result<GrpcResponse<pb::PutNamespaceResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let (ns, created) = self.core.put_namespace(&who, &r.app_id, &r.name, options_from_pb(r.options)).await?;
        Ok(GrpcResponse::new(pb::PutNamespaceResponse { namespace: Some(namespace_to_pb(&ns)), created }))
    }

    async fn get_namespace(
        &self,
        req: Request<pb::GetNamespaceRequest>,
    ) -> Result<GrpcResponse<pb::Namespace>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let ns = self.core.get_namespace(&who, &r.app_id, &r.name).await?;
        Ok(GrpcResponse::new(namespace_to_pb(&ns)))
    }

    async fn list_namespaces(
        &self,
        req: Request<pb::ListNamespacesRequest>,
    ) -> Result<GrpcResponse<pb::ListNamespacesResponse>, Status> {
        let who = self.caller(&req).await?;
        let list = self.core.list_namespaces(&who, &req.get_ref().app_id).await?;
        Ok(GrpcResponse::new(pb::ListNamespacesResponse { namespaces: list.iter().map(namespace_to_pb).collect() }))
    }

    async fn delete_namespace(
        &self,
        req: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<GrpcResponse<pb::DeleteNamespaceResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        self.core.delete_namespace(&who, &r.app_id, &r.name).await?;
        Ok(GrpcResponse::new(pb::DeleteNamespaceResponse {}))
    }
}

#[tonic::async_trait]
impl ChannelService for Grpc {
    async fn list_channels(
        &self,
        req: Request<pb::ListChannelsRequest>,
    ) -> Result<GrpcResponse<pb::ListChannelsResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let prefix = (!r.prefix.is_empty()).then_some(r.prefix.as_str());
        let occupancy = self.core.occupied_channels(&who, &r.app_id, prefix).await?;
        Ok(GrpcResponse::new(pb::ListChannelsResponse {
            truncated: occupancy.truncated,
            channels: occupancy
                .channels
                .into_iter()
                .map(|(name, subscribers)| pb::ChannelInfo { name: name.to_string(), subscribers })
                .collect(),
        }))
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<GrpcResponse<pb::GetHistoryResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let limit = (r.limit != 0).then_some(r.limit as usize);
        let epoch = (!r.epoch.is_empty()).then_some(r.epoch.as_str());
        let h = self.core.history(&who, &r.app_id, &r.channel, r.since, limit, epoch).await?;
        Ok(GrpcResponse::new(pb::GetHistoryResponse {
            channel: h.channel.to_string(),
            epoch: h.epoch,
            messages: h
                .messages
                .into_iter()
                .map(|m| pb::HistoryMessage {
                    seq: m.seq,
                    data: m.message.data,
                    event: m.message.event,
                    id: m.message.id,
                    publisher: m.message.publisher,
                    timestamp_ms: m.message.timestamp_ms,
                })
                .collect(),
            complete: h.complete,
            last_seq: h.last_seq,
        }))
    }
}

#[tonic::async_trait]
impl PresenceService for Grpc {
    async fn get_presence(
        &self,
        req: Request<pb::GetPresenceRequest>,
    ) -> Result<GrpcResponse<pb::GetPresenceResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let after = Some(r.after.as_str()).filter(|a| !a.is_empty());
        let limit = (r.limit > 0).then_some(r.limit as usize);
        let p = self.core.presence(&who, &r.app_id, &r.channel, after, limit).await?;
        Ok(GrpcResponse::new(pb::GetPresenceResponse {
            channel: p.channel.to_string(),
            count: u32::try_from(p.total).unwrap_or(u32::MAX),
            next: p.next.unwrap_or_default(),
            members: p
                .members
                .into_iter()
                .map(|m| pb::PresenceMember { client_id: m.client_id, connections: m.connections, info: m.info })
                .collect(),
        }))
    }
}
