//! Test support (feature `test-support`): a signing authority that serves
//! its JWKS like the control plane does, an edge started on port 0, and a
//! raw WebSocket client that can send anything — including what a correct
//! client never would.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Buf, Bytes, BytesMut};
use herald_proto::client::{self, client_frame};
use herald_proto::{AppId, Capabilities, Claims, ClientId, KeyId, SubjectSpace};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use prost::Message as _;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::EdgeConfig;
use herald_bus::{Bus, NamespaceSource, NatsOptions, Sink};

struct SigningKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse generated key");
        Self { kid: kid.to_owned(), pkcs8: pkcs8.as_ref().to_vec(), public: pair.public_key().as_ref().to_vec() }
    }
}

/// Signs tokens and serves its public keys as a JWKS over HTTP.
pub struct TestAuthority {
    keys: Arc<Mutex<Vec<SigningKey>>>,
    revoked: Arc<Mutex<Vec<herald_proto::claims::Revocation>>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
    addr: SocketAddr,
    _server: JoinHandle<()>,
}

impl TestAuthority {
    /// Starts the JWKS server on `127.0.0.1:0` with one key.
    pub async fn start() -> Self {
        let keys = Arc::new(Mutex::new(vec![SigningKey::generate("k1")]));
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind jwks server");
        let addr = listener.local_addr().expect("addr");
        let (served, served_revoked, counted) = (keys.clone(), revoked.clone(), fetches.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (served, served_revoked, counted) = (served.clone(), served_revoked.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let body = jwks(&served.lock().expect("keys"), &served_revoked.lock().expect("revoked"));
                        async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { keys, revoked, fetches, addr, _server: server }
    }

    /// How many times the JWKS was fetched.
    #[must_use]
    pub fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lists tokens of `app` minted from `key` (every token of the app when
    /// `None`) as revoked in the JWKS, for an hour.
    pub fn revoke(&self, app: &str, key: Option<&str>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
        self.revoked.lock().expect("revoked").push(herald_proto::claims::Revocation {
            app: AppId::new(app).expect("app id"),
            key: key.map(|k| KeyId::new(k).expect("key id")),
            at: now,
            until: now + 3600,
        });
    }

    /// The JWKS URL for [`EdgeConfig::jwks_url`].
    #[must_use]
    pub fn jwks_url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// Adds a new current key (`kid`) and keeps the older ones published.
    pub fn rotate(&self, kid: &str) {
        self.keys.lock().expect("keys").push(SigningKey::generate(kid));
    }

    /// Stops publishing every key but the newest.
    pub fn retire_old_keys(&self) {
        let mut keys = self.keys.lock().expect("keys");
        let n = keys.len();
        keys.drain(..n - 1);
    }

    /// Claims for `client` of `app` with `caps` (JSON), valid for `ttl`.
    #[must_use]
    pub fn claims(app: &str, client: &str, caps: &str, ttl: Duration) -> Claims {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64;
        Claims {
            iss: herald_proto::claims::DEFAULT_ISSUER.to_owned(),
            aud: herald_proto::claims::AUDIENCE.to_owned(),
            sub: ClientId::new(client).expect("client id"),
            app: AppId::new(app).expect("app id"),
            key: KeyId::new("key1").expect("key id"),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs() as i64,
            jti: format!("t-{now}"),
            caps: serde_json::from_str::<Capabilities>(caps).expect("caps"),
            info: None,
            origins: Vec::new(),
            lim: None,
        }
    }

    /// Signs `claims` with the current key.
    #[must_use]
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_json(&serde_json::to_value(claims).expect("claims as json"))
    }

    /// Signs arbitrary JSON claims with the current key: for tokens a
    /// correct control plane never mints (a claim missing, an odd type).
    #[must_use]
    pub fn sign_json(&self, claims: &serde_json::Value) -> String {
        let keys = self.keys.lock().expect("keys");
        let key = keys.last().expect("a key");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&key.pkcs8)).expect("sign")
    }

