//! The traits through which the bus hands work to its users: a [`Sink`]
//! receives what the bus delivers, a [`NamespaceSource`] answers edges'
//! namespace lookups, a [`WebhookEventSink`] stores the webhook events edges
//! report.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use herald_proto::{AppId, ChannelName, bus};

use crate::history::{Position, StreamBounds};
/// Receives what the bus delivers. Implemented by the edge's hub.
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
pub trait UsageSink: Send + Sync + 'static {
    /// Stores `report` durably (it passed
    /// [`usage::check`](crate::usage::check)). Resolves once every batch is
    /// stored: a batch whose (node, sequence) was stored before is not
    /// counted again. An error (a description) when it could not be stored
    /// now: the node sends the batches again with its next report.
    fn store(&self, report: bus::UsageReport) -> BoxFuture<'static, Result<(), String>>;
}
