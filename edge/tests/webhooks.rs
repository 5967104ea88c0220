//! Webhook events seen on an edge reach the control plane's sink over the
//! bus: Pusher client events, Herald client publishes and cache misses,
//! with their fields, only when the app wants their kind, and again with
//! the same id when storing failed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{ALL, PUSHER_APP, PUSHER_SECRET, config, pusher_auth};
use futures_util::future::BoxFuture;
use herald_bus::{Bus, LocalBus, WebhookEventSink};
use herald_edge::testing::{
    PusherClient, RawClient, TestApps, TestAuthority, TestEdge, is_ok, pusher_settings, within,
};
use herald_proto::webhook::EventKind;
use herald_proto::{AppId, bus, client};
use serde_json::json;
use tokio::sync::watch;

const LIMIT: Duration = Duration::from_secs(10);

/// Stores what it is given; fails its first `failures` calls. Every call is
/// kept in `attempts`.
struct TestSink {
    attempts: Mutex<Vec<bus::WebhookEvent>>,
    stored: watch::Sender<Vec<(AppId, bus::WebhookEvent)>>,
    failures: usize,
}

impl TestSink {
    fn new(failures: usize) -> Arc<Self> {
        Arc::new(Self { attempts: Mutex::default(), stored: watch::Sender::new(Vec::new()), failures })
    }

    /// Waits until `n` events are stored; returns them.
    async fn wait_for(&self, n: usize) -> Vec<(AppId, bus::WebhookEvent)> {
        let mut stored = self.stored.subscribe();
        let what = format!("{n} stored webhook events");
        within(LIMIT, &what, stored.wait_for(|s| s.len() >= n)).await.expect("sink alive").clone()
    }
}

impl WebhookEventSink for TestSink {
    fn store(&self, app: AppId, event: bus::WebhookEvent) -> BoxFuture<'static, Result<(), String>> {
        let mut attempts = self.attempts.lock().expect("attempts");
        attempts.push(event.clone());
        let result = if attempts.len() <= self.failures {
            Err("database unavailable".to_owned())
        } else {
            self.stored.send_modify(|s| s.push((app, event)));
            Ok(())
        };
        Box::pin(async move { result })
    }
}

/// An edge on an in-process bus whose control plane stand-in serves
/// [`PUSHER_APP`] (and every other app) with `wanted` webhook kinds and
/// stores reported events in `sink`.
async fn edge(auth: &TestAuthority, wanted: &[EventKind], sink: Arc<TestSink>) -> (TestEdge, Bus) {
    let local = LocalBus::new();
    let apps = TestApps::with(PUSHER_APP, pusher_settings(PUSHER_SECRET));
    apps.set_webhook_events(PUSHER_APP, wanted);
    let control_plane = Bus::local(&local);
    control_plane.serve_namespaces(apps).await.expect("serve namespaces");
    control_plane.serve_webhook_events(sink).await.expect("serve webhook events");
    let edge = TestEdge::start(config(auth), Bus::local(&local)).await;
    (edge, control_plane)
}

fn client_event(channel: &str, event: &str, data: serde_json::Value) -> serde_json::Value {
    json!({"event": event, "channel": channel, "data": data})
}

fn assert_event_id(id: &str) {
    let rest = id.strip_prefix("ev_").unwrap_or_else(|| panic!("event id {id:?} starts with ev_"));
    assert_eq!(rest.len(), 20, "{id}");
    assert!(rest.bytes().all(|c| c.is_ascii_alphanumeric()), "{id}");
}

