//! Pusher protocol subscriptions: public, private (and encrypted) and
//! presence channels, channel authorization, presence per user on one edge
//! and across edges, and Pusher and Herald subscribers of one channel.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{ALL, PUSHER_APP, PUSHER_SECRET, config, pusher_auth, pusher_edge};
use herald_bus::{Bus, LocalBus};
use herald_edge::testing::{PusherClient, PusherEvent, RawClient, TestApps, TestAuthority, TestEdge, pusher_settings};
use herald_proto::{AppId, ChannelName, bus};
use serde_json::json;

fn ids(channel: &str) -> (AppId, ChannelName) {
    (AppId::new(PUSHER_APP).expect("app"), ChannelName::new(channel).expect("channel"))
}

/// Publishes `data` with `event` on `channel` through `bus`, as the control
/// plane would; `exclude` names a connection that must not receive it.
async fn publish(bus: &Bus, channel: &str, event: Option<&str>, data: &str, exclude: &str) {
    let (app, channel) = ids(channel);
    let message = bus::ChannelMessage {
        app_id: app.as_str().into(),
        channel: channel.as_str().into(),
        data: Bytes::from(data.to_owned()),
        event: event.map(str::to_owned),
        id: format!("m-{data}"),
        exclude_connection: exclude.into(),
        ..Default::default()
    };
    bus.publish(&app, &channel, &message).await.expect("publish");
}

fn presence_data(user: &str) -> String {
    json!({"user_id": user, "user_info": {"name": user.to_uppercase()}}).to_string()
}

/// Subscribes `c` (socket `socket`) to presence channel `channel` as `user`;
/// returns the answer.
async fn join(c: &mut PusherClient, socket: &str, channel: &str, user: &str) -> PusherEvent {
    let data = presence_data(user);
    c.subscribe(channel, Some(&pusher_auth(socket, channel, Some(&data))), Some(&data)).await
}

fn succeeded(e: &PusherEvent) -> bool {
    e.event == "pusher_internal:subscription_succeeded"
}

#[tokio::test]
async fn public_channels_need_no_auth_and_deliver_events_with_string_data() {
    let auth = TestAuthority::start().await;
    let (edge, bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut c, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let ok = c.subscribe("news", None, None).await;
    assert!(succeeded(&ok), "{ok:?}");
    assert!(ok.data.is_string(), "data is a JSON string: {ok:?}");
    publish(&bus, "news", Some("story"), r#"{"title":"hi"}"#, "").await;
    publish(&bus, "news", None, "plain text", "").await;
    let e = c.event().await;
    assert_eq!((e.event.as_str(), e.channel.as_deref()), ("story", Some("news")));
    assert_eq!(e.data, json!(r#"{"title":"hi"}"#));
    let e = c.event().await;
    assert_eq!((e.event.as_str(), e.data.clone()), ("message", json!("plain text")));
    // Unsubscribed: nothing more (the next event is the later channel's).
    c.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}})).await;
    assert!(succeeded(&c.subscribe("other", None, None).await));
    publish(&bus, "news", Some("story"), "late", "").await;
    publish(&bus, "other", Some("story"), "fine", "").await;
    assert_eq!(c.event().await.channel.as_deref(), Some("other"));
}

#[tokio::test]
async fn bad_channel_names_are_refused_with_400() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut c, _) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    for name in ["has space", "room:1", "", &"x".repeat(201)] {
        let e = c.subscribe(name, None, None).await;
        assert_eq!(e.event, "pusher:subscription_error", "{name:?}");
        assert_eq!(e.json()["status"], 400);
        assert_eq!(e.json()["type"], "InvalidChannel");
    }
}

