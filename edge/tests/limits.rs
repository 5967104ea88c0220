//! Limits the control plane changes while connections are open, and tokens
//! whose expiry is out of every range: an edge on port 0 with the
//! in-process bus.

use std::time::Duration;

use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::*;
use herald_proto::client::{self, client_frame};
use herald_proto::{ErrorCode, bus};

const ALL: &str = r#"{"*": ["subscribe", "publish", "presence", "history"]}"#;

async fn local_edge(auth: &TestAuthority) -> (TestEdge, Bus) {
    let bus = LocalBus::new();
    let config = EdgeConfig { jwks_url: auth.jwks_url(), ..EdgeConfig::default() };
    let edge = TestEdge::start(config, Bus::local(&bus)).await;
    (edge, Bus::local(&bus))
}

async fn announce(bus: &Bus, app: &str, max_message_bytes: u32, max_connections: u32) {
    let event = bus::ControlEvent {
        timestamp_ms: herald_bus::now_ms(),
        kind: Some(bus::control_event::Kind::AppLimitsChanged(bus::AppLimitsChanged {
            app_id: app.to_owned(),
            max_message_bytes,
            max_connections,
        })),
    };
    bus.publish_control(&event).await.expect("publish the event");
}

#[tokio::test]
async fn announced_app_limits_win_over_the_tokens_on_open_and_new_connections() {
    let auth = TestAuthority::start().await;
    let (edge, bus) = local_edge(&auth).await;
    let mut claims = TestAuthority::claims("app1", "u", ALL, Duration::from_secs(3600));
    claims.lim = Some(herald_proto::claims::AppLimits {
        max_message_bytes: Some(1000),
        max_connections: Some(5),
        ..Default::default()
    });
    let token = auth.sign(&claims);
    let (mut open, connected) = RawClient::connect(edge.addr, &token).await;
    assert_eq!(connected.limits.expect("limits").max_message_bytes, 1000);
    let (mut other_app, _) = RawClient::connect(edge.addr, &auth.token("app2", "u", ALL)).await;
    assert!(is_ok(&open.publish("room", &[0; 800]).await));

    // Lowered: the open connection is held to the new size at once, and no
    // new connection of the app fits any more (one is open).
    announce(&bus, "app1", 100, 1).await;
    assert!(is_error(&open.publish("room", &[0; 800]).await, ErrorCode::TooLarge));
    assert!(is_ok(&open.publish("room", &[0; 100]).await));
    assert_eq!(RawClient::refused(edge.addr, &token).await, (Some(4003), 4003));
    // Other apps keep their limits.
    assert!(is_ok(&other_app.publish("room", &[0; 800]).await));
    let (_second, _) = RawClient::connect(edge.addr, &auth.token("app2", "u", ALL)).await;

    // Raised past the token's: the announcement wins there too (the edge's
    // own 64 KiB still caps it). A 0 keeps what was announced before.
    announce(&bus, "app1", 2000, 0).await;
    assert!(is_ok(&open.publish("room", &[0; 1500]).await));
    assert!(is_error(&open.publish("room", &[0; 2001]).await, ErrorCode::TooLarge));
    assert_eq!(RawClient::refused(edge.addr, &token).await, (Some(4003), 4003));
    announce(&bus, "app1", 0, 2).await;
    let (mut second, connected) = RawClient::connect(edge.addr, &token).await;
    assert_eq!(connected.limits.expect("limits").max_message_bytes, 2000, "a new connection is told the limit");
    assert!(is_ok(&second.publish("room", &[0; 1500]).await));
}

#[tokio::test]
async fn an_announcement_for_an_app_with_no_connection_here_is_not_kept() {
    let auth = TestAuthority::start().await;
    let (edge, bus) = local_edge(&auth).await;
    announce(&bus, "app1", 10, 1).await;
    let token = auth.token("app1", "u", ALL);
    let (mut a, _) = RawClient::connect(edge.addr, &token).await;
    assert!(is_ok(&a.publish("room", &[0; 100]).await), "the token's limits apply");
    let (_b, _) = RawClient::connect(edge.addr, &token).await;
}

/// Claims whose `exp` is `exp` (any JSON number).
fn claims_expiring(exp: serde_json::Value) -> serde_json::Value {
    let claims = TestAuthority::claims("app1", "u", ALL, Duration::from_secs(3600));
    let mut json = serde_json::to_value(&claims).expect("claims as json");
    json["exp"] = exp;
    json
}

#[tokio::test]
async fn tokens_with_a_huge_expiry_connect_and_keep_working() {
    let auth = TestAuthority::start().await;
    let (edge, _) = local_edge(&auth).await;
    let past_i64 = serde_json::Value::from(i64::MAX as u64 + 1);
    for exp in [serde_json::Value::from(u64::MAX), past_i64, serde_json::Value::from(i64::MAX)] {
        let token = auth.sign_json(&claims_expiring(exp.clone()));
        let (mut c, connected) = RawClient::connect(edge.addr, &token).await;
        assert_eq!(connected.token_expires_at_ms, i64::MAX, "exp {exp}");
        assert!(is_ok(&c.subscribe("room").await));
        assert!(is_ok(&c.publish("room", b"hello").await));
        assert_eq!(c.message().await.data.as_ref(), b"hello");
        // A refresh to such a token works too.
        c.request(client_frame::Kind::RefreshToken(client::RefreshToken { token: token.clone() })).await;
        assert!(is_ok(&c.reply().await), "refresh with exp {exp}");
        // Still open and answering: nothing overflowed in its task.
        assert!(is_ok(&c.publish("room", b"again").await));
        assert_eq!(c.message().await.data.as_ref(), b"again");
        assert_eq!(c.recv_within(Duration::from_millis(100)).await, None, "no close");
    }
}
