//! The edge through its real surface: WebSocket clients against an edge on
//! port 0, with the in-process bus or a real NATS.

use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::*;
use herald_proto::client::{self, client_frame};
use herald_proto::units::{ByteSize, HumanDuration};
use herald_proto::{CloseCode, ErrorCode, bus};

const ALL: &str = r#"{"*": ["subscribe", "publish", "presence", "history"]}"#;

fn config(auth: &TestAuthority) -> EdgeConfig {
    EdgeConfig { jwks_url: auth.jwks_url(), ..EdgeConfig::default() }
}

async fn local_edge(_auth: &TestAuthority, config: EdgeConfig) -> (TestEdge, Bus) {
    let bus = LocalBus::new();
    let edge = TestEdge::start(config, Bus::local(&bus)).await;
    (edge, Bus::local(&bus))
}

fn data_of(m: &client::Message) -> &[u8] {
    &m.data
}

#[tokio::test]
async fn subscriber_receives_what_another_client_publishes() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    let (mut sub, connected) = RawClient::connect(edge.addr, &auth.token("app1", "alice", ALL)).await;
    assert_eq!(connected.client_id, "alice");
    assert_eq!(connected.limits.expect("limits").max_message_bytes, 64 * 1024);
    assert!(is_ok(&sub.subscribe("chat:room").await));
    let (mut publisher, _) = RawClient::connect(edge.addr, &auth.token("app1", "bob", ALL)).await;
    for i in 0..10u8 {
        assert!(is_ok(&publisher.publish("chat:room", &[i]).await));
    }
    for i in 0..10u8 {
        let m = sub.message().await;
        assert_eq!(m.channel, "chat:room");
        assert_eq!(data_of(&m), &[i]);
        assert_eq!(m.publisher, "bob");
        assert!(m.timestamp_ms > 0);
    }
}

#[tokio::test]
async fn apps_are_isolated() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    let (mut other_app, _) = RawClient::connect(edge.addr, &auth.token("app2", "eve", ALL)).await;
    assert!(is_ok(&other_app.subscribe("chat").await));
    let (mut publisher, _) = RawClient::connect(edge.addr, &auth.token("app1", "bob", ALL)).await;
    assert!(is_ok(&publisher.publish("chat", b"secret").await));
    assert_eq!(other_app.recv_within(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn api_publishes_through_the_backplane_reach_subscribers() {
    let auth = TestAuthority::start().await;
    let (edge, bus) = local_edge(&auth, config(&auth)).await;
    let (mut sub, _) = RawClient::connect(edge.addr, &auth.token("app1", "alice", ALL)).await;
    assert!(is_ok(&sub.subscribe("news").await));
    let message = bus::ChannelMessage {
        app_id: "app1".into(),
        channel: "news".into(),
        data: Bytes::from_static(b"{\"x\":1}"),
        event: Some("update".into()),
        id: "m1".into(),
        publisher: String::new(),
        exclude_connection: String::new(),
        timestamp_ms: 42,
        traceparent: String::new(),
    };
    bus.publish(&"app1".parse().expect("app"), &"news".parse().expect("channel"), &message).await.expect("publish");
    let m = sub.message().await;
    assert_eq!((m.event.as_deref(), m.id.as_str(), m.timestamp_ms), (Some("update"), "m1", 42));
}

#[tokio::test]
async fn bearer_header_authenticates_without_a_connect_frame() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    let token = auth.token("app1", "alice", ALL);
    let mut c =
        RawClient::connect_with(edge.addr, &[("Authorization", &format!("Bearer {token}"))]).await.expect("upgrade");
    match c.recv().await {
        Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::Connected(c)) }) => {
            assert_eq!(c.client_id, "alice");
        }
        other => panic!("expected connected, got {other:?}"),
    }
    assert!(is_ok(&c.subscribe("a").await));
}

