//! Test harness: a fresh database per test (PostgreSQL or SQLite), a NATS
//! bus under a random subject prefix, a server on `127.0.0.1:0`, a
//! small HTTP client, and a TCP proxy that can cut NATS off.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use herald_bus::{Bus, NatsOptions};
use herald_control_plane::{Config, ControlPlane, Secret};
use herald_proto::SubjectSpace;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use sqlx::Connection as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub mod console;
pub mod h2;
pub mod http1;

pub const ADMIN: &str = "test-admin-token-0123456789";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

/// PostgreSQL server URL: `DATABASE_URL` or the local test database.
pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

pub fn random_suffix() -> String {
    herald_control_plane::keys::random_alnum(12)
}

/// A database that exists for one test and is dropped afterwards.
pub struct TestDb {
    pub url: String,
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    Postgres { admin: String, name: String },
    Sqlite(std::path::PathBuf),
}

impl TestDb {
    pub async fn postgres() -> Result<Self> {
        let admin = pg_admin_url();
        let name = format!("cp_test_{}", random_suffix());
        let mut conn = sqlx::PgConnection::connect(&admin).await.context("connect to postgres")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        conn.close().await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
        Ok(Self { url: format!("{base}/{name}"), cleanup: Some(Cleanup::Postgres { admin, name }) })
    }

    pub fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!("cp_test_{}.db", random_suffix()));
        Self { url: format!("sqlite://{}", path.display()), cleanup: Some(Cleanup::Sqlite(path)) }
    }

    /// Another handle on an existing database, which it does not drop.
    pub fn shared(url: &str) -> Self {
        Self { url: url.to_owned(), cleanup: None }
    }

    pub async fn both() -> Result<Vec<Self>> {
        Ok(vec![Self::postgres().await?, Self::sqlite()])
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self.cleanup.take() {
            Some(Cleanup::Postgres { admin, name }) => {
                // Drop runs outside any runtime guarantee: use a thread.
                let _ = std::thread::spawn(move || {
                    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
                    rt.block_on(async move {
                        if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                            let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                        }
                    });
                })
                .join();
            }
            Some(Cleanup::Sqlite(path)) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
            None => {}
        }
    }
}

/// Subscribes to `subject` and returns once the NATS server holds the
/// interest: a probe sent on the same connection after the subscription has
/// come back (a client flush only means the bytes left the socket).
pub async fn subscribe_ready(subject: String) -> Result<async_nats::Subscriber> {
    use futures_util::StreamExt as _;
    let client = async_nats::connect(NATS_URL).await?;
    let mut sub = client.subscribe(subject.clone()).await?;
    client.publish(subject, Bytes::from_static(b"probe")).await?;
    client.flush().await?;
    let probe = tokio::time::timeout(Duration::from_secs(5), sub.next()).await?.context("subscription ended")?;
    anyhow::ensure!(&probe.payload[..] == b"probe", "unexpected first message");
    Ok(sub)
}

pub fn subjects() -> SubjectSpace {
    SubjectSpace::new(&format!("t{}", random_suffix())).expect("prefix")
}

pub async fn nats_backplane_at(url: &str, subjects: SubjectSpace) -> Result<Bus> {
    let options = NatsOptions { publish_timeout: Duration::from_secs(2), ..NatsOptions::default() };
    Ok(Bus::connect_nats(url, subjects, options).await?)
}

pub fn config(db: &TestDb) -> Config {
    Config { database_url: db.url.clone(), admin_token: Some(Secret::new(ADMIN)), ..Config::default() }
}

/// A control plane serving on `127.0.0.1:0`.
pub struct Server {
    pub addr: SocketAddr,
    pub subjects: SubjectSpace,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub db: TestDb,
}

impl Server {
    /// With a real NATS bus under a fresh prefix.
    pub async fn start(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Result<Self> {
        let subjects = subjects();
        let bus = nats_backplane_at(NATS_URL, subjects.clone()).await?;
        Self::start_with(db, bus, subjects, tweak).await
    }

    pub async fn start_with(
        db: TestDb,
        bus: Bus,
        subjects: SubjectSpace,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, db, bus, subjects, tweak).await
    }

    /// Listening on `bind` (port 0: one from the OS).
    pub async fn start_on(
        bind: SocketAddr,
        db: TestDb,
        bus: Bus,
        subjects: SubjectSpace,
        tweak: impl FnOnce(&mut Config),
    ) -> Result<Self> {
        let mut cfg = config(&db);
        tweak(&mut cfg);
        let cp = ControlPlane::new(cfg, bus).await?;
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = cp
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self { addr, subjects, stop: Some(stop), task: Some(task), db })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A minimal JSON HTTP client.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self { client: Client::builder(TokioExecutor::new()).build_http() }
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The error code name of an error body.
    pub fn code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_owned()
    }
}

