//! Pusher settings of apps and Pusher secrets of API keys, over REST and
//! gRPC, and what edges get of them with an app's configuration: the
//! settings when Pusher mode is on, and the secrets of the app's active
//! Pusher keys only.

mod common;

use anyhow::{Context as _, Result};
use common::{ADMIN, Http, Server, TestDb, authed, pg_local_server, pusher_key};
use herald_bus::Bus;
use herald_proto::AppId;
use herald_proto::api::admin_service_client::AdminServiceClient;
use herald_proto::api::{self as pb};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const DEFAULTS: &str = r#"{"enabled": false, "client_events": false, "presence_max_members": 0,
    "max_event_bytes": 10240, "subscription_count": false, "client_event_rate": 0, "batch_max": 10, "app_id": null}"#;

fn defaults() -> Value {
    serde_json::from_str(DEFAULTS).unwrap_or(Value::Null)
}

/// `defaults()` with `changes` applied.
fn settings(changes: Value) -> Value {
    let mut out = defaults();
    if let (Some(out), Some(changes)) = (out.as_object_mut(), changes.as_object()) {
        for (k, v) in changes {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

/// The Pusher settings and secrets an edge gets for `app`.
async fn edge_view(edge: &Bus, app: &str) -> Result<Option<herald_proto::bus::PusherApp>> {
    Ok(edge.app_config(&AppId::new(app)?).await?.context("the app exists")?.pusher)
}

fn secrets(p: &herald_proto::bus::PusherApp) -> Vec<(String, String)> {
    let mut out: Vec<_> = p.secrets.iter().map(|s| (s.key_id.clone(), s.secret.clone())).collect();
    out.sort();
    out
}

#[tokio::test]
async fn settings_round_trip_over_rest_and_edges_are_told() -> Result<()> {
    let (server, _edge, collect) = pg_local_server(|c| c.max_batch_messages = 50).await?;
    let http = Http::default();
    let r = http.json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"name": "plain"})).await?;
    assert_eq!((r.status, &r.json()["pusher"]), (201, &defaults()), "{}", r.text());

    let body = json!({"id": "pusher-app", "name": "p",
                      "pusher": {"enabled": true, "client_events": true, "app_id": "424242"}});
    let r = http.json("POST", &server.url("/v1/apps"), Some(ADMIN), body).await?;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["pusher"], settings(json!({"enabled": true, "client_events": true, "app_id": "424242"})));
    let url = server.url("/v1/apps/pusher-app");
    collect.take_namespaces_changed("pusher-app");

    // A change touches only the fields given, and edges drop their copy.
    let patch = json!({"pusher": {"presence_max_members": 50, "max_event_bytes": 2048, "subscription_count": true,
                                  "client_event_rate": 20, "batch_max": 25}});
    let r = http.json("PATCH", &url, Some(ADMIN), patch).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let expected = settings(json!({"enabled": true, "client_events": true, "presence_max_members": 50,
        "max_event_bytes": 2048, "subscription_count": true, "client_event_rate": 20, "batch_max": 25,
        "app_id": "424242"}));
    assert_eq!(r.json()["pusher"], expected);
    assert_eq!(http.get(&url, Some(ADMIN)).await?.json()["pusher"], expected);
    collect
        .control_event(|k| {
            matches!(k, herald_proto::bus::control_event::Kind::NamespacesChanged(n) if n.app_id == "pusher-app")
                .then_some(())
        })
        .await?;
    // 0 means the default again; other fields stay.
    let r = http.json("PATCH", &url, Some(ADMIN), json!({"pusher": {"max_event_bytes": 0, "batch_max": 0}})).await?;
    assert_eq!(r.json()["pusher"]["max_event_bytes"], 10240);
    assert_eq!(r.json()["pusher"]["batch_max"], 10);
    assert_eq!(r.json()["pusher"]["client_event_rate"], 20);
    // A change without Pusher settings leaves them, and edges' copy, alone.
    collect.take_namespaces_changed("pusher-app");
    let r = http.json("PATCH", &url, Some(ADMIN), json!({"name": "renamed"})).await?;
    assert_eq!(r.json()["pusher"]["enabled"], true);
    assert!(!collect.take_namespaces_changed("pusher-app"), "no Pusher change, no NamespacesChanged");

    for (pusher, says) in [
        (json!({"batch_max": 51}), "batch_max"),
        (json!({"max_event_bytes": 2_000_000}), "max_event_bytes"),
        (json!({"client_event_rate": 10_001}), "client_event_rate"),
        (json!({"presence_max_members": 100_001}), "presence_max_members"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"app_id": "12a"}), "app_id"),
        (json!({"app_id": ""}), "app_id"),
        (json!({"app_id": "1234567890123456789"}), "app_id"),
        (json!({"app_id": 1234567}), "app_id"),
        (json!({"webhooks": true}), "webhooks"),
    ] {
        for (method, url) in [("PATCH", url.clone()), ("POST", server.url("/v1/apps"))] {
            let r = http.json(method, &url, Some(ADMIN), json!({"name": "x", "pusher": pusher})).await?;
            assert_eq!((r.status, r.code().as_str()), (400, "bad_request"), "{method} {pusher}: {}", r.text());
            assert!(r.text().contains(says), "{pusher}: {}", r.text());
        }
    }
    assert_eq!(http.get(&url, Some(ADMIN)).await?.json()["pusher"]["batch_max"], 10, "refused changes change nothing");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn pusher_keys_and_what_edges_get() -> Result<()> {
    let (server, edge, collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let r = http.json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"name": "p"})).await?;
    let app = r.json()["id"].as_str().context("id")?.to_owned();
    let keys_url = server.url(&format!("/v1/apps/{app}/keys"));

    // A plain key has no Pusher secret; a Pusher key shows its secret once.
    let r = http.json("POST", &keys_url, Some(ADMIN), json!({"name": "plain"})).await?;
    assert!(r.json().get("pusher_secret").is_none(), "{}", r.text());
    collect.take_namespaces_changed(&app);
    let (k1, _, s1) = pusher_key(&http, &server, &app, None).await?;
    assert_eq!(s1.len(), 32);
    assert!(s1.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{s1}");
    collect
        .control_event(|k| {
            matches!(k, herald_proto::bus::control_event::Kind::NamespacesChanged(n) if n.app_id == app).then_some(())
        })
        .await?;
    let listed = http.get(&keys_url, Some(ADMIN)).await?;
    assert!(!listed.text().contains(&s1), "listings never show the Pusher secret");
    let mut flags: Vec<(String, Value)> = listed.json()["keys"]
        .as_array()
        .context("keys")?
        .iter()
        .map(|k| (k["name"].as_str().unwrap_or("").to_owned(), k["pusher"].clone()))
        .collect();
    flags.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(flags, vec![("plain".to_owned(), json!(false)), ("pusher backend".to_owned(), json!(true))]);

    // Pusher mode off: edges get no Pusher settings, keys or not.
    assert_eq!(edge_view(&edge, &app).await?, None);
    let on = json!({"pusher": {"enabled": true, "client_events": true, "presence_max_members": 7,
                               "subscription_count": true, "client_event_rate": 3, "max_event_bytes": 500}});
    assert_eq!(http.json("PATCH", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), on).await?.status, 200);
    let p = edge_view(&edge, &app).await?.context("Pusher mode is on")?;
    assert!(p.client_events && p.subscription_count);
    assert_eq!((p.presence_max_members, p.client_event_rate, p.max_event_bytes), (7, 3, 500));
    assert_eq!(secrets(&p), vec![(k1.clone(), s1.clone())], "only keys with a Pusher secret");
    assert!(p.allowed_origins.is_empty());
    let origins = json!({"allowed_origins": ["https://app.example"]});
    assert_eq!(http.json("PATCH", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), origins).await?.status, 200);
    let p = edge_view(&edge, &app).await?.context("Pusher mode is on")?;
    assert_eq!(p.allowed_origins, vec!["https://app.example".to_owned()], "the app's Origin allowlist");

    // A second Pusher key joins; a revoked one leaves.
    let (k2, _, s2) = pusher_key(&http, &server, &app, None).await?;
    let mut both = vec![(k1.clone(), s1.clone()), (k2.clone(), s2.clone())];
    both.sort();
    assert_eq!(secrets(&edge_view(&edge, &app).await?.context("on")?), both);
    let r = http.send("DELETE", &server.url(&format!("/v1/apps/{app}/keys/{k1}")), Some(ADMIN), None).await?;
    assert_eq!(r.status, 200);
    assert_eq!(secrets(&edge_view(&edge, &app).await?.context("on")?), vec![(k2, s2)]);
    let off = json!({"pusher": {"enabled": false}});
    assert_eq!(http.json("PATCH", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), off).await?.status, 200);
    assert_eq!(edge_view(&edge, &app).await?, None);
    assert!(edge.app_config(&AppId::new("ghost")?).await?.is_none());
    server.stop().await;
    Ok(())
}