#[tokio::test]
async fn upgrade_without_the_subprotocol_is_refused() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    let status = RawClient::connect_with(edge.addr, &[("Sec-WebSocket-Protocol", "")]).await.err();
    assert_eq!(status, Some(400));
    let status = RawClient::connect_with(edge.addr, &[("Sec-WebSocket-Protocol", "chat")]).await.err();
    assert_eq!(status, Some(400));
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    assert_eq!(http_get(edge.addr, "/healthz").await.map(|r| r.0), Some(200));
    assert_eq!(http_get(edge.addr, "/readyz").await.map(|r| r.0), Some(200));
    let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", "alice", ALL)).await;
    assert!(is_ok(&c.subscribe("m").await));
    let (status, body) = http_get(edge.addr, "/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    for name in ["herald_connections", "herald_subscriptions", "herald_requests_total", "process_resident_memory_bytes"]
    {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(body.contains(&format!("# HELP {name} ")), "{name} has no HELP line");
    }
    assert_eq!(http_get(edge.addr, "/nope").await.map(|r| r.0), Some(404));
}

// ---------------------------------------------------------------------------
// Bad input: each gets its code; the edge stays up and others do not notice.
// ---------------------------------------------------------------------------

/// A bystander that must keep working while others misbehave.
async fn bystander(edge: &TestEdge, auth: &TestAuthority) -> RawClient {
    let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", "bystander", ALL)).await;
    assert!(is_ok(&c.subscribe("calm").await));
    c
}

async fn assert_bystander_fine(c: &mut RawClient) {
    assert!(is_ok(&c.publish("calm", b"still here").await));
    assert_eq!(data_of(&c.message().await), b"still here");
}

#[tokio::test]
async fn bad_frames_get_their_close_codes() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { max_frame_size: ByteSize::kib(16), max_message_size: ByteSize::kib(8), ..config(&auth) };
    let (edge, _) = local_edge(&auth, config).await;
    let mut calm = bystander(&edge, &auth).await;
    let token = auth.token("app1", "mallory", ALL);

    // A text frame.
    let (mut c, _) = RawClient::connect(edge.addr, &token).await;
    c.send_frame(true, 1, b"{\"hello\": 1}").await;
    assert_eq!(c.closed().await, (Some(1003), 1003));

    // Garbage binary.
    let (mut c, _) = RawClient::connect(edge.addr, &token).await;
    c.send_frame(true, 2, &[0xff, 0xff, 0xff, 0xff, 0x0f]).await;
    assert_eq!(c.closed().await, (Some(4502), 4502));

    // A frame declaring 1 GiB: refused from the header, nothing allocated.
    let (mut c, _) = RawClient::connect(edge.addr, &token).await;
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 30).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    c.send_raw(&huge).await;
    assert_eq!(c.closed().await, (Some(1009), 1009));

    // Fragments that are small alone but over the limit together.
    let (mut c, _) = RawClient::connect(edge.addr, &token).await;
    c.send_frame(false, 2, &[0u8; 7000]).await;
    for _ in 0..2 {
        c.send_frame(false, 0, &[0u8; 7000]).await;
    }
    assert_eq!(c.closed().await, (Some(1009), 1009));

    // An unmasked client frame breaks the WebSocket protocol.
    let (mut c, _) = RawClient::connect(edge.addr, &token).await;
    c.send_raw(&[0x82, 0x01, 0x00]).await;
    assert_eq!(c.closed().await, (Some(1002), 1002));

    // A request before the connect frame.
    let mut c = RawClient::connect_with(edge.addr, &[]).await.expect("upgrade");
    c.request(client_frame::Kind::Ping(client::Ping {})).await;
    assert_eq!(c.closed().await, (Some(4502), 4502));

    assert_bystander_fine(&mut calm).await;
}

