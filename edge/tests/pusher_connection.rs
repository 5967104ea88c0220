//! Pusher protocol connections on `/app/{key}`: the handshake and its
//! refusals, ping and pong, the activity timeout, bad input, the drain.

mod common;

use std::time::Duration;

use common::{PUSHER_APP, PUSHER_SECRET, config, pusher_edge};
use herald_edge::EdgeConfig;
use herald_edge::testing::{PusherClient, PusherReceived, TestAuthority, pusher_settings, within};
use herald_proto::bus;
use herald_proto::units::{ByteSize, HumanDuration};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn connection_established_gives_a_socket_id_and_the_activity_timeout() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let mut c = PusherClient::upgrade(edge.addr, PUSHER_APP, "?protocol=7&client=js&version=8.4.0&flash=false")
        .await
        .expect("upgrade");
    let established = c.event().await;
    assert_eq!(established.event, "pusher:connection_established");
    assert!(established.data.is_string(), "data is a JSON string: {established:?}");
    let data = established.json();
    let socket_id = data["socket_id"].as_str().expect("socket_id");
    let (a, b) = socket_id.split_once('.').expect("a dot");
    assert!(!a.is_empty() && a.bytes().all(|c| c.is_ascii_digit()), "{socket_id}");
    assert!(!b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()), "{socket_id}");
    assert_eq!(data["activity_timeout"], 120);
    // Another connection has another id on the same edge number.
    let (_c2, other) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    assert_ne!(other, socket_id);
    assert_eq!(other.split_once('.').map(|p| p.0), Some(a));
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut c, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    c.send(&json!({"event": "pusher:ping", "data": {}})).await;
    assert_eq!(c.event().await.event, "pusher:pong");
}

#[tokio::test]
async fn a_silent_client_is_pinged_then_closed_with_4201() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig {
        pusher_activity_timeout: HumanDuration::secs(1),
        pusher_pong_timeout: HumanDuration(Duration::from_millis(500)),
        ..config(&auth)
    };
    let (edge, _bus, _apps) = pusher_edge(config, pusher_settings(PUSHER_SECRET)).await;
    let (mut c, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    // Answered pings keep it open.
    for _ in 0..2 {
        let ping = within(LIMIT, "a server ping", c.event()).await;
        assert_eq!(ping.event, "pusher:ping");
        c.send(&json!({"event": "pusher:pong", "data": {}})).await;
    }
    assert_eq!(within(LIMIT, "a third ping", c.event()).await.event, "pusher:ping");
    // Unanswered: closed with 4201, told first.
    assert_eq!(within(LIMIT, "the close", c.closed()).await, (Some(4201), 4201));
}

#[tokio::test]
async fn unknown_apps_and_apps_without_pusher_mode_are_refused_with_4001() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    // An app the stand-in has no Pusher settings for is one with Pusher
    // mode off, as the control plane answers it.
    for key in ["other-app", "Not_An-App-Id!"] {
        let mut c = PusherClient::upgrade(edge.addr, key, "?protocol=7").await.expect("upgrade");
        let error = c.event().await;
        assert_eq!(error.event, "pusher:error");
        assert_eq!(error.data["code"], 4001, "{error:?}");
        assert_eq!(within(LIMIT, "the close", c.closed()).await.1, 4001);
    }
}

#[tokio::test]
async fn the_apps_origin_allowlist_holds_for_pusher_connections() {
    let auth = TestAuthority::start().await;
    let settings =
        bus::PusherApp { allowed_origins: vec!["https://app.example".into()], ..pusher_settings(PUSHER_SECRET) };
    let (edge, _bus, _apps) = pusher_edge(config(&auth), settings).await;
    let query = "?protocol=7";
    let mut other = PusherClient::upgrade_with(edge.addr, PUSHER_APP, query, &[("Origin", "https://evil.example")])
        .await
        .expect("upgrade");
    assert_eq!(within(LIMIT, "the close", other.closed()).await, (Some(4009), 4009));
    let mut listed = PusherClient::upgrade_with(edge.addr, PUSHER_APP, query, &[("Origin", "https://app.example")])
        .await
        .expect("upgrade");
    assert_eq!(listed.event().await.event, "pusher:connection_established");
    // No Origin (not a browser): allowed, as for Herald's own connections.
    let mut server = PusherClient::upgrade(edge.addr, PUSHER_APP, query).await.expect("upgrade");
    assert_eq!(server.event().await.event, "pusher:connection_established");
}

