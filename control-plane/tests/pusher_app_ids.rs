//! Numeric Pusher app ids: drawn when Pusher mode is turned on without one,
//! kept when it is turned off, settable and unique across apps (REST, gRPC
//! and the service layer), given to apps that were in Pusher mode before
//! there were any, and the way the Pusher HTTP API finds an app (cached,
//! across replicas too).

mod common;

use std::time::Duration;

use anyhow::{Context as _, Result};
use common::{ADMIN, Http, NATS_URL, PusherApp, Server, Signing, TestDb, authed, pg_local_server, pusher_app};
use herald_control_plane::auth::Principal;
use herald_control_plane::services::{AppSpec, PusherPatch};
use herald_proto::api::admin_service_client::AdminServiceClient;
use herald_proto::api::{self as pb};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tonic::Code;
use tonic::transport::Channel;

fn is_drawn(id: &Value) -> bool {
    id.as_str().is_some_and(|id| id.len() == 7 && !id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()))
}

#[tokio::test]
async fn pusher_app_ids_are_drawn_kept_and_unique() -> Result<()> {
    let (server, _edge, _collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let create = |body: Value| {
        let (http, server) = (&http, &server);
        async move { http.json("POST", &server.url("/v1/apps"), Some(ADMIN), body).await }
    };
    let patch = |app: String, body: Value| {
        let (http, server) = (&http, &server);
        async move { http.json("PATCH", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), body).await }
    };

    // None until Pusher mode is on; then one is drawn, and it stays.
    let r = create(json!({"id": "a", "name": "a"})).await?;
    assert_eq!(r.json()["pusher"]["app_id"], Value::Null, "{}", r.text());
    let r = patch("a".into(), json!({"pusher": {"enabled": true}})).await?;
    let drawn = r.json()["pusher"]["app_id"].clone();
    assert!(is_drawn(&drawn), "{}", r.text());
    let r = patch("a".into(), json!({"pusher": {"enabled": false}})).await?;
    assert_eq!(r.json()["pusher"]["app_id"], drawn, "turning Pusher mode off keeps the id");
    let r = patch("a".into(), json!({"pusher": {"enabled": true, "client_events": true}})).await?;
    assert_eq!(r.json()["pusher"]["app_id"], drawn, "and turning it on again finds it");
    let r = create(json!({"name": "on", "pusher": {"enabled": true}})).await?;
    let other = r.json()["pusher"]["app_id"].clone();
    assert!(is_drawn(&other) && other != drawn, "{}", r.text());

    // Given: kept as written (a team moving from Pusher keeps its id),
    // Pusher mode on or not; another app's is refused.
    let r = create(json!({"id": "b", "name": "b", "pusher": {"app_id": "0123"}})).await?;
    assert_eq!((r.status, &r.json()["pusher"]["app_id"]), (201, &json!("0123")), "{}", r.text());
    let r = create(json!({"id": "c", "name": "c", "pusher": {"enabled": true, "app_id": drawn}})).await?;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"), "{}", r.text());
    assert!(r.text().contains("Pusher app_id"), "{}", r.text());
    let r = patch("b".into(), json!({"pusher": {"app_id": drawn}})).await?;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"), "{}", r.text());
    let r = patch("b".into(), json!({"pusher": {"app_id": "123"}})).await?;
    assert_eq!((r.status, &r.json()["pusher"]["app_id"]), (200, &json!("123")), "0123 and 123 are two ids");
    let r = patch("b".into(), json!({"pusher": {"enabled": true}})).await?;
    assert_eq!(r.json()["pusher"]["app_id"], "123", "an app with an id keeps it when Pusher mode is turned on");
    let r = create(json!({"id": "b", "name": "again", "pusher": {"app_id": "999"}})).await?;
    assert_eq!(r.status, 409);
    assert!(r.text().contains("an app with id"), "a taken app id is still named as such: {}", r.text());

    // gRPC: the same rules.
    let mut admin = AdminServiceClient::new(Channel::from_shared(format!("http://{}", server.addr))?.connect().await?);
    let update = |app_id: &str, id: &str| pb::UpdateAppRequest {
        app_id: app_id.into(),
        pusher: Some(pb::PusherSettingsUpdate { app_id: Some(id.into()), ..Default::default() }),
        ..Default::default()
    };
    let updated = admin.update_app(authed(update("a", "77"), ADMIN)).await?.into_inner();
    assert_eq!(updated.pusher.map(|p| p.app_id).as_deref(), Some("77"));
    let taken = admin.update_app(authed(update("b", "77"), ADMIN)).await.expect_err("taken");
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    let bad = admin.update_app(authed(update("b", "7x"), ADMIN)).await.expect_err("not digits");
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("app_id"), "{bad:?}");
    let create = pb::CreateAppRequest {
        name: "grpc".into(),
        pusher: Some(pb::PusherSettingsUpdate { enabled: Some(true), ..Default::default() }),
        ..Default::default()
    };
    let created = admin.create_app(authed(create, ADMIN)).await?.into_inner();
    assert!(is_drawn(&json!(created.pusher.map(|p| p.app_id).unwrap_or_default())));
    let plain = admin.create_app(authed(pb::CreateAppRequest { name: "plain".into(), ..Default::default() }, ADMIN));
    assert_eq!(plain.await?.into_inner().pusher.map(|p| p.app_id).as_deref(), Some(""));
    server.stop().await;
    Ok(())
}

