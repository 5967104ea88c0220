//! The registry of live connections, for key revocation, app deletion,
//! draining, pings, and the heartbeat and token deadlines: one sweep for
//! every connection ([`Hub::deadline_loop`]) instead of a timer in each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use herald_proto::{AppId, CloseCode, KeyId};

use crate::outbox::{Outbox, PushError};
use crate::ws;

use super::limits::{AdmitError, AppLimits};
use super::{Hub, Wire, lock};

/// What the hub knows of a live connection.
pub struct ConnEntry {
    /// The connection's id.
    pub id: u64,
    /// Its app.
    pub app: AppId,
    /// The API key its token was minted from; changes on token refresh.
    /// `None` for a Pusher connection (no token).
    pub key: Mutex<Option<KeyId>>,
    /// Its send queue.
    pub outbox: Arc<Outbox>,
    /// The protocol it speaks.
    pub wire: Wire,
    /// The user it is: its token's subject, or the user a Pusher connection
    /// signed in as (`None` until then). User events and user termination
    /// go to every connection of a user.
    pub user: Mutex<Option<Arc<str>>>,
    /// When the connection is closed unless it sends something, or its
    /// token is refreshed: watched by [`Hub::deadline_loop`].
    pub deadlines: Deadlines,
}

/// A connection's heartbeat and token deadlines, in milliseconds on the
/// hub's clock ([`Hub::clock_ms`]); `u64::MAX` for none. Atomics: the
/// connection moves them on (a frame read, a token refreshed) while the
/// sweep reads them.
#[derive(Debug)]
pub struct Deadlines {
    heartbeat: AtomicU64,
    token: AtomicU64,
}

impl Deadlines {
    /// No deadline: the connection keeps its own (Pusher's activity
    /// timeout) or has none.
    #[must_use]
    pub fn none() -> Self {
        Self::new(u64::MAX, u64::MAX)
    }

    /// The client must send something by `heartbeat`; its token stops
    /// being acceptable at `token`.
    #[must_use]
    pub fn new(heartbeat: u64, token: u64) -> Self {
        Self { heartbeat: AtomicU64::new(heartbeat), token: AtomicU64::new(token) }
    }

    /// The client was heard from: it must send something again by `due`.
    pub fn heard(&self, due: u64) {
        self.heartbeat.store(due, Ordering::Relaxed);
    }

    /// The token was refreshed: it stops being acceptable at `due`.
    pub fn token(&self, due: u64) {
        self.token.store(due, Ordering::Relaxed);
    }

    /// Whether the token stopped being acceptable at `now`.
    #[must_use]
    pub fn token_expired(&self, now: u64) -> bool {
        now >= self.token.load(Ordering::Relaxed)
    }

    /// The close a connection is due at `now`, if any: an expired token
    /// first.
    fn due(&self, now: u64) -> Option<CloseCode> {
        if self.token_expired(now) {
            Some(CloseCode::TokenExpired)
        } else if now >= self.heartbeat.load(Ordering::Relaxed) {
            Some(CloseCode::HeartbeatTimeout)
        } else {
            None
        }
    }
}

/// How often [`Hub::deadline_loop`] looks at every connection's deadlines:
/// how late, at most, a deadline's close comes.
pub const DEADLINE_SWEEP: Duration = Duration::from_millis(250);

impl Hub {
    /// Registers a connection, unless its app already has its limit of
    /// connections here (see the hub's `limits`: the smaller of `edge_max`,
    /// 0 for none, and the app's announced limit, else `token_max`).
    /// Returns the app's announced limits, shared by its connections, or
    /// the limit that refused it.
    ///
    /// # Errors
    ///
    /// [`AdmitError`] when the app has its limit here, or is at its
    /// connection quota.
    pub fn register(
        &self,
        entry: Arc<ConnEntry>,
        edge_max: u32,
        token_max: Option<u32>,
    ) -> Result<Arc<AppLimits>, AdmitError> {
        let limits = self.admit(&entry.app, edge_max, token_max)?;
        lock(&self.conns).insert(entry.id, entry);
        metrics::gauge!("herald_connections").increment(1.0);
        Ok(limits)
    }

    /// Forgets a connection registered with [`Self::register`].
    pub fn unregister(&self, id: u64) {
        let Some(entry) = lock(&self.conns).remove(&id) else { return };
        self.release_app(&entry.app);
        metrics::gauge!("herald_connections").decrement(1.0);
    }

