//! The socket under one connection: TCP (and TLS for `wss://`), the
//! WebSocket upgrade with the `herald.v1` subprotocol, and the two tasks
//! that own its halves.
//!
//! - The **reader** task reads WebSocket messages (fastwebsockets'
//!   `read_frame` is not cancel-safe, so it lives in its own task and never
//!   in a `select!`), decodes each into a `ServerFrame`, and hands it to the
//!   client task through a bounded channel; pings are answered through the
//!   writer and reported as signs of life.
//! - The **writer** task owns the write half and a bounded queue of frames,
//!   and gives up on a write that makes no progress within the write timeout.
//!
//! A [`Link`] is what the client task sees of a connection: a sender of
//! frames and a receiver of what arrived. Dropping it stops both tasks. The
//! client task obtains links through a [`Connector`], so tests can stand in
//! for the network.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};
use herald_proto::client;
use http_body_util::Empty;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::net::{Endpoint, open_stream};

/// A boxed, sendable future.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the client task sends on a connection.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// An encoded `ClientFrame`.
    Frame(Bytes),
    /// A pong answering the edge's ping.
    Pong(Bytes),
    /// A close frame; the writer stops after it.
    Close(u16, String),
}

impl Outgoing {
    pub(crate) fn frame(frame: &client::ClientFrame) -> Self {
        Self::Frame(Bytes::from(frame.encode_to_vec()))
    }
}

/// What arrived on a connection.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A decoded frame.
    Frame(client::ServerFrame),
    /// A ping or pong: the edge is alive.
    Life,
    /// The connection ended: with the close frame's code when there was
    /// one, otherwise with what went wrong.
    Closed { code: Option<u16>, reason: String },
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The client task's view of one connection.
pub(crate) struct Link {
    pub out: mpsc::Sender<Outgoing>,
    pub inbound: mpsc::Receiver<Inbound>,
    pub _tasks: Vec<AbortOnDrop>,
}

/// Opens links; the real one speaks WebSocket, tests may fake it.
pub(crate) trait Connector: Send + Sync + 'static {
    fn connect(&self, url: &str) -> BoxFuture<Result<Link, String>>;
}

/// Settings of [`WsConnector`].
#[derive(Clone)]
pub(crate) struct WsConnector {
    pub tls: Arc<rustls::ClientConfig>,
    pub max_message: usize,
    pub write_buffer: usize,
    pub inbound_buffer: usize,
    pub write_timeout: Duration,
}

struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::spawn(fut);
    }
}

impl Connector for WsConnector {
    fn connect(&self, url: &str) -> BoxFuture<Result<Link, String>> {
        let this = self.clone();
        let url = url.to_owned();
        Box::pin(async move { this.open(&url).await })
    }
}

