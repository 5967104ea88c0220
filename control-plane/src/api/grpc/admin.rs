//! gRPC `AdminService`: apps (with their Pusher settings), API keys (with
//! or without a Pusher secret), signing-key rotation and console login
//! links (admin).

use herald_proto::Capabilities;
use herald_proto::api::admin_service_server::AdminService;
use herald_proto::api::{self as pb};
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;
use crate::core::Core;
use crate::error::ApiError;
use crate::services::pusher::parse_pusher_app_id;
use crate::services::{AppSpec, PusherPatch};
use crate::store::{ApiKey, App, LimitOverrides, PusherSettings};

pub(super) fn caps_from_pb(caps: &[pb::Capability]) -> Result<Option<Capabilities>, ApiError> {
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
        quota_messages_per_day: Some(l.quota_messages_per_day),
        quota_messages_per_month: Some(l.quota_messages_per_month),
        quota_connections: Some(l.quota_connections),
    }
}

fn pusher_from_pb(p: Option<pb::PusherSettingsUpdate>) -> Result<Option<PusherPatch>, ApiError> {
    p.map(|p| {
        Ok(PusherPatch {
            enabled: p.enabled,
            client_events: p.client_events,
            presence_max_members: p.presence_max_members,
            max_event_bytes: p.max_event_bytes,
            subscription_count: p.subscription_count,
            client_event_rate: p.client_event_rate,
            batch_max: p.batch_max,
            app_id: p.app_id.as_deref().map(|id| parse_pusher_app_id("pusher.app_id", id)).transpose()?,
        })
    })
    .transpose()
}

fn pusher_to_pb(s: &PusherSettings) -> pb::PusherSettings {
    pb::PusherSettings {
        enabled: s.enabled,
        client_events: s.client_events,
        presence_max_members: s.presence_max_members,
        max_event_bytes: s.max_event_bytes,
        subscription_count: s.subscription_count,
        client_event_rate: s.client_event_rate,
        batch_max: s.batch_max,
        app_id: s.app_id.map(|id| id.to_string()).unwrap_or_default(),
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
            quota_messages_per_day: l.quota_messages_per_day,
            quota_messages_per_month: l.quota_messages_per_month,
            quota_connections: l.quota_connections,
        }),
        allowed_origins: app.allowed_origins.clone(),
        created_at_ms: app.created_at_ms,
        pusher: Some(pusher_to_pb(&app.pusher)),
        disabled: app.disabled.as_ref().map(|d| pb::AppDisabled { at_ms: d.at_ms, reason: d.reason.clone() }),
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
        pusher: key.pusher_secret.is_some(),
    }
}

#[tonic::async_trait]
impl AdminService for Grpc {
    async fn create_app(&self, req: Request<pb::CreateAppRequest>) -> Result<GrpcResponse<pb::App>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let spec = AppSpec {
            name: Some(r.name),
            limits: limits_from_pb(r.limits),
            allowed_origins: Some(r.allowed_origins),
            pusher: pusher_from_pb(r.pusher)?,
            disabled: None,
            disabled_reason: None,
        };
        let app = self.core.create_app(&who, r.id.as_deref(), spec).await?;
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
        let (key, secret) = self.core.create_key_with(&who, &r.app_id, &r.name, caps, r.pusher).await?;
        let pusher_secret = key.pusher_secret.clone().unwrap_or_default();
        Ok(GrpcResponse::new(pb::CreateKeyResponse { key: Some(key_to_pb(&key)), secret, pusher_secret }))
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
        let revoked = self.core.revoke_key(&who, &r.app_id, &r.key_id).await?;
        Ok(GrpcResponse::new(pb::RevokeKeyResponse {
            revoked_at_ms: revoked.revoked_at_ms,
            edges_notified: revoked.edges_notified,
        }))
    }

    async fn update_app(&self, req: Request<pb::UpdateAppRequest>) -> Result<GrpcResponse<pb::App>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let limits = r.limits.map_or_else(LimitOverrides::default, |l| LimitOverrides {
            max_connections: l.max_connections,
            max_message_bytes: l.max_message_bytes,
            publish_rate_per_sec: l.publish_rate_per_sec,
            quota_messages_per_day: l.quota_messages_per_day,
            quota_messages_per_month: l.quota_messages_per_month,
            quota_connections: l.quota_connections,
        });
        let spec = AppSpec {
            name: r.name,
            limits,
            allowed_origins: r.allowed_origins.map(|o| o.origins),
            pusher: pusher_from_pb(r.pusher)?,
            disabled: r.disabled,
            disabled_reason: r.disabled_reason,
        };
        let app = self.core.update_app(&who, &r.app_id, spec).await?;
        Ok(GrpcResponse::new(app_to_pb(&self.core, &app)))
    }

    async fn rotate_signing_keys(
        &self,
        req: Request<pb::RotateSigningKeysRequest>,
    ) -> Result<GrpcResponse<pb::RotateSigningKeysResponse>, Status> {
        let who = self.caller(&req).await?;
        let rotation = self.core.rotate_signing_keys(&who, req.get_ref().overlap_seconds).await?;
        Ok(GrpcResponse::new(pb::RotateSigningKeysResponse {
            kid: rotation.kid,
            previous_kid: rotation.previous_kid,
            previous_expires_at_ms: rotation.previous_expires_at.map(|s| s.saturating_mul(1000)),
        }))
    }

    async fn create_console_link(
        &self,
        req: Request<pb::CreateConsoleLinkRequest>,
    ) -> Result<GrpcResponse<pb::CreateConsoleLinkResponse>, Status> {
        let who = self.caller(&req).await?;
        let link = self.core.create_console_link(&who).await?;
        Ok(GrpcResponse::new(pb::CreateConsoleLinkResponse { path: link.path, expires_at_ms: link.expires_at_ms }))
    }
}
