//! One client connection, from the upgraded socket to the close.
//!
//! Each connection is two tasks:
//!
//! - the **reader** (this module's [`serve`]) authenticates the client,
//!   reads its frames, answers every request, and watches the heartbeat and
//!   token deadlines;
//! - the **writer** owns the socket's write half and drains the
//!   connection's [`Outbox`]: everything waiting goes out in one write, pings
//!   go out on the heartbeat interval, and a requested close is written as a
//!   `Disconnect` frame plus a close frame before the socket is shut.
//!
//! Replies and deliveries share the outbox, so a slow client is closed by
//! the same bound whatever filled its queue.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use herald_proto::claims::{MAX_EVENT_NAME_LEN, MAX_MESSAGE_ID_LEN};
use herald_proto::client::{self, client_frame, reply, reply_ok, server_frame};
use herald_proto::{ChannelName, Claims, CloseCode, ErrorCode, Operation, bus};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use crate::auth::{AuthError, Verifier};
use crate::config::EdgeConfig;
use crate::hub::{ConnEntry, Hub};
use crate::outbox::Outbox;
use crate::ws::{self, FrameReader, Incoming, ReadError};

/// Idempotency ids remembered per connection.
const RECENT_IDS: usize = 32;

/// What every connection of an edge shares.
pub(crate) struct Shared {
    pub hub: Arc<Hub>,
    pub verifier: Verifier,
    pub config: EdgeConfig,
    pub edge_id: String,
    /// WebSocket connections open now, authenticated or not.
    pub open: AtomicUsize,
    /// Becomes true when the edge starts draining.
    pub draining: watch::Receiver<bool>,
}

/// Decrements the open-connection count when the connection ends.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the reader stopped, and how the connection is to be closed.
struct Close(CloseCode, String);

impl Close {
    fn code(code: CloseCode) -> Self {
        Self(code, code.reason().to_owned())
    }
}

fn reply_ok(request_id: u64, value: Option<reply_ok::Value>) -> Bytes {
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::Reply(client::Reply {
            request_id,
            result: Some(reply::Result::Ok(client::ReplyOk { value })),
        })),
    })
}

fn reply_err(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Bytes {
    metrics::counter!("herald_request_errors_total", "code" => code.name()).increment(1);
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::Reply(client::Reply {
            request_id,
            result: Some(reply::Result::Error(client::ReplyError {
                code: code.number(),
                message: message.into(),
                retryable: code.retryable(),
            })),
        })),
    })
}

/// The `Disconnect` frame that precedes a close frame.
pub(crate) fn disconnect_frame(code: CloseCode, reason: &str) -> Bytes {
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::Disconnect(client::Disconnect {
            code: u32::from(code.number()),
            reason: reason.to_owned(),
            advice: code.advice().to_wire() as i32,
        })),
    })
}

/// A token bucket for client publishes.
struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn new(rate: u32, burst: u32) -> Self {
        Self { rate: f64::from(rate), burst: f64::from(burst), tokens: f64::from(burst), last: Instant::now() }
    }

    fn allow(&mut self) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The state of an authenticated connection.
struct Session {
    id: u64,
    claims: Claims,
    entry: Arc<ConnEntry>,
    subscriptions: HashSet<ChannelName>,
    rate: RateLimit,
    max_message: usize,
    expires_at: Instant,
    recent_ids: VecDeque<String>,
    published: u64,
}

