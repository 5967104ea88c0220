//! The requests in flight on the current connection: each request id with
//! what it was for ([`Pending`]) and who waits for its answer, and how the
//! answers of the simple ones (unsubscribe, ping, presence query) reach
//! their callers. What a connection loss or a stop does to each kind lives
//! here too.

use std::collections::HashMap;
use std::time::Duration;

use herald_proto::client::{self, reply, reply_ok};
use herald_proto::{ChannelName, ErrorCode};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::publishes::Queued;
use crate::command::MembersPage;
use crate::error::Error;
use crate::event::Member;

/// Request id of the `Connect` frame; the client numbers its own requests
/// from 1.
pub(super) const CONNECT_REQUEST_ID: u64 = 0;

/// The edge's answer to a request.
pub(super) type Answer = Result<Option<reply_ok::Value>, client::ReplyError>;

/// What a request in flight was for.
pub(super) enum Pending {
    Subscribe { channel: ChannelName, recovering: bool },
    Unsubscribe { reply: Option<oneshot::Sender<Result<(), Error>>> },
    Publish(Queued),
    Refresh { token: String, obtained: Instant },
    Ping { sent: Instant, reply: Option<oneshot::Sender<Result<Duration, Error>>> },
    Presence { channel: ChannelName, reply: oneshot::Sender<Result<MembersPage, Error>> },
}

/// The requests sent and not yet answered.
pub(super) struct Requests {
    pending: HashMap<u64, Pending>,
    next_id: u64,
}

impl Requests {
    pub(super) fn new() -> Self {
        Self { pending: HashMap::new(), next_id: CONNECT_REQUEST_ID + 1 }
    }

    /// The id the next request goes out with.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The request with [`Self::next_id`] went out.
    pub(super) fn sent(&mut self, pending: Pending) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        id
    }

    /// The request answered by `reply`, with the answer.
    pub(super) fn answered(&mut self, r: client::Reply) -> Option<(Pending, Answer)> {
        let Some(pending) = self.pending.remove(&r.request_id) else {
            if r.request_id != CONNECT_REQUEST_ID {
                tracing::debug!(request = r.request_id, "reply to an unknown request");
            }
            return None;
        };
        let answer = match r.result {
            Some(reply::Result::Ok(ok)) => Ok(ok.value),
            Some(reply::Result::Error(e)) => Err(e),
            None => Ok(None),
        };
        Some((pending, answer))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Whether a publish awaits its acknowledgement.
    pub(super) fn publishing(&self) -> bool {
        self.pending.values().any(|p| matches!(p, Pending::Publish(_)))
    }

    /// The connection dropped. Publishes with an idempotency id are handed
    /// back (in the order they went out) to be sent again; other publishes,
    /// pings and presence queries fail with [`Error::ConnectionLost`];
    /// unsubscribes succeed (the edge forgot the subscription with the
    /// connection). Subscribes and token refreshes are redone by the client.
    pub(super) fn disconnected(&mut self) -> Vec<Queued> {
        let mut resend: Vec<(u64, Queued)> = Vec::new();
        for (id, pending) in self.pending.drain() {
            match pending {
                Pending::Publish(q) if q.publish.idempotency_id.is_some() => resend.push((id, q)),
                Pending::Publish(q) => {
                    let _ = q.reply.send(Err(Error::ConnectionLost));
                }
                Pending::Unsubscribe { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
                Pending::Ping { reply, .. } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(Error::ConnectionLost));
                    }
                }
                Pending::Presence { reply, .. } => {
                    let _ = reply.send(Err(Error::ConnectionLost));
                }
                Pending::Subscribe { .. } | Pending::Refresh { .. } => {}
            }
        }
        resend.sort_by_key(|(id, _)| *id);
        resend.into_iter().map(|(_, q)| q).collect()
    }

    /// The client stopped: every caller waiting for an answer gets `error`
    /// (unsubscribes succeed).
    pub(super) fn fail_all(&mut self, error: &Error) {
        for (_, pending) in self.pending.drain() {
            match pending {
                Pending::Publish(q) => {
                    let _ = q.reply.send(Err(error.clone()));
                }
                Pending::Unsubscribe { reply: Some(reply) } => {
                    let _ = reply.send(Ok(()));
                }
                Pending::Ping { reply: Some(reply), .. } => {
                    let _ = reply.send(Err(error.clone()));
                }
                Pending::Presence { reply, .. } => {
                    let _ = reply.send(Err(error.clone()));
                }
                _ => {}
            }
        }
    }
}

/// Answers an unsubscribe; `not_subscribed` counts as done.
pub(super) fn answer_unsubscribe(reply: Option<oneshot::Sender<Result<(), Error>>>, answer: Answer) {
    if let Some(reply) = reply {
        let outcome = match answer {
            Ok(_) => Ok(()),
            Err(e) if e.code == ErrorCode::NotSubscribed.number() => Ok(()),
            Err(e) => Err(Error::rejected(e.code, e.message, e.retryable)),
        };
        let _ = reply.send(outcome);
    }
}

/// Answers a ping sent at `sent` with the round-trip time.
pub(super) fn answer_ping(sent: Instant, reply: Option<oneshot::Sender<Result<Duration, Error>>>, answer: Answer) {
    if let Some(reply) = reply {
        let outcome = match answer {
            Ok(_) => Ok(sent.elapsed()),
            Err(e) => Err(Error::rejected(e.code, e.message, e.retryable)),
        };
        let _ = reply.send(outcome);
    }
}

/// Answers a presence query with one page of members.
pub(super) fn answer_presence(
    channel: &ChannelName,
    reply: oneshot::Sender<Result<MembersPage, Error>>,
    answer: Answer,
) {
    let outcome = match answer {
        Ok(Some(reply_ok::Value::Presence(p))) => Ok(MembersPage {
            members: p.members.into_iter().map(|m| Member { client_id: m.client_id, info: m.info }).collect(),
            next: Some(p.next).filter(|n| !n.is_empty()),
        }),
        Ok(_) => Ok(MembersPage { members: Vec::new(), next: None }),
        Err(e) => Err(Error::rejected(e.code, e.message, e.retryable)),
    };
    tracing::trace!(%channel, "presence answered");
    let _ = reply.send(outcome);
}
