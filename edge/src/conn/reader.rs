//! The reader: reads a connection's client frames, decodes them into
//! requests and answers each, and moves the connection's heartbeat
//! deadline on with every frame (the hub's sweep closes a connection past
//! its heartbeat or token deadline). A read is the last branch of its
//! `select!` (the close and the receipts come first) and nothing else ever
//! reads.

use std::sync::Arc;

use bytes::Bytes;
use herald_proto::client::{self, client_frame};
use herald_proto::{CloseCode, ErrorCode};
use prost::Message as _;
use tokio::io::AsyncRead;
use tokio::time::Instant;

use crate::outbox::Outbox;
use crate::ws::{self, FrameReader, Incoming, ReadError};

use super::presence::presence_query;
use super::publish::{InFlight, publish};
use super::reply::{Close, go_away_frame, reply_err, reply_ok};
use super::session::Session;
use super::shared::Shared;
use super::subscribe::{refresh, subscribe, unsubscribe};

/// Reads the next message, skipping nothing; maps read errors to closes.
/// The future holds its two references only.
pub(super) fn read<'a, R: AsyncRead + Unpin>(
    reader: &'a mut FrameReader,
    rd: &'a mut R,
) -> impl Future<Output = Result<Incoming, Option<Close>>> + 'a {
    std::future::poll_fn(move |cx| reader.poll_next(cx, rd).map_err(read_close))
}

/// The close a read error calls for (`None`: the peer is gone).
pub(super) fn read_close(e: ReadError) -> Option<Close> {
    match e {
        ReadError::TooBig { .. } => Some(Close::code(CloseCode::MessageTooBig)),
        ReadError::Protocol(what) => Some(Close(CloseCode::ProtocolError, what.to_owned())),
        ReadError::Eof | ReadError::Io(_) => None,
    }
}

/// Serves an authenticated connection's requests until it closes. The
/// publishes it hands to the bus wait in `in_flight` for their receipts;
/// what is left there when it returns is the caller's to finish
/// ([`InFlight::settle_all`]).
pub(super) async fn run<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    reader: &mut FrameReader,
    rd: &mut R,
    outbox: &Arc<Outbox>,
    session: &mut Session,
    in_flight: &mut InFlight,
) -> Option<Close> {
    let config = &shared.config;
    let heartbeat_ms = u64::try_from(config.heartbeat_timeout.0.as_millis()).unwrap_or(u64::MAX);
    let max_frames = config.send_queue_frames as usize;
    let mut handled = 0u32;
    if *shared.draining.borrow() {
        // Authenticated after the drain began: move on at once.
        let _ = outbox.push(go_away_frame(config.move_grace()));
    }
    loop {
        if outbox.is_closing() {
            // Closed by the hub (slow consumer, revocation, drain, a
            // deadline): the writer takes it from here.
            return None;
        }
        if in_flight.len() >= config.max_publishes_in_flight as usize {
            // As many publishes in flight as allowed: the next request
            // waits for the oldest's receipt.
            let reply = Box::pin(in_flight.settle_oldest(shared, session)).await;
            if reply.is_some_and(|reply| outbox.push(reply).is_err()) {
                return None;
            }
            continue;
        }
        // Frames already read (a publisher sends many per read) are taken
        // without waiting. The heartbeat and token deadlines are the hub's
        // sweep's (`Hub::deadline_loop`): no timer per connection.
        let incoming = match reader.buffered() {
            Some(incoming) => incoming.map_err(read_close),
            None => tokio::select! {
                biased;
                // No waiting list: the writer, in this task, wakes it.
                () = outbox.closing() => return None,
                outcome = in_flight.oldest(), if !in_flight.is_empty() => {
                    let reply = Box::pin(in_flight.finish_oldest(shared, session, outcome)).await;
                    if reply.is_some_and(|reply| outbox.push(reply).is_err()) {
                        return None;
                    }
                    continue;
                }
                incoming = read(reader, rd) => incoming,
            },
        };
        let now = shared.hub.clock_ms(Instant::now());
        if session.entry.deadlines.token_expired(now) {
            // Nothing is served on an expired token, even before the sweep
            // sees it.
            return Some(Close::code(CloseCode::TokenExpired));
        }
        session.entry.deadlines.heard(now.saturating_add(heartbeat_ms));
        let frame = match incoming {
            Ok(Incoming::Binary(bytes)) => bytes,
            Ok(Incoming::Ping(payload)) => {
                let _ = outbox.push(ws::pong_frame(&payload));
                continue;
            }
            Ok(Incoming::Pong) => continue,
            Ok(Incoming::Text(_)) => return Some(Close::code(CloseCode::UnsupportedData)),
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
        let reply = Box::pin(handle(shared, session, in_flight, frame)).await;
        if let Some(reply) = reply
            && outbox.push(reply).is_err()
        {
            return None;
        }
        handled += 1;
        if handled.is_multiple_of(REQUESTS_PER_TURN) || outbox.len() * 2 > max_frames {
            // A publisher streaming messages lets the bursts it started be
            // pushed (see the hub's fan-out) and the writers they woke
            // write them before it fans out more: queues stay a few frames deep
            // (each write still carries many), where they would otherwise
            // grow by everything one read brought. Its own writer runs in
            // this task: it writes the replies when the task yields, before
            // they fill half the queue.
            tokio::task::yield_now().await;
        }
    }
}

/// Requests a connection handles in a row before it lets other tasks run.
const REQUESTS_PER_TURN: u32 = 32;

/// Answers one request. `None` when the answer was already queued (a
/// subscribe that replays history queues its reply before the replay) or
/// comes later (a publish waiting in `in_flight` for its receipt).
pub(super) async fn handle(
    shared: &Arc<Shared>,
    session: &mut Session,
    in_flight: &mut InFlight,
    frame: client::ClientFrame,
) -> Option<Bytes> {
    let rid = frame.request_id;
    if !matches!(frame.kind, Some(client_frame::Kind::Publish(_))) {
        // Replies keep request order: the publishes in flight answer first.
        in_flight.settle_all(shared, session).await;
    }
    let Some(kind) = frame.kind else {
        return Some(reply_err(rid, ErrorCode::UnknownRequest, "unknown request kind"));
    };
    Some(match kind {
        client_frame::Kind::Connect(_) => reply_ok(rid, None),
        client_frame::Kind::Ping(_) => reply_ok(rid, None),
        client_frame::Kind::Subscribe(s) => return subscribe(shared, session, rid, s).await,
        client_frame::Kind::Unsubscribe(u) => unsubscribe(shared, session, rid, &u.channel).await,
        client_frame::Kind::Publish(p) => return publish(shared, session, in_flight, rid, p).await,
        client_frame::Kind::RefreshToken(r) => refresh(shared, session, rid, &r.token).await,
        client_frame::Kind::PresenceQuery(q) => presence_query(shared, session, rid, q).await,
    })
}