#[tokio::test]
async fn a_valid_frame_of_an_unknown_kind_gets_an_error_reply() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", "alice", ALL)).await;
    // request_id = 7, then field 99 (length-delimited, empty): a kind this
    // edge does not know.
    c.send_frame(true, 2, &[0x08, 0x07, 0x9a, 0x06, 0x00]).await;
    let reply = c.reply().await;
    assert_eq!(reply.request_id, 7);
    assert!(is_error(&reply, ErrorCode::UnknownRequest), "{reply:?}");
    // Still open.
    assert!(is_ok(&c.subscribe("a").await));
}

#[tokio::test]
async fn no_token_before_the_deadline_closes_with_handshake_timeout() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { handshake_timeout: HumanDuration::millis(300), ..config(&auth) };
    let (edge, _) = local_edge(&auth, config).await;
    let mut c = RawClient::connect_with(edge.addr, &[]).await.expect("upgrade");
    let started = std::time::Instant::now();
    assert_eq!(c.closed().await, (Some(4002), 4002));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn bad_tokens_are_refused_with_their_codes() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let auth = TestAuthority::start().await;
    let other = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    let mut calm = bystander(&edge, &auth).await;
    let hour = Duration::from_secs(3600);

    let mut expired = TestAuthority::claims("app1", "u", ALL, hour);
    expired.exp -= 7200;
    assert_eq!(RawClient::refused(edge.addr, &auth.sign(&expired)).await, (Some(4100), 4100));

    let mut future = TestAuthority::claims("app1", "u", ALL, hour);
    future.nbf += 600;
    assert_eq!(RawClient::refused(edge.addr, &auth.sign(&future)).await, (Some(4500), 4500));

    let mut audience = TestAuthority::claims("app1", "u", ALL, hour);
    audience.aud = "someone-else".into();
    assert_eq!(RawClient::refused(edge.addr, &auth.sign(&audience)).await, (Some(4500), 4500));

    let mut issuer = TestAuthority::claims("app1", "u", ALL, hour);
    issuer.iss = "evil".into();
    assert_eq!(RawClient::refused(edge.addr, &auth.sign(&issuer)).await, (Some(4500), 4500));

    // Signed by another authority with the same kid: wrong signature.
    let forged = other.sign(&TestAuthority::claims("app1", "u", ALL, hour));
    assert_eq!(RawClient::refused(edge.addr, &forged).await, (Some(4500), 4500));

    // alg: none.
    let claims = TestAuthority::claims("app1", "u", ALL, hour);
    let b64 = |v: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        b64(serde_json::to_string(&claims).expect("json").as_bytes())
    );
    assert_eq!(RawClient::refused(edge.addr, &none).await, (Some(4500), 4500));

    // Algorithm confusion: HS256 with the public key as the HMAC secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(auth.kid());
    let confused =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&auth.public_key())).expect("hs256");
    assert_eq!(RawClient::refused(edge.addr, &confused).await, (Some(4500), 4500));

    // Garbage and oversize.
    assert_eq!(RawClient::refused(edge.addr, "not.a.jwt").await, (Some(4500), 4500));
    assert_eq!(RawClient::refused(edge.addr, &"a".repeat(10_000)).await, (Some(4500), 4500));
    assert_eq!(RawClient::refused(edge.addr, "").await, (Some(4500), 4500));

    assert_bystander_fine(&mut calm).await;
}

#[tokio::test]
async fn unknown_kid_triggers_a_jwks_refetch() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    auth.rotate("k2");
    let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", "u", ALL)).await;
    assert!(is_ok(&c.subscribe("a").await));
}

