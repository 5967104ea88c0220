//! Channel subscriptions by bucket.
//!
//! An app's channel subjects are spread over
//! [`CHANNEL_BUCKETS`](herald_proto::subject::CHANNEL_BUCKETS) buckets. A
//! node subscribes to a bucket (`<prefix>.ch.<app>.<bucket>.*`) while it has
//! a local subscription to any channel in it, and its relay
//! ([`super::relay::Relay`]) hands each message to the subscriptions of the
//! message's channel. A node holding many channels of an app thus needs at
//! most one NATS subscription per bucket, not one per channel (the NATS
//! client gives each subscription a queue of its own, about 6 KiB), at the
//! price of also receiving the messages of the other channels of its
//! buckets, which the relay drops and counts.
//!
//! With [`ChannelRouting::Channel`] each channel is a bucket of its own,
//! followed by its exact subject: precise, at a NATS client queue per
//! channel.
//!
//! A channel's messages all travel in one bucket, through one relay: their
//! order is kept. A history gap fill (after NATS reconnected) holds the
//! other channels of its bucket meanwhile. A channel costs its entry here: its name, and per local
//! subscription its id and the last history position delivered to it.

use std::borrow::{Borrow, Cow};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use herald_proto::subject::{DOT_ESCAPE, channel_bucket};
use herald_proto::{AppId, ChannelName};
use tokio::task::JoinHandle;

use super::ChannelRouting;
use crate::lock;

/// The buckets this node subscribes to, by app and bucket.
#[derive(Default)]
pub(crate) struct Buckets {
    map: Mutex<HashMap<BucketKey, Arc<Bucket>>>,
}

/// An app, a bucket, and the one channel followed with
/// [`ChannelRouting::Channel`].
type BucketKey = (AppId, u16, Option<ChannelName>);

/// One bucket of an app's channels with local subscriptions.
pub(crate) struct Bucket {
    app: AppId,
    number: u16,
    /// The one channel it follows, by its exact subject
    /// ([`ChannelRouting::Channel`]).
    only: Option<ChannelName>,
    /// The bucket's channels with local subscriptions.
    channels: Mutex<HashSet<Entry>>,
    /// Held while the bucket's NATS subscription is set up: one at a time.
    setup: tokio::sync::Mutex<()>,
    /// The relay of the bucket's NATS subscription, once it is live.
    relay: Mutex<Option<JoinHandle<()>>>,
}

/// A channel with local subscriptions: nearly always one (a node subscribes
/// to a channel once; a second exists for a moment while one ends and the
/// next begins).
pub(crate) struct Channel {
    pub(crate) name: ChannelName,
    subscriptions: Mutex<Vec<Subscription>>,
}

struct Subscription {
    id: u64,
    /// The epoch and sequence of the last history message delivered to it.
    last: Option<(String, u64)>,
}

/// A channel in its bucket's set: told apart by name, and found by it.
struct Entry(Arc<Channel>);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Entry {}

impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.as_str().hash(state);
    }
}

impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        self.0.name.as_str()
    }
}

/// The ids of a channel's subscriptions, the one there nearly always is
/// without allocating.
pub(crate) enum Ids {
    One(u64),
    Many(Vec<u64>),
}

impl Ids {
    pub(crate) fn as_slice(&self) -> &[u64] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Many(many) => many,
        }
    }
}

impl Channel {
    /// The ids of its subscriptions.
    pub(crate) fn ids(&self) -> Ids {
        match lock(&self.subscriptions).as_slice() {
            [one] => Ids::One(one.id),
            many => Ids::Many(many.iter().map(|s| s.id).collect()),
        }
    }

    /// The last history position delivered to subscription `id`.
    pub(crate) fn last(&self, id: u64) -> Option<(String, u64)> {
        lock(&self.subscriptions).iter().find(|s| s.id == id).and_then(|s| s.last.clone())
    }

    /// Records the last history position delivered to subscription `id`.
    pub(crate) fn set_last(&self, id: u64, epoch: String, seq: u64) {
        if let Some(s) = lock(&self.subscriptions).iter_mut().find(|s| s.id == id) {
            s.last = Some((epoch, seq));
        }
    }
}

