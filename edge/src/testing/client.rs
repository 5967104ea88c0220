//! A raw WebSocket client that builds its frames by hand, so tests can
//! send what a correct client never would, and helpers to read its
//! replies.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use herald_proto::client::{self, client_frame};
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::within;

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
        let mut protocol = Some(herald_proto::SUBPROTOCOL);
        let mut extra = Vec::new();
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                protocol = None;
                if value.is_empty() {
                    continue;
                }
            }
            extra.push((*name, *value));
        }
        let (stream, buf) = upgrade(addr, herald_proto::CONNECT_PATH, &extra, protocol).await?;
        Ok(Self { stream, buf, next_id: 1, pending: Default::default(), pending_presence: Default::default() })
    }

    /// The socket, and what was read from it past the upgrade's answer,
    /// for a test that drives the bytes itself.
    #[must_use]
    pub fn into_parts(self) -> (TcpStream, BytesMut) {
        (self.stream, self.buf)
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
        let (opcode, payload) = next_frame(&mut self.buf)?;
        Some(match opcode {
            0x2 => Received::Frame(client::ServerFrame::decode(payload).expect("server frame decodes")),
            0x8 => {
                let (code, reason) = close_payload(&payload);
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

/// Upgrades a connection to `addr` at `path` (with its query) with the
/// extra headers, offering `subprotocol` when given (and then expecting it
/// back). Returns the HTTP status line's code unless it is 101; on 101 the
/// stream and what was read after the response head.
pub(super) async fn upgrade(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    subprotocol: Option<&str>,
) -> Result<(TcpStream, BytesMut), u16> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(p) = subprotocol {
        request.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
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
    if let Some(p) = subprotocol {
        assert!(head.to_ascii_lowercase().contains(&format!("sec-websocket-protocol: {p}")), "{head}");
    }
    buf.advance(head_end);
    Ok((stream, buf))
}

/// Takes the next complete server frame from `buf`: its opcode and payload.
pub(super) fn next_frame(buf: &mut BytesMut) -> Option<(u8, Bytes)> {
    let b = &buf[..];
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
    buf.advance(header);
    Some((opcode, buf.split_to(len).freeze()))
}

/// A close frame's code (1005 when none) and reason.
pub(super) fn close_payload(payload: &[u8]) -> (u16, String) {
    let code = if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 };
    (code, String::from_utf8_lossy(payload.get(2..).unwrap_or_default()).into_owned())
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