#[tokio::test]
async fn bad_channel_names_and_denied_operations_get_error_replies() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    let token = auth.token("app1", "u", r#"{"chat:*": ["subscribe"], "feed": ["publish"]}"#);
    let (mut c, _) = RawClient::connect(edge.addr, &token).await;
    let long = "x".repeat(10 * 1024);
    for bad in ["chat:a>b", "chat:*", "chat:>", "chat:a b", "chat:a\0b", "$sys", "", long.as_str()] {
        assert!(is_error(&c.subscribe(bad).await, ErrorCode::InvalidChannel), "{bad:?}");
        assert!(is_error(&c.publish(bad, b"x").await, ErrorCode::InvalidChannel), "{bad:?}");
    }
    assert!(is_error(&c.subscribe("other").await, ErrorCode::Forbidden));
    assert!(is_error(&c.publish("chat:a", b"x").await, ErrorCode::Forbidden));
    assert!(is_ok(&c.publish("feed", b"x").await));
    c.request(client_frame::Kind::Unsubscribe(client::Unsubscribe { channel: "chat:a".into() })).await;
    assert!(is_error(&c.reply().await, ErrorCode::NotSubscribed));
    // The connection is still fine.
    assert!(is_ok(&c.subscribe("chat:a").await));
}

#[tokio::test]
async fn subscribing_past_the_limit_is_refused() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { max_subscriptions: 3, ..config(&auth) };
    let (edge, _) = local_edge(&auth, config).await;
    let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", "u", ALL)).await;
    for ch in ["a", "b", "c"] {
        assert!(is_ok(&c.subscribe(ch).await));
    }
    assert!(is_ok(&c.subscribe("a").await), "re-subscribing is idempotent");
    assert!(is_error(&c.subscribe("d").await, ErrorCode::LimitExceeded));
}

#[tokio::test]
async fn publishing_faster_than_the_rate_is_refused_and_oversize_too() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { publish_rate: 5, publish_burst: 5, ..config(&auth) };
    let (edge, _) = local_edge(&auth, config).await;
    let (mut c, _) = RawClient::connect(edge.addr, &auth.token("app1", "u", ALL)).await;
    let mut limited = 0;
    for _ in 0..20 {
        if is_error(&c.publish("x", b"1").await, ErrorCode::RateLimited) {
            limited += 1;
        }
    }
    assert!(limited >= 10, "only {limited} of 20 were rate limited");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(is_ok(&c.publish("x", b"1").await), "tokens refill");
    let big = vec![0u8; 64 * 1024 + 1];
    assert!(is_error(&c.publish("x", &big).await, ErrorCode::TooLarge));
}

#[tokio::test]
async fn silent_clients_are_closed_and_app_pings_keep_them_alive() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig {
        heartbeat_interval: HumanDuration::millis(100),
        heartbeat_timeout: HumanDuration::millis(400),
        ..config(&auth)
    };
    let (edge, _) = local_edge(&auth, config).await;
    let token = auth.token("app1", "u", ALL);
    let (mut pinger, _) = RawClient::connect(edge.addr, &token).await;
    let (mut silent, _) = RawClient::connect(edge.addr, &token).await;
    for _ in 0..8 {
        pinger.request(client_frame::Kind::Ping(client::Ping {})).await;
        assert!(is_ok(&pinger.reply().await));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(silent.closed().await, (Some(4001), 4001));
    assert!(is_ok(&pinger.subscribe("still-open").await));
}

#[tokio::test]
async fn tokens_expire_unless_refreshed() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { token_leeway: HumanDuration::secs(0), ..config(&auth) };
    let (edge, _) = local_edge(&auth, config).await;
    let short = auth.sign(&TestAuthority::claims("app1", "u", ALL, Duration::from_secs(2)));
    let (mut lapsing, _) = RawClient::connect(edge.addr, &short).await;
    let (mut refreshing, _) = RawClient::connect(edge.addr, &short).await;
    assert!(is_ok(&refreshing.subscribe("a").await));
    let fresh = auth.token("app1", "u", ALL);
    refreshing.request(client_frame::Kind::RefreshToken(client::RefreshToken { token: fresh })).await;
    assert!(is_ok(&refreshing.reply().await));
    // A token for someone else is refused as a refresh.
    let other = auth.token("app1", "someone-else", ALL);
    refreshing.request(client_frame::Kind::RefreshToken(client::RefreshToken { token: other })).await;
    assert!(is_error(&refreshing.reply().await, ErrorCode::Forbidden));
    assert_eq!(within(Duration::from_secs(5), "expiry close", lapsing.closed()).await, (Some(4100), 4100));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(is_ok(&refreshing.publish("a", b"alive").await));
    assert_eq!(data_of(&refreshing.message().await), b"alive");
}

