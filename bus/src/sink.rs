//! The traits through which the bus hands work to its users: a [`Sink`]
//! receives what the bus delivers, a [`NamespaceSource`] answers edges'
//! namespace lookups, a [`WebhookEventSink`] stores the webhook events edges
//! report.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use herald_proto::{AppId, ChannelName, bus};

use crate::history::{Position, StreamBounds};
/// Receives what the bus delivers. Implemented by the edge's hub.
///
/// The [`Bus`](crate::Bus) example delivers channel messages to one; this
/// one also takes the presence reports of a channel it follows:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use bytes::Bytes;
/// use herald_bus::{Bus, LocalBus, Position, Sink};
/// use herald_proto::{AppId, ChannelName, bus};
///
/// /// Keeps the client ids that join.
/// #[derive(Default)]
/// struct Joins(Mutex<Vec<String>>);
///
/// impl Sink for Joins {
///     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, _: Bytes, _: Option<&Position>) {}
///     fn control(&self, _: bus::ControlEvent) {}
///     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) {
///         if let Some(bus::presence_report::Kind::Join(join)) = report.kind {
///             self.0.lock().unwrap().extend(join.entry.map(|e| e.client_id));
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let local = LocalBus::default();
/// let (edge, other_edge) = (Bus::local(&local), Bus::local(&local));
/// let joins = Arc::new(Joins::default());
/// edge.attach(joins.clone()).await?;
/// let (app, channel) = (AppId::new("app1")?, ChannelName::new("presence-room")?);
/// let _following = edge.subscribe_presence(&app, &channel).await?;
/// let entry = bus::PresenceEntry { channel: channel.to_string(), client_id: "ada".into(), ..Default::default() };
/// let join = bus::PresenceReport {
///     kind: Some(bus::presence_report::Kind::Join(bus::PresenceJoin { entry: Some(entry) })),
///     ..Default::default()
/// };
/// other_edge.publish_presence(&app, &channel, &join).await?;
/// let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
/// while joins.0.lock().unwrap().is_empty() && tokio::time::Instant::now() < deadline {
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
/// }
/// assert_eq!(*joins.0.lock().unwrap(), ["ada"]);
/// # Ok(())
/// # }
/// ```
pub trait Sink: Send + Sync + 'static {
    /// A message for `channel` of `app`, as an encoded
    /// [`bus::ChannelMessage`]. `subscription` is the id the subscription was
    /// made with, so late deliveries of an old subscription can be told apart.
    /// `position` is set for messages of channels with history.
    fn deliver(
        &self,
        app: &AppId,
        channel: &ChannelName,
        subscription: u64,
        payload: Bytes,
        position: Option<&Position>,
    );

    /// A control event from the control plane.
    fn control(&self, event: bus::ControlEvent);

    /// A presence report about `channel`, for a presence subscription.
    fn presence(&self, app: &AppId, channel: &ChannelName, report: bus::PresenceReport) {
        let _ = (app, channel, report);
    }

    /// An edge's occupancy report, for [`Bus::subscribe_occupancy_all`](crate::Bus::subscribe_occupancy_all).
    fn occupancy(&self, report: bus::OccupancyReport) {
        let _ = report;
    }
}

/// Answers edges' questions about an app's namespaces. Implemented by the
/// control plane.
///
/// ```
/// use futures_util::future::BoxFuture;
/// use herald_bus::NamespaceSource;
/// use herald_proto::webhook::EventKind;
/// use herald_proto::{AppId, bus};
///
/// /// Every app has one namespace, `chat`, keeping 100 messages for an hour;
/// /// its webhooks want client events.
/// struct Config;
///
/// impl NamespaceSource for Config {
///     fn namespaces(&self, _app: AppId) -> BoxFuture<'static, Result<Option<Vec<bus::Namespace>>, String>> {
///         let options = bus::NamespaceOptions { history_size: 100, history_ttl_ms: 3_600_000, ..Default::default() };
///         let chat = bus::Namespace { name: "chat".into(), options: Some(options) };
///         Box::pin(async move { Ok(Some(vec![chat])) })
///     }
///
///     fn webhook_events(&self, _app: AppId) -> BoxFuture<'static, Result<Vec<EventKind>, String>> {
///         Box::pin(async { Ok(vec![EventKind::ClientEvent]) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use herald_bus::{Bus, LocalBus};
/// let local = LocalBus::default();
/// let (control_plane, edge) = (Bus::local(&local), Bus::local(&local));
/// control_plane.serve_namespaces(std::sync::Arc::new(Config)).await?;
/// let config = edge.app_config(&AppId::new("app1")?).await?.expect("the app exists");
/// assert_eq!(config.namespaces[0].name, "chat");
/// assert!(config.pusher.is_none(), "the default: Pusher mode off");
/// assert!(config.wants_webhook(EventKind::ClientEvent));
/// // What `Config` left to the defaults:
/// assert_eq!(Config.pusher_app(AppId::new("app1")?).await, Ok(None));
/// assert_eq!(Config.history_bounds(), herald_bus::StreamBounds::DEFAULT);
/// # Ok(())
/// # }
/// ```
pub trait NamespaceSource: Send + Sync + 'static {
    /// The app's configured namespaces; `None` when the app does not exist;
    /// an error (a description) when they cannot be looked up now.
    fn namespaces(&self, app: AppId) -> BoxFuture<'static, Result<Option<Vec<bus::Namespace>>, String>>;

    /// The app's Pusher-protocol settings, with the secrets of its
    /// Pusher-enabled keys; `None` when Pusher mode is off for the app (or
    /// the app does not exist); an error (a description) when they cannot be
    /// looked up now. Sent along with the namespaces.
    fn pusher_app(&self, app: AppId) -> BoxFuture<'static, Result<Option<bus::PusherApp>, String>> {
        let _ = app;
        Box::pin(async { Ok(None) })
    }

    /// The edge-seen event kinds (`client_event`, `cache_miss`) some active
    /// webhook endpoint of the app wants; sent along with the namespaces.
    fn webhook_events(&self, app: AppId) -> BoxFuture<'static, Result<Vec<herald_proto::webhook::EventKind>, String>> {
        let _ = app;
        Box::pin(async { Ok(Vec::new()) })
    }

    /// The bounds every history stream gets, sent along with the
    /// namespaces (a publisher that finds a stream lost creates it again
    /// with them).
    fn history_bounds(&self) -> StreamBounds {
        StreamBounds::DEFAULT
    }
}

