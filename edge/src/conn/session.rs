//! The state of an authenticated connection: its claims, subscriptions,
//! publish rate; when its token stops being acceptable is its connection
//! entry's deadline (`Deadlines`), which the hub's sweep watches.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_proto::{Capabilities, ChannelName, ChannelPattern, Claims, ClientId, Operation, Operations, bus};
use tokio::time::Instant;

use crate::hub::{ConnEntry, ConnectionId};

use crate::hub::{AppLimits, message_limit};

/// Idempotency ids remembered per connection.
const RECENT_IDS: usize = 32;

/// The idempotency ids of a connection's last publishes (at most
/// [`RECENT_IDS`]): boxed and made on the first, as most connections never
/// publish with an id and every connection holds this.
#[derive(Default)]
#[allow(clippy::box_collection)] // 8 bytes per connection instead of a `VecDeque`'s 32
pub(super) struct RecentIds(Option<Box<VecDeque<String>>>);

impl RecentIds {
    /// Whether `id` is one of them.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.0.as_ref().is_some_and(|ids| ids.iter().any(|i| i == id))
    }

    /// Remembers `id`, forgetting the oldest past [`RECENT_IDS`].
    pub(super) fn remember(&mut self, id: String) {
        let ids = self.0.get_or_insert_default();
        if ids.len() >= RECENT_IDS {
            ids.pop_front();
        }
        ids.push_back(id);
    }
}

/// A token bucket for client publishes.
/// In `f32`: every connection holds one, and a rate or burst needs no more
/// precision.
pub(crate) struct RateLimit {
    rate: f32,
    burst: f32,
    tokens: f32,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self { rate: rate as f32, burst: burst as f32, tokens: burst as f32, last: Instant::now() }
    }

    pub(crate) fn allow(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f32() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The state of an authenticated connection.
pub(super) struct Session {
    pub(super) claims: Kept,
    pub(super) entry: Arc<ConnEntry>,
    /// Subscribed channels → the presence entry reported for each, if any.
    pub(super) subscriptions: Subscriptions,
    pub(super) connection_id: ConnectionId,
    pub(super) rate: RateLimit,
    /// The app's limits as the control plane announced them, shared with
    /// the app's other connections here.
    pub(super) app_limits: Arc<AppLimits>,
    pub(super) recent_ids: RecentIds,
    pub(super) published: u64,
}

/// A connection's subscriptions: each channel with the presence entry
/// reported for it, if any. A list, searched: a connection has a few (at
/// most `max_subscriptions`, 128 by default), and a hash map with one
/// entry allocates room for four.
#[derive(Default)]
pub(super) struct Subscriptions(Vec<(ChannelName, Option<Arc<bus::PresenceEntry>>)>);

impl Subscriptions {
    pub(super) fn contains_key(&self, channel: &ChannelName) -> bool {
        self.0.iter().any(|(c, _)| c == channel)
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    /// Adds `channel` (or replaces its presence entry).
    pub(super) fn insert(&mut self, channel: ChannelName, presence: Option<Arc<bus::PresenceEntry>>) {
        if let Some(slot) = self.0.iter_mut().find(|(c, _)| *c == channel) {
            slot.1 = presence;
            return;
        }
        if self.0.capacity() == 0 {
            // Room for the first only: most connections stop there.
            self.0.reserve_exact(1);
        }
        self.0.push((channel, presence));
    }

    /// Removes `channel`; its presence entry, if it was there.
    pub(super) fn remove(&mut self, channel: &ChannelName) -> Option<Option<Arc<bus::PresenceEntry>>> {
        let at = self.0.iter().position(|(c, _)| c == channel)?;
        Some(self.0.swap_remove(at).1)
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = (ChannelName, Option<Arc<bus::PresenceEntry>>)> + '_ {
        self.0.drain(..)
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &ChannelName> {
        self.0.iter().map(|(c, _)| c)
    }
}

/// What a session keeps of its token's claims: what its requests check
/// later (its app is the connection entry's). The rest (issuer, audience,
/// token id, origins, times, key) only the handshake or a refresh needs,
/// and an idle connection does not hold.
pub(super) struct Kept {
    pub(super) sub: ClientId,
    pub(super) caps: Caps,
    /// Shown to other presence members.
    pub(super) info: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// The token's limit on a message's payload, if any.
    pub(super) max_message_bytes: Option<u32>,
}

/// A token's capabilities as a list of rules, in pattern order: a token has
/// a few, and the map they are read into allocates room for eleven.
pub(super) struct Caps(Box<[(ChannelPattern, Operations)]>);

impl Caps {
    /// As [`Capabilities::allows`].
    pub(super) fn allows(&self, channel: &str, op: Operation) -> bool {
        self.0.iter().any(|(pattern, ops)| ops.contains(op) && pattern.matches(channel))
    }
}

impl From<&Capabilities> for Caps {
    fn from(caps: &Capabilities) -> Self {
        Self(caps.iter().map(|(pattern, ops)| (pattern.clone(), ops)).collect())
    }
}

/// What a session keeps of `claims`.
pub(super) fn kept(claims: Claims) -> Kept {
    Kept {
        caps: Caps::from(&claims.caps),
        max_message_bytes: claims.lim.and_then(|l| l.max_message_bytes),
        info: claims.info.map(Box::new),
        sub: claims.sub,
    }
}

impl Session {
    /// The largest message payload this connection may publish now: the
    /// smaller of the edge's `edge_max` and the app's limit, as announced,
    /// else as the token says.
    pub(super) fn max_message(&self, edge_max: usize) -> usize {
        message_limit(edge_max, self.app_limits.max_message_bytes().or(self.claims.max_message_bytes))
    }
}

/// The furthest a token deadline is set: a token valid for longer (up to an
/// `exp` of `i64::MAX`) is treated as valid for this long, which no
/// connection outlives.
const MAX_TOKEN_DEADLINE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// When a token with this `exp` (Unix seconds) stops being acceptable:
/// `leeway` after `exp`, never further than [`MAX_TOKEN_DEADLINE`] from now.
/// Saturating throughout, so that no `exp` overflows it.
pub(super) fn expiry_instant(exp: i64, leeway: Duration) -> Instant {
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let now_s = i64::try_from(now_s).unwrap_or(i64::MAX);
    let left = u64::try_from(exp.saturating_sub(now_s)).unwrap_or(0);
    let left = Duration::from_secs(left).saturating_add(leeway).min(MAX_TOKEN_DEADLINE);
    let now = Instant::now();
    now.checked_add(left).unwrap_or(now)
}
