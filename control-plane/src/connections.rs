//! The control plane's HTTP connections, as a table: what each one is
//! doing (requests in flight, and since when it has had none; request
//! bodies being read, and when their last byte came), how many come from
//! each client IP, and which one to evict when the listener is full — one
//! that has sent nothing yet, or whose every request is stalled in its
//! body, for [`STALL`] at least. It also counts, per API key,
//! the requests still sending their body.
//!
//! The accept loop registers each connection ([`Connections::register`])
//! and hands its [`Conn`] to the requests on it (a request extension); the
//! body reader ([`crate::body`]) marks the bodies it reads. Every map here
//! is bounded by what it counts: connections (at most
//! `max_http_connections`) and the bodies in flight on them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A connection silent this long since it opened, or a body with no byte
/// for this long, is stalled: its connection may be evicted when the
/// listener is full.
pub(crate) const STALL: Duration = Duration::from_secs(1);

/// The table of one control plane's HTTP connections.
#[derive(Default)]
pub(crate) struct Connections {
    table: Mutex<Table>,
    next_id: AtomicU64,
    /// Requests still sending their body, per API key (or `admin`).
    bodies_per_key: Mutex<HashMap<String, usize>>,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Arc<Conn>>,
    per_ip: HashMap<IpAddr, usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a connection was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its client IP already has `max_connections_per_ip` connections.
    PerIp,
}

impl Connections {
    /// Registers a connection from `ip`; refused when the IP (not loopback)
    /// already has `max_per_ip` connections (0: no limit).
    pub(crate) fn register(self: &Arc<Self>, ip: IpAddr, max_per_ip: usize) -> Result<Registration, Refused> {
        let ip = ip.to_canonical();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(ip));
        let mut table = lock(&self.table);
        let count = table.per_ip.entry(ip).or_default();
        if max_per_ip > 0 && !ip.is_loopback() && *count >= max_per_ip {
            if *count == 0 {
                table.per_ip.remove(&ip);
            }
            return Err(Refused::PerIp);
        }
        *count += 1;
        table.conns.insert(id, conn.clone());
        Ok(Registration { table: self.clone(), id, conn })
    }

    /// Asks the connection stalled the longest (silent since it opened, or
    /// every request on it reading a body and none with a byte, for
    /// [`STALL`] at least) to close. False when there is none.
    pub(crate) fn evict_stalled(&self) -> bool {
        let table = lock(&self.table);
        let victim = table
            .conns
            .values()
            .filter_map(|c| c.stalled_for().filter(|d| *d >= STALL).map(|d| (d, c)))
            .max_by_key(|(d, _)| *d)
            .map(|(_, c)| c.clone());
        drop(table);
        let Some(victim) = victim else { return false };
        victim.evicted.store(true, Ordering::Release);
        victim.evict.notify_one();
        true
    }

    /// Connections registered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.table).conns.len()
    }

    /// Takes one of `key`'s `max` places for a request sending its body;
    /// `None` when all are taken.
    pub(crate) fn body_slot(self: &Arc<Self>, key: &str, max: usize) -> Option<BodySlot> {
        let mut map = lock(&self.bodies_per_key);
        let n = map.entry(key.to_owned()).or_default();
        if *n >= max {
            if *n == 0 {
                map.remove(key);
            }
            return None;
        }
        *n += 1;
        Some(BodySlot { table: self.clone(), key: key.to_owned() })
    }
}

/// A registered connection; dropping it removes it from the table.
pub(crate) struct Registration {
    table: Arc<Connections>,
    id: u64,
    conn: Arc<Conn>,
}

impl Registration {
    /// The connection's state.
    pub(crate) fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut table = lock(&self.table.table);
        table.conns.remove(&self.id);
        if let Some(n) = table.per_ip.get_mut(&self.conn.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.per_ip.remove(&self.conn.ip);
            }
        }
    }
}

/// A place of an API key's requests sending their body, until dropped.
pub(crate) struct BodySlot {
    table: Arc<Connections>,
    key: String,
}

