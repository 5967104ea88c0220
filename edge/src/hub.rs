//! The hub: which local connections subscribe to which channels, and the
//! fan-out of every bus message to them.
//!
//! - The map from (app, channel) to subscribers is sharded; each shard sits
//!   behind a plain mutex that is never held across an `.await`.
//! - The first local subscriber of a channel makes the bus subscribe
//!   to it; the last one leaving drops that subscription. Concurrent first
//!   subscribers share one bus subscribe and all wait for it, so an
//!   `ok` reply always means "messages published from now on arrive".
//! - A message is decoded and encoded into its outgoing WebSocket frame
//!   once; the same `Bytes` go into every subscriber's [`Outbox`]. A full
//!   outbox closes its connection as a slow consumer; nobody waits for it.
//! - The hub also keeps the registry of live connections, for key
//!   revocation, app deletion and draining.
//! - A subscriber that recovers history is *held*: live frames for it are
//!   kept aside, with their position, until the replay is in its outbox;
//!   [`Hub::release`] then passes on those the replay did not cover (same
//!   stream epoch, sequence not above the replay's).
//! - For presence channels the hub follows the channel's presence reports
//!   (a [`PresenceTable`]), turns member changes into join/leave events for
//!   its subscribers, answers member queries, and publishes its own
//!   connections' entries and every channel's subscriber count periodically
//!   ([`Hub::report_loop`]).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::client::{self, server_frame};
use herald_proto::{AppId, ChannelName, CloseCode, KeyId, bus};
use prost::Message as _;
use tokio::sync::OnceCell;

use crate::auth::Revocations;
use crate::outbox::{Outbox, PushError};
use crate::ws;
use herald_bus::namespaces::Namespaces;
use herald_bus::presence::{MemberChange, MembersPage, PresenceTable};
use herald_bus::{Bus, BusError, ChannelSubscription, Position, Sink};

const SHARDS: usize = 64;

/// Entries per presence snapshot message.
const SNAPSHOT_CHUNK: usize = 500;

/// Channels per occupancy report message.
const OCCUPANCY_CHUNK: usize = 2000;

/// An edge following at most this many channels reports its subscriber
/// counts within a second of a change (at most 5 messages a second); one
/// following more waits for its periodic report.
const PROMPT_OCCUPANCY_MAX_CHANNELS: usize = 5 * OCCUPANCY_CHUNK;

type ChannelKey = (AppId, ChannelName);
type Ready = Arc<OnceCell<Result<Following, BusError>>>;

/// The bus subscriptions of one channel entry.
struct Following {
    _messages: ChannelSubscription,
    _presence: Option<ChannelSubscription>,
}

struct Subscriber {
    conn_id: u64,
    outbox: Arc<Outbox>,
    /// While the subscriber replays history: live frames kept aside.
    held: Option<Vec<Held>>,
    /// The connection's presence entry, when it is reported as a member.
    presence: Option<Arc<bus::PresenceEntry>>,
}

/// A live frame kept aside while its subscriber replays history.
struct Held {
    seq: u64,
    /// [`epoch_tag`] of the frame's stream epoch (0 without a position).
    epoch: u64,
    frame: Bytes,
}

/// A short stand-in for a stream epoch, to compare held frames' epochs with
/// the replay's without keeping a string per frame.
fn epoch_tag(epoch: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = DefaultHasher::new();
    epoch.hash(&mut h);
    h.finish()
}

struct Channel {
    /// Id of this channel entry's bus subscription; deliveries made
    /// for another id (an earlier entry of the same channel) are ignored.
    id: u64,
    subscribers: Vec<Subscriber>,
    ready: Ready,
    options: bus::NamespaceOptions,
    /// When the last fan-out of this channel ended: a message that follows
    /// closely is queued (see [`CALM_GAP`]).
    last_fan_out: Option<std::time::Instant>,
}

/// A message arriving at least this long after the channel's previous
/// fan-out ended may be written straight to idle subscribers' sockets (one
/// `send` each, nothing woken). Closer together, messages are queued, so
/// each writer coalesces what piles up into one write: under a steady
/// stream, fewer syscalls matter more than the wake-ups saved.
const CALM_GAP: Duration = Duration::from_millis(1);

