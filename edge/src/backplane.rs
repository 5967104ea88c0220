//! The backplane: how messages and control events travel between edges and
//! the control plane.
//!
//! [`Backplane`] is a `Clone` handle with two implementations behind one
//! API:
//!
//! - **NATS** ([`Backplane::connect_nats`]): core NATS subjects from
//!   [`SubjectSpace`]; async-nats reconnects on its own and re-sends the
//!   subscriptions of every live channel after a NATS restart.
//! - **Local** ([`Backplane::local`]): an in-process bus for the embedded
//!   mode and fast tests; several handles on one [`LocalBus`] behave like
//!   several nodes on one NATS.
//!
//! Whoever receives (an edge, or the control plane) attaches a [`Sink`]; the
//! backplane hands it every message of the channels it subscribed to, every
//! control event, and the presence and occupancy reports it asked for.
//!
//! Beyond channel messages the backplane carries:
//!
//! - **History**: a JetStream stream per (app, namespace) that keeps the
//!   namespace's channels ([`Backplane::ensure_history`]); a history
//!   message is published into the stream ([`Backplane::publish_history`]),
//!   which stores it and republishes it on the channel subject with its
//!   sequence, so live subscribers get the [`Position`] with the message.
//!   When no stream takes a history message, the namespace's options are
//!   asked of the control plane again; if it still keeps history, its lost
//!   stream is created again and the message sent once more.
//!   [`Backplane::read_history`] reads a channel back.
//! - **Namespaces**: edges ask the control plane for an app's namespace
//!   options by request/reply ([`Backplane::fetch_namespaces`],
//!   [`Backplane::serve_namespaces`]).
//! - **Presence** and **occupancy** reports from edges.
//!
//! A publish resolves once the NATS server has the message: the client must
//! be connected, and a round trip sent after the message must have come
//! back (the server handles a connection's commands in order), within
//! [`NatsOptions::publish_timeout`]. Otherwise the caller gets
//! [`BackplaneError::Unavailable`] — never a false success, not even for a
//! message still in a socket buffer when the server stopped answering.
//! Concurrent publishes share one round trip ([`NatsBackplane::receipt`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use herald_proto::{AppId, ChannelName, NamespaceName, SubjectSpace, bus};
use prost::Message as _;
use tokio::task::JoinHandle;

use crate::history::LocalHistory;
pub use crate::history::{HistoryEntry, HistoryPage, HistorySpec, Position, StreamBounds};

/// Receives what the backplane delivers. Implemented by the edge's hub.
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

    /// An edge's occupancy report, for [`Backplane::subscribe_occupancy_all`].
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

    /// The bounds every history stream gets, sent along with the
    /// namespaces (a publisher that finds a stream lost creates it again
    /// with them).
    fn history_bounds(&self) -> StreamBounds {
        StreamBounds::DEFAULT
    }
}

/// Why a backplane operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    /// The backplane is not connected, or did not accept the operation in
    /// time. The operation may be retried.
    #[error("backplane unavailable: {0}")]
    Unavailable(String),
    /// The backplane refused the operation for good.
    #[error("backplane error: {0}")]
    Failed(String),
    /// The channel's namespace keeps no history (no stream exists for it).
    #[error("no history: {0}")]
    NoHistory(String),
}

/// Tuning of the NATS backplane.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Longest wait for a publish or subscribe to reach NATS.
    pub publish_timeout: Duration,
    /// Messages buffered per channel subscription between NATS and the hub.
    pub subscription_capacity: usize,
    /// Name shown in NATS monitoring.
    pub connection_name: String,
    /// Namespace requests the control plane answers at once.
    pub request_concurrency: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(5),
            subscription_capacity: 8192,
            connection_name: "herald".to_owned(),
            request_concurrency: 32,
        }
    }
}

/// A handle to the backplane. Cheap to clone.
#[derive(Clone)]
pub struct Backplane {
    inner: Arc<Inner>,
    /// Held while a lost history stream is created again: one at a time,
    /// and the publishes that failed meanwhile find it there.
    recreating: Arc<tokio::sync::Mutex<()>>,
}

#[allow(clippy::large_enum_variant)] // one per process, behind an Arc
enum Inner {
    Nats(NatsBackplane),
    Local(LocalHandle),
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Inner::Nats(n) => write!(f, "Backplane::Nats({:?})", n.subjects),
            Inner::Local(_) => f.write_str("Backplane::Local"),
        }
    }
}

/// A live subscription to one channel; dropping it ends the subscription.
pub struct ChannelSubscription {
    _inner: SubscriptionInner,
}

enum SubscriptionInner {
    Nats(JoinHandle<()>),
    Local { bus: Weak<LocalBusInner>, topic: Topic, handle: u64, id: u64 },
}

impl Drop for SubscriptionInner {
    fn drop(&mut self) {
        match self {
            Self::Nats(task) => task.abort(),
            Self::Local { bus, topic, handle, id } => {
                if let Some(bus) = bus.upgrade() {
                    bus.remove_interest(topic, *handle, *id);
                }
            }
        }
    }
}

/// What a local subscription listens to.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Topic {
    Channel(ChannelKey),
    Presence(ChannelKey),
    AllPresence,
    AllOccupancy,
}

type ChannelKey = (AppId, ChannelName);