/// Serves one upgraded WebSocket until it closes.
///
/// `bearer` is the token from the upgrade request's `Authorization` header,
/// `origin` its `Origin` header.
pub(crate) async fn serve<S>(io: S, shared: Arc<Shared>, bearer: Option<String>, origin: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _guard = OpenGuard(shared.clone());
    let config = &shared.config;
    let (mut rd, wr) = tokio::io::split(io);
    let outbox = Arc::new(Outbox::new(config.send_queue_frames as usize, config.send_queue_bytes.as_usize()));
    let writer = tokio::spawn(write_loop(wr, outbox.clone(), config.heartbeat_interval.0, config.write_timeout.0));
    let mut reader = FrameReader::new(config.max_frame_size.as_usize());
    let id = shared.hub.next_id();

    // Boxed: the handshake's state is needed once; keeping it out of this
    // future keeps every idle connection small.
    let close = match Box::pin(handshake(&shared, &mut reader, &mut rd, &outbox, id, bearer, origin)).await {
        Ok(mut session) => {
            let close = run(&shared, &mut reader, &mut rd, &outbox, &mut session).await;
            for channel in session.subscriptions.drain() {
                shared.hub.unsubscribe(&session.claims.app, &channel, id);
            }
            shared.hub.unregister(id);
            close
        }
        Err(close) => close,
    };
    if let Some(Close(code, reason)) = close {
        if code != CloseCode::Normal {
            tracing::debug!(conn = id, code = code.number(), %reason, "closing connection");
        }
        metrics::counter!("herald_closes_total", "code" => code.name()).increment(1);
        outbox.close(code, &reason);
    }
    // The writer ends after the close frame, or at once when the socket is
    // gone; either way within the write timeout.
    let _ = writer.await;
}

/// Reads the next message, skipping nothing; maps read errors to closes.
async fn read<R: AsyncRead + Unpin>(reader: &mut FrameReader, rd: &mut R) -> Result<Incoming, Option<Close>> {
    reader.next(rd).await.map_err(|e| match e {
        ReadError::TooBig { .. } => Some(Close::code(CloseCode::MessageTooBig)),
        ReadError::Protocol(what) => Some(Close(CloseCode::ProtocolError, what.to_owned())),
        ReadError::Eof | ReadError::Io(_) => None,
    })
}