/// How a hub reports presence; from the edge's configuration.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// This edge's id, in its presence and occupancy reports.
    pub edge_id: String,
    /// Expiry of other edges' entries.
    pub presence_ttl: Duration,
    /// Most presence entries kept per channel.
    pub presence_max_per_channel: usize,
    /// Join and leave events only while a channel has at most this many
    /// members.
    pub presence_events_max_members: usize,
    /// Cache time of namespace options.
    pub namespace_cache_ttl: Duration,
    /// Most live frames kept aside for a subscriber replaying history; past
    /// it the subscriber is closed as a slow consumer.
    pub max_held: usize,
}

impl Default for HubSettings {
    fn default() -> Self {
        Self {
            edge_id: "edge".to_owned(),
            presence_ttl: Duration::from_secs(30),
            presence_max_per_channel: 100_000,
            presence_events_max_members: 1_000,
            namespace_cache_ttl: Duration::from_secs(30),
            max_held: 16_384,
        }
    }
}

/// What [`Hub::subscribe`] is to do besides adding the subscriber.
pub struct SubscribeOptions {
    /// The channel's namespace options.
    pub options: bus::NamespaceOptions,
    /// Hold live frames until [`Hub::release`] (for a history replay).
    pub hold: bool,
    /// The presence entry to report this subscriber with.
    pub presence: Option<Arc<bus::PresenceEntry>>,
}

/// What the hub knows of a live connection.
pub struct ConnEntry {
    /// The connection's id.
    pub id: u64,
    /// Its app.
    pub app: AppId,
    /// The API key its token was minted from; changes on token refresh.
    pub key: Mutex<KeyId>,
    /// Its send queue.
    pub outbox: Arc<Outbox>,
}

/// The hub. Shared by every connection of an edge and attached to the
/// bus as its [`Sink`].
pub struct Hub {
    shards: Box<[Mutex<HashMap<ChannelKey, Channel>>]>,
    conns: Mutex<HashMap<u64, Arc<ConnEntry>>>,
    per_app: Mutex<HashMap<AppId, u32>>,
    bus: Bus,
    next_id: AtomicU64,
    settings: HubSettings,
    presence: Mutex<PresenceTable>,
    /// Namespace options of the apps this edge serves.
    namespaces: Namespaces,
    /// Notified when the control plane rotated its signing keys.
    pub keys_rotated: tokio::sync::Notify,
    /// Notified when the control plane asks for every report at once.
    report_now: tokio::sync::Notify,
    /// Set when subscriptions changed since the last occupancy report.
    occupancy_changed: AtomicBool,
    /// The apps the last occupancy report named (an app left with no
    /// channel gets an empty report, which clears its counts).
    reported_apps: Mutex<HashSet<AppId>>,
    /// Revoked keys and deleted apps, as the control plane announced them.
    revocations: Revocations,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A hub publishing and subscribing through `bus`. Attach it with
    /// [`Bus::attach`] to receive.
    #[must_use]
    pub fn new(bus: Bus) -> Arc<Self> {
        Self::with_settings(bus, HubSettings::default())
    }