    /// Number of registered connections.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Queues `frame` on every registered connection speaking `wire`;
    /// returns how many took it (a connection whose queue is full is closed
    /// as a slow consumer).
    pub fn send_to_all(&self, wire: Wire, frame: &Bytes) -> usize {
        let all: Vec<Arc<ConnEntry>> = lock(&self.conns).values().filter(|c| c.wire == wire).cloned().collect();
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

    /// Milliseconds since the hub was made, at `at`: the clock of
    /// connections' [`Deadlines`].
    #[must_use]
    pub fn clock_ms(&self, at: tokio::time::Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.clock).as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs until aborted: every [`DEADLINE_SWEEP`], closes the
    /// connections past a deadline (see [`Deadlines`]) with its code; the
    /// connection's writer sends the close. One pass over the registry
    /// instead of a timer in every connection: an idle connection holds
    /// two numbers, not a timer entry.
    pub async fn deadline_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(DEADLINE_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut due = Vec::new();
        loop {
            tick.tick().await;
            let now = self.clock_ms(tokio::time::Instant::now());
            due.extend(lock(&self.conns).values().filter_map(|c| Some((c.deadlines.due(now)?, c.clone()))));
            for (code, conn) in due.drain(..) {
                if conn.outbox.is_closing() {
                    continue;
                }
                tracing::debug!(conn = conn.id, code = code.number(), "closing connection");
                metrics::counter!("herald_closes_total", "code" => code.name()).increment(1);
                conn.outbox.close(code, code.reason());
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_bus::{Bus, LocalBus};

    fn entry(hub: &Hub, id: u64, deadlines: Deadlines) -> Arc<ConnEntry> {
        let entry = Arc::new(ConnEntry {
            id,
            app: AppId::new("app").expect("app"),
            key: Mutex::new(None),
            outbox: Arc::new(Outbox::new(16, 1024)),
            wire: Wire::Herald,
            user: Mutex::new(None),
            deadlines,
        });
        hub.register(entry.clone(), 0, None).expect("registered");
        entry
    }

    #[test]
    fn an_expired_token_comes_before_a_missed_heartbeat() {
        let d = Deadlines::new(100, 200);
        assert_eq!(d.due(99), None);
        assert_eq!(d.due(100), Some(CloseCode::HeartbeatTimeout));
        assert_eq!(d.due(200), Some(CloseCode::TokenExpired));
        d.heard(300);
        assert_eq!(d.due(150), None);
        assert_eq!(d.due(250), Some(CloseCode::TokenExpired));
        d.token(400);
        assert_eq!(d.due(350), Some(CloseCode::HeartbeatTimeout));
        assert_eq!(Deadlines::none().due(u64::MAX - 1), None);
    }

    /// The sweep closes each connection past a deadline with its code, and
    /// only those, within one sweep of the deadline.
    #[tokio::test(start_paused = true)]
    async fn the_sweep_closes_connections_past_their_deadlines_only() {
        let hub = Hub::new(Bus::local(&LocalBus::new()));
        let now = hub.clock_ms(tokio::time::Instant::now());
        let silent = entry(&hub, 1, Deadlines::new(now + 1_000, u64::MAX));
        let expiring = entry(&hub, 2, Deadlines::new(now + 60_000, now + 2_000));
        let talking = entry(&hub, 3, Deadlines::new(now + 1_000, u64::MAX));
        let pusher = entry(&hub, 4, Deadlines::none());
        let sweep = tokio::spawn(hub.clone().deadline_loop());
        tokio::time::sleep(Duration::from_millis(900)).await;
        talking.deadlines.heard(hub.clock_ms(tokio::time::Instant::now()) + 60_000);
        tokio::time::sleep(Duration::from_millis(100) + DEADLINE_SWEEP).await;
        assert_eq!(silent.outbox.close_code().map(|c| c.0), Some(CloseCode::HeartbeatTimeout));
        assert!(!expiring.outbox.is_closing());
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(expiring.outbox.close_code().map(|c| c.0), Some(CloseCode::TokenExpired));
        assert!(!talking.outbox.is_closing(), "heard from in time");
        assert!(!pusher.outbox.is_closing(), "no deadline");
        sweep.abort();
    }
}
