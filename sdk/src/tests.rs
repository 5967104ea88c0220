//! The client task against a scripted in-memory edge, in paused Tokio time:
//! the reconnect schedule, the reset after a stable connection, drains,
//! heartbeats and terminal codes, checked to the millisecond without
//! waiting for real time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_proto::client::{self, client_frame, reply, server_frame};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::transport::{AbortOnDrop, BoxFuture, Connector, Inbound, Link, Outgoing};
use crate::{Backoff, Client, ConnectionState, DisconnectReason, Error};

/// What the fake edge does with one connection attempt.
#[derive(Clone, Debug)]
enum Script {
    /// Refuse the TCP connection.
    Refuse,
    /// Accept, send `Connected` with these heartbeat settings, answer
    /// requests, then end as `end` says after `after`.
    Accept { heartbeat_ms: (u32, u32), after: Duration, end: End },
}

#[derive(Clone, Debug)]
enum End {
    /// Close with this code (or drop the connection without one).
    Close(Option<u16>),
    /// Never end; answer requests.
    Never,
    /// Go silent at once: no replies, no pings, never close.
    Silent,
}

#[derive(Default)]
struct FakeEdge {
    script: Mutex<VecDeque<Script>>,
    attempts: Mutex<Vec<(Instant, String)>>,
}

impl FakeEdge {
    fn new(script: impl IntoIterator<Item = Script>) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(script.into_iter().collect()), attempts: Mutex::default() })
    }

    fn attempts(&self) -> Vec<(Instant, String)> {
        self.attempts.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

fn frame(kind: server_frame::Kind) -> Inbound {
    Inbound::Frame(client::ServerFrame { kind: Some(kind) })
}

async fn serve(
    mut out: mpsc::Receiver<Outgoing>,
    inbound: mpsc::Sender<Inbound>,
    heartbeat: (u32, u32),
    after: Duration,
    end: End,
) {
    // The Connect frame.
    if out.recv().await.is_none() {
        return;
    }
    let connected = client::Connected {
        connection_id: "fake-1".into(),
        client_id: "u".into(),
        heartbeat_interval_ms: heartbeat.0,
        heartbeat_timeout_ms: heartbeat.1,
        token_expires_at_ms: 0,
        limits: None,
        edge_id: "fake".into(),
    };
    let _ = inbound.send(frame(server_frame::Kind::Connected(connected))).await;
    if matches!(end, End::Silent) {
        // Keep the connection open and say nothing.
        while out.recv().await.is_some() {}
        return;
    }
    let deadline = tokio::time::sleep(after);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline, if !matches!(end, End::Never) => {
                if let End::Close(code) = end {
                    let _ = inbound.send(Inbound::Closed { code, reason: "scripted".into() }).await;
                }
                return;
            }
            item = out.recv() => {
                let Some(Outgoing::Frame(bytes)) = item else {
                    if item.is_none() { return; }
                    continue;
                };
                let Ok(request) = client::ClientFrame::decode(bytes) else { continue };
                let value = match request.kind {
                    Some(client_frame::Kind::Subscribe(_)) => Some(client::reply_ok::Value::Subscribed(client::SubscribeResult::default())),
                    _ => None,
                };
                let reply = client::Reply {
                    request_id: request.request_id,
                    result: Some(reply::Result::Ok(client::ReplyOk { value })),
                };
                let _ = inbound.send(frame(server_frame::Kind::Reply(reply))).await;
            }
        }
    }
}

impl Connector for Arc<FakeEdge> {
    fn connect(&self, url: &str) -> BoxFuture<Result<Link, String>> {
        if let Ok(mut attempts) = self.attempts.lock() {
            attempts.push((Instant::now(), url.to_owned()));
        }
        let next = self.script.lock().ok().and_then(|mut s| s.pop_front()).unwrap_or(Script::Refuse);
        Box::pin(async move {
            match next {
                Script::Refuse => Err("connection refused".to_owned()),
                Script::Accept { heartbeat_ms, after, end } => {
                    let (out_tx, out_rx) = mpsc::channel(64);
                    let (in_tx, in_rx) = mpsc::channel(64);
                    let task = tokio::spawn(serve(out_rx, in_tx, heartbeat_ms, after, end));
                    Ok(Link { out: out_tx, inbound: in_rx, _tasks: vec![AbortOnDrop(task)] })
                }
            }
        })
    }
}