    /// A hub with explicit presence settings.
    #[must_use]
    pub fn with_settings(bus: Bus, settings: HubSettings) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            conns: Mutex::new(HashMap::new()),
            per_app: Mutex::new(HashMap::new()),
            bus,
            next_id: AtomicU64::new(1),
            presence: Mutex::new(PresenceTable::new(settings.presence_ttl, settings.presence_max_per_channel)),
            namespaces: Namespaces::new(settings.namespace_cache_ttl),
            settings,
            keys_rotated: tokio::sync::Notify::new(),
            report_now: tokio::sync::Notify::new(),
            occupancy_changed: AtomicBool::new(false),
            reported_apps: Mutex::new(HashSet::new()),
            revocations: Revocations::default(),
        })
    }

    /// The namespace options of `channel` of `app` (cached; see
    /// [`Namespaces`]).
    ///
    /// # Errors
    ///
    /// [`BusError::Unavailable`] when they are not cached and the
    /// control plane cannot be asked.
    pub async fn namespace_options(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<bus::NamespaceOptions, BusError> {
        self.namespaces.options(&self.bus, app, channel).await
    }

    /// This edge's id.
    #[must_use]
    pub fn edge_id(&self) -> &str {
        &self.settings.edge_id
    }

    /// A presence report of this edge: its id, and its presence TTL for
    /// every receiver to expire what the report adds alike.
    #[must_use]
    pub fn presence_report(&self, app: &AppId, kind: bus::presence_report::Kind) -> bus::PresenceReport {
        bus::PresenceReport {
            edge_id: self.settings.edge_id.clone(),
            app_id: app.as_str().to_owned(),
            ttl_ms: self.report_ttl_ms(),
            kind: Some(kind),
        }
    }

    fn report_ttl_ms(&self) -> u32 {
        u32::try_from(self.settings.presence_ttl.as_millis()).unwrap_or(u32::MAX)
    }

    /// Revoked keys and deleted apps (shared with the token verifier).
    #[must_use]
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// The bus.
    #[must_use]
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    fn shard(&self, app: &AppId, channel: &ChannelName) -> &Mutex<HashMap<ChannelKey, Channel>> {
        let mut h = DefaultHasher::new();
        app.hash(&mut h);
        channel.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// A fresh id for a connection.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a connection, unless its app already has `app_limit`
    /// connections here (0 = no limit). Returns false when refused.
    pub fn register(&self, entry: Arc<ConnEntry>, app_limit: u32) -> bool {
        {
            let mut per_app = lock(&self.per_app);
            let count = per_app.entry(entry.app.clone()).or_insert(0);
            if app_limit > 0 && *count >= app_limit {
                return false;
            }
            *count += 1;
        }
        lock(&self.conns).insert(entry.id, entry);
        metrics::gauge!("herald_connections").increment(1.0);
        true
    }

    /// Forgets a connection registered with [`Self::register`].
    pub fn unregister(&self, id: u64) {
        let Some(entry) = lock(&self.conns).remove(&id) else { return };
        let mut per_app = lock(&self.per_app);
        if let Some(count) = per_app.get_mut(&entry.app) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_app.remove(&entry.app);
            }
        }
        metrics::gauge!("herald_connections").decrement(1.0);
    }

    /// Number of registered connections.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Queues `frame` on every registered connection; returns how many took
    /// it (a connection whose queue is full is closed as a slow consumer).
    pub fn send_to_all(&self, frame: &Bytes) -> usize {
        let all: Vec<Arc<ConnEntry>> = lock(&self.conns).values().cloned().collect();
        all.iter().filter(|c| c.outbox.push(frame.clone()).is_ok()).count()
    }

    /// Closes every registered connection matching `filter` with `code`.
    /// Returns how many were told to close.
    pub fn close_where(&self, code: CloseCode, reason: &str, filter: impl Fn(&ConnEntry) -> bool) -> usize {
        let matching: Vec<Arc<ConnEntry>> = lock(&self.conns).values().filter(|c| filter(c)).cloned().collect();
        for conn in &matching {
            conn.outbox.close(code, reason);
        }
        matching.len()
    }

    /// Adds a subscriber to a channel. Resolves once the bus holds the
    /// channel's interest (and, for presence channels, its presence
    /// reports).
    ///
    /// # Errors
    ///
    /// The bus's error; the subscriber is not added then.
    pub async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        conn_id: u64,
        outbox: &Arc<Outbox>,
        how: SubscribeOptions,
    ) -> Result<(), BusError> {
        let follow_presence = how.options.presence;
        let (ready, id) = {
            let mut shard = lock(self.shard(app, channel));
            let entry = shard.entry((app.clone(), channel.clone())).or_insert_with(|| Channel {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                subscribers: Vec::new(),
                ready: Arc::new(OnceCell::new()),
                options: how.options,
                last_fan_out: None,
            });
            entry.subscribers.push(Subscriber {
                conn_id,
                outbox: outbox.clone(),
                held: how.hold.then(Vec::new),
                presence: how.presence,
            });
            (entry.ready.clone(), entry.id)
        };
        self.occupancy_changed.store(true, Ordering::Relaxed);
        let result = ready.get_or_init(|| self.follow(app, channel, id, follow_presence)).await;
        match result {
            Ok(_) => {
                metrics::gauge!("herald_subscriptions").increment(1.0);
                Ok(())
            }
            Err(e) => {
                let e = e.clone();
                // Drop the failed entry so that the next subscriber retries.
                let mut shard = lock(self.shard(app, channel));
                let key = (app.clone(), channel.clone());
                if shard.get(&key).is_some_and(|c| c.id == id) {
                    shard.remove(&key);
                }
                Err(e)
            }
        }
    }

    /// Subscribes the bus to a channel's messages and, for presence
    /// channels, to its presence reports, then asks the other edges for
    /// their entries.
    async fn follow(&self, app: &AppId, channel: &ChannelName, id: u64, presence: bool) -> Result<Following, BusError> {
        let messages = self.bus.subscribe(app, channel, id).await?;
        let presence = if presence {
            let sub = self.bus.subscribe_presence(app, channel).await?;
            let sync = self.presence_report(app, bus::presence_report::Kind::Sync(bus::PresenceSync {}));
            if let Err(e) = self.bus.publish_presence(app, channel, &sync).await {
                tracing::warn!(%app, %channel, error = %e, "presence sync request not sent");
            }
            Some(sub)
        } else {
            None
        };
        Ok(Following { _messages: messages, _presence: presence })
    }

    /// Ends the hold of a subscriber that replayed history up to `replayed`
    /// (none: nothing was replayed): the live frames kept aside that the
    /// replay did not cover go to its outbox — all of them when they come
    /// from another stream epoch (a stream created again) — each once the
    /// outbox has room (so a long hold does not overflow it), and from then
    /// on frames go there directly. Frames that arrive meanwhile are still
    /// held, and follow in order.
    pub async fn release(&self, app: &AppId, channel: &ChannelName, conn_id: u64, replayed: Option<&Position>) {
        let covered = replayed.map(|p| (p.seq, epoch_tag(&p.epoch)));
        let key = (app.clone(), channel.clone());
        loop {
            let (held, outbox) = {
                let mut shard = lock(self.shard(app, channel));
                let Some(entry) = shard.get_mut(&key) else { return };
                let Some(sub) = entry.subscribers.iter_mut().find(|s| s.conn_id == conn_id) else { return };
                match &mut sub.held {
                    Some(held) if !held.is_empty() => (std::mem::take(held), sub.outbox.clone()),
                    _ => {
                        sub.held = None;
                        return;
                    }
                }
            };
            for Held { seq, epoch, frame } in held {
                if seq != 0 && covered.is_some_and(|(upto, tag)| epoch == tag && seq <= upto) {
                    continue;
                }
                match outbox.push_paced(frame).await {
                    Ok(()) => {}
                    Err(PushError::Overflow) => {
                        metrics::counter!("herald_slow_consumer_closes_total").increment(1);
                        return;
                    }
                    Err(PushError::Closed) => return,
                }
            }
        }
    }

    /// A page of the members of a presence channel this edge follows (see
    /// [`PresenceTable::members_page`]); `None` when it does not follow the
    /// channel's presence.
    #[must_use]
    pub fn members_page(
        &self,
        app: &AppId,
        channel: &ChannelName,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Option<MembersPage> {
        let follows =
            lock(self.shard(app, channel)).get(&(app.clone(), channel.clone())).is_some_and(|c| c.options.presence);
        follows.then(|| lock(&self.presence).members_page(app, channel, after, limit, max_bytes))
    }

    /// Removes a subscriber. The channel's bus subscription ends with
    /// its last local subscriber.
    pub fn unsubscribe(&self, app: &AppId, channel: &ChannelName, conn_id: u64) {
        let removed = {
            let mut shard = lock(self.shard(app, channel));
            let key = (app.clone(), channel.clone());
            let Some(entry) = shard.get_mut(&key) else { return };
            let Some(pos) = entry.subscribers.iter().position(|s| s.conn_id == conn_id) else { return };
            entry.subscribers.swap_remove(pos);
            if entry.subscribers.is_empty() {
                // Dropped outside the lock: ends the bus subscription.
                shard.remove(&key)
            } else {
                None
            }
        };
        if removed.as_ref().is_some_and(|c| c.options.presence) {
            lock(&self.presence).forget(app, channel);
        }
        drop(removed);
        self.occupancy_changed.store(true, Ordering::Relaxed);
        metrics::gauge!("herald_subscriptions").decrement(1.0);
    }

    /// Local subscribers of a channel (for tests and introspection).
    #[must_use]
    pub fn subscriber_count(&self, app: &AppId, channel: &ChannelName) -> usize {
        lock(self.shard(app, channel)).get(&(app.clone(), channel.clone())).map_or(0, |c| c.subscribers.len())
    }

    /// Channels with at least one local subscriber.
    #[must_use]
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Fans an encoded frame out to a channel's subscribers. Returns how
    /// many received it.
    fn fan_out(
        &self,
        app: &AppId,
        channel: &ChannelName,
        subscription: u64,
        position: Option<&Position>,
        frame: &Bytes,
    ) -> usize {
        let seq = position.map_or(0, |p| p.seq);
        let mut epoch = None;
        let mut delivered = 0;
        let mut slow = 0u64;
        {
            let mut shard = lock(self.shard(app, channel));
            let Some(entry) = shard.get_mut(&(app.clone(), channel.clone())) else { return 0 };
            if entry.id != subscription {
                return 0;
            }
            let calm = entry.last_fan_out.is_none_or(|t| t.elapsed() >= CALM_GAP);
            for sub in &mut entry.subscribers {
                if let Some(held) = &mut sub.held {
                    if held.len() < self.settings.max_held {
                        let epoch = *epoch.get_or_insert_with(|| position.map_or(0, |p| epoch_tag(&p.epoch)));
                        held.push(Held { seq, epoch, frame: frame.clone() });
                        delivered += 1;
                    } else {
                        sub.outbox.close(CloseCode::SlowConsumer, CloseCode::SlowConsumer.reason());
                        slow += 1;
                    }
                    continue;
                }
                let pushed =
                    if calm { sub.outbox.push_or_write(frame.clone()) } else { sub.outbox.push(frame.clone()) };
                match pushed {
                    Ok(()) => delivered += 1,
                    Err(PushError::Overflow) => slow += 1,
                    Err(PushError::Closed) => {}
                }
            }
            entry.last_fan_out = Some(std::time::Instant::now());
        }
        crate::outbox::flush_written();
        if slow > 0 {
            metrics::counter!("herald_slow_consumer_closes_total").increment(slow);
        }
        delivered
    }
}