#[tokio::test]
async fn key_revocation_closes_the_connections_holding_its_tokens() {
    let auth = TestAuthority::start().await;
    let (edge, bus) = local_edge(&auth, config(&auth)).await;
    // Tokens of the key, all minted before its revocation (a revoked key
    // mints no more).
    let (key1, also_key1) = (auth.token("app1", "u", ALL), auth.token("app1", "v", ALL));
    let (mut revoked, _) = RawClient::connect(edge.addr, &key1).await;
    let mut other_key = TestAuthority::claims("app1", "v", ALL, Duration::from_secs(3600));
    other_key.key = "key2".parse().expect("key id");
    let (mut kept, _) = RawClient::connect(edge.addr, &auth.sign(&other_key)).await;
    let event = bus::ControlEvent {
        timestamp_ms: 0,
        kind: Some(bus::control_event::Kind::KeyRevoked(bus::KeyRevoked {
            app_id: "app1".into(),
            key_id: "key1".into(),
            ..Default::default()
        })),
    };
    bus.publish_control(&event).await.expect("control");
    let closed = within(Duration::from_secs(1), "revocation close", revoked.closed()).await;
    assert_eq!(closed, (Some(4101), 4101));
    assert!(is_ok(&kept.subscribe("a").await));
    // The revoked key's tokens no longer connect, nor serve as a refresh.
    assert_eq!(RawClient::refused(edge.addr, &key1).await, (Some(4101), 4101));
    kept.request(client_frame::Kind::RefreshToken(client::RefreshToken { token: also_key1 })).await;
    assert!(is_error(&kept.reply().await, ErrorCode::Unauthorized));
    assert!(is_ok(&kept.subscribe("b").await), "a refused refresh leaves the connection as it was");

    // A deleted app: its connections close, its tokens are refused, other
    // apps' are not.
    let (mut doomed, _) = RawClient::connect(edge.addr, &auth.sign(&other_key)).await;
    let (mut bystander, _) = RawClient::connect(edge.addr, &auth.token("app2", "w", ALL)).await;
    let event = bus::ControlEvent {
        timestamp_ms: 0,
        kind: Some(bus::control_event::Kind::AppDeleted(bus::AppDeleted {
            app_id: "app1".into(),
            ..Default::default()
        })),
    };
    bus.publish_control(&event).await.expect("control");
    assert_eq!(within(Duration::from_secs(1), "app close", doomed.closed()).await, (Some(4503), 4503));
    assert_eq!(RawClient::refused(edge.addr, &auth.sign(&other_key)).await, (Some(4503), 4503));
    assert!(is_ok(&bystander.subscribe("a").await));
    // An app created again under the same id: tokens issued after the
    // deletion pass.
    let mut later = TestAuthority::claims("app1", "x", ALL, Duration::from_secs(3600));
    later.iat += 2;
    let (mut reborn, _) = RawClient::connect(edge.addr, &auth.sign(&later)).await;
    assert!(is_ok(&reborn.subscribe("a").await));
}

#[tokio::test]
async fn an_edge_started_after_a_revocation_learns_it_from_the_jwks() {
    let auth = TestAuthority::start().await;
    // Minted before the revocations (a revoked key mints no more).
    let (key1, app9) = (auth.token("app1", "u", ALL), auth.token("app9", "u", ALL));
    auth.revoke("app1", Some("key1"));
    auth.revoke("app9", None);
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    assert_eq!(RawClient::refused(edge.addr, &key1).await, (Some(4101), 4101));
    assert_eq!(RawClient::refused(edge.addr, &app9).await, (Some(4503), 4503));
    let mut other_key = TestAuthority::claims("app1", "v", ALL, Duration::from_secs(3600));
    other_key.key = "key2".parse().expect("key id");
    let (mut fine, _) = RawClient::connect(edge.addr, &auth.sign(&other_key)).await;
    assert!(is_ok(&fine.subscribe("a").await));
    // Revoked later, seen at the next JWKS fetch (here: a token naming a
    // new key id makes the edge fetch it).
    auth.revoke("app1", Some("key2"));
    auth.rotate("k2");
    assert_eq!(RawClient::refused(edge.addr, &auth.sign(&other_key)).await, (Some(4101), 4101));
}

