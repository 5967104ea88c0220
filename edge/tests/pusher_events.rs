//! Pusher protocol events: client events, user sign-in with user events and
//! user termination (for both protocols), and the prompt occupancy report.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{ALL, PUSHER_APP, PUSHER_SECRET, config, pusher_auth, pusher_edge};
use herald_bus::{Bus, Sink};
use herald_edge::EdgeConfig;
use herald_edge::testing::{PusherClient, RawClient, TestAuthority, is_ok, pusher_settings, within};
use herald_proto::{AppId, ChannelName, bus};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(10);

fn client_event(channel: &str, event: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"event": event, "channel": channel, "data": data})
}

async fn private(c: &mut PusherClient, socket: &str, channel: &str) {
    let answer = c.subscribe(channel, Some(&pusher_auth(socket, channel, None)), None).await;
    assert_eq!(answer.event, "pusher_internal:subscription_succeeded", "{answer:?}");
}

#[tokio::test]
async fn client_events_reach_others_of_both_protocols_but_never_their_sender() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut a, sa) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (mut b, sb) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (mut native, _) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "n1", ALL)).await;
    let room = "private-chat";
    private(&mut a, &sa, room).await;
    private(&mut b, &sb, room).await;
    assert!(is_ok(&native.subscribe(room).await));
    a.send(&client_event(room, "client-typing", json!({"who": "a"}))).await;
    a.send(&client_event(room, "client-text", json!("just text"))).await;
    let e = b.event().await;
    assert_eq!((e.event.as_str(), e.channel.as_deref()), ("client-typing", Some(room)));
    assert_eq!(e.json(), json!({"who": "a"}));
    assert_eq!(e.user_id, None, "no user id on a private channel");
    assert_eq!(b.event().await.data, json!("just text"));
    let m = native.message().await;
    assert_eq!((m.event.as_deref(), &m.data[..]), (Some("client-typing"), &br#"{"who":"a"}"#[..]));
    assert_eq!(&native.message().await.data[..], b"just text");
    // Not echoed: a's next event is b's.
    b.send(&client_event(room, "client-reply", json!(1))).await;
    assert_eq!(a.event().await.event, "client-reply");
}

#[tokio::test]
async fn client_events_on_presence_channels_carry_the_senders_user_id() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let room = "presence-game";
    let (mut a, sa) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (mut b, sb) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    for (c, s, user) in [(&mut a, &sa, "amy"), (&mut b, &sb, "ben")] {
        let data = json!({"user_id": user}).to_string();
        let answer = c.subscribe(room, Some(&pusher_auth(s, room, Some(&data))), Some(&data)).await;
        assert_eq!(answer.event, "pusher_internal:subscription_succeeded");
    }
    a.send(&client_event(room, "client-move", json!({"x": 1}))).await;
    let e = b.event_named("client-move").await;
    assert_eq!(e.user_id.as_deref(), Some("amy"));
}

#[tokio::test]
async fn client_events_are_refused_where_they_are_not_allowed() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut c, s) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    assert_eq!(c.subscribe("public", None, None).await.event, "pusher_internal:subscription_succeeded");
    private(&mut c, &s, "private-ok").await;
    let encrypted = "private-encrypted-x";
    private(&mut c, &s, encrypted).await;
    let cases = [
        client_event("public", "client-a", json!(1)),
        client_event("private-not-subscribed", "client-a", json!(1)),
        client_event(encrypted, "client-a", json!(1)),
        json!({"event": "client-no-channel", "data": 1}),
        client_event("private-ok", &format!("client-{}", "x".repeat(300)), json!(1)),
    ];
    for case in &cases {
        c.send(case).await;
        let e = within(LIMIT, "an error", c.event()).await;
        assert_eq!((e.event.as_str(), e.data["code"].clone()), ("pusher:error", json!(4302)), "{case}");
    }
    // Too large.
    c.send(&client_event("private-ok", "client-big", json!("x".repeat(11 * 1024)))).await;
    assert_eq!(c.event().await.data["code"], 4303);
    // Client events off for the app.
    let (edge2, _bus2, _apps2) = pusher_edge(
        config(&auth),
        herald_proto::bus::PusherApp { client_events: false, ..pusher_settings(PUSHER_SECRET) },
    )
    .await;
    let (mut d, sd) = PusherClient::connect(edge2.addr, PUSHER_APP).await;
    private(&mut d, &sd, "private-ok").await;
    d.send(&client_event("private-ok", "client-a", json!(1))).await;
    let e = d.event().await;
    assert_eq!(e.data["code"], 4302);
    assert!(e.data["message"].as_str().is_some_and(|m| m.contains("not enabled")), "{e:?}");
}