impl Hub {
    /// Sends join/leave events for member changes of a channel to its
    /// subscribers, when the channel's namespace wants them and the channel
    /// has at most `presence_events_max_members` members.
    fn announce(&self, app: &AppId, channel: &ChannelName, changes: Vec<MemberChange>) {
        if changes.is_empty() {
            return;
        }
        let wanted =
            lock(self.shard(app, channel)).get(&(app.clone(), channel.clone())).is_some_and(|c| c.options.join_leave);
        if !wanted {
            return;
        }
        // Counted with the member an event is about: a member who joined
        // unannounced leaves unannounced too.
        let members = lock(&self.presence).member_count(app, channel);
        let max = self.settings.presence_events_max_members;
        for change in changes {
            let (kind, member) = match change {
                MemberChange::Joined(m) if members <= max => (client::presence_event::Kind::Join, m),
                MemberChange::Left(m) if members < max => (client::presence_event::Kind::Leave, m),
                _ => continue,
            };
            let frame = ws::binary_frame(&client::ServerFrame {
                kind: Some(server_frame::Kind::PresenceEvent(client::PresenceEvent {
                    channel: channel.as_str().to_owned(),
                    kind: kind as i32,
                    member: Some(client::Member { client_id: member.client_id.clone(), info: member.info }),
                })),
            });
            let delivered = self.fan_out_presence(app, channel, &member.client_id, &frame);
            metrics::counter!("herald_presence_events_total").increment(delivered as u64);
        }
    }

