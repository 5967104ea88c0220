//! gRPC `WebhookService`: the webhook endpoints of apps (admin).

use herald_proto::api::webhook_service_server::WebhookService;
use herald_proto::api::{self as pb, webhook_filter};
use tonic::{Request, Response as GrpcResponse, Status};

use super::Grpc;
use crate::services::{FilterSpec, WebhookPatch, WebhookSpec};
use crate::store::{ChannelFilter, Webhook};

/// A filter as given: `None` when no kind is set (every channel).
fn filter_from_pb(f: pb::WebhookFilter) -> Option<FilterSpec> {
    match f.kind? {
        webhook_filter::Kind::Prefix(p) => Some(FilterSpec { prefix: Some(p), namespace: None }),
        webhook_filter::Kind::Namespace(ns) => Some(FilterSpec { prefix: None, namespace: Some(ns) }),
    }
}

fn filter_to_pb(f: &ChannelFilter) -> pb::WebhookFilter {
    let kind = match f {
        ChannelFilter::Prefix(p) => webhook_filter::Kind::Prefix(p.clone()),
        ChannelFilter::Namespace(ns) => webhook_filter::Kind::Namespace(ns.to_string()),
    };
    pb::WebhookFilter { kind: Some(kind) }
}

/// An endpoint without its secret, at `now_ms` (a previous secret past its
/// time is not shown).
fn webhook_to_pb(hook: &Webhook, now_ms: i64) -> pb::Webhook {
    pb::Webhook {
        id: hook.id.clone(),
        app_id: hook.app_id.to_string(),
        url: hook.url.clone(),
        events: hook.events.iter().map(|k| k.as_str().to_owned()).collect(),
        format: hook.format.as_str().to_owned(),
        filter: hook.filter.as_ref().map(filter_to_pb),
        status: hook.status.as_str().to_owned(),
        status_reason: hook.status_reason.clone(),
        failing_since_ms: hook.failing_since_ms,
        dropped: hook.dropped,
        created_at_ms: hook.created_at_ms,
        updated_at_ms: hook.updated_at_ms,
        previous_secret_expires_at_ms: hook.previous_secret_until(now_ms),
    }
}

fn with_secret(hook: &Webhook) -> pb::WebhookWithSecret {
    pb::WebhookWithSecret { webhook: Some(webhook_to_pb(hook, herald_bus::now_ms())), secret: hook.secret.clone() }
}

#[tonic::async_trait]
impl WebhookService for Grpc {
    async fn create_webhook(
        &self,
        req: Request<pb::CreateWebhookRequest>,
    ) -> Result<GrpcResponse<pb::WebhookWithSecret>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let spec = WebhookSpec {
            url: r.url,
            events: r.events,
            format: Some(r.format).filter(|f| !f.is_empty()),
            filter: r.filter.and_then(filter_from_pb),
        };
        let hook = self.core.create_webhook(&who, &r.app_id, spec).await?;
        Ok(GrpcResponse::new(with_secret(&hook)))
    }

    async fn list_webhooks(
        &self,
        req: Request<pb::ListWebhooksRequest>,
    ) -> Result<GrpcResponse<pb::ListWebhooksResponse>, Status> {
        let who = self.caller(&req).await?;
        let list = self.core.list_webhooks(&who, &req.get_ref().app_id).await?;
        let now = herald_bus::now_ms();
        Ok(GrpcResponse::new(pb::ListWebhooksResponse {
            webhooks: list.iter().map(|h| webhook_to_pb(h, now)).collect(),
        }))
    }

    async fn get_webhook(&self, req: Request<pb::GetWebhookRequest>) -> Result<GrpcResponse<pb::Webhook>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let hook = self.core.get_webhook(&who, &r.app_id, &r.webhook_id).await?;
        Ok(GrpcResponse::new(webhook_to_pb(&hook, herald_bus::now_ms())))
    }

    async fn update_webhook(
        &self,
        req: Request<pb::UpdateWebhookRequest>,
    ) -> Result<GrpcResponse<pb::Webhook>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let patch = WebhookPatch {
            url: r.url,
            events: r.events.map(|e| e.events),
            format: r.format,
            filter: r.filter.map(filter_from_pb),
            enabled: r.enabled,
        };
        let hook = self.core.update_webhook(&who, &r.app_id, &r.webhook_id, patch).await?;
        Ok(GrpcResponse::new(webhook_to_pb(&hook, herald_bus::now_ms())))
    }

    async fn delete_webhook(
        &self,
        req: Request<pb::DeleteWebhookRequest>,
    ) -> Result<GrpcResponse<pb::DeleteWebhookResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        self.core.delete_webhook(&who, &r.app_id, &r.webhook_id).await?;
        Ok(GrpcResponse::new(pb::DeleteWebhookResponse {}))
    }

    async fn rotate_webhook_secret(
        &self,
        req: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<GrpcResponse<pb::WebhookWithSecret>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let hook = self.core.rotate_webhook_secret(&who, &r.app_id, &r.webhook_id, r.overlap_seconds).await?;
        Ok(GrpcResponse::new(with_secret(&hook)))
    }

    async fn test_webhook(
        &self,
        req: Request<pb::TestWebhookRequest>,
    ) -> Result<GrpcResponse<pb::TestWebhookResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let t = self.core.test_webhook(&who, &r.app_id, &r.webhook_id).await?;
        Ok(GrpcResponse::new(pb::TestWebhookResponse {
            event_id: t.event_id,
            status: t.status.map(u32::from),
            latency_ms: u64::try_from(t.latency_ms).unwrap_or(0),
            error: t.error,
        }))
    }

    async fn list_webhook_deliveries(
        &self,
        req: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<GrpcResponse<pb::ListWebhookDeliveriesResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.get_ref();
        let list = self.core.webhook_deliveries(&who, &r.app_id, &r.webhook_id, r.limit.map(u64::from)).await?;
        let deliveries = list
            .into_iter()
            .map(|a| pb::WebhookDelivery {
                event_id: a.event_id,
                r#type: a.kind,
                channel: a.channel,
                attempt: u32::try_from(a.attempt).unwrap_or(u32::MAX),
                at_ms: a.at_ms,
                status: a.status.map(u32::from),
                latency_ms: u64::try_from(a.latency_ms).unwrap_or(0),
                error: a.error,
                outcome: a.outcome,
            })
            .collect();
        Ok(GrpcResponse::new(pb::ListWebhookDeliveriesResponse { deliveries }))
    }
}