    /// A token for `client` of `app` with `caps`, valid for an hour.
    #[must_use]
    pub fn token(&self, app: &str, client: &str, caps: &str) -> String {
        self.sign(&Self::claims(app, client, caps, Duration::from_secs(3600)))
    }

    /// The current public key, raw (for algorithm-confusion tests).
    #[must_use]
    pub fn public_key(&self) -> Vec<u8> {
        self.keys.lock().expect("keys").last().expect("a key").public.clone()
    }

    /// The current key id.
    #[must_use]
    pub fn kid(&self) -> String {
        self.keys.lock().expect("keys").last().expect("a key").kid.clone()
    }
}

fn jwks(keys: &[SigningKey], revoked: &[herald_proto::claims::Revocation]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid,
                "x": URL_SAFE_NO_PAD.encode(&k.public)})
        })
        .collect();
    serde_json::json!({ "keys": keys, herald_proto::claims::REVOKED_MEMBER: revoked }).to_string()
}

/// A random NATS subject space, so tests never see each other's messages.
#[must_use]
pub fn unique_subjects() -> SubjectSpace {
    let n: u64 = rand_u64();
    SubjectSpace::new(&format!("t{n:016x}")).expect("subject space")
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    u64::from_le_bytes(bytes)
}

/// The NATS URL for tests: `HERALD_TEST_NATS_URL` or `nats://127.0.0.1:4222`.
#[must_use]
pub fn nats_url() -> String {
    std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A NATS bus on `subjects`.
pub async fn nats_bus(url: &str, subjects: SubjectSpace) -> Bus {
    Bus::connect_nats(url, subjects, NatsOptions::default()).await.expect("connect to nats")
}

/// Answers namespace requests with the same list for every app, as a
/// control plane would.
pub struct StaticNamespaces(pub Vec<herald_proto::bus::Namespace>);

impl NamespaceSource for StaticNamespaces {
    fn namespaces(
        &self,
        _app: AppId,
    ) -> futures_util::future::BoxFuture<'static, Result<Option<Vec<herald_proto::bus::Namespace>>, String>> {
        let list = self.0.clone();
        Box::pin(async move { Ok(Some(list)) })
    }
}

/// A sink that ignores everything (for a bus handle that only serves).
struct NullSink;

impl Sink for NullSink {
    fn deliver(&self, _: &AppId, _: &herald_proto::ChannelName, _: u64, _: Bytes, _: Option<&herald_bus::Position>) {}
    fn control(&self, _: herald_proto::bus::ControlEvent) {}
}

/// Serves `namespaces` to the edges of `subjects` on NATS at `url`, in
/// place of a control plane; keep the returned handle alive.
pub async fn serve_namespaces(url: &str, subjects: SubjectSpace, namespaces: Vec<herald_proto::bus::Namespace>) -> Bus {
    let bus = nats_bus(url, subjects).await;
    bus.attach(Arc::new(NullSink)).await.expect("attach");
    bus.serve_namespaces(Arc::new(StaticNamespaces(namespaces))).await.expect("serve namespaces");
    bus
}

/// A namespace with the given options.
#[must_use]
pub fn namespace(name: &str, options: herald_proto::bus::NamespaceOptions) -> herald_proto::bus::Namespace {
    herald_proto::bus::Namespace { name: name.to_owned(), options: Some(options) }
}

/// An edge running on `127.0.0.1:0`.
pub struct TestEdge {
    /// Its address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), crate::EdgeError>>>,
}

