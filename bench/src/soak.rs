//! The soak: hostile and heavy loads at once — idle WebSocket connections
//! held open, slow requests (a header line, or a body, one byte at a time)
//! against the edge and the API, and repeated connect storms — while a
//! publisher and a subscriber keep working on the edge. The report says
//! what was held: whether the working pair lost anything and its latency
//! during the soak, how many idle connections stayed up, how the slow
//! requests ended (closed by the server, and after how long) and how each
//! storm went.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::client::{self, client_frame, server_frame};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::wire::{Conn, WireError};
use crate::{BenchError, Histogram, StormReport, connect_storm, now_ns};

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The edge under load; the publisher and the subscriber use it too.
    pub edge: SocketAddr,
    /// The control plane's API, for slow request bodies (`None`: only the
    /// edge gets slow requests).
    pub api: Option<SocketAddr>,
    /// The app and an API key of it that may publish to `channel`: the slow
    /// bodies are publishes the API accepts the head of.
    pub app_id: String,
    pub api_key: String,
    /// Token with subscribe and publish on `channel`.
    pub token: String,
    /// The working pair's channel.
    pub channel: String,
    /// How long the soak lasts.
    pub duration: Duration,
    /// Idle connections (upgraded and connected, subscribed to nothing).
    pub idle: usize,
    /// Slow requests, each sending one byte per `slow_interval`; half send
    /// a WebSocket upgrade's header lines to the edge, half (with `api`) a
    /// publish's body to the API.
    pub slow: usize,
    /// Pause between the bytes of a slow request.
    pub slow_interval: Duration,
    /// Clients of each connect storm.
    pub storm: usize,
    /// Time between the starts of two storms.
    pub storm_every: Duration,
    /// The working publisher's messages per second.
    pub rate: f64,
}

impl Default for SoakConfig {
    fn default() -> Self {
        Self {
            edge: SocketAddr::from(([127, 0, 0, 1], 8081)),
            api: None,
            app_id: String::new(),
            api_key: String::new(),
            token: String::new(),
            channel: "soak".into(),
            duration: Duration::from_secs(60),
            idle: 5000,
            slow: 1000,
            slow_interval: Duration::from_secs(1),
            storm: 2000,
            storm_every: Duration::from_secs(10),
            rate: 50.0,
        }
    }
}

/// How the slow requests of one kind ended.
#[derive(Debug, Clone, Default)]
pub struct SlowReport {
    /// Started.
    pub started: u64,
    /// Closed (or answered) by the server before the soak ended.
    pub closed: u64,
    /// Still open when the soak ended.
    pub open_at_end: u64,
    /// Could not even connect.
    pub refused: u64,
    /// Start → closed by the server.
    pub held_for: Histogram,
    /// Status lines the server answered with, and how often.
    pub answers: BTreeMap<String, u64>,
}

/// The result.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// Publishes sent / acknowledged.
    pub sent: u64,
    pub acked: u64,
    /// Acknowledged messages the subscriber never got.
    pub lost: u64,
    /// Messages the subscriber got.
    pub delivered: u64,
    /// Publish → delivered, during the soak.
    pub latency: Histogram,
    /// Publish → acknowledged.
    pub ack_latency: Histogram,
    /// Whether the working pair's connections lasted the whole soak.
    pub pair_connected: bool,
    /// Idle connections opened / still open at the end.
    pub idle_opened: u64,
    pub idle_failed: u64,
    pub idle_open_at_end: u64,
    /// Slow header lines to the edge; slow bodies to the API.
    pub slow_headers: SlowReport,
    pub slow_bodies: SlowReport,
    /// Each connect storm.
    pub storms: Vec<StormReport>,
}

impl SoakReport {
    /// Whether the working pair went on unharmed: connected throughout,
    /// nothing acknowledged lost, and every idle connection kept.
    #[must_use]
    pub fn held(&self) -> bool {
        self.pair_connected && self.lost == 0 && self.acked > 0 && self.idle_open_at_end == self.idle_opened
    }
}