#[tokio::test]
async fn origins_outside_the_allowlist_are_refused() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth, config(&auth)).await;
    let mut claims = TestAuthority::claims("app1", "u", ALL, Duration::from_secs(3600));
    claims.origins = vec!["https://good.example".into()];
    let token = auth.sign(&claims);
    for (origin, want) in [("https://evil.example", Some(4501u32)), ("https://good.example", None)] {
        let mut c = RawClient::connect_with(edge.addr, &[("Origin", origin)]).await.expect("upgrade");
        c.request(client_frame::Kind::Connect(client::Connect { token: token.clone(), client_name: String::new() }))
            .await;
        match want {
            Some(code) => assert_eq!(c.closed().await, (Some(code), code as u16)),
            None => assert!(matches!(c.recv().await, Received::Frame(_))),
        }
    }
}

#[tokio::test]
async fn connections_past_the_limit_are_refused() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { max_connections: 2, ..config(&auth) };
    let (edge, _) = local_edge(&auth, config).await;
    let token = auth.token("app1", "u", ALL);
    let (_a, _) = RawClient::connect(edge.addr, &token).await;
    let (_b, _) = RawClient::connect(edge.addr, &token).await;
    let mut c = RawClient::connect_with(edge.addr, &[]).await.expect("upgrade");
    assert_eq!(c.closed().await, (Some(4003), 4003));

    // Per app, from the token's limits.
    let config = EdgeConfig { jwks_url: auth.jwks_url(), ..EdgeConfig::default() };
    let (edge, _) = local_edge(&auth, config).await;
    let mut claims = TestAuthority::claims("small", "u", ALL, Duration::from_secs(3600));
    claims.lim = Some(herald_proto::claims::AppLimits { max_connections: Some(1), ..Default::default() });
    let token = auth.sign(&claims);
    let (_a, _) = RawClient::connect(edge.addr, &token).await;
    assert_eq!(RawClient::refused(edge.addr, &token).await, (Some(4003), 4003));
    let (_other_app, _) = RawClient::connect(edge.addr, &auth.token("big", "u", ALL)).await;
}

#[tokio::test]
async fn connections_that_vanish_without_a_close_free_their_slot() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { max_connections: 1, ..config(&auth) };
    let (edge, _) = local_edge(&auth, config).await;
    let token = auth.token("app1", "u", ALL);
    // Clients that drop the TCP connection with no close frame, one after
    // the other (idle ones and subscribed ones): each frees the only slot.
    for round in 0..10 {
        let mut c = within(Duration::from_secs(5), "the slot frees up", async {
            loop {
                let mut c = RawClient::connect_with(edge.addr, &[]).await.expect("upgrade");
                let connect = client::Connect { token: token.clone(), client_name: String::new() };
                c.request(client_frame::Kind::Connect(connect)).await;
                match c.recv().await {
                    Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::Connected(_)) }) => {
                        return c;
                    }
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await;
        if round % 2 == 1 {
            assert!(is_ok(&c.subscribe("a").await));
        }
        drop(c);
    }
}

