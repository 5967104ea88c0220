//! The hub: which local connections subscribe to which channels, and the
//! fan-out of every bus message to them. Shared by every connection of an
//! edge and attached to the bus as its [`Sink`].
//!
//! # Layout
//!
//! - `registry`: (app, channel) → local subscribers, sharded, and the bus
//!   subscription of each channel with local subscribers. The first local
//!   subscriber of a channel makes the bus subscribe to it; the last one
//!   leaving drops that subscription. Concurrent first subscribers share
//!   one bus subscribe and all wait for it, so an `ok` reply always means
//!   "messages published from now on arrive".
//! - `fanout`: a message is decoded and encoded into its outgoing WebSocket
//!   frame once; the same `Bytes` go into every subscriber's bounded
//!   [`Outbox`](crate::outbox::Outbox). A full outbox closes its connection as a slow consumer;
//!   nobody waits for it. A subscriber that recovers history is *held*: live
//!   frames for it are kept aside with their position until
//!   [`Hub::release`] (the rules are the connection's recovery module's).
//! - `presence`: presence tables, join/leave events, member queries, and
//!   the periodic presence and occupancy reports ([`Hub::report_loop`]).
//! - `connections`: the registry of live connections, for key revocation,
//!   app deletion, draining and pings ([`Hub::ping_loop`]).
//! - `limits`: per-app connection counts and the app limits the control
//!   plane announces, and how they combine with a token's; the app's usage
//!   counters and the quota state the control plane announces
//!   (`QuotaState`), shared by the app's connections.
//! - `usage`: the per-app figures this edge reports with its usage
//!   (connections and channels here).
//! - `occupancy`: the subscriber counts this edge reports, promptly after a
//!   change and periodically.
//! - `users`: events for every connection of one user, and the end of them
//!   (`UserEvent`, `UserTerminated`).
//! - `counts`: channels' subscriber counts across edges, told to their
//!   Pusher subscribers (`pusher_internal:subscription_count`).
//! - `pusher`: Pusher's JSON event frames, built once per event.
//!
//! # Two protocols, one fan-out
//!
//! A subscriber speaks Herald's protocol or Pusher's ([`Wire`]). The hub
//! decodes each bus message once and encodes Herald's binary frame once;
//! Pusher's JSON text frame is encoded at most once per message too, and
//! only when the channel has a Pusher subscriber (and the decoded parts it
//! needs are kept only while the edge has any). Both go out in the same
//! pass under the shard lock, so subscribers of both protocols see a
//! channel's messages in the same order. A message naming a connection to
//! exclude (`exclude_connection`) skips that subscriber whatever its
//! protocol.
//!
//! # Connection ids
//!
//! Every connection has an id `<edge number>.<counter>` (a Pusher
//! `socket_id`, `^\d+\.\d+$`), for both protocols: the edge number is
//! picked at random when the hub is made, the counter counts this edge's
//! connections. [`Hub::connection_id`] writes it, [`Hub::local_connection`]
//! reads one back when it is this edge's.
//!
//! # Locks
//!
//! The channel map is sharded; each shard sits behind a plain mutex, and
//! under a shard lock the hub never awaits and never writes to a socket.
//! What it does there is bounded and non-blocking: append a frame to a
//! subscriber's [`Outbox`](crate::outbox::Outbox) (an in-memory queue; a full one closes its
//! connection instead of waiting), keep it aside for a held subscriber, or
//! note a target. The one socket write of the delivery path — a frame for
//! an idle plain-TCP connection written straight to its socket, saving the
//! writer task a wake-up — happens after the lock is released: under the
//! lock the frame is queued without waking the writer
//! ([`Outbox::push_deferred`](crate::outbox::Outbox::push_deferred)) and its outbox noted in a per-thread list
//! reused from one fan-out to the next; once the lock is released each
//! noted outbox writes its frame itself if its writer is still idle, or
//! wakes the writer ([`Outbox::write_deferred`](crate::outbox::Outbox::write_deferred)). The order in which a
//! channel's messages reach its subscribers is thus decided under the
//! lock, the same for every subscriber. Other locks (connections, apps,
//! presence table) are taken one at a time, never across an `.await`, and
//! their targets are collected under them and served after.