#[tokio::test]
async fn client_events_over_the_rate_get_4301_and_the_connection_stays() {
    let auth = TestAuthority::start().await;
    let settings = bus::PusherApp { client_event_rate: 3, ..pusher_settings(PUSHER_SECRET) };
    let (edge, _bus, _apps) = pusher_edge(config(&auth), settings).await;
    let (mut a, sa) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (mut b, sb) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    private(&mut a, &sa, "private-fast").await;
    private(&mut b, &sb, "private-fast").await;
    for i in 0..10 {
        a.send(&client_event("private-fast", "client-n", json!(i))).await;
    }
    let mut limited = 0;
    for _ in 0..7 {
        let e = a.event().await;
        assert_eq!((e.event.as_str(), e.data["code"].clone()), ("pusher:error", json!(4301)));
        limited += 1;
    }
    assert_eq!(limited, 7, "a burst of 3 passes");
    for i in 0..3 {
        assert_eq!(b.event().await.data, json!(i.to_string()));
    }
    a.send(&json!({"event": "pusher:ping"})).await;
    assert_eq!(a.event().await.event, "pusher:pong");
}

fn signin(socket: &str, user_data: &str) -> serde_json::Value {
    let auth = herald_proto::pusher::sign_user(PUSHER_APP, PUSHER_SECRET, socket, user_data);
    json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})
}

async fn user_control(bus: &Bus, kind: bus::control_event::Kind) {
    bus.publish_control(&bus::ControlEvent { timestamp_ms: 1, kind: Some(kind) }).await.expect("control");
}