#[tokio::test]
async fn private_channels_need_a_valid_signature_and_a_bad_one_gets_no_events() {
    let auth = TestAuthority::start().await;
    let mut settings = pusher_settings(PUSHER_SECRET);
    // Two secrets: a rotation in progress; either signs.
    settings.secrets.push(bus::PusherSecret { key_id: "key2".into(), secret: "second".into() });
    let (edge, bus, _apps) = pusher_edge(config(&auth), settings).await;
    let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let bad = [
        None,
        Some("nonsense".to_owned()),
        Some(format!("{PUSHER_APP}:{}", "0".repeat(64))),
        Some(pusher_auth("1.1", "private-a", None)),
        Some(pusher_auth(&socket, "private-b", None)),
        Some(format!("other-key{}", &pusher_auth(&socket, "private-a", None)[PUSHER_APP.len()..])),
    ];
    for auth in &bad {
        let e = c.subscribe("private-a", auth.as_deref(), None).await;
        assert_eq!(e.event, "pusher:subscription_error", "{auth:?}");
        assert_eq!((e.json()["status"].clone(), e.json()["type"].clone()), (json!(401), json!("AuthError")));
    }
    publish(&bus, "private-a", Some("secret"), "nope", "").await;
    let ok = c.subscribe("public-probe", None, None).await;
    assert!(succeeded(&ok));
    publish(&bus, "public-probe", Some("probe"), "1", "").await;
    assert_eq!(c.event().await.event, "probe", "nothing of private-a came first");

    let good = pusher_auth(&socket, "private-a", None);
    assert!(succeeded(&c.subscribe("private-a", Some(&good), None).await));
    let channel = herald_proto::pusher::PusherChannel::new("private-b").expect("channel");
    let second = herald_proto::pusher::sign_channel(PUSHER_APP, "second", &socket, &channel, None);
    assert!(succeeded(&c.subscribe("private-b", Some(&second), None).await));
    publish(&bus, "private-a", Some("secret"), "yes", "").await;
    assert_eq!(c.event().await.data, json!("yes"));
}

#[tokio::test]
async fn encrypted_channel_payloads_pass_through_untouched() {
    let auth = TestAuthority::start().await;
    let (edge, bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let channel = "private-encrypted-vault";
    assert_eq!(c.subscribe(channel, None, None).await.json()["status"], 401);
    assert!(succeeded(&c.subscribe(channel, Some(&pusher_auth(&socket, channel, None)), None).await));
    let payload = r#"{"nonce":"bm9uY2U=","ciphertext":"Y2lwaGVy+/=="}"#;
    publish(&bus, channel, Some("secret"), payload, "").await;
    assert_eq!(c.event().await.data, json!(payload));
}

#[tokio::test]
async fn presence_subscriptions_list_the_members_and_need_channel_data() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut a, sa) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (mut b, sb) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let room = "presence-room";
    let first = join(&mut a, &sa, room, "alice").await;
    assert!(succeeded(&first), "{first:?}");
    assert!(first.data.is_string());
    assert_eq!(first.json(), json!({"presence": {"ids": ["alice"], "hash": {"alice": {"name": "ALICE"}}, "count": 1}}));
    let second = join(&mut b, &sb, room, "bob").await;
    let presence = &second.json()["presence"];
    assert_eq!(presence["count"], 2);
    assert_eq!(presence["hash"]["alice"], json!({"name": "ALICE"}));
    assert_eq!(presence["hash"]["bob"], json!({"name": "BOB"}));
    let added = a.event_named("pusher_internal:member_added").await;
    assert_eq!(added.channel.as_deref(), Some(room));
    assert_eq!(added.json(), json!({"user_id": "bob", "user_info": {"name": "BOB"}}));

    // Without channel_data, or with a numeric user id signed as sent.
    let (mut c, sc) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let e = c.subscribe(room, Some(&pusher_auth(&sc, room, Some("{}"))), None).await;
    assert_eq!(e.event, "pusher:subscription_error");
    let numeric = r#"{"user_id":42}"#;
    let e = c.subscribe(room, Some(&pusher_auth(&sc, room, Some(numeric))), Some(numeric)).await;
    assert!(succeeded(&e), "{e:?}");
    assert!(e.json()["presence"]["ids"].as_array().expect("ids").contains(&json!("42")));
    // channel_data other than what was signed.
    let (mut d, sd) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let signed = presence_data("dave");
    let e = d.subscribe(room, Some(&pusher_auth(&sd, room, Some(&signed))), Some(&presence_data("root"))).await;
    assert_eq!(e.json()["status"], 401);
}

#[tokio::test]
async fn presence_is_per_user_a_second_tab_adds_nothing_and_the_last_one_leaving_removes() {
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let room = "presence-tabs";
    let (mut watcher, sw) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    assert!(succeeded(&join(&mut watcher, &sw, room, "watcher").await));
    let (mut tab1, s1) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let (mut tab2, s2) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    assert!(succeeded(&join(&mut tab1, &s1, room, "ann").await));
    let added = watcher.event_named("pusher_internal:member_added").await;
    assert_eq!(added.json()["user_id"], "ann");
    let second_tab = join(&mut tab2, &s2, room, "ann").await;
    assert_eq!(second_tab.json()["presence"]["count"], 2, "watcher and ann");
    // A marker: the next member event the watcher sees is the marker's.
    let (mut marker, sm) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    assert!(succeeded(&join(&mut marker, &sm, room, "marker").await));
    assert_eq!(watcher.event_named("pusher_internal:member_added").await.json()["user_id"], "marker");
    // One tab leaves: ann is still there.
    tab1.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": room}})).await;
    marker.send(&json!({"event": "pusher:unsubscribe", "data": {"channel": room}})).await;
    let removed = watcher.event_named("pusher_internal:member_removed").await;
    assert_eq!(removed.json(), json!({"user_id": "marker"}));
    // The last tab closes: ann leaves.
    drop(tab2);
    let removed = watcher.event_named("pusher_internal:member_removed").await;
    assert_eq!(removed.json(), json!({"user_id": "ann"}));
}

