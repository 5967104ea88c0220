//! Edge failover under load: many clients spread over several edges,
//! subscribed to channels with history while a publisher sends at a fixed
//! rate; one edge is killed, and every client of it must come back on
//! another edge, recover from the last message it got, and miss nothing —
//! or be told, explicitly, that it could not recover.
//!
//! The clients are the generator's lean connections, but they recover the
//! way the protocol (and the SDK) does: after losing its connection a client
//! waits the SDK's reconnect delay (1 s ±10% by default, doubling on each
//! failed attempt), moves to the next edge of the list, and subscribes
//! again with `recover_from` set to the position (epoch and sequence) of
//! the last message it got. Messages at or below that position in the same
//! epoch are dropped, as the SDK drops them, and counted.
//!
//! Gaps are found from the payloads: the publisher numbers the messages of
//! each channel 0, 1, 2… (bytes 8..16, after the send time) and remembers
//! which publishes were not acknowledged. A client that sees a number
//! jump notes the numbers it skipped; at the end, a skipped number the
//! publisher had acknowledged is a silent gap. After an answer with
//! `recovered: false` the client starts again from whatever comes next:
//! what it missed was announced, and is counted as "not recovered".
//!
//! The publisher is on the last edge of the list; the first edge is the one
//! killed (by the caller's `kill`, once the warm-up is over).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::client::{self, client_frame, server_frame};
use prost::Message as _;
use tokio::sync::Semaphore;

use crate::wire::{Conn, WireError};
use crate::{BenchError, Histogram, now_ns};

/// What to run.
#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// Edges; clients are spread over them round-robin and fail over to the
    /// next one. The first is the one killed; the publisher uses the last.
    pub edges: Vec<SocketAddr>,
    /// Token with subscribe, history and publish on the channels.
    pub token: String,
    /// Subscriber connections.
    pub clients: usize,
    /// Channels with history; client `i` subscribes to `channels[i % len]`,
    /// the publisher sends to them in turn.
    pub channels: Vec<String>,
    /// Publishes per second over all channels.
    pub rate: f64,
    /// Payload size in bytes (at least 16: send time and number).
    pub payload_size: usize,
    /// Publishing before the kill.
    pub warmup: Duration,
    /// Publishing goes on this long after the last client of the killed
    /// edge resubscribed.
    pub after: Duration,
    /// Longest wait for the clients of the killed edge to resubscribe, and
    /// then for every client to have every message.
    pub settle: Duration,
    /// The first reconnect delay (±10%); each failed attempt doubles it,
    /// up to 30 s. The SDK's default is 1 s.
    pub reconnect_delay: Duration,
    /// Longest time one reconnect attempt (connect and subscribe) may take.
    pub attempt_timeout: Duration,
    /// Concurrent handshakes while connecting the clients at the start.
    pub connect_concurrency: usize,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            edges: vec![],
            token: String::new(),
            clients: 1000,
            channels: (0..10).map(|i| format!("failover:ch{i}")).collect(),
            rate: 100.0,
            payload_size: 64,
            warmup: Duration::from_secs(5),
            after: Duration::from_secs(5),
            settle: Duration::from_secs(60),
            reconnect_delay: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(10),
            connect_concurrency: 256,
        }
    }
}

/// Progress while the run goes.
#[derive(Debug, Clone, Copy)]
pub enum FailoverProgress {
    /// Clients connected and subscribed so far.
    Connecting { connected: usize, total: usize },
    /// Publishing; `resubscribed` of the killed edge's `orphans` are back
    /// (both 0 before the kill).
    Running { published: u64, resubscribed: usize, orphans: usize, elapsed: Duration },
    /// The kill was just sent.
    Killed,
}

