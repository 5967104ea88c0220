//! The edge's operational guarantees, through its real surface (raw
//! WebSocket clients and its HTTP endpoints):
//!
//! - the JWKS is refetched at most once per `jwks_min_refetch_interval`
//!   however many tokens name unknown keys, and never per valid connection;
//! - WebSocket pings go out every `heartbeat_interval`; answering them with
//!   pongs keeps a connection alive, silence closes it (4001);
//! - `/metrics` carries the right values after known traffic;
//! - a stalled reader on a NATS bus is closed as a slow consumer (and
//!   counted) while a healthy subscriber of the same channel receives
//!   everything.
//!
//! Readiness, the drain, admission and token lifetimes are in
//! `lifecycle.rs`.
//!
//! Metrics are process-global (one recorder per process): the tests that
//! read them assert on deltas and take [`exclusive`], so that the other
//! tests of this file cannot interfere even when run in one process
//! (`cargo test`; nextest runs each test in its own process).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ALL, config, local_edge, now_secs};
use herald_edge::EdgeConfig;
use herald_edge::testing::*;
use herald_proto::client::{self, client_frame, server_frame};
use herald_proto::units::{ByteSize, HumanDuration};
use herald_proto::{CloseCode, bus};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Tests reading metrics hold this for writing, every other test for
/// reading: no edge of another test runs while metrics are compared.
static METRICS: RwLock<()> = RwLock::const_new(());

async fn shared() -> RwLockReadGuard<'static, ()> {
    METRICS.read().await
}

async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    METRICS.write().await
}

/// Claims valid for an hour with `exp` moved to `exp`.
fn claims_expiring(app: &str, client: &str, exp: i64) -> herald_proto::Claims {
    let mut claims = TestAuthority::claims(app, client, ALL, Duration::from_secs(3600));
    claims.exp = exp;
    claims
}

// ---------------------------------------------------------------------------
// 1. JWKS refetch rate limit
// ---------------------------------------------------------------------------