/// The same over NATS, the way edges ask in a cluster.
#[tokio::test]
async fn edges_get_pusher_settings_over_nats() -> Result<()> {
    let server = Server::start(TestDb::postgres().await?, |_| {}).await?;
    let edge = common::nats_backplane_at(common::NATS_URL, server.subjects.clone()).await?;
    let http = Http::default();
    let p = common::pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let got = edge_view(&edge, &p.app).await?.context("Pusher mode is on")?;
    assert_eq!(secrets(&got), vec![(p.key_id.clone(), p.secret.clone())]);
    assert_eq!(got.max_event_bytes, 10_240);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn settings_and_pusher_keys_over_grpc() -> Result<()> {
    let (server, edge, _collect) = pg_local_server(|_| {}).await?;
    let mut admin = AdminServiceClient::new(Channel::from_shared(format!("http://{}", server.addr))?.connect().await?);
    let create = pb::CreateAppRequest {
        name: "grpc".into(),
        pusher: Some(pb::PusherSettingsUpdate { enabled: Some(true), batch_max: Some(4), ..Default::default() }),
        ..Default::default()
    };
    let app = admin.create_app(authed(create, ADMIN)).await?.into_inner();
    let drawn = app.pusher.as_ref().map(|p| p.app_id.clone()).unwrap_or_default();
    assert!(drawn.len() == 7 && drawn.bytes().all(|b| b.is_ascii_digit()), "a Pusher app id is drawn: {drawn:?}");
    let expected = pb::PusherSettings {
        enabled: true,
        max_event_bytes: 10_240,
        batch_max: 4,
        app_id: drawn,
        ..Default::default()
    };
    assert_eq!(app.pusher, Some(expected.clone()));

    let update = pb::UpdateAppRequest {
        app_id: app.id.clone(),
        pusher: Some(pb::PusherSettingsUpdate { client_events: Some(true), ..Default::default() }),
        ..Default::default()
    };
    let updated = admin.update_app(authed(update, ADMIN)).await?.into_inner();
    assert_eq!(updated.pusher, Some(pb::PusherSettings { client_events: true, ..expected }));
    let got = admin.get_app(authed(pb::GetAppRequest { app_id: app.id.clone() }, ADMIN)).await?.into_inner();
    assert_eq!(got.pusher, updated.pusher);
    let bad = pb::UpdateAppRequest {
        app_id: app.id.clone(),
        pusher: Some(pb::PusherSettingsUpdate { client_event_rate: Some(1_000_000), ..Default::default() }),
        ..Default::default()
    };
    assert_eq!(admin.update_app(authed(bad, ADMIN)).await.expect_err("too fast").code(), Code::InvalidArgument);

    let request = pb::CreateKeyRequest { app_id: app.id.clone(), name: "k".into(), pusher: true, ..Default::default() };
    let created = admin.create_key(authed(request, ADMIN)).await?.into_inner();
    let key = created.key.context("key")?;
    assert!(key.pusher);
    assert_eq!(created.pusher_secret.len(), 32);
    let request = pb::CreateKeyRequest { app_id: app.id.clone(), name: "plain".into(), ..Default::default() };
    let plain = admin.create_key(authed(request, ADMIN)).await?.into_inner();
    assert_eq!((plain.pusher_secret.as_str(), plain.key.map(|k| k.pusher)), ("", Some(false)));
    let list = admin.list_keys(authed(pb::ListKeysRequest { app_id: app.id.clone() }, ADMIN)).await?.into_inner();
    let mut flags: Vec<(&str, bool)> = list.keys.iter().map(|k| (k.name.as_str(), k.pusher)).collect();
    flags.sort_unstable();
    assert_eq!(flags, vec![("k", true), ("plain", false)]);
    let p = edge_view(&edge, &app.id).await?.context("on")?;
    assert_eq!(secrets(&p), vec![(key.id, created.pusher_secret)]);
    server.stop().await;
    Ok(())
}
