//! Per-app usage counters: relaxed atomics, shared through an `Arc` by
//! whoever counts for the app, drained by the node's reporter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use herald_proto::{AppId, CloseCode, ErrorCode, bus};

use crate::lock;

/// Where a published message came from.
///
/// ```
/// use herald_bus::usage::{Source, UsageRegistry};
/// use herald_proto::AppId;
/// let registry = UsageRegistry::new();
/// let counters = registry.app(&AppId::new("app1")?);
/// counters.published(Source::Grpc, 1, 100);
/// counters.published(Source::Client, 2, 20);
/// let usage = &registry.drain()[0];
/// assert_eq!((usage.published_grpc, usage.published_client, usage.bytes_in), (1, 2, 120));
/// # Ok::<(), herald_proto::IdError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The control plane's REST API.
    Rest,
    /// The control plane's gRPC API.
    Grpc,
    /// Pusher's HTTP API on the control plane.
    PusherHttp,
    /// A client: a Herald client publish or a Pusher client event.
    Client,
}

/// Why something was refused: a close code or an error code, counted under
/// its snake_case name.
///
/// ```
/// use herald_bus::usage::Refused;
/// use herald_proto::{CloseCode, ErrorCode};
/// let why = Refused::Error(ErrorCode::RateLimited);
/// assert_eq!(why.name(), "rate_limited");
/// assert_eq!(Refused::from_name("slow_consumer"), Some(Refused::Close(CloseCode::SlowConsumer)));
/// // `quota_exceeded` is both a close and an error code: the close code wins.
/// assert_eq!(Refused::from_name("quota_exceeded"), Some(Refused::Close(CloseCode::QuotaExceeded)));
/// assert_eq!(Refused::from_name("bored"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A connection closed (or refused) with this code.
    Close(CloseCode),
    /// A request answered with this error.
    Error(ErrorCode),
}

const CLOSES: usize = CloseCode::ALL.len();
const REASONS: usize = CLOSES + ErrorCode::ALL.len();

impl Refused {
    /// The reason's name (the code's snake_case name).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Close(c) => c.name(),
            Self::Error(e) => e.name(),
        }
    }

    /// The reason of this name; close codes first when a name is both.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        CloseCode::ALL
            .iter()
            .find(|c| c.name() == name)
            .map(|c| Self::Close(*c))
            .or_else(|| ErrorCode::from_name(name).map(Self::Error))
    }

    fn index(self) -> usize {
        match self {
            Self::Close(c) => CloseCode::ALL.iter().position(|x| *x == c).unwrap_or(0),
            Self::Error(e) => CLOSES + ErrorCode::ALL.iter().position(|x| *x == e).unwrap_or(0),
        }
    }

    fn at(index: usize) -> Option<Self> {
        if index < CLOSES {
            CloseCode::ALL.get(index).map(|c| Self::Close(*c))
        } else {
            ErrorCode::ALL.get(index - CLOSES).map(|e| Self::Error(*e))
        }
    }
}

/// One app's counters on this node since they were last drained.
///
/// ```
/// use herald_bus::usage::{Refused, Source, UsageRegistry};
/// use herald_proto::{AppId, ErrorCode};
/// let registry = UsageRegistry::new();
/// let counters = registry.app(&AppId::new("app1")?); // held by a connection, say
/// counters.connection_opened();
/// counters.published(Source::Rest, 1, 5);
/// counters.delivered(3, 300);
/// counters.bytes_out(40); // a reply
/// counters.webhook(true);
/// counters.webhook(false);
/// counters.refused(Refused::Error(ErrorCode::TooLarge));
/// counters.refused_n(Refused::Error(ErrorCode::TooLarge), 2);
///
/// let usage = &registry.drain()[0];
/// assert_eq!((usage.connections_opened, usage.published_rest, usage.delivered), (1, 1, 3));
/// assert_eq!((usage.bytes_in, usage.bytes_out), (5, 340));
/// assert_eq!((usage.webhooks_ok, usage.webhooks_failed), (1, 1));
/// assert_eq!((usage.refusals[0].reason.as_str(), usage.refusals[0].count), ("too_large", 3));
/// # Ok::<(), herald_proto::IdError>(())
/// ```
#[derive(Debug)]
pub struct AppCounters {
    published: [AtomicU64; 4],
    delivered: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connections_opened: AtomicU64,
    webhooks_ok: AtomicU64,
    webhooks_failed: AtomicU64,
    refusals: [AtomicU64; REASONS],
}

