//! REST integration tests against a real PostgreSQL and NATS (and SQLite
//! with the in-process bus for the embedded mode).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use common::{ADMIN, Http, NATS_URL, Proxy, Server, TestDb, app_with_key, publish_url};
use futures_util::StreamExt as _;
use herald_bus::{Bus, LocalBus, Sink};
use herald_proto::units::HumanDuration;
use herald_proto::{AppId, ChannelName, Claims, bus};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prost::Message as _;
use serde_json::{Value, json};

async fn pg_server() -> Result<Server> {
    Server::start(TestDb::postgres().await?, |_| {}).await
}

async fn nats_sub(server: &Server, app: &str, channel: &str) -> Result<async_nats::Subscriber> {
    common::subscribe_ready(server.subjects.channel(&AppId::new(app)?, &ChannelName::new(channel)?)).await
}

async fn next_message(sub: &mut async_nats::Subscriber) -> Result<bus::ChannelMessage> {
    let msg = tokio::time::timeout(Duration::from_secs(3), sub.next()).await?.context("subscription ended")?;
    Ok(bus::ChannelMessage::decode(msg.payload)?)
}

#[tokio::test]
async fn admin_manages_apps_and_keys() -> Result<()> {
    let server = pg_server().await?;
    let http = Http::default();
    let r = http
        .json(
            "POST",
            &server.url("/v1/apps"),
            Some(ADMIN),
            json!({"id": "chat-app", "name": "Chat", "limits": {"max_message_bytes": 1000}, "allowed_origins": ["https://chat.example"]}),
        )
        .await?;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let app = r.json();
    assert_eq!(app["id"], "chat-app");
    assert_eq!(app["limits"]["max_message_bytes"], 1000);
    assert_eq!(app["limits"]["publish_rate_per_sec"], 1000, "defaults are filled in");
    assert_eq!(app["allowed_origins"], json!(["https://chat.example"]));

    let dup = http.json("POST", &server.url("/v1/apps"), Some(ADMIN), json!({"id": "chat-app", "name": "x"})).await?;
    assert_eq!((dup.status, dup.code().as_str()), (409, "conflict"));

    let list = http.get(&server.url("/v1/apps"), Some(ADMIN)).await?;
    assert_eq!(list.json()["apps"].as_array().map(Vec::len), Some(1));
    let got = http.get(&server.url("/v1/apps/chat-app"), Some(ADMIN)).await?;
    assert_eq!(got.json()["name"], "Chat");

    let patched = http
        .json(
            "PATCH",
            &server.url("/v1/apps/chat-app"),
            Some(ADMIN),
            json!({"name": "Chat 2", "limits": {"publish_rate_per_sec": 7}}),
        )
        .await?;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.json()["limits"]["publish_rate_per_sec"], 7);
    assert_eq!(patched.json()["limits"]["max_message_bytes"], 1000, "unchanged limits stay");

    let created = http
        .json(
            "POST",
            &server.url("/v1/apps/chat-app/keys"),
            Some(ADMIN),
            json!({"name": "backend", "capabilities": {"chat:*": ["publish"]}}),
        )
        .await?;
    assert_eq!(created.status, 201);
    let key = created.json();
    let secret = key["key"].as_str().context("key")?;
    assert!(secret.starts_with(&format!("hk_{}_", key["id"].as_str().context("id")?)));
    let keys = http.get(&server.url("/v1/apps/chat-app/keys"), Some(ADMIN)).await?;
    assert_eq!(keys.status, 200);
    assert!(!String::from_utf8_lossy(&keys.body).contains(secret), "a key's secret is shown once only");
    assert_eq!(keys.json()["keys"][0]["capabilities"], json!({"chat:*": ["publish"]}));

    let revoke_url = server.url(&format!("/v1/apps/chat-app/keys/{}", key["id"].as_str().context("id")?));
    let revoked = http.send("DELETE", &revoke_url, Some(ADMIN), None).await?;
    assert_eq!(revoked.status, 200);
    assert_eq!(revoked.json()["edges_notified"], true);
    let keys = http.get(&server.url("/v1/apps/chat-app/keys"), Some(ADMIN)).await?;
    assert!(keys.json()["keys"][0]["revoked_at"].is_i64());
    let missing = http.send("DELETE", &server.url("/v1/apps/chat-app/keys/knope"), Some(ADMIN), None).await?;
    assert_eq!((missing.status, missing.code().as_str()), (404, "not_found"));
    // The JWKS lists the revocation for edges that missed the event, for
    // the longest token lifetime (default a day) plus the replicas' cache
    // time (5 s) and five minutes; tokens issued up to the revocation plus
    // the cache time (rounded up) are refused.
    let revoked_at = revoked.json()["revoked_at"].as_i64().context("revoked_at")?;
    let jwks = http.get(&server.url("/.well-known/jwks.json"), None).await?.json();
    let entry = &jwks["herald_revoked"][0];
    assert_eq!(jwks["herald_revoked"].as_array().map(Vec::len), Some(1), "{jwks}");
    assert_eq!((&entry["app"], &entry["key"]), (&json!("chat-app"), &key["id"]));
    assert_eq!(entry["until"], json!(revoked_at + 86_400 + 5 + 300));
    let at = entry["at"].as_i64().context("at")?;
    assert!((revoked_at + 5..=revoked_at + 6).contains(&at), "{entry}");

    let deleted = http.send("DELETE", &server.url("/v1/apps/chat-app"), Some(ADMIN), None).await?;
    assert_eq!(deleted.status, 204);
    let gone = http.get(&server.url("/v1/apps/chat-app"), Some(ADMIN)).await?;
    assert_eq!((gone.status, gone.code().as_str()), (404, "not_found"));
    // The deletion replaces the key's entry (its row went with the app) by
    // one for every token of the app.
    let jwks = http.get(&server.url("/.well-known/jwks.json"), None).await?.json();
    let revoked = &jwks["herald_revoked"];
    assert_eq!(revoked.as_array().map(Vec::len), Some(1), "{revoked}");
    assert!(revoked[0]["key"].is_null(), "{revoked}");
    assert_eq!(revoked[0]["app"], "chat-app");
    assert!(revoked[0]["at"].as_i64().context("at")? >= revoked_at);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn publish_reaches_nats_single_and_batched() -> Result<()> {
    let server = pg_server().await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let mut sub = nats_sub(&server, &app, "chat:room-1").await?;
    let mut other = nats_sub(&server, &app, "news").await?;

    let r = http
        .json(
            "POST",
            &publish_url(&server, &app, "chat:room-1"),
            Some(&key),
            json!({"data": {"text": "hi"}, "name": "msg"}),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let id = r.json()["id"].as_str().context("id")?.to_owned();
    let m = next_message(&mut sub).await?;
    assert_eq!((m.app_id.as_str(), m.channel.as_str(), m.id.as_str()), (app.as_str(), "chat:room-1", id.as_str()));
    assert_eq!(&m.data[..], br#"{"text":"hi"}"#);
    assert_eq!(m.event.as_deref(), Some("msg"));
    assert!(m.publisher.is_empty());

    // A string is sent as its text; base64 as bytes.
    http.json("POST", &publish_url(&server, &app, "chat:room-1"), Some(&key), json!({"data": "plain"})).await?;
    assert_eq!(&next_message(&mut sub).await?.data[..], b"plain");
    http.json(
        "POST",
        &publish_url(&server, &app, "chat:room-1"),
        Some(&key),
        json!({"data": "AAH/", "encoding": "base64"}),
    )
    .await?;
    assert_eq!(&next_message(&mut sub).await?.data[..], &[0, 1, 255]);

    // Percent-encoded channel names.
    let mut slashed = nats_sub(&server, &app, "a/b#c").await?;
    let r = http.json("POST", &publish_url(&server, &app, "a%2Fb%23c"), Some(&key), json!({"data": 1})).await?;
    assert_eq!(r.status, 202);
    assert_eq!(next_message(&mut slashed).await?.channel, "a/b#c");

    // A batch: one result per message, in order; invalid ones do not stop the rest.
    let r = http
        .json(
            "POST",
            &server.url(&format!("/v1/apps/{app}/messages")),
            Some(&key),
            json!({"messages": [
                {"channel": "chat:room-1", "data": "one"},
                {"channels": ["chat:room-1", "news"], "data": "two", "name": "e"},
                {"channel": "bad name", "data": "three"},
                {"channel": "chat:room-1", "data": "four", "id": "batch-4"}
            ]}),
        )
        .await?;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let results = r.json()["results"].clone();
    assert!(results[0]["id"].is_string());
    assert!(results[1]["id"].is_string());
    assert_eq!(results[2]["error"]["code"], "invalid_channel");
    assert_eq!(results[3]["id"], "batch-4");
    let got: Vec<Vec<u8>> = vec![
        next_message(&mut sub).await?.data.to_vec(),
        next_message(&mut sub).await?.data.to_vec(),
        next_message(&mut sub).await?.data.to_vec(),
    ];
    assert_eq!(got, [b"one".to_vec(), b"two".to_vec(), b"four".to_vec()], "batch order is kept");
    assert_eq!(&next_message(&mut other).await?.data[..], b"two");
    server.stop().await;
    Ok(())
}

/// A full batch of plain messages with others among them (an idempotency
/// id, two channels, an invalid one): every message reaches the channel in
/// batch order, and the results come back in batch order.
#[tokio::test]
async fn a_full_mixed_batch_keeps_its_order() -> Result<()> {
    let server = pg_server().await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let mut sub = nats_sub(&server, &app, "chat:room-1").await?;
    let messages: Vec<Value> = (0..100)
        .map(|i| match i {
            30 => json!({"channel": "chat:room-1", "data": format!("m{i}"), "id": "mixed-30"}),
            31 | 60 => json!({"channels": ["chat:room-1", "news"], "data": format!("m{i}")}),
            70 => json!({"channel": "bad name", "data": format!("m{i}")}),
            _ => json!({"channel": "chat:room-1", "data": format!("m{i}")}),
        })
        .collect();
    let r = http
        .json("POST", &server.url(&format!("/v1/apps/{app}/messages")), Some(&key), json!({"messages": messages}))
        .await?;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let results = r.json()["results"].as_array().context("results")?.clone();
    assert_eq!(results.len(), 100);
    for (i, result) in results.iter().enumerate() {
        match i {
            30 => assert_eq!(result["id"], "mixed-30"),
            70 => assert_eq!(result["error"]["code"], "invalid_channel"),
            _ => assert!(result["id"].is_string(), "{i}: {result}"),
        }
    }
    for i in (0..100).filter(|i| *i != 70) {
        let m = next_message(&mut sub).await?;
        assert_eq!(String::from_utf8_lossy(&m.data), format!("m{i}"), "batch order is kept");
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn revocation_event_reaches_nats_within_a_second_and_other_replicas_follow() -> Result<()> {
    let db = TestDb::postgres().await?;
    let url = db.url.clone();
    let a = Server::start(db, |c| c.cache_ttl = HumanDuration::secs(60)).await?;
    // A second replica over the same database and subject space.
    let b_db = TestDb::shared(&url);
    let b_bp = common::nats_backplane_at(NATS_URL, a.subjects.clone()).await?;
    let b = Server::start_with(b_db, b_bp, a.subjects.clone(), |c| c.cache_ttl = HumanDuration::secs(60)).await?;
    let http = Http::default();
    let (app, key_id, key) = app_with_key(&http, &a, None).await?;
    // Warm B's cache with the key.
    let r = http.json("POST", &publish_url(&b, &app, "c"), Some(&key), json!({"data": 1})).await?;
    assert_eq!(r.status, 202);

    let mut control = common::subscribe_ready(a.subjects.control()).await?;
    let started = std::time::Instant::now();
    let r = http.send("DELETE", &a.url(&format!("/v1/apps/{app}/keys/{key_id}")), Some(ADMIN), None).await?;
    assert_eq!(r.status, 200);
    let msg = tokio::time::timeout(Duration::from_secs(1), control.next()).await?.context("control")?;
    let event = bus::ControlEvent::decode(msg.payload)?;
    assert!(started.elapsed() < Duration::from_secs(1));
    match event.kind {
        Some(bus::control_event::Kind::KeyRevoked(k)) => assert_eq!((k.app_id, k.key_id), (app.clone(), key_id)),
        other => panic!("unexpected event {other:?}"),
    }
    // The other replica drops the key on the event, long before its cache TTL.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let r = http.json("POST", &publish_url(&b, &app, "c"), Some(&key), json!({"data": 1})).await?;
        if r.status == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "replica B still accepts the revoked key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
    a.stop().await;
    Ok(())
}

#[tokio::test]
async fn nats_unreachable_gives_503_never_202() -> Result<()> {
    let proxy = Proxy::start("127.0.0.1:4222").await?;
    let subjects = common::subjects();
    let bus = common::nats_backplane_at(&proxy.url(), subjects.clone()).await?;
    let server = Server::start_with(TestDb::postgres().await?, bus, subjects, |_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let r = http.json("POST", &publish_url(&server, &app, "c"), Some(&key), json!({"data": 1})).await?;
    assert_eq!(r.status, 202);
    assert_eq!(http.get(&server.url("/readyz"), None).await?.status, 200);

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let r = http
            .json("POST", &publish_url(&server, &app, "c"), Some(&key), json!({"data": 1, "id": "retry-me"}))
            .await?;
        assert_eq!((r.status, r.code().as_str()), (503, "unavailable"), "{}", String::from_utf8_lossy(&r.body));
    }
    let r = http
        .json(
            "POST",
            &server.url(&format!("/v1/apps/{app}/messages")),
            Some(&key),
            json!({"messages": [{"channel": "c", "data": 1}]}),
        )
        .await?;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["results"][0]["error"]["code"], "unavailable");
    let ready = http.get(&server.url("/readyz"), None).await?;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["failing"], json!(["bus"]));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn idempotency_id_dedupes_retries() -> Result<()> {
    let server = pg_server().await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let mut sub = nats_sub(&server, &app, "orders").await?;
    let url = publish_url(&server, &app, "orders");
    let first = http.json("POST", &url, Some(&key), json!({"data": "A", "id": "order-42"})).await?;
    let second = http.json("POST", &url, Some(&key), json!({"data": "A", "id": "order-42"})).await?;
    let other = http.json("POST", &url, Some(&key), json!({"data": "B", "id": "order-43"})).await?;
    assert_eq!((first.status, second.status, other.status), (202, 202, 202));
    assert_eq!(first.json()["id"], "order-42");
    assert_eq!(second.json()["id"], "order-42");
    assert_eq!(second.json()["duplicate"], true);
    assert_eq!(next_message(&mut sub).await?.id, "order-42");
    assert_eq!(next_message(&mut sub).await?.id, "order-43", "the retry was not sent again");
    // Concurrent duplicates: exactly one goes out.
    let sends = (0..10).map(|_| http.json("POST", &url, Some(&key), json!({"data": "C", "id": "order-44"})));
    let replies = futures_util::future::join_all(sends).await;
    assert!(replies.iter().all(|r| r.as_ref().is_ok_and(|r| r.status == 202)));
    assert_eq!(next_message(&mut sub).await?.id, "order-44");
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err(), "no second copy");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn idempotency_is_shared_between_replicas_over_postgres() -> Result<()> {
    let db = TestDb::postgres().await?;
    let url = db.url.clone();
    let a = Server::start(db, |_| {}).await?;
    let b_bp = common::nats_backplane_at(NATS_URL, a.subjects.clone()).await?;
    let b = Server::start_with(TestDb::shared(&url), b_bp, a.subjects.clone(), |_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &a, None).await?;
    let mut sub = nats_sub(&a, &app, "orders").await?;
    let body = json!({"data": "A", "id": "order-7"});
    let first = http.json("POST", &publish_url(&a, &app, "orders"), Some(&key), body.clone()).await?;
    let retry = http.json("POST", &publish_url(&b, &app, "orders"), Some(&key), body.clone()).await?;
    assert_eq!((first.status, retry.status), (202, 202));
    assert_eq!(retry.json()["duplicate"], true, "the other replica knows the id");
    // Concurrent attempts on both replicas: one message.
    let other = json!({"data": "B", "id": "order-8"});
    let (url_a, url_b) = (publish_url(&a, &app, "orders"), publish_url(&b, &app, "orders"));
    let (x, y) = tokio::join!(
        http.json("POST", &url_a, Some(&key), other.clone()),
        http.json("POST", &url_b, Some(&key), other.clone())
    );
    assert_eq!((x?.status, y?.status), (202, 202));
    assert_eq!(next_message(&mut sub).await?.id, "order-7");
    assert_eq!(next_message(&mut sub).await?.id, "order-8");
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err(), "no second copy");
    b.stop().await;
    a.stop().await;
    Ok(())
}

#[tokio::test]
async fn publish_rate_limit_answers_429() -> Result<()> {
    let server = pg_server().await?;
    let http = Http::default();
    let r = http
        .json(
            "POST",
            &server.url("/v1/apps"),
            Some(ADMIN),
            json!({"id": "slow", "name": "s", "limits": {"publish_rate_per_sec": 3}}),
        )
        .await?;
    assert_eq!(r.status, 201);
    let key =
        http.json("POST", &server.url("/v1/apps/slow/keys"), Some(ADMIN), json!({"name": "k"})).await?.json()["key"]
            .as_str()
            .context("key")?
            .to_owned();
    let url = publish_url(&server, "slow", "c");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(http.json("POST", &url, Some(&key), json!({"data": 1})).await?);
    }
    assert_eq!(statuses.iter().filter(|r| r.status == 202).count(), 3);
    let limited = statuses.iter().find(|r| r.status == 429).context("a 429")?;
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
    server.stop().await;
    Ok(())
}

fn verify(token: &str, jwks: &Value) -> Result<Claims> {
    let header = jsonwebtoken::decode_header(token)?;
    assert_eq!(header.alg, Algorithm::EdDSA);
    let kid = header.kid.context("kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == kid.as_str()))
        .with_context(|| format!("kid {kid} not in the JWKS"))?;
    assert_eq!(
        (&jwk["kty"], &jwk["crv"], &jwk["alg"], &jwk["use"]),
        (&json!("OKP"), &json!("Ed25519"), &json!("EdDSA"), &json!("sig"))
    );
    let key = DecodingKey::from_ed_components(jwk["x"].as_str().context("x")?)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[herald_proto::claims::AUDIENCE]);
    validation.set_issuer(&[herald_proto::claims::DEFAULT_ISSUER]);
    Ok(jsonwebtoken::decode::<Claims>(token, &key, &validation)?.claims)
}

#[tokio::test]
async fn tokens_verify_against_jwks_until_rotated_out_and_the_overlap_passed() -> Result<()> {
    let server = pg_server().await?;
    let http = Http::default();
    let (app, key_id, key) =
        app_with_key(&http, &server, Some(json!({"chat:*": ["subscribe", "publish", "presence"]}))).await?;
    let tokens = server.url(&format!("/v1/apps/{app}/tokens"));
    let r = http
        .json("POST", &tokens, Some(&key), json!({"client_id": "user-1", "capabilities": {"chat:room": ["subscribe"]}, "ttl_seconds": 600, "info": {"name": "Ada"}}))
        .await?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let old = r.json()["token"].as_str().context("token")?.to_owned();
    let expires_at = r.json()["expires_at"].as_i64().context("expires_at")?;
    let jwks = http.get(&server.url("/.well-known/jwks.json"), None).await?.json();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    let claims = verify(&old, &jwks)?;
    assert_eq!(
        (claims.sub.as_str(), claims.app.as_str(), claims.key.as_str()),
        ("user-1", app.as_str(), key_id.as_str())
    );
    assert_eq!(claims.exp, expires_at);
    assert_eq!(claims.exp - claims.iat, 600);
    assert_eq!(serde_json::to_value(&claims.caps)?, json!({"chat:room": ["subscribe"]}));
    assert_eq!(claims.info.as_ref().and_then(|i| i.get("name")), Some(&json!("Ada")));
    // The app's limits travel in the token, for edges to apply offline.
    let lim = claims.lim.context("lim claim")?;
    assert_eq!((lim.max_message_bytes, lim.max_connections), (Some(64 * 1024), Some(10_000)));
    assert!(claims.origins.is_empty(), "no allowlist: every origin");
    // Without capabilities, the token gets the key's; without TTL, one hour.
    let r = http.json("POST", &tokens, Some(&key), json!({"client_id": "user-2"})).await?;
    let claims = verify(r.json()["token"].as_str().context("token")?, &jwks)?;
    assert_eq!(serde_json::to_value(&claims.caps)?, json!({"chat:*": ["subscribe", "publish", "presence"]}));
    assert_eq!(claims.exp - claims.iat, 3600);

    // Rotate with a one-second overlap: both keys are served, both tokens verify.
    let r =
        http.json("POST", &server.url("/v1/signing-keys/rotate"), Some(ADMIN), json!({"overlap_seconds": 1})).await?;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let rotation = r.json();
    let jwks = http.get(&server.url("/.well-known/jwks.json"), None).await?.json();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2));
    assert_eq!(jwks["keys"][0]["kid"], rotation["kid"], "the current key comes first");
    verify(&old, &jwks)?;
    let new = http.json("POST", &tokens, Some(&key), json!({"client_id": "user-1"})).await?.json()["token"]
        .as_str()
        .context("token")?
        .to_owned();
    assert_eq!(jsonwebtoken::decode_header(&new)?.kid.as_deref(), rotation["kid"].as_str());
    verify(&new, &jwks)?;

    // Once the overlap has passed, the old key is gone and its tokens fail.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let jwks = http.get(&server.url("/.well-known/jwks.json"), None).await?.json();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    assert!(verify(&old, &jwks).is_err(), "a token of a rotated-out key must not verify");
    verify(&new, &jwks)?;
    // A tampered token fails too.
    let mut tampered = new.clone();
    tampered.insert(tampered.len() - 2, 'A');
    assert!(verify(&tampered, &jwks).is_err());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi() -> Result<()> {
    let server = pg_server().await?;
    let http = Http::default();
    assert_eq!(http.get(&server.url("/healthz"), None).await?.status, 200);
    let ready = http.get(&server.url("/readyz"), None).await?;
    assert_eq!((ready.status, ready.json()["status"].clone()), (200, json!("ready")));
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    http.json("POST", &publish_url(&server, &app, "c"), Some(&key), json!({"data": 1})).await?;
    let metrics = http.get(&server.url("/metrics"), None).await?;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(text.contains("herald_cp_messages_published_total"), "{text}");
    assert!(!text.contains(ADMIN));
    let doc = http.get(&server.url("/v1/openapi.json"), None).await?.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    assert!(doc["paths"]["/v1/apps/{app_id}/channels/{channel}/messages"]["post"].is_object());
    assert!(doc["components"]["schemas"]["PublishBody"].is_object());
    server.stop().await;
    Ok(())
}