async fn handshake<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    reader: &mut FrameReader,
    rd: &mut R,
    outbox: &Arc<Outbox>,
    id: u64,
    bearer: Option<String>,
    origin: Option<String>,
) -> Result<Session, Option<Close>> {
    let config = &shared.config;
    let mut draining = shared.draining.clone();
    let deadline = Instant::now() + config.handshake_timeout.0;
    // With a bearer token the client is authenticated before its first frame.
    let (token, request_id) = match bearer {
        Some(token) => (token, None),
        None => {
            let frame = tokio::select! {
                biased;
                _ = draining.wait_for(|d| *d) => return Err(Some(Close::code(CloseCode::GoingAway))),
                _ = sleep_until(deadline) => return Err(Some(Close::code(CloseCode::HandshakeTimeout))),
                frame = read(reader, rd) => frame?,
            };
            match frame {
                Incoming::Binary(bytes) => match client::ClientFrame::decode(bytes) {
                    Ok(client::ClientFrame { request_id, kind: Some(client_frame::Kind::Connect(c)) }) => {
                        (c.token, Some(request_id))
                    }
                    Ok(_) => return Err(Some(Close(CloseCode::BadFrame, "the first frame must be connect".into()))),
                    Err(_) => return Err(Some(Close::code(CloseCode::BadFrame))),
                },
                Incoming::Text => return Err(Some(Close::code(CloseCode::UnsupportedData))),
                Incoming::Close(_) => return Err(Some(Close::code(CloseCode::Normal))),
                Incoming::Ping(_) | Incoming::Pong => {
                    return Err(Some(Close(CloseCode::BadFrame, "the first frame must be connect".into())));
                }
            }
        }
    };
    let claims = match tokio::time::timeout_at(deadline, shared.verifier.verify(&token)).await {
        Err(_) => return Err(Some(Close::code(CloseCode::HandshakeTimeout))),
        Ok(Ok(claims)) => claims,
        Ok(Err(e)) => {
            metrics::counter!("herald_auth_failures_total", "reason" => e.metric_reason()).increment(1);
            return Err(Some(match e {
                AuthError::Expired => Close::code(CloseCode::TokenExpired),
                AuthError::Invalid(reason) => Close(CloseCode::InvalidToken, format!("invalid token: {reason}")),
                AuthError::KeysUnavailable => Close(CloseCode::InternalError, "signing keys unavailable".into()),
            }));
        }
    };
    if let Some(origin) = &origin
        && !claims.origins.is_empty()
        && !claims.origins.iter().any(|o| o == origin)
    {
        metrics::counter!("herald_auth_failures_total", "reason" => "origin").increment(1);
        return Err(Some(Close::code(CloseCode::OriginNotAllowed)));
    }
    let lim = claims.lim.unwrap_or_default();
    let app_limit = match (config.max_connections_per_app, lim.max_connections) {
        (0, None) => 0,
        (0, Some(n)) => n.max(1),
        (c, None) => c,
        (c, Some(n)) => c.min(n.max(1)),
    };
    let entry = Arc::new(ConnEntry {
        id,
        app: claims.app.clone(),
        key: std::sync::Mutex::new(claims.key.clone()),
        outbox: outbox.clone(),
    });
    if !shared.hub.register(entry.clone(), app_limit) {
        return Err(Some(Close(CloseCode::ConnectionLimit, "app connection limit reached on this edge".into())));
    }
    let max_message = match lim.max_message_bytes {
        Some(n) => config.max_message_size.as_usize().min(n as usize),
        None => config.max_message_size.as_usize(),
    };
    let rate = lim
        .publish_rate
        .map_or(config.publish_rate, |r| if config.publish_rate == 0 { r } else { r.min(config.publish_rate) });
    let connected = client::ServerFrame {
        kind: Some(server_frame::Kind::Connected(client::Connected {
            connection_id: format!("{}-{id}", shared.edge_id),
            client_id: claims.sub.as_str().to_owned(),
            heartbeat_interval_ms: config.heartbeat_interval.0.as_millis() as u32,
            heartbeat_timeout_ms: config.heartbeat_timeout.0.as_millis() as u32,
            token_expires_at_ms: claims.exp.saturating_mul(1000),
            limits: Some(client::Limits {
                max_frame_bytes: config.max_frame_size.0 as u32,
                max_message_bytes: max_message as u32,
                max_subscriptions: config.max_subscriptions,
                publish_rate_per_sec: rate,
                publish_burst: config.publish_burst,
            }),
            edge_id: shared.edge_id.clone(),
        })),
    };
    let _ = outbox.push(ws::binary_frame(&connected));
    if let Some(request_id) = request_id {
        let _ = outbox.push(reply_ok(request_id, None));
    }
    let expires_at = expiry_instant(claims.exp, config.token_leeway.0);
    tracing::debug!(conn = id, app = %claims.app, client = %claims.sub, "connection authenticated");
    Ok(Session {
        id,
        entry,
        subscriptions: HashSet::new(),
        rate: RateLimit::new(rate, config.publish_burst),
        max_message,
        expires_at,
        recent_ids: VecDeque::new(),
        published: 0,
        claims,
    })
}

/// When a token with this `exp` stops being acceptable.
fn expiry_instant(exp: i64, leeway: Duration) -> Instant {
    let now_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let left = (exp - now_s).max(0) as u64;
    Instant::now() + Duration::from_secs(left) + leeway
}

