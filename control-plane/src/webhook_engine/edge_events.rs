//! Stores what edges report for webhooks (client events, cache misses),
//! turned into an event of the outbox for the app's endpoints
//! that want it, under the id the edge gave it (a resend queues nothing
//! twice).

use std::sync::Weak;

use futures_util::future::BoxFuture;
use herald_bus::now_ms;
use herald_proto::webhook::EventKind;
use herald_proto::{AppId, ChannelName, bus};

use crate::core::Core;
use crate::store::EventDraft;

/// Answers edges' webhook reports (holds the core weakly).
pub(crate) struct Sink(pub(crate) Weak<Core>);

impl herald_bus::WebhookEventSink for Sink {
    fn store(&self, app: AppId, event: bus::WebhookEvent) -> BoxFuture<'static, Result<(), String>> {
        let core = self.0.clone();
        Box::pin(async move {
            let core = core.upgrade().ok_or_else(|| "the control plane is shutting down".to_owned())?;
            store(&core, &app, event).await
        })
    }
}

/// Stores one reported event (the bus checked it:
/// [`herald_bus::webhook_events::check`]).
async fn store(core: &Core, app: &AppId, event: bus::WebhookEvent) -> Result<(), String> {
    let kind: EventKind = event.kind.parse().map_err(|e: herald_proto::webhook::UnknownEventKind| e.to_string())?;
    let channel = ChannelName::new(&event.channel).map_err(|e| format!("channel: {e}"))?;
    let targets = core.webhooks.targets(app, kind, channel.as_str());
    if targets.is_empty() {
        return Ok(());
    }
    let data = match kind {
        EventKind::ClientEvent => serde_json::json!({
            "event": event.event,
            "data": String::from_utf8_lossy(&event.data),
            "connection_id": event.connection_id,
            "user_id": event.user_id,
        }),
        _ => serde_json::json!({ "connection_id": event.connection_id }),
    };
    let draft = EventDraft {
        id: event.id,
        app: app.clone(),
        channel: channel.to_string(),
        kind,
        occurred_at_ms: if event.timestamp_ms > 0 { event.timestamp_ms } else { now_ms() },
        data: data.to_string(),
    };
    let recorded = core
        .store
        .queue_webhook_event(&draft, &targets, core.config.webhook_outbox_max_per_app)
        .await
        .map_err(|e| e.to_string())?;
    super::reconcile::note(core, kind, recorded);
    Ok(())
}
