//! Stores what edges report for webhooks (client events, cache misses):
//! checked, turned into an event of the outbox for the app's endpoints
//! that want it, under the id the edge gave it (a resend queues nothing
//! twice).

use std::sync::Weak;

use herald_bus::now_ms;
use herald_proto::webhook::EventKind;
use herald_proto::{AppId, ChannelName, bus};

use crate::core::Core;
use crate::store::EventDraft;

/// Longest event id an edge may give.
const MAX_ID_LEN: usize = 64;

/// Answers edges' webhook reports (holds the core weakly).
pub(crate) struct Sink(pub(crate) Weak<Core>);

/// Checks and stores one reported event.
pub(crate) async fn store(core: &Core, app: &AppId, event: bus::WebhookEvent) -> Result<(), String> {
    if event.app_id != app.as_str() {
        return Err("the event's app is not the subject's".into());
    }
    if event.id.is_empty() || event.id.len() > MAX_ID_LEN || !event.id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("invalid event id".into());
    }
    let kind: EventKind = event.kind.parse().map_err(|e: herald_proto::webhook::UnknownEventKind| e.to_string())?;
    if !kind.is_edge_event() {
        return Err(format!("{kind} is not reported by edges"));
    }
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