/// The result.
#[derive(Debug, Clone, Default)]
pub struct FailoverReport {
    /// Clients in all.
    pub clients: usize,
    /// Clients that were on the killed edge.
    pub orphans: usize,
    /// Of those, clients subscribed again on another edge within `settle`.
    pub resubscribed: usize,
    /// Kill → subscribe answered on the new edge, per orphan that came back.
    pub time_to_resubscribed: Histogram,
    /// Resubscribes answered `recovered: true`.
    pub recovered: u64,
    /// Resubscribes answered `recovered: false`: the client was told it
    /// missed messages (history no longer covered the gap).
    pub not_recovered: u64,
    /// Acknowledged messages a client never got without being told: must be 0.
    pub silent_gaps: u64,
    /// Clients with at least one silent gap.
    pub clients_with_gaps: u64,
    /// A message the application would have seen twice: must be 0.
    pub duplicates: u64,
    /// Messages at or below the client's position (replays of what it had),
    /// dropped as the SDK drops them.
    pub dropped_replays: u64,
    /// Clients that at the end still missed acknowledged messages past
    /// their last (deliveries that never came).
    pub behind_at_end: u64,
    /// Clients of the other edges that lost their connection.
    pub bystanders_disconnected: u64,
    /// Reconnect attempts that failed, in all.
    pub failed_attempts: u64,
    /// Publishes sent and acknowledged.
    pub published: u64,
    /// Publishes not acknowledged (refused or unanswered).
    pub unacknowledged: u64,
}

impl FailoverReport {
    /// Whether every client of the killed edge came back and nothing was
    /// lost silently, duplicated or left undelivered.
    #[must_use]
    pub fn held(&self) -> bool {
        self.resubscribed == self.orphans && self.silent_gaps == 0 && self.duplicates == 0 && self.behind_at_end == 0
    }
}

impl std::fmt::Display for FailoverReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let t = &self.time_to_resubscribed;
        writeln!(f, "clients:                  {} ({} on the killed edge)", self.clients, self.orphans)?;
        writeln!(f, "resubscribed elsewhere:   {} of {}", self.resubscribed, self.orphans)?;
        writeln!(
            f,
            "kill → resubscribed:      p50 {:.0}  p99 {:.0}  max {:.0} ms",
            ms(t.quantile(0.50)),
            ms(t.quantile(0.99)),
            ms(t.max())
        )?;
        writeln!(f, "recovered:                {}", self.recovered)?;
        writeln!(f, "not recovered (told):     {}", self.not_recovered)?;
        writeln!(f, "silent gaps:              {} messages, {} clients", self.silent_gaps, self.clients_with_gaps)?;
        writeln!(f, "duplicates:               {}", self.duplicates)?;
        writeln!(f, "replays dropped:          {}", self.dropped_replays)?;
        writeln!(f, "behind at the end:        {}", self.behind_at_end)?;
        writeln!(f, "bystanders disconnected:  {}", self.bystanders_disconnected)?;
        writeln!(f, "failed reconnects:        {}", self.failed_attempts)?;
        writeln!(f, "publishes acknowledged:   {} ({} not)", self.published, self.unacknowledged)?;
        write!(f, "held:                     {}", if self.held() { "yes" } else { "NO" })
    }
}

/// What every client task shares.
struct Shared {
    config: FailoverConfig,
    stopping: AtomicBool,
    /// Set once the kill was sent: when it was, in ns after `epoch`.
    killed_at_ns: AtomicU64,
    epoch: Instant,
    resubscribed: AtomicUsize,
    times: Mutex<Histogram>,
    /// Per client: the number of the next message it expects, plus one (0:
    /// it takes whatever comes next).
    next: Vec<AtomicU64>,
}

/// One client's findings.
#[derive(Debug, Default)]
struct Findings {
    /// Numbers skipped: (first, last) inclusive.
    skipped: Vec<(u64, u64)>,
    duplicates: u64,
    dropped_replays: u64,
    recovered: u64,
    not_recovered: u64,
    disconnected: bool,
    failed_attempts: u64,
}

/// A client's place in its channel.
struct Cursor {
    slot: usize,
    /// The client was on the killed edge.
    orphan: bool,
    /// Counted among the orphans that came back.
    came_back: bool,
    position: Option<client::StreamPosition>,
    findings: Findings,
}