impl Default for AppCounters {
    fn default() -> Self {
        Self {
            published: Default::default(),
            delivered: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            connections_opened: AtomicU64::new(0),
            webhooks_ok: AtomicU64::new(0),
            webhooks_failed: AtomicU64::new(0),
            refusals: [const { AtomicU64::new(0) }; REASONS],
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl AppCounters {
    /// `n` messages published from `source`, of `bytes` payload bytes in
    /// all.
    pub fn published(&self, source: Source, n: u64, bytes: u64) {
        add(&self.published[source as usize], n);
        add(&self.bytes_in, bytes);
    }

    /// `n` deliveries to subscribers, of `bytes` frame bytes in all.
    pub fn delivered(&self, n: u64, bytes: u64) {
        add(&self.delivered, n);
        add(&self.bytes_out, bytes);
    }

    /// `bytes` more sent to clients (not a channel message: replies,
    /// replays).
    pub fn bytes_out(&self, bytes: u64) {
        add(&self.bytes_out, bytes);
    }

    /// A connection was opened.
    pub fn connection_opened(&self) {
        add(&self.connections_opened, 1);
    }

    /// A webhook delivery succeeded (`ok`) or failed for good.
    pub fn webhook(&self, ok: bool) {
        add(if ok { &self.webhooks_ok } else { &self.webhooks_failed }, 1);
    }

    /// Something was refused.
    pub fn refused(&self, why: Refused) {
        self.refused_n(why, 1);
    }

    /// `n` things were refused for the same reason.
    pub fn refused_n(&self, why: Refused, n: u64) {
        add(&self.refusals[why.index()], n);
    }

    /// Takes every counter (leaving zeros): `None` when all were zero.
    fn drain(&self, app: &AppId) -> Option<bus::AppUsage> {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed);
        let mut refusals = Vec::new();
        for (i, c) in self.refusals.iter().enumerate() {
            let n = take(c);
            if let (true, Some(why)) = (n > 0, Refused::at(i)) {
                refusals.push(bus::Refusal { reason: why.name().to_owned(), count: n });
            }
        }
        let usage = bus::AppUsage {
            app_id: app.as_str().to_owned(),
            published_rest: take(&self.published[Source::Rest as usize]),
            published_grpc: take(&self.published[Source::Grpc as usize]),
            published_pusher_http: take(&self.published[Source::PusherHttp as usize]),
            published_client: take(&self.published[Source::Client as usize]),
            delivered: take(&self.delivered),
            bytes_in: take(&self.bytes_in),
            bytes_out: take(&self.bytes_out),
            connections_opened: take(&self.connections_opened),
            webhooks_ok: take(&self.webhooks_ok),
            webhooks_failed: take(&self.webhooks_failed),
            refusals,
        };
        (usage != bus::AppUsage { app_id: usage.app_id.clone(), ..Default::default() }).then_some(usage)
    }
}

/// A node's counters of every app it counted for since its last report.
///
/// [`UsageRegistry::app`] takes the app's counters (a lock, once per
/// connection, channel or request, not per message); [`UsageRegistry::drain`]
/// takes every count and forgets the apps nobody holds any more, so the
/// registry holds at most the apps in use plus those counted since the last
/// report.
///
/// ```
/// use herald_bus::usage::UsageRegistry;
/// use herald_proto::AppId;
/// let registry = UsageRegistry::new();
/// let app = AppId::new("app1")?;
/// let counters = registry.app(&app);
/// counters.delivered(2, 20);
/// assert_eq!(registry.drain()[0].delivered, 2);
/// assert!(registry.drain().is_empty(), "each count is drained once");
/// drop(counters);
/// registry.app(&app).delivered(1, 10); // counted, then let go
/// assert_eq!(registry.drain().len(), 1, "its last counts are still drained");
/// # Ok::<(), herald_proto::IdError>(())
/// ```
#[derive(Debug, Default)]
pub struct UsageRegistry {
    apps: Mutex<HashMap<AppId, Arc<AppCounters>>>,
}

impl UsageRegistry {
    /// A new, empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters of `app`, created on first use.
    #[must_use]
    pub fn app(&self, app: &AppId) -> Arc<AppCounters> {
        lock(&self.apps).entry(app.clone()).or_default().clone()
    }

    /// Every app's counts since the last drain (apps with nothing counted
    /// are left out). Apps nobody holds any more are forgotten.
    #[must_use]
    pub fn drain(&self) -> Vec<bus::AppUsage> {
        let mut apps = lock(&self.apps);
        let mut out = Vec::new();
        apps.retain(|app, counters| {
            // Held only here (seen before draining): nothing counts into it
            // any more, so the drain takes its last counts.
            let held = Arc::strong_count(counters) > 1;
            std::sync::atomic::fence(Ordering::Acquire);
            out.extend(counters.drain(app));
            held
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_counts_once_and_forgets_unheld_apps() {
        let registry = UsageRegistry::new();
        let a = AppId::new("a").expect("app");
        let counters = registry.app(&a);
        counters.published(Source::Client, 2, 10);
        counters.published(Source::Rest, 1, 5);
        counters.delivered(3, 30);
        counters.refused(Refused::Error(ErrorCode::QuotaExceeded));
        counters.refused(Refused::Close(CloseCode::QuotaExceeded));
        let drained = registry.drain();
        assert_eq!(drained.len(), 1);
        let usage = &drained[0];
        assert_eq!((usage.published_client, usage.published_rest, usage.bytes_in), (2, 1, 15));
        assert_eq!((usage.delivered, usage.bytes_out), (3, 30));
        assert_eq!(usage.refusals.len(), 2);
        assert!(usage.refusals.iter().all(|r| r.reason == "quota_exceeded" && r.count == 1));
        // Nothing new: nothing reported, but the held app is kept.
        assert!(registry.drain().is_empty());
        assert_eq!(lock(&registry.apps).len(), 1);
        drop(counters);
        assert!(registry.drain().is_empty());
        assert!(lock(&registry.apps).is_empty());
    }

    #[test]
    fn every_reason_has_a_slot_and_a_name() {
        for (i, why) in (0..REASONS).filter_map(Refused::at).enumerate() {
            assert_eq!(why.index(), i);
            assert!(Refused::from_name(why.name()).is_some());
        }
    }
}
