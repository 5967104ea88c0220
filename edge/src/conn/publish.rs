//! Client publishes: checks (capability, namespace, size, event name,
//! idempotency id, rate), then one publish on the bus, reported for the
//! app's `client_event` webhooks when it has some ([`crate::webhooks`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use herald_proto::claims::{MAX_EVENT_NAME_LEN, MAX_MESSAGE_ID_LEN};
use herald_proto::client::{self, reply_ok};
use herald_proto::webhook::EventKind;
use herald_proto::{ChannelName, ErrorCode, Operation, bus};
use prost::Message as _;

use herald_bus::namespaces::keeps_history;
use herald_bus::usage::{Refused, Source};

use super::reply::{bus_err, reply_err, reply_ok};
use super::session::{RECENT_IDS, Session};
use super::shared::Shared;
use crate::webhooks::Seen;

pub(super) async fn publish(shared: &Arc<Shared>, session: &mut Session, rid: u64, p: client::Publish) -> Bytes {
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
    let max_message = session.max_message(shared.config.max_message_size.as_usize());
    if p.data.len() > max_message {
        return reply_err(rid, ErrorCode::TooLarge, format!("data exceeds {max_message} bytes"));
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
        session.app_limits.usage().refused(Refused::Error(ErrorCode::RateLimited));
        let reason = "publish rate exceeded; slow down";
        let (tap, app) = (shared.hub.tap(), session.claims.app.as_str());
        crate::tap::refused(tap, app, &session.connection_id, ErrorCode::RateLimited, reason, channel.as_str());
        return reply_err(rid, ErrorCode::RateLimited, reason);
    }
    if let Some(reason) = session.app_limits.messages_over_quota() {
        session.app_limits.usage().refused(Refused::Error(ErrorCode::QuotaExceeded));
        return reply_err(rid, ErrorCode::QuotaExceeded, reason.to_string());
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
        exclude_connection: String::new(),
        timestamp_ms: herald_bus::now_ms(),
        traceparent: String::new(),
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
            session.app_limits.usage().published(Source::Client, 1, message.data.len() as u64);
            let (tap, app) = (shared.hub.tap(), session.claims.app.as_str());
            let event = message.event.as_deref().unwrap_or_default();
            crate::tap::published(tap, app, &session.connection_id, "client", channel.as_str(), event, &message.data);
            let seen = Seen {
                kind: EventKind::ClientEvent,
                channel: &channel,
                event: message.event.as_deref().unwrap_or_default(),
                data: message.data,
                connection_id: &session.connection_id,
                user_id: &message.publisher,
            };
            shared.webhooks.report(&session.claims.app, seen).await;
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