impl TestEdge {
    /// Starts an edge with `config` on `bus` and waits until it is
    /// ready (keys loaded, bus connected).
    pub async fn start(config: EdgeConfig, bus: Bus) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind edge");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::run(listener, config, bus, async move {
            let _ = stopped.await;
        }));
        let edge = Self { addr, stop: Some(stop), task: Some(task) };
        edge.wait_ready().await;
        edge
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if http_get(self.addr, "/readyz").await.is_some_and(|(status, _)| status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("edge at {} did not become ready", self.addr);
    }

    /// `ws://…/v1/connect`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, herald_proto::CONNECT_PATH)
    }

    /// Triggers the drain and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<(), crate::EdgeError> {
        self.begin_shutdown();
        self.join().await
    }

    /// Triggers the drain without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `run` to return.
    pub async fn join(&mut self) -> Result<(), crate::EdgeError> {
        match self.task.take() {
            Some(task) => task.await.expect("edge task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A minimal HTTP/1.1 GET; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// What a [`RawClient`] received.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A decoded server frame.
    Frame(client::ServerFrame),
    /// A close frame: code and reason.
    Close(u16, String),
    /// A ping.
    Ping,
    /// The connection ended without a close frame.
    Eof,
}

/// A WebSocket client with no manners: frames are built by hand, so tests
/// can send what a correct client never would.
pub struct RawClient {
    stream: TcpStream,
    buf: BytesMut,
    next_id: u64,
    /// Messages that arrived while waiting for a reply.
    pending: std::collections::VecDeque<client::Message>,
    pending_presence: std::collections::VecDeque<client::PresenceEvent>,
}

impl RawClient {
    /// Upgrades a connection to `addr` with `herald.v1` and the given extra
    /// headers. Returns the HTTP status line's code and, on 101, the client.
    pub async fn connect_with(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Self, u16> {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut request = format!(
            "GET /v1/connect HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        let mut protocol = true;
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("sec-websocket-protocol") && value.is_empty() {
                protocol = false;
                continue;
            }
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if protocol && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol")) {
            request.push_str("Sec-WebSocket-Protocol: herald.v1\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("write upgrade");
        let mut buf = BytesMut::new();
        let head_end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let n = stream.read_buf(&mut buf).await.expect("read upgrade response");
            assert!(n > 0, "connection closed during the upgrade");
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        if status != 101 {
            return Err(status);
        }
        assert!(head.to_ascii_lowercase().contains("sec-websocket-protocol: herald.v1"), "{head}");
        buf.advance(head_end);
        Ok(Self { stream, buf, next_id: 1, pending: Default::default(), pending_presence: Default::default() })
    }

    /// Upgrades, sends `Connect` with `token` and returns the client and the
    /// `Connected` frame.
    pub async fn connect(addr: SocketAddr, token: &str) -> (Self, client::Connected) {
        let (mut c, id) = Self::send_connect(addr, token).await;
        let connected = match c.recv().await {
            Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::Connected(c)) }) => c,
            other => panic!("expected connected, got {other:?}"),
        };
        let reply = c.reply().await;
        assert_eq!(reply.request_id, id);
        (c, connected)
    }

    /// Upgrades, sends `Connect` with `token`, and returns how the edge
    /// closes the connection: the `Disconnect` code, if one came, and the
    /// close code (for tokens that must be refused).
    pub async fn refused(addr: SocketAddr, token: &str) -> (Option<u32>, u16) {
        let (mut c, _) = Self::send_connect(addr, token).await;
        within(Duration::from_secs(10), "the refusal", c.closed()).await
    }

    /// Upgrades, sends `Connect` with `token`, and returns the client with
    /// the edge's first answer: a `Connected` frame when it accepts, a
    /// `Disconnect` notice when it refuses.
    pub async fn hello(addr: SocketAddr, token: &str) -> (Self, Received) {
        let (mut c, _) = Self::send_connect(addr, token).await;
        let first = c.recv().await;
        (c, first)
    }

    /// Upgrades and sends `Connect` with `token`; returns the client and the
    /// request's id.
    async fn send_connect(addr: SocketAddr, token: &str) -> (Self, u64) {
        let mut c = Self::connect_with(addr, &[]).await.expect("upgrade");
        let id = c
            .request(client_frame::Kind::Connect(client::Connect { token: token.into(), client_name: "raw".into() }))
            .await;
        (c, id)
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let bytes = masked_frame(fin, opcode, payload);
        self.send_raw(&bytes).await;
    }

    /// Sends a request; returns its id.
    pub async fn request(&mut self, kind: client_frame::Kind) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = client::ClientFrame { request_id: id, kind: Some(kind) };
        self.send_frame(true, 2, &frame.encode_to_vec()).await;
        id
    }

    /// Receives the next thing the edge sends (10 s limit).
    pub async fn recv(&mut self) -> Received {
        self.recv_within(Duration::from_secs(10)).await.expect("nothing received within 10s")
    }

    /// Receives the next thing, or `None` after `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<Received> {
        tokio::time::timeout(limit, self.recv_inner()).await.ok()
    }

    async fn recv_inner(&mut self) -> Received {
        loop {
            if let Some(r) = self.parse() {
                return r;
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Received::Eof,
                Ok(_) => {}
            }
        }
    }

    fn parse(&mut self) -> Option<Received> {
        let b = &self.buf[..];
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let len7 = (b[1] & 0x7f) as usize;
        let (len, header) = match len7 {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
            126 | 127 => return None,
            n => (n, 2),
        };
        if b.len() < header + len {
            return None;
        }
        self.buf.advance(header);
        let payload = self.buf.split_to(len).freeze();
        Some(match opcode {
            0x2 => Received::Frame(client::ServerFrame::decode(payload).expect("server frame decodes")),
            0x8 => {
                let code = if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 };
                let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned();
                Received::Close(code, reason)
            }
            0x9 => Received::Ping,
            other => panic!("unexpected opcode {other}"),
        })
    }

    /// Receives until a reply arrives, skipping pings and keeping messages
    /// for [`Self::message`].
    pub async fn reply(&mut self) -> client::Reply {
        loop {
            match self.recv().await {
                Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::Reply(r)) }) => return r,
                Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::Message(m)) }) => {
                    self.pending.push_back(m);
                }
                Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::PresenceEvent(e)) }) => {
                    self.pending_presence.push_back(e)
                }
                Received::Frame(_) | Received::Ping => {}
                other => panic!("expected a reply, got {other:?}"),
            }
        }
    }

    /// Receives until a channel message arrives, skipping pings.
    pub async fn message(&mut self) -> client::Message {
        if let Some(m) = self.pending.pop_front() {
            return m;
        }
        loop {
            match self.recv().await {
                Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::Message(m)) }) => {
                    return m;
                }
                Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::PresenceEvent(e)) }) => {
                    self.pending_presence.push_back(e)
                }
                Received::Ping => {}
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    /// Receives until a presence event arrives (within `limit`), keeping
    /// messages for [`Self::message`].
    pub async fn presence_event_within(&mut self, limit: Duration) -> Option<client::PresenceEvent> {
        if let Some(e) = self.pending_presence.pop_front() {
            return Some(e);
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await? {
                Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::PresenceEvent(e)) }) => {
                    return Some(e);
                }
                Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::Message(m)) }) => {
                    self.pending.push_back(m);
                }
                Received::Ping => {}
                other => panic!("expected a presence event, got {other:?}"),
            }
        }
    }

    /// Subscribes with a recovery position and returns the reply.
    pub async fn subscribe_from(&mut self, channel: &str, seq: u64, epoch: &str) -> client::Reply {
        let recover_from = Some(client::StreamPosition { seq, epoch: epoch.into() });
        self.request(client_frame::Kind::Subscribe(client::Subscribe { channel: channel.into(), recover_from })).await;
        self.reply().await
    }

    /// Asks for the first page of a presence channel's members and returns
    /// the reply.
    pub async fn presence_query(&mut self, channel: &str) -> client::Reply {
        self.presence_page(channel, "", 0).await
    }

    /// Asks for a page of a presence channel's members and returns the
    /// reply.
    pub async fn presence_page(&mut self, channel: &str, after: &str, limit: u32) -> client::Reply {
        let query = client::PresenceQuery { channel: channel.into(), after: after.into(), limit };
        self.request(client_frame::Kind::PresenceQuery(query)).await;
        self.reply().await
    }

    /// Receives until the close frame; returns the `Disconnect` code seen
    /// before it (if any) and the close frame's code.
    pub async fn closed(&mut self) -> (Option<u32>, u16) {
        let mut notice = None;
        loop {
            match self.recv().await {
                Received::Frame(client::ServerFrame { kind: Some(client::server_frame::Kind::Disconnect(d)) }) => {
                    notice = Some(d.code);
                }
                Received::Close(code, _) => return (notice, code),
                Received::Eof => return (notice, 1006),
                _ => {}
            }
        }
    }

    /// Subscribes and returns the reply.
    pub async fn subscribe(&mut self, channel: &str) -> client::Reply {
        self.request(client_frame::Kind::Subscribe(client::Subscribe { channel: channel.into(), recover_from: None }))
            .await;
        self.reply().await
    }

    /// Publishes and returns the reply.
    pub async fn publish(&mut self, channel: &str, data: &[u8]) -> client::Reply {
        self.request(client_frame::Kind::Publish(client::Publish {
            channel: channel.into(),
            data: Bytes::copy_from_slice(data),
            event: None,
            idempotency_id: None,
        }))
        .await;
        self.reply().await
    }

    /// Stops reading from the socket (for slow-consumer tests): returns the
    /// stream so the caller decides when to read again.
    pub fn into_stream(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
    }

    /// Rebuilds a client from [`Self::into_stream`].
    #[must_use]
    pub fn from_stream(stream: TcpStream, buf: BytesMut) -> Self {
        Self { stream, buf, next_id: 1000, pending: Default::default(), pending_presence: Default::default() }
    }
}