impl Backplane {
    /// Connects to NATS at `url` (e.g. `nats://127.0.0.1:4222`). Returns
    /// once connected; while NATS is unreachable later, operations fail with
    /// [`BackplaneError::Unavailable`] and the client reconnects on its own.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when NATS cannot be reached at start.
    pub async fn connect_nats(url: &str, subjects: SubjectSpace, options: NatsOptions) -> Result<Self, BackplaneError> {
        let sink: Arc<OnceLock<Arc<dyn Sink>>> = Arc::new(OnceLock::new());
        let connected = Arc::new(AtomicBool::new(false));
        let events_connected = connected.clone();
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let events_reconnected = reconnected.clone();
        let ever_connected = Arc::new(AtomicBool::new(false));
        let known_epochs: Arc<Mutex<KnownEpochs>> = Arc::default();
        let events_epochs = known_epochs.clone();
        let client = async_nats::ConnectOptions::new()
            .name(&options.connection_name)
            .subscription_capacity(options.subscription_capacity)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(2_000)))
            .event_callback(move |event| {
                let connected = events_connected.clone();
                let epochs = events_epochs.clone();
                let reconnected = events_reconnected.clone();
                let ever_connected = ever_connected.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            // Stream advisories sent while disconnected were
                            // missed, and the server may have lost its
                            // storage: every cached epoch is suspect.
                            forget_all_epochs(&epochs);
                            connected.store(true, Ordering::Release);
                            if ever_connected.swap(true, Ordering::AcqRel) {
                                reconnected.notify_one();
                            }
                            tracing::info!("backplane connected");
                            metrics::gauge!("herald_backplane_connected").set(1.0);
                        }
                        async_nats::Event::Disconnected => {
                            connected.store(false, Ordering::Release);
                            tracing::warn!("backplane disconnected");
                            metrics::gauge!("herald_backplane_connected").set(0.0);
                            metrics::counter!("herald_backplane_reconnects_total").increment(1);
                        }
                        async_nats::Event::SlowConsumer(sid) => {
                            tracing::warn!(sid, "backplane subscription fell behind; messages dropped by nats client");
                            metrics::counter!("herald_backplane_slow_consumer_total").increment(1);
                        }
                        other => tracing::debug!(event = %other, "backplane event"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|e| BackplaneError::Unavailable(format!("connect to {url}: {e}")))?;
        connected.store(true, Ordering::Release);
        metrics::gauge!("herald_backplane_connected").set(1.0);
        let epochs = Arc::new(Epochs { js: async_nats::jetstream::new(client.clone()), known: known_epochs });
        let nats = NatsBackplane {
            client,
            subjects,
            options,
            sink,
            connected,
            reconnected,
            control_task: Mutex::new(None),
            serve_task: Mutex::new(None),
            advisory_task: Mutex::new(None),
            epochs,
            sent: AtomicU64::new(0),
            received: tokio::sync::watch::Sender::new(0),
            round_running: AtomicBool::new(false),
        };
        nats.watch_streams().await?;
        Ok(Self { inner: Arc::new(Inner::Nats(nats)), recreating: Arc::default() })
    }

    /// A handle on the in-process `bus`.
    #[must_use]
    pub fn local(bus: &LocalBus) -> Self {
        let id = bus.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = LocalHandle { bus: bus.inner.clone(), id, sink: OnceLock::new() };
        Self { inner: Arc::new(Inner::Local(handle)), recreating: Arc::default() }
    }

    /// Attaches the receiver of deliveries and control events. Only the
    /// first call counts; a handle has one sink.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when the control subject cannot be
    /// subscribed.
    pub async fn attach(&self, sink: Arc<dyn Sink>) -> Result<(), BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.attach(sink).await,
            Inner::Local(l) => {
                let _ = l.sink.set(sink.clone());
                l.bus.sinks.lock().unwrap_or_else(|e| e.into_inner()).insert(l.id, Arc::downgrade(&sink));
                Ok(())
            }
        }
    }

    /// Resolves when the backplane connected again after being cut off
    /// (control events sent meanwhile were missed); never, in process.
    pub async fn reconnected(&self) {
        match &*self.inner {
            Inner::Nats(n) => n.reconnected.notified().await,
            Inner::Local(_) => std::future::pending().await,
        }
    }

    /// Whether the backplane is connected now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        match &*self.inner {
            Inner::Nats(n) => {
                n.connected.load(Ordering::Acquire)
                    && n.client.connection_state() == async_nats::connection::State::Connected
            }
            Inner::Local(_) => true,
        }
    }

    /// Publishes a channel message; resolves once the backplane accepted it.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when NATS is not connected or did not
    /// take the message within the publish timeout.
    pub async fn publish(
        &self,
        app: &AppId,
        channel: &ChannelName,
        message: &bus::ChannelMessage,
    ) -> Result<(), BackplaneError> {
        self.publish_encoded(app, channel, Bytes::from(message.encode_to_vec())).await
    }

    /// Like [`Self::publish`], with the [`bus::ChannelMessage`] already
    /// encoded.
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_encoded(
        &self,
        app: &AppId,
        channel: &ChannelName,
        payload: Bytes,
    ) -> Result<(), BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.publish(n.subjects.channel(app, channel), payload).await,
            Inner::Local(l) => {
                l.bus.publish(app, channel, payload);
                Ok(())
            }
        }
    }

    /// Publishes a control event to every edge.
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_control(&self, event: &bus::ControlEvent) -> Result<(), BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.publish(n.subjects.control(), Bytes::from(event.encode_to_vec())).await,
            Inner::Local(l) => {
                l.bus.control(event);
                Ok(())
            }
        }
    }

    /// Starts receiving the messages of one channel; they go to the sink with
    /// `id`. Resolves once the backplane holds the interest (for NATS: the
    /// server confirmed it), so a message published after this returns is
    /// delivered.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when NATS is not connected or did not
    /// take the subscription in time; `Failed` when no sink is attached.
    pub async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        id: u64,
    ) -> Result<ChannelSubscription, BackplaneError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => n.subscribe(app, channel, id, Arc::downgrade(&self.inner)).await?,
            Inner::Local(l) => {
                if l.sink.get().is_none() {
                    return Err(BackplaneError::Failed("no sink attached".into()));
                }
                l.subscribe(Topic::Channel((app.clone(), channel.clone())), id)?
            }
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Creates the stream that keeps the history of one namespace's
    /// channels, or changes its bounds.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when JetStream did not answer;
    /// `Failed` when it refused the stream.
    pub async fn ensure_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        spec: &HistorySpec,
    ) -> Result<(), BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.ensure_history(app, ns, spec).await,
            Inner::Local(l) => {
                l.bus.history().ensure(app, ns, spec);
                Ok(())
            }
        }
    }

    /// Deletes a namespace's stream and the history it held. Deleting a
    /// stream that does not exist succeeds.
    ///
    /// # Errors
    ///
    /// As [`Self::ensure_history`].
    pub async fn drop_history(&self, app: &AppId, ns: &NamespaceName) -> Result<(), BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.drop_history(app, ns).await,
            Inner::Local(l) => {
                l.bus.history().drop_stream(app, ns);
                Ok(())
            }
        }
    }

    /// Publishes a message of a channel with history: it is stored in the
    /// namespace's stream, then delivered with its position. Resolves with
    /// the position once stored. The message id doubles as the stream's
    /// de-duplication id.
    ///
    /// When no stream takes the message, the control plane is asked for the
    /// namespace's options: if they still keep history, the stream was lost
    /// (deleted behind Herald's back, or NATS lost its data); it is created
    /// again from them and the message sent once more.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::NoHistory`] when the channel has no namespace, or
    /// the namespace no stream and none could be created (its namespace
    /// keeps no history, or the control plane or JetStream did not answer);
    /// `Unavailable` when JetStream did not store it in time.
    pub async fn publish_history(
        &self,
        app: &AppId,
        channel: &ChannelName,
        message: &bus::ChannelMessage,
    ) -> Result<Position, BackplaneError> {
        let ns = history_namespace(channel)?;
        let payload = Bytes::from(message.encode_to_vec());
        let reason = match self.store_history(app, &ns, channel, &message.id, payload.clone()).await {
            Err(BackplaneError::NoHistory(reason)) => reason,
            other => return other,
        };
        let recreating = self.recreating.lock().await;
        // Another publish may have created it while this one waited.
        match self.store_history(app, &ns, channel, &message.id, payload.clone()).await {
            Err(BackplaneError::NoHistory(_)) => {}
            other => return other,
        }
        let spec = match self.current_history_spec(app, &ns).await {
            Ok(Some(spec)) => spec,
            Ok(None) => return Err(BackplaneError::NoHistory(reason)),
            Err(e) => {
                tracing::warn!(%app, namespace = %ns, error = %e, "history stream missing; namespace not looked up");
                return Err(BackplaneError::NoHistory(format!("{reason}; its namespace was not looked up: {e}")));
            }
        };
        if let Err(e) = self.ensure_history(app, &ns, &spec).await {
            tracing::warn!(%app, namespace = %ns, error = %e, "history stream missing and not created again");
            return Err(BackplaneError::NoHistory(format!("{reason}; creating it again failed: {e}")));
        }
        drop(recreating);
        tracing::warn!(%app, namespace = %ns, "history stream was missing; created it again, empty");
        metrics::counter!("herald_history_streams_recreated_total").increment(1);
        self.store_history(app, &ns, channel, &message.id, payload).await
    }

    async fn store_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        message_id: &str,
        payload: Bytes,
    ) -> Result<Position, BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.publish_history(app, ns, channel, message_id, payload).await,
            Inner::Local(l) => l.bus.publish_history(app, ns, channel, payload),
        }
    }

    /// The bounds of the namespace's stream as the control plane has them
    /// now; `None` when the namespace (or the app) keeps no history.
    async fn current_history_spec(
        &self,
        app: &AppId,
        ns: &NamespaceName,
    ) -> Result<Option<HistorySpec>, BackplaneError> {
        let Some((namespaces, bounds)) = self.namespace_list(app).await? else { return Ok(None) };
        Ok(namespaces
            .iter()
            .find(|n| n.name == ns.as_str())
            .and_then(|n| n.options)
            .filter(crate::namespaces::keeps_history)
            .map(|options| HistorySpec::new(&options, bounds)))
    }

    /// Reads up to `limit` messages of a channel with history after
    /// `after_seq` (0: from the start).
    ///
    /// # Errors
    ///
    /// As [`Self::publish_history`].
    pub async fn read_history(
        &self,
        app: &AppId,
        channel: &ChannelName,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, BackplaneError> {
        let ns = history_namespace(channel)?;
        match &*self.inner {
            Inner::Nats(n) => n.read_history(app, &ns, channel, after_seq, limit).await,
            Inner::Local(l) => l
                .bus
                .history()
                .read(app, &ns, channel, after_seq, limit)
                .ok_or_else(|| BackplaneError::NoHistory(format!("namespace {ns} of app {app} keeps no history"))),
        }
    }

    /// Answers edges' namespace requests from `source` (the control plane
    /// calls this once at start).
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when the request subject cannot be
    /// subscribed.
    pub async fn serve_namespaces(&self, source: Arc<dyn NamespaceSource>) -> Result<(), BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.serve_namespaces(source).await,
            Inner::Local(l) => {
                *lock(&l.bus.namespaces) = Some(source);
                Ok(())
            }
        }
    }

    /// Asks the control plane for an app's namespaces. `None` when the app
    /// does not exist.
    ///
    /// # Errors
    ///
    /// [`BackplaneError::Unavailable`] when no control plane answered in
    /// time.
    pub async fn fetch_namespaces(&self, app: &AppId) -> Result<Option<Vec<bus::Namespace>>, BackplaneError> {
        Ok(self.namespace_list(app).await?.map(|(namespaces, _)| namespaces))
    }

    /// Like [`Self::fetch_namespaces`], with the bounds of history streams.
    async fn namespace_list(&self, app: &AppId) -> Result<Option<(Vec<bus::Namespace>, StreamBounds)>, BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.fetch_namespaces(app).await,
            Inner::Local(l) => {
                let source = lock(&l.bus.namespaces).clone();
                match source {
                    Some(source) => Ok(source
                        .namespaces(app.clone())
                        .await
                        .map_err(|e| BackplaneError::Unavailable(format!("namespace lookup: {e}")))?
                        .map(|namespaces| (namespaces, source.history_bounds()))),
                    // An in-process bus without a control plane: nothing is
                    // configured, every channel takes the defaults.
                    None => Ok(Some((Vec::new(), StreamBounds::DEFAULT))),
                }
            }
        }
    }

    /// Publishes a presence report about one channel.
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        report: &bus::PresenceReport,
    ) -> Result<(), BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.publish(n.subjects.presence(app, channel), Bytes::from(report.encode_to_vec())).await,
            Inner::Local(l) => {
                l.bus.publish_presence(app, channel, report);
                Ok(())
            }
        }
    }

    /// Publishes an occupancy report.
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_occupancy(&self, app: &AppId, report: &bus::OccupancyReport) -> Result<(), BackplaneError> {
        match &*self.inner {
            Inner::Nats(n) => n.publish(n.subjects.occupancy(app), Bytes::from(report.encode_to_vec())).await,
            Inner::Local(l) => {
                l.bus.publish_occupancy(report);
                Ok(())
            }
        }
    }

    /// Starts receiving the presence reports of one channel (for an edge
    /// with local subscribers of a presence channel); they go to
    /// [`Sink::presence`].
    ///
    /// # Errors
    ///
    /// As [`Self::subscribe`].
    pub async fn subscribe_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<ChannelSubscription, BackplaneError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => n.subscribe_reports(n.subjects.presence(app, channel), Report::Presence).await?,
            Inner::Local(l) => l.subscribe(Topic::Presence((app.clone(), channel.clone())), 0)?,
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Starts receiving every presence report of every app (for the control
    /// plane).
    ///
    /// # Errors
    ///
    /// As [`Self::subscribe`].
    pub async fn subscribe_presence_all(&self) -> Result<ChannelSubscription, BackplaneError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => n.subscribe_reports(n.subjects.all_presence(), Report::Presence).await?,
            Inner::Local(l) => l.subscribe(Topic::AllPresence, 0)?,
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Starts receiving every occupancy report (for the control plane); they
    /// go to [`Sink::occupancy`].
    ///
    /// # Errors
    ///
    /// As [`Self::subscribe`].
    pub async fn subscribe_occupancy_all(&self) -> Result<ChannelSubscription, BackplaneError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => n.subscribe_reports(n.subjects.all_occupancy(), Report::Occupancy).await?,
            Inner::Local(l) => l.subscribe(Topic::AllOccupancy, 0)?,
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Asks every edge to send its presence snapshots and occupancy now.
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn request_presence_sync(&self) -> Result<(), BackplaneError> {
        let event = bus::ControlEvent {
            timestamp_ms: crate::now_ms(),
            kind: Some(bus::control_event::Kind::PresenceSyncAll(bus::PresenceSyncAll {})),
        };
        self.publish_control(&event).await
    }

    /// Flushes what was published and stops. Used on shutdown.
    pub async fn close(&self) {
        if let Inner::Nats(n) = &*self.inner {
            let _ = tokio::time::timeout(n.options.publish_timeout, n.client.flush()).await;
            for task in [&n.control_task, &n.serve_task, &n.advisory_task] {
                if let Some(task) = lock(task).take() {
                    task.abort();
                }
            }
        }
    }

    /// The subject space, for the NATS backplane.
    #[must_use]
    pub fn subjects(&self) -> Option<&SubjectSpace> {
        match &*self.inner {
            Inner::Nats(n) => Some(&n.subjects),
            Inner::Local(_) => None,
        }
    }
}

