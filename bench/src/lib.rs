//! The load generator behind `herald bench`: many lean WebSocket
//! subscribers, publishers that go as fast as the edge allows or at a fixed
//! rate, and a report of deliveries per second and publish → receive
//! latency percentiles. It speaks the `herald.v1` protocol directly (no SDK
//! per subscriber) so one core can drive tens of thousands of connections.
//!
//! # Layout
//!
//! - [`BenchConfig`] and [`run`]: the fan-out benchmark.
//! - [`idle_memory`]: resident memory per idle connection, read from the
//!   edge's `/metrics`.
//! - [`connect_storm`]: many clients connecting at once; time until all
//!   are in, failures by reason, handshake latency.
//! - [`failover`]: clients spread over several edges, subscribed to
//!   channels with history under a steady publish rate, one edge killed;
//!   time until its clients are subscribed again elsewhere, and whether any
//!   message was lost without the client being told, or came twice.
//! - [`soak`]: idle connections, slow requests and connect storms at once
//!   while a publisher and a subscriber keep working; what was held.
//! - `stamp`: how a payload carries its send time (binary for `herald.v1`
//!   subscribers, decimal text for Pusher ones), and reading it back.
//! - [`floor`]: the bare broadcaster every figure is compared with.
//! - [`Watch`]: the server's memory and CPU, read from `/proc/<pid>`.
//! - `wire`: the minimal client side of the protocol (handshake, frames).
//! - [`Histogram`]: latency samples and percentiles.
//!
//! Latency is measured from the publisher's clock to the subscriber's: the
//! first 8 bytes of every payload carry the send time (Unix nanoseconds), so
//! generator and edge must share a clock (the same machine). Each sample is
//! taken twice: when the message reached the subscriber's socket (the
//! kernel's receive timestamp, on Linux) and when the generator read it.
//! The first is the server's latency as a subscriber on its own machine
//! sees it; the second adds the generator's own queueing, since one
//! generator reads thousands of sockets one after another.

mod failover;
pub mod floor;
mod soak;
mod stamp;
mod storm;
mod watch;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_proto::client::{self, client_frame};
use tokio::sync::Semaphore;

pub use failover::{FailoverConfig, FailoverProgress, FailoverReport, failover};
pub use soak::{SlowReport, SoakConfig, SoakReport, soak};
use stamp::{STAMP_DIGITS, Stamp, is_pusher_delivery, pusher_sent_at};
pub use storm::{StormReport, connect_storm};
pub use watch::{ServerUsage, Watch, resident_memory, settle};
pub use wire::{Conn, WireError};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Edge addresses; subscribers are spread over them round-robin.
    pub edges: Vec<SocketAddr>,
    /// Token for subscribers and publishers (needs subscribe and publish on
    /// the channel).
    pub token: String,
    /// The channel every subscriber joins.
    pub channel: String,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Messages to publish.
    pub messages: usize,
    /// Payload size in bytes (at least 8: the send timestamp).
    pub payload_size: usize,
    /// Messages per second over all publishers; `None` = as fast as acks
    /// come back.
    pub rate: Option<f64>,
    /// Publisher connections.
    pub publishers: usize,
    /// Unacknowledged publishes per publisher when unpaced.
    pub window: usize,
    /// Every `sample_every`-th subscriber decodes messages for latency (the
    /// others only count frames).
    pub sample_every: usize,
    /// Longest wait for stragglers after the last publish.
    pub grace: Duration,
    /// Concurrent handshakes while connecting subscribers.
    pub connect_concurrency: usize,
    /// End-to-end flow control for unpaced runs: publishers wait while the
    /// slowest sampled subscriber is this many messages behind (0 = never
    /// wait). Without it a publisher faster than the subscribers only
    /// measures how fast their queues overflow.
    pub max_lag: u64,
    /// Subscribers speak Pusher protocol 7 to `/app/{key}` with this app
    /// key (the channel must then be a public Pusher channel); publishers
    /// still speak `herald.v1`. Payloads then start with the send time in
    /// decimal, since Pusher carries text.
    pub pusher_key: Option<String>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            edges: vec![],
            token: String::new(),
            channel: "bench".to_owned(),
            subscribers: 1000,
            messages: 10_000,
            payload_size: 64,
            rate: None,
            publishers: 1,
            window: 256,
            sample_every: 10,
            grace: Duration::from_secs(10),
            connect_concurrency: 256,
            max_lag: 2000,
            pusher_key: None,
        }
    }
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A connection failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
}