#[tokio::test]
async fn a_pusher_client_event_is_reported_with_its_fields() {
    let auth = TestAuthority::start().await;
    let sink = TestSink::new(0);
    let (edge, _cp) = edge(&auth, &[EventKind::ClientEvent], sink.clone()).await;
    let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let room = "private-chat";
    let answer = c.subscribe(room, Some(&pusher_auth(&socket, room, None)), None).await;
    assert_eq!(answer.event, "pusher_internal:subscription_succeeded", "{answer:?}");
    let before = herald_bus::now_ms();
    c.send(&client_event(room, "client-typing", json!({"who": "a"}))).await;
    let stored = sink.wait_for(1).await;
    let (app, e) = &stored[0];
    assert_eq!(app.as_str(), PUSHER_APP);
    assert_event_id(&e.id);
    assert_eq!(e.app_id, PUSHER_APP);
    assert_eq!(e.kind, "client_event");
    assert_eq!((e.channel.as_str(), e.event.as_str()), (room, "client-typing"));
    assert_eq!(&e.data[..], br#"{"who":"a"}"#, "data as the client sent it, as JSON text");
    assert_eq!(e.connection_id, socket);
    assert_eq!(e.user_id, "", "no user id outside presence channels");
    assert!(e.timestamp_ms >= before && e.timestamp_ms <= herald_bus::now_ms(), "{}", e.timestamp_ms);
}

#[tokio::test]
async fn a_pusher_client_event_on_a_presence_channel_carries_the_members_user_id() {
    let auth = TestAuthority::start().await;
    let sink = TestSink::new(0);
    let (edge, _cp) = edge(&auth, &[EventKind::ClientEvent], sink.clone()).await;
    let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let room = "presence-game";
    let data = json!({"user_id": "amy"}).to_string();
    let answer = c.subscribe(room, Some(&pusher_auth(&socket, room, Some(&data))), Some(&data)).await;
    assert_eq!(answer.event, "pusher_internal:subscription_succeeded", "{answer:?}");
    c.send(&client_event(room, "client-move", json!("north"))).await;
    let stored = sink.wait_for(1).await;
    let e = &stored[0].1;
    assert_eq!((e.channel.as_str(), e.event.as_str(), e.user_id.as_str()), (room, "client-move", "amy"));
    assert_eq!(&e.data[..], b"north", "a string as itself");
    assert_eq!(e.connection_id, socket);
}

#[tokio::test]
async fn a_herald_client_publish_is_reported_with_its_fields() {
    let auth = TestAuthority::start().await;
    let sink = TestSink::new(0);
    let (edge, _cp) = edge(&auth, &[EventKind::ClientEvent], sink.clone()).await;
    let (mut c, connected) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "user-7", ALL)).await;
    c.request(client::client_frame::Kind::Publish(client::Publish {
        channel: "chat:room".into(),
        data: Bytes::from_static(b"\x00binary\xff"),
        event: Some("note".into()),
        idempotency_id: None,
    }))
    .await;
    assert!(is_ok(&c.reply().await));
    assert!(is_ok(&c.publish("plain", b"hello").await));
    let stored = sink.wait_for(2).await;
    let e = &stored[0].1;
    assert_event_id(&e.id);
    assert_eq!((e.app_id.as_str(), e.kind.as_str()), (PUSHER_APP, "client_event"));
    assert_eq!((e.channel.as_str(), e.event.as_str()), ("chat:room", "note"));
    assert_eq!(&e.data[..], b"\x00binary\xff", "the payload's bytes");
    assert_eq!(e.connection_id, connected.connection_id);
    assert_eq!(e.user_id, "user-7", "the token's subject");
    let e = &stored[1].1;
    assert_eq!((e.channel.as_str(), e.event.as_str(), &e.data[..]), ("plain", "", &b"hello"[..]));
    assert_ne!(stored[0].1.id, stored[1].1.id);
}

/// With only cache misses wanted, client events of either protocol are not
/// reported; the cache miss that follows them is.
#[tokio::test]
async fn only_the_kinds_the_app_wants_are_reported() {
    let auth = TestAuthority::start().await;
    let sink = TestSink::new(0);
    let (edge, _cp) = edge(&auth, &[EventKind::CacheMiss], sink.clone()).await;
    let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let room = "private-chat";
    let answer = c.subscribe(room, Some(&pusher_auth(&socket, room, None)), None).await;
    assert_eq!(answer.event, "pusher_internal:subscription_succeeded", "{answer:?}");
    c.send(&client_event(room, "client-typing", json!({}))).await;
    let (mut native, _) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "n1", ALL)).await;
    assert!(is_ok(&native.publish("plain", b"x").await));
    // Sent after the client event on the same connection: handled after it.
    let answer = c.subscribe("cache-prices", None, None).await;
    assert_eq!(answer.event, "pusher_internal:subscription_succeeded", "{answer:?}");
    let miss = c.event_named("pusher:cache_miss").await;
    assert_eq!(miss.channel.as_deref(), Some("cache-prices"));
    let stored = sink.wait_for(1).await;
    let e = &stored[0].1;
    assert_eq!((e.kind.as_str(), e.channel.as_str()), ("cache_miss", "cache-prices"));
    assert_eq!((e.event.as_str(), &e.data[..]), ("", &b""[..]));
    assert_eq!(e.connection_id, socket);
    assert_event_id(&e.id);
    // The drain sends whatever was queued before the edge stops: after it,
    // the cache miss is all the sink ever saw.
    drop((c, native));
    within(LIMIT, "the drain", edge.shutdown()).await.expect("shutdown");
    let attempts = sink.attempts.lock().expect("attempts").clone();
    assert_eq!(attempts.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["cache_miss"], "{attempts:?}");
}