/// The namespace of a channel that is to have history.
fn history_namespace(channel: &ChannelName) -> Result<NamespaceName, BackplaneError> {
    channel.namespace_name().ok_or_else(|| BackplaneError::NoHistory(format!("channel {channel} has no namespace")))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which kind of report a report subscription decodes.
#[derive(Clone, Copy)]
enum Report {
    Presence,
    Occupancy,
}

struct NatsBackplane {
    client: async_nats::Client,
    subjects: SubjectSpace,
    options: NatsOptions,
    sink: Arc<OnceLock<Arc<dyn Sink>>>,
    connected: Arc<AtomicBool>,
    /// Notified (one permit) each time the connection is established again
    /// after it was lost (not at the first connect).
    reconnected: Arc<tokio::sync::Notify>,
    control_task: Mutex<Option<JoinHandle<()>>>,
    serve_task: Mutex<Option<JoinHandle<()>>>,
    /// Forgets the epoch of a stream JetStream announces as created or
    /// deleted.
    advisory_task: Mutex<Option<JoinHandle<()>>>,
    epochs: Arc<Epochs>,
    /// Publishes handed to the client so far.
    sent: AtomicU64,
    /// How many of them the server is known to have (the first so many);
    /// every publish waiting for its receipt watches it.
    received: tokio::sync::watch::Sender<u64>,
    /// Whether a receipt round trip is under way: one at a time, each
    /// covering every publish handed to the client before it started.
    round_running: AtomicBool,
}

/// Ends a receipt round when dropped: records what it covered (when it
/// succeeded), frees the slot and wakes every waiting publish (also after a
/// failure: one of them starts the next round).
struct RoundGuard<'a> {
    running: &'a AtomicBool,
    received: &'a tokio::sync::watch::Sender<u64>,
    covered: Option<u64>,
}

