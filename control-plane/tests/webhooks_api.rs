//! Webhook endpoints through the REST and gRPC APIs, on PostgreSQL and
//! SQLite: their life (create, list, read, change, rotate, delete), the
//! secret shown only on creation and rotation, the per-app count, the
//! checks of every field (URLs against SSRF included), and disabling,
//! which drops the endpoint's pending deliveries.

mod common;

use std::sync::Arc;

use anyhow::{Context as _, Result};
use common::{ADMIN, Collect, Http, Reply, Server, TestDb, app_with_key, authed, local_server, pusher_app};
use herald_bus::Bus;
use herald_control_plane::Config;
use herald_control_plane::store::Store;
use herald_proto::api::webhook_service_client::WebhookServiceClient;
use herald_proto::api::{self as pb, webhook_filter};
use herald_proto::bus::control_event::Kind;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

const DAY_MS: i64 = 86_400_000;

/// A control plane on the in-process bus, and what an edge on that bus
/// hears.
async fn start(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Result<(Server, Bus, Arc<Collect>)> {
    let (server, edge) = local_server(db, tweak).await?;
    let collect = Arc::new(Collect::default());
    edge.attach(collect.clone()).await?;
    Ok((server, edge, collect))
}

fn hooks_url(server: &Server, app: &str) -> String {
    server.url(&format!("/v1/apps/{app}/webhooks"))
}

fn hook_url(server: &Server, app: &str, id: &str) -> String {
    server.url(&format!("/v1/apps/{app}/webhooks/{id}"))
}

async fn create(http: &Http, server: &Server, app: &str, body: Value) -> Result<Reply> {
    http.json("POST", &hooks_url(server, app), Some(ADMIN), body).await
}

async fn list(http: &Http, server: &Server, app: &str) -> Result<Vec<Value>> {
    let r = http.get(&hooks_url(server, app), Some(ADMIN)).await?;
    anyhow::ensure!(r.status == 200, "list: {} {}", r.status, r.text());
    Ok(r.json()["webhooks"].as_array().context("webhooks")?.clone())
}

/// Waits for `NamespacesChanged{app}` on the edge's side of the bus, then
/// forgets the events seen so far.
async fn changed(collect: &Collect, app: &str) -> Result<()> {
    collect
        .control_event(|k| match k {
            Kind::NamespacesChanged(n) if n.app_id == app => Some(()),
            _ => None,
        })
        .await?;
    collect.take_namespaces_changed(app);
    Ok(())
}

#[tokio::test]
async fn endpoints_are_created_listed_changed_rotated_and_deleted_over_rest() -> Result<()> {
    for db in TestDb::both().await? {
        let backend = if db.url.starts_with("postgres") { "postgres" } else { "sqlite" };
        let (server, _edge, collect) = start(db, |c| c.webhook_max_endpoints_per_app = 3).await?;
        let http = Http::default();
        let (app, _, key) = app_with_key(&http, &server, None).await?;
        collect.take_namespaces_changed(&app);

        let body = json!({
            "url": "https://8.8.8.8/herald/hook?token=abc",
            "events": ["member_added", "channel_occupied", "member_added"],
            "filter": {"prefix": "presence-"},
        });
        let r = create(&http, &server, &app, body).await?;
        assert_eq!(r.status, 201, "{backend}: {}", r.text());
        let created = r.json();
        let id = created["id"].as_str().context("id")?.to_owned();
        let secret = created["secret"].as_str().context("secret")?.to_owned();
        assert!(id.starts_with("wh_") && id.len() == 19, "{id}");
        assert!(secret.starts_with("whsec_") && secret.len() == 38, "{secret}");
        assert_eq!(created["events"], json!(["channel_occupied", "member_added"]), "sorted, without duplicates");
        assert_eq!(
            (&created["app_id"], &created["format"], &created["status"], &created["filter"]),
            (&json!(app), &json!("herald"), &json!("active"), &json!({"prefix": "presence-"}))
        );
        assert_eq!((&created["dropped"], &created["status_reason"]), (&json!(0), &Value::Null));
        assert_eq!(created["previous_secret_expires_at_ms"], Value::Null);
        changed(&collect, &app).await.context("NamespacesChanged after a creation")?;

        // The secret is shown once: never in a list or a read.
        let listed = list(&http, &server, &app).await?;
        assert_eq!(listed.len(), 1);
        let r = http.get(&hook_url(&server, &app, &id), Some(ADMIN)).await?;
        assert_eq!(r.status, 200);
        for view in [&listed[0], &r.json()] {
            assert!(view.get("secret").is_none(), "{backend}: {view}");
            assert!(!view.to_string().contains(&secret), "{backend}: the secret leaked: {view}");
            assert_eq!(view["url"], json!("https://8.8.8.8/herald/hook?token=abc"));
        }

        // Admin only.
        let r = http.get(&hooks_url(&server, &app), Some(&key)).await?;
        assert_eq!((r.status, r.code()), (403, "forbidden".to_owned()));
        let r = http
            .json(
                "POST",
                &hooks_url(&server, &app),
                Some(&key),
                json!({"url": "https://8.8.8.8/", "events": ["member_added"]}),
            )
            .await?;
        assert_eq!(r.status, 403);

        // Changes: only what is given.
        let r = http
            .json(
                "PATCH",
                &hook_url(&server, &app, &id),
                Some(ADMIN),
                json!({"url": "https://1.1.1.1/new", "events": ["client_event"], "filter": {"namespace": "chat"}}),
            )
            .await?;
        assert_eq!(r.status, 200, "{backend}: {}", r.text());
        let j = r.json();
        assert_eq!(
            (&j["url"], &j["events"], &j["filter"], &j["format"]),
            (&json!("https://1.1.1.1/new"), &json!(["client_event"]), &json!({"namespace": "chat"}), &json!("herald"))
        );
        assert!(j["updated_at_ms"].as_i64() >= created["updated_at_ms"].as_i64());
        assert!(j.get("secret").is_none());
        changed(&collect, &app).await.context("NamespacesChanged after a change")?;
        let r = http.json("PATCH", &hook_url(&server, &app, &id), Some(ADMIN), json!({"filter": null})).await?;
        assert_eq!((r.status, &r.json()["filter"]), (200, &Value::Null), "null removes the filter");
        assert_eq!(r.json()["events"], json!(["client_event"]), "absent fields stay");

        // Rotation: a new secret, shown once; the previous one signs for the
        // overlap (24 h by default).
        let before = herald_bus::now_ms();
        let r = http
            .send("POST", &server.url(&format!("/v1/apps/{app}/webhooks/{id}/rotate-secret")), Some(ADMIN), None)
            .await?;
        assert_eq!(r.status, 200, "{backend}: {}", r.text());
        let rotated = r.json();
        let new_secret = rotated["secret"].as_str().context("new secret")?.to_owned();
        assert!(new_secret.starts_with("whsec_") && new_secret != secret);
        let until = rotated["previous_secret_expires_at_ms"].as_i64().context("overlap end")?;
        assert!((before + DAY_MS..=herald_bus::now_ms() + DAY_MS).contains(&until), "{until}");
        changed(&collect, &app).await.context("NamespacesChanged after a rotation")?;
        let r = http.get(&hook_url(&server, &app, &id), Some(ADMIN)).await?;
        assert_eq!(r.json()["previous_secret_expires_at_ms"], json!(until));
        assert!(!r.text().contains(&new_secret));
        let rotate = server.url(&format!("/v1/apps/{app}/webhooks/{id}/rotate-secret"));
        let r = http.json("POST", &rotate, Some(ADMIN), json!({"overlap_seconds": 60})).await?;
        let until = r.json()["previous_secret_expires_at_ms"].as_i64().context("short overlap")?;
        assert!(until <= herald_bus::now_ms() + 60_000, "{until}");
        let r = http.json("POST", &rotate, Some(ADMIN), json!({"overlap_seconds": 0})).await?;
        assert_eq!((r.status, &r.json()["previous_secret_expires_at_ms"]), (200, &Value::Null));
        let r = http.json("POST", &rotate, Some(ADMIN), json!({"overlap_seconds": 31 * 86_400})).await?;
        assert_eq!((r.status, r.code()), (400, "bad_request".to_owned()));
        assert!(r.text().contains("overlap_seconds"), "{}", r.text());
        let r = http.json("POST", &rotate, Some(ADMIN), json!({"overlap": 5})).await?;
        assert_eq!(r.status, 400, "unknown field");

        // The count: three per app here.
        for n in 0..2 {
            let url = format!("https://8.8.4.4/{n}");
            let r = create(&http, &server, &app, json!({"url": url, "events": ["channel_vacated"]})).await?;
            assert_eq!(r.status, 201, "{}", r.text());
        }
        let r =
            create(&http, &server, &app, json!({"url": "https://8.8.4.4/4", "events": ["channel_vacated"]})).await?;
        assert_eq!((r.status, r.code()), (400, "limit_exceeded".to_owned()), "{backend}: {}", r.text());
        assert!(r.text().contains("webhook_max_endpoints_per_app"), "{}", r.text());
        assert_eq!(list(&http, &server, &app).await?.len(), 3);
        // Another app has its own count.
        let (other, _, _) = app_with_key(&http, &server, None).await?;
        let r = create(&http, &server, &other, json!({"url": "https://8.8.4.4/", "events": ["cache_miss"]})).await?;
        assert_eq!(r.status, 201);
        // An endpoint is found only under its own app.
        let r = http.get(&hook_url(&server, &other, &id), Some(ADMIN)).await?;
        assert_eq!(r.status, 404);

        // Deletion.
        let r = http.send("DELETE", &hook_url(&server, &app, &id), Some(ADMIN), None).await?;
        assert_eq!(r.status, 204, "{}", r.text());
        changed(&collect, &app).await.context("NamespacesChanged after a deletion")?;
        for (method, body) in [("GET", None), ("DELETE", None), ("PATCH", Some(json!({"enabled": false})))] {
            let r = match body {
                Some(b) => http.json(method, &hook_url(&server, &app, &id), Some(ADMIN), b).await?,
                None => http.send(method, &hook_url(&server, &app, &id), Some(ADMIN), None).await?,
            };
            assert_eq!((r.status, r.code()), (404, "not_found".to_owned()), "{method} after deletion");
        }
        let r = http
            .send("POST", &server.url(&format!("/v1/apps/{app}/webhooks/{id}/rotate-secret")), Some(ADMIN), None)
            .await?;
        assert_eq!(r.status, 404);
        assert_eq!(list(&http, &server, &app).await?.len(), 2);
        for bad in ["nope", "wh_UPPERCASE00000000", "wh_0123456789abcdef0"] {
            let r = http.get(&hook_url(&server, &app, bad), Some(ADMIN)).await?;
            assert_eq!(r.status, 404, "{bad}");
        }
        let r = http.get(&hooks_url(&server, "no-such-app"), Some(ADMIN)).await?;
        assert_eq!(r.status, 404);
        let r =
            create(&http, &server, "no-such-app", json!({"url": "https://8.8.8.8/", "events": ["cache_miss"]})).await?;
        assert_eq!(r.status, 404);

        // Deleting the app takes its endpoints with it.
        let r = http.send("DELETE", &server.url(&format!("/v1/apps/{app}")), Some(ADMIN), None).await?;
        assert_eq!(r.status, 204);
        let store = open_store(&server).await?;
        assert!(store.list_webhooks(&herald_proto::AppId::new(&app)?).await?.is_empty(), "{backend}");
        store.close().await;
        server.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_stored() -> Result<()> {
    for db in TestDb::both().await? {
        let (server, _edge, _collect) = start(db, |_| {}).await?;
        let http = Http::default();
        let (app, _, _) = app_with_key(&http, &server, None).await?;
        let ok_events = json!(["channel_occupied"]);
        let long_url = format!("https://8.8.8.8/{}", "a".repeat(3000));
        let cases: Vec<(Value, &str)> = vec![
            (json!({"url": "ftp://8.8.8.8/x", "events": ok_events}), "`url`"),
            (json!({"url": "javascript:alert(1)", "events": ok_events}), "`url`"),
            (json!({"url": "8.8.8.8/x", "events": ok_events}), "`url`"),
            (json!({"url": long_url, "events": ok_events}), "`url`"),
            (json!({"url": "https://user:pw@8.8.8.8/", "events": ok_events}), "`url`"),
            (json!({"url": "https://8.8.8.8/#frag", "events": ok_events}), "`url`"),
            (json!({"url": "http://127.0.0.1/x", "events": ok_events}), "`url`"),
            (json!({"url": "http://10.0.0.1/", "events": ok_events}), "`url`"),
            (json!({"url": "http://192.168.1.10:8080/", "events": ok_events}), "`url`"),
            (json!({"url": "http://169.254.169.254/", "events": ok_events}), "`url`"),
            (json!({"url": "http://[::1]/", "events": ok_events}), "`url`"),
            (json!({"url": "http://[fd00::1]/", "events": ok_events}), "`url`"),
            (json!({"url": "http://localhost/", "events": ok_events}), "`url`"),
            (json!({"url": "http://localhost:8080/in", "events": ok_events}), "`url`"),
            (json!({"url": "http://2130706433/", "events": ok_events}), "`url`"),
            (json!({"url": "https://8.8.8.8/", "events": ["channel_exploded"]}), "`events`"),
            (json!({"url": "https://8.8.8.8/", "events": []}), "`events`"),
            (json!({"url": "https://8.8.8.8/", "events": ok_events, "format": "xml"}), "`format`"),
            (
                json!({"url": "https://8.8.8.8/", "events": ok_events, "filter": {"prefix": "p".repeat(201)}}),
                "`filter.prefix`",
            ),
            (json!({"url": "https://8.8.8.8/", "events": ok_events, "filter": {"prefix": ""}}), "`filter.prefix`"),
            (json!({"url": "https://8.8.8.8/", "events": ok_events, "filter": {"prefix": "a b"}}), "`filter.prefix`"),
            (
                json!({"url": "https://8.8.8.8/", "events": ok_events, "filter": {"prefix": "a", "namespace": "b"}}),
                "`filter`",
            ),
            (json!({"url": "https://8.8.8.8/", "events": ok_events, "filter": {}}), "`filter`"),
            (
                json!({"url": "https://8.8.8.8/", "events": ok_events, "filter": {"namespace": "a:b"}}),
                "`filter.namespace`",
            ),
            (json!({"url": "https://8.8.8.8/", "events": ok_events, "filter": {"regex": "a"}}), "filter"),
            (json!({"url": "https://8.8.8.8/", "events": ok_events, "format": "pusher"}), "Pusher mode"),
            (json!({"url": "https://8.8.8.8/", "events": ok_events, "secret": "mine"}), "secret"),
            (json!({"url": "https://8.8.8.8/", "events": "channel_occupied"}), "events"),
            (json!({"events": ok_events}), "url"),
        ];
        for (body, field) in &cases {
            let r = create(&http, &server, &app, body.clone()).await?;
            assert_eq!((r.status, r.code()), (400, "bad_request".to_owned()), "{body}: {}", r.text());
            let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
            assert!(message.contains(field), "{body}: {message:?} does not name {field}");
        }
        let r = http.raw("POST", &hooks_url(&server, &app), Some(ADMIN), "{not json").await?;
        assert_eq!(r.status, 400);
        assert!(list(&http, &server, &app).await?.is_empty(), "nothing was stored");

        // The same checks on a change, which then changes nothing.
        let r = create(&http, &server, &app, json!({"url": "https://8.8.8.8/", "events": ok_events})).await?;
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_str().context("id")?.to_owned();
        let before = http.get(&hook_url(&server, &app, &id), Some(ADMIN)).await?.json();
        for (body, field) in [
            (json!({"url": "http://127.0.0.1/x"}), "`url`"),
            (json!({"url": "http://[::1]/", "events": ["member_added"]}), "`url`"),
            (json!({"events": []}), "`events`"),
            (json!({"events": ["member_added", "nope"]}), "`events`"),
            (json!({"format": "pusher"}), "Pusher mode"),
            (json!({"filter": {"prefix": "x", "namespace": "y"}}), "`filter`"),
            (json!({"enabled": "yes"}), "enabled"),
            (json!({"status": "active"}), "status"),
        ] {
            let r = http.json("PATCH", &hook_url(&server, &app, &id), Some(ADMIN), body.clone()).await?;
            assert_eq!(r.status, 400, "{body}: {}", r.text());
            assert!(r.text().contains(field), "{body}: {} does not name {field}", r.text());
        }
        let after = http.get(&hook_url(&server, &app, &id), Some(ADMIN)).await?.json();
        assert_eq!(before, after, "a refused change changes nothing");
        server.stop().await;
    }
    Ok(())
}

#[tokio::test]
async fn private_urls_are_accepted_when_the_server_allows_them() -> Result<()> {
    let (server, _edge, _collect) = start(TestDb::sqlite(), |c| c.webhook_allow_private_urls = true).await?;
    let http = Http::default();
    let (app, _, _) = app_with_key(&http, &server, None).await?;
    for url in ["http://127.0.0.1:9000/x", "http://localhost:3000/hook", "http://10.0.0.1/", "http://[::1]:8080/"] {
        let r = create(&http, &server, &app, json!({"url": url, "events": ["member_added"]})).await?;
        assert_eq!(r.status, 201, "{url}: {}", r.text());
    }
    // Only the address rules are lifted.
    let r = create(&http, &server, &app, json!({"url": "ftp://127.0.0.1/", "events": ["member_added"]})).await?;
    assert_eq!(r.status, 400);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_pusher_format_needs_the_app_in_pusher_mode() -> Result<()> {
    let (server, _edge, _collect) = start(TestDb::sqlite(), |_| {}).await?;
    let http = Http::default();
    let pusher = pusher_app(&http, &server, json!({"enabled": true}), None).await?;
    let body =
        json!({"url": "https://8.8.8.8/pusher", "events": ["channel_occupied", "client_event"], "format": "pusher"});
    let r = create(&http, &server, &pusher.app, body).await?;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["format"], json!("pusher"));

    let (plain, _, _) = app_with_key(&http, &server, None).await?;
    let r = create(&http, &server, &plain, json!({"url": "https://8.8.8.8/", "events": ["channel_occupied"]})).await?;
    let id = r.json()["id"].as_str().context("id")?.to_owned();
    let r = http.json("PATCH", &hook_url(&server, &plain, &id), Some(ADMIN), json!({"format": "pusher"})).await?;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("enable Pusher mode"), "{}", r.text());
    let r = http
        .json("PATCH", &server.url(&format!("/v1/apps/{plain}")), Some(ADMIN), json!({"pusher": {"enabled": true}}))
        .await?;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http.json("PATCH", &hook_url(&server, &plain, &id), Some(ADMIN), json!({"format": "pusher"})).await?;
    assert_eq!((r.status, &r.json()["format"]), (200, &json!("pusher")), "{}", r.text());
    server.stop().await;
    Ok(())
}

/// Another handle on the server's database.
async fn open_store(server: &Server) -> Result<Store> {
    Ok(Store::connect(&server.db.url, 2, std::time::Duration::from_secs(5)).await?)
}

/// Queues `n` deliveries for an endpoint, as the delivery engine would.
async fn queue(store: &Store, app: &str, webhook: &str, n: usize) -> Result<()> {
    let sql = "INSERT INTO webhook_outbox (webhook_id, app_id, event_id, channel, kind, occurred_at_ms, data, \
               next_attempt_at_ms) VALUES ($1, $2, $3, 'presence-room', 'member_added', 0, '{}', 0)";
    for i in 0..n {
        let event = format!("ev_{webhook}_{i}");
        match store {
            Store::Postgres(pool) => {
                sqlx::query(sql).bind(webhook).bind(app).bind(event).execute(pool).await?;
            }
            Store::Sqlite(pool) => {
                sqlx::query(sql).bind(webhook).bind(app).bind(event).execute(pool).await?;
            }
        }
    }
    Ok(())
}

/// The deliveries queued for an endpoint.
async fn queued(store: &Store, webhook: &str) -> Result<i64> {
    let sql = "SELECT COUNT(*) FROM webhook_outbox WHERE webhook_id = $1";
    Ok(match store {
        Store::Postgres(pool) => sqlx::query_scalar(sql).bind(webhook).fetch_one(pool).await?,
        Store::Sqlite(pool) => sqlx::query_scalar(sql).bind(webhook).fetch_one(pool).await?,
    })
}

/// Marks an endpoint failing since `since`, as the delivery engine would.
async fn mark_failing(store: &Store, webhook: &str, since: i64) -> Result<()> {
    let sql = "UPDATE webhooks SET status = 'failing', status_reason = 'HTTP 500', failing_since_ms = $2 WHERE id = $1";
    match store {
        Store::Postgres(pool) => {
            sqlx::query(sql).bind(webhook).bind(since).execute(pool).await?;
        }
        Store::Sqlite(pool) => {
            sqlx::query(sql).bind(webhook).bind(since).execute(pool).await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn disabling_drops_pending_deliveries_and_counts_them() -> Result<()> {
    for db in TestDb::both().await? {
        let backend = if db.url.starts_with("postgres") { "postgres" } else { "sqlite" };
        // Endpoints that refuse every connection (a closed local port): the
        // engine's attempts fail and reschedule, so the queued rows stay
        // until the endpoint is disabled.
        let (server, _edge, collect) = start(db, |c| c.webhook_allow_private_urls = true).await?;
        let http = Http::default();
        let (app, _, _) = app_with_key(&http, &server, None).await?;
        let mut ids = Vec::new();
        for n in 0..2 {
            let body = json!({"url": format!("http://127.0.0.1:1/{n}"), "events": ["member_added"]});
            let r = create(&http, &server, &app, body).await?;
            assert_eq!(r.status, 201, "{}", r.text());
            ids.push(r.json()["id"].as_str().context("id")?.to_owned());
        }
        let store = open_store(&server).await?;
        queue(&store, &app, &ids[0], 3).await?;
        queue(&store, &app, &ids[1], 2).await?;
        mark_failing(&store, &ids[0], 1_000).await?;
        collect.take_namespaces_changed(&app);

        let r = http.json("PATCH", &hook_url(&server, &app, &ids[0]), Some(ADMIN), json!({"enabled": false})).await?;
        assert_eq!(r.status, 200, "{backend}: {}", r.text());
        let j = r.json();
        assert_eq!(
            (&j["status"], &j["status_reason"], &j["dropped"], &j["failing_since_ms"]),
            (&json!("disabled"), &json!("disabled by an operator"), &json!(3), &Value::Null),
            "{backend}"
        );
        assert_eq!(queued(&store, &ids[0]).await?, 0, "{backend}: its deliveries are gone");
        assert_eq!(queued(&store, &ids[1]).await?, 2, "{backend}: the other endpoint's stay");
        changed(&collect, &app).await?;
        // The stored row says the same.
        let hook = store.get_webhook(&herald_proto::AppId::new(&app)?, &ids[0]).await?.context("stored")?;
        assert_eq!((hook.dropped, hook.status.as_str()), (3, "disabled"));

        // Disabling again drops nothing more and keeps the reason.
        let r = http.json("PATCH", &hook_url(&server, &app, &ids[0]), Some(ADMIN), json!({"enabled": false})).await?;
        assert_eq!((&r.json()["dropped"], &r.json()["status"]), (&json!(3), &json!("disabled")));

        // Enabling it again: active, no reason, the count kept.
        let r = http.json("PATCH", &hook_url(&server, &app, &ids[0]), Some(ADMIN), json!({"enabled": true})).await?;
        let j = r.json();
        assert_eq!(
            (&j["status"], &j["status_reason"], &j["dropped"], &j["failing_since_ms"]),
            (&json!("active"), &Value::Null, &json!(3), &Value::Null),
            "{backend}"
        );
        // Enabling an endpoint that is on leaves its state alone: it is
        // failing until a delivery succeeds.
        mark_failing(&store, &ids[1], 2_000).await?;
        let r = http.json("PATCH", &hook_url(&server, &app, &ids[1]), Some(ADMIN), json!({"enabled": true})).await?;
        let j = r.json();
        assert_eq!(
            (&j["status"], &j["failing_since_ms"], &j["dropped"]),
            (&json!("failing"), &json!(2_000), &json!(0))
        );
        assert_eq!(queued(&store, &ids[1]).await?, 2);

        // Deleting an endpoint takes its pending deliveries with it.
        let r = http.send("DELETE", &hook_url(&server, &app, &ids[1]), Some(ADMIN), None).await?;
        assert_eq!(r.status, 204);
        assert_eq!(queued(&store, &ids[1]).await?, 0, "{backend}");
        store.close().await;
        server.stop().await;
    }
    Ok(())
}

fn error_code(status: &tonic::Status) -> &str {
    status.metadata().get("herald-error-code").and_then(|v| v.to_str().ok()).unwrap_or("")
}

#[tokio::test]
async fn endpoints_are_managed_over_grpc() -> Result<()> {
    for db in TestDb::both().await? {
        let (server, _edge, collect) = start(db, |c| c.webhook_max_endpoints_per_app = 2).await?;
        let http = Http::default();
        let (app, _, key) = app_with_key(&http, &server, None).await?;
        let ch = Channel::from_shared(format!("http://{}", server.addr))?.connect().await?;
        let mut client = WebhookServiceClient::new(ch);
        collect.take_namespaces_changed(&app);

        let filter = pb::WebhookFilter { kind: Some(webhook_filter::Kind::Namespace("chat".into())) };
        let request = pb::CreateWebhookRequest {
            app_id: app.clone(),
            url: "https://8.8.8.8/grpc".into(),
            events: vec!["member_removed".into(), "channel_occupied".into()],
            format: String::new(),
            filter: Some(filter.clone()),
        };
        let created = client.create_webhook(authed(request.clone(), ADMIN)).await?.into_inner();
        let hook = created.webhook.context("webhook")?;
        assert!(created.secret.starts_with("whsec_"));
        assert_eq!(hook.events, vec!["channel_occupied", "member_removed"]);
        assert_eq!((hook.format.as_str(), hook.status.as_str()), ("herald", "active"));
        assert_eq!(hook.filter, Some(filter));
        changed(&collect, &app).await?;

        let list = client.list_webhooks(authed(pb::ListWebhooksRequest { app_id: app.clone() }, ADMIN)).await?;
        assert_eq!(list.get_ref().webhooks, vec![hook.clone()]);
        let get = pb::GetWebhookRequest { app_id: app.clone(), webhook_id: hook.id.clone() };
        assert_eq!(client.get_webhook(authed(get.clone(), ADMIN)).await?.into_inner(), hook);

        // Only what is given changes; an empty filter means every channel.
        let update = pb::UpdateWebhookRequest {
            app_id: app.clone(),
            webhook_id: hook.id.clone(),
            events: Some(pb::WebhookEvents { events: vec!["cache_miss".into()] }),
            filter: Some(pb::WebhookFilter { kind: None }),
            enabled: Some(false),
            ..Default::default()
        };
        let updated = client.update_webhook(authed(update, ADMIN)).await?.into_inner();
        assert_eq!((updated.events.clone(), updated.filter.clone()), (vec!["cache_miss".to_owned()], None));
        assert_eq!(
            (updated.status.as_str(), updated.status_reason.as_deref()),
            ("disabled", Some("disabled by an operator"))
        );
        assert_eq!(updated.url, hook.url);
        let update = pb::UpdateWebhookRequest {
            app_id: app.clone(),
            webhook_id: hook.id.clone(),
            enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(client.update_webhook(authed(update, ADMIN)).await?.into_inner().status, "active");

        let rotate = pb::RotateWebhookSecretRequest {
            app_id: app.clone(),
            webhook_id: hook.id.clone(),
            overlap_seconds: Some(3_600),
        };
        let rotated = client.rotate_webhook_secret(authed(rotate, ADMIN)).await?.into_inner();
        assert!(rotated.secret.starts_with("whsec_") && rotated.secret != created.secret);
        let until = rotated.webhook.context("webhook")?.previous_secret_expires_at_ms.context("overlap end")?;
        assert!(until > herald_bus::now_ms() + 3_500_000 && until <= herald_bus::now_ms() + 3_600_000, "{until}");

        // Refusals, as statuses with Herald's error codes.
        let bad = pb::CreateWebhookRequest { url: "http://169.254.169.254/".into(), ..request.clone() };
        let e = client.create_webhook(authed(bad, ADMIN)).await.expect_err("a link-local URL");
        assert_eq!((e.code(), error_code(&e)), (Code::InvalidArgument, "bad_request"));
        assert!(e.message().contains("`url`"), "{}", e.message());
        let bad = pb::CreateWebhookRequest { events: vec![], ..request.clone() };
        let e = client.create_webhook(authed(bad, ADMIN)).await.expect_err("no events");
        assert!(e.message().contains("`events`"), "{}", e.message());
        let e = client.create_webhook(authed(request.clone(), &key)).await.expect_err("an API key");
        assert_eq!(e.code(), Code::PermissionDenied);
        client.create_webhook(authed(request.clone(), ADMIN)).await?;
        let e = client.create_webhook(authed(request.clone(), ADMIN)).await.expect_err("over the count");
        assert_eq!(error_code(&e), "limit_exceeded");

        let delete = pb::DeleteWebhookRequest { app_id: app.clone(), webhook_id: hook.id.clone() };
        client.delete_webhook(authed(delete.clone(), ADMIN)).await?;
        let e = client.delete_webhook(authed(delete, ADMIN)).await.expect_err("gone");
        assert_eq!(e.code(), Code::NotFound);
        let e = client.get_webhook(authed(get, ADMIN)).await.expect_err("gone");
        assert_eq!(e.code(), Code::NotFound);
        server.stop().await;
    }
    Ok(())
}
