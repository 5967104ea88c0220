//! Client publishes: checks (capability, namespace, size, event name,
//! idempotency id, rate), then one publish on the bus, reported for the
//! app's `client_event` webhooks when it has some ([`crate::webhooks`]).
//!
//! A publish is handed to the bus in the order the client sent it, and
//! its reply waits for the bus's receipt in [`InFlight`] while the
//! connection reads and answers its next requests: over NATS, where a
//! receipt takes a round trip to the server, one connection keeps up to
//! `max_publishes_in_flight` messages in flight instead of one. Receipts
//! come back in hand-over order, so each publish is finished (counted,
//! reported, answered) in order too. History publishes, whose reply
//! carries the stream position, are answered before the next request.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use herald_proto::claims::{MAX_EVENT_NAME_LEN, MAX_MESSAGE_ID_LEN};
use herald_proto::client::{self, reply_ok};
use herald_proto::webhook::EventKind;
use herald_proto::{ChannelName, ErrorCode, Operation, bus};
use prost::Message as _;

use herald_bus::namespaces::keeps_history;
use herald_bus::usage::{Refused, Source};
use herald_bus::{BusError, Position};

use super::reply::{bus_err, reply_err, reply_ok};
use super::session::Session;
use super::shared::Shared;
use crate::webhooks::Seen;

/// A connection's publishes handed to the bus whose receipts are awaited,
/// oldest first (at most `max_publishes_in_flight`).
#[derive(Default)]
pub(super) struct InFlight(VecDeque<Pending>);

/// One publish waiting for its receipt, with what finishing it needs.
struct Pending {
    receipt: Pin<Box<dyn Future<Output = Result<(), BusError>> + Send>>,
    done: Handed,
}

/// A publish handed to the bus: what its reply and its accounting need.
struct Handed {
    rid: u64,
    id: String,
    channel: ChannelName,
    event: Option<String>,
    data: Bytes,
    publisher: String,
    /// Whether the client named the id (kept to answer its retries).
    idempotent: bool,
}

impl InFlight {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Resolves with the oldest publish's receipt (pending while none).
    pub(super) fn oldest(&mut self) -> impl Future<Output = Result<(), BusError>> + '_ {
        std::future::poll_fn(|cx: &mut Context<'_>| match self.0.front_mut() {
            Some(p) => p.receipt.as_mut().poll(cx),
            None => Poll::Pending,
        })
    }

    /// Finishes the oldest publish with its receipt's `outcome`: its reply.
    pub(super) async fn finish_oldest(
        &mut self,
        shared: &Arc<Shared>,
        session: &mut Session,
        outcome: Result<(), BusError>,
    ) -> Option<Bytes> {
        let pending = self.0.pop_front()?;
        Some(finish(shared, session, pending.done, outcome.map(|()| None)).await)
    }

    /// Waits for the oldest publish's receipt and finishes it.
    pub(super) async fn settle_oldest(&mut self, shared: &Arc<Shared>, session: &mut Session) -> Option<Bytes> {
        let outcome = self.oldest().await;
        self.finish_oldest(shared, session, outcome).await
    }

    /// Finishes every publish in flight, oldest first, their replies
    /// queued: what a reply that must not overtake theirs waits for.
    pub(super) async fn settle_all(&mut self, shared: &Arc<Shared>, session: &mut Session) {
        while !self.is_empty() {
            if let Some(reply) = self.settle_oldest(shared, session).await {
                let _ = session.entry.outbox.push(reply);
            }
        }
    }
}

/// Checks a client publish and hands it to the bus. The reply, when it is
/// known already (refused, a history publish, a retry); `None` when the
/// publish waits in `in_flight` for its receipt.
pub(super) async fn publish(
    shared: &Arc<Shared>,
    session: &mut Session,
    in_flight: &mut InFlight,
    rid: u64,
    p: client::Publish,
) -> Option<Bytes> {
    if p.idempotency_id.as_ref().is_some_and(|id| in_flight.0.iter().any(|f| f.done.idempotent && f.done.id == *id)) {
        // A retry of a publish still in flight: answered as the first was,
        // once that one is finished.
        in_flight.settle_all(shared, session).await;
    }
    let answer = match hand_over(shared, session, rid, p).await {
        Err(reply) => reply,
        Ok((done, Handing::Answered(outcome))) => finish(shared, session, done, outcome).await,
        Ok((done, Handing::Receipt(receipt))) => {
            in_flight.0.push_back(Pending { receipt: Box::pin(receipt.confirmed()), done });
            return None;
        }
    };
    // Replies keep request order: those of the publishes in flight first.
    in_flight.settle_all(shared, session).await;
    Some(answer)
}

