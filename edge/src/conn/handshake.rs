//! The handshake after the WebSocket upgrade: the client authenticates
//! with a token, in its first frame (`Connect`) or in the upgrade request's
//! `Authorization` header, within the handshake timeout; the edge checks
//! the token, its `Origin` and the app's connection limit on this edge,
//! registers the connection with the hub and answers `Connected`.

use std::sync::Arc;

use herald_proto::CloseCode;
use herald_proto::client::{self, client_frame, server_frame};
use prost::Message as _;
use tokio::io::AsyncRead;
use tokio::time::{Instant, sleep_until};

use crate::hub::{ConnEntry, Deadlines, Wire};
use crate::outbox::Outbox;
use crate::ws::{self, FrameReader, Incoming};

use super::reader::read;
use super::reply::{Close, reply_ok};
use super::session::{RateLimit, RecentIds, Session, expiry_instant};
use super::shared::Shared;
use crate::hub::message_limit;

pub(super) async fn handshake<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    reader: &mut FrameReader,
    rd: &mut R,
    outbox: &Arc<Outbox>,
    id: u64,
    request: Box<super::HeraldRequest>,
) -> Result<Box<Session>, Option<Close>> {
    let super::HeraldRequest { bearer, origin, peer } = *request;
    let tap = shared.hub.tap();
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
                Incoming::Text(_) => return Err(Some(Close::code(CloseCode::UnsupportedData))),
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
            let close = Close::refused(e);
            if let Some(app) = crate::tap::unverified_app(tap, &token) {
                crate::tap::refused_close(tap, &app, "", close.0, &close.1);
            }
            return Err(Some(close));
        }
    };
    if let Some(origin) = &origin
        && !claims.origins.is_empty()
        && !claims.origins.iter().any(|o| o == origin)
    {
        metrics::counter!("herald_auth_failures_total", "reason" => "origin").increment(1);
        let code = CloseCode::OriginNotAllowed;
        crate::tap::refused_close(tap, claims.app.as_str(), "", code, &format!("origin {origin} not allowed"));
        return Err(Some(Close::code(code)));
    }
    let lim = claims.lim.unwrap_or_default();
    let expires_at = expiry_instant(claims.exp, config.token_leeway.0);
    let now = Instant::now();
    let hub = &shared.hub;
    let entry = Arc::new(ConnEntry {
        id,
        app: claims.app.clone(),
        key: std::sync::Mutex::new(Some(claims.key.clone())),
        outbox: outbox.clone(),
        wire: Wire::Herald,
        user: std::sync::Mutex::new(Some(claims.sub.as_str().into())),
        deadlines: Deadlines::new(hub.clock_ms(now + config.heartbeat_timeout.0), hub.clock_ms(expires_at)),
    });
    // The app's limits as the control plane announced them win over the
    // token's (see the hub's `limits`).
    let app_limits = match shared.hub.register(entry.clone(), config.max_connections_per_app, lim.max_connections) {
        Ok(limits) => limits,
        Err(refused) => {
            let close = Close(refused.code(), refused.message());
            crate::tap::refused_close(tap, claims.app.as_str(), "", close.0, &close.1);
            return Err(Some(close));
        }
    };
    // A revocation announced while the token was checked closed the
    // connections registered then; this one checks again now that it is.
    if let Err(e) = shared.hub.revocations().check(&claims) {
        shared.hub.unregister(id);
        metrics::counter!("herald_auth_failures_total", "reason" => e.metric_reason()).increment(1);
        let close = Close::refused(e);
        crate::tap::refused_close(tap, claims.app.as_str(), "", close.0, &close.1);
        return Err(Some(close));
    }
    let max_message =
        message_limit(config.max_message_size.as_usize(), app_limits.max_message_bytes().or(lim.max_message_bytes));
    let rate = lim
        .publish_rate
        .map_or(config.publish_rate, |r| if config.publish_rate == 0 { r } else { r.min(config.publish_rate) });
    let connection_id = shared.hub.connection_id(id);
    let connected = client::ServerFrame {
        kind: Some(server_frame::Kind::Connected(client::Connected {
            connection_id: connection_id.to_string(),
            client_id: claims.sub.as_str().to_owned(),
            heartbeat_interval_ms: config.heartbeat_interval.0.as_millis() as u32,
            heartbeat_timeout_ms: config.heartbeat_timeout.0.as_millis() as u32,
            token_expires_at_ms: claims.exp.saturating_mul(1000),
            limits: Some(client::Limits {
                max_frame_bytes: config.max_frame_size.0 as u32,
                max_message_bytes: u32::try_from(max_message).unwrap_or(u32::MAX),
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
    tracing::debug!(conn = id, app = %claims.app, client = %claims.sub, "connection authenticated");
    crate::tap::connected(tap, claims.app.as_str(), &connection_id, crate::tap::HERALD, peer, claims.sub.as_str());
    // Boxed: the connection's future keeps a pointer, not a second copy
    // of the session beside the one the handshake's result held.
    Ok(Box::new(Session {
        entry,
        subscriptions: Default::default(),
        connection_id,
        rate: RateLimit::new(rate, config.publish_burst),
        app_limits,
        recent_ids: RecentIds::default(),
        published: 0,
        claims: super::session::kept(claims),
    }))
}