mod connections;
mod counts;
mod fanout;
mod limits;
mod occupancy;
mod presence;
pub mod pusher;
mod registry;
mod usage;
mod users;

pub use connections::{ConnEntry, Deadlines};
use fanout::Delivery;
pub use fanout::encode_replay;
pub use limits::{AdmitError, AppLimits, ConnectionLimitReached, connection_limit, message_limit};
pub use registry::{EpochTag, SubscribeOptions};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, CloseCode, bus};

use crate::auth::Revocations;
use herald_bus::namespaces::Namespaces;
use herald_bus::presence::PresenceTable;
use herald_bus::{Bus, BusError, Position, Sink};

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
    /// Most messages a busy channel's burst holds; 0 for no bursts (see
    /// the fan-out).
    pub fanout_burst: usize,
    /// Bounds of the debug tap (rate, burst, preview size).
    pub tap: herald_bus::debug_tap::TapSettings,
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
            fanout_burst: 64,
            tap: herald_bus::debug_tap::TapSettings::default(),
        }
    }
}

/// The protocol a connection speaks, and so the frames it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wire {
    /// Herald's protocol: binary Protobuf frames.
    Herald,
    /// Pusher Channels protocol 7: JSON text frames.
    Pusher,
}

/// The hub. Shared by every connection of an edge and attached to the
/// bus as its [`Sink`].
pub struct Hub {
    shards: Box<[Mutex<HashMap<registry::ChannelKey, registry::Channel>>]>,
    conns: Mutex<HashMap<u64, Arc<ConnEntry>>>,
    /// The apps with connections here: counts and announced limits.
    apps: Mutex<HashMap<AppId, limits::AppEntry>>,
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
    /// The apps the last occupancy report named (an app left with no
    /// channel gets an empty report, which clears its counts).
    reported_apps: Mutex<HashSet<AppId>>,
    /// Revoked keys and deleted apps, as the control plane announced them.
    revocations: Revocations,
    /// The number before the dot of this edge's connection ids.
    id_prefix: u32,
    /// Subscriptions of Pusher connections on this edge: while there are
    /// none, a delivery keeps nothing for Pusher frames.
    pusher_subscriptions: AtomicUsize,
    /// Apps whose subscriber counts changed since their last report.
    occupancy_dirty: Mutex<HashSet<AppId>>,
    /// Wakes the prompt occupancy report.
    occupancy_wake: tokio::sync::Notify,
    /// Subscriber counts across edges, for subscribers told them.
    counts: Mutex<counts::Counts>,
    /// Usage counters of the apps served here.
    usage: Arc<herald_bus::usage::UsageRegistry>,
    /// Quota states announced, for apps' next connections.
    quotas: Mutex<HashMap<AppId, limits::QuotaEntry>>,
    /// When the hub was made: the start of [`Self::clock_ms`].
    clock: tokio::time::Instant,
    /// The hub itself, for the tasks it starts (a burst's flush).
    me: std::sync::Weak<Hub>,
    /// Debug events of watched apps.
    tap: herald_bus::debug_tap::DebugTap,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            shards: (0..registry::SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            conns: Mutex::new(HashMap::new()),
            apps: Mutex::new(HashMap::new()),
            bus: bus.clone(),
            next_id: AtomicU64::new(1),
            presence: Mutex::new(PresenceTable::new(settings.presence_ttl, settings.presence_max_per_channel)),
            namespaces: Namespaces::new(settings.namespace_cache_ttl),
            counts: Mutex::new(counts::Counts::new(settings.presence_ttl)),
            tap: herald_bus::debug_tap::DebugTap::new(bus.clone(), settings.edge_id.clone(), settings.tap),
            settings,
            keys_rotated: tokio::sync::Notify::new(),
            report_now: tokio::sync::Notify::new(),
            reported_apps: Mutex::new(HashSet::new()),
            revocations: Revocations::default(),
            id_prefix: random_prefix(),
            pusher_subscriptions: AtomicUsize::new(0),
            occupancy_dirty: Mutex::new(HashSet::new()),
            occupancy_wake: tokio::sync::Notify::new(),
            usage: Arc::new(herald_bus::usage::UsageRegistry::new()),
            quotas: Mutex::new(HashMap::new()),
            clock: tokio::time::Instant::now(),
        })
    }

    /// This edge's debug tap: debug events of the apps someone watches.
    #[must_use]
    pub fn tap(&self) -> &herald_bus::debug_tap::DebugTap {
        &self.tap
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

    /// The Pusher settings of `app` (cached with its namespaces); `None`
    /// when the app does not exist or has Pusher mode off.
    ///
    /// # Errors
    ///
    /// [`BusError::Unavailable`] when they are not cached and the control
    /// plane cannot be asked.
    pub async fn pusher_app(&self, app: &AppId) -> Result<Option<Arc<bus::PusherApp>>, BusError> {
        self.namespaces.pusher_app(&self.bus, app).await
    }

    /// Whether some webhook endpoint of `app` wants events of `kind` (an
    /// edge-seen kind), from the app's configuration cached with its
    /// namespaces.
    ///
    /// # Errors
    ///
    /// [`BusError::Unavailable`] when nothing is cached and the control
    /// plane cannot be asked.
    pub async fn wants_webhook(&self, app: &AppId, kind: herald_proto::webhook::EventKind) -> Result<bool, BusError> {
        self.namespaces.wants_webhook(&self.bus, app, kind).await
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

    /// A fresh id for a connection.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The connection id of this edge's connection `id`: `<edge
    /// number>.<id>`, also its Pusher `socket_id`.
    #[must_use]
    pub fn connection_id(&self, id: u64) -> ConnectionId {
        ConnectionId::new(self.id_prefix, id)
    }

    /// This edge's connection that `connection_id` names; `None` for an id
    /// of another edge (or not an id at all).
    #[must_use]
    pub fn local_connection(&self, connection_id: &str) -> Option<u64> {
        let (prefix, id) = connection_id.split_once('.')?;
        if prefix.parse::<u32>().ok()? != self.id_prefix {
            return None;
        }
        id.parse().ok()
    }
}

/// A random edge number for connection ids, from the process's hasher seed
/// and the clock (unique across edges with overwhelming likelihood; it
/// only has to keep two edges' ids apart).
fn random_prefix() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    // At least 1: no id starts with 0.
    (h.finish() as u32).max(1)
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
        let keep_for_pusher = self.pusher_subscriptions.load(Ordering::Relaxed) > 0;
        let delivery = match Delivery::decode(self, channel, payload, position, keep_for_pusher) {
            Ok(delivery) => delivery,
            Err(e) => {
                tracing::warn!(%app, %channel, error = %e, "undecodable bus message dropped");
                herald_bus::telemetry::decode_error();
                return;
            }
        };
        // A traced publish: the delivery is a span of its trace.
        let span = (!delivery.traceparent.is_empty()).then(|| {
            let span = tracing::info_span!("deliver", otel.kind = "consumer", app = %app, channel = %channel,
                edge = %self.edge_id(), subscribers = tracing::field::Empty);
            herald_bus::trace::follow(&span, &delivery.traceparent);
            span
        });
        let entered = span.as_ref().map(tracing::Span::enter);
        let delivered = self.fan_out(app, channel, subscription, position, delivery);
        if let Some(span) = &span {
            span.record("subscribers", delivered);
        }
        drop(entered);
        metrics::counter!("herald_deliveries_total").increment(delivered as u64);
        metrics::histogram!("herald_fanout_seconds").record(started.elapsed().as_secs_f64());
    }

    fn control(&self, event: bus::ControlEvent) {
        use bus::control_event::Kind;
        self.tap.on_control(&event);
        match event.kind {
            Some(Kind::DebugTapOn(_)) => {}
            Some(Kind::KeyRevoked(revoked)) => {
                // First refuse new tokens, then close: a connection that
                // registers in between checks again after registering.
                self.revocations.add_announced(
                    &revoked.app_id,
                    Some(&revoked.key_id),
                    revoked.at,
                    revoked.until,
                    false,
                );
                // The key's Pusher secret, if it had one, goes with it.
                self.namespaces.invalidate(&revoked.app_id);
                let n = self.close_where(CloseCode::KeyRevoked, CloseCode::KeyRevoked.reason(), |c| {
                    c.app.as_str() == revoked.app_id
                        && lock(&c.key).as_ref().is_some_and(|k| k.as_str() == revoked.key_id)
                });
                tracing::info!(app = %revoked.app_id, key = %revoked.key_id, closed = n, "api key revoked");
            }
            Some(Kind::AppDeleted(deleted)) => {
                self.revocations.add_announced(&deleted.app_id, None, deleted.at, deleted.until, false);
                self.namespaces.invalidate(&deleted.app_id);
                let n = self.close_where(CloseCode::AppUnavailable, CloseCode::AppUnavailable.reason(), |c| {
                    c.app.as_str() == deleted.app_id
                });
                tracing::info!(app = %deleted.app_id, closed = n, "app deleted");
            }
            Some(Kind::AppStatusChanged(status)) => {
                self.namespaces.invalidate(&status.app_id);
                if status.disabled {
                    self.revocations.add_announced(&status.app_id, None, status.at, status.until, true);
                    let reason = if status.reason.is_empty() {
                        "the app is disabled".to_owned()
                    } else {
                        format!("the app is disabled: {}", status.reason)
                    };
                    let reason = herald_proto::codes::truncate_reason(&reason).to_owned();
                    let n = self.close_where(CloseCode::AppUnavailable, &reason, |c| c.app.as_str() == status.app_id);
                    tracing::info!(app = %status.app_id, closed = n, "app disabled");
                } else {
                    tracing::info!(app = %status.app_id, "app enabled");
                }
            }
            Some(Kind::SigningKeysRotated(_)) => self.keys_rotated.notify_one(),
            Some(Kind::NamespacesChanged(changed)) => self.namespaces.invalidate(&changed.app_id),
            Some(Kind::PresenceSyncAll(_)) => self.report_now.notify_one(),
            Some(Kind::AppLimitsChanged(changed)) => {
                // Also sent when the Origin allowlist changed, which Pusher
                // connections take from the app's cached settings.
                self.namespaces.invalidate(&changed.app_id);
                self.apply_app_limits(&changed);
            }
            Some(Kind::UserTerminated(terminated)) => {
                let n = self.terminate_user(&terminated.app_id, &terminated.user_id);
                tracing::info!(app = %terminated.app_id, user = %terminated.user_id, closed = n, "user terminated");
            }
            Some(Kind::OccupancySync(sync)) => {
                if let Ok(app) = AppId::new(&sync.app_id)
                    && lock(&self.apps).contains_key(&app)
                {
                    self.occupancy_changed(&app);
                }
            }
            Some(Kind::QuotaState(state)) => self.apply_quota(state),
            Some(Kind::UserEvent(event)) => {
                let n = self.send_to_user(&event);
                metrics::counter!("herald_user_event_deliveries_total").increment(n as u64);
            }
            None => {}
        }
    }

    fn presence(&self, app: &AppId, channel: &ChannelName, report: bus::PresenceReport) {
        self.on_presence(app, channel, report);
    }

    fn occupancy(&self, report: bus::OccupancyReport) {
        self.on_occupancy(&report);
    }
}

