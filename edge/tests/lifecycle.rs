//! The edge's lifecycle and admission guarantees, through its real surface
//! (raw WebSocket clients, plain TCP and its HTTP endpoints):
//!
//! - `/readyz` is 503 while draining, while NATS is gone and while no key
//!   could be loaded; new connections are refused during the drain;
//! - the drain closes staying clients with 1001 (advice: reconnect now) and
//!   `run` returns at `drain_timeout` even if a client cannot be closed;
//! - `http_header_timeout` drops clients that never finish their request
//!   head;
//! - tokens without `exp` are refused, and `token_leeway` applies to `exp`
//!   at connect time and to the close of a connection whose token expires;
//! - `max_connections_per_app`;
//! - channel names with whitespace or control characters are refused.
//!
//! The metrics these paths move are checked in `operations.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{ALL, config, local_edge, now_secs};
use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::*;
use herald_proto::client::{self, client_frame, server_frame};
use herald_proto::units::{ByteSize, HumanDuration};
use herald_proto::{CloseCode, ErrorCode, bus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn now_secs_f64() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs_f64()
}

/// Claims valid for an hour with `exp` moved to `exp`.
fn claims_expiring(app: &str, client: &str, exp: i64) -> herald_proto::Claims {
    let mut claims = TestAuthority::claims(app, client, ALL, Duration::from_secs(3600));
    claims.exp = exp;
    claims
}

// ---------------------------------------------------------------------------
// 4. Readiness
// ---------------------------------------------------------------------------

/// An HTTP/1.1 connection kept open across requests (the edge stops
/// accepting connections when it drains; one opened before still answers).
struct KeepAlive {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl KeepAlive {
    async fn open(addr: SocketAddr) -> Self {
        Self { stream: TcpStream::connect(addr).await.expect("connect"), buf: Vec::new() }
    }

    /// Sends `GET path` with `headers`; returns the status and body.
    async fn get(&mut self, path: &str, headers: &str) -> (u16, String) {
        let request = format!("GET {path} HTTP/1.1\r\nHost: edge\r\n{headers}\r\n");
        self.stream.write_all(request.as_bytes()).await.expect("write");
        within(Duration::from_secs(5), "http response", async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if self.buf.len() >= end + 4 + length {
                        let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + length]).into_owned();
                        self.buf.drain(..end + 4 + length);
                        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
                        return (status, body);
                    }
                }
                let n = self.stream.read_buf(&mut self.buf).await.expect("read");
                assert!(n > 0, "connection closed: {}", String::from_utf8_lossy(&self.buf));
            }
        })
        .await
    }
}