/// Progress while the benchmark runs.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// Subscribers connected so far.
    Connecting { connected: usize, total: usize },
    /// Publishing: messages sent and deliveries received so far.
    Running { sent: u64, delivered: u64, expected: u64, elapsed: Duration },
    /// Without publishers: every subscriber is subscribed, and the
    /// messages may be published now.
    Ready { subscribers: usize },
}

/// The result.
#[derive(Debug, Clone)]
pub struct Report {
    /// Messages published (acknowledged when unpaced).
    pub sent: u64,
    /// Publishes the edge refused (rate limited and the like).
    pub refused: u64,
    /// Deliveries received by all subscribers.
    pub delivered: u64,
    /// Deliveries expected (`sent × subscribers`).
    pub expected: u64,
    /// From the first publish to the last delivery.
    pub elapsed: Duration,
    /// Publish → arrival at the subscriber's socket (kernel receive time)
    /// of the sampled subscribers; empty where the platform lacks it, and
    /// missing the first reads of a run on a host where no socket had
    /// asked for receive timestamps yet (the kernel turns them on a little
    /// later).
    pub arrival: Histogram,
    /// Publish → read by the generator, of the sampled subscribers.
    pub latency: Histogram,
    /// Subscribers closed by the edge during the run (e.g. slow consumers).
    pub closed_subscribers: u64,
}

impl Report {
    /// Deliveries per second.
    #[must_use]
    pub fn deliveries_per_sec(&self) -> f64 {
        self.delivered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "messages sent:        {} ({} refused)", self.sent, self.refused)?;
        writeln!(f, "deliveries:           {} of {} expected", self.delivered, self.expected)?;
        writeln!(f, "elapsed:              {:.3} s", self.elapsed.as_secs_f64())?;
        writeln!(f, "deliveries/s:         {:.0}", self.deliveries_per_sec())?;
        writeln!(f, "closed subscribers:   {}", self.closed_subscribers)?;
        if !self.arrival.is_empty() {
            writeln!(f, "latency at socket:    {} ({} stamped)", self.arrival, self.arrival.len())?;
        }
        write!(f, "latency when read:    {}", self.latency)
    }
}

impl std::fmt::Display for Histogram {
    /// Percentiles in milliseconds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms  ({} samples)",
            ms(self.quantile(0.50)),
            ms(self.quantile(0.90)),
            ms(self.quantile(0.99)),
            ms(self.quantile(0.999)),
            ms(self.max()),
            self.len()
        )
    }
}

/// Latency samples.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    micros: Vec<u32>,
    sorted: bool,
}

impl Histogram {
    /// Records one sample.
    pub fn record(&mut self, d: Duration) {
        self.micros.push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        self.sorted = false;
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        self.micros.extend_from_slice(&other.micros);
        self.sorted = false;
    }

