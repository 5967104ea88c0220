//! A control plane in-process on port 0 with a fresh SQLite file and the
//! in-process bus, administered over its REST API.

use std::net::SocketAddr;
use std::time::Duration;

use herald_bus::{Bus, LocalBus};
use herald_control_plane::{Config, Secret};
use herald_edge::EdgeConfig;
use herald_edge::testing::{TestEdge, http_get};
use herald_sdk::Publisher;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ADMIN: &str = "sdk-test-admin-token-0123456789";

/// A control plane on port 0 with a fresh SQLite file; deleted on drop.
pub struct ControlPlane {
    pub addr: SocketAddr,
    db: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    pub async fn start(bus: &LocalBus) -> Self {
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An admin call; returns status and JSON body.
    pub async fn admin(&self, path: &str, body: Value) -> (u16, Value) {
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
    pub async fn app_with_key(&self, id: &str) -> String {
        let (status, body) = self.admin("/v1/apps", json!({"id": id, "name": id})).await;
        assert_eq!(status, 201, "create app: {body}");
        let (status, body) = self.admin(&format!("/v1/apps/{id}/keys"), json!({"name": "backend"})).await;
        assert_eq!(status, 201, "create key: {body}");
        body["key"].as_str().expect("key").to_owned()
    }

    /// Another API key of app `id`, limited to `capabilities`; returns it.
    pub async fn key_with(&self, id: &str, capabilities: Value) -> String {
        let path = format!("/v1/apps/{id}/keys");
        let (status, body) = self.admin(&path, json!({"name": "limited", "capabilities": capabilities})).await;
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

/// A control plane and an edge trusting it on one in-process bus, with app
/// `shop` and a publisher holding an API key of it that allows everything.
pub async fn setup() -> (LocalBus, ControlPlane, TestEdge, Publisher) {
    super::logs();
    let bus = LocalBus::new();
    let cp = ControlPlane::start(&bus).await;
    let config = EdgeConfig { jwks_url: format!("{}/.well-known/jwks.json", cp.url()), ..EdgeConfig::default() };
    let edge = TestEdge::start(config, Bus::local(&bus)).await;
    let key = cp.app_with_key("shop").await;
    let publisher = Publisher::new(cp.url(), "shop", key).expect("publisher");
    (bus, cp, edge, publisher)
}