#[tokio::test]
async fn an_app_without_webhooks_reports_nothing() {
    let auth = TestAuthority::start().await;
    let sink = TestSink::new(0);
    let (edge, _cp) = edge(&auth, &[], sink.clone()).await;
    let (mut c, socket) = PusherClient::connect(edge.addr, PUSHER_APP).await;
    let room = "private-chat";
    let answer = c.subscribe(room, Some(&pusher_auth(&socket, room, None)), None).await;
    assert_eq!(answer.event, "pusher_internal:subscription_succeeded", "{answer:?}");
    c.send(&client_event(room, "client-typing", json!({}))).await;
    let answer = c.subscribe("cache-empty", None, None).await;
    assert_eq!(answer.event, "pusher_internal:subscription_succeeded", "{answer:?}");
    c.event_named("pusher:cache_miss").await;
    let (mut native, _) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "n1", ALL)).await;
    assert!(is_ok(&native.publish("plain", b"x").await));
    // The edge's drain sends whatever it queued before its bus closes:
    // after it, nothing may have reached the sink.
    drop((c, native));
    within(LIMIT, "the drain", edge.shutdown()).await.expect("shutdown");
    assert!(sink.attempts.lock().expect("attempts").is_empty());
}

#[tokio::test]
async fn a_failed_report_is_sent_again_with_the_same_id() {
    let auth = TestAuthority::start().await;
    let sink = TestSink::new(2);
    let (edge, _cp) = edge(&auth, &[EventKind::ClientEvent], sink.clone()).await;
    let (mut native, _) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "n1", ALL)).await;
    assert!(is_ok(&native.publish("plain", b"x").await), "the client's path never waits for the report");
    let stored = sink.wait_for(1).await;
    let attempts: Vec<String> = sink.attempts.lock().expect("attempts").iter().map(|e| e.id.clone()).collect();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts.iter().all(|id| *id == stored[0].1.id), "{attempts:?}");
}

/// On shutdown, what was queued is reported before the bus closes.
#[tokio::test]
async fn the_drain_reports_what_was_queued() {
    let auth = TestAuthority::start().await;
    let sink = TestSink::new(1);
    let (edge, _cp) = edge(&auth, &[EventKind::ClientEvent], sink.clone()).await;
    let (mut native, _) = RawClient::connect(edge.addr, &auth.token(PUSHER_APP, "n1", ALL)).await;
    assert!(is_ok(&native.publish("plain", b"x").await));
    drop(native);
    within(LIMIT, "the drain", edge.shutdown()).await.expect("shutdown");
    assert_eq!(sink.stored.borrow().len(), 1, "stored (on the second attempt) before the edge stopped");
}

/// Over NATS, as in a cluster: the edge's report crosses the bus to the
/// control plane's sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_nats_a_client_publish_reaches_the_control_planes_sink() {
    use herald_edge::testing::{nats_bus, nats_url, serve_source, unique_subjects};
    let auth = TestAuthority::start().await;
    let subjects = unique_subjects();
    let apps = Arc::new(TestApps::default());
    apps.set_webhook_events("app1", &[EventKind::ClientEvent]);
    let sink = TestSink::new(0);
    let control_plane = serve_source(&nats_url(), subjects.clone(), apps).await;
    control_plane.serve_webhook_events(sink.clone()).await.expect("serve webhook events");
    let edge = TestEdge::start(config(&auth), nats_bus(&nats_url(), subjects).await).await;
    let (mut c, connected) = RawClient::connect(edge.addr, &auth.token("app1", "bob", ALL)).await;
    assert!(is_ok(&c.publish("chat:lobby", b"hi").await));
    let stored = sink.wait_for(1).await;
    let (app, e) = &stored[0];
    assert_eq!((app.as_str(), e.channel.as_str(), &e.data[..]), ("app1", "chat:lobby", &b"hi"[..]));
    assert_eq!((e.connection_id.as_str(), e.user_id.as_str()), (connected.connection_id.as_str(), "bob"));
}
