//! Webhook events seen on edges (client events, cache misses), as they
//! travel to the control plane: what makes one acceptable ([`check`]),
//! checked by the reporting side before it sends and by the serving side
//! before the [`WebhookEventSink`](crate::WebhookEventSink) stores it.
//!
//! An edge reports each event by request/reply on its app's subject
//! ([`herald_proto::SubjectSpace::webhook_events`]); the control plane
//! answers a [`bus::WebhookEventReply`] once the event is stored (empty
//! `error`), or with why not. The edge retries with the same event id until
//! it is stored, so storing is idempotent by id.

use herald_proto::webhook::EventKind;
use herald_proto::{AppId, ChannelName, bus};

/// Longest event id, in bytes.
pub const MAX_EVENT_ID_LEN: usize = 128;

/// The error a serving control plane answers when it is storing as many
/// events as it takes at once (the edge retries).
pub const BUSY: &str = "busy: too many webhook events being stored at once; retry";

/// Whether `event` may be stored as a webhook event of `app`: it names
/// `app`, an edge-seen kind, a valid channel and an id. The error names the
/// failing field.
///
/// ```
/// use herald_bus::webhook_events::check;
/// use herald_proto::{AppId, bus};
/// let app = AppId::new("app1")?;
/// let event = bus::WebhookEvent {
///     id: "ev_1".into(), app_id: "app1".into(), channel: "private-room".into(),
///     kind: "client_event".into(), event: "client-typing".into(), ..Default::default()
/// };
/// assert_eq!(check(&app, &event), Ok(()));
/// let elsewhere = bus::WebhookEvent { app_id: "app2".into(), ..event };
/// assert!(check(&app, &elsewhere).unwrap_err().contains("app_id"));
/// # Ok::<(), herald_proto::IdError>(())
/// ```
///
/// # Errors
///
/// A description of what is wrong, naming the field.
pub fn check(app: &AppId, event: &bus::WebhookEvent) -> Result<(), String> {
    if event.app_id != app.as_str() {
        let shown: String = event.app_id.chars().take(64).collect();
        return Err(format!("webhook event: app_id {shown:?} is not the app {app} it was sent for"));
    }
    if event.id.is_empty() || event.id.len() > MAX_EVENT_ID_LEN {
        return Err(format!("webhook event: id must be 1-{MAX_EVENT_ID_LEN} bytes"));
    }
    match event.kind.parse::<EventKind>() {
        Ok(kind) if kind.is_edge_event() => {}
        _ => {
            let shown: String = event.kind.chars().take(64).collect();
            return Err(format!("webhook event: kind {shown:?} is not one an edge reports (client_event, cache_miss)"));
        }
    }
    if let Err(e) = ChannelName::new(&event.channel) {
        return Err(format!("webhook event: channel: {e}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> bus::WebhookEvent {
        bus::WebhookEvent {
            id: "ev_1".into(),
            app_id: "app1".into(),
            channel: "private-room".into(),
            kind: "client_event".into(),
            event: "client-typing".into(),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_edge_events_of_the_app() {
        let app = AppId::new("app1").expect("app");
        assert_eq!(check(&app, &event()), Ok(()));
        let miss = bus::WebhookEvent { kind: "cache_miss".into(), event: String::new(), ..event() };
        assert_eq!(check(&app, &miss), Ok(()));
    }

    #[test]
    fn refusals_name_the_field() {
        let app = AppId::new("app1").expect("app");
        let cases = [
            (bus::WebhookEvent { app_id: "app2".into(), ..event() }, "app_id"),
            (bus::WebhookEvent { id: String::new(), ..event() }, "id"),
            (bus::WebhookEvent { id: "x".repeat(MAX_EVENT_ID_LEN + 1), ..event() }, "id"),
            (bus::WebhookEvent { kind: "channel_occupied".into(), ..event() }, "kind"),
            (bus::WebhookEvent { kind: "nonsense".into(), ..event() }, "kind"),
            (bus::WebhookEvent { channel: "a b".into(), ..event() }, "channel"),
            (bus::WebhookEvent { channel: String::new(), ..event() }, "channel"),
        ];
        for (bad, field) in cases {
            let error = check(&app, &bad).expect_err(field);
            assert!(error.starts_with(&format!("webhook event: {field}")), "{error}");
        }
    }
}