    /// Sends a presence event to a channel's subscribers, except the
    /// connections of the member it is about.
    fn fan_out_presence(&self, app: &AppId, channel: &ChannelName, client_id: &str, frame: &Bytes) -> usize {
        let shard = lock(self.shard(app, channel));
        let Some(entry) = shard.get(&(app.clone(), channel.clone())) else { return 0 };
        let mut delivered = 0;
        for sub in &entry.subscribers {
            if sub.presence.as_ref().is_some_and(|p| p.client_id == client_id) {
                continue;
            }
            if sub.outbox.push(frame.clone()).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// This edge's presence entries for one channel, in snapshot chunks.
    fn snapshot_reports(&self, app: &AppId, channel: &ChannelName) -> Vec<bus::PresenceReport> {
        let entries: Vec<bus::PresenceEntry> = lock(self.shard(app, channel))
            .get(&(app.clone(), channel.clone()))
            .map(|c| c.subscribers.iter().filter_map(|s| s.presence.as_deref().cloned()).collect())
            .unwrap_or_default();
        let taken_at_ms = herald_bus::now_ms();
        entries
            .chunks(SNAPSHOT_CHUNK)
            .map(|chunk| {
                let snapshot = bus::PresenceSnapshot { entries: chunk.to_vec(), taken_at_ms };
                self.presence_report(app, bus::presence_report::Kind::Snapshot(snapshot))
            })
            .collect()
    }

    /// Publishes this edge's snapshot of one channel in the background (an
    /// answer to another edge's sync request).
    fn spawn_snapshot(&self, app: &AppId, channel: &ChannelName) {
        let reports = self.snapshot_reports(app, channel);
        if reports.is_empty() {
            return;
        }
        let (bus, app, channel) = (self.bus.clone(), app.clone(), channel.clone());
        tokio::spawn(async move {
            for report in reports {
                if let Err(e) = bus.publish_presence(&app, &channel, &report).await {
                    tracing::warn!(%app, %channel, error = %e, "presence snapshot not sent");
                    return;
                }
            }
        });
    }

    /// Publishes the snapshots of every presence channel and the subscriber
    /// counts of every app.
    async fn report_all(&self) {
        let mut presence_channels = Vec::new();
        for shard in self.shards.iter() {
            for ((app, channel), entry) in lock(shard).iter() {
                if entry.options.presence {
                    presence_channels.push((app.clone(), channel.clone()));
                }
            }
        }
        for (app, channel) in presence_channels {
            for report in self.snapshot_reports(&app, &channel) {
                if let Err(e) = self.bus.publish_presence(&app, &channel, &report).await {
                    tracing::warn!(%app, %channel, error = %e, "presence snapshot not sent");
                    return;
                }
            }
        }
        self.report_occupancy().await;
    }

    /// Publishes the subscriber counts of every app with local subscribers,
    /// and an empty report for an app that had some at the last report.
    async fn report_occupancy(&self) {
        self.occupancy_changed.store(false, Ordering::Relaxed);
        let mut counts: HashMap<AppId, Vec<bus::ChannelCount>> = HashMap::new();
        for shard in self.shards.iter() {
            for ((app, channel), entry) in lock(shard).iter() {
                counts.entry(app.clone()).or_default().push(bus::ChannelCount {
                    channel: channel.as_str().to_owned(),
                    subscribers: entry.subscribers.len() as u32,
                });
            }
        }
        {
            let mut reported = lock(&self.reported_apps);
            for app in reported.iter() {
                counts.entry(app.clone()).or_default();
            }
            *reported = counts.iter().filter(|(_, c)| !c.is_empty()).map(|(a, _)| a.clone()).collect();
        }
        for (app, channels) in counts {
            // In parts, so that an app with many channels stays far below
            // NATS's payload limit.
            let parts = channels.len().div_ceil(OCCUPANCY_CHUNK).max(1);
            for part in 0..parts {
                let chunk = channels.get(part * OCCUPANCY_CHUNK..).unwrap_or_default();
                let report = bus::OccupancyReport {
                    edge_id: self.settings.edge_id.clone(),
                    app_id: app.as_str().to_owned(),
                    channels: chunk.iter().take(OCCUPANCY_CHUNK).cloned().collect(),
                    part: part as u32,
                    parts: parts as u32,
                    ttl_ms: self.report_ttl_ms(),
                };
                if let Err(e) = self.bus.publish_occupancy(&app, &report).await {
                    tracing::warn!(%app, error = %e, "occupancy report not sent");
                    return;
                }
            }
        }
    }

    /// Runs until aborted: queues a WebSocket ping for every registered
    /// connection once per `every`. Connections are pinged in 16 slices
    /// spread over the interval, so pings never burst onto every socket at
    /// once, and they go out with whatever else the writer has queued — no
    /// timer per connection.
    pub async fn ping_loop(self: Arc<Self>, every: Duration) {
        const SLICES: u64 = 16;
        let mut tick = tokio::time::interval((every / SLICES as u32).max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        for slice in (0..SLICES).cycle() {
            tick.tick().await;
            let due: Vec<Arc<Outbox>> =
                lock(&self.conns).values().filter(|c| c.id % SLICES == slice).map(|c| c.outbox.clone()).collect();
            let ping = ws::ping_frame();
            for outbox in due {
                if let Err(PushError::Overflow) = outbox.push(ping.clone()) {
                    metrics::counter!("herald_slow_consumer_closes_total").increment(1);
                }
            }
        }
    }

    /// Runs until the hub is dropped: expires other edges' presence entries
    /// every second (announcing the leaves) and publishes this edge's
    /// reports every `interval` and whenever the control plane asks, and
    /// its subscriber counts within a second of a change (see
    /// [`PROMPT_OCCUPANCY_MAX_CHANNELS`]).
    pub async fn report_loop(self: Arc<Self>, interval: Duration) {
        let mut next_report = tokio::time::Instant::now() + interval;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let expired = lock(&self.presence).expire(Instant::now());
                    for (app, channel, change) in expired {
                        self.announce(&app, &channel, vec![change]);
                    }
                    if tokio::time::Instant::now() >= next_report {
                        next_report = tokio::time::Instant::now() + interval;
                        self.report_all().await;
                    } else if self.occupancy_changed.load(Ordering::Relaxed)
                        && self.channel_count() <= PROMPT_OCCUPANCY_MAX_CHANNELS
                    {
                        self.report_occupancy().await;
                    }
                }
                () = self.report_now.notified() => self.report_all().await,
            }
        }
    }
}