#[tokio::test]
async fn signed_in_users_get_their_events_and_are_terminated_on_both_protocols() {
    let auth = TestAuthority::start().await;
    let (edge, bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut p, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let user_data = r#"{"id":"u-7","name":"Sam"}"#;
    p.send(&signin(&socket, user_data)).await;
    let ok = p.event().await;
    assert_eq!(ok.event, "pusher:signin_success");
    assert_eq!(ok.json(), json!({"user_data": user_data}));
    // pusher-js then subscribes to its own server-to-user channel.
    let own = p.subscribe("#server-to-user-u-7", Some(""), None).await;
    assert_eq!(own.event, "pusher_internal:subscription_succeeded");
    let other = p.subscribe("#server-to-user-u-8", Some(""), None).await;
    assert_eq!(other.event, "pusher:subscription_error");
    // A Herald connection whose token names the same user.
    let (mut native, _) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "u-7", ALL)).await;
    let (mut bystander, _) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "u-8", ALL)).await;
    let event = bus::UserEvent {
        app_id: PUSHER_APP.into(),
        user_id: "u-7".into(),
        event: "notice".into(),
        data: Bytes::from_static(br#"{"n":1}"#),
        id: "e1".into(),
        timestamp_ms: 5,
    };
    user_control(&bus, bus::control_event::Kind::UserEvent(event)).await;
    let e = p.event().await;
    assert_eq!((e.event.as_str(), e.channel.as_deref()), ("notice", Some("#server-to-user-u-7")));
    assert_eq!(e.data, json!(r#"{"n":1}"#));
    let m = native.message().await;
    assert_eq!((m.channel.as_str(), m.event.as_deref(), m.id.as_str()), ("", Some("notice"), "e1"));
    let terminated = bus::UserTerminated { app_id: PUSHER_APP.into(), user_id: "u-7".into() };
    user_control(&bus, bus::control_event::Kind::UserTerminated(terminated)).await;
    assert_eq!(within(LIMIT, "pusher close", p.closed()).await, (Some(4009), 4009));
    assert_eq!(within(LIMIT, "native close", native.closed()).await, (Some(4504), 4504));
    assert!(is_ok(&bystander.subscribe("still-here").await));
}

#[tokio::test]
async fn a_bad_sign_in_closes_with_4009() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    for bad in [
        |s: &str| signin("1.2", &format!(r#"{{"id":"x","s":"{s}"}}"#)),
        |s: &str| {
            let mut m = signin(s, r#"{"id":"x"}"#);
            m["data"]["user_data"] = json!(r#"{"id":"root"}"#);
            m
        },
        |s: &str| signin(s, r#"{"name":"no id"}"#),
    ] {
        let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
        c.send(&bad(&socket)).await;
        assert_eq!(within(LIMIT, "the close", c.closed()).await, (Some(4009), 4009));
    }
}

/// Collects occupancy reports.
#[derive(Default)]
struct Reports(Mutex<Vec<bus::OccupancyReport>>);

impl Sink for Reports {
    fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, _: Bytes, _: Option<&herald_bus::Position>) {}
    fn control(&self, _: bus::ControlEvent) {}
    fn occupancy(&self, report: bus::OccupancyReport) {
        self.0.lock().expect("reports").push(report);
    }
}

impl Reports {
    /// The newest count of `channel` reported, once one matching `want`
    /// came.
    async fn wait_for(&self, channel: &str, want: u32) -> Duration {
        let started = tokio::time::Instant::now();
        loop {
            let latest = self.0.lock().expect("reports").iter().rev().find_map(|r| {
                (r.app_id == PUSHER_APP)
                    .then(|| r.channels.iter().find(|c| c.channel == channel).map_or(0, |c| c.subscribers))
            });
            if latest == Some(want) {
                return started.elapsed();
            }
            assert!(started.elapsed() < LIMIT, "no report of {want} on {channel}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[tokio::test]
async fn occupancy_changes_reach_the_bus_promptly() {
    let auth = TestAuthority::start().await;
    // Periodic reports far apart: what arrives is the prompt one.
    let config = EdgeConfig {
        presence_snapshot_interval: herald_proto::units::HumanDuration::secs(300),
        presence_ttl: herald_proto::units::HumanDuration::secs(600),
        ..config(&auth)
    };
    let (edge, bus, _apps) = pusher_edge(config, pusher_settings(PUSHER_SECRET)).await;
    let reports = Arc::new(Reports::default());
    bus.attach(reports.clone()).await.expect("attach");
    let _sub = bus.subscribe_occupancy_all().await.expect("occupancy");
    let (mut a, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (mut b, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    a.subscribe("counted", None, None).await;
    b.subscribe("counted", None, None).await;
    let took = reports.wait_for("counted", 2).await;
    assert!(took < Duration::from_millis(900), "{took:?}");
    b.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": "counted"}})).await;
    let took = reports.wait_for("counted", 1).await;
    assert!(took < Duration::from_millis(900), "{took:?}");
    drop(a);
    let took = reports.wait_for("counted", 0).await;
    assert!(took < Duration::from_millis(900), "{took:?}");
}

/// The next subscription count `c` is told about `channel`, skipping the
/// counts on the way to `want`.
async fn count_reaches(c: &mut PusherClient, channel: &str, want: u64) {
    within(LIMIT, "the count", async {
        loop {
            let e = c.event_named("pusher_internal:subscription_count").await;
            assert_eq!(e.channel.as_deref(), Some(channel));
            assert!(e.data.is_string(), "{e:?}");
            if e.json()["subscription_count"] == want {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn subscription_counts_add_up_subscribers_of_every_edge_and_protocol() {
    let auth = TestAuthority::start().await;
    let bus = herald_bus::LocalBus::new();
    let settings = bus::PusherApp { subscription_count: true, ..pusher_settings(PUSHER_SECRET) };
    let apps = herald_edge::testing::TestApps::with(PUSHER_APP, settings);
    let serving = Bus::local(&bus);
    serving.serve_namespaces(apps).await.expect("serve");
    let edge_a = herald_edge::testing::TestEdge::start(config(&auth), Bus::local(&bus)).await;
    let edge_b = herald_edge::testing::TestEdge::start(config(&auth), Bus::local(&bus)).await;
    let room = "counted-room";
    let (mut a, _) = PusherClient::connect(edge_a.addr, PUSHER_APP).await;
    assert_eq!(a.subscribe(room, None, None).await.event, "pusher_internal:subscription_succeeded");
    count_reaches(&mut a, room, 1).await;
    let (mut b, _) = PusherClient::connect(edge_b.addr, PUSHER_APP).await;
    assert_eq!(b.subscribe(room, None, None).await.event, "pusher_internal:subscription_succeeded");
    count_reaches(&mut a, room, 2).await;
    count_reaches(&mut b, room, 2).await;
    let (mut native, _) = RawClient::connect(edge_a.addr, &auth.token(PUSHER_APP, "n", ALL)).await;
    assert!(is_ok(&native.subscribe(room).await));
    count_reaches(&mut a, room, 3).await;
    count_reaches(&mut b, room, 3).await;
    b.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": room}})).await;
    count_reaches(&mut a, room, 2).await;
    drop(native);
    count_reaches(&mut a, room, 1).await;
}
