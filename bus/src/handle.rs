//! [`Bus`]: the handle every user of the bus holds, dispatching to NATS or
//! to the in-process bus.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, NamespaceName, SubjectSpace, bus};
use prost::Message as _;
use tokio::task::JoinHandle;

use crate::app_config::AppConfig;
use crate::history::{HistoryPage, HistorySpec, Position, StreamBounds};
use crate::local::{LocalBus, LocalHandle, LocalSubscription, Topic};
use crate::nats::{NatsBus, NatsOptions, Report};
use crate::{BusError, NamespaceSource, Sink, WebhookEventSink, lock};

/// A handle to the bus. Cheap to clone.
///
/// A node attaches its [`Sink`] and subscribes to channels; any handle
/// publishes. On the in-process bus (one process, `herald dev`):
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use bytes::Bytes;
/// use herald_bus::{Bus, LocalBus, Position, Sink};
/// use herald_proto::{AppId, ChannelName, bus};
///
/// /// Keeps what it is delivered.
/// #[derive(Default)]
/// struct Inbox(Mutex<Vec<Bytes>>);
///
/// impl Sink for Inbox {
///     fn deliver(&self, _: &AppId, _: &ChannelName, _subscription: u64, payload: Bytes, _: Option<&Position>) {
///         self.0.lock().unwrap().push(payload);
///     }
///     fn control(&self, _event: bus::ControlEvent) {}
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let local = LocalBus::default();
/// let (edge, control_plane) = (Bus::local(&local), Bus::local(&local));
/// let inbox = Arc::new(Inbox::default());
/// edge.attach(inbox.clone()).await?;
/// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat")?);
/// let _subscription = edge.subscribe(&app, &channel, 1).await?; // dropped: unsubscribed
/// let message = bus::ChannelMessage { data: Bytes::from_static(b"hello"), ..Default::default() };
/// control_plane.publish(&app, &channel, &message).await?;
/// for _ in 0..100 {
///     if !inbox.0.lock().unwrap().is_empty() {
///         break;
///     }
///     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
/// }
/// assert_eq!(inbox.0.lock().unwrap().len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<Inner>,
    /// Held while a lost history stream is created again: one at a time,
    /// and the publishes that failed meanwhile find it there.
    pub(crate) recreating: Arc<tokio::sync::Mutex<()>>,
}

pub(crate) enum Inner {
    /// Shared with the channels' relays, which hold it weakly (gap fills).
    Nats(Arc<NatsBus>),
    Local(LocalHandle),
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            Inner::Nats(n) => write!(f, "Bus::Nats({:?})", n.subjects),
            Inner::Local(_) => f.write_str("Bus::Local"),
        }
    }
}

/// A live subscription to one channel; dropping it ends the subscription.
///
/// ```
/// # use std::sync::{Arc, Mutex};
/// # use bytes::Bytes;
/// # use herald_bus::{Bus, LocalBus, Position, Sink};
/// # use herald_proto::{AppId, ChannelName, bus};
/// # #[derive(Default)]
/// # struct Count(Mutex<usize>);
/// # impl Sink for Count {
/// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, _: Bytes, _: Option<&Position>) {
/// #         *self.0.lock().unwrap() += 1;
/// #     }
/// #     fn control(&self, _: bus::ControlEvent) {}
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let local = LocalBus::default();
/// let (edge, publisher) = (Bus::local(&local), Bus::local(&local));
/// let count = Arc::new(Count::default()); // a Sink counting deliveries
/// edge.attach(count.clone()).await?;
/// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat")?);
/// let message = bus::ChannelMessage::default();
///
/// let subscription = edge.subscribe(&app, &channel, 1).await?;
/// publisher.publish(&app, &channel, &message).await?; // delivered
/// drop(subscription);
/// publisher.publish(&app, &channel, &message).await?; // nobody listens
/// assert_eq!(*count.0.lock().unwrap(), 1);
/// # Ok(())
/// # }
/// ```
pub struct ChannelSubscription {
    pub(crate) _inner: SubscriptionInner,
}

pub(crate) enum SubscriptionInner {
    /// The subscription's place in its bucket; removed on drop.
    Nats { _route: crate::nats::RouteGuard },
    /// The task relaying a NATS subscription; aborted on drop.
    NatsTask(JoinHandle<()>),
    /// Interest on the in-process bus; removed when dropped.
    Local { _interest: LocalSubscription },
}

impl Drop for SubscriptionInner {
    fn drop(&mut self) {
        if let Self::NatsTask(task) = self {
            task.abort();
        }
    }
}

