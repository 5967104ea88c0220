//! Pusher-protocol test support: a namespace source that serves apps'
//! Pusher settings and webhook wishes as the control plane would
//! ([`TestApps`]), and a raw JSON WebSocket client of `/app/{key}`
//! ([`PusherClient`]) that can send anything, including what pusher-js
//! never would.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::future::BoxFuture;
use herald_proto::webhook::EventKind;
use herald_proto::{AppId, bus};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::client::{close_payload, masked_frame, next_frame, upgrade};
use herald_bus::NamespaceSource;

/// Every app exists, without namespaces; the apps given Pusher settings
/// (with [`TestApps::set`]) have Pusher mode on. Serve it with
/// `bus.serve_namespaces(apps.clone())`.
/// The edge-seen webhook kinds an app wants are set with
/// [`TestApps::set_webhook_events`] (none by default).
#[derive(Default)]
pub struct TestApps {
    pusher: Mutex<HashMap<String, bus::PusherApp>>,
    webhook_events: Mutex<HashMap<String, Vec<EventKind>>>,
}

impl TestApps {
    /// A source with `app` in Pusher mode with `settings`.
    #[must_use]
    pub fn with(app: &str, settings: bus::PusherApp) -> Arc<Self> {
        let apps = Arc::new(Self::default());
        apps.set(app, Some(settings));
        apps
    }

    /// Sets (or, with `None`, removes) the Pusher settings of `app`. An
    /// edge sees the change once its cache of the app expires or is
    /// invalidated.
    pub fn set(&self, app: &str, settings: Option<bus::PusherApp>) {
        let mut pusher = self.pusher.lock().expect("apps");
        match settings {
            Some(s) => pusher.insert(app.to_owned(), s),
            None => pusher.remove(app),
        };
    }

    /// Sets the edge-seen webhook kinds (`client_event`, `cache_miss`)
    /// some endpoint of `app` wants. An edge sees the change once its cache
    /// of the app expires or is invalidated.
    pub fn set_webhook_events(&self, app: &str, kinds: &[EventKind]) {
        self.webhook_events.lock().expect("apps").insert(app.to_owned(), kinds.to_vec());
    }
}

impl NamespaceSource for TestApps {
    fn namespaces(&self, _app: AppId) -> BoxFuture<'static, Result<Option<Vec<bus::Namespace>>, String>> {
        Box::pin(async { Ok(Some(Vec::new())) })
    }

    fn pusher_app(&self, app: AppId) -> BoxFuture<'static, Result<Option<bus::PusherApp>, String>> {
        let found = self.pusher.lock().expect("apps").get(app.as_str()).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn webhook_events(&self, app: AppId) -> BoxFuture<'static, Result<Vec<EventKind>, String>> {
        let kinds = self.webhook_events.lock().expect("apps").get(app.as_str()).cloned().unwrap_or_default();
        Box::pin(async move { Ok(kinds) })
    }
}

/// Pusher settings with client events on and one secret, `key1`:`secret`.
#[must_use]
pub fn pusher_settings(secret: &str) -> bus::PusherApp {
    bus::PusherApp {
        client_events: true,
        secrets: vec![bus::PusherSecret { key_id: "key1".into(), secret: secret.into() }],
        ..Default::default()
    }
}

/// An event a [`PusherClient`] received.
#[derive(Debug, Clone, PartialEq)]
pub struct PusherEvent {
    /// `event`.
    pub event: String,
    /// `channel`, if any.
    pub channel: Option<String>,
    /// `data` as sent: a string for most events, an object for errors.
    pub data: Value,
    /// `user_id`, if any.
    pub user_id: Option<String>,
}

impl PusherEvent {
    /// `data` read as JSON when it is a string holding JSON, else as sent.
    #[must_use]
    pub fn json(&self) -> Value {
        match &self.data {
            Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| self.data.clone()),
            other => other.clone(),
        }
    }
}

/// What a [`PusherClient`] received.
#[derive(Debug, Clone, PartialEq)]
pub enum PusherReceived {
    /// A JSON text message.
    Event(PusherEvent),
    /// A close frame: code and reason.
    Close(u16, String),
    /// A WebSocket ping.
    Ping,
    /// A binary frame (the edge must never send one).
    Binary,
    /// The connection ended without a close frame.
    Eof,
}

/// A raw Pusher-protocol client.
pub struct PusherClient {
    stream: TcpStream,
    buf: BytesMut,
    /// Events that arrived while waiting for another.
    pending: VecDeque<PusherEvent>,
}

impl PusherClient {
    /// Upgrades at `/app/{key}` with `query` (e.g. `?protocol=7`); the HTTP
    /// status unless 101.
    pub async fn upgrade(addr: SocketAddr, key: &str, query: &str) -> Result<Self, u16> {
        Self::upgrade_with(addr, key, query, &[]).await
    }

    /// As [`Self::upgrade`], with more request headers (e.g. `Origin`).
    pub async fn upgrade_with(addr: SocketAddr, key: &str, query: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        let (stream, buf) = upgrade(addr, &format!("/app/{key}{query}"), headers, None).await?;
        Ok(Self { stream, buf, pending: VecDeque::new() })
    }