#[tokio::test]
async fn missing_or_unsupported_protocol_versions_are_refused() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    for (query, code) in
        [("", 4008), ("?client=js", 4008), ("?protocol=abc", 4006), ("?protocol=4", 4007), ("?protocol=8", 4007)]
    {
        let mut c = PusherClient::upgrade(edge.addr, PUSHER_APP, query).await.expect("upgrade");
        assert_eq!(within(LIMIT, "the close", c.closed()).await, (Some(u64::from(code)), code), "{query}");
    }
    for version in ["5", "6", "7"] {
        let mut c = PusherClient::upgrade(edge.addr, PUSHER_APP, &format!("?protocol={version}")).await.expect("up");
        assert_eq!(c.event().await.event, "pusher:connection_established", "protocol {version}");
    }
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_connection_and_the_edge_stay_up() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut c, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let bad: Vec<(u8, &[u8])> = vec![
        (1, b"not json"),
        (1, b"[1,2,3]"),
        (1, br#"{"data":{}}"#),
        (1, br#"{"event":"pusher:nope","data":{}}"#),
        (1, br#"{"event":"anything","data":{}}"#),
        (1, br#"{"event":"pusher:subscribe","data":{"chanel":"x"}}"#),
        (1, br#"{"event":"pusher:subscribe","data":"{not json"}"#),
        (1, br#"{"event":"pusher:signin","data":{"auth":1}}"#),
        (2, b"\x00\x01binary"),
        (1, b"\xff\xfe"),
    ];
    for (i, (opcode, payload)) in bad.iter().enumerate() {
        c.send_frame(*opcode, payload).await;
        let error = within(LIMIT, "an error", c.event()).await;
        assert_eq!(error.event, "pusher:error", "case {i}: {error:?}");
        assert_eq!(error.data["code"], 4300, "case {i}: {error:?}");
        assert!(error.data["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Still served.
    c.send(&json!({"event": "pusher:ping"})).await;
    assert_eq!(c.event().await.event, "pusher:pong");
    let ok = c.subscribe("public-after-garbage", None, None).await;
    assert_eq!(ok.event, "pusher_internal:subscription_succeeded");
}

#[tokio::test]
async fn an_oversized_frame_gets_an_error_and_the_close_1009_and_others_are_unaffected() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig {
        max_frame_size: ByteSize::kib(4),
        max_message_size: ByteSize::kib(2),
        pusher_max_event_bytes: ByteSize::kib(1),
        ..config(&auth)
    };
    let (edge, _bus, _apps) = pusher_edge(config, pusher_settings(PUSHER_SECRET)).await;
    let (mut bystander, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (mut c, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    // 1 MiB: the edge closes while most of it is still on its way, and the
    // close must still arrive (not a reset).
    let huge = format!(r#"{{"event":"pusher:ping","data":"{}"}}"#, "x".repeat(1024 * 1024));
    c.send_text(&huge).await;
    assert_eq!(within(LIMIT, "the close", c.closed()).await, (Some(4304), 1009));
    bystander.send(&json!({"event": "pusher:ping"})).await;
    assert_eq!(bystander.event().await.event, "pusher:pong");
    let (mut fresh, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    fresh.send(&json!({"event": "pusher:ping"})).await;
    assert_eq!(fresh.event().await.event, "pusher:pong");
}

#[tokio::test]
async fn websocket_pings_are_answered_and_nothing_binary_is_ever_sent() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut c, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    c.send_frame(9, b"hi").await;
    c.send(&json!({"event": "pusher:ping"})).await;
    // The pong frame (opcode 0xA) is not surfaced; the JSON pong is.
    assert_eq!(c.event().await.event, "pusher:pong");
}

#[tokio::test]
async fn the_drain_tells_pusher_clients_to_reconnect_now() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { drain_grace: HumanDuration::secs(5), ..config(&auth) };
    let (mut edge, _bus, _apps) = pusher_edge(config, pusher_settings(PUSHER_SECRET)).await;
    let (mut c, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    edge.begin_shutdown();
    // At once, not after the grace Herald clients get.
    let closed = within(Duration::from_secs(3), "the close", c.closed()).await;
    assert_eq!(closed, (Some(4200), 4200));
    within(LIMIT, "the edge stops", edge.join()).await.expect("drained");
}

#[tokio::test]
async fn the_edge_connection_limit_refuses_with_4100_and_the_app_quota_with_4004() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { max_connections: 2, ..config(&auth) };
    let (edge, _bus, _apps) = pusher_edge(config, pusher_settings(PUSHER_SECRET)).await;
    let (_a, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (_b, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let mut c = PusherClient::upgrade(edge.addr, PUSHER_APP, "?protocol=7").await.expect("upgrade");
    assert_eq!(within(LIMIT, "the close", c.closed()).await, (Some(4100), 4100));

    let config = EdgeConfig { max_connections_per_app: 1, ..common::config(&auth) };
    let (edge, _bus, _apps) = pusher_edge(config, pusher_settings(PUSHER_SECRET)).await;
    let (_a, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let mut c = PusherClient::upgrade(edge.addr, PUSHER_APP, "?protocol=7").await.expect("upgrade");
    assert_eq!(within(LIMIT, "the close", c.closed()).await, (Some(4004), 4004));
}

#[tokio::test]
async fn paths_other_than_app_key_are_not_pusher() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    assert_eq!(PusherClient::upgrade(edge.addr, "a/b", "?protocol=7").await.err(), Some(404));
    assert_eq!(PusherClient::upgrade(edge.addr, "", "?protocol=7").await.err(), Some(404));
    let mut c = PusherClient::upgrade(edge.addr, PUSHER_APP, "?protocol=7").await.expect("upgrade");
    assert!(matches!(c.recv().await, PusherReceived::Event(e) if e.event == "pusher:connection_established"));
}