impl Bus {
    /// Connects to NATS at `url` (e.g. `nats://127.0.0.1:4222`). Returns
    /// once connected; while NATS is unreachable later, operations fail with
    /// A transient [`BusError`] and the client reconnects on its own.
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when NATS cannot be reached at start.
    ///
    /// ```no_run
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_bus::NatsOptions;
    /// use herald_proto::SubjectSpace;
    /// let bus = Bus::connect_nats("nats://127.0.0.1:4222", SubjectSpace::new("herald")?, NatsOptions::default()).await?;
    /// assert!(bus.is_connected());
    /// assert_eq!(bus.subjects().map(|s| s.prefix()), Some("herald"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect_nats(url: &str, subjects: SubjectSpace, options: NatsOptions) -> Result<Self, BusError> {
        let nats = NatsBus::connect(url, subjects, options).await?;
        Ok(Self { inner: Arc::new(Inner::Nats(Arc::new(nats))), recreating: Arc::default() })
    }

    /// A handle on the in-process `bus`.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let local = LocalBus::default();
    /// let (edge, control_plane) = (Bus::local(&local), Bus::local(&local));
    /// assert!(edge.is_connected() && control_plane.is_connected());
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn local(bus: &LocalBus) -> Self {
        let id = bus.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let handle = LocalHandle { bus: bus.inner.clone(), id, sink: OnceLock::new() };
        Self { inner: Arc::new(Inner::Local(handle)), recreating: Arc::default() }
    }

    /// Attaches the receiver of deliveries and control events. Only the
    /// first call counts; a handle has one sink.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// let (edge, publisher) = (Bus::local(&local), Bus::local(&local));
    /// let recorder = Arc::new(Recorder::default()); // a Sink keeping what it gets
    /// edge.attach(recorder.clone()).await?;
    /// publisher.request_presence_sync().await?; // a control event, to every attached handle
    /// assert_eq!(recorder.control.lock().unwrap().len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when the control subject cannot be
    /// subscribed.
    pub async fn attach(&self, sink: Arc<dyn Sink>) -> Result<(), BusError> {
        match &*self.inner {
            Inner::Nats(n) => n.attach(sink).await,
            Inner::Local(l) => {
                let _ = l.sink.set(sink.clone());
                l.bus.sinks.lock().unwrap_or_else(|e| e.into_inner()).insert(l.id, Arc::downgrade(&sink));
                Ok(())
            }
        }
    }

    /// Resolves when the bus connected again after being cut off
    /// (control events sent meanwhile were missed); never, in process.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::local(&LocalBus::default());
    /// let waited = tokio::time::timeout(std::time::Duration::from_millis(10), bus.reconnected()).await;
    /// assert!(waited.is_err(), "an in-process bus is never cut off");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reconnected(&self) {
        match &*self.inner {
            Inner::Nats(n) => n.reconnected.notified().await,
            Inner::Local(_) => std::future::pending().await,
        }
    }

    /// Whether the bus is connected now.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(Bus::local(&LocalBus::default()).is_connected());
    /// # Ok(())
    /// # }
    /// ```
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

    /// Publishes a channel message; resolves once the bus accepted it.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use herald_proto::ChannelName;
    /// let bus = Bus::local(&LocalBus::default());
    /// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat:lobby")?);
    /// let message = bus::ChannelMessage { data: "hello".into(), id: "m1".into(), ..Default::default() };
    /// bus.publish(&app, &channel, &message).await?; // nobody subscribed: delivered to no one
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when NATS is not connected or did not
    /// take the message within the publish timeout.
    pub async fn publish(
        &self,
        app: &AppId,
        channel: &ChannelName,
        message: &bus::ChannelMessage,
    ) -> Result<(), BusError> {
        self.publish_encoded(app, channel, Bytes::from(message.encode_to_vec())).await
    }

    /// Like [`Self::publish`], with the [`bus::ChannelMessage`] already
    /// encoded.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use prost::Message as _;
    /// # let local = LocalBus::default();
    /// # let (edge, publisher) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// # edge.attach(recorder.clone()).await?;
    /// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat")?);
    /// let _subscription = edge.subscribe(&app, &channel, 1).await?;
    /// // Encoded once, e.g. to publish the same bytes to several channels.
    /// let payload = Bytes::from(bus::ChannelMessage { data: "hi".into(), ..Default::default() }.encode_to_vec());
    /// publisher.publish_encoded(&app, &channel, payload.clone()).await?;
    /// assert_eq!(recorder.messages.lock().unwrap()[0].0, payload);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_encoded(&self, app: &AppId, channel: &ChannelName, payload: Bytes) -> Result<(), BusError> {
        let cache = crate::cache::is_cache_channel(channel);
        match &*self.inner {
            Inner::Nats(n) => {
                if cache {
                    // Boxed: only cache channels store, and inline the
                    // write would weigh on every publish's future.
                    Box::pin(n.store_cached(app, channel, payload.clone())).await?;
                }
                n.publish(n.subjects.channel(app, channel), payload).await
            }
            Inner::Local(l) => {
                if cache {
                    lock(&l.bus.cache).store(
                        (app.clone(), channel.clone()),
                        payload.clone(),
                        std::time::Instant::now(),
                    );
                }
                l.bus.publish(app, channel, payload);
                Ok(())
            }
        }
    }

    /// The last message published to a cache channel (see the `cache`
    /// module), as an encoded [`bus::ChannelMessage`]; `None` when none is
    /// kept (never published, expired, or not a cache channel).
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use herald_proto::ChannelName;
    /// let bus = Bus::local(&LocalBus::default());
    /// let app = AppId::new("app1")?;
    /// let (cached, plain) = (ChannelName::new("cache-prices")?, ChannelName::new("prices")?);
    /// let message = bus::ChannelMessage { data: "42".into(), ..Default::default() };
    /// bus.publish(&app, &cached, &message).await?;
    /// bus.publish(&app, &plain, &message).await?;
    /// assert!(bus.cached_message(&app, &cached).await?.is_some());
    /// assert_eq!(bus.cached_message(&app, &plain).await?, None);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when NATS cannot be asked.
    pub async fn cached_message(&self, app: &AppId, channel: &ChannelName) -> Result<Option<Bytes>, BusError> {
        if !crate::cache::is_cache_channel(channel) {
            return Ok(None);
        }
        match &*self.inner {
            Inner::Nats(n) => n.read_cached(app, channel).await,
            Inner::Local(l) => Ok(lock(&l.bus.cache).get(&(app.clone(), channel.clone()), std::time::Instant::now())),
        }
    }

    /// Publishes a control event to every edge.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (edge, control_plane) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// # edge.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// let event = bus::ControlEvent {
    ///     timestamp_ms: herald_bus::now_ms(),
    ///     kind: Some(bus::control_event::Kind::NamespacesChanged(bus::NamespacesChanged { app_id: "app1".into() })),
    /// };
    /// control_plane.publish_control(&event).await?;
    /// assert_eq!(*recorder.control.lock().unwrap(), [event]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_control(&self, event: &bus::ControlEvent) -> Result<(), BusError> {
        match &*self.inner {
            Inner::Nats(n) => n.publish(n.subjects.control(), Bytes::from(event.encode_to_vec())).await,
            Inner::Local(l) => {
                l.bus.control(event);
                Ok(())
            }
        }
    }

    /// Starts receiving the messages of one channel; they go to the sink with
    /// `id`. Resolves once the bus holds the interest (for NATS: the
    /// server confirmed it), so a message published after this returns is
    /// delivered.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (edge, publisher) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// edge.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat")?);
    /// let _subscription = edge.subscribe(&app, &channel, 7).await?;
    /// publisher.publish(&app, &channel, &bus::ChannelMessage::default()).await?;
    /// assert_eq!(recorder.messages.lock().unwrap().len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when NATS is not connected or did not
    /// take the subscription in time; `Failed` when no sink is attached.
    pub async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        id: u64,
    ) -> Result<ChannelSubscription, BusError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => {
                SubscriptionInner::Nats { _route: n.subscribe(app, channel, id, Arc::downgrade(n)).await? }
            }
            Inner::Local(l) => {
                if l.sink.get().is_none() {
                    return Err(BusError::NoSink);
                }
                SubscriptionInner::Local { _interest: l.subscribe(Topic::Channel((app.clone(), channel.clone())), id)? }
            }
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Creates the stream that keeps the history of one namespace's
    /// channels, or changes its bounds.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::time::Duration;
    /// # use herald_bus::HistorySpec;
    /// # use herald_proto::{ChannelName, NamespaceName};
    /// # let local = LocalBus::default();
    /// # let bus = Bus::local(&local);
    /// # let (app, ns, channel) = (AppId::new("app1")?, NamespaceName::new("chat")?, ChannelName::new("chat:lobby")?);
    /// # let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// bus.ensure_history(&app, &ns, &spec).await?;
    /// bus.ensure_history(&app, &ns, &HistorySpec { size: 10, ..spec }).await?; // new bounds
    /// let stored = bus.publish_history(&app, &channel, &bus::ChannelMessage::default()).await?;
    /// assert_eq!(stored.seq, 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when JetStream did not answer;
    /// `Failed` when it refused the stream.
    pub async fn ensure_history(&self, app: &AppId, ns: &NamespaceName, spec: &HistorySpec) -> Result<(), BusError> {
        match &*self.inner {
            Inner::Nats(n) => n.ensure_history(app, ns, spec).await,
            Inner::Local(l) => l.bus.history().ensure(app, ns, spec).map_err(|e| BusError::Unavailable(e.to_string())),
        }
    }

    /// Deletes a namespace's stream and the history it held. Deleting a
    /// stream that does not exist succeeds.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::time::Duration;
    /// # use herald_bus::HistorySpec;
    /// # use herald_proto::{ChannelName, NamespaceName};
    /// # let local = LocalBus::default();
    /// # let bus = Bus::local(&local);
    /// # let (app, ns, channel) = (AppId::new("app1")?, NamespaceName::new("chat")?, ChannelName::new("chat:lobby")?);
    /// # let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// # bus.ensure_history(&app, &ns, &spec).await?;
    /// bus.publish_history(&app, &channel, &bus::ChannelMessage::default()).await?;
    /// bus.drop_history(&app, &ns).await?;
    /// assert!(bus.read_history(&app, &channel, 0, 10).await.is_err(), "the history is gone");
    /// bus.drop_history(&app, &ns).await?; // again: nothing to do
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::ensure_history`].
    pub async fn drop_history(&self, app: &AppId, ns: &NamespaceName) -> Result<(), BusError> {
        match &*self.inner {
            Inner::Nats(n) => n.drop_history(app, ns).await,
            Inner::Local(l) => l.bus.history().drop_stream(app, ns).map_err(|e| BusError::Unavailable(e.to_string())),
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
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::time::Duration;
    /// # use herald_bus::HistorySpec;
    /// # use herald_proto::{ChannelName, NamespaceName};
    /// # let local = LocalBus::default();
    /// # let bus = Bus::local(&local);
    /// # let (app, ns, channel) = (AppId::new("app1")?, NamespaceName::new("chat")?, ChannelName::new("chat:lobby")?);
    /// # let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// bus.ensure_history(&app, &ns, &spec).await?;
    /// let message = bus::ChannelMessage { data: "hello".into(), id: "m1".into(), ..Default::default() };
    /// let first = bus.publish_history(&app, &channel, &message).await?;
    /// let second = bus.publish_history(&app, &channel, &message).await?;
    /// assert_eq!((first.seq, second.seq), (1, 2));
    /// assert_eq!(first.epoch, second.epoch);
    /// // A channel without a namespace keeps no history.
    /// let plain = ChannelName::new("lobby")?;
    /// assert!(matches!(bus.publish_history(&app, &plain, &message).await, Err(herald_bus::BusError::NoHistory(_))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BusError::NoHistory`] when the channel has no namespace, or
    /// the namespace no stream and none could be created (its namespace
    /// keeps no history, or the control plane or JetStream did not answer);
    /// `Unavailable` when JetStream did not store it in time.
    pub async fn publish_history(
        &self,
        app: &AppId,
        channel: &ChannelName,
        message: &bus::ChannelMessage,
    ) -> Result<Position, BusError> {
        let ns = history_namespace(channel)?;
        let payload = Bytes::from(message.encode_to_vec());
        let reason = match self.store_history(app, &ns, channel, &message.id, payload.clone()).await {
            Err(BusError::NoHistory(reason)) => reason,
            other => return other,
        };
        let recreating = self.recreating.lock().await;
        // Another publish may have created it while this one waited.
        match self.store_history(app, &ns, channel, &message.id, payload.clone()).await {
            Err(BusError::NoHistory(_)) => {}
            other => return other,
        }
        let spec = match self.current_history_spec(app, &ns).await {
            Ok(Some(spec)) => spec,
            Ok(None) => return Err(BusError::NoHistory(reason)),
            Err(e) => {
                tracing::warn!(%app, namespace = %ns, error = %e, "history stream missing; namespace not looked up");
                return Err(BusError::NoHistory(format!("{reason}; its namespace was not looked up: {e}")));
            }
        };
        if let Err(e) = self.ensure_history(app, &ns, &spec).await {
            tracing::warn!(%app, namespace = %ns, error = %e, "history stream missing and not created again");
            return Err(BusError::NoHistory(format!("{reason}; creating it again failed: {e}")));
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
    ) -> Result<Position, BusError> {
        match &*self.inner {
            Inner::Nats(n) => n.publish_history(app, ns, channel, message_id, payload).await,
            Inner::Local(l) => l.bus.publish_history(app, ns, channel, payload),
        }
    }

    /// The bounds of the namespace's stream as the control plane has them
    /// now; `None` when the namespace (or the app) keeps no history.
    async fn current_history_spec(&self, app: &AppId, ns: &NamespaceName) -> Result<Option<HistorySpec>, BusError> {
        let Some(AppConfig { namespaces, bounds, .. }) = self.app_config(app).await? else { return Ok(None) };
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
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::time::Duration;
    /// # use herald_bus::HistorySpec;
    /// # use herald_proto::{ChannelName, NamespaceName};
    /// # let local = LocalBus::default();
    /// # let bus = Bus::local(&local);
    /// # let (app, ns, channel) = (AppId::new("app1")?, NamespaceName::new("chat")?, ChannelName::new("chat:lobby")?);
    /// # let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// # bus.ensure_history(&app, &ns, &spec).await?;
    /// for text in ["one", "two", "three"] {
    ///     bus.publish_history(&app, &channel, &bus::ChannelMessage { data: text.into(), ..Default::default() }).await?;
    /// }
    /// let page = bus.read_history(&app, &channel, 1, 10).await?; // after the first
    /// let seqs: Vec<u64> = page.messages.iter().map(|m| m.seq).collect();
    /// assert_eq!((seqs, page.last_seq, page.complete), (vec![2, 3], 3, true));
    /// # Ok(())
    /// # }
    /// ```
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
    ) -> Result<HistoryPage, BusError> {
        let ns = history_namespace(channel)?;
        match &*self.inner {
            Inner::Nats(n) => n.read_history(app, &ns, channel, after_seq, limit).await,
            Inner::Local(l) => l
                .bus
                .history()
                .read(app, &ns, channel, after_seq, limit)
                .ok_or_else(|| BusError::NoHistory(format!("namespace {ns} of app {app} keeps no history"))),
        }
    }

    /// Answers edges' namespace requests from `source` (the control plane
    /// calls this once at start).
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::future::BoxFuture;
    /// use herald_bus::NamespaceSource;
    ///
    /// /// No app has namespaces of its own.
    /// struct Defaults;
    /// impl NamespaceSource for Defaults {
    ///     fn namespaces(&self, _: AppId) -> BoxFuture<'static, Result<Option<Vec<bus::Namespace>>, String>> {
    ///         Box::pin(async { Ok(Some(Vec::new())) })
    ///     }
    /// }
    ///
    /// let local = LocalBus::default();
    /// Bus::local(&local).serve_namespaces(std::sync::Arc::new(Defaults)).await?;
    /// let namespaces = Bus::local(&local).fetch_namespaces(&AppId::new("app1")?).await?;
    /// assert_eq!(namespaces, Some(Vec::new()));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when the request subject cannot be
    /// subscribed.
    pub async fn serve_namespaces(&self, source: Arc<dyn NamespaceSource>) -> Result<(), BusError> {
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
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::future::BoxFuture;
    /// use herald_bus::NamespaceSource;
    ///
    /// /// Only `app1` exists.
    /// struct OneApp;
    /// impl NamespaceSource for OneApp {
    ///     fn namespaces(&self, app: AppId) -> BoxFuture<'static, Result<Option<Vec<bus::Namespace>>, String>> {
    ///         Box::pin(async move { Ok((app.as_str() == "app1").then(Vec::new)) })
    ///     }
    /// }
    ///
    /// let local = LocalBus::default();
    /// Bus::local(&local).serve_namespaces(std::sync::Arc::new(OneApp)).await?;
    /// let edge = Bus::local(&local);
    /// assert!(edge.fetch_namespaces(&AppId::new("app1")?).await?.is_some());
    /// assert_eq!(edge.fetch_namespaces(&AppId::new("app2")?).await?, None);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BusError::NoControlPlane`] when no control plane answered in
    /// time.
    pub async fn fetch_namespaces(&self, app: &AppId) -> Result<Option<Vec<bus::Namespace>>, BusError> {
        Ok(self.app_config(app).await?.map(|config| config.namespaces))
    }

    /// Asks the control plane for an app's configuration: its namespaces,
    /// its Pusher settings and the bounds of history streams. `None` when
    /// the app does not exist.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_bus::StreamBounds;
    /// // An in-process bus that serves no namespaces: every app takes the defaults.
    /// let config = Bus::local(&LocalBus::default()).app_config(&AppId::new("app1")?).await?.expect("an app");
    /// assert!(config.namespaces.is_empty() && config.pusher.is_none());
    /// assert_eq!(config.bounds, StreamBounds::DEFAULT);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BusError::NoControlPlane`] when no control plane answered in
    /// time, [`BusError::Unavailable`] when it could not look them up.
    pub async fn app_config(&self, app: &AppId) -> Result<Option<AppConfig>, BusError> {
        match &*self.inner {
            Inner::Nats(n) => n.fetch_namespaces(app).await,
            Inner::Local(l) => {
                let source = lock(&l.bus.namespaces).clone();
                match source {
                    Some(source) => AppConfig::from_list(crate::app_config::answer(&*source, app.clone()).await),
                    // An in-process bus without a control plane: nothing is
                    // configured, every channel takes the defaults.
                    None => Ok(Some(AppConfig {
                        namespaces: Vec::new(),
                        pusher: None,
                        bounds: StreamBounds::DEFAULT,
                        webhook_events: Vec::new(),
                    })),
                }
            }
        }
    }

    /// Stores the webhook events edges report, with `sink` (the control
    /// plane calls this once at start). Over NATS, the requests are shared
    /// among the control planes of the subject space (a queue group), each
    /// handled in a task of its own; past `request_concurrency` at once, a
    /// request is answered [`webhook_events::BUSY`](crate::webhook_events::BUSY)
    /// (the edge retries). Events that fail [`webhook_events::check`](crate::webhook_events::check) are
    /// answered with why and never reach the sink.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::future::BoxFuture;
    /// use herald_bus::{BusError, WebhookEventSink};
    ///
    /// /// Stores nothing, successfully.
    /// struct Discard;
    /// impl WebhookEventSink for Discard {
    ///     fn store(&self, _: AppId, _: bus::WebhookEvent) -> BoxFuture<'static, Result<(), String>> {
    ///         Box::pin(async { Ok(()) })
    ///     }
    /// }
    ///
    /// let local = LocalBus::default();
    /// let edge = Bus::local(&local);
    /// let event = bus::WebhookEvent {
    ///     id: "ev_1".into(), app_id: "app1".into(), channel: "cache-prices".into(), kind: "cache_miss".into(),
    ///     ..Default::default()
    /// };
    /// let app = AppId::new("app1")?;
    /// assert_eq!(edge.report_webhook_event(&app, &event).await, Err(BusError::NoControlPlane));
    /// Bus::local(&local).serve_webhook_events(std::sync::Arc::new(Discard)).await?;
    /// edge.report_webhook_event(&app, &event).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when the request subject cannot be
    /// subscribed.
    pub async fn serve_webhook_events(&self, sink: Arc<dyn WebhookEventSink>) -> Result<(), BusError> {
        match &*self.inner {
            Inner::Nats(n) => n.serve_webhook_events(sink).await,
            Inner::Local(l) => {
                *lock(&l.bus.webhook_events) = Some(sink);
                Ok(())
            }
        }
    }

    /// Reports a webhook event seen on this edge to the control plane, and
    /// resolves once it is stored there. Sending the same event (same id)
    /// again is safe: it is stored once.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_bus::BusError;
    /// let edge = Bus::local(&LocalBus::default());
    /// let app = AppId::new("app1")?;
    /// // Checked before anything is sent: `channel_occupied` is the control plane's to see.
    /// let event = bus::WebhookEvent {
    ///     id: "ev_1".into(), app_id: "app1".into(), channel: "chat".into(), kind: "channel_occupied".into(),
    ///     ..Default::default()
    /// };
    /// assert!(matches!(edge.report_webhook_event(&app, &event).await, Err(BusError::Failed(_))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BusError::Failed`] when the event fails
    /// [`webhook_events::check`](crate::webhook_events::check) (nothing is
    /// sent); [`BusError::NoControlPlane`] when no control plane serves
    /// webhook events; [`BusError::Unavailable`] when the control plane
    /// answered that it did not store it (busy, or its store failed), or
    /// NATS failed the request; [`BusError::Timeout`] when no answer came
    /// within the publish timeout.
    pub async fn report_webhook_event(&self, app: &AppId, event: &bus::WebhookEvent) -> Result<(), BusError> {
        crate::webhook_events::check(app, event).map_err(BusError::Failed)?;
        match &*self.inner {
            Inner::Nats(n) => n.report_webhook_event(app, event).await,
            Inner::Local(l) => {
                let sink = lock(&l.bus.webhook_events).clone().ok_or(BusError::NoControlPlane)?;
                sink.store(app.clone(), event.clone())
                    .await
                    .map_err(|error| BusError::Unavailable(format!("webhook event not stored: {error}")))
            }
        }
    }

    /// Stores the usage reports nodes send, with `sink` (the control plane
    /// calls this once at start). Over NATS the requests are shared among
    /// the control planes of the subject space (a queue group), as webhook
    /// events are; past `request_concurrency` at once a request is answered
    /// [`usage::BUSY`](crate::usage::BUSY). Reports that fail
    /// [`usage::check`](crate::usage::check) are answered with why.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::future::BoxFuture;
    /// use herald_bus::UsageSink;
    ///
    /// /// Refuses every report for now: the node sends it again later.
    /// struct Down;
    /// impl UsageSink for Down {
    ///     fn store(&self, _: bus::UsageReport) -> BoxFuture<'static, Result<(), String>> {
    ///         Box::pin(async { Err("database down".to_owned()) })
    ///     }
    /// }
    ///
    /// let local = LocalBus::default();
    /// Bus::local(&local).serve_usage(std::sync::Arc::new(Down)).await?;
    /// let report = bus::UsageReport { node_id: "edge-1".into(), ..Default::default() };
    /// let refused = Bus::local(&local).report_usage(&report).await.unwrap_err();
    /// assert!(refused.is_transient() && refused.to_string().contains("database down"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// A transient [`BusError`] when the request subject cannot be
    /// subscribed.
    pub async fn serve_usage(&self, sink: Arc<dyn crate::UsageSink>) -> Result<(), BusError> {
        match &*self.inner {
            Inner::Nats(n) => n.serve_usage(sink).await,
            Inner::Local(l) => {
                *lock(&l.bus.usage) = Some(sink);
                Ok(())
            }
        }
    }

    /// Sends a usage report to the control plane, and resolves once it is
    /// stored there. Sending the same batches again is safe: each is
    /// counted once.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_bus::BusError;
    /// let node = Bus::local(&LocalBus::default());
    /// let report = bus::UsageReport { node_id: "edge-1".into(), ..Default::default() };
    /// assert_eq!(node.report_usage(&report).await, Err(BusError::NoControlPlane));
    /// let nameless = bus::UsageReport::default(); // checked before it is sent
    /// assert!(matches!(node.report_usage(&nameless).await, Err(BusError::Failed(_))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`BusError::Failed`] when the report fails
    /// [`usage::check`](crate::usage::check) (nothing is sent);
    /// [`BusError::NoControlPlane`] when no control plane serves usage;
    /// [`BusError::Unavailable`] when it answered that it did not store it;
    /// [`BusError::Timeout`] when no answer came within the publish
    /// timeout.
    pub async fn report_usage(&self, report: &bus::UsageReport) -> Result<(), BusError> {
        crate::usage::check(report).map_err(BusError::Failed)?;
        match &*self.inner {
            Inner::Nats(n) => n.report_usage(report).await,
            Inner::Local(l) => {
                let sink = lock(&l.bus.usage).clone().ok_or(BusError::NoControlPlane)?;
                sink.store(report.clone())
                    .await
                    .map_err(|error| BusError::Unavailable(format!("usage report not stored: {error}")))
            }
        }
    }

    /// Publishes a presence report about one channel.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (edge, other_edge) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// edge.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// let (app, channel) = (AppId::new("app1")?, ChannelName::new("presence-room")?);
    /// let _following = edge.subscribe_presence(&app, &channel).await?;
    /// let report = bus::PresenceReport { edge_id: "edge-2".into(), ..Default::default() };
    /// other_edge.publish_presence(&app, &channel, &report).await?;
    /// assert_eq!(recorder.presence.lock().unwrap().len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        report: &bus::PresenceReport,
    ) -> Result<(), BusError> {
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
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (control_plane, edge) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// control_plane.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// let _all = control_plane.subscribe_occupancy_all().await?;
    /// let app = AppId::new("app1")?;
    /// let counts = vec![bus::ChannelCount { channel: "chat".into(), subscribers: 3 }];
    /// let report = bus::OccupancyReport { edge_id: "edge-1".into(), app_id: "app1".into(), channels: counts, ..Default::default() };
    /// edge.publish_occupancy(&app, &report).await?;
    /// assert_eq!(*recorder.occupancy.lock().unwrap(), [report]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_occupancy(&self, app: &AppId, report: &bus::OccupancyReport) -> Result<(), BusError> {
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
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (edge, other_edge) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// edge.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// let app = AppId::new("app1")?;
    /// let (room, other) = (ChannelName::new("presence-room")?, ChannelName::new("presence-other")?);
    /// let following = edge.subscribe_presence(&app, &room).await?;
    /// let report = bus::PresenceReport { edge_id: "edge-2".into(), ..Default::default() };
    /// other_edge.publish_presence(&app, &room, &report).await?;
    /// other_edge.publish_presence(&app, &other, &report).await?; // not followed
    /// drop(following);
    /// other_edge.publish_presence(&app, &room, &report).await?; // no longer followed
    /// assert_eq!(recorder.presence.lock().unwrap().len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::subscribe`].
    pub async fn subscribe_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<ChannelSubscription, BusError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => SubscriptionInner::NatsTask(
                n.subscribe_reports(n.subjects.presence(app, channel), Report::Presence).await?,
            ),
            Inner::Local(l) => {
                SubscriptionInner::Local { _interest: l.subscribe(Topic::Presence((app.clone(), channel.clone())), 0)? }
            }
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Starts receiving every presence report of every app (for the control
    /// plane).
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (control_plane, edge) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// control_plane.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// let _all = control_plane.subscribe_presence_all().await?;
    /// let report = bus::PresenceReport { edge_id: "edge-1".into(), ..Default::default() };
    /// for (app, channel) in [("app1", "presence-a"), ("app2", "presence-b")] {
    ///     edge.publish_presence(&AppId::new(app)?, &ChannelName::new(channel)?, &report).await?;
    /// }
    /// assert_eq!(recorder.presence.lock().unwrap().len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::subscribe`].
    pub async fn subscribe_presence_all(&self) -> Result<ChannelSubscription, BusError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => {
                SubscriptionInner::NatsTask(n.subscribe_reports(n.subjects.all_presence(), Report::Presence).await?)
            }
            Inner::Local(l) => SubscriptionInner::Local { _interest: l.subscribe(Topic::AllPresence, 0)? },
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Starts receiving every occupancy report (for the control plane); they
    /// go to [`Sink::occupancy`].
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (control_plane, edge) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// control_plane.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// let _all = control_plane.subscribe_occupancy_all().await?;
    /// for app in ["app1", "app2"] {
    ///     let report = bus::OccupancyReport { edge_id: "edge-1".into(), app_id: app.into(), ..Default::default() };
    ///     edge.publish_occupancy(&AppId::new(app)?, &report).await?;
    /// }
    /// assert_eq!(recorder.occupancy.lock().unwrap().len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::subscribe`].
    pub async fn subscribe_occupancy_all(&self) -> Result<ChannelSubscription, BusError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => {
                SubscriptionInner::NatsTask(n.subscribe_reports(n.subjects.all_occupancy(), Report::Occupancy).await?)
            }
            Inner::Local(l) => SubscriptionInner::Local { _interest: l.subscribe(Topic::AllOccupancy, 0)? },
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Starts receiving the occupancy reports of one app (for an edge that
    /// tells its subscribers their channels' subscriber counts); they go to
    /// [`Sink::occupancy`].
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (edge, other_edge) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// edge.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// let _app1 = edge.subscribe_occupancy(&AppId::new("app1")?).await?;
    /// for app in ["app1", "app2"] {
    ///     let report = bus::OccupancyReport { edge_id: "edge-2".into(), app_id: app.into(), ..Default::default() };
    ///     other_edge.publish_occupancy(&AppId::new(app)?, &report).await?;
    /// }
    /// let apps: Vec<String> = recorder.occupancy.lock().unwrap().iter().map(|r| r.app_id.clone()).collect();
    /// assert_eq!(apps, ["app1"]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::subscribe`].
    pub async fn subscribe_occupancy(&self, app: &AppId) -> Result<ChannelSubscription, BusError> {
        let inner = match &*self.inner {
            Inner::Nats(n) => {
                SubscriptionInner::NatsTask(n.subscribe_reports(n.subjects.occupancy(app), Report::Occupancy).await?)
            }
            Inner::Local(l) => SubscriptionInner::Local { _interest: l.subscribe(Topic::Occupancy(app.clone()), 0)? },
        };
        Ok(ChannelSubscription { _inner: inner })
    }

    /// Asks every edge to send its presence snapshots and occupancy now.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # use std::sync::{Arc, Mutex};
    /// # use bytes::Bytes;
    /// # use herald_bus::{Position, Sink};
    /// # use herald_proto::{ChannelName};
    /// # #[derive(Default)]
    /// # struct Recorder { messages: Mutex<Vec<(Bytes, Option<Position>)>>, control: Mutex<Vec<bus::ControlEvent>>, occupancy: Mutex<Vec<bus::OccupancyReport>>, presence: Mutex<Vec<bus::PresenceReport>> }
    /// # impl Sink for Recorder {
    /// #     fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, payload: Bytes, position: Option<&Position>) {
    /// #         self.messages.lock().unwrap().push((payload, position.cloned()));
    /// #     }
    /// #     fn control(&self, event: bus::ControlEvent) { self.control.lock().unwrap().push(event); }
    /// #     fn presence(&self, _: &AppId, _: &ChannelName, report: bus::PresenceReport) { self.presence.lock().unwrap().push(report); }
    /// #     fn occupancy(&self, report: bus::OccupancyReport) { self.occupancy.lock().unwrap().push(report); }
    /// # }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let local = LocalBus::default();
    /// # let (edge, control_plane) = (Bus::local(&local), Bus::local(&local));
    /// # let recorder = Arc::new(Recorder::default());
    /// edge.attach(recorder.clone()).await?; // a Sink keeping what it gets
    /// control_plane.request_presence_sync().await?;
    /// let kind = recorder.control.lock().unwrap()[0].kind.clone();
    /// assert!(matches!(kind, Some(bus::control_event::Kind::PresenceSyncAll(_))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn request_presence_sync(&self) -> Result<(), BusError> {
        let event = bus::ControlEvent {
            timestamp_ms: crate::now_ms(),
            kind: Some(bus::control_event::Kind::PresenceSyncAll(bus::PresenceSyncAll {})),
        };
        self.publish_control(&event).await
    }

    /// Flushes what was published and stops. Used on shutdown.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use herald_proto::ChannelName;
    /// let bus = Bus::local(&LocalBus::default());
    /// bus.publish(&AppId::new("app1")?, &ChannelName::new("chat")?, &bus::ChannelMessage::default()).await?;
    /// bus.close().await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn close(&self) {
        if let Inner::Nats(n) = &*self.inner {
            let _ = tokio::time::timeout(n.options.publish_timeout, n.client.flush()).await;
            for task in [&n.control_task, &n.serve_task, &n.webhook_task, &n.usage_task, &n.advisory_task] {
                if let Some(task) = lock(task).take() {
                    task.abort();
                }
            }
        }
    }

    /// The subject space, for the NATS bus.
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    /// use herald_proto::{AppId, bus};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Bus::local(&LocalBus::default()).subjects(), None);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn subjects(&self) -> Option<&SubjectSpace> {
        match &*self.inner {
            Inner::Nats(n) => Some(&n.subjects),
            Inner::Local(_) => None,
        }
    }
}

/// The namespace of a channel that is to have history.
pub(crate) fn history_namespace(channel: &ChannelName) -> Result<NamespaceName, BusError> {
    channel.namespace_name().ok_or_else(|| BusError::NoHistory(format!("channel {channel} has no namespace")))
}
