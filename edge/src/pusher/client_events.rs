//! Client events: `client-…` events a Pusher client sends on a channel,
//! published through the bus like any message, so that they reach the
//! channel's subscribers on every edge and of both protocols.
//!
//! Accepted only when the app has client events on, on a private or
//! presence channel the connection is subscribed to, within the
//! connection's rate (the app's `client_event_rate`, else the edge's
//! `pusher_client_event_rate`, per second) and size (`data` at most the
//! app's `max_event_bytes`, else the edge's `pusher_max_event_bytes`).
//! A refusal is a `pusher:error` (4301 for the rate; see [`super::codes`])
//! and the connection stays open.
//!
//! The message excludes its sender (`exclude_connection` = its socket id),
//! so it is never echoed; on a presence channel it carries the sender's
//! user id (`publisher`), which Pusher subscribers receive as `user_id`.
//! Its data is the event's `data` as text: a string as itself, other JSON
//! as its JSON.
//!
//! Once published, the event is reported for the app's `client_event`
//! webhooks when it has some ([`crate::webhooks`]), with the sender's socket
//! id and, on a presence channel, its user id.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use herald_bus::usage::{Refused, Source};
use herald_proto::claims::MAX_EVENT_NAME_LEN;
use herald_proto::pusher::{PusherChannel, PusherChannelKind};
use herald_proto::webhook::EventKind;
use herald_proto::{ErrorCode, bus};
use prost::Message as _;

use crate::conn::Shared;
use crate::webhooks::Seen;

use super::codes::{CLIENT_EVENT_RATE, CLIENT_EVENT_REFUSED, CLIENT_EVENT_TOO_LARGE, UNAVAILABLE};
use super::frames::ClientMessage;
use super::session::Session;

/// What a client event's name starts with.
pub(super) const PREFIX: &str = "client-";

pub(super) async fn trigger(shared: &Arc<Shared>, session: &mut Session, message: ClientMessage) {
    let channel = message.channel.clone().unwrap_or_default();
    if let Err((code, error)) = publish(shared, session, message).await {
        metrics::counter!("herald_pusher_client_events_refused_total").increment(1);
        let (tap, app) = (shared.hub.tap(), session.app.as_str());
        crate::tap::refused_as(tap, app, &session.socket_id, "client_event_refused", u32::from(code), &error, &channel);
        session.error(code, &error);
    }
}

async fn publish(shared: &Arc<Shared>, session: &mut Session, message: ClientMessage) -> Result<(), (u16, String)> {
    let hub = &shared.hub;
    let settings = match hub.pusher_app(&session.app).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err((CLIENT_EVENT_REFUSED, "Pusher mode is off for this app".into())),
        Err(_) => return Err((UNAVAILABLE, "app settings unavailable; retry".into())),
    };
    if !settings.client_events {
        return Err((CLIENT_EVENT_REFUSED, "client events are not enabled for this app".into()));
    }
    if message.event.len() > MAX_EVENT_NAME_LEN {
        return Err((CLIENT_EVENT_REFUSED, format!("event name exceeds {MAX_EVENT_NAME_LEN} bytes")));
    }
    let channel = message.channel.as_deref().and_then(|c| PusherChannel::new(c).ok());
    let Some(channel) = channel else {
        return Err((CLIENT_EVENT_REFUSED, "a client event needs a valid channel".into()));
    };
    if !matches!(channel.kind(), PusherChannelKind::Private | PusherChannelKind::Presence) {
        return Err((CLIENT_EVENT_REFUSED, "client events go on private and presence channels only".into()));
    }
    let Some(presence) = session.subscriptions.get(&channel) else {
        return Err((CLIENT_EVENT_REFUSED, "subscribe to the channel before sending client events on it".into()));
    };
    let publisher = presence.as_ref().map(|p| p.client_id.clone()).unwrap_or_default();
    let data = message.data_text();
    let max = match settings.max_event_bytes {
        0 => shared.config.pusher_max_event_bytes.as_usize(),
        n => n as usize,
    };
    if data.len() > max {
        return Err((CLIENT_EVENT_TOO_LARGE, format!("client event data exceeds {max} bytes")));
    }
    if !session.rate.allow() {
        session.limits.usage().refused(Refused::Error(ErrorCode::RateLimited));
        return Err((CLIENT_EVENT_RATE, "client event rejected: rate limit exceeded".into()));
    }
    if let Some(reason) = session.limits.messages_over_quota() {
        session.limits.usage().refused(Refused::Error(ErrorCode::QuotaExceeded));
        return Err((CLIENT_EVENT_REFUSED, format!("quota_exceeded: {reason}")));
    }
    session.events_sent += 1;
    let name = channel.channel_name();
    let msg = bus::ChannelMessage {
        app_id: session.app.as_str().to_owned(),
        channel: name.as_str().to_owned(),
        data: Bytes::from(data),
        event: Some(message.event),
        id: format!("{}-{}", session.socket_id, session.events_sent),
        publisher,
        exclude_connection: session.socket_id.to_string(),
        timestamp_ms: herald_bus::now_ms(),
        traceparent: String::new(),
    };
    let mut buf = BytesMut::with_capacity(msg.encoded_len());
    let _ = msg.encode(&mut buf);
    match hub.bus().publish_encoded(&session.app, &name, buf.freeze()).await {
        Ok(()) => {
            metrics::counter!("herald_pusher_client_events_total").increment(1);
            session.limits.usage().published(Source::Client, 1, msg.data.len() as u64);
            let event = msg.event.as_deref().unwrap_or_default();
            let (tap, app) = (hub.tap(), session.app.as_str());
            crate::tap::published(tap, app, &session.socket_id, "client_event", name.as_str(), event, &msg.data);
            let seen = Seen {
                kind: EventKind::ClientEvent,
                channel: &name,
                event: msg.event.as_deref().unwrap_or_default(),
                data: msg.data,
                connection_id: &session.socket_id,
                user_id: &msg.publisher,
            };
            shared.webhooks.report(&session.app, seen).await;
            Ok(())
        }
        Err(e) => {
            tracing::warn!(app = %session.app, channel = %name, error = %e, "client event not published");
            Err((UNAVAILABLE, "bus unavailable; the event was not sent".into()))
        }
    }
}