impl Http {
    pub async fn send(&self, method: &str, url: &str, auth: Option<&str>, body: Option<Bytes>) -> Result<Reply> {
        let mut req = http::Request::builder().method(method).uri(url);
        if let Some(a) = auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        self.send_request(req.body(Full::new(body.unwrap_or_default()))?).await
    }

    /// Sends a request built by the caller (its own headers).
    pub async fn send_request(&self, req: http::Request<Full<Bytes>>) -> Result<Reply> {
        let res = self.client.request(req).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Reply { status, headers, body })
    }

    pub async fn json(&self, method: &str, url: &str, auth: Option<&str>, body: Value) -> Result<Reply> {
        self.send(method, url, auth, Some(Bytes::from(serde_json::to_vec(&body)?))).await
    }

    pub async fn raw(&self, method: &str, url: &str, auth: Option<&str>, body: &str) -> Result<Reply> {
        self.send(method, url, auth, Some(Bytes::from(body.to_owned()))).await
    }

    pub async fn get(&self, url: &str, auth: Option<&str>) -> Result<Reply> {
        self.send("GET", url, auth, None).await
    }
}

/// Creates an app and an API key through the REST API; returns (app id, key id, key).
pub async fn app_with_key(http: &Http, server: &Server, caps: Option<Value>) -> Result<(String, String, String)> {
    let r = http.json("POST", &server.url("/v1/apps"), Some(ADMIN), serde_json::json!({"name": "test app"})).await?;
    anyhow::ensure!(r.status == 201, "create app: {} {}", r.status, String::from_utf8_lossy(&r.body));
    let app = r.json()["id"].as_str().context("app id")?.to_owned();
    let mut body = serde_json::json!({"name": "backend"});
    if let Some(caps) = caps {
        body["capabilities"] = caps;
    }
    let r = http.json("POST", &server.url(&format!("/v1/apps/{app}/keys")), Some(ADMIN), body).await?;
    anyhow::ensure!(r.status == 201, "create key: {} {}", r.status, String::from_utf8_lossy(&r.body));
    let j = r.json();
    Ok((app, j["id"].as_str().context("key id")?.to_owned(), j["key"].as_str().context("key")?.to_owned()))
}