impl std::fmt::Display for SoakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            f,
            "publisher + subscriber:   {} sent, {} acknowledged, {} delivered, {} lost",
            self.sent, self.acked, self.delivered, self.lost
        )?;
        writeln!(f, "  connected throughout:   {}", if self.pair_connected { "yes" } else { "NO" })?;
        writeln!(f, "  publish → delivered:    {}", self.latency)?;
        writeln!(f, "  publish → acknowledged: {}", self.ack_latency)?;
        writeln!(
            f,
            "idle connections:         {} opened ({} failed), {} open at the end",
            self.idle_opened, self.idle_failed, self.idle_open_at_end
        )?;
        for (what, slow) in [("slow headers (edge)", &self.slow_headers), ("slow bodies (API)", &self.slow_bodies)] {
            if slow.started == 0 {
                continue;
            }
            writeln!(
                f,
                "{what:<26}{} started, {} closed by the server (after p50 {:.1} s, max {:.1} s), {} open at the end, {} refused",
                slow.started,
                slow.closed,
                slow.held_for.quantile(0.5).as_secs_f64(),
                slow.held_for.max().as_secs_f64(),
                slow.open_at_end,
                slow.refused
            )?;
            for (answer, n) in &slow.answers {
                writeln!(f, "  {n:>8}  {answer}")?;
            }
        }
        for (i, storm) in self.storms.iter().enumerate() {
            writeln!(
                f,
                "storm {}:                  {} of {} connected in {:.2} s, handshake p99 {:.0} ms, {} failed",
                i + 1,
                storm.connected,
                storm.clients,
                storm.elapsed.as_secs_f64(),
                ms(storm.handshake.quantile(0.99)),
                storm.failed()
            )?;
            for (reason, n) in &storm.failures {
                writeln!(f, "  {n:>8}  {reason}")?;
            }
        }
        write!(f, "held:                     {}", if self.held() { "yes" } else { "NO" })
    }
}

/// One slow request: `head` at once, then `drip` one byte per `interval`
/// until the server closes or answers, or `stop`. Returns how it ended:
/// `Some((held for, answer))` when the server ended it.
async fn slow_request(
    addr: SocketAddr,
    head: String,
    drip: Vec<u8>,
    interval: Duration,
    stop: Arc<AtomicBool>,
) -> Result<Option<(Duration, String)>, std::io::Error> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await?;
    let (mut read, mut write) = stream.into_split();
    let ended = async move {
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) if answer.len() < 512 => answer.extend_from_slice(&buf[..n]),
                Ok(_) => {}
            }
            if answer.windows(2).any(|w| w == b"\r\n") {
                break;
            }
        }
        let line = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned();
        if line.is_empty() { "closed without an answer".to_owned() } else { line }
    };
    let dripping = async move {
        write.write_all(head.as_bytes()).await?;
        for byte in drip.iter().cycle() {
            tokio::time::sleep(interval).await;
            if stop.load(Ordering::Acquire) {
                return Ok::<_, std::io::Error>(write);
            }
            write.write_all(&[*byte]).await?;
        }
        Ok(write)
    };
    tokio::select! {
        answer = ended => Ok(Some((started.elapsed(), answer))),
        result = dripping => {
            // Stopped (still open) or the write failed (closed).
            let closed = result.is_err();
            Ok(closed.then(|| (started.elapsed(), "closed while writing".to_owned())))
        }
    }
}

