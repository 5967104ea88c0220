//! The debug tap of one node (an edge or a control-plane replica): which
//! apps someone watches now, and the sampled, rate-bounded emission of
//! their [`bus::DebugEvent`]s onto `<prefix>.tap.<app>`.
//!
//! A watcher's control plane announces it with a [`bus::DebugTapOn`]
//! control event carrying a lease; every node that receives it keeps the
//! app in a small table until the lease runs out (renewals extend it).
//! While the table is empty, [`DebugTap::emit`] costs one atomic load; for
//! an app without a tap, one lookup under a plain mutex (never held across
//! an `.await`), and nothing is built or allocated. For a tapped app, a
//! token bucket (`rate` events per second, `burst` at once) bounds what
//! this node sends; past it events are dropped and counted, and the next
//! event sent carries how many were dropped since the previous one.
//!
//! Sending is fire and forget (a core NATS publish, no receipt): events
//! are lost when nobody listens, and at most [`MAX_IN_FLIGHT`] sends wait
//! for the bus at once (beyond, dropped and counted too).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::{AppId, bus};

use crate::{Bus, lock};

/// Longest lease a [`bus::DebugTapOn`] may give, whatever it says.
pub const MAX_LEASE: Duration = Duration::from_secs(120);

/// Largest payload preview a node may be configured with, in bytes.
pub const MAX_PREVIEW_BYTES: u64 = 64 * 1024;

/// Most sends of debug events waiting for the bus at once, per node.
pub const MAX_IN_FLIGHT: usize = 256;

/// How a node's debug tap is bounded.
///
/// ```
/// use herald_bus::debug_tap::{DebugTap, TapSettings};
/// use herald_bus::{Bus, LocalBus};
/// // 10 events a second per app, 20 at once, 64-byte previews.
/// let settings = TapSettings { rate: 10, burst: 20, preview_bytes: 64, ..TapSettings::default() };
/// let tap = DebugTap::new(Bus::local(&LocalBus::default()), "edge-1", settings);
/// assert_eq!(tap.settings().max_apps, TapSettings::default().max_apps);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapSettings {
    /// Debug events per second one node sends for one app.
    pub rate: u32,
    /// Events one node may send at once for one app before `rate` applies.
    pub burst: u32,
    /// Largest payload preview in a publish event, in bytes.
    pub preview_bytes: usize,
    /// Most apps tapped at once on one node; announcements of more are
    /// ignored (and logged).
    pub max_apps: usize,
}

impl Default for TapSettings {
    fn default() -> Self {
        Self { rate: 100, burst: 200, preview_bytes: 256, max_apps: 1000 }
    }
}

/// One tapped app on this node.
struct Tap {
    until: Instant,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
}

/// A node's debug tap. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use herald_bus::debug_tap::{DebugTap, TapSettings};
/// use herald_bus::{Bus, LocalBus};
/// use herald_proto::{AppId, bus};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let local = LocalBus::default();
/// let app = AppId::new("app1")?;
/// // A watcher's control plane listens to the app's debug events…
/// let mut watcher = Bus::local(&local).subscribe_debug_events(&app, 100).await?;
/// let settings = TapSettings { preview_bytes: 4, ..TapSettings::default() };
/// let tap = DebugTap::new(Bus::local(&local), "edge-1", settings);
/// assert!(!tap.any_on() && !tap.emit("app1", "conn-1", |_| unreachable!("not tapped: nothing is built")));
///
/// // …and announces its lease to every node.
/// let on = bus::DebugTapOn { app_id: "app1".into(), lease_ms: 30_000, ..Default::default() };
/// tap.on_control(&bus::ControlEvent { kind: Some(bus::control_event::Kind::DebugTapOn(on)), ..Default::default() });
/// assert!(tap.any_on() && tap.is_on("app1") && !tap.is_on("app2"));
///
/// let sent = tap.emit("app1", "conn-1", |tap| tap.publish_event("client", "chat", "", b"hello"));
/// assert!(sent);
/// let event = tokio::time::timeout(Duration::from_secs(5), watcher.recv()).await?.expect("an event");
/// assert_eq!((event.node_id.as_str(), event.connection_id.as_str()), ("edge-1", "conn-1"));
/// let Some(bus::debug_event::Kind::Publish(publish)) = event.kind else { panic!("a publish event") };
/// assert_eq!((&publish.preview[..], publish.truncated, publish.size), (&b"hell"[..], true, 5));
///
/// // A tap can be turned on directly, too (a renewal keeps the later end).
/// tap.turn_on(&AppId::new("app2")?, Duration::from_secs(10));
/// assert!(tap.is_on("app2"));
/// assert_eq!(tap.preview(b"hi"), (bytes::Bytes::from_static(b"hi"), false));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DebugTap {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Bus,
    node_id: String,
    settings: TapSettings,
    /// Entries in `taps` (some perhaps expired): 0 means no lookup at all.
    tapped: AtomicUsize,
    taps: Mutex<HashMap<AppId, Tap>>,
    in_flight: Arc<AtomicUsize>,
}

