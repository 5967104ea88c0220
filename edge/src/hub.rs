//! The hub: which local connections subscribe to which channels, and the
//! fan-out of every backplane message to them.
//!
//! - The map from (app, channel) to subscribers is sharded; each shard sits
//!   behind a plain mutex that is never held across an `.await`.
//! - The first local subscriber of a channel makes the backplane subscribe
//!   to it; the last one leaving drops that subscription. Concurrent first
//!   subscribers share one backplane subscribe and all wait for it, so an
//!   `ok` reply always means "messages published from now on arrive".
//! - A message is decoded and encoded into its outgoing WebSocket frame
//!   once; the same `Bytes` go into every subscriber's [`Outbox`]. A full
//!   outbox closes its connection as a slow consumer; nobody waits for it.
//! - The hub also keeps the registry of live connections, for key
//!   revocation, app deletion and draining.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use herald_proto::client::{self, server_frame};
use herald_proto::{AppId, ChannelName, CloseCode, KeyId, bus};
use prost::Message as _;
use tokio::sync::OnceCell;

use crate::backplane::{Backplane, BackplaneError, ChannelSubscription, Position, Sink};
use crate::outbox::{Outbox, PushError};
use crate::ws;

const SHARDS: usize = 64;

type ChannelKey = (AppId, ChannelName);
type Ready = Arc<OnceCell<Result<ChannelSubscription, BackplaneError>>>;

struct Subscriber {
    conn_id: u64,
    outbox: Arc<Outbox>,
}

struct Channel {
    /// Id of this channel entry's backplane subscription; deliveries made
    /// for another id (an earlier entry of the same channel) are ignored.
    id: u64,
    subscribers: Vec<Subscriber>,
    ready: Ready,
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
/// backplane as its [`Sink`].
pub struct Hub {
    shards: Box<[Mutex<HashMap<ChannelKey, Channel>>]>,
    conns: Mutex<HashMap<u64, Arc<ConnEntry>>>,
    per_app: Mutex<HashMap<AppId, u32>>,
    backplane: Backplane,
    next_id: AtomicU64,
    /// Notified when the control plane rotated its signing keys.
    pub keys_rotated: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Hub {
    /// A hub publishing and subscribing through `backplane`. Attach it with
    /// [`Backplane::attach`] to receive.
    #[must_use]
    pub fn new(backplane: Backplane) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            conns: Mutex::new(HashMap::new()),
            per_app: Mutex::new(HashMap::new()),
            backplane,
            next_id: AtomicU64::new(1),
            keys_rotated: tokio::sync::Notify::new(),
        })
    }

    /// The backplane.
    #[must_use]
    pub fn backplane(&self) -> &Backplane {
        &self.backplane
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

    /// Closes every registered connection matching `filter` with `code`.
    /// Returns how many were told to close.
    pub fn close_where(&self, code: CloseCode, reason: &str, filter: impl Fn(&ConnEntry) -> bool) -> usize {
        let matching: Vec<Arc<ConnEntry>> = lock(&self.conns).values().filter(|c| filter(c)).cloned().collect();
        for conn in &matching {
            conn.outbox.close(code, reason);
        }
        matching.len()
    }

    /// Adds a subscriber to a channel. Resolves once the backplane holds the
    /// channel's interest.
    ///
    /// # Errors
    ///
    /// The backplane's error; the subscriber is not added then.
    pub async fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        conn_id: u64,
        outbox: &Arc<Outbox>,
    ) -> Result<(), BackplaneError> {
        let (ready, id) = {
            let mut shard = lock(self.shard(app, channel));
            let entry = shard.entry((app.clone(), channel.clone())).or_insert_with(|| Channel {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                subscribers: Vec::new(),
                ready: Arc::new(OnceCell::new()),
            });
            entry.subscribers.push(Subscriber { conn_id, outbox: outbox.clone() });
            (entry.ready.clone(), entry.id)
        };
        let result = ready.get_or_init(|| self.backplane.subscribe(app, channel, id)).await;
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

    /// Removes a subscriber. The channel's backplane subscription ends with
    /// its last local subscriber.
    pub fn unsubscribe(&self, app: &AppId, channel: &ChannelName, conn_id: u64) {
        let removed = {
            let mut shard = lock(self.shard(app, channel));
            let key = (app.clone(), channel.clone());
            let Some(entry) = shard.get_mut(&key) else { return };
            let Some(pos) = entry.subscribers.iter().position(|s| s.conn_id == conn_id) else { return };
            entry.subscribers.swap_remove(pos);
            if entry.subscribers.is_empty() {
                // Dropped outside the lock: ends the backplane subscription.
                shard.remove(&key)
            } else {
                None
            }
        };
        drop(removed);
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
    fn fan_out(&self, app: &AppId, channel: &ChannelName, subscription: u64, frame: &Bytes) -> usize {
        let mut delivered = 0;
        let mut slow = 0u64;
        {
            let shard = lock(self.shard(app, channel));
            let Some(entry) = shard.get(&(app.clone(), channel.clone())) else { return 0 };
            if entry.id != subscription {
                return 0;
            }
            for sub in &entry.subscribers {
                match sub.outbox.push(frame.clone()) {
                    Ok(()) => delivered += 1,
                    Err(PushError::Overflow) => slow += 1,
                    Err(PushError::Closed) => {}
                }
            }
        }
        if slow > 0 {
            metrics::counter!("herald_slow_consumer_closes_total").increment(slow);
        }
        delivered
    }
}

/// Builds the client-facing frame for a backplane message, once.
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
                tracing::warn!(%app, %channel, error = %e, "undecodable backplane message dropped");
                metrics::counter!("herald_backplane_decode_errors_total").increment(1);
                return;
            }
        };
        let delivered = self.fan_out(app, channel, subscription, &frame);
        metrics::counter!("herald_deliveries_total").increment(delivered as u64);
        metrics::histogram!("herald_fanout_seconds").record(started.elapsed().as_secs_f64());
    }

    fn control(&self, event: bus::ControlEvent) {
        use bus::control_event::Kind;
        match event.kind {
            Some(Kind::KeyRevoked(revoked)) => {
                let n = self.close_where(CloseCode::KeyRevoked, CloseCode::KeyRevoked.reason(), |c| {
                    c.app.as_str() == revoked.app_id && lock(&c.key).as_str() == revoked.key_id
                });
                tracing::info!(app = %revoked.app_id, key = %revoked.key_id, closed = n, "api key revoked");
            }
            Some(Kind::AppDeleted(deleted)) => {
                let n = self.close_where(CloseCode::AppUnavailable, CloseCode::AppUnavailable.reason(), |c| {
                    c.app.as_str() == deleted.app_id
                });
                tracing::info!(app = %deleted.app_id, closed = n, "app deleted");
            }
            Some(Kind::SigningKeysRotated(_)) => self.keys_rotated.notify_one(),
            Some(Kind::AppLimitsChanged(_) | Kind::NamespacesChanged(_) | Kind::PresenceSyncAll(_)) | None => {}
        }
    }
}
