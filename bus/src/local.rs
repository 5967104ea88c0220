//! The in-process bus of the embedded mode and fast tests.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, NamespaceName, bus};

use crate::history::{LocalHistory, Position};
use crate::{BusError, NamespaceSource, Sink, WebhookEventSink, lock};

/// What a local subscription listens to.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Topic {
    Channel(ChannelKey),
    Presence(ChannelKey),
    AllPresence,
    /// One app's occupancy reports.
    Occupancy(AppId),
    AllOccupancy,
}

pub(crate) type ChannelKey = (AppId, ChannelName);

/// Interest of one handle in one topic; dropping it removes the interest.
pub(crate) struct LocalSubscription {
    bus: Weak<LocalBusInner>,
    topic: Topic,
    handle: u64,
    id: u64,
}

impl Drop for LocalSubscription {
    fn drop(&mut self) {
        if let Some(bus) = self.bus.upgrade() {
            bus.remove_interest(&self.topic, self.handle, self.id);
        }
    }
}

/// The in-process bus. Handles made with [`Bus::local`](crate::Bus::local) on one bus
/// see each other's messages.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use herald_bus::{Bus, LocalBus};
/// use herald_proto::{AppId, ChannelName, bus};
///
/// let local = LocalBus::default();
/// let (edge, control_plane) = (Bus::local(&local), Bus::local(&local));
/// assert!(edge.is_connected() && edge.subjects().is_none(), "no NATS, no subjects");
/// // A cache channel keeps its last message, in process as over NATS.
/// let (app, channel) = (AppId::new("app1")?, ChannelName::new("cache-prices")?);
/// let message = bus::ChannelMessage { data: "42".into(), ..Default::default() };
/// control_plane.publish(&app, &channel, &message).await?;
/// assert!(edge.cached_message(&app, &channel).await?.is_some());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct LocalBus {
    pub(crate) inner: Arc<LocalBusInner>,
}

impl LocalBus {
    /// A new, empty bus; its history lives in memory.
    ///
    /// # Examples
    ///
    /// ```
    /// use herald_bus::{Bus, LocalBus};
    ///
    /// let local = LocalBus::new();
    /// // Handles on one LocalBus see each other's messages.
    /// let (edge, control_plane) = (Bus::local(&local), Bus::local(&local));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A new bus whose history is kept in the file at `path` (created when
    /// missing), so it outlives the process: see [`LocalHistory::open`].
    ///
    /// # Errors
    ///
    /// When the file is not a history file or cannot be read or written.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_bus::{Bus, LocalBus};
    ///
    /// let path = std::env::temp_dir().join(format!("herald-doc-bus-{}.log", std::process::id()));
    /// let bus = Bus::local(&LocalBus::with_history_file(&path)?);
    /// # drop(bus);
    /// # std::fs::remove_file(&path)?;
    /// # Ok(()) }
    /// ```
    pub fn with_history_file(path: &std::path::Path) -> Result<Self, crate::HistoryFileError> {
        let history = LocalHistory::open(path)?;
        let inner = LocalBusInner { history: Mutex::new(history), ..LocalBusInner::default() };
        Ok(Self { inner: Arc::new(inner) })
    }
}

#[derive(Default)]
pub(crate) struct LocalBusInner {
    pub(crate) next_id: AtomicU64,
    /// Handle id → its sink.
    pub(crate) sinks: Mutex<HashMap<u64, Weak<dyn Sink>>>,
    /// Topic → (handle id, subscription id) holding interest.
    pub(crate) interest: Mutex<HashMap<Topic, Vec<(u64, u64)>>>,
    /// Who answers namespace requests.
    pub(crate) namespaces: Mutex<Option<Arc<dyn NamespaceSource>>>,
    /// Who stores the webhook events edges report.
    pub(crate) webhook_events: Mutex<Option<Arc<dyn WebhookEventSink>>>,
    /// Who stores usage reports.
    pub(crate) usage: Mutex<Option<Arc<dyn crate::UsageSink>>>,
    /// The streams of history namespaces. Held while a history message is
    /// stored and delivered, which keeps deliveries in sequence order.
    pub(crate) history: Mutex<LocalHistory>,
    /// The last message of each cache channel.
    pub(crate) cache: Mutex<crate::cache::LocalCache>,
    /// Debug-event subscriptions: the app, and where its events go.
    pub(crate) debug_watchers: Mutex<Vec<(AppId, tokio::sync::mpsc::Sender<bus::DebugEvent>)>>,
}