    /// Number of samples.
    #[must_use]
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether there are no samples.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
    }

    /// The `q` quantile (0..=1); zero without samples. Sorts a copy unless
    /// the samples are sorted already (as a [`Report`]'s are).
    #[must_use]
    pub fn quantile(&self, q: f64) -> Duration {
        if !self.sorted {
            let mut copy = self.clone();
            copy.sort();
            return copy.quantile(q);
        }
        if self.micros.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((self.micros.len() as f64 - 1.0) * q.clamp(0.0, 1.0)).round() as usize;
        Duration::from_micros(u64::from(self.micros[idx]))
    }

    /// The largest sample.
    #[must_use]
    pub fn max(&self) -> Duration {
        Duration::from_micros(u64::from(self.micros.iter().copied().max().unwrap_or(0)))
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

struct Counters {
    /// Messages received by each sampled subscriber.
    sampled: Vec<AtomicU64>,
    delivered: AtomicU64,
    closed: AtomicU64,
    stopping: AtomicBool,
    /// When the last delivery arrived, in ns after `epoch`.
    last_delivery_ns: AtomicU64,
    epoch: Instant,
}

/// Runs the fan-out benchmark. `progress` is called about once a second.
///
/// # Errors
///
/// [`BenchError`] when the configuration is unusable or connections fail
/// before the run starts.
pub async fn run(config: BenchConfig, mut progress: impl FnMut(Progress)) -> Result<Report, BenchError> {
    if config.edges.is_empty() {
        return Err(BenchError::Config("no edge address".into()));
    }
    let min_payload = if config.pusher_key.is_some() { STAMP_DIGITS } else { 8 };
    if config.payload_size < min_payload {
        return Err(BenchError::Config(format!("payload size must be at least {min_payload} bytes")));
    }
    if config.window == 0 {
        return Err(BenchError::Config("need a window of at least 1".into()));
    }
    // No publisher: the subscribers wait for `messages` published by
    // another process (several generators holding one broadcast's
    // subscribers between them).
    let receive_only = config.publishers == 0;
    let sample_every = config.sample_every.max(1);
    let counters = Arc::new(Counters {
        sampled: (0..config.subscribers.div_ceil(sample_every)).map(|_| AtomicU64::new(0)).collect(),
        delivered: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        last_delivery_ns: AtomicU64::new(0),
        epoch: Instant::now(),
    });

    // Connect and subscribe everyone before publishing.
    let gate = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let mut joins = Vec::with_capacity(config.subscribers);
    for i in 0..config.subscribers {
        let addr = config.edges[i % config.edges.len()];
        let (token, channel, gate) = (config.token.clone(), config.channel.clone(), gate.clone());
        let pusher_key = config.pusher_key.clone();
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let conn = match pusher_key {
                Some(key) => {
                    let mut conn = Conn::connect_pusher(addr, &key).await?;
                    conn.subscribe_pusher(&channel).await?;
                    conn
                }
                None => {
                    let mut conn = Conn::connect(addr, &token).await?;
                    conn.subscribe(&channel).await?;
                    conn
                }
            };
            Ok::<_, WireError>(conn)
        }));
        if i % 1000 == 999 {
            progress(Progress::Connecting { connected: i + 1, total: config.subscribers });
        }
    }
    let mut conns = Vec::with_capacity(config.subscribers);
    for join in joins {
        conns.push(join.await.map_err(|e| BenchError::Config(e.to_string()))??);
    }
    progress(Progress::Connecting { connected: conns.len(), total: config.subscribers });
    if receive_only {
        progress(Progress::Ready { subscribers: conns.len() });
    }

    let mut readers = Vec::with_capacity(conns.len());
    let mut histograms = Vec::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let counters = counters.clone();
        let sample = (i % sample_every == 0).then(|| {
            let histogram = Arc::new(std::sync::Mutex::new(Samples::default()));
            histograms.push(histogram.clone());
            (i / sample_every, histogram)
        });
        if sample.is_some() {
            conn.stamp_arrivals().map_err(WireError::from)?;
        }
        let pusher = config.pusher_key.is_some();
        readers.push(tokio::spawn(async move { read_deliveries(conn, counters, sample, pusher).await }));
    }

    // Publishers.
    let started = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    let per_publisher = config.messages.div_ceil(config.publishers.max(1));
    for p in 0..config.publishers {
        let addr = config.edges[p % config.edges.len()];
        let count = per_publisher.min(config.messages.saturating_sub(p * per_publisher));
        let rate = config.rate.map(|r| r / config.publishers as f64);
        let (token, channel) = (config.token.clone(), config.channel.clone());
        let (sent, refused) = (sent.clone(), refused.clone());
        let (payload_size, window) = (config.payload_size, config.window);
        let lag = (config.rate.is_none() && config.max_lag > 0).then(|| (counters.clone(), config.max_lag));
        let stamp = if config.pusher_key.is_some() { Stamp::Decimal } else { Stamp::Binary };
        publishers.push(tokio::spawn(async move {
            publish(addr, &token, &channel, count, (payload_size, stamp), rate, window, &sent, &refused, lag).await
        }));
    }

    // Progress while publishing and until deliveries stop coming.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut publishers_done = false;
    let mut done_at: Option<Instant> = None;
    if receive_only {
        sent.store(config.messages as u64, Ordering::Relaxed);
    }
    loop {
        tick.tick().await;
        let delivered = counters.delivered.load(Ordering::Relaxed);
        if receive_only && delivered == 0 {
            // Until the first delivery, as long as it takes.
            continue;
        }
        let sent_now = sent.load(Ordering::Relaxed);
        let alive = config.subscribers as u64 - counters.closed.load(Ordering::Relaxed);
        let expected = sent_now * alive;
        progress(Progress::Running { sent: sent_now, delivered, expected, elapsed: started.elapsed() });
        if !publishers_done && publishers.iter().all(|p| p.is_finished()) {
            publishers_done = true;
            done_at = Some(Instant::now());
        }
        if publishers_done && (delivered >= expected || done_at.is_some_and(|t| t.elapsed() > config.grace)) {
            break;
        }
    }
    for p in publishers {
        p.await.map_err(|e| BenchError::Config(e.to_string()))??;
    }
    counters.stopping.store(true, Ordering::Release);
    // Readers keep nothing of their own: stop them where they are.
    for r in &readers {
        r.abort();
    }
    for r in readers {
        let _ = r.await;
    }
    let (mut arrival, mut latency) = (Histogram::default(), Histogram::default());
    for h in &histograms {
        let samples = h.lock().unwrap_or_else(|e| e.into_inner());
        arrival.merge(&samples.arrival);
        latency.merge(&samples.read);
    }
    // Once, rather than for every percentile asked.
    arrival.sort();
    latency.sort();
    let last_delivery = counters.epoch + Duration::from_nanos(counters.last_delivery_ns.load(Ordering::Relaxed));
    let last_delivery = last_delivery.max(started);
    let sent = sent.load(Ordering::Relaxed);
    Ok(Report {
        sent,
        refused: refused.load(Ordering::Relaxed),
        delivered: counters.delivered.load(Ordering::Relaxed),
        expected: sent * config.subscribers as u64,
        elapsed: last_delivery.saturating_duration_since(started).max(Duration::from_millis(1)),
        arrival,
        latency,
        closed_subscribers: counters.closed.load(Ordering::Relaxed),
    })
}