impl Drop for BodySlot {
    fn drop(&mut self) {
        let mut map = lock(&self.table.bodies_per_key);
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// What one connection is doing.
pub(crate) struct Conn {
    ip: IpAddr,
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
    bodies: AtomicUsize,
    body_progress: Mutex<Instant>,
    /// When it was accepted.
    opened: Instant,
    /// It sent the start of a request (or the HTTP/2 preface).
    spoke: AtomicBool,
    evicted: AtomicBool,
    evict: Notify,
}

impl Conn {
    fn new(ip: IpAddr) -> Self {
        let now = Instant::now();
        Self {
            ip,
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(now),
            bodies: AtomicUsize::new(0),
            body_progress: Mutex::new(now),
            opened: now,
            spoke: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    /// A request begins; it is in flight until the guard is dropped (with
    /// its response body).
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout`: since
    /// the last one ended (its response body sent), or since the connection
    /// was registered when it has had none.
    pub(crate) async fn idle(&self, timeout: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::Acquire) > 0 {
                timeout
            } else {
                timeout.saturating_sub(lock(&self.idle_since).elapsed())
            };
            if wait.is_zero() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Resolves once the connection is asked to close to make room.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await;
    }

    /// The client sent the start of a request: no longer silent.
    pub(crate) fn spoke(&self) {
        self.spoke.store(true, Ordering::Release);
    }

    /// A request body starts being read; the guard marks its progress.
    pub(crate) fn body(self: &Arc<Self>) -> BodyRead {
        *lock(&self.body_progress) = Instant::now();
        self.bodies.fetch_add(1, Ordering::AcqRel);
        BodyRead(self.clone())
    }

    /// How long it has been silent since it opened, or how long every
    /// request on it has been waiting for body bytes; `None` when it is
    /// doing anything else, or it is already evicted.
    fn stalled_for(&self) -> Option<Duration> {
        if self.evicted.load(Ordering::Acquire) {
            return None;
        }
        if !self.spoke.load(Ordering::Acquire) {
            return Some(self.opened.elapsed());
        }
        let bodies = self.bodies.load(Ordering::Acquire);
        let in_flight = self.in_flight.load(Ordering::Acquire);
        if bodies == 0 || bodies < in_flight {
            return None;
        }
        Some(lock(&self.body_progress).elapsed())
    }
}

/// One request in flight, until dropped.
pub(crate) struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *lock(&self.0.idle_since) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A body being read on a connection, until dropped.
pub(crate) struct BodyRead(Arc<Conn>);

impl BodyRead {
    /// Bytes of the body arrived.
    pub(crate) fn progress(&self) {
        *lock(&self.0.body_progress) = Instant::now();
    }
}

impl Drop for BodyRead {
    fn drop(&mut self) {
        self.0.bodies.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limit_spares_loopback_and_frees_on_drop() {
        let table = Arc::new(Connections::default());
        let far: IpAddr = "203.0.113.7".parse().expect("ip");
        let a = table.register(far, 2).expect("first");
        let _b = table.register(far, 2).expect("second");
        assert_eq!(table.register(far, 2).err(), Some(Refused::PerIp));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().expect("ip");
        assert_eq!(table.register(mapped, 2).err(), Some(Refused::PerIp), "the same IP over IPv6");
        let local: Vec<_> = (0..5).map(|_| table.register(IpAddr::from([127, 0, 0, 1]), 2)).collect();
        assert!(local.iter().all(Result::is_ok), "loopback is exempt");
        drop(a);
        assert!(table.register(far, 2).is_ok(), "a closed connection frees its place");
        assert!(table.register(far, 0).is_ok(), "0 is no limit");
    }

    #[test]
    fn only_silent_connections_and_those_stalled_in_a_body_are_evicted() {
        let table = Arc::new(Connections::default());
        let ip = IpAddr::from([127, 0, 0, 1]);
        let busy = table.register(ip, 0).expect("busy");
        let stalled = table.register(ip, 0).expect("stalled");
        let silent = table.register(ip, 0).expect("silent");
        let fresh = table.register(ip, 0).expect("fresh");
        for conn in [&busy, &stalled, &fresh] {
            conn.conn().spoke();
        }
        let _r1 = busy.conn().begin();
        let _r2 = stalled.conn().begin();
        let _body = stalled.conn().body();
        *lock(&stalled.conn().body_progress) = Instant::now() - STALL * 2;
        assert!(table.evict_stalled(), "the stalled one");
        assert!(stalled.conn().evicted.load(Ordering::Acquire));
        assert!(!table.evict_stalled(), "a connection silent for less than STALL stays");
        // Silent since it opened, longer than the body stalled: first.
        let mut old = Conn::new(ip);
        old.opened = Instant::now() - STALL * 3;
        let old = Arc::new(old);
        lock(&table.table).conns.insert(99, old.clone());
        assert!(table.evict_stalled(), "the silent one");
        assert!(old.evicted.load(Ordering::Acquire));
        assert!(!silent.conn().evicted.load(Ordering::Acquire) && !busy.conn().evicted.load(Ordering::Acquire));
        assert!(!table.evict_stalled(), "not twice, and never a busy one");
        assert_eq!(table.len(), 5);
    }

    #[test]
    fn body_slots_are_per_key() {
        let table = Arc::new(Connections::default());
        let a = table.body_slot("k1", 1).expect("first");
        assert!(table.body_slot("k1", 1).is_none());
        assert!(table.body_slot("k2", 1).is_some());
        drop(a);
        assert!(table.body_slot("k1", 1).is_some());
        assert!(lock(&table.bodies_per_key).is_empty(), "no entry left behind");
    }
}
