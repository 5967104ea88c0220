//! A Pusher connection once established: its state ([`Session`]) and its
//! reader, which answers each message and keeps the activity timeout. Any
//! message (or WebSocket ping or pong) counts as activity; after the
//! activity timeout of silence the edge sends `pusher:ping`, and closes
//! with 4201 when nothing comes within the pong timeout.
//!
//! Bad input never ends the connection but where the WebSocket stream
//! itself cannot go on (a frame over the size limit: 1009; a protocol
//! violation: 1002): the client is told with a `pusher:error` and the
//! connection stays open.

use std::collections::HashMap;
use std::sync::Arc;

use herald_proto::pusher::PusherChannel;
use herald_proto::{AppId, CloseCode, bus};
use tokio::io::AsyncRead;
use tokio::time::{Instant, sleep_until};

use crate::conn::{RateLimit, Shared};
use crate::hub::ConnEntry;
use crate::ws::{self, FrameReader, Incoming, ReadError};

use super::codes::{BAD_MESSAGE, MESSAGE_TOO_BIG, error_frame};
use super::frames::{self, ClientMessage};
use super::{client_events, subscribe, user};

/// The state of an established Pusher connection.
pub(super) struct Session {
    pub(super) id: u64,
    /// Its socket id (its connection id).
    pub(super) socket_id: crate::hub::ConnectionId,
    pub(super) app: AppId,
    pub(super) entry: Arc<ConnEntry>,
    /// Subscribed channels → the presence entry reported for each
    /// (presence channels only).
    pub(super) subscriptions: HashMap<PusherChannel, Option<Arc<bus::PresenceEntry>>>,
    /// The user it signed in as.
    pub(super) user: Option<Arc<str>>,
    /// Client events allowed.
    pub(super) rate: RateLimit,
    /// Client events sent, for their message ids.
    pub(super) events_sent: u64,
    /// The app's limits, usage counters and quota state on this edge.
    pub(super) limits: Arc<crate::hub::AppLimits>,
}

impl Session {
    /// Queues `frame` for the client; false when the connection is closing.
    pub(super) fn send(&self, frame: bytes::Bytes) -> bool {
        self.entry.outbox.push(frame).is_ok()
    }

    /// Tells the client of an error that leaves the connection open.
    pub(super) fn error(&self, code: u16, message: &str) {
        self.send(error_frame(code, message));
    }

    /// Ends every subscription; the presence leaves go out in the
    /// background.
    pub(super) fn end(&mut self, shared: &Shared) {
        let mut leaves = Vec::new();
        for (channel, presence) in self.subscriptions.drain() {
            shared.hub.unsubscribe(&self.app, &channel.channel_name(), self.id);
            metrics::gauge!("herald_pusher_subscriptions").decrement(1.0);
            leaves.extend(presence);
        }
        shared.hub.report_leaves_later(&self.app, leaves);
    }
}

/// Reads and answers the client's messages until the connection ends;
/// `None` when it ended on the hub's side or the peer is gone.
pub(super) async fn run<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    reader: &mut FrameReader,
    rd: &mut R,
    session: &mut Session,
) -> Option<(CloseCode, String)> {
    let config = &shared.config;
    let (activity, pong) = (config.pusher_activity_timeout.0, config.pusher_pong_timeout.0);
    let max_frames = config.send_queue_frames as usize;
    let outbox = session.entry.outbox.clone();
    let mut last_seen = Instant::now();
    let mut pinged: Option<Instant> = None;
    if *shared.draining.borrow() {
        return Some((CloseCode::GoingAway, CloseCode::GoingAway.reason().to_owned()));
    }
    loop {
        let deadline = pinged.map_or(last_seen + activity, |at| at + pong);
        // Messages already read are taken without arming the timer again.
        let incoming = match reader.buffered() {
            Some(incoming) => incoming,
            None => tokio::select! {
                biased;
                // No waiting list: the writer, in this task, wakes it.
                () = outbox.closing() => return None,
                () = sleep_until(deadline) => {
                    if pinged.is_some() {
                        return Some((CloseCode::HeartbeatTimeout, "pong reply not received in time".to_owned()));
                    }
                    pinged = Some(Instant::now());
                    session.send(frames::ping());
                    continue;
                }
                incoming = reader.next(rd) => incoming,
            },
        };
        last_seen = Instant::now();
        pinged = None;
        let text = match incoming {
            Ok(Incoming::Text(text)) => text,
            Ok(Incoming::Binary(_)) => {
                session.error(BAD_MESSAGE, "binary frames are not supported; send JSON text");
                continue;
            }
            Ok(Incoming::Ping(payload)) => {
                session.send(ws::pong_frame(&payload));
                continue;
            }
            Ok(Incoming::Pong) => continue,
            Ok(Incoming::Close(_)) => return Some((CloseCode::Normal, "closed".to_owned())),
            Err(ReadError::TooBig { limit }) => {
                let reason = format!("message exceeds {limit} bytes");
                session.error(MESSAGE_TOO_BIG, &reason);
                return Some((CloseCode::MessageTooBig, reason));
            }
            Err(ReadError::Protocol(what)) => return Some((CloseCode::ProtocolError, what.to_owned())),
            Err(ReadError::Eof | ReadError::Io(_)) => return None,
        };
        metrics::counter!("herald_pusher_messages_in_total").increment(1);
        let message = match ClientMessage::parse(&text) {
            Ok(m) => m,
            Err(e) => {
                session.error(BAD_MESSAGE, &e);
                continue;
            }
        };
        // Boxed: messages are rare next to idle time.
        if let Some(close) = Box::pin(handle(shared, session, message)).await {
            return Some(close);
        }
        if outbox.is_closing() {
            return None;
        }
        if outbox.len() * 2 > max_frames {
            // The connection's writer runs in this task: it writes what
            // the replies queued when the task yields.
            tokio::task::yield_now().await;
        }
    }
}

/// Answers one message; a close when it ends the connection.
async fn handle(shared: &Arc<Shared>, session: &mut Session, message: ClientMessage) -> Option<(CloseCode, String)> {
    match message.event.as_str() {
        "pusher:ping" => {
            session.send(frames::pong());
        }
        "pusher:pong" => {}
        "pusher:subscribe" => match message.data_as::<frames::SubscribeData>() {
            Ok(data) => subscribe::subscribe(shared, session, data).await,
            Err(e) => session.error(BAD_MESSAGE, &e),
        },
        "pusher:unsubscribe" => match message.data_as::<frames::UnsubscribeData>() {
            Ok(data) => subscribe::unsubscribe(shared, session, &data.channel).await,
            Err(e) => session.error(BAD_MESSAGE, &e),
        },
        "pusher:signin" => match message.data_as::<frames::SigninData>() {
            Ok(data) => return user::signin(shared, session, data).await,
            Err(e) => session.error(BAD_MESSAGE, &e),
        },
        event if event.starts_with(client_events::PREFIX) => client_events::trigger(shared, session, message).await,
        other => {
            let shown: String = other.chars().take(64).collect();
            session.error(BAD_MESSAGE, &format!("unknown event {shown:?}"));
        }
    }
    None
}
