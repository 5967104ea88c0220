//! Namespaces, history and presence through the REST and gRPC APIs: with
//! the in-process bus for speed, and over real NATS/JetStream and
//! PostgreSQL where the real thing matters.

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use common::{
    ADMIN, Http, Server, TestDb, app_with_key, authed, entry, join, local_server, ns_url, publish_url, put_ns,
};
use futures_util::StreamExt as _;
use herald_proto::api::channel_service_client::ChannelServiceClient;
use herald_proto::api::namespace_service_client::NamespaceServiceClient;
use herald_proto::api::presence_service_client::PresenceServiceClient;
use herald_proto::api::publish_service_client::PublishServiceClient;
use herald_proto::api::{self as pb};
use herald_proto::units::ByteSize;
use herald_proto::{AppId, ChannelName, bus};
use prost::Message as _;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test]
async fn namespaces_are_stored_validated_and_served_on_both_databases() -> Result<()> {
    for db in TestDb::both().await? {
        let (server, edge) = local_server(db, |c| c.max_namespaces_per_app = 3).await?;
        let http = Http::default();
        let (app, _, key) = app_with_key(&http, &server, None).await?;
        let (other_app, _, other_key) = app_with_key(&http, &server, None).await?;

        let body = json!({"presence": true, "join_leave": true, "history_size": 100, "history_ttl": "1h"});
        let r = put_ns(&http, &server, &app, "chat", body.clone()).await?;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        assert_eq!(
            (&j["name"], &j["presence"], &j["join_leave"], &j["client_publish"]),
            (&json!("chat"), &json!(true), &json!(true), &json!(true))
        );
        assert_eq!(
            (&j["history_size"], &j["history_ttl"], &j["history_ttl_ms"]),
            (&json!(100), &json!("1h"), &json!(3_600_000))
        );
        // Idempotent replace.
        let r = put_ns(&http, &server, &app, "chat", body).await?;
        assert_eq!(r.status, 200);
        let r = put_ns(&http, &server, &app, "feed", json!({"client_publish": false})).await?;
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["client_publish"], json!(false));
        assert_eq!(r.json()["history_ttl"], json!("0s"));

        // Reads: admin and the app's own key.
        let r = http.get(&server.url(&format!("/v1/apps/{app}/namespaces")), Some(&key)).await?;
        assert_eq!(r.status, 200);
        let list = r.json();
        let names: Vec<&str> =
            list["namespaces"].as_array().context("list")?.iter().filter_map(|n| n["name"].as_str()).collect();
        assert_eq!(names, vec!["chat", "feed"]);
        let r = http.get(&ns_url(&server, &app, "chat"), Some(ADMIN)).await?;
        assert_eq!((r.status, r.json()["presence"].clone()), (200, json!(true)));
        assert_eq!(http.get(&ns_url(&server, &app, "chat"), Some(&other_key)).await?.code(), "forbidden");
        assert_eq!(http.get(&ns_url(&server, &app, "nope"), Some(ADMIN)).await?.status, 404);
        assert_eq!(http.get(&server.url("/v1/apps/nosuchapp/namespaces"), Some(ADMIN)).await?.status, 404);

        // Edges get the app's namespaces from the control plane.
        let got = edge.fetch_namespaces(&AppId::new(&app)?).await?.context("app exists")?;
        let mut got: Vec<(String, bool)> =
            got.iter().map(|n| (n.name.clone(), n.options.is_some_and(|o| o.presence))).collect();
        got.sort();
        assert_eq!(got, vec![("chat".to_owned(), true), ("feed".to_owned(), false)]);
        assert!(edge.fetch_namespaces(&AppId::new("nosuchapp")?).await?.is_none());
        assert_eq!(edge.fetch_namespaces(&AppId::new(&other_app)?).await?, Some(vec![]));

        // Validation, each naming what is wrong.
        let bad: &[(&str, Value, &str, &str)] = &[
            ("chat", json!({"join_leave": true}), "bad_request", "join_leave"),
            ("chat", json!({"history_size": 10}), "bad_request", "history_ttl"),
            ("chat", json!({"history_ttl": "1h"}), "bad_request", "history_size"),
            ("chat", json!({"history_size": 10_001, "history_ttl": "1h"}), "bad_request", "max_history_size"),
            ("chat", json!({"history_size": 10, "history_ttl": "169h"}), "bad_request", "max_history_ttl"),
            ("chat", json!({"history_size": 10, "history_ttl": "30d"}), "bad_request", "history_ttl"),
            ("chat", json!({"history_size": 10, "history_ttl": 60}), "bad_request", "history_ttl"),
            ("chat", json!({"history_size": 10, "history_ttl": "10ms"}), "bad_request", "history_ttl"),
            ("chat", json!({"presense": true}), "bad_request", "presense"),
            ("chat", json!({"presence": "yes"}), "bad_request", "presence"),
            ("a.b", json!({}), "bad_request", "namespace"),
            ("a*", json!({}), "bad_request", "namespace"),
        ];
        for (name, body, code, needle) in bad {
            let r = put_ns(&http, &server, &app, name, body.clone()).await?;
            assert_eq!(r.code(), *code, "{name} {body}: {}", String::from_utf8_lossy(&r.body));
            assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains(needle), "{body}: {}", r.json());
        }
        let r = http.json("PUT", &ns_url(&server, &app, "x"), Some(&key), json!({})).await?;
        assert_eq!(r.code(), "forbidden", "keys cannot change namespaces");
        assert_eq!(put_ns(&http, &server, "nosuchapp", "x", json!({})).await?.status, 404);
        assert_eq!(put_ns(&http, &server, &app, "third", json!({})).await?.status, 201);
        let r = put_ns(&http, &server, &app, "fourth", json!({})).await?;
        assert_eq!(r.code(), "limit_exceeded", "max_namespaces_per_app");
        // Replacing an existing one is not a new one.
        assert_eq!(put_ns(&http, &server, &app, "third", json!({"presence": true})).await?.status, 200);

        // Delete.
        let r = http.send("DELETE", &ns_url(&server, &app, "feed"), Some(&key), None).await?;
        assert_eq!(r.code(), "forbidden");
        let r = http.send("DELETE", &ns_url(&server, &app, "feed"), Some(ADMIN), None).await?;
        assert_eq!(r.status, 204);
        let r = http.send("DELETE", &ns_url(&server, &app, "feed"), Some(ADMIN), None).await?;
        assert_eq!(r.status, 404);
        assert_eq!(put_ns(&http, &server, &app, "fourth", json!({})).await?.status, 201, "room again");

        // Deleting the app takes its namespaces.
        assert_eq!(http.send("DELETE", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), None).await?.status, 204);
        assert!(edge.fetch_namespaces(&AppId::new(&app)?).await?.is_none());
        server.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn namespace_changes_reach_nats_and_edges_fetch_them_over_nats() -> Result<()> {
    let server = Server::start(TestDb::postgres().await?, |_| {}).await?;
    let http = Http::default();
    let (app, _, _) = app_with_key(&http, &server, None).await?;
    let mut control = common::subscribe_ready(server.subjects.control()).await?;
    assert_eq!(put_ns(&http, &server, &app, "room", json!({"presence": true})).await?.status, 201);
    let event = loop {
        let m = tokio::time::timeout(Duration::from_secs(3), control.next()).await?.context("ended")?;
        if let Ok(e) = bus::ControlEvent::decode(m.payload)
            && matches!(e.kind, Some(bus::control_event::Kind::NamespacesChanged(_)))
        {
            break e;
        }
    };
    let Some(bus::control_event::Kind::NamespacesChanged(changed)) = event.kind else { unreachable!() };
    assert_eq!(changed.app_id, app);

    let edge = common::nats_backplane_at(common::NATS_URL, server.subjects.clone()).await?;
    let got = edge.fetch_namespaces(&AppId::new(&app)?).await?.context("app exists")?;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].name, "room");
    assert!(got[0].options.is_some_and(|o| o.presence && o.client_publish && o.history_size == 0));
    assert!(edge.fetch_namespaces(&AppId::new("nosuchapp")?).await?.is_none());
    server.stop().await;
    Ok(())
}

