//! One client connection, from the upgraded socket to the close.
//!
//! Each connection is two tasks:
//!
//! - the **reader** (this module's [`serve`]) authenticates the client,
//!   reads its frames, answers every request, and watches the heartbeat and
//!   token deadlines;
//! - the **writer** owns the socket's write half and drains the
//!   connection's [`Outbox`]: everything waiting goes out in one write (pings
//!   too: the hub queues them, see [`Hub::ping_loop`]), and a requested close
//!   is written as a `Disconnect` frame plus a close frame before the socket
//!   is shut. On plain TCP a push to an idle outbox writes to the socket
//!   itself; the writer takes over whatever the socket did not take.
//!
//! Replies and deliveries share the outbox, so a slow client is closed by
//! the same bound whatever filled its queue.

use std::collections::{HashMap, VecDeque};
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
use crate::hub::{ConnEntry, Hub, SubscribeOptions};
use crate::outbox::Outbox;
use crate::ws::{self, FrameReader, Incoming, ReadError};
use herald_bus::namespaces::keeps_history;
use herald_bus::presence::MAX_MEMBERS_PAGE;
use herald_bus::{BusError, Position};

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

    /// How a connection whose token is refused is closed.
    fn refused(e: AuthError) -> Self {
        match e {
            AuthError::Expired => Self::code(CloseCode::TokenExpired),
            AuthError::Invalid(reason) => Self(CloseCode::InvalidToken, format!("invalid token: {reason}")),
            AuthError::KeysUnavailable => Self(CloseCode::InternalError, "signing keys unavailable".into()),
            AuthError::KeyRevoked => Self::code(CloseCode::KeyRevoked),
            AuthError::AppDeleted => Self::code(CloseCode::AppUnavailable),
        }
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

/// The `GoAway` frame: the edge is draining; the client has `within` to
/// finish its requests and move.
pub(crate) fn go_away_frame(within: Duration) -> Bytes {
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::GoAway(client::GoAway {
            within_ms: u32::try_from(within.as_millis()).unwrap_or(u32::MAX),
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
    /// Subscribed channels → the presence entry reported for each, if any.
    subscriptions: HashMap<ChannelName, Option<Arc<bus::PresenceEntry>>>,
    connection_id: String,
    rate: RateLimit,
    max_message: usize,
    expires_at: Instant,
    recent_ids: VecDeque<String>,
    published: u64,
}

/// Serves one upgraded WebSocket until it closes.
///
/// `rd` and `wr` are the socket's halves and `early` what the client sent
/// after its upgrade request that was already read; `bearer` is the token
/// from the upgrade request's `Authorization` header, `origin` its `Origin`
/// header.
pub(crate) async fn serve<R, W>(
    mut rd: R,
    wr: W,
    early: Bytes,
    direct: Option<Arc<tokio::net::TcpStream>>,
    shared: Arc<Shared>,
    bearer: Option<String>,
    origin: Option<String>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _guard = OpenGuard(shared.clone());
    let config = &shared.config;
    let outbox = Arc::new(Outbox::new(config.send_queue_frames as usize, config.send_queue_bytes.as_usize()));
    if let Some(sock) = direct {
        outbox.write_through(sock);
    }
    let writer = tokio::spawn(write_loop(wr, outbox.clone(), config.write_timeout.0));
    let mut reader = FrameReader::new(config.max_frame_size.as_usize());
    reader.prime(&early);
    // It may point into the HTTP server's read buffer: let go of it now,
    // not when the connection ends.
    drop(early);
    let id = shared.hub.next_id();

    // Boxed: the handshake's state is needed once; keeping it out of this
    // future keeps every idle connection small.
    let close = match Box::pin(handshake(&shared, &mut reader, &mut rd, &outbox, id, bearer, origin)).await {
        Ok(mut session) => {
            let close = run(&shared, &mut reader, &mut rd, &outbox, &mut session).await;
            let mut leaves = Vec::new();
            for (channel, presence) in session.subscriptions.drain() {
                shared.hub.unsubscribe(&session.claims.app, &channel, id);
                leaves.extend(presence);
            }
            shared.hub.unregister(id);
            if !leaves.is_empty() {
                // In the background: the close must not wait for NATS.
                let (hub, app) = (shared.hub.clone(), session.claims.app.clone());
                tokio::spawn(async move {
                    for entry in leaves {
                        report_leave(&hub, &app, entry).await;
                    }
                });
            }
            close
        }
        Err(close) => close,
    };
    match close {
        Some(Close(code, reason)) => {
            if code != CloseCode::Normal {
                tracing::debug!(conn = id, code = code.number(), %reason, "closing connection");
            }
            metrics::counter!("herald_closes_total", "code" => code.name()).increment(1);
            outbox.close(code, &reason);
        }
        // Closed by the hub: the writer sends the close frame.
        None if outbox.is_closing() => {}
        // The peer is gone (end of stream or a socket error): nothing more
        // can reach it, and an idle writer would wait for ever.
        None => {
            outbox.close(CloseCode::Normal, "gone");
            writer.abort();
        }
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
            return Err(Some(Close::refused(e)));
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
    // A revocation announced while the token was checked closed the
    // connections registered then; this one checks again now that it is.
    if let Err(e) = shared.hub.revocations().check(&claims) {
        shared.hub.unregister(id);
        metrics::counter!("herald_auth_failures_total", "reason" => e.metric_reason()).increment(1);
        return Err(Some(Close::refused(e)));
    }
    let max_message = match lim.max_message_bytes {
        Some(n) => config.max_message_size.as_usize().min(n as usize),
        None => config.max_message_size.as_usize(),
    };
    let rate = lim
        .publish_rate
        .map_or(config.publish_rate, |r| if config.publish_rate == 0 { r } else { r.min(config.publish_rate) });
    let connection_id = format!("{}-{id}", shared.edge_id);
    let connected = client::ServerFrame {
        kind: Some(server_frame::Kind::Connected(client::Connected {
            connection_id: connection_id.clone(),
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
        subscriptions: HashMap::new(),
        connection_id,
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
    if *shared.draining.borrow() {
        // Authenticated after the drain began: move on at once.
        let _ = outbox.push(go_away_frame(config.move_grace()));
    }
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
        // (bus futures included) would otherwise sit in every
        // connection's future.
        let reply = Box::pin(handle(shared, session, frame)).await;
        if let Some(reply) = reply
            && outbox.push(reply).is_err()
        {
            return None;
        }
    }
}

/// Answers one request. `None` when the answer was already queued (a
/// subscribe that replays history queues its reply before the replay).
async fn handle(shared: &Arc<Shared>, session: &mut Session, frame: client::ClientFrame) -> Option<Bytes> {
    let rid = frame.request_id;
    let Some(kind) = frame.kind else {
        return Some(reply_err(rid, ErrorCode::UnknownRequest, "unknown request kind"));
    };
    Some(match kind {
        client_frame::Kind::Connect(_) => reply_ok(rid, None),
        client_frame::Kind::Ping(_) => reply_ok(rid, None),
        client_frame::Kind::Subscribe(s) => return subscribe(shared, session, rid, s).await,
        client_frame::Kind::Unsubscribe(u) => {
            let Ok(channel) = ChannelName::new(&u.channel) else {
                return Some(reply_err(rid, ErrorCode::InvalidChannel, "invalid channel name"));
            };
            let Some(presence) = session.subscriptions.remove(&channel) else {
                return Some(reply_err(rid, ErrorCode::NotSubscribed, "not subscribed to this channel"));
            };
            shared.hub.unsubscribe(&session.claims.app, &channel, session.id);
            if let Some(entry) = presence {
                report_leave(&shared.hub, &session.claims.app, entry).await;
            }
            reply_ok(rid, None)
        }
        client_frame::Kind::Publish(p) => publish(shared, session, rid, p).await,
        client_frame::Kind::RefreshToken(r) => refresh(shared, session, rid, &r.token).await,
        client_frame::Kind::PresenceQuery(q) => presence_query(shared, session, rid, q).await,
    })
}

/// The reply to a bus failure.
fn bus_err(rid: u64, what: &str, e: &BusError) -> Bytes {
    tracing::warn!(error = %e, "{what} failed on the bus");
    match e {
        BusError::NoHistory(m) => reply_err(rid, ErrorCode::Unavailable, format!("history unavailable: {m}")),
        _ => reply_err(rid, ErrorCode::Unavailable, "bus unavailable; retry"),
    }
}

/// Most bytes of client ids and info in one page of a presence reply, and
/// at most a quarter of the send queue.
const MEMBERS_PAGE_BYTES: usize = 256 * 1024;

async fn presence_query(shared: &Arc<Shared>, session: &Session, rid: u64, q: client::PresenceQuery) -> Bytes {
    let Ok(channel) = ChannelName::new(&q.channel) else {
        return reply_err(rid, ErrorCode::InvalidChannel, "invalid channel name");
    };
    if !session.claims.caps.allows(channel.as_str(), Operation::Presence) {
        return reply_err(rid, ErrorCode::Forbidden, "token does not allow presence on this channel");
    }
    let options = match shared.hub.namespace_options(&session.claims.app, &channel).await {
        Ok(o) => o,
        Err(e) => return bus_err(rid, "namespace lookup", &e),
    };
    if !options.presence {
        return reply_err(rid, ErrorCode::NotEnabled, "presence is not enabled for this channel");
    }
    if !session.subscriptions.contains_key(&channel) {
        return reply_err(rid, ErrorCode::NotSubscribed, "subscribe to the channel to see its members");
    }
    let limit = match q.limit as usize {
        0 => MAX_MEMBERS_PAGE,
        n => n.min(MAX_MEMBERS_PAGE),
    };
    let max_bytes = MEMBERS_PAGE_BYTES.min(shared.config.send_queue_bytes.0 as usize / 4);
    let page = shared.hub.members_page(&session.claims.app, &channel, &q.after, limit, max_bytes).unwrap_or_default();
    let result = client::PresenceResult {
        channel: channel.as_str().to_owned(),
        members: page.members.into_iter().map(|m| client::Member { client_id: m.client_id, info: m.info }).collect(),
        next: page.next.unwrap_or_default(),
        total: u32::try_from(page.total).unwrap_or(u32::MAX),
    };
    reply_ok(rid, Some(reply_ok::Value::Presence(result)))
}

/// Reports that a connection left a presence channel.
async fn report_leave(hub: &Hub, app: &herald_proto::AppId, entry: Arc<bus::PresenceEntry>) {
    let Ok(channel) = ChannelName::new(&entry.channel) else { return };
    let report = hub
        .presence_report(app, bus::presence_report::Kind::Leave(bus::PresenceLeave { entry: Some((*entry).clone()) }));
    if let Err(e) = hub.bus().publish_presence(app, &channel, &report).await {
        tracing::warn!(%app, %channel, error = %e, "presence leave not sent; it expires instead");
    }
}

async fn subscribe(shared: &Arc<Shared>, session: &mut Session, rid: u64, s: client::Subscribe) -> Option<Bytes> {
    let channel = match ChannelName::new(&s.channel) {
        Ok(c) => c,
        Err(e) => return Some(reply_err(rid, ErrorCode::InvalidChannel, e.to_string())),
    };
    if !session.claims.caps.allows(channel.as_str(), Operation::Subscribe) {
        return Some(reply_err(rid, ErrorCode::Forbidden, "token does not allow subscribe on this channel"));
    }
    if session.subscriptions.contains_key(&channel) {
        let result = client::SubscribeResult { history: false, recovered: false, position: None };
        return Some(reply_ok(rid, Some(reply_ok::Value::Subscribed(result))));
    }
    if session.subscriptions.len() >= shared.config.max_subscriptions as usize {
        return Some(reply_err(
            rid,
            ErrorCode::LimitExceeded,
            format!("at most {} subscriptions per connection", shared.config.max_subscriptions),
        ));
    }
    let hub = &shared.hub;
    let app = &session.claims.app;
    let options = match hub.namespace_options(app, &channel).await {
        Ok(o) => o,
        Err(e) => return Some(bus_err(rid, "namespace lookup", &e)),
    };
    let history = keeps_history(&options);
    // Recovery needs the `history` capability; without it the subscribe
    // still succeeds, live only, with `recovered: false`.
    let recover =
        s.recover_from.filter(|_| history && session.claims.caps.allows(channel.as_str(), Operation::History));
    let presence = (options.presence && session.claims.caps.allows(channel.as_str(), Operation::Presence)).then(|| {
        Arc::new(bus::PresenceEntry {
            channel: channel.as_str().to_owned(),
            connection_id: session.connection_id.clone(),
            client_id: session.claims.sub.as_str().to_owned(),
            info: session
                .claims
                .info
                .as_ref()
                .map(|i| Bytes::from(serde_json::to_vec(i).unwrap_or_default()))
                .unwrap_or_default(),
        })
    });
    let history_size = options.history_size as usize;
    let how = SubscribeOptions { options, hold: history, presence: presence.clone() };
    if let Err(e) = hub.subscribe(app, &channel, session.id, &session.entry.outbox, how).await {
        return Some(bus_err(rid, "subscribe", &e));
    }
    session.subscriptions.insert(channel.clone(), presence.clone());
    if let Some(entry) = presence {
        let report = hub.presence_report(
            app,
            bus::presence_report::Kind::Join(bus::PresenceJoin { entry: Some((*entry).clone()) }),
        );
        if let Err(e) = hub.bus().publish_presence(app, &channel, &report).await {
            tracing::warn!(%app, %channel, error = %e, "presence join not sent; the next snapshot carries it");
        }
    }
    if !history {
        let result = client::SubscribeResult { history: false, recovered: false, position: None };
        return Some(reply_ok(rid, Some(reply_ok::Value::Subscribed(result))));
    }
    // History: read what is to be replayed while live frames are held.
    let (after, limit) = match &recover {
        Some(p) => (p.seq, history_size.min(REPLAY_PAGE)),
        None => (0, 0),
    };
    let page = hub.bus().read_history(app, &channel, after, limit).await;
    let (recovered, replay, position) = match (&recover, page) {
        (Some(from), Ok(page)) if page.epoch == from.epoch && page.complete => {
            // The replay goes on past this page up to the channel's newest.
            let last = page.messages.last().map_or(from.seq, |m| m.seq).max(page.last_seq);
            (true, page.messages, Position { seq: last, epoch: page.epoch })
        }
        (_, Ok(page)) => (false, Vec::new(), Position { seq: page.last_seq, epoch: page.epoch }),
        (_, Err(e)) => {
            // Live delivery works without history: report no position.
            tracing::warn!(%app, %channel, error = %e, "history read failed");
            hub.release(app, &channel, session.id, None).await;
            let result = client::SubscribeResult { history: true, recovered: false, position: None };
            return Some(reply_ok(rid, Some(reply_ok::Value::Subscribed(result))));
        }
    };
    let outbox = &session.entry.outbox;
    let result = client::SubscribeResult {
        history: true,
        recovered,
        position: Some(client::StreamPosition { seq: position.seq, epoch: position.epoch.clone() }),
    };
    let _ = outbox.push(reply_ok(rid, Some(reply_ok::Value::Subscribed(result))));
    let replayed = match (&recover, recovered) {
        (Some(from), true) => replay_all(hub, app, &channel, outbox, from.seq, replay, &position.epoch).await,
        _ => 0,
    };
    let replayed = (replayed > 0).then(|| Position { seq: replayed, epoch: position.epoch.clone() });
    hub.release(app, &channel, session.id, replayed.as_ref()).await;
    None
}

/// Messages per history read of a replay.
const REPLAY_PAGE: usize = 256;

/// Replays a recovering subscriber's history after `from`: `first` (the first page),
/// then page after page until the channel's newest message, each message
/// pushed once the send queue has room (a long replay never overflows it).
/// Returns the last sequence replayed, so that the live frames held
/// meanwhile follow it with no gap and no duplicate. If a later page cannot
/// be read, or the stream changed epoch meanwhile, the connection is closed
/// (the client reconnects and recovers from what it got): a replay that
/// stopped short must not be followed by live frames.
async fn replay_all(
    hub: &Hub,
    app: &herald_proto::AppId,
    channel: &ChannelName,
    outbox: &Outbox,
    from: u64,
    first: Vec<herald_bus::history::HistoryEntry>,
    epoch: &str,
) -> u64 {
    let mut replayed = from;
    let mut page = first;
    loop {
        let full = page.len() == REPLAY_PAGE;
        for entry in page {
            let at = Position { seq: entry.seq, epoch: epoch.to_owned() };
            match crate::hub::encode_replay(channel, entry.payload, &at) {
                Ok(frame) => {
                    if outbox.push_paced(frame).await.is_err() {
                        return replayed;
                    }
                    metrics::counter!("herald_recovered_messages_total").increment(1);
                }
                Err(e) => tracing::warn!(%app, %channel, error = %e, "undecodable stored message skipped"),
            }
            replayed = replayed.max(entry.seq);
        }
        if !full {
            return replayed;
        }
        match hub.bus().read_history(app, channel, replayed, REPLAY_PAGE).await {
            Ok(next) if next.epoch == epoch => page = next.messages,
            Ok(_) => {
                tracing::info!(%app, %channel, "history stream changed during a replay; closing the connection");
                outbox.close(CloseCode::BackplaneUnavailable, "history changed during the replay; reconnect");
                return replayed;
            }
            Err(e) => {
                tracing::warn!(%app, %channel, error = %e, "history read failed during a replay; closing the connection");
                outbox.close(CloseCode::BackplaneUnavailable, "history unavailable during the replay; reconnect");
                return replayed;
            }
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
    let options = match shared.hub.namespace_options(&session.claims.app, &channel).await {
        Ok(o) => o,
        Err(e) => return bus_err(rid, "namespace lookup", &e),
    };
    if !options.client_publish {
        return reply_err(rid, ErrorCode::Forbidden, "clients may not publish in this channel's namespace");
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
        timestamp_ms: herald_bus::now_ms(),
    };
    let bus = shared.hub.bus();
    let outcome = if keeps_history(&options) {
        bus.publish_history(&session.claims.app, &channel, &message).await.map(Some)
    } else {
        let mut buf = BytesMut::with_capacity(message.encoded_len());
        let _ = message.encode(&mut buf);
        bus.publish_encoded(&session.claims.app, &channel, buf.freeze()).await.map(|()| None)
    };
    match outcome {
        Ok(position) => {
            metrics::counter!("herald_client_publishes_total").increment(1);
            if p.idempotency_id.is_some() {
                if session.recent_ids.len() >= RECENT_IDS {
                    session.recent_ids.pop_front();
                }
                session.recent_ids.push_back(id.clone());
            }
            let position = position.map(|p| client::StreamPosition { seq: p.seq, epoch: p.epoch });
            reply_ok(rid, Some(reply_ok::Value::Published(client::PublishResult { id, position })))
        }
        Err(e) => bus_err(rid, "client publish", &e),
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
    // The new key's revocation may have been announced (and matched against
    // the old key) while the token was checked.
    if let Err(e) = shared.hub.revocations().check(&claims) {
        let message = e.to_string();
        let Close(code, reason) = Close::refused(e);
        session.entry.outbox.close(code, &reason);
        return reply_err(rid, ErrorCode::Unauthorized, message);
    }
    let exp_ms = claims.exp.saturating_mul(1000);
    // Subscriptions the new token no longer allows end now.
    let dropped: Vec<ChannelName> = session
        .subscriptions
        .keys()
        .filter(|c| !claims.caps.allows(c.as_str(), Operation::Subscribe))
        .cloned()
        .collect();
    for channel in dropped {
        if let Some(Some(entry)) = session.subscriptions.remove(&channel) {
            report_leave(&shared.hub, &session.claims.app, entry).await;
        }
        shared.hub.unsubscribe(&session.claims.app, &channel, session.id);
    }
    session.claims = claims;
    reply_ok(rid, Some(reply_ok::Value::Refreshed(client::RefreshResult { token_expires_at_ms: exp_ms })))
}

/// The writer task: drains the outbox into the socket, pings on the
/// heartbeat interval, and writes the close.
async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, outbox: Arc<Outbox>, write_timeout: Duration) {
    // Counted locally and added to the shared counter in steps: an atomic
    // add per write costs more than the rest of the bookkeeping. The rest
    // is added when the task ends, also when it is aborted.
    let mut uncounted = FramesOut { counter: metrics::counter!("herald_frames_out_total"), n: 0 };
    let mut buf = BytesMut::new();
    loop {
        let batch = outbox.take().await;
        let n = batch.len();
        let ok = match (&batch.first, batch.rest.is_empty()) {
            (None, _) => true,
            (Some(frame), true) => write_fast(&mut wr, frame, write_timeout).await.is_ok(),
            _ => {
                for frame in batch.frames() {
                    buf.extend_from_slice(frame);
                }
                let ok = write_fast(&mut wr, &buf, write_timeout).await.is_ok();
                buf.clear();
                if buf.capacity() > 64 * 1024 {
                    buf = BytesMut::new();
                }
                ok
            }
        };
        // TLS may keep records the socket did not take yet: push them out
        // (a no-op for plain TCP).
        let ok = ok && flush_fast(&mut wr, write_timeout).await.is_ok();
        uncounted.n += n as u64;
        if uncounted.n >= 64 {
            uncounted.counter.increment(uncounted.n);
            uncounted.n = 0;
        }
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

/// Frames a writer wrote but did not add to `herald_frames_out_total` yet;
/// added when dropped.
struct FramesOut {
    counter: metrics::Counter,
    n: u64,
}

impl Drop for FramesOut {
    fn drop(&mut self) {
        self.counter.increment(self.n);
    }
}

/// Flushes: one attempt without a timer first, then within `limit`.
async fn flush_fast<W: AsyncWrite + Unpin>(wr: &mut W, limit: Duration) -> Result<(), ()> {
    use std::task::Poll;
    let first = std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *wr).poll_flush(cx) {
        Poll::Pending => Poll::Ready(None),
        Poll::Ready(result) => Poll::Ready(Some(result)),
    })
    .await;
    match first {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(()),
        None => match tokio::time::timeout(limit, wr.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        },
    }
}

/// Writes `bytes`: one attempt without a timer first (the socket almost
/// always takes it all at once), then the rest within `limit`.
async fn write_fast<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], limit: Duration) -> Result<(), ()> {
    use std::task::Poll;
    let first = std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *wr).poll_write(cx, bytes) {
        Poll::Pending => Poll::Ready(None),
        Poll::Ready(result) => Poll::Ready(Some(result)),
    })
    .await;
    let written = match first {
        Some(Ok(0) | Err(_)) => return Err(()),
        Some(Ok(n)) => n,
        None => 0,
    };
    if written == bytes.len() {
        return Ok(());
    }
    write_all(wr, &bytes[written..], limit).await
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
    use herald_bus::{Bus, LocalBus};

    /// Every idle connection holds these futures: keep them small (the
    /// figures are for debug builds; release builds are smaller).
    #[tokio::test]
    async fn connection_futures_stay_small() {
        let (_tx, draining) = watch::channel(false);
        let shared = Arc::new(Shared {
            hub: Hub::new(Bus::local(&LocalBus::new())),
            verifier: Verifier::new(
                "http://127.0.0.1:1/jwks",
                "herald",
                Duration::ZERO,
                Duration::from_secs(1),
                crate::auth::Revocations::default(),
            ),
            config: EdgeConfig::default(),
            edge_id: "e".into(),
            open: AtomicUsize::new(0),
            draining,
        });
        let (io, _other) = tokio::io::duplex(64);
        let (rd, wr) = tokio::io::split(io);
        let serve = serve(rd, wr, Bytes::new(), None, shared.clone(), None, None);
        let (_, w) = tokio::io::split(tokio::io::duplex(64).0);
        let writer = write_loop(w, Arc::new(Outbox::new(16, 1024)), Duration::from_secs(1));
        let (serve, writer) = (std::mem::size_of_val(&serve), std::mem::size_of_val(&writer));
        eprintln!("serve future: {serve} bytes, write_loop future: {writer} bytes");
        assert!(serve <= 2048, "the serve future is {serve} bytes");
        assert!(writer <= 768, "the write_loop future is {writer} bytes");
    }

    /// Pushes that write straight to the socket and the writer taking over
    /// what the socket could not take keep every byte in order, with a
    /// reader far slower than the pushes (so the socket fills up many times).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_through_and_the_writer_keep_frames_in_order() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (sock, _) = listener.accept().await.expect("accept");
        let sock = Arc::new(sock);
        let outbox = Arc::new(Outbox::new(1 << 20, 1 << 30));
        outbox.write_through(sock.clone());
        let writer = tokio::spawn(write_loop(crate::tcp::SharedWrite(sock), outbox.clone(), Duration::from_secs(10)));
        // 4,000 frames of 1..=4 KiB, each filled with its own number.
        let frames: Vec<Bytes> =
            (0..4_000u32).map(|i| Bytes::from(vec![(i % 251) as u8; 1024 * (1 + (i as usize % 4))])).collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let pusher = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut queued = false;
                for (i, frame) in frames.into_iter().enumerate() {
                    outbox.push_or_write(frame).expect("push");
                    queued |= !outbox.is_empty();
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                queued
            })
        };
        let mut got = Vec::with_capacity(expected.len());
        let mut chunk = vec![0u8; 3000];
        while got.len() < expected.len() {
            let n = peer.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
            if got.len() % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        assert!(pusher.await.expect("pusher"), "the socket filled up and frames were queued");
        assert!(got == expected, "bytes out of order");
        outbox.close(CloseCode::Normal, "done");
        writer.await.expect("writer");
    }
}
