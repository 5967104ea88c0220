//! Cache channels: the last message of each is kept, so that a new
//! subscriber gets it at once (Pusher's `cache-` channels).
//!
//! A channel is a cache channel when its name is a Pusher cache channel's
//! ([`is_cache_channel`]: `cache-…`, `private-cache-…`,
//! `private-encrypted-cache-…`, `presence-cache-…`), whichever protocol
//! publishes to it or subscribes to it. Every publish to one stores the
//! message as the channel's last before it is sent to subscribers; entries
//! expire after the cache TTL (30 minutes by default, as Pusher's).
//!
//! Over NATS the last messages live in one JetStream stream per subject
//! space ([`SubjectSpace::cache_stream`](herald_proto::SubjectSpace::cache_stream)), one message per subject, created
//! on first use; in-process, in `LocalCache`, bounded to
//! [`LOCAL_CACHE_MAX_ENTRIES`] channels.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::pusher::channel::is_cache_name;
use herald_proto::{AppId, ChannelName};

/// A channel of an app.
type ChannelKey = (AppId, ChannelName);

/// How long a cache channel's last message is kept by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30 * 60);

/// Most cache channels the in-process bus keeps a message for; past it,
/// the entry stored longest ago makes room.
pub const LOCAL_CACHE_MAX_ENTRIES: usize = 100_000;

/// Whether `channel` keeps its last message.
///
/// ```
/// use herald_bus::cache::is_cache_channel;
/// use herald_proto::ChannelName;
/// assert!(is_cache_channel(&ChannelName::new("cache-prices")?));
/// assert!(is_cache_channel(&ChannelName::new("private-cache-inbox")?));
/// assert!(!is_cache_channel(&ChannelName::new("prices")?));
/// # Ok::<(), herald_proto::ChannelNameError>(())
/// ```
#[must_use]
pub fn is_cache_channel(channel: &ChannelName) -> bool {
    is_cache_name(channel.as_str())
}

/// The in-process bus's last messages.
pub(crate) struct LocalCache {
    entries: HashMap<ChannelKey, (Instant, Bytes)>,
    ttl: Duration,
    max_entries: usize,
}

impl Default for LocalCache {
    fn default() -> Self {
        Self { entries: HashMap::new(), ttl: DEFAULT_CACHE_TTL, max_entries: LOCAL_CACHE_MAX_ENTRIES }
    }
}

impl LocalCache {
    pub(crate) fn store(&mut self, key: ChannelKey, payload: Bytes, now: Instant) {
        if self.entries.len() >= self.max_entries && !self.entries.contains_key(&key) {
            let ttl = self.ttl;
            self.entries.retain(|_, (at, _)| now.duration_since(*at) < ttl);
            if self.entries.len() >= self.max_entries
                && let Some(oldest) = self.entries.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(key, (now, payload));
    }

    pub(crate) fn get(&self, key: &ChannelKey, now: Instant) -> Option<Bytes> {
        self.entries.get(key).filter(|(at, _)| now.duration_since(*at) < self.ttl).map(|(_, payload)| payload.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: &str) -> ChannelKey {
        (AppId::new("a").expect("app"), ChannelName::new(c).expect("channel"))
    }

    #[test]
    fn cache_channels_by_name() {
        for (name, cache) in [
            ("cache-x", true),
            ("private-cache-x", true),
            ("private-encrypted-cache-x", true),
            ("presence-cache-x", true),
            ("x", false),
            ("private-x", false),
            ("chat:cache-x", false),
            ("cachex", false),
        ] {
            assert_eq!(is_cache_channel(&ChannelName::new(name).expect("channel")), cache, "{name}");
        }
    }

    #[test]
    fn keeps_the_last_message_until_it_expires_and_stays_bounded() {
        let mut cache = LocalCache { ttl: Duration::from_secs(10), max_entries: 2, ..LocalCache::default() };
        let now = Instant::now();
        cache.store(key("cache-a"), Bytes::from_static(b"1"), now);
        cache.store(key("cache-a"), Bytes::from_static(b"2"), now);
        assert_eq!(cache.get(&key("cache-a"), now), Some(Bytes::from_static(b"2")));
        assert_eq!(cache.get(&key("cache-a"), now + Duration::from_secs(11)), None);
        cache.store(key("cache-b"), Bytes::from_static(b"b"), now + Duration::from_secs(1));
        cache.store(key("cache-c"), Bytes::from_static(b"c"), now + Duration::from_secs(2));
        // At the bound, the entry stored longest ago made room.
        assert_eq!(cache.entries.len(), 2);
        assert_eq!(cache.get(&key("cache-a"), now + Duration::from_secs(2)), None);
        assert!(cache.get(&key("cache-c"), now + Duration::from_secs(2)).is_some());
    }
}