const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: herald.v1\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_and_new_connections_are_refused_while_draining() {
    let auth = TestAuthority::start().await;
    let grace = Duration::from_secs(3);
    let config = EdgeConfig { drain_grace: HumanDuration(grace), ..config(&auth) };
    let (mut edge, _) = local_edge(config).await;
    let addr = edge.addr;
    let (mut staying, _) = RawClient::connect(addr, &auth.token("app1", "u", ALL)).await;
    let mut probe = KeepAlive::open(addr).await;
    assert_eq!(probe.get("/readyz", "").await.0, 200);
    let mut late = KeepAlive::open(addr).await;
    assert_eq!(late.get("/healthz", "").await.0, 200);

    let started = Instant::now();
    edge.begin_shutdown();
    let mut saw_503 = false;
    while started.elapsed() < Duration::from_secs(1) {
        if probe.get("/readyz", "").await.0 == 503 {
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_503, "/readyz still 200 a second into the drain");
    // Still draining (the staying client holds it): no new connection...
    assert!(TcpStream::connect(addr).await.is_err(), "the listener is closed during the drain");
    // ...and no upgrade on a connection opened before.
    let (status, body) = late.get("/v1/connect", UPGRADE).await;
    assert_eq!((status, body.as_str()), (503, "edge is draining\n"));
    assert_eq!(probe.get("/readyz", "").await.0, 503);
    assert!(started.elapsed() < grace, "all of this happened during the drain");

    assert_eq!(within(Duration::from_secs(10), "drain close", staying.closed()).await, (Some(1001), 1001));
    within(Duration::from_secs(10), "run returns", edge.join()).await.expect("edge run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_nats_is_gone() {
    let mut nats = NatsServer::start().await;
    let auth = TestAuthority::start().await;
    let edge = TestEdge::start(config(&auth), nats_bus(&nats.url(), unique_subjects()).await).await;
    assert_eq!(http_get(edge.addr, "/readyz").await.map(|r| r.0), Some(200));
    nats.kill();
    let status = |want: u16| async move {
        while http_get(edge.addr, "/readyz").await.map(|r| r.0) != Some(want) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    within(Duration::from_secs(10), "/readyz 503 without NATS", status(503)).await;
    assert_eq!(http_get(edge.addr, "/healthz").await.map(|r| r.0), Some(200), "alive, only not ready");
    nats.restart().await;
    within(Duration::from_secs(20), "/readyz 200 once NATS is back", status(200)).await;
}

/// A JWKS endpoint that fails (connections dropped at once) until `up`,
/// then forwards to `auth`.
async fn flaky_jwks(auth: &TestAuthority, up: Arc<AtomicBool>) -> String {
    let target = auth.jwks_url();
    let target_addr = target.trim_start_matches("http://").split('/').next().expect("host").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = target.replace(&target_addr, &listener.local_addr().expect("addr").to_string());
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            if !up.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            let target_addr = target_addr.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = TcpStream::connect(&target_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_signing_keys_are_loaded() {
    let auth = TestAuthority::start().await;
    let up = Arc::new(AtomicBool::new(false));
    let config = EdgeConfig { jwks_url: flaky_jwks(&auth, up.clone()).await, ..EdgeConfig::default() };
    // Started by hand: TestEdge::start waits for readiness.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let run = tokio::spawn(herald_edge::run(listener, config, Bus::local(&LocalBus::new()), std::future::pending()));
    // Not ready for as long as the keys cannot be fetched (the edge retries
    // every second).
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2_500) {
        assert_eq!(http_get(addr, "/readyz").await.map(|r| r.0), Some(503));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_get(addr, "/healthz").await.map(|r| r.0), Some(200));
    let token = auth.token("app1", "u", ALL);
    // A client that connects meanwhile is told to come back (internal error,
    // reconnect), not that its token is bad.
    assert_eq!(RawClient::refused(addr, &token).await, (Some(1011), 1011));
    up.store(true, Ordering::SeqCst);
    within(Duration::from_secs(10), "/readyz 200 once the keys load", async {
        while http_get(addr, "/readyz").await.map(|r| r.0) != Some(200) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let (mut c, _) = RawClient::connect(addr, &token).await;
    assert!(is_ok(&c.subscribe("a").await));
    run.abort();
}

// ---------------------------------------------------------------------------
// 5. Drain deadline
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_at_drain_timeout_even_with_a_client_that_cannot_be_closed() {
    let auth = TestAuthority::start().await;
    let (grace, deadline) = (Duration::from_secs(1), Duration::from_secs(2));
    let config = EdgeConfig {
        drain_grace: HumanDuration(grace),
        drain_timeout: HumanDuration(deadline),
        // Far beyond the drain: a write stuck on the stalled client's full
        // socket holds its connection open for the whole drain.
        write_timeout: HumanDuration::secs(60),
        send_queue_frames: 1 << 16,
        send_queue_bytes: ByteSize::mib(256),
        publish_rate: 0,
        ..config(&auth)
    };
    let (mut edge, bus) = local_edge(config).await;
    let token = auth.token("app1", "u", ALL);
    // Reads everything but never answers, and never leaves by itself.
    let (mut mute, _) = RawClient::connect(edge.addr, &token).await;
    // Neither reads nor answers: its socket is full.
    let (mut stalled, _) = RawClient::connect(edge.addr, &token).await;
    assert!(is_ok(&stalled.subscribe("flood").await));
    let (_stream, _buf) = stalled.into_stream();
    let (app, channel) = ("app1".parse().expect("app"), "flood".parse().expect("channel"));
    let payload = Bytes::from(vec![1u8; 64 * 1024]);
    // 64 MiB: more than any socket buffers take.
    for i in 0..1024 {
        let message = bus::ChannelMessage {
            app_id: "app1".into(),
            channel: "flood".into(),
            data: payload.clone(),
            id: format!("m{i}"),
            ..Default::default()
        };
        bus.publish(&app, &channel, &message).await.expect("publish");
    }

    let started = Instant::now();
    edge.begin_shutdown();
    let mute = tokio::spawn(async move {
        let mut go_away = None;
        loop {
            match mute.recv().await {
                Received::Frame(client::ServerFrame { kind: Some(server_frame::Kind::GoAway(g)) }) => {
                    go_away = Some(g.within_ms);
                }
                Received::Frame(client::ServerFrame { kind: Some(server_frame::Kind::Disconnect(d)) }) => {
                    let close = mute.recv().await;
                    return (go_away, d, close, started.elapsed());
                }
                Received::Ping => {}
                other => panic!("the mute client got {other:?}"),
            }
        }
    });
    within(Duration::from_secs(15), "run returns at the drain deadline", edge.join()).await.expect("edge run");
    let returned = started.elapsed();
    assert!(returned >= deadline, "run returned after {returned:?}, before drain_timeout {deadline:?}");
    assert!(returned < deadline + Duration::from_secs(5), "run returned after {returned:?}");

    let (go_away, disconnect, close, closed_at) =
        within(Duration::from_secs(5), "mute close", mute).await.expect("task");
    assert_eq!(go_away, Some(grace.as_millis() as u32));
    assert_eq!(disconnect.code, 1001);
    assert_eq!(disconnect.advice, client::ReconnectAdvice::ReconnectNow as i32, "reconnect at once, elsewhere");
    assert_eq!(disconnect.reason, CloseCode::GoingAway.reason());
    assert_eq!(close, Received::Close(1001, CloseCode::GoingAway.reason().into()));
    assert!(closed_at >= grace && closed_at < returned, "closed after {closed_at:?}, the grace being {grace:?}");
}

// ---------------------------------------------------------------------------
// 6. HTTP header-read timeout
// ---------------------------------------------------------------------------

/// Reads `stream` to its end; returns when that was (after `since`) and
/// what came before it.
fn read_until_dropped(mut stream: TcpStream, since: Instant) -> tokio::task::JoinHandle<(Duration, String)> {
    tokio::spawn(async move {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
        (since.elapsed(), String::from_utf8_lossy(&rest).into_owned())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_never_finished_is_dropped_after_the_header_timeout() {
    let auth = TestAuthority::start().await;
    let limit = Duration::from_secs(1);
    let (edge, _) = local_edge(EdgeConfig { http_header_timeout: HumanDuration(limit), ..config(&auth) }).await;
    let started = Instant::now();
    // Half a request head, then nothing.
    let mut partial = TcpStream::connect(edge.addr).await.expect("connect");
    partial.write_all(b"GET /v1/connect HTTP/1.1\r\nHost: edge\r\nUpgrade: websocket\r\n").await.expect("write");
    let partial = read_until_dropped(partial, started);
    // Nothing at all.
    let idle = read_until_dropped(TcpStream::connect(edge.addr).await.expect("connect"), started);
    // Meanwhile a normal client connects and is served.
    let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", "u", ALL)).await;
    assert!(is_ok(&c.subscribe("a").await));
    for (what, task) in [("partial head", partial), ("idle connection", idle)] {
        let (after, rest) = within(Duration::from_secs(10), what, task).await.expect("task");
        assert!(
            after >= limit - Duration::from_millis(100),
            "{what} dropped after {after:?}, before the {limit:?} limit"
        );
        assert!(after < limit + Duration::from_secs(4), "{what} dropped after {after:?}");
        assert!(rest.is_empty() || rest.starts_with("HTTP/1.1 408"), "{what}: {rest}");
    }
    // The normal client is still fine.
    assert!(is_ok(&c.publish("a", b"x").await));
}

// ---------------------------------------------------------------------------
// 7. exp and token leeway
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(config(&auth)).await;
    let claims =
        serde_json::to_value(TestAuthority::claims("app1", "u", ALL, Duration::from_secs(3600))).expect("json");
    // The same claims with exp are fine: only exp makes the difference.
    let (_ok, connected) = RawClient::connect(edge.addr, &auth.sign_json(&claims)).await;
    assert_eq!(connected.client_id, "u");
    let mut without = claims.clone();
    without.as_object_mut().expect("object").remove("exp").expect("exp was there");
    assert_eq!(RawClient::refused(edge.addr, &auth.sign_json(&without)).await, (Some(4500), 4500));
    let mut null = claims;
    null["exp"] = serde_json::Value::Null;
    assert_eq!(RawClient::refused(edge.addr, &auth.sign_json(&null)).await, (Some(4500), 4500));
}

/// Reads until the close; returns the close code and the wall-clock time
/// (Unix seconds) it arrived.
async fn close_time(mut c: RawClient) -> (Option<u32>, u16, f64) {
    let (notice, code) = c.closed().await;
    (notice, code, now_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_leeway_applies_to_exp_at_connect_and_to_the_expiry_close() {
    let auth = TestAuthority::start().await;
    let leeway = 3;
    let config = EdgeConfig { token_leeway: HumanDuration::secs(leeway), ..config(&auth) };
    let (edge, _) = local_edge(config).await;
    let now = now_secs();

    // Expired a second ago, within the leeway: accepted...
    let just_expired = now - 1;
    let (mut late, _) = RawClient::connect(edge.addr, &auth.sign(&claims_expiring("app1", "late", just_expired))).await;
    assert!(is_ok(&late.subscribe("a").await));
    // ...expired past the leeway: refused.
    let long_expired = auth.sign(&claims_expiring("app1", "x", now - 5));
    assert_eq!(RawClient::refused(edge.addr, &long_expired).await, (Some(4100), 4100));

    // A token expiring in a second: served until exp + leeway, then closed.
    let exp = now_secs() + 1;
    let (soon, _) = RawClient::connect(edge.addr, &auth.sign(&claims_expiring("app1", "soon", exp))).await;
    let (late, soon) = (tokio::spawn(close_time(late)), tokio::spawn(close_time(soon)));
    let (notice, code, at) = within(Duration::from_secs(15), "expiry close", soon).await.expect("task");
    assert_eq!((notice, code), (Some(4100), 4100));
    let due = (exp + leeway as i64) as f64;
    assert!(at >= due - 0.05, "closed at {at}, before exp + leeway = {due}");
    assert!(at < due + 3.0, "closed at {at}, long after exp + leeway = {due}");
    let (notice, code, at) = within(Duration::from_secs(5), "expiry close", late).await.expect("task");
    assert_eq!((notice, code), (Some(4100), 4100));
    let due = (just_expired + leeway as i64) as f64;
    assert!(at >= due - 0.05, "closed at {at}, before exp + leeway = {due}");
}

// ---------------------------------------------------------------------------
// 9. max_connections_per_app
// ---------------------------------------------------------------------------

#[tokio::test]
async fn max_connections_per_app_refuses_the_next_connection_of_that_app_only() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(EdgeConfig { max_connections_per_app: 2, ..config(&auth) }).await;
    let token = auth.token("app1", "u", ALL);
    let (a, _) = RawClient::connect(edge.addr, &token).await;
    let (_b, _) = RawClient::connect(edge.addr, &token).await;
    let mut third = RawClient::connect_with(edge.addr, &[]).await.expect("upgrade");
    third
        .request(client_frame::Kind::Connect(client::Connect { token: token.clone(), client_name: String::new() }))
        .await;
    match third.recv().await {
        Received::Frame(client::ServerFrame { kind: Some(server_frame::Kind::Disconnect(d)) }) => {
            assert_eq!(d.code, 4003);
            assert!(d.reason.contains("app"), "{}", d.reason);
        }
        other => panic!("expected a disconnect, got {other:?}"),
    }
    assert!(matches!(third.recv().await, Received::Close(4003, _)));
    // Another app is not limited by app1's connections.
    let other = auth.token("app2", "v", ALL);
    let (_c, _) = RawClient::connect(edge.addr, &other).await;
    let (mut d, _) = RawClient::connect(edge.addr, &other).await;
    assert!(is_ok(&d.subscribe("a").await));
    // A connection of app1 that leaves frees its slot.
    drop(a);
    within(Duration::from_secs(5), "the slot frees up", async {
        loop {
            if let (c, Received::Frame(client::ServerFrame { kind: Some(server_frame::Kind::Connected(_)) })) =
                RawClient::hello(edge.addr, &token).await
            {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// 10. Whitespace and control characters in channel names
// ---------------------------------------------------------------------------

#[tokio::test]
async fn channel_names_with_whitespace_or_control_characters_are_refused() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(config(&auth)).await;
    let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", "u", ALL)).await;
    // Space and NUL are covered in edge.rs.
    let bad = [
        "chat:a\tb",
        "chat:a\nb",
        "chat:a\rb",
        "chat:a\r\nb",
        "chat:a\x0bb",
        "chat:a\x0cb",
        "chat:a\x7fb",
        "chat:a\x1bb",
        "\tchat",
        "chat\n",
        " chat",
        "chat ",
        "chat:a\u{a0}b",
        "chat:a\u{2003}b",
        "chat:a\u{3000}b",
        "chat:a\u{200b}b",
        "chat:a\u{2028}b",
        "chat:a\u{feff}b",
        "chat:\u{85}",
    ];
    for name in bad {
        assert!(is_error(&c.subscribe(name).await, ErrorCode::InvalidChannel), "subscribe {name:?}");
        assert!(is_error(&c.publish(name, b"x").await, ErrorCode::InvalidChannel), "publish {name:?}");
        c.request(client_frame::Kind::Unsubscribe(client::Unsubscribe { channel: name.into() })).await;
        assert!(is_error(&c.reply().await, ErrorCode::InvalidChannel), "unsubscribe {name:?}");
        assert!(is_error(&c.presence_query(name).await, ErrorCode::InvalidChannel), "presence {name:?}");
    }
    // The connection is still fine, and the same names without the bad
    // character work.
    assert!(is_ok(&c.subscribe("chat:ab").await));
    assert!(is_ok(&c.publish("chat:ab", b"x").await));
    assert_eq!(&c.message().await.data[..], b"x");
}