fn messages(history: &Value) -> Vec<(u64, Value)> {
    history["messages"]
        .as_array()
        .map(|ms| ms.iter().map(|m| (m["seq"].as_u64().unwrap_or(0), m["data"].clone())).collect())
        .unwrap_or_default()
}

/// Publishes through REST; returns the answer.
async fn publish(http: &Http, server: &Server, app: &str, key: &str, channel: &str, data: Value) -> Result<Value> {
    let r = http.json("POST", &publish_url(server, app, channel), Some(key), json!({"data": data})).await?;
    anyhow::ensure!(r.status == 202, "publish: {} {}", r.status, String::from_utf8_lossy(&r.body));
    Ok(r.json())
}

async fn history_flow(server: &Server) -> Result<()> {
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, server, None).await?;
    let r = put_ns(&http, server, &app, "hist", json!({"history_size": 3, "history_ttl": "1h"})).await?;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    let mut positions = Vec::new();
    for i in 1..=5 {
        let a = publish(&http, server, &app, &key, "hist:a", json!({"n": i})).await?;
        let seq = a["position"]["seq"].as_u64().context("position")?;
        assert_eq!(a["seq"].as_u64(), Some(seq));
        positions.push((seq, a["position"]["epoch"].as_str().context("epoch")?.to_owned()));
    }
    assert!(positions.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 == w[1].1), "{positions:?}");
    let epoch = positions[0].1.clone();
    // Other data shapes come back the way they were published.
    publish(&http, server, &app, &key, "hist:b", json!("plain text")).await?;
    let r = http
        .json(
            "POST",
            &publish_url(server, &app, "hist:b"),
            Some(&key),
            json!({"data": "AP8=", "encoding": "base64", "name": "bin"}),
        )
        .await?;
    assert_eq!(r.status, 202);
    // A channel of another namespace: no position.
    let a = publish(&http, server, &app, &key, "plain:x", json!(1)).await?;
    assert!(a.get("position").is_none() && a.get("seq").is_none(), "{a}");
    // A message to several channels: a position per channel with history.
    let r = http
        .json(
            "POST",
            &server.url(&format!("/v1/apps/{app}/messages")),
            Some(&key),
            json!({"messages": [{"channels": ["hist:a", "hist:c", "plain:y"], "data": "multi"}]}),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let positions_multi = r.json()["results"][0]["positions"].as_array().cloned().context("positions")?;
    let chans: Vec<&str> = positions_multi.iter().filter_map(|p| p["channel"].as_str()).collect();
    assert_eq!(chans, vec!["hist:a", "hist:c"]);
    assert_ne!(positions_multi[0]["seq"], positions_multi[1]["seq"], "one message per channel in the stream");
    let c = http.get(&server.url(&format!("/v1/apps/{app}/channels/hist:c/history")), Some(&key)).await?.json();
    assert_eq!(messages(&c).into_iter().map(|m| m.1).collect::<Vec<_>>(), vec![json!("multi")], "{c}");

    let url = |q: &str| server.url(&format!("/v1/apps/{app}/channels/hist:a/history{q}"));
    // Since 0: the three newest, and messages were lost before them.
    let h = http.get(&url(""), Some(&key)).await?;
    assert_eq!(h.status, 200, "{}", String::from_utf8_lossy(&h.body));
    let h = h.json();
    assert_eq!(h["epoch"], json!(epoch));
    let got = messages(&h);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0], (positions[3].0, json!({"n": 4})));
    assert_eq!(got[1], (positions[4].0, json!({"n": 5})));
    assert_eq!(got[2].1, json!("multi"));
    assert_eq!(h["complete"], json!(false));
    assert_eq!(h["last_seq"].as_u64(), Some(got[2].0));
    // From a position still held: complete, only what came after.
    let h = http.get(&url(&format!("?since={}", positions[3].0)), Some(&key)).await?.json();
    assert_eq!(messages(&h).len(), 2);
    assert_eq!(h["complete"], json!(true));
    let h = http.get(&url(&format!("?since={}&limit=1", positions[3].0)), Some(&key)).await?.json();
    assert_eq!(messages(&h), vec![(positions[4].0, json!({"n": 5}))]);
    // From a position that fell out: not complete.
    let h = http.get(&url(&format!("?since={}", positions[0].0)), Some(&key)).await?.json();
    assert_eq!(h["complete"], json!(false));
    // Another epoch: `since` means nothing; everything held, not complete.
    let h = http.get(&url(&format!("?since={}&epoch=other", positions[4].0)), Some(&key)).await?.json();
    assert_eq!((messages(&h).len(), h["complete"].clone()), (3, json!(false)));
    let h = http.get(&url(&format!("?since={}&epoch={epoch}", positions[4].0)), Some(&key)).await?.json();
    assert_eq!((messages(&h).len(), h["complete"].clone()), (1, json!(true)));

    let b = http.get(&server.url(&format!("/v1/apps/{app}/channels/hist:b/history")), Some(&key)).await?.json();
    let ms = b["messages"].as_array().context("messages")?;
    assert_eq!(ms[0]["data"], json!("plain text"));
    assert!(ms[0].get("encoding").is_none());
    assert_eq!((&ms[1]["data"], &ms[1]["encoding"], &ms[1]["name"]), (&json!("AP8="), &json!("base64"), &json!("bin")));

    // A namespace's TTL: messages older than it leave the history, and a
    // position among them is no longer complete.
    let r = put_ns(&http, server, &app, "brief", json!({"history_size": 100, "history_ttl": "1s"})).await?;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let first = publish(&http, server, &app, &key, "brief:x", json!(1)).await?["seq"].as_u64().context("seq")?;
    publish(&http, server, &app, &key, "brief:x", json!(2)).await?;
    let brief = server.url(&format!("/v1/apps/{app}/channels/brief:x/history"));
    assert_eq!(messages(&http.get(&brief, Some(&key)).await?.json()).len(), 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let h = http.get(&format!("{brief}?since={first}"), Some(&key)).await?.json();
        if messages(&h).is_empty() && h["complete"] == json!(false) {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "never expired: {h}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(messages(&http.get(&brief, Some(&key)).await?.json()).is_empty());

    // Bad requests.
    for (q, code) in [
        ("?limit=0", "bad_request"),
        ("?limit=100000", "bad_request"),
        ("?since=-1", "bad_request"),
        ("?x=1", "bad_request"),
    ] {
        assert_eq!(http.get(&url(q), Some(&key)).await?.code(), code, "{q}");
    }
    for channel in ["plain:x", "nonamespace", "nosuch:x"] {
        let r = http.get(&server.url(&format!("/v1/apps/{app}/channels/{channel}/history")), Some(&key)).await?;
        assert_eq!(r.code(), "not_enabled", "{channel}");
        assert!(r.json()["error"]["message"].as_str().unwrap_or("").contains("history"));
    }
    let r = http.get(&server.url(&format!("/v1/apps/{app}/channels/a%20b/history")), Some(&key)).await?;
    assert_eq!(r.code(), "invalid_channel");
    // A key without the `history` capability.
    let r = http
        .json(
            "POST",
            &server.url(&format!("/v1/apps/{app}/keys")),
            Some(ADMIN),
            json!({"name": "p", "capabilities": {"*": ["publish"]}}),
        )
        .await?;
    let narrow = r.json()["key"].as_str().context("key")?.to_owned();
    assert_eq!(http.get(&url(""), Some(&narrow)).await?.code(), "forbidden");

    // Turning history off drops it.
    assert_eq!(put_ns(&http, server, &app, "hist", json!({})).await?.status, 200);
    assert_eq!(http.get(&url(""), Some(&key)).await?.code(), "not_enabled");
    let a = publish(&http, server, &app, &key, "hist:a", json!(1)).await?;
    assert!(a.get("position").is_none());
    // On again: a fresh stream.
    assert_eq!(put_ns(&http, server, &app, "hist", json!({"history_size": 3, "history_ttl": "1h"})).await?.status, 200);
    let h = http.get(&url(""), Some(&key)).await?.json();
    assert_eq!(messages(&h).len(), 0);
    Ok(())
}

#[tokio::test]
async fn history_on_the_in_process_bus() -> Result<()> {
    let (server, _edge) = local_server(TestDb::sqlite(), |_| {}).await?;
    history_flow(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn history_over_jetstream() -> Result<()> {
    let server = Server::start(TestDb::postgres().await?, |_| {}).await?;
    history_flow(&server).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn history_streams_come_back_when_the_control_plane_restarts() -> Result<()> {
    // Kept until the end: each server gets a handle that does not drop it.
    let db = TestDb::postgres().await?;
    let url = db.url.clone();
    let subjects = common::subjects();
    let server = Server::start_with(
        TestDb::shared(&url),
        common::nats_backplane_at(common::NATS_URL, subjects.clone()).await?,
        subjects.clone(),
        |_| {},
    )
    .await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    assert_eq!(put_ns(&http, &server, &app, "h", json!({"history_size": 10, "history_ttl": "10m"})).await?.status, 201);
    // The stream is lost (as when NATS lost its data).
    let probe = common::nats_backplane_at(common::NATS_URL, subjects.clone()).await?;
    probe.drop_history(&AppId::new(&app)?, &herald_proto::NamespaceName::new("h")?).await?;
    let gone = probe.read_history(&AppId::new(&app)?, &ChannelName::new("h:x")?, 0, 10).await;
    assert!(matches!(gone, Err(herald_bus::BusError::NoHistory(_))), "{gone:?}");
    server.stop().await;
    let server = Server::start_with(
        TestDb::shared(&url),
        common::nats_backplane_at(common::NATS_URL, subjects.clone()).await?,
        subjects,
        |_| {},
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = http.json("POST", &publish_url(&server, &app, "h:x"), Some(&key), json!({"data": 1})).await?;
        if r.status == 202 {
            assert!(r.json()["position"]["seq"].as_u64().is_some());
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "stream not re-created: {}", r.json());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_publish_creates_a_lost_history_stream_again() -> Result<()> {
    let subjects = common::subjects();
    let server = Server::start_with(
        TestDb::postgres().await?,
        common::nats_backplane_at(common::NATS_URL, subjects.clone()).await?,
        subjects.clone(),
        |c| c.history_stream_max_size = ByteSize::mib(1),
    )
    .await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    assert_eq!(put_ns(&http, &server, &app, "h", json!({"history_size": 10, "history_ttl": "10m"})).await?.status, 201);
    let before = publish(&http, &server, &app, &key, "h:x", json!(1)).await?;
    // The stream is deleted behind Herald's back.
    let probe = common::nats_backplane_at(common::NATS_URL, subjects.clone()).await?;
    let (app_id, ns) = (AppId::new(&app)?, herald_proto::NamespaceName::new("h")?);
    probe.drop_history(&app_id, &ns).await?;
    // The next publish creates it again and is stored there.
    let after = publish(&http, &server, &app, &key, "h:x", json!(2)).await?;
    let epoch = after["position"]["epoch"].as_str().context("epoch")?;
    assert_ne!(Some(epoch), before["position"]["epoch"].as_str());
    let url = server.url(&format!("/v1/apps/{app}/channels/h:x/history"));
    let h = http.get(&url, Some(&key)).await?.json();
    assert_eq!(h["epoch"].as_str(), Some(epoch));
    let seq = after["position"]["seq"].as_u64().context("seq")?;
    assert_eq!(messages(&h), vec![(seq, json!(2))], "{h}");
    // With the bounds the control plane gives every stream.
    let js = async_nats::jetstream::new(async_nats::connect(common::NATS_URL).await?);
    let stream = js.get_stream(subjects.history_stream(&app_id, &ns)).await?;
    assert_eq!(stream.cached_info().config.max_bytes, 1 << 20);
    assert_eq!(stream.cached_info().config.max_messages_per_subject, 10);
    probe.drop_history(&app_id, &ns).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn namespaces_history_presence_and_channels_over_grpc() -> Result<()> {
    let server = Server::start(TestDb::postgres().await?, |_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let ch = Channel::from_shared(format!("http://{}", server.addr))?.connect().await?;
    let mut ns = NamespaceServiceClient::new(ch.clone());
    let mut publish = PublishServiceClient::new(ch.clone());
    let mut channels = ChannelServiceClient::new(ch.clone());
    let mut presence = PresenceServiceClient::new(ch);

    let options =
        pb::NamespaceOptions { presence: true, history_size: 5, history_ttl_ms: 60_000, ..Default::default() };
    let put = |name: &str, options: pb::NamespaceOptions| pb::PutNamespaceRequest {
        app_id: app.clone(),
        name: name.into(),
        options: Some(options),
    };
    let r = ns.put_namespace(authed(put("g", options), ADMIN)).await?.into_inner();
    assert!(r.created);
    let stored = r.namespace.context("namespace")?.options.context("options")?;
    assert_eq!(stored.client_publish, Some(true), "unset client_publish means true");
    assert!(!ns.put_namespace(authed(put("g", options), ADMIN)).await?.into_inner().created);
    let err = ns.put_namespace(authed(put("g", options), &key)).await.expect_err("key");
    assert_eq!(err.code(), Code::PermissionDenied);
    let bad = pb::NamespaceOptions { join_leave: true, ..Default::default() };
    let err = ns.put_namespace(authed(put("g", bad), ADMIN)).await.expect_err("join_leave");
    assert_eq!(err.code(), Code::InvalidArgument);
    let list = ns.list_namespaces(authed(pb::ListNamespacesRequest { app_id: app.clone() }, &key)).await?.into_inner();
    assert_eq!(list.namespaces.len(), 1);
    let one = ns.get_namespace(authed(pb::GetNamespaceRequest { app_id: app.clone(), name: "g".into() }, &key)).await?;
    assert_eq!(one.into_inner().options.map(|o| o.history_size), Some(5));

    let msg = |channel: &str, data: &'static [u8]| pb::PublishRequest {
        app_id: app.clone(),
        channel: channel.into(),
        data: Bytes::from_static(data),
        ..Default::default()
    };
    let first = publish.publish(authed(msg("g:1", b"one"), &key)).await?.into_inner();
    let pos = first.position.context("position")?;
    assert_eq!(first.seq, Some(pos.seq));
    let second = publish.publish(authed(msg("g:1", b"two"), &key)).await?.into_inner();
    assert_eq!(second.position.as_ref().map(|p| p.epoch.as_str()), Some(pos.epoch.as_str()));
    assert!(publish.publish(authed(msg("other", b"x"), &key)).await?.into_inner().position.is_none());

    let h = channels
        .get_history(authed(
            pb::GetHistoryRequest { app_id: app.clone(), channel: "g:1".into(), since: pos.seq, ..Default::default() },
            &key,
        ))
        .await?
        .into_inner();
    assert_eq!(h.epoch, pos.epoch);
    assert_eq!(h.messages.len(), 1);
    assert_eq!(&h.messages[0].data[..], b"two");
    assert!(h.complete);
    let err = channels
        .get_history(authed(
            pb::GetHistoryRequest { app_id: app.clone(), channel: "other".into(), ..Default::default() },
            &key,
        ))
        .await
        .expect_err("no history");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.metadata().get("herald-error-code").and_then(|v| v.to_str().ok()), Some("not_enabled"));

    let edge = common::nats_backplane_at(common::NATS_URL, server.subjects.clone()).await?;
    let app_id = AppId::new(&app)?;
    edge.publish_presence(&app_id, &ChannelName::new("g:1")?, &join("e", &app, entry("g:1", "c", "ada", "{}"))).await?;
    edge.publish_occupancy(
        &app_id,
        &bus::OccupancyReport {
            edge_id: "e".into(),
            app_id: app.clone(),
            channels: vec![bus::ChannelCount { channel: "g:1".into(), subscribers: 4 }],
            ..Default::default()
        },
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let p = presence
            .get_presence(authed(
                pb::GetPresenceRequest { app_id: app.clone(), channel: "g:1".into(), ..Default::default() },
                &key,
            ))
            .await?
            .into_inner();
        let c = channels
            .list_channels(authed(pb::ListChannelsRequest { app_id: app.clone(), prefix: "g:".into() }, &key))
            .await?
            .into_inner();
        if p.count == 1 && c.channels.len() == 1 {
            assert_eq!((p.members[0].client_id.as_str(), p.members[0].connections), ("ada", 1));
            assert_eq!((c.channels[0].name.as_str(), c.channels[0].subscribers), ("g:1", 4));
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "presence never arrived: {p:?} {c:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = presence
        .get_presence(authed(
            pb::GetPresenceRequest { app_id: app.clone(), channel: "other".into(), ..Default::default() },
            &key,
        ))
        .await
        .expect_err("no presence");
    assert_eq!(err.code(), Code::FailedPrecondition);

    ns.delete_namespace(authed(pb::DeleteNamespaceRequest { app_id: app.clone(), name: "g".into() }, ADMIN)).await?;
    let err = ns
        .get_namespace(authed(pb::GetNamespaceRequest { app_id: app.clone(), name: "g".into() }, ADMIN))
        .await
        .expect_err("deleted");
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
    Ok(())
}