/// Builds the client-facing frame of a stored message, for a replay.
///
/// # Errors
///
/// When the stored bytes are not a [`bus::ChannelMessage`].
pub fn encode_replay(channel: &ChannelName, payload: Bytes, position: &Position) -> Result<Bytes, prost::DecodeError> {
    encode_delivery(channel, payload, Some(position))
}

/// Builds the client-facing frame for a bus message, once.
fn encode_delivery(
    channel: &ChannelName,
    payload: Bytes,
    position: Option<&Position>,
) -> Result<Bytes, prost::DecodeError> {
    let msg = bus::ChannelMessage::decode(payload)?;
    let frame = client::ServerFrame {
        kind: Some(server_frame::Kind::Message(client::Message {
            channel: channel.as_str().to_owned(),
            data: msg.data,
            event: msg.event,
            seq: position.map_or(0, |p| p.seq),
            epoch: position.map(|p| p.epoch.clone()).unwrap_or_default(),
            publisher: msg.publisher,
            timestamp_ms: msg.timestamp_ms,
            id: msg.id,
        })),
    };
    Ok(ws::binary_frame(&frame))
}

impl Sink for Hub {
    fn deliver(
        &self,
        app: &AppId,
        channel: &ChannelName,
        subscription: u64,
        payload: Bytes,
        position: Option<&Position>,
    ) {
        let started = Instant::now();
        metrics::counter!("herald_messages_in_total").increment(1);
        let frame = match encode_delivery(channel, payload, position) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(%app, %channel, error = %e, "undecodable bus message dropped");
                herald_bus::telemetry::decode_error();
                return;
            }
        };
        let delivered = self.fan_out(app, channel, subscription, position, &frame);
        metrics::counter!("herald_deliveries_total").increment(delivered as u64);
        metrics::histogram!("herald_fanout_seconds").record(started.elapsed().as_secs_f64());
    }

    fn control(&self, event: bus::ControlEvent) {
        use bus::control_event::Kind;
        match event.kind {
            Some(Kind::KeyRevoked(revoked)) => {
                // First refuse new tokens, then close: a connection that
                // registers in between checks again after registering.
                self.revocations.add_announced(&revoked.app_id, Some(&revoked.key_id), revoked.at, revoked.until);
                let n = self.close_where(CloseCode::KeyRevoked, CloseCode::KeyRevoked.reason(), |c| {
                    c.app.as_str() == revoked.app_id && lock(&c.key).as_str() == revoked.key_id
                });
                tracing::info!(app = %revoked.app_id, key = %revoked.key_id, closed = n, "api key revoked");
            }
            Some(Kind::AppDeleted(deleted)) => {
                self.revocations.add_announced(&deleted.app_id, None, deleted.at, deleted.until);
                let n = self.close_where(CloseCode::AppUnavailable, CloseCode::AppUnavailable.reason(), |c| {
                    c.app.as_str() == deleted.app_id
                });
                tracing::info!(app = %deleted.app_id, closed = n, "app deleted");
            }
            Some(Kind::SigningKeysRotated(_)) => self.keys_rotated.notify_one(),
            Some(Kind::NamespacesChanged(changed)) => self.namespaces.invalidate(&changed.app_id),
            Some(Kind::PresenceSyncAll(_)) => self.report_now.notify_one(),
            Some(Kind::AppLimitsChanged(_)) | None => {}
        }
    }

    fn presence(&self, app: &AppId, channel: &ChannelName, report: bus::PresenceReport) {
        if let Some(bus::presence_report::Kind::Sync(_)) = report.kind {
            if report.edge_id != self.settings.edge_id {
                self.spawn_snapshot(app, channel);
            }
            return;
        }
        let mut changes = lock(&self.presence).apply(app, channel, &report, Instant::now());
        if let Some(bus::presence_report::Kind::Snapshot(_)) = report.kind {
            // Members first seen in a snapshot are not news: they were there
            // before this edge started following the channel (or their join
            // was lost). Only their leaving is announced.
            changes.retain(|c| matches!(c, MemberChange::Left(_)));
        }
        self.announce(app, channel, changes);
    }
}