#[tokio::test]
async fn shutdown_tells_clients_to_move_serves_them_meanwhile_then_closes_with_going_away() {
    let auth = TestAuthority::start().await;
    let grace = Duration::from_millis(1_500);
    let (mut edge, _) = local_edge(&auth, EdgeConfig { drain_grace: HumanDuration(grace), ..config(&auth) }).await;
    let token = auth.token("app1", "u", ALL);
    let mut clients = vec![];
    for _ in 0..5 {
        let (mut c, _) = RawClient::connect(edge.addr, &token).await;
        assert!(is_ok(&c.subscribe("a").await));
        clients.push(c);
    }
    let mut pending = RawClient::connect_with(edge.addr, &[]).await.expect("upgrade");
    let addr = edge.addr;
    let started = Instant::now();
    edge.begin_shutdown();
    // A connection still in its handshake has nothing to finish: closed at once.
    assert_eq!(within(Duration::from_secs(5), "handshake close", pending.closed()).await, (Some(1001), 1001));
    for c in &mut clients {
        let within_ms = within(Duration::from_secs(5), "go away", async {
            loop {
                match c.recv().await {
                    Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::GoAway(g)) }) => {
                        return g.within_ms;
                    }
                    Received::Ping => {}
                    other => panic!("expected GoAway, got {other:?}"),
                }
            }
        })
        .await;
        assert_eq!(within_ms, 1_500);
    }
    // While told to move, a client is still served: its publish is answered
    // and delivered.
    let (mover, stayers) = clients.split_first_mut().expect("clients");
    assert!(is_ok(&mover.publish("a", b"last words").await));
    for c in stayers.iter_mut() {
        assert_eq!(data_of(&c.message().await), b"last words");
    }
    // The client that leaves by itself gets its close answered...
    mover.send_frame(true, 0x8, &1000u16.to_be_bytes()).await;
    assert_eq!(within(Duration::from_secs(5), "close answered", mover.closed()).await.1, 1000);
    // ...the others are closed with 1001 once the grace is over.
    for c in stayers.iter_mut() {
        assert_eq!(within(Duration::from_secs(5), "drain close", c.closed()).await, (Some(1001), 1001));
    }
    assert!(started.elapsed() >= grace, "closed after {:?}, before the grace", started.elapsed());
    within(Duration::from_secs(5), "run returns", edge.join()).await.expect("edge run");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn tls_files_that_cannot_be_read_stop_the_start() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig {
        tls_cert: Some("/nonexistent/cert.pem".into()),
        tls_key: Some("/nonexistent/key.pem".into()),
        ..config(&auth)
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let err = herald_edge::run(listener, config, Bus::local(&LocalBus::new()), std::future::pending())
        .await
        .expect_err("missing tls files");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

#[tokio::test]
async fn tls_serves_wss() {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth = TestAuthority::start().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("self-signed cert");
    let dir = std::env::temp_dir().join(format!("herald-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let config = EdgeConfig { tls_cert: Some(cert_path), tls_key: Some(key_path), ..config(&auth) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _edge = tokio::spawn(herald_edge::run(listener, config, Bus::local(&LocalBus::new()), std::future::pending()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let mut tls = loop {
        if let Ok(tcp) = tokio::net::TcpStream::connect(addr).await {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            break connector.connect(name, tcp).await.expect("tls handshake");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let token = auth.token("app1", "alice", ALL);
    let request = format!(
        "GET /v1/connect HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: herald.v1\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the Connected frame (binary opcode) follows the 101 head.
    while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.contains(&0x82)) {
        let n = within(Duration::from_secs(5), "tls read", tls.read(&mut buf)).await.expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn invalid_config_is_refused_with_the_key_name() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let config = EdgeConfig { max_subscriptions: 0, ..EdgeConfig::default() };
    let err = herald_edge::run(listener, config, Bus::local(&LocalBus::new()), std::future::pending())
        .await
        .expect_err("invalid config");
    assert!(err.to_string().contains("max_subscriptions"), "{err}");
}

// Close codes are what the protocol table says.
#[test]
fn close_codes_used_here_are_in_the_table() {
    for code in [4000u16, 4001, 4002, 4003, 4100, 4101, 4500, 4501, 4502, 1001, 1002, 1003, 1009] {
        assert!(CloseCode::from_number(code).is_some(), "{code}");
    }
}