#[tokio::test]
async fn presence_members_are_capped_per_app_but_members_tabs_get_in() {
    let auth = TestAuthority::start().await;
    let settings = bus::PusherApp { presence_max_members: 2, ..pusher_settings(PUSHER_SECRET) };
    let (edge, _bus, _apps) = pusher_edge(config(&auth), settings).await;
    let room = "presence-small";
    let mut clients = Vec::new();
    for user in ["u1", "u2"] {
        let (mut c, s) = PusherClient::connect(edge.addr, PUSHER_APP).await;
        assert!(succeeded(&join(&mut c, &s, room, user).await));
        clients.push(c);
    }
    let (mut third, s3) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let e = join(&mut third, &s3, room, "u3").await;
    assert_eq!(e.event, "pusher:subscription_error");
    assert_eq!((e.json()["status"].clone(), e.json()["type"].clone()), (json!(403), json!("LimitReached")));
    let (mut tab, st) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    assert!(succeeded(&join(&mut tab, &st, room, "u1").await));
}

/// Two edges on one in-process bus, serving the same apps.
async fn two_edges(auth: &TestAuthority) -> (TestEdge, TestEdge, Bus) {
    let bus = LocalBus::new();
    let apps = TestApps::with(PUSHER_APP, pusher_settings(PUSHER_SECRET));
    let other = Bus::local(&bus);
    other.serve_namespaces(Arc::clone(&apps) as _).await.expect("serve");
    let a = TestEdge::start(config(auth), Bus::local(&bus)).await;
    let b = TestEdge::start(config(auth), Bus::local(&bus)).await;
    (a, b, other)
}

#[tokio::test]
async fn presence_per_user_holds_across_edges() {
    let auth = TestAuthority::start().await;
    let (edge_a, edge_b, bus) = two_edges(&auth).await;
    let room = "presence-wide";
    let (mut watcher, sw) = PusherClient::connect(edge_b.addr, PUSHER_APP).await;
    assert!(succeeded(&join(&mut watcher, &sw, room, "watcher").await));
    let (mut tab_a, sa) = PusherClient::connect(edge_a.addr, PUSHER_APP).await;
    let joined = join(&mut tab_a, &sa, room, "zoe").await;
    assert!(succeeded(&joined));
    // Edge A follows the channel from now on: the watcher (on edge B) is in
    // zoe's list, or comes as member_added once edge B's snapshot arrives.
    if joined.json()["presence"]["hash"].get("watcher").is_none() {
        let added = tab_a.event_named("pusher_internal:member_added").await;
        assert_eq!(added.json()["user_id"], "watcher");
    }
    assert_eq!(watcher.event_named("pusher_internal:member_added").await.json()["user_id"], "zoe");
    // Zoe's second tab, on the other edge, sees both members and adds none.
    let (mut tab_b, sb) = PusherClient::connect(edge_b.addr, PUSHER_APP).await;
    let second = join(&mut tab_b, &sb, room, "zoe").await;
    let ids = second.json()["presence"]["ids"].clone();
    assert!(ids.as_array().is_some_and(|ids| ids.contains(&json!("watcher")) && ids.contains(&json!("zoe"))), "{ids}");
    // The socket ids of the two edges differ in their edge number.
    assert_ne!(sa.split_once('.').map(|p| p.0), sb.split_once('.').map(|p| p.0));
    drop(tab_a);
    // Marker on edge A: the watcher's next member event is the marker's.
    let (mut marker, sm) = PusherClient::connect(edge_a.addr, PUSHER_APP).await;
    assert!(succeeded(&join(&mut marker, &sm, room, "marker").await));
    assert_eq!(watcher.event_named("pusher_internal:member_added").await.json()["user_id"], "marker");
    drop(tab_b);
    assert_eq!(watcher.event_named("pusher_internal:member_removed").await.json()["user_id"], "zoe");
    // A message published on the bus reaches subscribers on both edges.
    publish(&bus, room, Some("hello"), "all", "").await;
    assert_eq!(watcher.event_named("hello").await.data, json!("all"));
    assert_eq!(marker.event_named("hello").await.data, json!("all"));
}

