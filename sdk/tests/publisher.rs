//! The publisher against a real control plane (SQLite, in-process bus), and
//! the whole path: a backend mints tokens and publishes through the REST
//! API, an app connected to an edge receives.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::StreamExt as _;
use herald_bus::{Bus, LocalBus};
use herald_control_plane::{Config, Secret};
use herald_edge::EdgeConfig;
use herald_edge::testing::{TestEdge, http_get, within};
use herald_proto::ErrorCode;
use herald_sdk::{BatchMessage, Client, Data, Publisher, RestError, TokenRequest};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: &str = "sdk-test-admin-token-0123456789";

/// A control plane on port 0 with a fresh SQLite file; deleted on drop.
struct ControlPlane {
    addr: SocketAddr,
    db: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    async fn start(bus: &LocalBus) -> Self {
        let n: u64 =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let db = std::env::temp_dir().join(format!("herald-sdk-test-{}-{n}.db", std::process::id()));
        let config = Config {
            database_url: format!("sqlite://{}", db.display()),
            admin_token: Some(Secret::new(ADMIN)),
            ..Config::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let bus = Bus::local(bus);
        let task = tokio::spawn(async move {
            if let Err(e) = herald_control_plane::run(listener, config, bus, std::future::pending()).await {
                panic!("control plane: {e}");
            }
        });
        for _ in 0..400 {
            if http_get(addr, "/readyz").await.is_some_and(|(status, _)| status == 200) {
                return Self { addr, db, task };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("control plane did not become ready");
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An admin call; returns status and JSON body.
    async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json = text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
        (status, json)
    }

    /// Creates app `id` and an API key for it; returns the key.
    async fn app_with_key(&self, id: &str) -> String {
        let (status, body) = self.admin("/v1/apps", json!({"id": id, "name": id})).await;
        assert_eq!(status, 201, "create app: {body}");
        let (status, body) = self.admin(&format!("/v1/apps/{id}/keys"), json!({"name": "backend"})).await;
        assert_eq!(status, 201, "create key: {body}");
        body["key"].as_str().expect("key").to_owned()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.task.abort();
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.db.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn setup() -> (LocalBus, ControlPlane, TestEdge, Publisher) {
    logs();
    let bus = LocalBus::new();
    let cp = ControlPlane::start(&bus).await;
    let config = EdgeConfig { jwks_url: format!("{}/.well-known/jwks.json", cp.url()), ..EdgeConfig::default() };
    let edge = TestEdge::start(config, Bus::local(&bus)).await;
    let key = cp.app_with_key("shop").await;
    let publisher = Publisher::new(cp.url(), "shop", key).expect("publisher");
    (bus, cp, edge, publisher)
}

#[tokio::test]
async fn a_backend_mints_tokens_and_publishes_and_the_app_receives() {
    let (_bus, _cp, edge, publisher) = setup().await;
    let tokens = publisher.token_provider(
        TokenRequest::new("user-1").allow("orders:*", ["subscribe", "publish"]).ttl(Duration::from_secs(600)),
    );
    let client = Client::builder(edge.url()).token_provider(tokens).connect().await.expect("connect");
    assert_eq!(client.connection().expect("connected").client_id, "user-1");
    let mut orders = client.subscribe("orders:eu").await.expect("subscribe");

    // JSON, text and bytes, each as published.
    let accepted = publisher.publish("orders:eu", json!({"id": 1, "status": "paid"})).await.expect("publish json");
    assert!(!accepted.id.is_empty());
    let m = within(Duration::from_secs(10), "json", orders.next()).await.expect("open");
    assert_eq!(serde_json::from_slice::<Value>(&m.data).expect("json"), json!({"id": 1, "status": "paid"}));
    assert_eq!((m.publisher.as_deref(), m.id.as_str()), (None, accepted.id.as_str()));
    publisher
        .publish_message("orders:eu", "shipped", Some("order.updated"), Some("o1-v2"))
        .await
        .expect("publish text");
    let m = within(Duration::from_secs(10), "text", orders.next()).await.expect("open");
    assert_eq!((m.text(), m.event.as_deref(), m.id.as_str()), (Some("shipped"), Some("order.updated"), "o1-v2"));
    publisher.publish("orders:eu", Data::Binary(vec![0u8, 159, 255].into())).await.expect("publish bytes");
    let m = within(Duration::from_secs(10), "bytes", orders.next()).await.expect("open");
    assert_eq!(&m.data[..], &[0u8, 159, 255]);

    // A batch: one result per message, in order; a bad one fails alone.
    let results = publisher
        .publish_batch(vec![
            BatchMessage::new("orders:eu", "a"),
            BatchMessage::new("orders:eu", "b").name("letter").also_to("orders:us"),
            BatchMessage::new("bad*channel", "c"),
        ])
        .await
        .expect("batch");
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    assert_eq!(results[2].as_ref().err().and_then(RestError::code), Some(ErrorCode::InvalidChannel));
    for want in ["a", "b"] {
        let m = within(Duration::from_secs(10), "batch", orders.next()).await.expect("open");
        assert_eq!(m.text(), Some(want));
    }

    // The token only allows `orders:*`.
    let err = client.subscribe("payroll").await.expect_err("forbidden");
    assert_eq!(err.error_code(), Some(ErrorCode::Forbidden));
    // And the app publishes within it.
    client.publish("orders:eu", "from the app").await.expect("client publish");
    let m = within(Duration::from_secs(10), "own", orders.next()).await.expect("open");
    assert_eq!(m.publisher.as_deref(), Some("user-1"));
    client.close().await;
}

#[tokio::test]
async fn the_publisher_reports_typed_errors() {
    let (_bus, cp, _edge, publisher) = setup().await;

    let err = publisher.publish("bad channel", "x").await.expect_err("invalid channel");
    assert!(matches!(&err, RestError::Api { status: 400, code: ErrorCode::InvalidChannel, .. }), "{err}");

    let wrong_key = Publisher::new(cp.url(), "shop", "hk_nope_nope").expect("publisher");
    let err = wrong_key.publish("orders", "x").await.expect_err("unauthorized");
    assert!(matches!(&err, RestError::Api { status: 401, code: ErrorCode::Unauthorized, .. }), "{err}");
    let err = wrong_key.mint_token(&TokenRequest::new("u")).await.expect_err("unauthorized");
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized));

    let other_app = Publisher::new(cp.url(), "someone-else", publisher_key(&cp).await).expect("publisher");
    let err = other_app.publish("orders", "x").await.expect_err("other app");
    assert!(matches!(err.code(), Some(ErrorCode::Forbidden | ErrorCode::NotFound)), "{err}");

    let err = publisher.mint_token(&TokenRequest::new("u").allow("a", ["fly"])).await.expect_err("bad operation");
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));

    // Nobody listening: retried, then a transport error, within the timeout.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind").local_addr().expect("addr");
    let nowhere = Publisher::builder(format!("http://{closed}"), "shop", "k")
        .max_retries(2)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("publisher");
    let err = nowhere.publish("orders", "x").await.expect_err("unreachable");
    assert!(matches!(err, RestError::Transport(_)), "{err}");
}

async fn publisher_key(cp: &ControlPlane) -> String {
    cp.app_with_key("another").await
}