/// How far a hand-over got.
enum Handing {
    /// Published (a history publish, with its position) or failed.
    Answered(Result<Option<Position>, BusError>),
    /// Handed to the bus, to be confirmed.
    Receipt(herald_bus::PublishReceipt),
}
async fn hand_over(
    shared: &Arc<Shared>,
    session: &mut Session,
    rid: u64,
    p: client::Publish,
) -> Result<(Handed, Handing), Bytes> {
    let channel = match ChannelName::new(&p.channel) {
        Ok(c) => c,
        Err(e) => return Err(reply_err(rid, ErrorCode::InvalidChannel, e.to_string())),
    };
    if !session.claims.caps.allows(channel.as_str(), Operation::Publish) {
        return Err(reply_err(rid, ErrorCode::Forbidden, "token does not allow publish on this channel"));
    }
    let options = match shared.hub.namespace_options(&session.entry.app, &channel).await {
        Ok(o) => o,
        Err(e) => return Err(bus_err(rid, "namespace lookup", &e)),
    };
    if !options.client_publish {
        return Err(reply_err(rid, ErrorCode::Forbidden, "clients may not publish in this channel's namespace"));
    }
    let max_message = session.max_message(shared.config.max_message_size.as_usize());
    if p.data.len() > max_message {
        return Err(reply_err(rid, ErrorCode::TooLarge, format!("data exceeds {max_message} bytes")));
    }
    if p.event.as_ref().is_some_and(|e| e.len() > MAX_EVENT_NAME_LEN) {
        return Err(reply_err(rid, ErrorCode::BadRequest, format!("event name exceeds {MAX_EVENT_NAME_LEN} bytes")));
    }
    if let Some(id) = &p.idempotency_id {
        if id.is_empty() || id.len() > MAX_MESSAGE_ID_LEN {
            return Err(reply_err(
                rid,
                ErrorCode::BadRequest,
                format!("idempotency id must be 1-{MAX_MESSAGE_ID_LEN} bytes"),
            ));
        }
        if session.recent_ids.contains(id) {
            // A retry of a message this connection already published.
            let result = client::PublishResult { id: id.clone(), position: None };
            return Err(reply_ok(rid, Some(reply_ok::Value::Published(result))));
        }
    }
    if !session.rate.allow() {
        session.app_limits.usage().refused(Refused::Error(ErrorCode::RateLimited));
        let reason = "publish rate exceeded; slow down";
        let (tap, app) = (shared.hub.tap(), session.entry.app.as_str());
        crate::tap::refused(tap, app, &session.connection_id, ErrorCode::RateLimited, reason, channel.as_str());
        return Err(reply_err(rid, ErrorCode::RateLimited, reason));
    }
    if let Some(reason) = session.app_limits.messages_over_quota() {
        session.app_limits.usage().refused(Refused::Error(ErrorCode::QuotaExceeded));
        return Err(reply_err(rid, ErrorCode::QuotaExceeded, reason.to_string()));
    }
    session.published += 1;
    let idempotent = p.idempotency_id.is_some();
    let id =
        p.idempotency_id.unwrap_or_else(|| format!("{}-{}-{}", shared.edge_id, session.entry.id, session.published));
    let message = bus::ChannelMessage {
        app_id: session.entry.app.as_str().to_owned(),
        channel: channel.as_str().to_owned(),
        data: p.data,
        event: p.event,
        id,
        publisher: session.claims.sub.as_str().to_owned(),
        exclude_connection: String::new(),
        timestamp_ms: herald_bus::now_ms(),
        traceparent: String::new(),
    };
    let bus = shared.hub.bus();
    let handing = if keeps_history(&options) {
        Handing::Answered(bus.publish_history(&session.entry.app, &channel, &message).await.map(Some))
    } else {
        let mut buf = BytesMut::with_capacity(message.encoded_len());
        let _ = message.encode(&mut buf);
        match bus.send_encoded(&session.entry.app, &channel, buf.freeze()).await {
            Ok(receipt) => Handing::Receipt(receipt),
            Err(e) => Handing::Answered(Err(e)),
        }
    };
    let done = Handed {
        rid,
        id: message.id,
        channel,
        event: message.event,
        data: message.data,
        publisher: message.publisher,
        idempotent,
    };
    Ok((done, handing))
}

/// Counts, reports and answers a publish the bus took (`outcome`: its
/// position in history, if any) or failed.
async fn finish(
    shared: &Arc<Shared>,
    session: &mut Session,
    done: Handed,
    outcome: Result<Option<Position>, BusError>,
) -> Bytes {
    let Handed { rid, id, channel, event, data, publisher, idempotent } = done;
    match outcome {
        Ok(position) => {
            metrics::counter!("herald_client_publishes_total").increment(1);
            session.app_limits.usage().published(Source::Client, 1, data.len() as u64);
            let (tap, app) = (shared.hub.tap(), session.entry.app.as_str());
            let name = event.as_deref().unwrap_or_default();
            crate::tap::published(tap, app, &session.connection_id, "client", channel.as_str(), name, &data);
            let seen = Seen {
                kind: EventKind::ClientEvent,
                channel: &channel,
                event: name,
                data,
                connection_id: &session.connection_id,
                user_id: &publisher,
            };
            shared.webhooks.report(&session.entry.app, seen).await;
            if idempotent {
                session.recent_ids.remember(id.clone());
            }
            let position = position.map(|p| client::StreamPosition { seq: p.seq, epoch: p.epoch });
            reply_ok(rid, Some(reply_ok::Value::Published(client::PublishResult { id, position })))
        }
        Err(e) => bus_err(rid, "client publish", &e),
    }
}