/// A sampled subscriber's latencies.
#[derive(Default)]
struct Samples {
    /// Publish → arrival at the socket.
    arrival: Histogram,
    /// Publish → read.
    read: Histogram,
}

/// Reads a subscriber's frames; counts deliveries and, for a sampled
/// subscriber, records latency into its shared histograms. Runs until the
/// connection ends or the task is aborted at the end of the run.
async fn read_deliveries(
    mut conn: Conn,
    counters: Arc<Counters>,
    sample: Option<(usize, Arc<std::sync::Mutex<Samples>>)>,
    pusher: bool,
) {
    loop {
        let result = conn
            .next_batch(|payload, arrived| {
                if pusher {
                    if !is_pusher_delivery(payload) {
                        return false;
                    }
                    if let Some((_, samples)) = &sample
                        && let Some(sent) = pusher_sent_at(payload)
                    {
                        let since = |at: u64| Duration::from_nanos(at.saturating_sub(sent));
                        let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
                        samples.read.record(since(now_ns()));
                        if let Some(at) = arrived {
                            samples.arrival.record(since(at));
                        }
                    }
                    return true;
                }
                if let Some((_, samples)) = &sample {
                    if let Ok(frame) = <client::ServerFrame as prost::Message>::decode(payload)
                        && let Some(client::server_frame::Kind::Message(m)) = frame.kind
                        && m.data.len() >= 8
                    {
                        let sent = u64::from_le_bytes(m.data[..8].try_into().unwrap_or([0; 8]));
                        let since = |at: u64| Duration::from_nanos(at.saturating_sub(sent));
                        let mut samples = samples.lock().unwrap_or_else(|e| e.into_inner());
                        samples.read.record(since(now_ns()));
                        if let Some(at) = arrived {
                            samples.arrival.record(since(at));
                        }
                        return true;
                    }
                    return false;
                }
                // Count message frames without decoding them: field 12 of
                // ServerFrame, length-delimited (tag 0x62).
                payload.first() == Some(&0x62)
            })
            .await;
        match result {
            Ok(0) => {}
            Ok(n) => {
                counters.delivered.fetch_add(n, Ordering::Relaxed);
                if let Some((slot, _)) = &sample {
                    counters.sampled[*slot].fetch_add(n, Ordering::Relaxed);
                }
                let at = counters.epoch.elapsed().as_nanos() as u64;
                counters.last_delivery_ns.fetch_max(at, Ordering::Relaxed);
            }
            Err(_) => {
                counters.closed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    addr: SocketAddr,
    token: &str,
    channel: &str,
    count: usize,
    (payload_size, stamp): (usize, Stamp),
    rate: Option<f64>,
    window: usize,
    sent: &AtomicU64,
    refused: &AtomicU64,
    lag: Option<(Arc<Counters>, u64)>,
) -> Result<(), BenchError> {
    let conn = Conn::connect(addr, token).await?;
    let (mut reader, mut writer) = conn.split();
    let window = Arc::new(Semaphore::new(if rate.is_some() { 1 << 20 } else { window }));
    let acks = {
        let window = window.clone();
        async move {
            let mut acked = 0usize;
            while acked < count {
                let replies = reader.replies().await?;
                for ok in replies {
                    acked += 1;
                    window.add_permits(1);
                    if ok {
                        sent.fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, WireError>(())
        }
    };
    let sends = async {
        let mut payload = vec![0u8; payload_size];
        let interval = rate.map(|r| Duration::from_secs_f64(1.0 / r.max(0.001)));
        let start = tokio::time::Instant::now();
        for i in 0..count {
            if let Some(interval) = interval {
                tokio::time::sleep_until(start + interval.mul_f64(i as f64)).await;
            }
            let permit = window.acquire().await.map_err(|_| WireError::Closed)?;
            permit.forget();
            if let Some((counters, max_lag)) = &lag {
                // Wait while the slowest sampled subscriber lags too far.
                loop {
                    let slowest = counters.sampled.iter().map(|c| c.load(Ordering::Relaxed)).min().unwrap_or(0);
                    let published = sent.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed);
                    if published.saturating_sub(slowest) < *max_lag || counters.stopping.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            stamp.write(&mut payload, now_ns());
            let frame = client::ClientFrame {
                request_id: i as u64 + 1,
                kind: Some(client_frame::Kind::Publish(client::Publish {
                    channel: channel.to_owned(),
                    data: Bytes::copy_from_slice(&payload),
                    event: None,
                    idempotency_id: None,
                })),
            };
            writer.send(&frame).await?;
        }
        Ok::<_, WireError>(())
    };
    let (a, s) = tokio::join!(acks, sends);
    a?;
    s?;
    Ok(())
}

/// Result of [`idle_memory`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryReport {
    /// Connections opened.
    pub connections: usize,
    /// Edge resident memory before, in bytes.
    pub before: u64,
    /// Edge resident memory with every connection open and idle.
    pub after: u64,
}

impl MemoryReport {
    /// Bytes per connection.
    #[must_use]
    pub fn per_connection(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.connections.max(1) as f64
    }
}

/// What each idle connection of [`idle_memory`] subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdleSubscriptions {
    /// Each its own channel (`idle-<n>`): the edge then also holds a
    /// channel, and its bus subscription, per connection.
    Own,
    /// All the same channel.
    Shared(String),
    /// Nothing: authenticated connections only.
    None,
}

/// Opens `connections` authenticated connections, subscribed as
/// `subscriptions` says, lets them idle for `hold`, and compares the
/// server's resident memory before and after: read from `/proc/<pid>` when
/// `pid` is given, else from `herald_process_resident_memory_bytes` on the
/// edge's `/metrics`.
///
/// # Errors
///
/// [`BenchError`] when connecting fails or the edge does not report memory.
pub async fn idle_memory(
    edge: SocketAddr,
    token: &str,
    connections: usize,
    subscriptions: IdleSubscriptions,
    pid: Option<u32>,
    hold: Duration,
    mut progress: impl FnMut(Progress),
) -> Result<MemoryReport, BenchError> {
    let rss = async || match pid {
        Some(pid) => watch::resident_memory(pid)
            .ok_or_else(|| BenchError::Config(format!("cannot read the resident memory of process {pid}"))),
        None => wire::resident_memory(edge).await,
    };
    let before = rss().await?;
    let gate = Arc::new(Semaphore::new(256));
    let mut joins = Vec::with_capacity(connections);
    for i in 0..connections {
        let (token, gate) = (token.to_owned(), gate.clone());
        let channel = match &subscriptions {
            IdleSubscriptions::Own => Some(format!("idle-{i}")),
            IdleSubscriptions::Shared(channel) => Some(channel.clone()),
            IdleSubscriptions::None => None,
        };
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut conn = Conn::connect(edge, &token).await?;
            if let Some(channel) = channel {
                conn.subscribe(&channel).await?;
            }
            Ok::<_, WireError>(conn)
        }));
    }
    let mut conns = Vec::with_capacity(connections);
    for (i, join) in joins.into_iter().enumerate() {
        conns.push(join.await.map_err(|e| BenchError::Config(e.to_string()))??);
        if i % 1000 == 999 {
            progress(Progress::Connecting { connected: i + 1, total: connections });
        }
    }
    // Held idle (and allocators settled).
    tokio::time::sleep(hold).await;
    let after = rss().await?;
    drop(conns);
    Ok(MemoryReport { connections, before, after })
}