/// Collects what an in-process bus delivers.
#[derive(Default)]
struct Collect(Mutex<Vec<bus::ChannelMessage>>);

impl Sink for Collect {
    fn deliver(
        &self,
        _app: &AppId,
        _channel: &ChannelName,
        _subscription: u64,
        payload: bytes::Bytes,
        _position: Option<&herald_bus::Position>,
    ) {
        if let Ok(m) = bus::ChannelMessage::decode(payload) {
            self.0.lock().expect("lock").push(m);
        }
    }

    fn control(&self, _event: bus::ControlEvent) {}
}

#[tokio::test]
async fn embedded_mode_sqlite_and_in_process_bus() -> Result<()> {
    let bus_ = LocalBus::new();
    let edge_side = Bus::local(&bus_);
    let collect = Arc::new(Collect::default());
    edge_side.attach(collect.clone()).await?;
    let server = Server::start_with(TestDb::sqlite(), Bus::local(&bus_), common::subjects(), |_| {}).await?;
    let http = Http::default();
    let (app, _, key) = app_with_key(&http, &server, None).await?;
    let _sub = edge_side.subscribe(&AppId::new(&app)?, &ChannelName::new("lobby")?, 1).await?;
    let r = http.json("POST", &publish_url(&server, &app, "lobby"), Some(&key), json!({"data": "hello"})).await?;
    assert_eq!(r.status, 202);
    let got = collect.0.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].data[..], b"hello");
    let token = http
        .json("POST", &server.url(&format!("/v1/apps/{app}/tokens")), Some(&key), json!({"client_id": "u"}))
        .await?;
    let jwks = http.get(&server.url("/.well-known/jwks.json"), None).await?.json();
    verify(token.json()["token"].as_str().context("token")?, &jwks)?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn shutdown_stops_serving_within_the_deadline() -> Result<()> {
    let server = Server::start(TestDb::sqlite(), |c| c.shutdown_timeout = HumanDuration::secs(2)).await?;
    let http = Http::default();
    assert_eq!(http.get(&server.url("/healthz"), None).await?.status, 200);
    let addr = server.addr;
    let started = std::time::Instant::now();
    server.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown is bounded");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
    Ok(())
}

#[tokio::test]
async fn slow_request_heads_and_excess_connections_are_cut() -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = Server::start(TestDb::sqlite(), |c| {
        c.header_read_timeout = HumanDuration::millis(300);
        c.max_http_connections = 2;
    })
    .await?;
    // A request head that never completes is cut after the timeout.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await?;
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(3), slow.read(&mut buf)).await??;
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(slow);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // Two connections are served; a third is closed at once.
    let mut a = tokio::net::TcpStream::connect(server.addr).await?;
    let mut b = tokio::net::TcpStream::connect(server.addr).await?;
    for s in [&mut a, &mut b] {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await?;
        let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await??;
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    let mut c = tokio::net::TcpStream::connect(server.addr).await?;
    let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await?.unwrap_or(0);
    assert_eq!(n, 0, "the connection over the limit is closed");
    drop((a, b));
    server.stop().await;
    Ok(())
}