fn client(edge: &Arc<FakeEdge>, backoff: Backoff, urls: &[&str]) -> Client {
    let mut builder = Client::builder(urls[0]).token("t").backoff(backoff).connector(Arc::new(edge.clone()));
    for url in &urls[1..] {
        builder = builder.url(*url);
    }
    builder.connect_lazy().expect("client")
}

fn gaps(attempts: &[(Instant, String)]) -> Vec<Duration> {
    attempts.windows(2).map(|w| w[1].0 - w[0].0).collect()
}

async fn wait_attempts(edge: &FakeEdge, n: usize) {
    for _ in 0..10_000 {
        if edge.attempts().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("only {} attempts", edge.attempts().len());
}

const UP: (u32, u32) = (25_000, 60_000);

#[tokio::test(start_paused = true)]
async fn reconnect_delays_follow_the_backoff_schedule() {
    let edge = FakeEdge::new([]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    let mut states = client.state_events();
    wait_attempts(&edge, 9).await;
    let gaps = gaps(&edge.attempts());
    let bases = [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0];
    for (gap, base) in gaps.iter().zip(bases) {
        let secs = gap.as_secs_f64();
        assert!(secs >= base * 0.9 - 0.001 && secs <= base * 1.1 + 0.001, "gap {secs} for base {base}: {gaps:?}");
    }
    // The states announce each attempt and its delay before it happens.
    let mut announced = Vec::new();
    while announced.len() < 8 {
        if let Some(ConnectionState::Reconnecting { attempt, delay }) = states.next().await {
            announced.push((attempt, delay));
        }
    }
    for (i, ((attempt, delay), gap)) in announced.iter().zip(&gaps).enumerate() {
        assert_eq!(*attempt as usize, i + 1);
        assert!(gap.abs_diff(*delay) < Duration::from_millis(5), "announced {delay:?}, waited {gap:?}");
    }
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_clients_apart() {
    // Two clients failing in lockstep do not retry in lockstep.
    let (a, b) = (FakeEdge::new([]), FakeEdge::new([]));
    let (ca, cb) = (client(&a, Backoff::default(), &["ws://a"]), client(&b, Backoff::default(), &["ws://a"]));
    wait_attempts(&a, 5).await;
    wait_attempts(&b, 5).await;
    assert_ne!(gaps(&a.attempts())[..4], gaps(&b.attempts())[..4]);
    ca.close().await;
    cb.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_stable_connection_resets_the_schedule_and_a_flapping_one_does_not() {
    let stable = Script::Accept { heartbeat_ms: UP, after: Duration::from_secs(15), end: End::Close(None) };
    let flapping = Script::Accept { heartbeat_ms: UP, after: Duration::from_secs(2), end: End::Close(None) };
    let edge = FakeEdge::new([
        Script::Refuse,
        Script::Refuse,
        Script::Refuse,
        stable,
        Script::Refuse,
        flapping,
        Script::Refuse,
    ]);
    let client = client(&edge, Backoff { jitter: 0.0, ..Backoff::default() }, &["ws://a"]);
    wait_attempts(&edge, 8).await;
    let gaps: Vec<u64> = gaps(&edge.attempts()).iter().map(|g| g.as_millis() as u64).collect();
    // 1, 2, 4 s of refusals; 15 s up, then 1 s again (reset); a refusal
    // (2 s); 2 s up, then 4 s: the short connection did not reset the count;
    // a refusal (8 s).
    assert_eq!(gaps, [1000, 2000, 4000, 15_000 + 1000, 2000, 2000 + 4000, 8000], "{gaps:?}");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_drain_reconnects_at_once_to_the_next_url() {
    let draining = Script::Accept { heartbeat_ms: UP, after: Duration::from_secs(5), end: End::Close(Some(1001)) };
    let up = Script::Accept { heartbeat_ms: UP, after: Duration::ZERO, end: End::Never };
    let edge = FakeEdge::new([draining, up]);
    let client = client(&edge, Backoff::default(), &["ws://a", "ws://b"]);
    wait_attempts(&edge, 2).await;
    let attempts = edge.attempts();
    let gap = attempts[1].0 - attempts[0].0;
    assert!(gap >= Duration::from_secs(5) && gap <= Duration::from_millis(5500), "{gap:?}");
    assert_eq!((attempts[0].1.as_str(), attempts[1].1.as_str()), ("ws://a", "ws://b"));
    client.wait_connected(Duration::from_secs(1)).await.expect("connected to b");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn silence_past_the_heartbeat_timeout_is_a_dead_connection() {
    let silent = Script::Accept { heartbeat_ms: (100, 1000), after: Duration::ZERO, end: End::Silent };
    let up = Script::Accept { heartbeat_ms: UP, after: Duration::ZERO, end: End::Never };
    let edge = FakeEdge::new([silent, up]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    let mut states = client.state_events();
    let connected_at = loop {
        if let Some(ConnectionState::Connected(_)) = states.next().await {
            break Instant::now();
        }
    };
    let dead_at = loop {
        match states.next().await {
            Some(ConnectionState::Disconnected { reason }) => {
                assert_eq!(reason, DisconnectReason::HeartbeatTimeout);
                break Instant::now();
            }
            Some(_) => {}
            None => panic!("client gone"),
        }
    };
    let silent_for = dead_at - connected_at;
    assert!(silent_for >= Duration::from_secs(1) && silent_for < Duration::from_millis(1100), "{silent_for:?}");
    client.wait_connected(Duration::from_secs(5)).await.expect("reconnected");
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn pings_keep_a_quiet_connection_alive() {
    // The edge says nothing on its own, but answers pings: no timeout.
    let up = Script::Accept { heartbeat_ms: (100, 1000), after: Duration::ZERO, end: End::Never };
    let edge = FakeEdge::new([up]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    client.wait_connected(Duration::from_secs(1)).await.expect("connected");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(client.state().is_connected());
    assert_eq!(edge.attempts().len(), 1);
    assert!(client.ping().await.is_ok());
    client.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_terminal_code_stops_reconnecting() {
    let refused = Script::Accept { heartbeat_ms: UP, after: Duration::from_secs(1), end: End::Close(Some(4503)) };
    let edge = FakeEdge::new([refused]);
    let client = client(&edge, Backoff::default(), &["ws://a"]);
    let mut sub = client.subscribe("news").await.expect("subscribe");
    match sub.next_event().await {
        Some(crate::SubscriptionEvent::Ended(Error::Terminal { code: 4503, .. })) => {}
        other => panic!("expected the end of the subscription, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(edge.attempts().len(), 1);
    assert!(matches!(client.state(), ConnectionState::Closed { error: Some(Error::Terminal { code: 4503, .. }) }));
    assert!(matches!(client.publish("news", "x").await, Err(Error::Terminal { code: 4503, .. })));
}

#[tokio::test(start_paused = true)]
async fn the_client_gives_up_after_max_attempts() {
    let edge = FakeEdge::new([]);
    let backoff = Backoff { max_attempts: Some(3), ..Backoff::default() };
    let client = client(&edge, backoff, &["ws://a"]);
    let err = client.wait_connected(Duration::from_secs(600)).await.expect_err("gives up");
    assert!(matches!(err, Error::GaveUp { attempts: 3, .. }), "{err}");
    assert_eq!(edge.attempts().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn connect_reports_the_last_failure_when_it_times_out() {
    let edge = FakeEdge::new([]);
    let err = Client::builder("ws://a")
        .token("t")
        .connect_timeout(Duration::from_secs(5))
        .connector(Arc::new(edge.clone()))
        .connect()
        .await
        .expect_err("no edge");
    assert_eq!(err, Error::Connect("connection refused".into()));
}