/// A masked client frame.
#[must_use]
pub fn masked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Is the reply an error with `code`?
#[must_use]
pub fn is_error(reply: &client::Reply, code: herald_proto::ErrorCode) -> bool {
    matches!(&reply.result, Some(client::reply::Result::Error(e)) if e.code == code.number())
}

/// Is the reply ok?
#[must_use]
pub fn is_ok(reply: &client::Reply) -> bool {
    matches!(&reply.result, Some(client::reply::Result::Ok(_)))
}

/// Runs `f` with a deadline, panicking with `what` when it passes.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A `nats-server` process of the test's own, for tests that restart or
/// inspect NATS. The binary comes from `HERALD_NATS_SERVER`, `PATH` or
/// `/usr/sbin/nats-server`.
pub struct NatsServer {
    /// Client port.
    pub port: u16,
    /// Monitoring port.
    pub monitor_port: u16,
    store: std::path::PathBuf,
    child: Option<std::process::Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn nats_binary() -> String {
    if let Ok(bin) = std::env::var("HERALD_NATS_SERVER") {
        return bin;
    }
    let in_path =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join("nats-server")).find(|p| p.exists()));
    match in_path.flatten() {
        Some(p) => p.display().to_string(),
        None => "/usr/sbin/nats-server".to_owned(),
    }
}