async fn run<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    reader: &mut FrameReader,
    rd: &mut R,
    outbox: &Arc<Outbox>,
    session: &mut Session,
) -> Option<Close> {
    let config = &shared.config;
    let heartbeat_timeout = config.heartbeat_timeout.0;
    let mut last_seen = Instant::now();
    loop {
        if outbox.is_closing() {
            // Closed by the hub (slow consumer, revocation, drain): the writer
            // takes it from here.
            return None;
        }
        let incoming = tokio::select! {
            biased;
            () = outbox.closed() => return None,
            () = sleep_until(session.expires_at) => return Some(Close::code(CloseCode::TokenExpired)),
            () = sleep_until(last_seen + heartbeat_timeout) => return Some(Close::code(CloseCode::HeartbeatTimeout)),
            incoming = read(reader, rd) => incoming,
        };
        last_seen = Instant::now();
        let frame = match incoming {
            Ok(Incoming::Binary(bytes)) => bytes,
            Ok(Incoming::Ping(payload)) => {
                let _ = outbox.push(ws::pong_frame(&payload));
                continue;
            }
            Ok(Incoming::Pong) => continue,
            Ok(Incoming::Text) => return Some(Close::code(CloseCode::UnsupportedData)),
            Ok(Incoming::Close(_)) => return Some(Close::code(CloseCode::Normal)),
            Err(close) => return close,
        };
        let Ok(frame) = client::ClientFrame::decode(frame) else {
            return Some(Close::code(CloseCode::BadFrame));
        };
        metrics::counter!("herald_requests_total").increment(1);
        // Boxed: requests are rare next to idle time, and their state
        // (backplane futures included) would otherwise sit in every
        // connection's future.
        let reply = Box::pin(handle(shared, session, frame)).await;
        if outbox.push(reply).is_err() {
            return None;
        }
    }
}

async fn handle(shared: &Arc<Shared>, session: &mut Session, frame: client::ClientFrame) -> Bytes {
    let rid = frame.request_id;
    let Some(kind) = frame.kind else {
        return reply_err(rid, ErrorCode::UnknownRequest, "unknown request kind");
    };
    match kind {
        client_frame::Kind::Connect(_) => reply_ok(rid, None),
        client_frame::Kind::Ping(_) => reply_ok(rid, None),
        client_frame::Kind::Subscribe(s) => subscribe(shared, session, rid, s).await,
        client_frame::Kind::Unsubscribe(u) => {
            let Ok(channel) = ChannelName::new(&u.channel) else {
                return reply_err(rid, ErrorCode::InvalidChannel, "invalid channel name");
            };
            if !session.subscriptions.remove(&channel) {
                return reply_err(rid, ErrorCode::NotSubscribed, "not subscribed to this channel");
            }
            shared.hub.unsubscribe(&session.claims.app, &channel, session.id);
            reply_ok(rid, None)
        }
        client_frame::Kind::Publish(p) => publish(shared, session, rid, p).await,
        client_frame::Kind::RefreshToken(r) => refresh(shared, session, rid, &r.token).await,
        client_frame::Kind::PresenceQuery(q) => {
            let Ok(channel) = ChannelName::new(&q.channel) else {
                return reply_err(rid, ErrorCode::InvalidChannel, "invalid channel name");
            };
            if !session.claims.caps.allows(channel.as_str(), Operation::Presence) {
                return reply_err(rid, ErrorCode::Forbidden, "token does not allow presence on this channel");
            }
            reply_err(rid, ErrorCode::NotEnabled, "presence is not enabled for this channel")
        }
    }
}

async fn subscribe(shared: &Arc<Shared>, session: &mut Session, rid: u64, s: client::Subscribe) -> Bytes {
    let channel = match ChannelName::new(&s.channel) {
        Ok(c) => c,
        Err(e) => return reply_err(rid, ErrorCode::InvalidChannel, e.to_string()),
    };
    if !session.claims.caps.allows(channel.as_str(), Operation::Subscribe) {
        return reply_err(rid, ErrorCode::Forbidden, "token does not allow subscribe on this channel");
    }
    let result = client::SubscribeResult { history: false, recovered: false, position: None };
    if session.subscriptions.contains(&channel) {
        return reply_ok(rid, Some(reply_ok::Value::Subscribed(result)));
    }
    if session.subscriptions.len() >= shared.config.max_subscriptions as usize {
        return reply_err(
            rid,
            ErrorCode::LimitExceeded,
            format!("at most {} subscriptions per connection", shared.config.max_subscriptions),
        );
    }
    match shared.hub.subscribe(&session.claims.app, &channel, session.id, &session.entry.outbox).await {
        Ok(()) => {
            session.subscriptions.insert(channel);
            reply_ok(rid, Some(reply_ok::Value::Subscribed(result)))
        }
        Err(e) => {
            tracing::warn!(error = %e, "subscribe failed on the backplane");
            reply_err(rid, ErrorCode::Unavailable, "backplane unavailable; retry")
        }
    }
}