impl Cursor {
    /// Takes in one server frame.
    fn frame(&mut self, shared: &Shared, payload: &[u8]) {
        let Ok(client::ServerFrame { kind: Some(server_frame::Kind::Message(m)) }) =
            client::ServerFrame::decode(payload)
        else {
            return;
        };
        if let Some(at) = &self.position
            && at.epoch == m.epoch
            && m.seq <= at.seq
        {
            self.findings.dropped_replays += 1;
            return;
        }
        self.position = Some(client::StreamPosition { seq: m.seq, epoch: m.epoch });
        let Some(number) = m.data.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes) else {
            return;
        };
        let next = &shared.next[self.slot];
        match next.load(Ordering::Relaxed) {
            0 => {}
            expected if number + 1 < expected => self.findings.duplicates += 1,
            expected if number + 1 > expected => self.findings.skipped.push((expected - 1, number - 1)),
            _ => {}
        }
        next.store((number + 2).max(next.load(Ordering::Relaxed)), Ordering::Relaxed);
    }

    /// Takes in a subscribe answer.
    fn subscribed(&mut self, shared: &Shared, asked: bool, answer: &client::SubscribeResult) {
        if asked && answer.recovered {
            self.findings.recovered += 1;
            return;
        }
        if asked {
            self.findings.not_recovered += 1;
            // Told: what comes next is the new start.
            shared.next[self.slot].store(0, Ordering::Relaxed);
        }
        self.position = answer.position.clone().filter(|_| answer.history);
    }
}

