//! The subscription registry: which local connections subscribe to which
//! channels of which app, sharded; and the bus subscription each channel
//! with local subscribers holds (the first local subscriber makes the bus
//! subscribe to the channel, the last one leaving drops it).

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, bus};
use tokio::sync::OnceCell;

use crate::outbox::Outbox;
use herald_bus::{BusError, ChannelSubscription};

use super::pusher::PusherParts;
use super::{Hub, Wire, lock};

/// Shards of the channel map.
pub(super) const SHARDS: usize = 64;

pub(super) type ChannelKey = (AppId, ChannelName);
type Ready = Arc<OnceCell<Result<Following, BusError>>>;

/// The bus subscriptions of one channel entry.
pub(super) struct Following {
    _messages: ChannelSubscription,
    /// Boxed: most channels are not presence channels, and every channel
    /// entry holds this.
    _presence: Option<Box<ChannelSubscription>>,
}

pub(super) struct Subscriber {
    pub(super) conn_id: u64,
    /// The protocol it speaks: which frame of a message it gets.
    pub(super) wire: Wire,
    /// Whether it is told the channel's subscriber count.
    pub(super) count: bool,
    pub(super) outbox: Arc<Outbox>,
    /// While the subscriber replays history: live frames kept aside.
    pub(super) held: Option<Vec<Held>>,
    /// The connection's presence entry, when it is reported as a member.
    pub(super) presence: Option<Arc<bus::PresenceEntry>>,
}

/// A live frame kept aside while its subscriber replays history.
pub(super) struct Held {
    /// Its sequence in the channel's history (0 without a position).
    pub(super) seq: u64,
    /// Its stream epoch's tag (that of "" without a position).
    pub(super) epoch: EpochTag,
    pub(super) frame: Bytes,
}

/// A short stand-in for a stream epoch, to compare held frames' epochs with
/// a replay's without keeping a string per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochTag(u64);

impl EpochTag {
    /// The tag of `epoch`.
    #[must_use]
    pub fn of(epoch: &str) -> Self {
        let mut h = DefaultHasher::new();
        epoch.hash(&mut h);
        Self(h.finish())
    }
}

pub(super) struct Channel {
    /// Id of this channel entry's bus subscription; deliveries made
    /// for another id (an earlier entry of the same channel) are ignored.
    pub(super) id: u64,
    pub(super) subscribers: Vec<Subscriber>,
    ready: Ready,
    pub(super) options: bus::NamespaceOptions,
    /// When the last fan-out of this channel ended: a message that follows
    /// closely is queued (see the fan-out's `CALM_GAP`).
    pub(super) last_fan_out: Option<std::time::Instant>,
    /// The app's usage counters (deliveries are counted there).
    pub(super) usage: Arc<herald_bus::usage::AppCounters>,
    /// Messages of a busy channel waiting to be pushed together (see the
    /// fan-out's module doc); boxed, as most channels never have one.
    pub(super) burst: Option<Box<Burst>>,
}

/// Messages of a busy channel waiting to be pushed together (see the
/// fan-out's module doc).
#[derive(Default)]
pub(super) struct Burst {
    pub(super) items: Vec<BurstItem>,
}

/// One message of a [`Burst`]: what its fan-out needs.
pub(super) struct BurstItem {
    pub(super) seq: u64,
    pub(super) epoch: EpochTag,
    pub(super) herald: Bytes,
    pub(super) pusher: Option<PusherParts>,
    pub(super) exclude: Option<u64>,
}

/// What [`Hub::subscribe`] is to do besides adding the subscriber.
pub struct SubscribeOptions {
    /// The channel's namespace options.
    pub options: bus::NamespaceOptions,
    /// Hold live frames until [`Hub::release`] (for a history replay).
    pub hold: bool,
    /// The presence entry to report this subscriber with.
    pub presence: Option<Arc<bus::PresenceEntry>>,
    /// The protocol the subscriber speaks.
    pub wire: Wire,
    /// Tell the subscriber the channel's subscriber count whenever it
    /// changes (Pusher's `subscription_count`).
    pub count: bool,
}

impl Hub {
    pub(super) fn shard(&self, app: &AppId, channel: &ChannelName) -> &Mutex<HashMap<ChannelKey, Channel>> {
        let mut h = DefaultHasher::new();
        app.hash(&mut h);
        channel.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
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
                // Room for one: most channels have one subscriber here
                // (a user's own channel), and an empty `Vec` grows to four.
                subscribers: Vec::with_capacity(1),
                ready: Arc::new(OnceCell::new()),
                options: how.options,
                last_fan_out: None,
                usage: self.usage.app(app),
                burst: None,
            });
            entry.subscribers.push(Subscriber {
                conn_id,
                wire: how.wire,
                count: how.count,
                outbox: outbox.clone(),
                held: how.hold.then(Vec::new),
                presence: how.presence,
            });
            (entry.ready.clone(), entry.id)
        };
        if how.wire == Wire::Pusher {
            self.pusher_subscriptions.fetch_add(1, Ordering::Relaxed);
        }
        self.occupancy_changed(app);
        let result = ready.get_or_init(|| self.follow(app, channel, id, follow_presence)).await;
        match result {
            Ok(_) => {
                metrics::gauge!("herald_subscriptions").increment(1.0);
                if how.count {
                    self.count_channel(app, channel).await;
                }
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
                if how.wire == Wire::Pusher {
                    self.pusher_subscriptions.fetch_sub(1, Ordering::Relaxed);
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
            Some(Box::new(sub))
        } else {
            None
        };
        Ok(Following { _messages: messages, _presence: presence })
    }

    /// Removes a subscriber. The channel's bus subscription ends with
    /// its last local subscriber.
    pub fn unsubscribe(&self, app: &AppId, channel: &ChannelName, conn_id: u64) {
        let (removed, counted) = {
            let mut shard = lock(self.shard(app, channel));
            let key = (app.clone(), channel.clone());
            let Some(entry) = shard.get_mut(&key) else { return };
            let Some(pos) = entry.subscribers.iter().position(|s| s.conn_id == conn_id) else { return };
            let gone = entry.subscribers.swap_remove(pos);
            if gone.wire == Wire::Pusher {
                self.pusher_subscriptions.fetch_sub(1, Ordering::Relaxed);
            }
            let removed = if entry.subscribers.is_empty() {
                // Dropped outside the lock: ends the bus subscription.
                shard.remove(&key)
            } else {
                None
            };
            (removed, gone.count)
        };
        if removed.as_ref().is_some_and(|c| c.options.presence) {
            lock(&self.presence).forget(app, channel);
        }
        drop(removed);
        if counted {
            self.uncount_channel(app, channel);
        }
        self.occupancy_changed(app);
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

    /// The id of a channel's bus subscription, while it has local
    /// subscribers.
    #[cfg(test)]
    pub(crate) fn subscription_id(&self, app: &AppId, channel: &ChannelName) -> Option<u64> {
        lock(self.shard(app, channel)).get(&(app.clone(), channel.clone())).map(|c| c.id)
    }
}