impl Drop for RoundGuard<'_> {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Release);
        let covered = self.covered.unwrap_or(0);
        // `send_modify` wakes the watchers whether or not the count grew.
        self.received.send_modify(|n| *n = (*n).max(covered));
    }
}

impl Drop for NatsBackplane {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.advisory_task).take() {
            task.abort();
        }
    }
}

/// The epochs of the history streams this process met, by stream name.
///
/// A stream's epoch is its creation time (ns). It is looked up once per
/// stream and kept until it may have changed:
///
/// - JetStream announces (stream advisories) that a stream of this subject
///   space was created or deleted: that stream's epoch is forgotten;
/// - the NATS connection is re-established (advisories sent meanwhile were
///   missed, and the server may have lost its storage): every epoch is
///   forgotten;
/// - a sequence number that does not grow (the stream was recreated and its
///   advisory not seen yet) makes the next lookup ask JetStream again, at
///   most once per second.
///
/// A lookup that was under way when epochs were forgotten does not keep
/// what it read (it may describe the stream that is gone).
struct Epochs {
    js: async_nats::jetstream::Context,
    known: Arc<Mutex<KnownEpochs>>,
}

#[derive(Default)]
struct KnownEpochs {
    streams: HashMap<String, KnownEpoch>,
    /// Bumped whenever epochs are forgotten.
    generation: u64,
}

struct KnownEpoch {
    epoch: String,
    last_seq: u64,
    checked: std::time::Instant,
}

fn epoch_of(info: &async_nats::jetstream::stream::Info) -> String {
    info.created.unix_timestamp_nanos().to_string()
}

fn forget_all_epochs(known: &Mutex<KnownEpochs>) {
    let mut known = lock(known);
    known.streams.clear();
    known.generation += 1;
}

impl Epochs {
    /// The epoch of `stream` for a message with sequence `seq`, when it is
    /// known and still trusted; [`Self::lookup`] otherwise.
    fn cached(&self, stream: &str, seq: u64) -> Option<String> {
        let mut known = lock(&self.known);
        let k = known.streams.get_mut(stream)?;
        if seq > k.last_seq || k.checked.elapsed() < Duration::from_secs(1) {
            k.last_seq = k.last_seq.max(seq);
            return Some(k.epoch.clone());
        }
        None
    }

    /// The epoch of `stream`, for a message with sequence `seq`.
    async fn get(&self, stream: &str, seq: u64) -> Option<String> {
        match self.cached(stream, seq) {
            Some(epoch) => Some(epoch),
            None => self.lookup(stream, seq).await,
        }
    }

