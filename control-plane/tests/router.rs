//! The REST router driven in process (`tower::ServiceExt::oneshot`), with
//! the in-process bus and SQLite: no NATS, no socket. For each resource a
//! happy path, and the rejections every route shares: malformed JSON,
//! unknown fields, bodies over the limit, missing or wrong credentials,
//! unknown apps.

mod common;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::body::Body;
use common::{ADMIN, TestDb};
use herald_bus::{Bus, LocalBus};
use herald_control_plane::ControlPlane;
use herald_proto::units::ByteSize;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

const BODY_LIMIT: u64 = 4096;

struct Api {
    router: Router,
    _cp: ControlPlane,
    _db: TestDb,
}

struct Reply {
    status: u16,
    body: Value,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Api {
    async fn new() -> Result<Self> {
        let db = TestDb::sqlite();
        let mut config = common::config(&db);
        config.max_body_size = ByteSize(BODY_LIMIT);
        config.max_message_size_ceiling = ByteSize(2048);
        config.default_max_message_size = ByteSize::kib(1);
        let cp = ControlPlane::new(config, Bus::local(&LocalBus::new())).await?;
        Ok(Self { router: cp.router(), _cp: cp, _db: db })
    }

    async fn raw(&self, method: &str, path: &str, auth: Option<&str>, body: Option<String>) -> Result<Reply> {
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from))?;
        let res = self.router.clone().oneshot(req).await?;
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) })
    }

    async fn call(&self, method: &str, path: &str, auth: Option<&str>, body: Option<Value>) -> Result<Reply> {
        self.raw(method, path, auth, body.map(|b| b.to_string())).await
    }

    /// An app and a key of it with every capability: (app id, key).
    async fn app_with_key(&self, id: &str) -> Result<(String, String)> {
        let r = self.call("POST", "/v1/apps", Some(ADMIN), Some(json!({"id": id, "name": id}))).await?;
        anyhow::ensure!(r.status == 201, "create app: {} {}", r.status, r.body);
        let r = self.call("POST", &format!("/v1/apps/{id}/keys"), Some(ADMIN), Some(json!({"name": "k"}))).await?;
        anyhow::ensure!(r.status == 201, "create key: {} {}", r.status, r.body);
        Ok((id.to_owned(), r.body["key"].as_str().context("key")?.to_owned()))
    }
}

#[tokio::test]
async fn apps() -> Result<()> {
    let api = Api::new().await?;
    let r = api
        .call(
            "POST",
            "/v1/apps",
            Some(ADMIN),
            Some(json!({"id": "a1", "name": "One", "limits": {"max_connections": 5}})),
        )
        .await?;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["limits"]["max_connections"], 5);
    let r = api.call("GET", "/v1/apps", Some(ADMIN), None).await?;
    assert_eq!((r.status, r.body["apps"].as_array().map(Vec::len)), (200, Some(1)));
    let r = api.call("PATCH", "/v1/apps/a1", Some(ADMIN), Some(json!({"name": "Uno"}))).await?;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("Uno")));
    assert_eq!(r.body["limits"]["max_connections"], 5, "unchanged limits stay");
    let r = api.call("GET", "/v1/apps/a1", Some(ADMIN), None).await?;
    assert_eq!((r.status, r.body["name"].as_str()), (200, Some("Uno")));
    assert_eq!(api.call("DELETE", "/v1/apps/a1", Some(ADMIN), None).await?.status, 204);
    let r = api.call("GET", "/v1/apps/a1", Some(ADMIN), None).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = api.call("PATCH", "/v1/apps/nope", Some(ADMIN), Some(json!({"name": "x"}))).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    Ok(())
}

#[tokio::test]
async fn rejections_shared_by_every_route() -> Result<()> {
    let api = Api::new().await?;
    let (_, key) = api.app_with_key("a1").await?;

    let r = api.raw("POST", "/v1/apps", Some(ADMIN), Some("{\"name\": ".to_owned())).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"), "malformed JSON");
    let r = api.call("POST", "/v1/apps", Some(ADMIN), Some(json!({"name": "x", "colour": "red"}))).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"), "unknown field");
    assert!(r.body["error"]["message"].as_str().unwrap_or("").contains("colour"), "{}", r.body);
    let big = json!({"name": "x".repeat(BODY_LIMIT as usize)});
    let r = api.call("POST", "/v1/apps", Some(ADMIN), Some(big)).await?;
    assert_eq!((r.status, r.code()), (413, "too_large"), "body over the limit");

    let r = api.call("GET", "/v1/apps", None, None).await?;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "no credentials");
    let r = api.call("GET", "/v1/apps", Some("wrong"), None).await?;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "wrong credentials");
    let r = api.call("GET", "/v1/apps", Some(&key), None).await?;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "an API key on an admin route");
    let r = api.call("GET", "/v1/nowhere", Some(ADMIN), None).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"), "unknown route");
    let r = api.call("PUT", "/v1/apps", Some(ADMIN), None).await?;
    assert_eq!(r.status, 405, "method not allowed");
    Ok(())
}