impl NatsServer {
    /// Starts a server with JetStream on free ports and waits until it
    /// accepts connections.
    pub async fn start() -> Self {
        let store = std::env::temp_dir().join(format!("herald-nats-{:016x}", rand_u64()));
        let mut server = Self { port: free_port(), monitor_port: free_port(), store, child: None };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let child = std::process::Command::new(nats_binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", &self.monitor_port.to_string(), "-js", "-sd"])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server (install it with `apt-get install nats-server`)");
        self.child = Some(child);
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGSTOP): its sockets stay open and take bytes,
    /// but nothing is answered until [`Self::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("nats is running").id().to_string();
        let status = std::process::Command::new("kill").args([which, &pid]).status().expect("kill");
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Starts the server again on the same ports and store.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Subscriptions the server holds on subjects under `prefix`, from its
    /// monitoring endpoint.
    pub async fn subscriptions_under(&self, prefix: &str) -> Vec<String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.monitor_port).into();
        let Some((_, body)) = http_get(addr, "/connz?subs=1").await else { return vec![] };
        let body = body.trim_start_matches(|c: char| c != '{');
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let mut subs = vec![];
        for conn in json["connections"].as_array().into_iter().flatten() {
            for s in conn["subscriptions_list"].as_array().into_iter().flatten() {
                if let Some(s) = s.as_str().filter(|s| s.starts_with(prefix)) {
                    subs.push(s.to_owned());
                }
            }
        }
        subs
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