/// What `herald dev` calls: Pusher mode on with client events (the Pusher
/// app id comes back), and a key with a Pusher secret.
#[tokio::test]
async fn the_service_layer_turns_pusher_mode_on_and_makes_pusher_keys() -> Result<()> {
    let db = TestDb::postgres().await?;
    let bus = herald_bus::LocalBus::new();
    let cp = herald_control_plane::ControlPlane::new(common::config(&db), herald_bus::Bus::local(&bus)).await?;
    let core = cp.core();
    let admin = Principal::Admin;
    core.create_app(&admin, Some("demo"), AppSpec { name: Some("Demo".into()), ..AppSpec::default() }).await?;
    let app = core.enable_pusher(&admin, "demo", true).await?;
    assert!(app.pusher.enabled && app.pusher.client_events);
    let id = app.pusher.app_id.context("a Pusher app id is drawn")?;
    assert_eq!(id.to_string().len(), 7);
    // Again (a restart of `herald dev`): the same id.
    assert_eq!(core.enable_pusher(&admin, "demo", true).await?.pusher.app_id, Some(id));
    let (key, whole, secret) = core.create_pusher_key(&admin, "demo", "dev", None).await?;
    assert!(whole.starts_with("hk_") && secret.len() == 32, "{secret}");
    assert_eq!(key.pusher_secret.as_deref(), Some(secret.as_str()));
    let edge = core.pusher_app(&app.id).await?.context("Pusher mode is on")?;
    assert!(edge.client_events);
    assert_eq!(edge.secrets.iter().map(|s| s.secret.as_str()).collect::<Vec<_>>(), [secret.as_str()]);
    // Creating an app in Pusher mode with a given id, in one call.
    let patch = PusherPatch {
        enabled: Some(true),
        app_id: Some(herald_control_plane::pusher_app_id::PusherAppId::parse("1234")?),
        ..PusherPatch::default()
    };
    let spec = AppSpec { name: Some("Moved".into()), pusher: Some(patch), ..AppSpec::default() };
    let moved = core.create_app(&admin, None, spec).await?;
    assert_eq!(moved.pusher.app_id.map(|id| id.to_string()).as_deref(), Some("1234"));
    Ok(())
}