#[tokio::test]
async fn keys() -> Result<()> {
    let api = Api::new().await?;
    let (app, key) = api.app_with_key("a1").await?;
    let r = api.call("GET", &format!("/v1/apps/{app}/keys"), Some(ADMIN), None).await?;
    assert_eq!(r.status, 200);
    let id = r.body["keys"][0]["id"].as_str().context("key id")?.to_owned();
    let r = api.call("DELETE", &format!("/v1/apps/{app}/keys/{id}"), Some(ADMIN), None).await?;
    assert_eq!((r.status, r.body["id"].as_str()), (200, Some(id.as_str())));
    let r = api.call("GET", &format!("/v1/apps/{app}/channels"), Some(&key), None).await?;
    assert_eq!((r.status, r.code()), (401, "unauthorized"), "a revoked key");
    let r = api.call("POST", "/v1/apps/nope/keys", Some(ADMIN), Some(json!({"name": "k"}))).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = api.call("POST", &format!("/v1/apps/{app}/keys"), Some(ADMIN), Some(json!({"nom": "k"}))).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    Ok(())
}

#[tokio::test]
async fn signing_keys_and_jwks() -> Result<()> {
    let api = Api::new().await?;
    let (_, key) = api.app_with_key("a1").await?;
    let before = api.call("GET", "/.well-known/jwks.json", None, None).await?;
    assert_eq!(before.status, 200);
    let r = api.call("POST", "/v1/signing-keys/rotate", Some(ADMIN), Some(json!({"overlap_seconds": 60}))).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let kid = r.body["kid"].as_str().context("kid")?.to_owned();
    assert_eq!(r.body["previous_kid"], before.body["keys"][0]["kid"]);
    let after = api.call("GET", "/.well-known/jwks.json", None, None).await?;
    assert_eq!(after.body["keys"][0]["kid"].as_str(), Some(kid.as_str()));
    let r = api.call("POST", "/v1/signing-keys/rotate", Some(&key), None).await?;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = api.call("POST", "/v1/signing-keys/rotate", Some(ADMIN), Some(json!({"overlap": 1}))).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    Ok(())
}

#[tokio::test]
async fn tokens() -> Result<()> {
    let api = Api::new().await?;
    let (app, key) = api.app_with_key("a1").await?;
    let (_, other) = api.app_with_key("a2").await?;
    let path = format!("/v1/apps/{app}/tokens");
    let r = api.call("POST", &path, Some(&key), Some(json!({"client_id": "u1", "ttl_seconds": 60}))).await?;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["token"].as_str().is_some_and(|t| t.split('.').count() == 3));
    let r = api.call("POST", &path, Some(&other), Some(json!({"client_id": "u1"}))).await?;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "another app's key");
    let r = api.call("POST", "/v1/apps/nope/tokens", Some(ADMIN), Some(json!({"client_id": "u1"}))).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = api.call("POST", &path, Some(&key), Some(json!({"client_id": "u1", "ttl_seconds": "long"}))).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    Ok(())
}

#[tokio::test]
async fn publish() -> Result<()> {
    let api = Api::new().await?;
    let (app, key) = api.app_with_key("a1").await?;
    let one = format!("/v1/apps/{app}/channels/lobby/messages");
    let r = api.call("POST", &one, Some(&key), Some(json!({"data": {"text": "hi"}, "name": "chat"}))).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body["id"].as_str().is_some());
    let batch = format!("/v1/apps/{app}/messages");
    let body = json!({"messages": [{"channel": "lobby", "data": "a"}, {"channels": ["x", "y"], "data": "b"},
                                   {"channel": "lobby", "channels": ["x"], "data": "c"}]});
    let r = api.call("POST", &batch, Some(&key), Some(body)).await?;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body["results"][0]["id"].is_string());
    assert!(r.body["results"][1]["id"].is_string());
    assert_eq!(r.body["results"][2]["error"]["code"], "bad_request", "channel and channels");
    let r = api.call("POST", &batch, Some(&key), Some(json!({"messages": []}))).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    let r = api.call("POST", &one, Some(&key), Some(json!({"data": "x".repeat(1500)}))).await?;
    assert_eq!((r.status, r.code()), (413, "too_large"), "over the app's message limit");
    let r = api.call("POST", &one, Some(&key), Some(json!({"data": "x", "ttl": 1}))).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    let r = api.call("POST", "/v1/apps/nope/channels/lobby/messages", Some(ADMIN), Some(json!({"data": 1}))).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    let r = api.call("POST", &one, None, Some(json!({"data": 1}))).await?;
    assert_eq!((r.status, r.code()), (401, "unauthorized"));
    Ok(())
}