impl Bucket {
    pub(crate) fn app(&self) -> &AppId {
        &self.app
    }

    pub(crate) fn number(&self) -> u16 {
        self.number
    }

    /// The one channel it follows ([`ChannelRouting::Channel`]).
    pub(crate) fn only(&self) -> Option<&ChannelName> {
        self.only.as_ref()
    }

    /// The channel whose subject token is `token`, when it has local
    /// subscriptions.
    pub(crate) fn channel(&self, token: &str) -> Option<Arc<Channel>> {
        let name =
            if token.contains(DOT_ESCAPE) { Cow::Owned(token.replace(DOT_ESCAPE, ".")) } else { Cow::Borrowed(token) };
        lock(&self.channels).get(&*name).map(|e| e.0.clone())
    }

    /// Whether the bucket's relay is running (its subscription is live).
    pub(crate) fn is_live(&self) -> bool {
        lock(&self.relay).is_some()
    }

    pub(crate) fn set_relay(&self, relay: JoinHandle<()>) {
        match lock(&self.relay).replace(relay) {
            Some(old) => old.abort(),
            None => metrics::gauge!("herald_bus_channel_buckets").increment(1.0),
        }
    }

    /// Serializes the set-up of the bucket's subscription.
    pub(crate) async fn setting_up(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.setup.lock().await
    }
}

impl Buckets {
    /// Adds a local subscription `id` to `channel`; the returned guard
    /// removes it when dropped, and with the last one of its bucket the
    /// bucket's relay (and so its NATS subscription) ends.
    pub(crate) fn add(
        self: &Arc<Self>,
        app: &AppId,
        name: &ChannelName,
        id: u64,
        routing: ChannelRouting,
    ) -> RouteGuard {
        let number = channel_bucket(name);
        let only = (routing == ChannelRouting::Channel).then(|| name.clone());
        let mut map = lock(&self.map);
        let bucket = map
            .entry((app.clone(), number, only.clone()))
            .or_insert_with(|| {
                Arc::new(Bucket {
                    app: app.clone(),
                    number,
                    only,
                    channels: Mutex::new(HashSet::new()),
                    setup: tokio::sync::Mutex::new(()),
                    relay: Mutex::new(None),
                })
            })
            .clone();
        let mut channels = lock(&bucket.channels);
        let channel = match channels.get(name.as_str()) {
            Some(e) => e.0.clone(),
            None => {
                let c = Arc::new(Channel { name: name.clone(), subscriptions: Mutex::new(Vec::with_capacity(1)) });
                channels.insert(Entry(c.clone()));
                c
            }
        };
        lock(&channel.subscriptions).push(Subscription { id, last: None });
        drop(channels);
        drop(map);
        RouteGuard { buckets: self.clone(), bucket, channel, id }
    }
}

/// A local subscription to a channel, in its bucket; dropping it removes it.
pub(crate) struct RouteGuard {
    buckets: Arc<Buckets>,
    bucket: Arc<Bucket>,
    channel: Arc<Channel>,
    id: u64,
}

impl RouteGuard {
    pub(crate) fn bucket(&self) -> &Arc<Bucket> {
        &self.bucket
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.buckets.map);
        let mut channels = lock(&self.bucket.channels);
        let mut subscriptions = lock(&self.channel.subscriptions);
        if let Some(i) = subscriptions.iter().position(|s| s.id == self.id) {
            subscriptions.swap_remove(i);
        }
        if subscriptions.is_empty() {
            drop(subscriptions);
            channels.remove(self.channel.name.as_str());
        } else {
            return;
        }
        if !channels.is_empty() {
            return;
        }
        drop(channels);
        let key = (self.bucket.app.clone(), self.bucket.number, self.bucket.only.clone());
        if map.get(&key).is_some_and(|b| Arc::ptr_eq(b, &self.bucket)) {
            map.remove(&key);
        }
        drop(map);
        if let Some(relay) = lock(&self.bucket.relay).take() {
            relay.abort();
            metrics::gauge!("herald_bus_channel_buckets").decrement(1.0);
        }
    }
}
