//! Pusher connections on edges over a real NATS: presence per user, client
//! events, subscription counts and user termination across edges.

mod common;

use std::sync::Arc;

use common::{PUSHER_APP, PUSHER_SECRET, config, pusher_auth};
use herald_edge::testing::*;
use herald_proto::bus;
use serde_json::json;

/// Two edges on NATS in a subject space of their own, with [`PUSHER_APP`]
/// served with `settings`; keep the returned bus alive.
async fn two_edges(auth: &TestAuthority, settings: bus::PusherApp) -> (TestEdge, TestEdge, herald_bus::Bus) {
    let subjects = unique_subjects();
    let source = TestApps::with(PUSHER_APP, settings);
    let serving = serve_source(&nats_url(), subjects.clone(), Arc::clone(&source) as _).await;
    let a = TestEdge::start(config(auth), nats_bus(&nats_url(), subjects.clone()).await).await;
    let b = TestEdge::start(config(auth), nats_bus(&nats_url(), subjects).await).await;
    (a, b, serving)
}

async fn join(c: &mut PusherClient, socket: &str, channel: &str, user: &str) -> PusherEvent {
    let data = json!({"user_id": user}).to_string();
    let answer = c.subscribe(channel, Some(&pusher_auth(socket, channel, Some(&data))), Some(&data)).await;
    assert_eq!(answer.event, "pusher_internal:subscription_succeeded", "{answer:?}");
    answer
}

/// Waits until `c` knows `user` as a member of `channel`: in its list or by
/// a later member_added.
async fn knows(c: &mut PusherClient, answer: &PusherEvent, user: &str) {
    if answer.json()["presence"]["hash"].get(user).is_none() {
        let added = c.event_named("pusher_internal:member_added").await;
        assert_eq!(added.json()["user_id"], user);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_client_events_across_edges_over_nats() {
    let auth = TestAuthority::start().await;
    let (a, b, _serving) = two_edges(&auth, pusher_settings(PUSHER_SECRET)).await;
    let room = "presence-nats";
    let (mut watcher, sw) = PusherClient::connect(b.addr, PUSHER_APP).await;
    join(&mut watcher, &sw, room, "watcher").await;
    let (mut tab1, s1) = PusherClient::connect(a.addr, PUSHER_APP).await;
    let first = join(&mut tab1, &s1, room, "kim").await;
    knows(&mut tab1, &first, "watcher").await;
    assert_eq!(watcher.event_named("pusher_internal:member_added").await.json()["user_id"], "kim");
    // Kim's second tab, on edge B: no member_added for the watcher.
    let (mut tab2, s2) = PusherClient::connect(b.addr, PUSHER_APP).await;
    let second = join(&mut tab2, &s2, room, "kim").await;
    assert_eq!(second.json()["presence"]["count"], 2);
    // A client event from edge A reaches edge B's subscribers with the
    // sender's user id, and not the sender.
    tab1.send(&json!({"event": "client-wave", "channel": room, "data": {"hi": 1}})).await;
    let wave = watcher.event_named("client-wave").await;
    assert_eq!((wave.user_id.as_deref(), wave.json()), (Some("kim"), json!({"hi": 1})));
    assert_eq!(tab2.event_named("client-wave").await.user_id.as_deref(), Some("kim"));
    // The first tab leaves: the next member event the watcher sees is the
    // marker's, then kim's leaving once the last tab goes.
    drop(tab1);
    let (mut marker, sm) = PusherClient::connect(a.addr, PUSHER_APP).await;
    join(&mut marker, &sm, room, "marker").await;
    assert_eq!(watcher.event_named("pusher_internal:member_added").await.json()["user_id"], "marker");
    drop(tab2);
    assert_eq!(watcher.event_named("pusher_internal:member_removed").await.json()["user_id"], "kim");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_and_user_termination_across_edges_over_nats() {
    let auth = TestAuthority::start().await;
    let settings = bus::PusherApp { subscription_count: true, ..pusher_settings(PUSHER_SECRET) };
    let (a, b, serving) = two_edges(&auth, settings).await;
    let room = "counted-nats";
    let (mut x, _) = PusherClient::connect(a.addr, PUSHER_APP).await;
    let (mut y, sy) = PusherClient::connect(b.addr, PUSHER_APP).await;
    assert_eq!(x.subscribe(room, None, None).await.event, "pusher_internal:subscription_succeeded");
    assert_eq!(y.subscribe(room, None, None).await.event, "pusher_internal:subscription_succeeded");
    for c in [&mut x, &mut y] {
        within(std::time::Duration::from_secs(10), "a count of 2", async {
            while c.event_named("pusher_internal:subscription_count").await.json()["subscription_count"] != 2 {}
        })
        .await;
    }
    // y signs in; its user is terminated from the control subject.
    let user_data = r#"{"id":"nats-user"}"#;
    let signin = herald_proto::pusher::sign_user(PUSHER_APP, PUSHER_SECRET, &sy, user_data);
    y.send(&json!({"event": "pusher:signin", "data": {"auth": signin, "user_data": user_data}})).await;
    assert_eq!(y.event_named("pusher:signin_success").await.event, "pusher:signin_success");
    let kind = bus::control_event::Kind::UserTerminated(bus::UserTerminated {
        app_id: PUSHER_APP.into(),
        user_id: "nats-user".into(),
    });
    serving.publish_control(&bus::ControlEvent { timestamp_ms: 1, kind: Some(kind) }).await.expect("control");
    assert_eq!(within(std::time::Duration::from_secs(10), "the close", y.closed()).await, (Some(4009), 4009));
    within(std::time::Duration::from_secs(10), "a count of 1", async {
        while x.event_named("pusher_internal:subscription_count").await.json()["subscription_count"] != 1 {}
    })
    .await;
}