#[tokio::test]
async fn namespaces() -> Result<()> {
    let api = Api::new().await?;
    let (app, key) = api.app_with_key("a1").await?;
    let path = format!("/v1/apps/{app}/namespaces/room");
    let r = api.call("PUT", &path, Some(ADMIN), Some(json!({"presence": true}))).await?;
    assert_eq!((r.status, r.body["presence"].as_bool()), (201, Some(true)), "{}", r.body);
    let r = api.call("PUT", &path, Some(ADMIN), Some(json!({"presence": true, "join_leave": true}))).await?;
    assert_eq!(r.status, 200, "replaced");
    let r = api.call("GET", &path, Some(&key), None).await?;
    assert_eq!((r.status, r.body["join_leave"].as_bool()), (200, Some(true)));
    let r = api.call("GET", &format!("/v1/apps/{app}/namespaces"), Some(&key), None).await?;
    assert_eq!((r.status, r.body["namespaces"].as_array().map(Vec::len)), (200, Some(1)));
    let r = api.call("PUT", &path, Some(&key), Some(json!({}))).await?;
    assert_eq!((r.status, r.code()), (403, "forbidden"), "keys only read");
    let r = api.call("PUT", &path, Some(ADMIN), Some(json!({"join_leave": true}))).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"), "join_leave needs presence");
    let r = api.call("PUT", "/v1/apps/nope/namespaces/room", Some(ADMIN), Some(json!({}))).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    assert_eq!(api.call("DELETE", &path, Some(ADMIN), None).await?.status, 204);
    let r = api.call("GET", &path, Some(ADMIN), None).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    Ok(())
}

#[tokio::test]
async fn channels_history_and_presence() -> Result<()> {
    let api = Api::new().await?;
    let (app, key) = api.app_with_key("a1").await?;
    let (_, other) = api.app_with_key("a2").await?;
    let r = api
        .call("PUT", &format!("/v1/apps/{app}/namespaces/room"), Some(ADMIN), Some(json!({"presence": true})))
        .await?;
    assert_eq!(r.status, 201);
    let r = api.call("GET", &format!("/v1/apps/{app}/channels"), Some(&key), None).await?;
    assert_eq!((r.status, r.body["channels"].as_array().map(Vec::len)), (200, Some(0)));
    let r = api.call("GET", &format!("/v1/apps/{app}/channels/room:1/presence"), Some(&key), None).await?;
    assert_eq!((r.status, r.body["count"].as_u64()), (200, Some(0)), "{}", r.body);
    let r = api.call("GET", &format!("/v1/apps/{app}/channels/lobby/presence"), Some(&key), None).await?;
    assert_eq!((r.status, r.code()), (400, "not_enabled"));
    let r = api.call("GET", &format!("/v1/apps/{app}/channels/room:1/history"), Some(&key), None).await?;
    assert_eq!((r.status, r.code()), (400, "not_enabled"), "presence only, no history");
    let r = api.call("GET", &format!("/v1/apps/{app}/channels/room:1/history?limit=0"), Some(&key), None).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"));
    let r = api.call("GET", &format!("/v1/apps/{app}/channels?colour=red"), Some(&key), None).await?;
    assert_eq!((r.status, r.code()), (400, "bad_request"), "unknown query field");
    let r = api.call("GET", &format!("/v1/apps/{app}/channels"), Some(&other), None).await?;
    assert_eq!((r.status, r.code()), (403, "forbidden"));
    let r = api.call("GET", "/v1/apps/nope/channels", Some(ADMIN), None).await?;
    assert_eq!((r.status, r.code()), (404, "not_found"));
    Ok(())
}

#[tokio::test]
async fn operations() -> Result<()> {
    let api = Api::new().await?;
    assert_eq!(api.call("GET", "/healthz", None, None).await?.status, 200);
    let r = api.call("GET", "/readyz", None, None).await?;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ready")));
    assert_eq!(api.call("GET", "/metrics", None, None).await?.status, 200);
    let r = api.call("GET", "/v1/openapi.json", None, None).await?;
    assert!(r.body["paths"]["/v1/apps"].is_object());
    Ok(())
}