/// Stores the webhook events edges report (client events, cache misses).
/// Implemented by the control plane; served with
/// [`Bus::serve_webhook_events`](crate::Bus::serve_webhook_events).
///
/// ```
/// use std::collections::BTreeMap;
/// use std::sync::{Arc, Mutex};
/// use futures_util::future::BoxFuture;
/// use herald_bus::{Bus, LocalBus, WebhookEventSink};
/// use herald_proto::{AppId, bus};
///
/// /// Keeps the events by id: a retried event is stored once.
/// #[derive(Clone, Default)]
/// struct Outbox(Arc<Mutex<BTreeMap<String, bus::WebhookEvent>>>);
///
/// impl WebhookEventSink for Outbox {
///     fn store(&self, _app: AppId, event: bus::WebhookEvent) -> BoxFuture<'static, Result<(), String>> {
///         self.0.lock().unwrap().insert(event.id.clone(), event);
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let local = LocalBus::default();
/// let (control_plane, edge) = (Bus::local(&local), Bus::local(&local));
/// let outbox = Outbox::default();
/// control_plane.serve_webhook_events(Arc::new(outbox.clone())).await?;
///
/// let app = AppId::new("app1")?;
/// let event = bus::WebhookEvent {
///     id: "ev_1".into(), app_id: "app1".into(), channel: "private-room".into(),
///     kind: "client_event".into(), event: "client-typing".into(), ..Default::default()
/// };
/// edge.report_webhook_event(&app, &event).await?;
/// edge.report_webhook_event(&app, &event).await?; // sent again: stored once
/// assert_eq!(outbox.0.lock().unwrap().len(), 1);
/// # Ok(())
/// # }
/// ```
pub trait WebhookEventSink: Send + Sync + 'static {
    /// Stores `event` of `app` durably (its `app_id` is `app`; the bus
    /// checked). Resolves once stored: the edge that reported it stops
    /// retrying then. An error (a description) when it could not be stored
    /// now: the edge sends the same event (same id) again later, so storing
    /// must be idempotent by the event's id.
    fn store(&self, app: AppId, event: bus::WebhookEvent) -> BoxFuture<'static, Result<(), String>>;
}

/// Stores the usage reports nodes send. Implemented by the control plane;
/// served with [`Bus::serve_usage`](crate::Bus::serve_usage).
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use futures_util::future::BoxFuture;
/// use herald_bus::{Bus, LocalBus, UsageSink};
/// use herald_proto::bus;
///
/// /// Sums what the apps published.
/// #[derive(Clone, Default)]
/// struct Totals(Arc<Mutex<u64>>);
///
/// impl UsageSink for Totals {
///     fn store(&self, report: bus::UsageReport) -> BoxFuture<'static, Result<(), String>> {
///         let published: u64 = report.batches.iter().flat_map(|b| &b.apps).map(|a| a.published_rest).sum();
///         *self.0.lock().unwrap() += published;
///         Box::pin(async { Ok(()) })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let local = LocalBus::default();
/// let (control_plane, node) = (Bus::local(&local), Bus::local(&local));
/// let totals = Totals::default();
/// control_plane.serve_usage(Arc::new(totals.clone())).await?;
/// let usage = bus::AppUsage { app_id: "app1".into(), published_rest: 3, ..Default::default() };
/// let batch = bus::UsageBatch { seq: 1, timestamp_ms: herald_bus::now_ms(), apps: vec![usage] };
/// node.report_usage(&bus::UsageReport { node_id: "edge-1".into(), batches: vec![batch], ..Default::default() }).await?;
/// assert_eq!(*totals.0.lock().unwrap(), 3);
/// # Ok(())
/// # }
/// ```
pub trait UsageSink: Send + Sync + 'static {
    /// Stores `report` durably (it passed
    /// [`usage::check`](crate::usage::check)). Resolves once every batch is
    /// stored: a batch whose (node, sequence) was stored before is not
    /// counted again. An error (a description) when it could not be stored
    /// now: the node sends the batches again with its next report.
    fn store(&self, report: bus::UsageReport) -> BoxFuture<'static, Result<(), String>>;
}