#[tokio::test]
async fn apps_in_pusher_mode_without_an_id_get_one_at_start() -> Result<()> {
    let db = TestDb::postgres().await?;
    let url = db.url.clone();
    let server = Server::start(TestDb::shared(&url), |_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let plain = http.json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"id": "plain", "name": "p"})).await?;
    assert_eq!(plain.status, 201);
    server.stop().await;
    // As an app that turned Pusher mode on before Pusher app ids existed.
    let mut conn = sqlx::PgConnection::connect(&url).await?;
    sqlx::query("UPDATE apps SET pusher_app_id = NULL").execute(&mut conn).await?;
    conn.close().await?;

    let server = Server::start(TestDb::shared(&url), |_| {}).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let id = loop {
        let j = http.get(&server.url(&format!("/v1/apps/{}", p.app)), Some(ADMIN)).await?.json();
        if is_drawn(&j["pusher"]["app_id"]) {
            break j["pusher"]["app_id"].as_str().unwrap_or_default().to_owned();
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no Pusher app id assigned: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let j = http.get(&server.url("/v1/apps/plain"), Some(ADMIN)).await?.json();
    assert_eq!(j["pusher"]["app_id"], Value::Null, "an app not in Pusher mode gets none");
    let p = PusherApp { pusher_id: id, ..p };
    let r = Signing::new("GET", &p.path("/channels"), &p).send(&http, &server).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    server.stop().await;
    drop(db);
    Ok(())
}

#[tokio::test]
async fn the_http_api_finds_apps_by_their_pusher_app_id() -> Result<()> {
    let (server, _edge, _collect) = pg_local_server(|_| {}).await?;
    let http = Http::default();
    let p = pusher_app(&http, &server, json!({"enabled": true, "app_id": "555"}), None).await?;
    assert_eq!(p.pusher_id, "555");
    let body = json!({"name": "e", "channel": "c", "data": "x"});
    let send = |p: &PusherApp, path: String| {
        let (http, server, body) = (&http, &server, &body);
        let p = p.clone();
        async move { Signing::new("POST", &path, &p).json(body).send(http, server).await }
    };
    assert_eq!(send(&p, p.path("/events")).await?.status, 200);

    // An unknown id, and the app's Herald id (its Pusher key) in its place.
    for (path, says) in [
        ("/apps/556/events".to_owned(), "no app has the Pusher app_id \"556\""),
        (format!("/apps/{}/events", p.app), "Pusher app ids are numbers"),
    ] {
        let r = send(&p, path.clone()).await?;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(r.text().contains(says), "{path}: {}", r.text());
        assert_eq!(r.headers["content-type"], "text/plain; charset=utf-8");
    }
    // Another app's key signing for this app's id: the auth_key is wrong.
    let q = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let r = send(&q, p.path("/events")).await?;
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("auth_key"), "{}", r.text());

    // A changed id moves at once: the old one is unknown, the new one (cached
    // as unknown a moment ago) finds the app.
    assert_eq!(send(&p, "/apps/556/events".into()).await?.status, 404);
    let url = server.url(&format!("/v1/apps/{}", p.app));
    let r = http.json("PATCH", &url, Some(ADMIN), json!({"pusher": {"app_id": "556"}})).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(send(&p, "/apps/555/events".into()).await?.status, 404);
    let moved = PusherApp { pusher_id: "556".into(), ..p.clone() };
    assert_eq!(send(&moved, moved.path("/events")).await?.status, 200);
    // A deleted app's id is unknown.
    assert_eq!(http.send("DELETE", &url, Some(ADMIN), None).await?.status, 204);
    assert_eq!(send(&moved, moved.path("/events")).await?.status, 404);
    server.stop().await;
    Ok(())
}

/// Another replica learns of a new or moved Pusher app id from the bus,
/// though it cached the id as unknown (its cache TTL is long here).
#[tokio::test]
async fn replicas_forget_pusher_app_ids_when_apps_change() -> Result<()> {
    let db = TestDb::postgres().await?;
    let url = db.url.clone();
    let long = |c: &mut herald_control_plane::Config| c.cache_ttl = herald_proto::units::HumanDuration::secs(60);
    let a = Server::start(db, long).await?;
    let b_bus = common::nats_backplane_at(NATS_URL, a.subjects.clone()).await?;
    let b = Server::start_with(TestDb::shared(&url), b_bus, a.subjects.clone(), long).await?;
    let http = Http::default();
    let p = pusher_app(&http, &a, json!({"enabled": true, "app_id": "31"}), None).await?;
    let moved = PusherApp { pusher_id: "32".into(), ..p.clone() };
    let get = |server: &Server, p: &PusherApp| {
        let url = server.url(&Signing::new("GET", &p.path("/channels"), p).uri());
        let http = &http;
        async move { http.get(&url, None).await.map(|r| r.status) }
    };
    assert_eq!(get(&b, &p).await?, 200, "B finds 31 (and caches it)");
    assert_eq!(get(&b, &moved).await?, 404, "B caches 32 as unknown");
    let url = a.url(&format!("/v1/apps/{}", p.app));
    let r = http.json("PATCH", &url, Some(ADMIN), json!({"pusher": {"app_id": "32"}})).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while get(&b, &moved).await? != 200 || get(&b, &p).await? != 404 {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "replica B still holds the old Pusher app ids");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
    Ok(())
}
