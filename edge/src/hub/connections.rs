//! The registry of live connections, for key revocation, app deletion,
//! draining and pings.

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
}

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