    /// Asks JetStream for the epoch of `stream` and remembers it.
    async fn lookup(&self, stream: &str, seq: u64) -> Option<String> {
        let mut generation = lock(&self.known).generation;
        // Asked again when epochs were forgotten meanwhile: the first answer
        // may be the deleted stream's.
        for attempt in 0..2 {
            let info = match self.js.get_stream(stream).await {
                Ok(s) => s.cached_info().clone(),
                Err(e) => {
                    tracing::warn!(stream, error = %e, "history stream epoch unknown");
                    return None;
                }
            };
            let epoch = epoch_of(&info);
            let mut known = lock(&self.known);
            if known.generation == generation {
                let last_seq = info.state.last_sequence.max(seq);
                known.streams.insert(
                    stream.to_owned(),
                    KnownEpoch { epoch: epoch.clone(), last_seq, checked: std::time::Instant::now() },
                );
                return Some(epoch);
            }
            if attempt == 1 {
                return Some(epoch);
            }
            generation = known.generation;
        }
        None
    }

    fn forget(&self, stream: &str) {
        let mut known = lock(&self.known);
        known.streams.remove(stream);
        known.generation += 1;
    }
}

/// Hands a channel's NATS messages to the sink, with their history
/// positions, filling gaps in the history sequence from the stream.
///
/// One runs per channel with local subscribers, for as long as it has
/// them: its future is kept small (the rare paths — an epoch lookup, a gap
/// fill — are boxed, not inlined into it; a unit test holds the size).
struct Relay {
    sink: Arc<dyn Sink>,
    app: AppId,
    channel: ChannelName,
    id: u64,
    epochs: Arc<Epochs>,
    backplane: Weak<Inner>,
    gap_limit: usize,
}

impl Relay {
    async fn run(self, mut messages: impl futures_util::Stream<Item = async_nats::Message> + Unpin) {
        let Self { sink, app, channel, id, epochs, backplane, gap_limit } = self;
        // The epoch and sequence of the last history message delivered here.
        let mut last: Option<(String, u64)> = None;
        while let Some(msg) = messages.next().await {
            let Some((stream, seq, previous)) = republished(&msg) else {
                sink.deliver(&app, &channel, id, msg.payload, None);
                continue;
            };
            let epoch = match epochs.cached(stream, seq) {
                Some(epoch) => Some(epoch),
                None => Box::pin(epochs.lookup(stream, seq)).await,
            };
            let Some(epoch) = epoch else {
                sink.deliver(&app, &channel, id, msg.payload, None);
                continue;
            };
            // Sequences compare within one stream: a stream created again
            // counts from 1, none of its messages was delivered.
            let delivered = last.as_ref().map(|(e, l)| if *e == epoch { *l } else { 0 });
            if delivered.is_some_and(|l| seq <= l) {
                continue; // already delivered by a gap fill
            }
            if let Some(l) = delivered
                && previous > l
            {
                // Messages of this channel were stored but never reached this
                // subscription (NATS reconnected, or the client dropped
                // them): deliver them from the stream first.
                let gap = Gap { after: l, before: seq, epoch: &epoch, limit: gap_limit };
                Box::pin(fill_gap(&backplane, &sink, &app, &channel, id, gap)).await;
            }
            let at = Position { seq, epoch };
            sink.deliver(&app, &channel, id, msg.payload, Some(&at));
            last = Some((at.epoch, seq));
        }
    }
}

/// Messages of a channel's history a subscription missed: those after
/// sequence `after` and before `before`, in stream epoch `epoch`, at most
/// `limit`.
struct Gap<'a> {
    after: u64,
    before: u64,
    epoch: &'a str,
    limit: usize,
}

/// Delivers a [`Gap`] from the history stream, before the message that
/// revealed it.
async fn fill_gap(
    backplane: &Weak<Inner>,
    sink: &Arc<dyn Sink>,
    app: &AppId,
    channel: &ChannelName,
    id: u64,
    gap: Gap<'_>,
) {
    metrics::counter!("herald_history_gap_fills_total").increment(1);
    let Some(inner) = backplane.upgrade() else { return };
    let (Inner::Nats(n), Some(ns)) = (&*inner, channel.namespace_name()) else { return };
    match n.read_history(app, &ns, channel, gap.after, gap.limit).await {
        Ok(page) if page.epoch != gap.epoch => {
            tracing::warn!(%app, %channel, "history gap not filled: the stream changed again");
        }
        Ok(page) => {
            for m in page.messages.into_iter().filter(|m| m.seq < gap.before) {
                let at = Position { seq: m.seq, epoch: gap.epoch.to_owned() };
                sink.deliver(app, channel, id, m.payload, Some(&at));
            }
        }
        Err(e) => tracing::warn!(%app, %channel, error = %e, "history gap not filled"),
    }
}

/// The stream, sequence and the channel's previous sequence of a message
/// JetStream republished.
fn republished(msg: &async_nats::Message) -> Option<(&str, u64, u64)> {
    let headers = msg.headers.as_ref()?;
    let stream = headers.get(async_nats::header::NATS_STREAM)?.as_str();
    let seq = headers.get(async_nats::header::NATS_SEQUENCE)?.as_str().parse().ok()?;
    let previous =
        headers.get(async_nats::header::NATS_LAST_SEQUENCE).and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
    Some((stream, seq, previous))
}

/// The JetStream stream advisories after which a stream's epoch is looked
/// up again (`$JS.EVENT.ADVISORY.STREAM.<kind>.<stream>`).
const STREAM_ADVISORIES: [&str; 2] = ["CREATED", "DELETED"];