impl WsConnector {
    async fn open(&self, url: &str) -> Result<Link, String> {
        let endpoint = Endpoint::parse(url)?;
        let stream = open_stream(&endpoint, &self.tls).await.map_err(|e| format!("{url}: {e}"))?;
        let request = http::Request::builder()
            .method("GET")
            .uri(endpoint.path.as_str())
            .header(http::header::HOST, endpoint.authority.as_str())
            .header(http::header::UPGRADE, "websocket")
            .header(http::header::CONNECTION, "upgrade")
            .header(http::header::SEC_WEBSOCKET_KEY, fastwebsockets::handshake::generate_key())
            .header(http::header::SEC_WEBSOCKET_VERSION, "13")
            .header(http::header::SEC_WEBSOCKET_PROTOCOL, herald_proto::SUBPROTOCOL)
            .header(http::header::USER_AGENT, concat!("herald-sdk-rust/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let (mut ws, response) =
            fastwebsockets::handshake::client(&SpawnExecutor, request, stream).await.map_err(|e| match e {
                WebSocketError::InvalidStatusCode(status) => format!("{url}: the edge answered HTTP {status}"),
                e => format!("{url}: upgrade failed: {e}"),
            })?;
        let protocol = response.headers().get(http::header::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok());
        if protocol != Some(herald_proto::SUBPROTOCOL) {
            return Err(format!("{url}: the server did not accept the {} subprotocol", herald_proto::SUBPROTOCOL));
        }
        ws.set_max_message_size(self.max_message);
        ws.set_auto_pong(true);
        ws.set_auto_close(true);
        let (rd, wr) = ws.split(tokio::io::split);
        let rd = fastwebsockets::FragmentCollectorRead::new(rd);
        let (out_tx, out_rx) = mpsc::channel(self.write_buffer);
        let (in_tx, in_rx) = mpsc::channel(self.inbound_buffer);
        let writer = tokio::spawn(write_loop(wr, out_rx, in_tx.clone(), self.write_timeout));
        let reader = tokio::spawn(read_loop(rd, out_tx.clone(), in_tx));
        Ok(Link { out: out_tx, inbound: in_rx, _tasks: vec![AbortOnDrop(reader), AbortOnDrop(writer)] })
    }
}

async fn read_loop<S>(
    mut rd: fastwebsockets::FragmentCollectorRead<S>,
    out: mpsc::Sender<Outgoing>,
    inbound: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + Unpin,
{
    let ended = loop {
        // Pongs and the close echo the protocol owes go to the writer; a
        // ping is also a sign of life.
        let mut obligated = |frame: Frame<'_>| {
            let payload = Bytes::copy_from_slice(&frame.payload);
            let item = match frame.opcode {
                OpCode::Pong => {
                    let _ = inbound.try_send(Inbound::Life);
                    Some(Outgoing::Pong(payload))
                }
                // The close echo: sent by the writer when the close is handled.
                _ => None,
            };
            if let Some(item) = item {
                let _ = out.try_send(item);
            }
            std::future::ready(Ok::<(), std::io::Error>(()))
        };
        let frame = match rd.read_frame(&mut obligated).await {
            Ok(frame) => frame,
            Err(e) => break Inbound::Closed { code: None, reason: read_error(&e) },
        };
        match frame.opcode {
            OpCode::Binary => {
                let payload = match frame.payload {
                    Payload::Bytes(b) => b.freeze(),
                    other => Bytes::from(Vec::from(other)),
                };
                match client::ServerFrame::decode(payload) {
                    Ok(frame) => {
                        if inbound.send(Inbound::Frame(frame)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        break Inbound::Closed { code: None, reason: format!("undecodable frame from the edge: {e}") };
                    }
                }
            }
            OpCode::Close => {
                let (code, reason) = match frame.payload.len() {
                    0 | 1 => (1005, String::new()),
                    _ => (
                        u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                        String::from_utf8_lossy(&frame.payload[2..]).into_owned(),
                    ),
                };
                // Answer the close, then stop.
                let _ = out.try_send(Outgoing::Close(code, String::new()));
                break Inbound::Closed { code: Some(code), reason };
            }
            OpCode::Pong => {
                let _ = inbound.try_send(Inbound::Life);
            }
            OpCode::Text => {
                break Inbound::Closed { code: None, reason: "the edge sent a text frame".into() };
            }
            _ => {}
        }
    };
    let _ = inbound.send(ended).await;
}

fn read_error(e: &WebSocketError) -> String {
    match e {
        WebSocketError::UnexpectedEOF => "the connection was closed without a close frame".into(),
        WebSocketError::IoError(e) => format!("read failed: {e}"),
        WebSocketError::FrameTooLarge => "the edge sent a message larger than max_inbound_message_bytes".into(),
        e => format!("websocket error: {e}"),
    }
}

async fn write_loop<W>(
    mut wr: fastwebsockets::WebSocketWrite<W>,
    mut rx: mpsc::Receiver<Outgoing>,
    inbound: mpsc::Sender<Inbound>,
    write_timeout: Duration,
) where
    W: AsyncWrite + Unpin,
{
    while let Some(item) = rx.recv().await {
        let (frame, last) = match &item {
            Outgoing::Frame(bytes) => (Frame::binary(Payload::Borrowed(bytes)), false),
            Outgoing::Pong(bytes) => (Frame::pong(Payload::Borrowed(bytes)), false),
            Outgoing::Close(code, reason) => (Frame::close(*code, reason.as_bytes()), true),
        };
        match tokio::time::timeout(write_timeout, wr.write_frame(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = inbound.try_send(Inbound::Closed { code: None, reason: format!("write failed: {e}") });
                return;
            }
            Err(_) => {
                let _ = inbound.try_send(Inbound::Closed {
                    code: None,
                    reason: format!("a write made no progress for {write_timeout:?}"),
                });
                return;
            }
        }
        if last {
            return;
        }
    }
}