async fn publish(shared: &Arc<Shared>, session: &mut Session, rid: u64, p: client::Publish) -> Bytes {
    let channel = match ChannelName::new(&p.channel) {
        Ok(c) => c,
        Err(e) => return reply_err(rid, ErrorCode::InvalidChannel, e.to_string()),
    };
    if !session.claims.caps.allows(channel.as_str(), Operation::Publish) {
        return reply_err(rid, ErrorCode::Forbidden, "token does not allow publish on this channel");
    }
    if p.data.len() > session.max_message {
        return reply_err(rid, ErrorCode::TooLarge, format!("data exceeds {} bytes", session.max_message));
    }
    if p.event.as_ref().is_some_and(|e| e.len() > MAX_EVENT_NAME_LEN) {
        return reply_err(rid, ErrorCode::BadRequest, format!("event name exceeds {MAX_EVENT_NAME_LEN} bytes"));
    }
    if let Some(id) = &p.idempotency_id {
        if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN {
            return reply_err(
                rid,
                ErrorCode::BadRequest,
                format!("idempotency id must be 1-{MAX_MESSAGE_ID_LEN} bytes"),
            );
        }
        if session.recent_ids.contains(id) {
            // A retry of a message this connection already published.
            let result = client::PublishResult { id: id.clone(), position: None };
            return reply_ok(rid, Some(reply_ok::Value::Published(result)));
        }
    }
    if !session.rate.allow() {
        return reply_err(rid, ErrorCode::RateLimited, "publish rate exceeded; slow down");
    }
    session.published += 1;
    let id =
        p.idempotency_id.clone().unwrap_or_else(|| format!("{}-{}-{}", shared.edge_id, session.id, session.published));
    let message = bus::ChannelMessage {
        app_id: session.claims.app.as_str().to_owned(),
        channel: channel.as_str().to_owned(),
        data: p.data,
        event: p.event,
        id: id.clone(),
        publisher: session.claims.sub.as_str().to_owned(),
        timestamp_ms: crate::now_ms(),
    };
    let mut buf = BytesMut::with_capacity(message.encoded_len());
    let _ = message.encode(&mut buf);
    match shared.hub.backplane().publish_encoded(&session.claims.app, &channel, buf.freeze()).await {
        Ok(()) => {
            metrics::counter!("herald_client_publishes_total").increment(1);
            if p.idempotency_id.is_some() {
                if session.recent_ids.len() >= RECENT_IDS {
                    session.recent_ids.pop_front();
                }
                session.recent_ids.push_back(id.clone());
            }
            reply_ok(rid, Some(reply_ok::Value::Published(client::PublishResult { id, position: None })))
        }
        Err(e) => {
            tracing::warn!(error = %e, "client publish failed on the backplane");
            reply_err(rid, ErrorCode::Unavailable, "backplane unavailable; retry")
        }
    }
}