fn is_stream_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    matches!(e.kind(), GetStreamErrorKind::JetStream(err) if err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

impl NatsBackplane {
    fn check_connected(&self) -> Result<(), BackplaneError> {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            Ok(())
        } else {
            Err(BackplaneError::Unavailable("nats is not connected".into()))
        }
    }

    async fn publish(&self, subject: String, payload: Bytes) -> Result<(), BackplaneError> {
        self.check_connected()?;
        let work = async {
            self.client.publish(subject, payload).await.map_err(|e| BackplaneError::Unavailable(e.to_string()))?;
            let ticket = self.sent.fetch_add(1, Ordering::AcqRel) + 1;
            self.receipt(ticket).await
        };
        match tokio::time::timeout(self.options.publish_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(BackplaneError::Unavailable("nats did not take the message in time".into())),
        }
    }

    /// Waits until the server has the `ticket`-th publish. Rounds run one
    /// at a time; each covers every publish handed to the client before it
    /// started, so under load one round trip answers many publishes.
    async fn receipt(&self, ticket: u64) -> Result<(), BackplaneError> {
        let mut watch = self.received.subscribe();
        loop {
            if *watch.borrow_and_update() >= ticket {
                return Ok(());
            }
            if self.round_running.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                // Ends the round however this future ends (a publish
                // timeout drops it): the next waiter may start another.
                let mut round = RoundGuard { running: &self.round_running, received: &self.received, covered: None };
                if *self.received.borrow() >= ticket {
                    return Ok(());
                }
                let covers = self.sent.load(Ordering::Acquire);
                self.sync().await?;
                round.covered = Some(covers);
                drop(round);
                continue;
            }
            // Another round is under way: its end (or failure) wakes us.
            let _ = watch.changed().await;
        }
    }

    /// Waits until the server processed everything this connection sent so
    /// far: a request nobody answers comes back as "no responders" only
    /// after the server handled the commands before it (a subscription is
    /// then live, and messages published from now on reach it).
    async fn sync(&self) -> Result<(), BackplaneError> {
        use async_nats::RequestErrorKind;
        match self.client.request(self.subjects.sync(), Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == RequestErrorKind::NoResponders => Ok(()),
            Err(e) => Err(BackplaneError::Unavailable(format!("nats did not confirm the subscription: {e}"))),
        }
    }

    /// Follows JetStream's advisories about created and deleted streams, and
    /// forgets the epoch of those of this subject space (a stream deleted
    /// and created again has a new epoch, while its sequence numbers may
    /// look like a continuation to an edge that saw only some of them).
    async fn watch_streams(&self) -> Result<(), BackplaneError> {
        let mut subscribers = Vec::with_capacity(STREAM_ADVISORIES.len());
        for kind in STREAM_ADVISORIES {
            let subject = format!("$JS.EVENT.ADVISORY.STREAM.{kind}.*");
            let sub = self.client.subscribe(subject).await.map_err(|e| BackplaneError::Unavailable(e.to_string()))?;
            subscribers.push(sub);
        }
        self.timed("the advisory subscription", self.sync()).await?;
        let prefix = self.subjects.history_stream_prefix();
        let epochs = self.epochs.clone();
        let task = tokio::spawn(async move {
            let mut advisories = futures_util::stream::select_all(subscribers);
            while let Some(msg) = advisories.next().await {
                // Stream names hold no dot: the last token is the name.
                let Some((_, stream)) = msg.subject.as_str().rsplit_once('.') else { continue };
                if stream.starts_with(&prefix) {
                    tracing::debug!(stream, advisory = %msg.subject, "history stream changed; its epoch is looked up again");
                    epochs.forget(stream);
                }
            }
        });
        if let Some(old) = lock(&self.advisory_task).replace(task) {
            old.abort();
        }
        Ok(())
    }

    async fn attach(&self, sink: Arc<dyn Sink>) -> Result<(), BackplaneError> {
        if self.sink.set(sink.clone()).is_err() {
            return Ok(());
        }
        let mut control = self
            .client
            .subscribe(self.subjects.control())
            .await
            .map_err(|e| BackplaneError::Unavailable(e.to_string()))?;
        self.sync().await?;
        let task = tokio::spawn(async move {
            while let Some(msg) = control.next().await {
                match bus::ControlEvent::decode(msg.payload) {
                    Ok(event) => sink.control(event),
                    Err(e) => tracing::warn!(error = %e, "undecodable control event ignored"),
                }
            }
        });
        *self.control_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(())
    }

    async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        id: u64,
        backplane: Weak<Inner>,
    ) -> Result<SubscriptionInner, BackplaneError> {
        let (sink, sub) = self.subscribe_confirmed(self.subjects.channel(app, channel)).await?;
        let relay = Relay {
            sink,
            app: app.clone(),
            channel: channel.clone(),
            id,
            epochs: self.epochs.clone(),
            backplane,
            gap_limit: self.options.subscription_capacity,
        };
        let task = tokio::spawn(relay.run(sub));
        Ok(SubscriptionInner::Nats(task))
    }

    /// Runs `work` within the publish timeout.
    async fn timed<T>(
        &self,
        what: &str,
        work: impl std::future::Future<Output = Result<T, BackplaneError>>,
    ) -> Result<T, BackplaneError> {
        match tokio::time::timeout(self.options.publish_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(BackplaneError::Unavailable(format!("nats did not answer {what} in time"))),
        }
    }

    async fn ensure_history(&self, app: &AppId, ns: &NamespaceName, spec: &HistorySpec) -> Result<(), BackplaneError> {
        use async_nats::jetstream::stream;
        self.check_connected()?;
        let source = self.subjects.history_stream_subjects(app, ns);
        let config = stream::Config {
            name: self.subjects.history_stream(app, ns),
            description: Some(format!("Herald history of namespace {ns} of app {app}")),
            subjects: vec![source.clone()],
            max_messages_per_subject: i64::from(spec.size),
            max_age: spec.ttl,
            max_bytes: i64::try_from(spec.max_bytes).unwrap_or(i64::MAX),
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            num_replicas: usize::from(spec.replicas.max(1)),
            allow_direct: true,
            republish: Some(stream::Republish {
                source,
                destination: self.subjects.history_republish(app),
                headers_only: false,
            }),
            ..Default::default()
        };
        let js = &self.epochs.js;
        self.timed("the stream update", async {
            js.create_or_update_stream(config)
                .await
                .map_err(|e| BackplaneError::Failed(format!("history stream: {e}")))?;
            Ok(())
        })
        .await
    }

    async fn drop_history(&self, app: &AppId, ns: &NamespaceName) -> Result<(), BackplaneError> {
        self.check_connected()?;
        let name = self.subjects.history_stream(app, ns);
        let js = &self.epochs.js;
        let result = self
            .timed("the stream delete", async {
                match js.delete_stream(&name).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_stream_not_found(&e) => Ok(()),
                    Err(e) => Err(BackplaneError::Failed(format!("history stream: {e}"))),
                }
            })
            .await;
        self.epochs.forget(&name);
        result
    }

    async fn publish_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        message_id: &str,
        payload: Bytes,
    ) -> Result<Position, BackplaneError> {
        use async_nats::jetstream::context::PublishErrorKind;
        self.check_connected()?;
        let subject = self.subjects.history(app, ns, channel);
        let mut headers = async_nats::HeaderMap::new();
        if !message_id.is_empty() {
            // Per channel: one message sent to several channels of the
            // namespace is one message per channel, not a duplicate.
            let dedupe = format!("{}:{channel}:{message_id}", channel.as_str().len());
            headers.insert(async_nats::header::NATS_MESSAGE_ID, dedupe.as_str());
        }
        let js = &self.epochs.js;
        let ack = self
            .timed("the history publish", async {
                let map = |e: async_nats::jetstream::context::PublishError| match e.kind() {
                    PublishErrorKind::StreamNotFound => {
                        BackplaneError::NoHistory(format!("namespace {ns} of app {app} has no history stream"))
                    }
                    _ => BackplaneError::Unavailable(format!("history publish: {e}")),
                };
                js.publish_with_headers(subject, headers, payload).await.map_err(map)?.await.map_err(map)
            })
            .await?;
        let epoch = self
            .epochs
            .get(&ack.stream, ack.sequence)
            .await
            .ok_or_else(|| BackplaneError::Unavailable("history stream epoch unknown".into()))?;
        Ok(Position { seq: ack.sequence, epoch })
    }

    async fn read_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        after_seq: u64,
        limit: usize,
    ) -> Result<HistoryPage, BackplaneError> {
        use async_nats::jetstream::stream::DirectGetErrorKind;
        self.check_connected()?;
        let name = self.subjects.history_stream(app, ns);
        let subject = self.subjects.history(app, ns, channel);
        let js = &self.epochs.js;
        self.timed("the history read", async {
            let stream = js.get_stream(&name).await.map_err(|e| {
                if is_stream_not_found(&e) {
                    BackplaneError::NoHistory(format!("namespace {ns} of app {app} keeps no history"))
                } else {
                    BackplaneError::Unavailable(format!("history read: {e}"))
                }
            })?;
            let info = stream.cached_info();
            let epoch = epoch_of(info);
            let state = &info.state;
            let unavailable = |e: async_nats::jetstream::stream::DirectGetError| {
                BackplaneError::Unavailable(format!("history read: {e}"))
            };
            let complete = if after_seq == 0 {
                // Nothing was ever dropped from the stream.
                state.first_sequence <= 1 && state.messages == state.last_sequence
            } else if after_seq > state.last_sequence {
                false
            } else {
                match stream.direct_get(after_seq).await {
                    Ok(m) => m.subject.as_str() == subject,
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => false,
                    Err(e) => return Err(unavailable(e)),
                }
            };
            let mut messages = Vec::new();
            let mut next = after_seq + 1;
            while messages.len() < limit {
                match stream.direct_get_next_for_subject(subject.as_str(), Some(next)).await {
                    Ok(m) => {
                        next = m.sequence + 1;
                        messages.push(HistoryEntry { seq: m.sequence, payload: m.payload });
                    }
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                    Err(e) => return Err(unavailable(e)),
                }
            }
            let last_seq = match stream.direct_get_last_for_subject(subject.as_str()).await {
                Ok(m) => m.sequence,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => 0,
                Err(e) => return Err(unavailable(e)),
            };
            Ok(HistoryPage { epoch, messages, complete, last_seq })
        })
        .await
    }

    async fn serve_namespaces(&self, source: Arc<dyn NamespaceSource>) -> Result<(), BackplaneError> {
        self.check_connected()?;
        let requests = self
            .client
            .queue_subscribe(self.subjects.all_namespaces(), "herald-control-plane".into())
            .await
            .map_err(|e| BackplaneError::Unavailable(e.to_string()))?;
        self.sync().await?;
        let client = self.client.clone();
        let subjects = self.subjects.clone();
        let concurrency = self.options.request_concurrency.max(1);
        let task = tokio::spawn(requests.for_each_concurrent(concurrency, move |msg| {
            let (client, subjects, source) = (client.clone(), subjects.clone(), source.clone());
            async move {
                let (Some(reply), Some(app)) = (msg.reply, subjects.parse_namespaces(&msg.subject)) else { return };
                let bounds = source.history_bounds();
                let list = match source.namespaces(app).await {
                    Ok(Some(namespaces)) => bus::NamespaceList {
                        app_exists: true,
                        namespaces,
                        error: String::new(),
                        history_max_bytes: bounds.max_bytes,
                        history_replicas: u32::from(bounds.replicas),
                    },
                    Ok(None) => bus::NamespaceList::default(),
                    Err(error) => bus::NamespaceList { error, ..Default::default() },
                };
                if let Err(e) = client.publish(reply, Bytes::from(list.encode_to_vec())).await {
                    tracing::warn!(error = %e, "namespace reply not sent");
                }
            }
        }));
        if let Some(old) = lock(&self.serve_task).replace(task) {
            old.abort();
        }
        Ok(())
    }

    async fn fetch_namespaces(
        &self,
        app: &AppId,
    ) -> Result<Option<(Vec<bus::Namespace>, StreamBounds)>, BackplaneError> {
        use async_nats::RequestErrorKind;
        self.check_connected()?;
        let subject = self.subjects.namespaces(app);
        let reply = self
            .timed("the namespace request", async {
                self.client.request(subject, Bytes::new()).await.map_err(|e| match e.kind() {
                    RequestErrorKind::NoResponders => {
                        BackplaneError::Unavailable("no control plane answers namespace requests".into())
                    }
                    _ => BackplaneError::Unavailable(format!("namespace request: {e}")),
                })
            })
            .await?;
        let list = bus::NamespaceList::decode(reply.payload)
            .map_err(|e| BackplaneError::Failed(format!("undecodable namespace reply: {e}")))?;
        if !list.error.is_empty() {
            return Err(BackplaneError::Unavailable(format!("namespace lookup: {}", list.error)));
        }
        let bounds = StreamBounds::from_list(&list);
        Ok(list.app_exists.then_some((list.namespaces, bounds)))
    }

    /// Subscribes to `subject` and waits until NATS holds the interest
    /// (within the publish timeout). Returns the attached sink too.
    async fn subscribe_confirmed(
        &self,
        subject: String,
    ) -> Result<(Arc<dyn Sink>, async_nats::Subscriber), BackplaneError> {
        let sink = self.sink.get().cloned().ok_or_else(|| BackplaneError::Failed("no sink attached".into()))?;
        self.check_connected()?;
        let sub = self
            .timed("the subscription", async {
                let sub =
                    self.client.subscribe(subject).await.map_err(|e| BackplaneError::Unavailable(e.to_string()))?;
                self.sync().await?;
                Ok(sub)
            })
            .await?;
        Ok((sink, sub))
    }

    async fn subscribe_reports(&self, subject: String, kind: Report) -> Result<SubscriptionInner, BackplaneError> {
        let (sink, mut sub) = self.subscribe_confirmed(subject).await?;
        let subjects = self.subjects.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                match kind {
                    Report::Presence => {
                        let Some((app, channel)) = subjects.parse_presence(&msg.subject) else { continue };
                        match bus::PresenceReport::decode(msg.payload) {
                            Ok(report) if report.app_id == app.as_str() => sink.presence(&app, &channel, report),
                            Ok(_) => tracing::warn!(subject = %msg.subject, "presence report for another app ignored"),
                            Err(e) => tracing::warn!(error = %e, "undecodable presence report ignored"),
                        }
                    }
                    Report::Occupancy => match bus::OccupancyReport::decode(msg.payload) {
                        Ok(report) => sink.occupancy(report),
                        Err(e) => tracing::warn!(error = %e, "undecodable occupancy report ignored"),
                    },
                }
            }
        });
        Ok(SubscriptionInner::Nats(task))
    }
}