    /// Connects as pusher-js does; returns the client and its socket id.
    pub async fn connect(addr: SocketAddr, key: &str) -> (Self, String) {
        let mut c = Self::upgrade(addr, key, "?protocol=7&client=js&version=8.4.0").await.expect("upgrade");
        let established = c.event().await;
        assert_eq!(established.event, "pusher:connection_established", "{established:?}");
        let socket_id = established.json()["socket_id"].as_str().expect("socket_id").to_owned();
        (c, socket_id)
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, message: &Value) {
        self.send_text(&message.to_string()).await;
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(1, text.as_bytes()).await;
    }

    /// Sends one complete frame with `opcode`.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let _ = self.stream.write_all(&masked_frame(true, opcode, payload)).await;
    }

    /// Receives the next thing, or `None` after `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Option<PusherReceived> {
        if let Some(e) = self.pending.pop_front() {
            return Some(PusherReceived::Event(e));
        }
        tokio::time::timeout(limit, self.recv_inner()).await.ok()
    }

    /// Receives the next thing (10 s limit).
    pub async fn recv(&mut self) -> PusherReceived {
        self.recv_within(Duration::from_secs(10)).await.expect("nothing received within 10s")
    }

    async fn recv_inner(&mut self) -> PusherReceived {
        use tokio::io::AsyncReadExt as _;
        loop {
            if let Some((opcode, payload)) = next_frame(&mut self.buf) {
                return match opcode {
                    0x1 => {
                        let v: Value = serde_json::from_slice(&payload).expect("the edge sends JSON");
                        PusherReceived::Event(PusherEvent {
                            event: v["event"].as_str().expect("event").to_owned(),
                            channel: v.get("channel").and_then(Value::as_str).map(str::to_owned),
                            data: v.get("data").cloned().unwrap_or(Value::Null),
                            user_id: v.get("user_id").and_then(Value::as_str).map(str::to_owned),
                        })
                    }
                    0x2 => PusherReceived::Binary,
                    0x8 => {
                        let (code, reason) = close_payload(&payload);
                        PusherReceived::Close(code, reason)
                    }
                    0x9 => PusherReceived::Ping,
                    // A pong answering the test's own ping.
                    0xA => continue,
                    other => panic!("unexpected opcode {other}"),
                };
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return PusherReceived::Eof,
                Ok(_) => {}
            }
        }
    }

    /// The next event, skipping WebSocket pings (10 s limit).
    pub async fn event(&mut self) -> PusherEvent {
        loop {
            match self.recv().await {
                PusherReceived::Event(e) => return e,
                PusherReceived::Ping => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next event named `name`, keeping the others for later (10 s
    /// limit).
    pub async fn event_named(&mut self, name: &str) -> PusherEvent {
        if let Some(i) = self.pending.iter().position(|e| e.event == name) {
            return self.pending.remove(i).expect("pending event");
        }
        let mut skipped = Vec::new();
        let found = loop {
            match tokio::time::timeout(Duration::from_secs(10), self.recv_inner()).await {
                Ok(PusherReceived::Event(e)) if e.event == name => break e,
                Ok(PusherReceived::Event(e)) => skipped.push(e),
                Ok(PusherReceived::Ping) => {}
                Ok(other) => panic!("expected {name}, got {other:?} (after {skipped:?})"),
                Err(_) => panic!("no {name} within 10s (got {skipped:?})"),
            }
        };
        self.pending.extend(skipped);
        found
    }

    /// The next event, if one comes within `limit` (pings skipped).
    pub async fn event_within(&mut self, limit: Duration) -> Option<PusherEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_within(left).await? {
                PusherReceived::Event(e) => return Some(e),
                PusherReceived::Ping => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// Subscribes and returns the answer (`subscription_succeeded` or
    /// `subscription_error`), keeping other events for later.
    pub async fn subscribe(&mut self, channel: &str, auth: Option<&str>, channel_data: Option<&str>) -> PusherEvent {
        let mut data = serde_json::json!({"channel": channel});
        if let Some(auth) = auth {
            data["auth"] = auth.into();
        }
        if let Some(channel_data) = channel_data {
            data["channel_data"] = channel_data.into();
        }
        self.send(&serde_json::json!({"event": "pusher:subscribe", "data": data})).await;
        let mut skipped = Vec::new();
        let answer = loop {
            let e = self.event().await;
            let answer = e.channel.as_deref() == Some(channel)
                && matches!(e.event.as_str(), "pusher_internal:subscription_succeeded" | "pusher:subscription_error");
            if answer {
                break e;
            }
            skipped.push(e);
        };
        self.pending.extend(skipped);
        answer
    }

    /// Receives until the close frame; returns the code of the
    /// `pusher:error` seen before it (if any) and the close code (1006 when
    /// the connection ended without one).
    pub async fn closed(&mut self) -> (Option<u64>, u16) {
        let mut notice = None;
        loop {
            match self.recv().await {
                PusherReceived::Event(e) if e.event == "pusher:error" => notice = e.json()["code"].as_u64(),
                PusherReceived::Close(code, _) => return (notice, code),
                PusherReceived::Eof => return (notice, 1006),
                _ => {}
            }
        }
    }
}