impl std::fmt::Debug for DebugTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugTap").field("node_id", &self.inner.node_id).finish_non_exhaustive()
    }
}

impl DebugTap {
    /// The tap of node `node_id`, sending through `bus`.
    #[must_use]
    pub fn new(bus: Bus, node_id: impl Into<String>, settings: TapSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                bus,
                node_id: node_id.into(),
                settings,
                tapped: AtomicUsize::new(0),
                taps: Mutex::new(HashMap::new()),
                in_flight: Arc::new(AtomicUsize::new(0)),
            }),
        }
    }

    /// The node's settings.
    #[must_use]
    pub fn settings(&self) -> TapSettings {
        self.inner.settings
    }

    /// Takes a [`bus::DebugTapOn`] (other control events are ignored): the
    /// app's tap runs until its lease (at most [`MAX_LEASE`]) ends.
    pub fn on_control(&self, event: &bus::ControlEvent) {
        let Some(bus::control_event::Kind::DebugTapOn(on)) = &event.kind else { return };
        let Ok(app) = AppId::new(&on.app_id) else { return };
        let lease = Duration::from_millis(u64::from(on.lease_ms)).min(MAX_LEASE);
        self.turn_on(&app, lease);
    }

    /// Turns the tap of `app` on for `lease` from now (or keeps a later end).
    pub fn turn_on(&self, app: &AppId, lease: Duration) {
        let now = Instant::now();
        let until = now + lease;
        let mut taps = lock(&self.inner.taps);
        taps.retain(|_, tap| tap.until > now);
        if let Some(tap) = taps.get_mut(app) {
            tap.until = tap.until.max(until);
        } else if taps.len() >= self.inner.settings.max_apps {
            tracing::warn!(%app, max = self.inner.settings.max_apps, "debug tap not turned on: too many apps tapped");
        } else {
            let burst = f64::from(self.inner.settings.burst.max(1));
            taps.insert(app.clone(), Tap { until, tokens: burst, refilled: now, dropped: 0 });
        }
        self.inner.tapped.store(taps.len(), Ordering::Release);
    }

    /// Whether some app may be watched now (one atomic load).
    #[must_use]
    pub fn any_on(&self) -> bool {
        self.inner.tapped.load(Ordering::Acquire) > 0
    }

    /// Whether someone watches `app` now. Cheap: see the module docs.
    #[must_use]
    pub fn is_on(&self, app: &str) -> bool {
        if self.inner.tapped.load(Ordering::Acquire) == 0 {
            return false;
        }
        lock(&self.inner.taps).get(app).is_some_and(|tap| tap.until > Instant::now())
    }

    /// Sends the event `make` builds, if `app` is tapped and within its
    /// rate; `make` is only called then. Returns whether it was sent.
    pub fn emit(&self, app: &str, connection_id: &str, make: impl FnOnce(&Self) -> bus::debug_event::Kind) -> bool {
        if self.inner.tapped.load(Ordering::Acquire) == 0 {
            return false;
        }
        let dropped = {
            let mut taps = lock(&self.inner.taps);
            let Some(tap) = taps.get_mut(app) else { return false };
            let now = Instant::now();
            if tap.until <= now {
                return false;
            }
            let settings = &self.inner.settings;
            let elapsed = now.duration_since(tap.refilled).as_secs_f64();
            tap.tokens = (tap.tokens + elapsed * f64::from(settings.rate)).min(f64::from(settings.burst.max(1)));
            tap.refilled = now;
            if tap.tokens < 1.0 {
                tap.dropped += 1;
                metrics::counter!("herald_debug_events_dropped_total").increment(1);
                return false;
            }
            if self.inner.in_flight.load(Ordering::Acquire) >= MAX_IN_FLIGHT {
                tap.dropped += 1;
                metrics::counter!("herald_debug_events_dropped_total").increment(1);
                return false;
            }
            tap.tokens -= 1.0;
            std::mem::take(&mut tap.dropped)
        };
        let Ok(app) = AppId::new(app) else { return false };
        let event = bus::DebugEvent {
            timestamp_ms: crate::now_ms(),
            node_id: self.inner.node_id.clone(),
            app_id: app.to_string(),
            connection_id: connection_id.to_owned(),
            dropped,
            kind: Some(make(self)),
        };
        metrics::counter!("herald_debug_events_sent_total").increment(1);
        let in_flight = self.inner.in_flight.clone();
        in_flight.fetch_add(1, Ordering::AcqRel);
        let bus = self.inner.bus.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.publish_debug_event(&app, &event).await {
                tracing::debug!(%app, error = %e, "debug event not sent");
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
        true
    }

    /// The preview of a payload: its first `preview_bytes` bytes, and
    /// whether that is shorter than the payload.
    #[must_use]
    pub fn preview(&self, data: &[u8]) -> (Bytes, bool) {
        let cap = self.inner.settings.preview_bytes;
        if data.len() <= cap {
            (Bytes::copy_from_slice(data), false)
        } else {
            (Bytes::copy_from_slice(&data[..cap]), true)
        }
    }

    /// A publish event of `data` on `channel` from `source` (see
    /// [`bus::DebugPublish::source`]).
    #[must_use]
    pub fn publish_event(&self, source: &str, channel: &str, event: &str, data: &[u8]) -> bus::debug_event::Kind {
        let (preview, truncated) = self.preview(data);
        bus::debug_event::Kind::Publish(bus::DebugPublish {
            source: source.to_owned(),
            channel: channel.to_owned(),
            size: u32::try_from(data.len()).unwrap_or(u32::MAX),
            preview,
            truncated,
            event: event.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalBus;

    fn tap(rate: u32, burst: u32) -> DebugTap {
        let bus = Bus::local(&LocalBus::new());
        DebugTap::new(bus, "n1", TapSettings { rate, burst, preview_bytes: 4, max_apps: 2 })
    }

    fn subscribe() -> bus::debug_event::Kind {
        bus::debug_event::Kind::Subscribe(bus::DebugSubscribe { channel: "c".into() })
    }

    #[tokio::test]
    async fn nothing_is_built_without_a_tap() {
        let tap = tap(10, 10);
        assert!(!tap.is_on("a"));
        assert!(!tap.emit("a", "", |_| unreachable!("built without a tap")));
    }

    #[tokio::test]
    async fn the_bucket_bounds_a_burst_and_counts_what_it_dropped() {
        let tap = tap(1, 3);
        let app = AppId::new("a").expect("app");
        tap.turn_on(&app, Duration::from_secs(30));
        let sent = (0..10).filter(|_| tap.emit("a", "", |_| subscribe())).count();
        assert_eq!(sent, 3);
        assert_eq!(lock(&tap.inner.taps).get("a").map(|t| t.dropped), Some(7));
        assert!(!tap.emit("b", "", |_| unreachable!("other app")));
    }

    #[tokio::test]
    async fn a_lease_ends_and_the_table_is_bounded() {
        let tap = tap(10, 10);
        tap.turn_on(&AppId::new("a").expect("app"), Duration::ZERO);
        assert!(!tap.is_on("a"));
        tap.turn_on(&AppId::new("b").expect("app"), Duration::from_secs(5));
        tap.turn_on(&AppId::new("c").expect("app"), Duration::from_secs(5));
        tap.turn_on(&AppId::new("d").expect("app"), Duration::from_secs(5));
        assert!(tap.is_on("b") && tap.is_on("c") && !tap.is_on("d"));
    }

    #[test]
    fn previews_are_capped() {
        let tap =
            DebugTap::new(Bus::local(&LocalBus::new()), "n", TapSettings { preview_bytes: 4, ..Default::default() });
        assert_eq!(tap.preview(b"abc"), (Bytes::from_static(b"abc"), false));
        assert_eq!(tap.preview(b"abcdef"), (Bytes::from_static(b"abcd"), true));
    }
}