/// A small xorshift for reconnect jitter.
fn jitter(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// Runs one client: reads, and after a lost connection reconnects to the
/// next edge and recovers, until the run stops.
async fn client(shared: Arc<Shared>, mut conn: Conn, mut edge: usize, mut cursor: Cursor) -> Findings {
    let config = &shared.config;
    let channel = &config.channels[cursor.slot % config.channels.len()];
    let mut rng = (cursor.slot as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    loop {
        let read = async {
            loop {
                let result = conn
                    .next_batch(|payload, _| {
                        cursor.frame(&shared, payload);
                        false
                    })
                    .await;
                if result.is_err() {
                    return;
                }
            }
        };
        let stop = tokio::select! {
            () = read => false,
            () = stopped(&shared) => true,
        };
        if stop {
            return cursor.findings;
        }
        cursor.findings.disconnected = true;
        // Reconnect as the SDK does: a delay, then the next edge.
        let mut attempt = 0u32;
        conn = loop {
            attempt += 1;
            let base = config.reconnect_delay.as_secs_f64() * 2f64.powi(attempt.min(16) as i32 - 1);
            let delay = Duration::from_secs_f64(base.min(30.0) * (0.9 + 0.2 * jitter(&mut rng)));
            let stop = tokio::select! {
                () = tokio::time::sleep(delay) => false,
                () = stopped(&shared) => true,
            };
            if stop {
                return cursor.findings;
            }
            edge = (edge + 1) % config.edges.len();
            let asked = cursor.position.clone();
            let trying = async {
                let mut conn = Conn::connect(config.edges[edge], &config.token).await?;
                let answer = conn.subscribe_from(channel, asked.clone(), |frame| cursor.frame(&shared, frame)).await?;
                Ok::<_, WireError>((conn, answer))
            };
            match tokio::time::timeout(config.attempt_timeout, trying).await {
                Ok(Ok((conn, answer))) => {
                    cursor.subscribed(&shared, asked.is_some(), &answer);
                    let killed = shared.killed_at_ns.load(Ordering::Acquire);
                    if cursor.orphan && !cursor.came_back && killed > 0 {
                        cursor.came_back = true;
                        let now = shared.epoch.elapsed().as_nanos() as u64;
                        let since = Duration::from_nanos(now.saturating_sub(killed));
                        shared.times.lock().unwrap_or_else(|e| e.into_inner()).record(since);
                        shared.resubscribed.fetch_add(1, Ordering::Release);
                    }
                    break conn;
                }
                _ => cursor.findings.failed_attempts += 1,
            }
        };
    }
}

async fn stopped(shared: &Shared) {
    while !shared.stopping.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the publisher learned.
struct Published {
    /// Per channel: how many were sent (numbers 0..sent).
    sent: Vec<u64>,
    /// Per channel: numbers not acknowledged.
    unacknowledged: Vec<HashSet<u64>>,
}

/// Publishes numbered messages to the channels in turn at `rate` until
/// `stop`, then waits (up to 10 s) for the outstanding acknowledgements.
async fn publisher(
    config: FailoverConfig,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<Published, BenchError> {
    let edge = *config.edges.last().ok_or_else(|| BenchError::Config("no edge".into()))?;
    let conn = Conn::connect(edge, &config.token).await?;
    let (mut reader, mut writer) = conn.split();
    let channels = config.channels.len() as u64;
    let acked = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let acks = {
        let acked = acked.clone();
        tokio::spawn(async move {
            while let Ok(replies) = reader.replies_by_id().await {
                let mut acked = acked.lock().unwrap_or_else(|e| e.into_inner());
                acked.extend(replies.into_iter().filter(|(_, ok)| *ok).map(|(id, _)| id));
            }
        })
    };
    let interval = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    let start = tokio::time::Instant::now();
    let mut payload = vec![0u8; config.payload_size];
    let mut sent = 0u64;
    while !stop.load(Ordering::Acquire) {
        tokio::time::sleep_until(start + interval.mul_f64(sent as f64)).await;
        let (slot, number) = (sent % channels, sent / channels);
        payload[..8].copy_from_slice(&now_ns().to_le_bytes());
        payload[8..16].copy_from_slice(&number.to_le_bytes());
        let frame = client::ClientFrame {
            request_id: sent + 1,
            kind: Some(client_frame::Kind::Publish(client::Publish {
                channel: config.channels[slot as usize].clone(),
                data: Bytes::copy_from_slice(&payload),
                event: None,
                idempotency_id: None,
            })),
        };
        writer.send(&frame).await?;
        sent += 1;
        count.store(sent, Ordering::Relaxed);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while acked.lock().unwrap_or_else(|e| e.into_inner()).len() < sent as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acks.abort();
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Published {
        sent: (0..channels).map(|c| sent / channels + u64::from(c < sent % channels)).collect(),
        unacknowledged: vec![HashSet::new(); channels as usize],
    };
    for i in (0..sent).filter(|i| !acked.contains(&(i + 1))) {
        out.unacknowledged[(i % channels) as usize].insert(i / channels);
    }
    Ok(out)
}

/// Runs the failover measurement; `kill` must kill the first edge's
/// process (SIGKILL) and is called once the warm-up is over. `progress` is
/// called about once a second.
///
/// # Errors
///
/// [`BenchError`] when the configuration is unusable or the clients or the
/// publisher cannot connect at the start.
pub async fn failover(
    config: FailoverConfig,
    kill: impl FnOnce(),
    mut progress: impl FnMut(FailoverProgress),
) -> Result<FailoverReport, BenchError> {
    if config.edges.len() < 2 {
        return Err(BenchError::Config("a failover needs at least two edges".into()));
    }
    if config.channels.is_empty() || config.payload_size < 16 || config.rate <= 0.0 || config.clients == 0 {
        return Err(BenchError::Config(
            "a failover needs clients, channels, a positive rate and payloads of at least 16 bytes".into(),
        ));
    }
    let shared = Arc::new(Shared {
        config: config.clone(),
        stopping: AtomicBool::new(false),
        killed_at_ns: AtomicU64::new(0),
        epoch: Instant::now(),
        resubscribed: AtomicUsize::new(0),
        times: Mutex::new(Histogram::default()),
        next: (0..config.clients).map(|_| AtomicU64::new(1)).collect(),
    });

    // Connect and subscribe every client; each expects number 0 first.
    let gate = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let mut joins = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let (shared, gate) = (shared.clone(), gate.clone());
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let config = &shared.config;
            let edge = i % config.edges.len();
            let mut conn = Conn::connect(config.edges[edge], &config.token).await?;
            let mut cursor =
                Cursor { slot: i, orphan: edge == 0, came_back: false, position: None, findings: Findings::default() };
            let channel = &config.channels[i % config.channels.len()];
            let answer = conn.subscribe_from(channel, None, |_| {}).await?;
            if !answer.history {
                return Err(WireError::Refused(format!("{channel} keeps no history")));
            }
            cursor.subscribed(&shared, false, &answer);
            Ok::<_, WireError>((conn, edge, cursor))
        }));
    }
    let mut tasks = Vec::with_capacity(config.clients);
    for (i, join) in joins.into_iter().enumerate() {
        let (conn, edge, cursor) = join.await.map_err(|e| BenchError::Config(e.to_string()))??;
        tasks.push((edge == 0, tokio::spawn(client(shared.clone(), conn, edge, cursor))));
        if i % 1000 == 999 {
            progress(FailoverProgress::Connecting { connected: i + 1, total: config.clients });
        }
    }
    let orphans = tasks.iter().filter(|(orphan, _)| *orphan).count();
    progress(FailoverProgress::Connecting { connected: config.clients, total: config.clients });

    let (count, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let publishing = tokio::spawn(publisher(config.clone(), count.clone(), stop.clone()));
    let started = Instant::now();
    let report = |progress: &mut dyn FnMut(FailoverProgress), killed: bool| {
        let resubscribed = shared.resubscribed.load(Ordering::Acquire);
        progress(FailoverProgress::Running {
            published: count.load(Ordering::Relaxed),
            resubscribed: if killed { resubscribed } else { 0 },
            orphans: if killed { orphans } else { 0 },
            elapsed: started.elapsed(),
        });
    };
    while started.elapsed() < config.warmup && !publishing.is_finished() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        report(&mut progress, false);
    }
    shared.killed_at_ns.store((shared.epoch.elapsed().as_nanos() as u64).max(1), Ordering::Release);
    kill();
    progress(FailoverProgress::Killed);
    let settle_by = Instant::now() + config.settle;
    let mut tick = Instant::now();
    while shared.resubscribed.load(Ordering::Acquire) < orphans && Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            report(&mut progress, true);
        }
    }
    let after = Instant::now() + config.after;
    while Instant::now() < after && !publishing.is_finished() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        report(&mut progress, true);
    }
    stop.store(true, Ordering::Release);
    let published = publishing.await.map_err(|e| BenchError::Config(e.to_string()))??;

    // Every client should get to the last number acknowledged on its channel.
    let last_acked: Vec<u64> = (0..config.channels.len())
        .map(|c| {
            let sent = published.sent[c];
            (0..sent).rev().find(|n| !published.unacknowledged[c].contains(n)).map_or(0, |n| n + 1)
        })
        .collect();
    let behind = |shared: &Shared| {
        (0..config.clients)
            .filter(|&i| {
                let next = shared.next[i].load(Ordering::Relaxed);
                next != 0 && next.saturating_sub(1) < last_acked[i % config.channels.len()]
            })
            .count() as u64
    };
    let caught_up_by = Instant::now() + config.settle.min(Duration::from_secs(20));
    while behind(&shared) > 0 && Instant::now() < caught_up_by {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let behind_at_end = behind(&shared);
    shared.stopping.store(true, Ordering::Release);

    let mut out = FailoverReport {
        clients: config.clients,
        orphans,
        resubscribed: 0,
        behind_at_end,
        published: published.sent.iter().sum::<u64>()
            - published.unacknowledged.iter().map(|u| u.len() as u64).sum::<u64>(),
        unacknowledged: published.unacknowledged.iter().map(|u| u.len() as u64).sum(),
        ..FailoverReport::default()
    };
    for (i, (orphan, task)) in tasks.into_iter().enumerate() {
        let findings = task.await.map_err(|e| BenchError::Config(e.to_string()))?;
        let unacknowledged = &published.unacknowledged[i % config.channels.len()];
        let gaps: u64 = findings
            .skipped
            .iter()
            .map(|&(first, last)| (first..=last).filter(|n| !unacknowledged.contains(n)).count() as u64)
            .sum();
        out.silent_gaps += gaps;
        out.clients_with_gaps += u64::from(gaps > 0);
        out.duplicates += findings.duplicates;
        out.dropped_replays += findings.dropped_replays;
        out.recovered += findings.recovered;
        out.not_recovered += findings.not_recovered;
        out.failed_attempts += findings.failed_attempts;
        if !orphan && findings.disconnected {
            out.bystanders_disconnected += 1;
        }
    }
    out.resubscribed = shared.resubscribed.load(Ordering::Acquire).min(orphans);
    let mut times = shared.times.lock().unwrap_or_else(|e| e.into_inner()).clone();
    times.sort();
    out.time_to_resubscribed = times;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            config: FailoverConfig::default(),
            stopping: AtomicBool::new(false),
            killed_at_ns: AtomicU64::new(0),
            epoch: Instant::now(),
            resubscribed: AtomicUsize::new(0),
            times: Mutex::new(Histogram::default()),
            next: vec![AtomicU64::new(1)],
        }
    }

    fn message(seq: u64, epoch: &str, number: u64) -> Vec<u8> {
        let mut data = vec![0u8; 16];
        data[8..].copy_from_slice(&number.to_le_bytes());
        let frame = client::ServerFrame {
            kind: Some(server_frame::Kind::Message(client::Message {
                channel: "hist:c".into(),
                data: data.into(),
                seq,
                epoch: epoch.into(),
                ..Default::default()
            })),
        };
        frame.encode_to_vec()
    }

    fn cursor() -> Cursor {
        Cursor { slot: 0, orphan: true, came_back: false, position: None, findings: Findings::default() }
    }

    #[test]
    fn skipped_numbers_duplicates_and_replays_are_told_apart() {
        let shared = shared();
        let mut c = cursor();
        for (seq, number) in [(10, 0), (12, 1), (15, 3), (16, 2), (17, 4)] {
            c.frame(&shared, &message(seq, "e1", number));
        }
        // 2 skipped when 3 came; 2 then came late: counted as a duplicate of
        // an order already passed (the protocol never reorders).
        assert_eq!(c.findings.skipped, vec![(2, 2)]);
        assert_eq!(c.findings.duplicates, 1);
        // At or below the position in the same epoch: a replay, dropped.
        c.frame(&shared, &message(17, "e1", 4));
        assert_eq!(c.findings.dropped_replays, 1);
        // Another epoch starts over without a replay.
        c.frame(&shared, &message(1, "e2", 5));
        assert_eq!((c.findings.dropped_replays, c.findings.skipped.len()), (1, 1));
    }

    #[test]
    fn a_resubscribe_told_it_did_not_recover_starts_again_from_what_comes() {
        let shared = shared();
        let mut c = cursor();
        c.frame(&shared, &message(5, "e1", 0));
        let lost = client::SubscribeResult {
            history: true,
            recovered: false,
            position: Some(client::StreamPosition { seq: 40, epoch: "e1".into() }),
        };
        c.subscribed(&shared, true, &lost);
        assert_eq!(c.findings.not_recovered, 1);
        // At or below the answer's position: dropped; past it, no gap is
        // charged for what the client was told it missed.
        c.frame(&shared, &message(39, "e1", 30));
        c.frame(&shared, &message(41, "e1", 31));
        c.frame(&shared, &message(43, "e1", 32));
        assert_eq!((c.findings.dropped_replays, c.findings.skipped.len(), c.findings.duplicates), (1, 0, 0));
        assert_eq!(shared.next[0].load(Ordering::Relaxed), 34);
    }
}