/// A TCP proxy in front of NATS that can cut every connection and refuse
/// new ones, to make NATS unreachable for one test.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: &'static str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let (cut, cut_rx) = tokio::sync::watch::channel(0u64);
        let up2 = up.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::Acquire) {
                    continue;
                }
                // Only a cut after this connection was made ends it.
                let mut cut_rx = cut_rx.clone();
                cut_rx.borrow_and_update();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.changed() => {}
                    }
                });
            }
        });
        Ok(Self { addr, up, cut, task })
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::Release);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Accepts connections again (clients reconnect on their own).
    pub fn restore(&self) {
        self.up.store(true, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ----- presence reports, as edges send them -------------------------------------

/// A presence entry of `client` on `channel`, connection `conn`.
pub fn entry(channel: &str, conn: &str, client: &str, info: &str) -> herald_proto::bus::PresenceEntry {
    herald_proto::bus::PresenceEntry {
        channel: channel.into(),
        connection_id: conn.into(),
        client_id: client.into(),
        info: bytes::Bytes::from(info.to_owned()),
    }
}

/// A report of `edge` that says no TTL: the control plane's applies.
pub fn report(
    edge: &str,
    app: &str,
    kind: herald_proto::bus::presence_report::Kind,
) -> herald_proto::bus::PresenceReport {
    herald_proto::bus::PresenceReport { edge_id: edge.into(), app_id: app.into(), ttl_ms: 0, kind: Some(kind) }
}

pub fn join(edge: &str, app: &str, e: herald_proto::bus::PresenceEntry) -> herald_proto::bus::PresenceReport {
    report(
        edge,
        app,
        herald_proto::bus::presence_report::Kind::Join(herald_proto::bus::PresenceJoin { entry: Some(e) }),
    )
}

pub fn leave(edge: &str, app: &str, e: herald_proto::bus::PresenceEntry) -> herald_proto::bus::PresenceReport {
    report(
        edge,
        app,
        herald_proto::bus::presence_report::Kind::Leave(herald_proto::bus::PresenceLeave { entry: Some(e) }),
    )
}

// ----- URLs and requests the tests share -----------------------------------------

/// A gRPC request with `Authorization: Bearer <token>`.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")) {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

/// The REST URL of namespace `name` of `app`.
pub fn ns_url(server: &Server, app: &str, name: &str) -> String {
    server.url(&format!("/v1/apps/{app}/namespaces/{name}"))
}

/// The REST URL that publishes to `channel` of `app`.
pub fn publish_url(server: &Server, app: &str, channel: &str) -> String {
    server.url(&format!("/v1/apps/{app}/channels/{channel}/messages"))
}

/// Puts namespace `name` of `app` as the admin.
pub async fn put_ns(http: &Http, server: &Server, app: &str, name: &str, body: Value) -> Result<Reply> {
    http.json("PUT", &ns_url(server, app, name), Some(ADMIN), body).await
}

/// A control plane on the in-process bus, and an edge-side handle on it.
pub async fn local_server(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Result<(Server, Bus)> {
    let bus = herald_bus::LocalBus::new();
    let edge = Bus::local(&bus);
    let server = Server::start_with(db, Bus::local(&bus), subjects(), tweak).await?;
    Ok((server, edge))
}

// ----- what the bus delivers to an edge -------------------------------------------

/// Collects what a bus handle delivers: channel messages and control
/// events.
#[derive(Default)]
pub struct Collect {
    pub messages: std::sync::Mutex<Vec<herald_proto::bus::ChannelMessage>>,
    pub control: std::sync::Mutex<Vec<herald_proto::bus::ControlEvent>>,
}

impl herald_bus::Sink for Collect {
    fn deliver(
        &self,
        _app: &herald_proto::AppId,
        _channel: &herald_proto::ChannelName,
        _subscription: u64,
        payload: Bytes,
        _position: Option<&herald_bus::Position>,
    ) {
        use prost::Message as _;
        if let Ok(m) = herald_proto::bus::ChannelMessage::decode(payload) {
            self.messages.lock().unwrap_or_else(|e| e.into_inner()).push(m);
        }
    }

    fn control(&self, event: herald_proto::bus::ControlEvent) {
        self.control.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}

impl Collect {
    /// Waits (up to 3 s) for a channel message that `matches`, and returns it.
    pub async fn message(
        &self,
        matches: impl Fn(&herald_proto::bus::ChannelMessage) -> bool,
    ) -> Result<herald_proto::bus::ChannelMessage> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            if let Some(m) = self.messages.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|m| matches(m)) {
                return Ok(m.clone());
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "no such channel message arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (up to 3 s) for a control event whose kind `matches`.
    pub async fn control_event<T>(
        &self,
        matches: impl Fn(&herald_proto::bus::control_event::Kind) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let found = self
                .control
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find_map(|e| e.kind.as_ref().and_then(&matches));
            if let Some(found) = found {
                return Ok(found);
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "no such control event arrived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether a `NamespacesChanged` for `app` arrived; forgets the control
    /// events seen so far.
    pub fn take_namespaces_changed(&self, app: &str) -> bool {
        let mut control = self.control.lock().unwrap_or_else(|e| e.into_inner());
        let seen = control.iter().any(|e| {
            matches!(&e.kind, Some(herald_proto::bus::control_event::Kind::NamespacesChanged(n)) if n.app_id == app)
        });
        control.clear();
        seen
    }
}

/// A control plane with PostgreSQL on the in-process bus, and an edge-side
/// handle on that bus collecting what it delivers.
pub async fn pg_local_server(tweak: impl FnOnce(&mut Config)) -> Result<(Server, Bus, Arc<Collect>)> {
    let (server, edge) = local_server(TestDb::postgres().await?, tweak).await?;
    let collect = Arc::new(Collect::default());
    edge.attach(collect.clone()).await?;
    Ok((server, edge, collect))
}

// ----- Pusher apps and signed Pusher HTTP API requests ------------------------------

/// An app in Pusher mode and an API key of it with a Pusher secret.
#[derive(Debug, Clone)]
pub struct PusherApp {
    /// The Herald app id: the Pusher key.
    pub app: String,
    /// The numeric Pusher app id.
    pub pusher_id: String,
    pub key_id: String,
    pub key: String,
    pub secret: String,
}

/// Creates an app with `pusher` settings and a key with a Pusher secret
/// (and `caps`, everything when `None`).
pub async fn pusher_app(http: &Http, server: &Server, pusher: Value, caps: Option<Value>) -> Result<PusherApp> {
    let body = serde_json::json!({"name": "pusher app", "pusher": pusher});
    let r = http.json("POST", &server.url("/v1/apps"), Some(ADMIN), body).await?;
    anyhow::ensure!(r.status == 201, "create app: {} {}", r.status, String::from_utf8_lossy(&r.body));
    let app = r.json()["id"].as_str().context("app id")?.to_owned();
    let pusher_id = r.json()["pusher"]["app_id"].as_str().unwrap_or_default().to_owned();
    let secret = pusher_key(http, server, &app, caps).await?;
    Ok(PusherApp { app, pusher_id, key_id: secret.0, key: secret.1, secret: secret.2 })
}

impl PusherApp {
    /// `/apps/{Pusher app id}` and `rest`: a Pusher HTTP API path.
    pub fn path(&self, rest: &str) -> String {
        format!("/apps/{}{rest}", self.pusher_id)
    }
}

/// Creates a key with a Pusher secret; returns (key id, key, Pusher secret).
pub async fn pusher_key(
    http: &Http,
    server: &Server,
    app: &str,
    caps: Option<Value>,
) -> Result<(String, String, String)> {
    let mut body = serde_json::json!({"name": "pusher backend", "pusher": true});
    if let Some(caps) = caps {
        body["capabilities"] = caps;
    }
    let r = http.json("POST", &server.url(&format!("/v1/apps/{app}/keys")), Some(ADMIN), body).await?;
    anyhow::ensure!(r.status == 201, "create key: {} {}", r.status, String::from_utf8_lossy(&r.body));
    let j = r.json();
    Ok((
        j["id"].as_str().context("key id")?.to_owned(),
        j["key"].as_str().context("key")?.to_owned(),
        j["pusher_secret"].as_str().context("pusher secret")?.to_owned(),
    ))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Percent-encodes a query value (what is not unreserved, or a comma).
pub fn query_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b',') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One Pusher HTTP API request, signed as a Pusher server library signs
/// it, with knobs to break the signature.
pub struct Signing<'a> {
    pub method: &'a str,
    /// The path signed, e.g. `/apps/a1/events` (unencoded).
    pub path: &'a str,
    /// The path requested, when it differs (percent-encoded).
    pub url_path: Option<&'a str>,
    pub params: Vec<(&'a str, String)>,
    pub body: Option<Vec<u8>>,
    pub key: &'a str,
    pub secret: &'a str,
    pub timestamp: u64,
    /// `body_md5` to send instead of the body's.
    pub body_md5: Option<String>,
    /// Parameters left out of the request after signing.
    pub drop: Vec<&'a str>,
}

impl<'a> Signing<'a> {
    pub fn new(method: &'a str, path: &'a str, pusher: &'a PusherApp) -> Self {
        Self {
            method,
            path,
            url_path: None,
            params: Vec::new(),
            body: None,
            key: &pusher.app,
            secret: &pusher.secret,
            timestamp: unix_now(),
            body_md5: None,
            drop: Vec::new(),
        }
    }

    pub fn json(mut self, body: &Value) -> Self {
        self.body = serde_json::to_vec(body).ok();
        self
    }

    pub fn param(mut self, k: &'a str, v: &str) -> Self {
        self.params.push((k, v.to_owned()));
        self
    }

    /// The URL path and query.
    pub fn uri(&self) -> String {
        let ts = self.timestamp.to_string();
        let md5 = self
            .body_md5
            .clone()
            .unwrap_or_else(|| herald_proto::pusher::body_md5(self.body.as_deref().unwrap_or(b"")));
        let mut all: Vec<(&str, String)> =
            vec![("auth_key", self.key.to_owned()), ("auth_timestamp", ts), ("auth_version", "1.0".to_owned())];
        if self.body.is_some() {
            all.push(("body_md5", md5));
        }
        all.extend(self.params.iter().cloned());
        let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let signature = herald_proto::pusher::sign_request(self.secret, self.method, self.path, &pairs);
        all.push(("auth_signature", signature));
        let query: Vec<String> = all
            .iter()
            .filter(|(k, _)| !self.drop.contains(k))
            .map(|(k, v)| format!("{k}={}", query_encode(v)))
            .collect();
        format!("{}?{}", self.url_path.unwrap_or(self.path), query.join("&"))
    }

    pub async fn send(&self, http: &Http, server: &Server) -> Result<Reply> {
        let body = self.body.clone().map(Bytes::from);
        http.send(self.method, &server.url(&self.uri()), None, body).await
    }
}

/// Signs and sends a Pusher HTTP API request with `pusher`'s secret.
pub async fn pusher_send(
    http: &Http,
    server: &Server,
    pusher: &PusherApp,
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Reply> {
    let mut s = Signing::new(method, path, pusher);
    for (k, v) in params {
        s = s.param(k, v);
    }
    if let Some(b) = &body {
        s = s.json(b);
    }
    s.send(http, server).await
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
