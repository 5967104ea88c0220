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
//! A channel's messages all travel in one bucket, through one relay: their
//! order is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use herald_proto::subject::{channel_token, token_bucket};
use herald_proto::{AppId, ChannelName};
use tokio::task::JoinHandle;

use crate::lock;

/// The buckets this node subscribes to, by app and bucket.
#[derive(Default)]
pub(crate) struct Buckets {
    map: Mutex<HashMap<(AppId, u16), Arc<Bucket>>>,
}

/// One bucket of an app's channels with local subscriptions.
pub(crate) struct Bucket {
    app: AppId,
    number: u16,
    /// The local subscriptions of the bucket's channels, by subject token.
    routes: Mutex<HashMap<Box<str>, Routes>>,
    /// Held while the bucket's NATS subscription is set up: one at a time.
    setup: tokio::sync::Mutex<()>,
    /// The relay of the bucket's NATS subscription, once it is live.
    relay: Mutex<Option<JoinHandle<()>>>,
}

/// The subscriptions of one channel: nearly always one (a node subscribes
/// to a channel once; a second exists for a moment while one ends and the
/// next begins).
pub(crate) type Routes = Vec<Arc<Route>>;

/// One local subscription to a channel.
pub(crate) struct Route {
    pub(crate) channel: ChannelName,
    pub(crate) id: u64,
    /// The epoch and sequence of the last history message delivered to it.
    pub(crate) last: Mutex<Option<(String, u64)>>,
}

impl Bucket {
    pub(crate) fn app(&self) -> &AppId {
        &self.app
    }

    pub(crate) fn number(&self) -> u16 {
        self.number
    }

    /// The subscriptions of the channel whose subject token is `token`.
    pub(crate) fn routes(&self, token: &str) -> Option<Routes> {
        lock(&self.routes).get(token).cloned()
    }

    /// Whether the bucket's relay is running (its subscription is live).
    pub(crate) fn is_live(&self) -> bool {
        lock(&self.relay).is_some()
    }

    pub(crate) fn set_relay(&self, relay: JoinHandle<()>) {
        if let Some(old) = lock(&self.relay).replace(relay) {
            old.abort();
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
    pub(crate) fn add(self: &Arc<Self>, app: &AppId, channel: &ChannelName, id: u64) -> RouteGuard {
        let token: Box<str> = channel_token(channel).into();
        let number = token_bucket(&token);
        let route = Arc::new(Route { channel: channel.clone(), id, last: Mutex::new(None) });
        let mut map = lock(&self.map);
        let bucket = map
            .entry((app.clone(), number))
            .or_insert_with(|| {
                Arc::new(Bucket {
                    app: app.clone(),
                    number,
                    routes: Mutex::new(HashMap::new()),
                    setup: tokio::sync::Mutex::new(()),
                    relay: Mutex::new(None),
                })
            })
            .clone();
        lock(&bucket.routes).entry(token.clone()).or_default().push(route.clone());
        drop(map);
        RouteGuard { buckets: self.clone(), bucket, token, route }
    }

    /// How many buckets have local subscriptions (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// A local subscription to a channel, in its bucket; dropping it removes it.
pub(crate) struct RouteGuard {
    buckets: Arc<Buckets>,
    bucket: Arc<Bucket>,
    token: Box<str>,
    route: Arc<Route>,
}

impl RouteGuard {
    pub(crate) fn bucket(&self) -> &Arc<Bucket> {
        &self.bucket
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut map = lock(&self.buckets.map);
        let mut routes = lock(&self.bucket.routes);
        if let Some(subscriptions) = routes.get_mut(&self.token) {
            subscriptions.retain(|r| !Arc::ptr_eq(r, &self.route));
            if subscriptions.is_empty() {
                routes.remove(&self.token);
            }
        }
        if !routes.is_empty() {
            return;
        }
        drop(routes);
        let key = (self.bucket.app.clone(), self.bucket.number);
        if map.get(&key).is_some_and(|b| Arc::ptr_eq(b, &self.bucket)) {
            map.remove(&key);
        }
        drop(map);
        if let Some(relay) = lock(&self.bucket.relay).take() {
            relay.abort();
        }
    }
}