#[tokio::test]
async fn herald_and_pusher_subscribers_of_a_channel_get_the_same_messages_in_the_same_order() {
    let auth = TestAuthority::start().await;
    let (edge, bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut native, connected) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "native", ALL)).await;
    let (mut p, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    assert!(herald_edge::testing::is_ok(&native.subscribe("shared-room").await));
    assert!(succeeded(&p.subscribe("shared-room", None, None).await));
    let n = 200;
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..n {
                publish(&bus, "shared-room", Some("tick"), &i.to_string(), "").await;
            }
        })
    };
    // Herald clients publish into the same stream.
    assert!(herald_edge::testing::is_ok(&native.publish("shared-room", b"from-native").await));
    publisher.await.expect("publisher");
    let mut native_got = Vec::new();
    let mut pusher_got = Vec::new();
    for _ in 0..=n {
        let m = native.message().await;
        native_got.push(String::from_utf8_lossy(&m.data).into_owned());
        pusher_got.push(p.event().await.data.as_str().expect("string data").to_owned());
    }
    assert_eq!(native_got, pusher_got);
    // Exclusion: each protocol's connection id leaves that one out.
    publish(&bus, "shared-room", Some("tick"), "not-for-pusher", &socket).await;
    publish(&bus, "shared-room", Some("tick"), "not-for-native", &connected.connection_id).await;
    publish(&bus, "shared-room", Some("tick"), "for-both", "").await;
    assert_eq!(String::from_utf8_lossy(&native.message().await.data), "not-for-pusher");
    assert_eq!(String::from_utf8_lossy(&native.message().await.data), "for-both");
    assert_eq!(p.event().await.data, json!("not-for-native"));
    assert_eq!(p.event().await.data, json!("for-both"));
    // Herald's connection ids take the same form as socket ids.
    assert!(
        connected
            .connection_id
            .split_once('.')
            .is_some_and(|(a, b)| { a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()) })
    );
    let _ = Duration::ZERO;
}

#[tokio::test]
async fn cache_channels_give_a_new_subscriber_the_last_event_or_a_cache_miss() {
    let auth = TestAuthority::start().await;
    let (edge, bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    publish(&bus, "cache-prices", Some("tick"), "1", "").await;
    publish(&bus, "cache-prices", Some("tick"), "2", "").await;
    let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    assert!(succeeded(&c.subscribe("cache-prices", None, None).await));
    let kept = c.event().await;
    assert_eq!(
        (kept.event.as_str(), kept.channel.as_deref(), kept.data.clone()),
        ("tick", Some("cache-prices"), json!("2"))
    );
    // Then live events, as on any channel.
    publish(&bus, "cache-prices", Some("tick"), "3", "").await;
    assert_eq!(c.event().await.data, json!("3"));
    // Nothing kept yet: a cache miss, for private cache channels too.
    assert!(succeeded(&c.subscribe("cache-empty", None, None).await));
    let miss = c.event().await;
    assert_eq!((miss.event.as_str(), miss.channel.as_deref()), ("pusher:cache_miss", Some("cache-empty")));
    let private = "private-cache-orders";
    assert!(succeeded(&c.subscribe(private, Some(&pusher_auth(&socket, private, None)), None).await));
    assert_eq!(c.event().await.event, "pusher:cache_miss");
}

#[tokio::test]
async fn private_channels_check_channel_data_when_it_is_sent() {
    // Pusher's server libraries sign channel_data for private channels too
    // when the auth endpoint passes one, and pusher-js sends it along.
    let auth = TestAuthority::start().await;
    let (edge, _bus, _apps) = pusher_edge(config(&auth), pusher_settings(PUSHER_SECRET)).await;
    let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let data = presence_data("alice");
    let signed = pusher_auth(&socket, "private-a", Some(&data));
    assert!(succeeded(&c.subscribe("private-a", Some(&signed), Some(&data)).await));
    // Signed without it, sent with it (or the other way round): refused.
    let unsigned = pusher_auth(&socket, "private-b", None);
    let refused = c.subscribe("private-b", Some(&unsigned), Some(&data)).await;
    assert_eq!(refused.event, "pusher:subscription_error", "{refused:?}");
    let refused = c.subscribe("private-c", Some(&pusher_auth(&socket, "private-c", Some(&data))), None).await;
    assert_eq!(refused.event, "pusher:subscription_error", "{refused:?}");
}