/// Connects every token at once; returns each connection's close codes.
async fn close_codes_concurrently(addr: SocketAddr, tokens: Vec<String>) -> Vec<(Option<u32>, u16)> {
    let tasks: Vec<_> =
        tokens.into_iter().map(|t| tokio::spawn(async move { RawClient::refused(addr, &t).await })).collect();
    let mut codes = vec![];
    for t in tasks {
        codes.push(t.await.expect("client task"));
    }
    codes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_refetch_the_jwks_at_most_once_per_interval_and_valid_tokens_never() {
    let _serial = shared().await;
    let auth = TestAuthority::start().await;
    let interval = Duration::from_secs(3);
    let config = EdgeConfig { jwks_min_refetch_interval: HumanDuration(interval), ..config(&auth) };
    let (edge, _) = local_edge(config).await;
    let loaded = auth.fetches();
    assert!(loaded >= 1, "the edge is ready, so it fetched the keys");

    // Valid tokens: no fetch, however many connections.
    let mut clients = vec![];
    for i in 0..30 {
        let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", &format!("u{i}"), ALL)).await;
        assert!(is_ok(&c.subscribe("a").await));
        clients.push(c);
    }
    assert_eq!(auth.fetches(), loaded, "a valid connection must not fetch the JWKS");

    // Tokens naming made-up key ids (well signed, by keys nobody publishes).
    let forger = TestAuthority::start().await;
    let burst = |round: u32| {
        (0..20)
            .map(|i| {
                forger.rotate(&format!("ghost-{round}-{i}"));
                forger.token("app1", "u", ALL)
            })
            .collect::<Vec<_>>()
    };
    let first = burst(1);
    let started = Instant::now();
    let codes = close_codes_concurrently(edge.addr, first).await;
    assert!(codes.iter().all(|c| *c == (Some(4500), 4500)), "{codes:?}");
    assert!(started.elapsed() < interval, "the burst must fit in the interval for this test to mean anything");
    assert_eq!(auth.fetches(), loaded + 1, "20 unknown kids within the interval: one refetch");

    // Once the interval has passed, an unknown kid may refetch again — once.
    tokio::time::sleep(interval + Duration::from_millis(500)).await;
    let second = burst(2);
    let started = Instant::now();
    let codes = close_codes_concurrently(edge.addr, second).await;
    assert!(codes.iter().all(|c| *c == (Some(4500), 4500)), "{codes:?}");
    assert!(started.elapsed() < interval);
    assert_eq!(auth.fetches(), loaded + 2, "next interval: one more refetch");

    // The valid connections were not disturbed.
    for c in &mut clients {
        assert!(is_ok(&c.publish("b", b"x").await));
    }
    assert_eq!(auth.fetches(), loaded + 2);
}

// ---------------------------------------------------------------------------
// 2. WebSocket pings
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_pings_every_interval_and_pongs_alone_keep_a_client_alive() {
    let _serial = shared().await;
    let auth = TestAuthority::start().await;
    let (interval, timeout) = (Duration::from_millis(200), Duration::from_secs(1));
    let config = EdgeConfig {
        heartbeat_interval: HumanDuration(interval),
        heartbeat_timeout: HumanDuration(timeout),
        ..config(&auth)
    };
    let (edge, _) = local_edge(config).await;
    let token = auth.token("app1", "u", ALL);
    let (mut ponger, _) = RawClient::connect(edge.addr, &token).await;
    let (mut silent, _) = RawClient::connect(edge.addr, &token).await;
    let started = Instant::now();

    // The silent client reads (pings included) but never sends anything.
    let silent = tokio::spawn(async move {
        let mut pings = 0;
        loop {
            match silent.recv().await {
                Received::Ping => pings += 1,
                Received::Frame(client::ServerFrame { kind: Some(server_frame::Kind::Disconnect(d)) }) => {
                    let close = silent.recv().await;
                    return (pings, Some(d.code), close, started.elapsed());
                }
                other => return (pings, None, other, started.elapsed()),
            }
        }
    });

    // The ponger answers each WebSocket ping with a pong, and nothing else,
    // for three times the heartbeat timeout.
    let watched = timeout * 3;
    let mut pings = 0u32;
    while started.elapsed() < watched {
        let left = watched.saturating_sub(started.elapsed());
        match ponger.recv_within(left).await {
            None => break,
            Some(Received::Ping) => {
                pings += 1;
                ponger.send_frame(true, 0xA, &[]).await;
            }
            Some(other) => panic!("the ponger got {other:?} after {:?}", started.elapsed()),
        }
    }
    let expected = (watched.as_millis() / interval.as_millis()) as u32; // 15
    assert!(
        pings >= expected / 2 && pings <= expected + 3,
        "{pings} pings in {watched:?} with a {interval:?} interval (expected about {expected})"
    );
    assert!(is_ok(&ponger.subscribe("still-open").await), "pongs keep the connection alive");

    let (silent_pings, notice, close, at) = within(Duration::from_secs(5), "silent close", silent).await.expect("task");
    assert!(silent_pings >= 2, "the silent client was pinged too ({silent_pings})");
    assert_eq!((notice, close), (Some(4001), Received::Close(4001, CloseCode::HeartbeatTimeout.reason().into())));
    assert!(at >= timeout - Duration::from_millis(100), "closed after {at:?}, before the heartbeat timeout");
}

// ---------------------------------------------------------------------------
// 3. Metrics with values
// ---------------------------------------------------------------------------

/// The value of the sample `key` (`name` or `name{labels}`), 0 when absent.
fn sample(page: &str, key: &str) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(k, _)| *k == key).map(|(_, v)| v.parse::<f64>().expect("number")))
        .unwrap_or(0.0)
}

async fn metrics_page(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    body
}