#[cfg(test)]
mod tests {
    use herald_proto::client::server_frame;
    use prost::Message as _;

    use super::*;
    use herald_bus::LocalBus;

    /// A hub on an in-process bus with subscriber 1 of app/room held (for
    /// a replay), its outbox bounded to `max_frames` and 64 KiB.
    async fn held_subscriber(max_frames: usize) -> (Arc<Hub>, Bus, AppId, ChannelName, Arc<Outbox>) {
        let bus = LocalBus::new();
        let bus = Bus::local(&bus);
        let hub = Hub::new(bus.clone());
        bus.attach(hub.clone()).await.expect("attach");
        let (app, channel) = (AppId::new("app").expect("app"), ChannelName::new("room").expect("channel"));
        let outbox = Arc::new(Outbox::new(max_frames, 64 * 1024));
        let how = SubscribeOptions { options: bus::NamespaceOptions::default(), hold: true, presence: None };
        hub.subscribe(&app, &channel, 1, &outbox, how).await.expect("subscribe");
        (hub, bus, app, channel, outbox)
    }

    #[tokio::test]
    async fn releasing_a_long_hold_waits_for_room_in_the_outbox_and_keeps_order() {
        // At most 16 frames or 64 KiB queued; nothing drains it yet.
        let (hub, bus, app, channel, outbox) = held_subscriber(16).await;
        // 100 frames of 4 KiB arrive while held: 400 KiB.
        for i in 0..100u8 {
            let message = bus::ChannelMessage {
                app_id: app.as_str().into(),
                channel: channel.as_str().into(),
                data: Bytes::from(vec![i; 4096]),
                ..Default::default()
            };
            bus.publish(&app, &channel, &message).await.expect("publish");
        }
        let release = {
            let (hub, app, channel) = (hub.clone(), app.clone(), channel.clone());
            tokio::spawn(async move { hub.release(&app, &channel, 1, None).await })
        };
        let mut got = Vec::new();
        while got.len() < 100 {
            let batch = tokio::time::timeout(Duration::from_secs(5), outbox.take()).await.expect("frames come");
            assert!(batch.close.is_none(), "closed as a slow consumer after {} frames", got.len());
            for frame in batch.frames() {
                // An unmasked server frame: 2 header bytes, plus 2 for a
                // 16-bit length (frames here are 4 KiB).
                let payload = &frame[if frame[1] & 0x7f == 126 { 4 } else { 2 }..];
                if let Some(server_frame::Kind::Message(m)) =
                    client::ServerFrame::decode(payload).expect("decodes").kind
                {
                    got.push(m.data[0]);
                }
            }
        }
        release.await.expect("released");
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
        assert!(!outbox.is_closing());
    }