pub(crate) struct LocalHandle {
    pub(crate) bus: Arc<LocalBusInner>,
    pub(crate) id: u64,
    pub(crate) sink: OnceLock<Arc<dyn Sink>>,
}

impl LocalHandle {
    pub(crate) fn subscribe(&self, topic: Topic, id: u64) -> Result<LocalSubscription, BusError> {
        if self.sink.get().is_none() {
            return Err(BusError::NoSink);
        }
        // Room for one: most topics have one subscription per process (an
        // edge's hub), and an empty `Vec` grows to four.
        lock(&self.bus.interest).entry(topic.clone()).or_insert_with(|| Vec::with_capacity(1)).push((self.id, id));
        Ok(LocalSubscription { bus: Arc::downgrade(&self.bus), topic, handle: self.id, id })
    }
}

impl LocalBusInner {
    pub(crate) fn remove_interest(&self, topic: &Topic, handle: u64, id: u64) {
        let mut interest = lock(&self.interest);
        if let Some(list) = interest.get_mut(topic) {
            list.retain(|&(h, i)| !(h == handle && i == id));
            if list.is_empty() {
                interest.remove(topic);
            }
        }
    }

    pub(crate) fn history(&self) -> std::sync::MutexGuard<'_, LocalHistory> {
        lock(&self.history)
    }

    /// The sinks interested in `topic`, with their subscription ids.
    pub(crate) fn targets(&self, topic: &Topic) -> Vec<(Arc<dyn Sink>, u64)> {
        let targets: Vec<(u64, u64)> = match lock(&self.interest).get(topic) {
            Some(list) => list.clone(),
            None => return Vec::new(),
        };
        let sinks = lock(&self.sinks);
        targets.iter().filter_map(|(h, id)| sinks.get(h).and_then(Weak::upgrade).map(|s| (s, *id))).collect()
    }

    pub(crate) fn publish(&self, app: &AppId, channel: &ChannelName, payload: Bytes) {
        for (sink, id) in self.targets(&Topic::Channel((app.clone(), channel.clone()))) {
            sink.deliver(app, channel, id, payload.clone(), None);
        }
    }

    pub(crate) fn publish_history(
        &self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        payload: Bytes,
    ) -> Result<Position, BusError> {
        let mut history = self.history();
        let position = history
            .append(app, ns, channel, payload.clone())
            .map_err(|e| BusError::Unavailable(e.to_string()))?
            .ok_or_else(|| BusError::NoHistory(format!("namespace {ns} of app {app} has no history stream")))?;
        for (sink, id) in self.targets(&Topic::Channel((app.clone(), channel.clone()))) {
            sink.deliver(app, channel, id, payload.clone(), Some(&position));
        }
        drop(history);
        Ok(position)
    }

    pub(crate) fn publish_presence(&self, app: &AppId, channel: &ChannelName, report: &bus::PresenceReport) {
        let key = (app.clone(), channel.clone());
        let mut targets = self.targets(&Topic::Presence(key));
        targets.extend(self.targets(&Topic::AllPresence));
        for (sink, _) in targets {
            sink.presence(app, channel, report.clone());
        }
    }

    pub(crate) fn publish_occupancy(&self, report: &bus::OccupancyReport) {
        let mut targets = self.targets(&Topic::AllOccupancy);
        if let Ok(app) = AppId::new(&report.app_id) {
            targets.extend(self.targets(&Topic::Occupancy(app)));
        }
        for (sink, _) in targets {
            sink.occupancy(report.clone());
        }
    }

    pub(crate) fn publish_debug_event(&self, app: &AppId, event: &bus::DebugEvent) {
        let mut watchers = lock(&self.debug_watchers);
        watchers.retain(|(_, tx)| !tx.is_closed());
        for (_, tx) in watchers.iter().filter(|(a, _)| a == app) {
            // A full subscription drops the event, and counts it.
            if tx.try_send(event.clone()).is_err() {
                metrics::counter!("herald_debug_events_dropped_total").increment(1);
            }
        }
    }

    pub(crate) fn control(&self, event: &bus::ControlEvent) {
        let sinks: Vec<Arc<dyn Sink>> = lock(&self.sinks).values().filter_map(Weak::upgrade).collect();
        for sink in sinks {
            sink.control(event.clone());
        }
    }
}