async fn refresh(shared: &Arc<Shared>, session: &mut Session, rid: u64, token: &str) -> Bytes {
    let claims = match shared.verifier.verify(token).await {
        Ok(claims) => claims,
        Err(AuthError::Expired) => return reply_err(rid, ErrorCode::TokenExpired, "the new token is expired"),
        Err(e) => return reply_err(rid, ErrorCode::Unauthorized, e.to_string()),
    };
    if claims.app != session.claims.app || claims.sub != session.claims.sub {
        return reply_err(rid, ErrorCode::Forbidden, "the new token must name the same app and client id");
    }
    session.expires_at = expiry_instant(claims.exp, shared.config.token_leeway.0);
    *session.entry.key.lock().unwrap_or_else(|e| e.into_inner()) = claims.key.clone();
    let exp_ms = claims.exp.saturating_mul(1000);
    // Subscriptions the new token no longer allows end now.
    let dropped: Vec<ChannelName> = session
        .subscriptions
        .iter()
        .filter(|c| !claims.caps.allows(c.as_str(), Operation::Subscribe))
        .cloned()
        .collect();
    for channel in dropped {
        session.subscriptions.remove(&channel);
        shared.hub.unsubscribe(&session.claims.app, &channel, session.id);
    }
    session.claims = claims;
    reply_ok(rid, Some(reply_ok::Value::Refreshed(client::RefreshResult { token_expires_at_ms: exp_ms })))
}

/// The writer task: drains the outbox into the socket, pings on the
/// heartbeat interval, and writes the close.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    outbox: Arc<Outbox>,
    ping_every: Duration,
    write_timeout: Duration,
) {
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = BytesMut::new();
    loop {
        let batch = tokio::select! {
            batch = outbox.take() => batch,
            _ = ping.tick() => {
                if write_all(&mut wr, &ws::ping_frame(), write_timeout).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let n = batch.frames.len() as u64;
        let ok = match batch.frames.len() {
            0 => true,
            1 => write_all(&mut wr, &batch.frames[0], write_timeout).await.is_ok(),
            _ => {
                for frame in &batch.frames {
                    buf.extend_from_slice(frame);
                }
                let ok = write_all(&mut wr, &buf, write_timeout).await.is_ok();
                buf.clear();
                if buf.capacity() > 64 * 1024 {
                    buf = BytesMut::new();
                }
                ok
            }
        };
        metrics::counter!("herald_frames_out_total").increment(n);
        if !ok {
            break;
        }
        if let Some((code, reason)) = batch.close {
            let mut tail = BytesMut::new();
            if code != CloseCode::Normal {
                tail.extend_from_slice(&disconnect_frame(code, &reason));
            }
            tail.extend_from_slice(&ws::close_frame(code.number(), &reason));
            let _ = write_all(&mut wr, &tail, write_timeout).await;
            let _ = tokio::time::timeout(write_timeout, wr.shutdown()).await;
            break;
        }
    }
    // Whatever happened, nothing more is accepted for this connection.
    outbox.close(CloseCode::Normal, "closed");
}

async fn write_all<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], limit: Duration) -> Result<(), ()> {
    match tokio::time::timeout(limit, wr.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::{Backplane, LocalBus};

    /// Every idle connection holds these futures: keep them small (the
    /// figures are for debug builds; release builds are smaller).
    #[tokio::test]
    async fn connection_futures_stay_small() {
        let (_tx, draining) = watch::channel(false);
        let shared = Arc::new(Shared {
            hub: Hub::new(Backplane::local(&LocalBus::new())),
            verifier: Verifier::new("http://127.0.0.1:1/jwks", "herald", Duration::ZERO, Duration::from_secs(1)),
            config: EdgeConfig::default(),
            edge_id: "e".into(),
            open: AtomicUsize::new(0),
            draining,
        });
        let (io, _other) = tokio::io::duplex(64);
        let serve = serve(io, shared.clone(), None, None);
        let (_, w) = tokio::io::split(tokio::io::duplex(64).0);
        let writer = write_loop(w, Arc::new(Outbox::new(16, 1024)), Duration::from_secs(1), Duration::from_secs(1));
        eprintln!(
            "serve future: {} bytes, write_loop future: {} bytes",
            std::mem::size_of_val(&serve),
            std::mem::size_of_val(&writer)
        );
    }
}