/// Closes the connection as a client should (close frame, then wait for
/// the edge's).
async fn leave(mut c: RawClient) {
    c.send_frame(true, 0x8, &1000u16.to_be_bytes()).await;
    assert_eq!(within(Duration::from_secs(5), "close answered", c.closed()).await, (None, 1000));
}

/// Polls `/metrics` until `done` holds for the page; returns it.
async fn metrics_when(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = metrics_page(addr).await;
        if done(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}:\n{page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_count_the_traffic_they_describe() {
    let _serial = exclusive().await;
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(EdgeConfig { publish_rate: 0, ..config(&auth) }).await;
    let before = metrics_page(edge.addr).await;
    let delta = |page: &str, key: &str| sample(page, key) - sample(&before, key);
    let connections = "herald_connections";
    let subscriptions = "herald_subscriptions";

    let (mut sub1, _) = RawClient::connect(edge.addr, &auth.token("app1", "s1", ALL)).await;
    let (mut sub2, _) = RawClient::connect(edge.addr, &auth.token("app1", "s2", ALL)).await;
    let (mut publisher, _) = RawClient::connect(edge.addr, &auth.token("app1", "p", ALL)).await;
    assert!(is_ok(&sub1.subscribe("m").await));
    assert!(is_ok(&sub2.subscribe("m").await));
    let page = metrics_page(edge.addr).await;
    assert_eq!(delta(&page, connections), 3.0, "{page}");
    assert_eq!(delta(&page, subscriptions), 2.0, "{page}");

    // Refused tokens: counted by reason, never as connections.
    let expired = auth.sign(&claims_expiring("app1", "x", now_secs() - 3600));
    assert_eq!(RawClient::refused(edge.addr, &expired).await, (Some(4100), 4100));
    let forged = TestAuthority::start().await.token("app1", "x", ALL);
    assert_eq!(RawClient::refused(edge.addr, &forged).await, (Some(4500), 4500));

    let n = 200u32;
    for i in 0..n {
        assert!(is_ok(&publisher.publish("m", &i.to_be_bytes()).await));
        // Every other message after a pause: written straight to the
        // sockets (calm channel) rather than queued for the writers; both
        // paths count frames out.
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    for sub in [&mut sub1, &mut sub2] {
        for i in 0..n {
            assert_eq!(&sub.message().await.data[..], &i.to_be_bytes());
        }
    }
    let n = f64::from(n);
    let page = metrics_when(edge.addr, "the fan-outs to be recorded", |p| {
        delta(p, "herald_fanout_seconds_count") >= n && delta(p, "herald_deliveries_total") >= 2.0 * n
    })
    .await;
    assert_eq!(delta(&page, "herald_messages_in_total"), n, "one bus message per publish");
    assert_eq!(delta(&page, "herald_deliveries_total"), 2.0 * n, "each to two subscribers");
    assert_eq!(delta(&page, "herald_fanout_seconds_count"), n, "one fan-out per message");
    assert!(delta(&page, "herald_fanout_seconds_sum") > 0.0);
    assert_eq!(delta(&page, "herald_client_publishes_total"), n);
    assert_eq!(delta(&page, "herald_requests_total"), n + 2.0, "the publishes and two subscribes");
    assert_eq!(delta(&page, "herald_auth_failures_total{reason=\"expired\"}"), 1.0, "{page}");
    assert_eq!(delta(&page, "herald_auth_failures_total{reason=\"bad_signature\"}"), 1.0, "{page}");
    let closes = |code: CloseCode| format!("herald_closes_total{{code=\"{}\"}}", code.name());
    assert_eq!(delta(&page, &closes(CloseCode::TokenExpired)), 1.0, "{page}");
    assert_eq!(delta(&page, &closes(CloseCode::InvalidToken)), 1.0, "{page}");
    assert_eq!(delta(&page, "herald_connections_accepted_total"), 5.0, "every upgrade, refused ones too");
    assert_eq!(delta(&page, connections), 3.0, "refused tokens never count as connections");

    // Gauges go down again.
    sub2.request(client_frame::Kind::Unsubscribe(client::Unsubscribe { channel: "m".into() })).await;
    assert!(is_ok(&sub2.reply().await));
    leave(publisher).await;
    let page = metrics_when(edge.addr, "the publisher's close", |p| delta(p, connections) == 2.0).await;
    assert_eq!(delta(&page, subscriptions), 1.0, "{page}");
    leave(sub1).await;
    // sub2 vanishes without a close: its writer is stopped, not ended.
    drop(sub2);
    let page = metrics_when(edge.addr, "every close", |p| delta(p, connections) == 0.0).await;
    assert_eq!(delta(&page, subscriptions), 0.0, "{page}");

    // Frames out: every message and reply, exactly. Each writer adds its
    // count in steps of 64 and the rest when it ends or is stopped; frames
    // written by a push add per thread in steps, and the rest after each
    // fan-out. Messages; replies to publishes, subscribes and the
    // unsubscribe; connected frames and connect replies (close frames are
    // not counted).
    let written = 2.0 * n + (n + 2.0 + 1.0) + 3.0 * 2.0;
    let page = metrics_when(edge.addr, "frames out", |p| delta(p, "herald_frames_out_total") >= written).await;
    assert_eq!(delta(&page, "herald_frames_out_total"), written);
}

// ---------------------------------------------------------------------------
// 8. Slow consumer over NATS
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_a_stalled_reader_is_closed_while_a_healthy_subscriber_gets_every_message() {
    let _serial = exclusive().await;
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let config =
        EdgeConfig { send_queue_frames: 64, send_queue_bytes: ByteSize::mib(1), publish_rate: 0, ..config(&auth) };
    let edge = TestEdge::start(config, nats_bus(&nats_url(), subjects.clone()).await).await;
    // Another NATS connection publishes, as another edge or the API would.
    let publisher = nats_bus(&nats_url(), subjects).await;
    let slow_before = sample(&metrics_page(edge.addr).await, "herald_slow_consumer_closes_total");
    let token = auth.token("app1", "u", ALL);
    let (mut healthy, _) = RawClient::connect(edge.addr, &token).await;
    assert!(is_ok(&healthy.subscribe("firehose").await));
    let (mut stalled, _) = RawClient::connect(edge.addr, &token).await;
    assert!(is_ok(&stalled.subscribe("firehose").await));
    let (stream, buf) = stalled.into_stream();

    let count = 600;
    let reader = tokio::spawn(async move {
        for i in 0..count {
            let m = healthy.message().await;
            assert_eq!((m.id.as_str(), m.data.len()), (format!("m{i}").as_str(), 32 * 1024), "every message, in order");
        }
        healthy
    });
    let (app, channel) = ("app1".parse().expect("app"), "firehose".parse().expect("channel"));
    let payload = Bytes::from(vec![7u8; 32 * 1024]);
    for i in 0..count {
        let message = bus::ChannelMessage {
            app_id: "app1".into(),
            channel: "firehose".into(),
            data: payload.clone(),
            id: format!("m{i}"),
            ..Default::default()
        };
        publisher.publish(&app, &channel, &message).await.expect("publish");
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let mut healthy =
        within(Duration::from_secs(30), "healthy subscriber receives everything", reader).await.expect("reader");
    let mut stalled = RawClient::from_stream(stream, buf);
    let closed = within(Duration::from_secs(30), "slow consumer close", stalled.closed()).await;
    assert_eq!(closed, (Some(4000), 4000));
    // The healthy one is still subscribed and served.
    let message = bus::ChannelMessage {
        app_id: "app1".into(),
        channel: "firehose".into(),
        id: "after".into(),
        ..Default::default()
    };
    publisher.publish(&app, &channel, &message).await.expect("publish");
    assert_eq!(healthy.message().await.id, "after");
    let slow = sample(&metrics_page(edge.addr).await, "herald_slow_consumer_closes_total") - slow_before;
    assert_eq!(slow, 1.0, "one slow consumer closed");
}