/// Runs the slow requests of one kind.
fn slow_requests(
    n: usize,
    addr: SocketAddr,
    head: &str,
    drip: &[u8],
    interval: Duration,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<SlowReport> {
    let joins: Vec<_> = (0..n)
        .map(|_| tokio::spawn(slow_request(addr, head.to_owned(), drip.to_vec(), interval, stop.clone())))
        .collect();
    tokio::spawn(async move {
        let mut report = SlowReport { started: n as u64, ..SlowReport::default() };
        for join in joins {
            match join.await {
                Ok(Ok(Some((held, answer)))) => {
                    report.closed += 1;
                    report.held_for.record(held);
                    *report.answers.entry(answer).or_default() += 1;
                }
                Ok(Ok(None)) => report.open_at_end += 1,
                Ok(Err(_)) | Err(_) => report.refused += 1,
            }
        }
        report.held_for.sort();
        report
    })
}

/// Runs the soak.
///
/// # Errors
///
/// [`BenchError`] when the working pair cannot connect at the start.
pub async fn soak(config: SoakConfig) -> Result<SoakReport, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut report = SoakReport::default();

    // The working pair first.
    let mut subscriber = Conn::connect(config.edge, &config.token).await?;
    subscriber.subscribe(&config.channel).await?;
    let publisher = Conn::connect(config.edge, &config.token).await?;
    let latency = Arc::new(Mutex::new(Histogram::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let reading = {
        let (latency, delivered, stop) = (latency.clone(), delivered.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                let batch = tokio::time::timeout(
                    Duration::from_millis(200),
                    subscriber.next_batch(|payload, _| {
                        let Ok(client::ServerFrame { kind: Some(server_frame::Kind::Message(m)) }) =
                            client::ServerFrame::decode(payload)
                        else {
                            return false;
                        };
                        let sent = m.data.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
                        let mut latency = latency.lock().unwrap_or_else(|e| e.into_inner());
                        latency.record(Duration::from_nanos(now_ns().saturating_sub(sent)));
                        true
                    }),
                )
                .await;
                match batch {
                    Ok(Ok(n)) => {
                        delivered.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(Err(_)) => return false,
                    Err(_) => {}
                }
            }
            true
        })
    };
    let (mut replies, mut writer) = publisher.split();
    let sent_at = Arc::new(Mutex::new(BTreeMap::<u64, Instant>::new()));
    let ack_latency = Arc::new(Mutex::new(Histogram::default()));
    let acked = Arc::new(AtomicU64::new(0));
    let acking = {
        let (sent_at, ack_latency, acked) = (sent_at.clone(), ack_latency.clone(), acked.clone());
        tokio::spawn(async move {
            while let Ok(answers) = replies.replies_by_id().await {
                for (id, ok) in answers {
                    let at = sent_at.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                    if let (true, Some(at)) = (ok, at) {
                        acked.fetch_add(1, Ordering::Relaxed);
                        ack_latency.lock().unwrap_or_else(|e| e.into_inner()).record(at.elapsed());
                    }
                }
            }
        })
    };

    // The idle connections: they send nothing, and answer the edge's pings
    // as any live client does (a client that stops answering is closed
    // after the heartbeat timeout, rightly).
    let gate = Arc::new(Semaphore::new(256));
    let idle: Vec<_> = (0..config.idle)
        .map(|_| {
            let (gate, token, edge, stop) = (gate.clone(), config.token.clone(), config.edge, stop.clone());
            tokio::spawn(async move {
                let mut conn = {
                    let _permit = gate.acquire_owned().await;
                    Conn::connect(edge, &token).await?
                };
                while !stop.load(Ordering::Acquire) {
                    let read = tokio::time::timeout(Duration::from_millis(500), conn.next_batch(|_, _| false));
                    if let Ok(Err(_)) = read.await {
                        // Dropped during the soak.
                        return Ok(None);
                    }
                }
                Ok::<_, WireError>(Some(conn))
            })
        })
        .collect();

    // The slow requests.
    let host = config.edge;
    let upgrade = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
        herald_proto::CONNECT_PATH
    );
    let per_kind = if config.api.is_some() { config.slow / 2 } else { config.slow };
    let slow_headers =
        slow_requests(per_kind, config.edge, &upgrade, b"X-Slow: aaaaaaaaaaaaaaaa\r\n", config.slow_interval, &stop);
    let slow_bodies = config.api.map(|api| {
        let head = format!(
            "POST /v1/apps/{}/channels/{}/messages HTTP/1.1\r\nHost: {api}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
            config.app_id, config.channel, config.api_key
        );
        slow_requests(config.slow - per_kind, api, &head, b" ", config.slow_interval, &stop)
    });

    // The storms, while the publisher works.
    let storms = {
        let (stop, token, edge) = (stop.clone(), config.token.clone(), config.edge);
        let (clients, every) = (config.storm, config.storm_every);
        tokio::spawn(async move {
            let mut storms = Vec::new();
            let mut next = Instant::now() + Duration::from_secs(1);
            while clients > 0 && !stop.load(Ordering::Acquire) {
                tokio::time::sleep_until(next.into()).await;
                next += every;
                if stop.load(Ordering::Acquire) {
                    break;
                }
                if let Ok(storm) = connect_storm(edge, &token, clients, Duration::from_secs(30)).await {
                    storms.push(storm);
                }
            }
            storms
        })
    };

    // Publish for the whole soak.
    let interval = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let start = tokio::time::Instant::now();
    let mut payload = vec![0u8; 64];
    let mut sent = 0u64;
    let mut pair_connected = true;
    while start.elapsed() < config.duration {
        tokio::time::sleep_until(start + interval.mul_f64(sent as f64)).await;
        payload[..8].copy_from_slice(&now_ns().to_le_bytes());
        let frame = client::ClientFrame {
            request_id: sent + 1,
            kind: Some(client_frame::Kind::Publish(client::Publish {
                channel: config.channel.clone(),
                data: Bytes::copy_from_slice(&payload),
                event: None,
                idempotency_id: None,
            })),
        };
        sent_at.lock().unwrap_or_else(|e| e.into_inner()).insert(sent + 1, Instant::now());
        if writer.send(&frame).await.is_err() {
            pair_connected = false;
            break;
        }
        sent += 1;
    }
    // Wait for the last answers and deliveries.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && (acked.load(Ordering::Relaxed) + (sent_at.lock().unwrap_or_else(|e| e.into_inner()).len() as u64) < sent
            || delivered.load(Ordering::Relaxed) < acked.load(Ordering::Relaxed)
            || !sent_at.lock().unwrap_or_else(|e| e.into_inner()).is_empty())
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Release);
    acking.abort();

    report.sent = sent;
    report.acked = acked.load(Ordering::Relaxed);
    report.pair_connected = pair_connected && reading.await.unwrap_or(false);
    report.delivered = delivered.load(Ordering::Relaxed);
    report.lost = report.acked.saturating_sub(report.delivered);
    report.latency = latency.lock().unwrap_or_else(|e| e.into_inner()).clone();
    report.latency.sort();
    report.ack_latency = ack_latency.lock().unwrap_or_else(|e| e.into_inner()).clone();
    report.ack_latency.sort();

    // Which idle connections are still up: a ping each.
    let mut open = Vec::new();
    for join in idle {
        match join.await {
            Ok(Ok(Some(conn))) => {
                report.idle_opened += 1;
                open.push(conn);
            }
            Ok(Ok(None)) => report.idle_opened += 1,
            _ => report.idle_failed += 1,
        }
    }
    let checks: Vec<_> = open.into_iter().map(|mut conn| tokio::spawn(async move { conn.ping().await })).collect();
    for check in checks {
        if matches!(check.await, Ok(Ok(()))) {
            report.idle_open_at_end += 1;
        }
    }
    report.slow_headers = slow_headers.await.unwrap_or_default();
    if let Some(bodies) = slow_bodies {
        report.slow_bodies = bodies.await.unwrap_or_default();
    }
    report.storms = storms.await.unwrap_or_default();
    Ok(report)
}

impl Conn {
    /// Sends a `Ping` and waits for its answer (within 10 s).
    ///
    /// # Errors
    ///
    /// [`WireError`] when the connection ended or did not answer.
    pub async fn ping(&mut self) -> Result<(), WireError> {
        let ping = self.request(client_frame::Kind::Ping(client::Ping {}));
        match tokio::time::timeout(Duration::from_secs(10), ping).await {
            Ok(result) => result,
            Err(_) => Err(WireError::Closed),
        }
    }
}