    #[tokio::test]
    async fn a_release_skips_only_what_the_replay_covered_in_its_own_epoch() {
        let (hub, _bus, app, channel, outbox) = held_subscriber(64).await;
        let id = lock(hub.shard(&app, &channel)).get(&(app.clone(), channel.clone())).expect("channel").id;
        // Live frames while the replay runs: the replayed epoch's 9..=11,
        // then the stream is created again and its 1 and 2 follow.
        for (epoch, seq) in [("A", 9), ("A", 10), ("A", 11), ("B", 1), ("B", 2)] {
            let message = bus::ChannelMessage { data: Bytes::from(format!("{epoch}{seq}")), ..Default::default() };
            let position = Position { seq, epoch: epoch.into() };
            hub.deliver(&app, &channel, id, Bytes::from(message.encode_to_vec()), Some(&position));
        }
        hub.release(&app, &channel, 1, Some(&Position { seq: 10, epoch: "A".into() })).await;
        let batch = outbox.take().await;
        let got: Vec<String> = batch
            .frames()
            .filter_map(|frame| match client::ServerFrame::decode(&frame[2..]).expect("decodes").kind {
                Some(server_frame::Kind::Message(m)) => Some(String::from_utf8_lossy(&m.data).into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(got, ["A11", "B1", "B2"], "the new epoch's frames are not taken for replayed ones");
    }
}