/// The in-process bus. Handles made with [`Backplane::local`] on one bus
/// see each other's messages.
#[derive(Clone, Default)]
pub struct LocalBus {
    inner: Arc<LocalBusInner>,
}

impl LocalBus {
    /// A new, empty bus.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[derive(Default)]
struct LocalBusInner {
    next_id: AtomicU64,
    /// Handle id → its sink.
    sinks: Mutex<HashMap<u64, Weak<dyn Sink>>>,
    /// Topic → (handle id, subscription id) holding interest.
    interest: Mutex<HashMap<Topic, Vec<(u64, u64)>>>,
    /// Who answers namespace requests.
    namespaces: Mutex<Option<Arc<dyn NamespaceSource>>>,
    /// The streams of history namespaces. Held while a history message is
    /// stored and delivered, which keeps deliveries in sequence order.
    history: Mutex<LocalHistory>,
}

struct LocalHandle {
    bus: Arc<LocalBusInner>,
    id: u64,
    sink: OnceLock<Arc<dyn Sink>>,
}

impl LocalHandle {
    fn subscribe(&self, topic: Topic, id: u64) -> Result<SubscriptionInner, BackplaneError> {
        if self.sink.get().is_none() {
            return Err(BackplaneError::Failed("no sink attached".into()));
        }
        lock(&self.bus.interest).entry(topic.clone()).or_default().push((self.id, id));
        Ok(SubscriptionInner::Local { bus: Arc::downgrade(&self.bus), topic, handle: self.id, id })
    }
}

impl LocalBusInner {
    fn remove_interest(&self, topic: &Topic, handle: u64, id: u64) {
        let mut interest = lock(&self.interest);
        if let Some(list) = interest.get_mut(topic) {
            list.retain(|&(h, i)| !(h == handle && i == id));
            if list.is_empty() {
                interest.remove(topic);
            }
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, LocalHistory> {
        lock(&self.history)
    }

    /// The sinks interested in `topic`, with their subscription ids.
    fn targets(&self, topic: &Topic) -> Vec<(Arc<dyn Sink>, u64)> {
        let targets: Vec<(u64, u64)> = match lock(&self.interest).get(topic) {
            Some(list) => list.clone(),
            None => return Vec::new(),
        };
        let sinks = lock(&self.sinks);
        targets.iter().filter_map(|(h, id)| sinks.get(h).and_then(Weak::upgrade).map(|s| (s, *id))).collect()
    }

    fn publish(&self, app: &AppId, channel: &ChannelName, payload: Bytes) {
        for (sink, id) in self.targets(&Topic::Channel((app.clone(), channel.clone()))) {
            sink.deliver(app, channel, id, payload.clone(), None);
        }
    }

    fn publish_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        payload: Bytes,
    ) -> Result<Position, BackplaneError> {
        let mut history = self.history();
        let position = history
            .append(app, ns, channel, payload.clone())
            .ok_or_else(|| BackplaneError::NoHistory(format!("namespace {ns} of app {app} has no history stream")))?;
        for (sink, id) in self.targets(&Topic::Channel((app.clone(), channel.clone()))) {
            sink.deliver(app, channel, id, payload.clone(), Some(&position));
        }
        drop(history);
        Ok(position)
    }

    fn publish_presence(&self, app: &AppId, channel: &ChannelName, report: &bus::PresenceReport) {
        let key = (app.clone(), channel.clone());
        let mut targets = self.targets(&Topic::Presence(key));
        targets.extend(self.targets(&Topic::AllPresence));
        for (sink, _) in targets {
            sink.presence(app, channel, report.clone());
        }
    }

    fn publish_occupancy(&self, report: &bus::OccupancyReport) {
        for (sink, _) in self.targets(&Topic::AllOccupancy) {
            sink.occupancy(report.clone());
        }
    }

    fn control(&self, event: &bus::ControlEvent) {
        let sinks: Vec<Arc<dyn Sink>> = lock(&self.sinks).values().filter_map(Weak::upgrade).collect();
        for sink in sinks {
            sink.control(event.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One relay runs per channel with local subscribers, for as long as it
    /// has them: keep its future small (the bound is for debug builds;
    /// release builds are smaller). Inlining the epoch lookup and the gap
    /// fill made it 7.5 KiB.
    #[tokio::test]
    async fn the_channel_relay_future_stays_small() {
        // A client that never connects: the relay only needs to be built.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .expect("client");
        let hub = crate::hub::Hub::new(Backplane::local(&LocalBus::new()));
        let relay = Relay {
            sink: hub,
            app: AppId::new("app1").expect("app"),
            channel: ChannelName::new("chat").expect("channel"),
            id: 1,
            epochs: Arc::new(Epochs { js: async_nats::jetstream::new(client), known: Arc::default() }),
            backplane: Weak::new(),
            gap_limit: 16,
        };
        let run = relay.run(futures_util::stream::pending::<async_nats::Message>());
        let size = size_of_val(&run);
        eprintln!("relay future: {size} bytes");
        assert!(size <= 1024, "the relay future is {size} bytes");
    }
}