/// A connection id, `<edge number>.<counter>` (see the module doc), kept
/// inline: every connection holds its own, and a `String` would be one
/// more allocation per connection. Reads as a `&str`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ConnectionId {
    len: u8,
    /// ASCII digits and one dot: a `u32`, a dot and a `u64` take at most
    /// 10 + 1 + 20 bytes.
    bytes: [u8; 31],
}

impl ConnectionId {
    fn new(prefix: u32, id: u64) -> Self {
        use std::io::Write as _;
        let mut bytes = [0u8; 31];
        let mut rest = &mut bytes[..];
        // Cannot fail: the longest id fits (see `bytes`).
        let _ = write!(rest, "{prefix}.{id}");
        let len = 31 - rest.len();
        Self { len: len as u8, bytes }
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl std::ops::Deref for ConnectionId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::ConnectionId;

    #[test]
    fn connection_ids_read_as_their_text_up_to_the_longest() {
        for (prefix, id) in [(0, 0), (7, 42), (u32::MAX, u64::MAX)] {
            let cid = ConnectionId::new(prefix, id);
            assert_eq!(cid.as_str(), format!("{prefix}.{id}"));
            assert_eq!(cid.to_string(), format!("{prefix}.{id}"));
            assert_eq!(&*cid, cid.as_str());
        }
        assert_eq!(ConnectionId::new(u32::MAX, u64::MAX).len(), 31);
    }
}
