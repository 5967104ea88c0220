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
//! Whoever receives (an edge) attaches a [`Sink`]; the backplane hands it
//! every message of the channels it subscribed to, and every control event.
//!
//! A publish resolves once the message was handed to NATS: the client must
//! be connected, and its write buffer holding the message must have been
//! flushed to the server's socket, within [`NatsOptions::publish_timeout`].
//! Otherwise the caller gets [`BackplaneError::Unavailable`] — never a false
//! success. Concurrent publishes share one flush.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use herald_proto::{AppId, ChannelName, SubjectSpace, bus};
use prost::Message as _;
use tokio::task::JoinHandle;

/// Receives what the backplane delivers. Implemented by the edge's hub.
pub trait Sink: Send + Sync + 'static {
    /// A message for `channel` of `app`, as an encoded
    /// [`bus::ChannelMessage`]. `subscription` is the id the subscription was
    /// made with, so late deliveries of an old subscription can be told apart.
    fn deliver(&self, app: &AppId, channel: &ChannelName, subscription: u64, payload: Bytes);

    /// A control event from the control plane.
    fn control(&self, event: bus::ControlEvent);
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
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(5),
            subscription_capacity: 8192,
            connection_name: "herald".to_owned(),
        }
    }
}

/// A handle to the backplane. Cheap to clone.
#[derive(Clone)]
pub struct Backplane {
    inner: Arc<Inner>,
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
    Local { bus: Weak<LocalBusInner>, key: ChannelKey, handle: u64, id: u64 },
}

impl Drop for SubscriptionInner {
    fn drop(&mut self) {
        match self {
            Self::Nats(task) => task.abort(),
            Self::Local { bus, key, handle, id } => {
                if let Some(bus) = bus.upgrade() {
                    bus.remove_interest(key, *handle, *id);
                }
            }
        }
    }
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
        let client = async_nats::ConnectOptions::new()
            .name(&options.connection_name)
            .subscription_capacity(options.subscription_capacity)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(2_000)))
            .event_callback(move |event| {
                let connected = events_connected.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            connected.store(true, Ordering::Release);
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
        let nats = NatsBackplane { client, subjects, options, sink, connected, control_task: Mutex::new(None) };
        Ok(Self { inner: Arc::new(Inner::Nats(nats)) })
    }

    /// A handle on the in-process `bus`.
    #[must_use]
    pub fn local(bus: &LocalBus) -> Self {
        let id = bus.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = LocalHandle { bus: bus.inner.clone(), id, sink: OnceLock::new() };
        Self { inner: Arc::new(Inner::Local(handle)) }
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
            Inner::Nats(n) => n.subscribe(app, channel, id).await?,
            Inner::Local(l) => {
                if l.sink.get().is_none() {
                    return Err(BackplaneError::Failed("no sink attached".into()));
                }
                let key = (app.clone(), channel.clone());
                l.bus.add_interest(key.clone(), l.id, id);
                SubscriptionInner::Local { bus: Arc::downgrade(&l.bus), key, handle: l.id, id }
            }
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Flushes what was published and stops. Used on shutdown.
    pub async fn close(&self) {
        if let Inner::Nats(n) = &*self.inner {
            let _ = tokio::time::timeout(n.options.publish_timeout, n.client.flush()).await;
            if let Some(task) = n.control_task.lock().unwrap_or_else(|e| e.into_inner()).take() {
                task.abort();
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

struct NatsBackplane {
    client: async_nats::Client,
    subjects: SubjectSpace,
    options: NatsOptions,
    sink: Arc<OnceLock<Arc<dyn Sink>>>,
    connected: Arc<AtomicBool>,
    control_task: Mutex<Option<JoinHandle<()>>>,
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
            self.client.flush().await.map_err(|e| BackplaneError::Unavailable(e.to_string()))
        };
        match tokio::time::timeout(self.options.publish_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(BackplaneError::Unavailable("nats did not take the message in time".into())),
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
    ) -> Result<SubscriptionInner, BackplaneError> {
        let sink = self.sink.get().cloned().ok_or_else(|| BackplaneError::Failed("no sink attached".into()))?;
        self.check_connected()?;
        let subject = self.subjects.channel(app, channel);
        let work = async {
            let sub = self.client.subscribe(subject).await.map_err(|e| BackplaneError::Unavailable(e.to_string()))?;
            self.sync().await?;
            Ok::<_, BackplaneError>(sub)
        };
        let mut sub = match tokio::time::timeout(self.options.publish_timeout, work).await {
            Ok(result) => result?,
            Err(_) => return Err(BackplaneError::Unavailable("nats did not take the subscription in time".into())),
        };
        let (app, channel) = (app.clone(), channel.clone());
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                sink.deliver(&app, &channel, id, msg.payload);
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
    /// Channel → (handle id, subscription id) holding interest.
    interest: Mutex<HashMap<ChannelKey, Vec<(u64, u64)>>>,
}

struct LocalHandle {
    bus: Arc<LocalBusInner>,
    id: u64,
    sink: OnceLock<Arc<dyn Sink>>,
}

impl LocalBusInner {
    fn add_interest(&self, key: ChannelKey, handle: u64, id: u64) {
        self.interest.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default().push((handle, id));
    }

    fn remove_interest(&self, key: &ChannelKey, handle: u64, id: u64) {
        let mut interest = self.interest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = interest.get_mut(key) {
            list.retain(|&(h, i)| !(h == handle && i == id));
            if list.is_empty() {
                interest.remove(key);
            }
        }
    }

    fn publish(&self, app: &AppId, channel: &ChannelName, payload: Bytes) {
        let targets: Vec<(u64, u64)> = {
            let interest = self.interest.lock().unwrap_or_else(|e| e.into_inner());
            match interest.get(&(app.clone(), channel.clone())) {
                Some(list) => list.clone(),
                None => return,
            }
        };
        let sinks: Vec<(Arc<dyn Sink>, u64)> = {
            let sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
            targets.iter().filter_map(|(h, id)| sinks.get(h).and_then(Weak::upgrade).map(|s| (s, *id))).collect()
        };
        for (sink, id) in sinks {
            sink.deliver(app, channel, id, payload.clone());
        }
    }

    fn control(&self, event: &bus::ControlEvent) {
        let sinks: Vec<Arc<dyn Sink>> =
            self.sinks.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(Weak::upgrade).collect();
        for sink in sinks {
            sink.control(event.clone());
        }
    }
}
