//! Pusher Channels protocol 7 on `GET /app/{key}`: pusher-js and the other
//! Pusher client libraries connect to an edge as they would to Pusher.
//!
//! The key is the Herald app id; the app must have Pusher mode on (its
//! settings, [`bus::PusherApp`], come with its namespaces and are cached by
//! the hub). A Pusher connection is a hub connection like a Herald one — the
//! same registry, outbox, writer, limits, drain and fan-out — that speaks
//! JSON text frames ([`Wire::Pusher`]): a Pusher channel is the Herald
//! channel of the same name, so subscribers of both protocols meet on it.
//!
//! The connection's life:
//!
//! 1. The upgrade carries `protocol` (5 to 7); the app is looked up; the
//!    app's connection limit on this edge is checked. A refusal is a
//!    `pusher:error` and a close with Pusher's code (see [`codes`]).
//! 2. `pusher:connection_established` gives the socket id (the connection
//!    id, `<edge number>.<counter>`, as Herald's connections have it) and
//!    the activity timeout.
//! 3. The reader answers each message: `pusher:ping`, `pusher:subscribe`
//!    and `pusher:unsubscribe`, `pusher:signin`, and `client-` events. A
//!    client silent for the activity timeout gets a `pusher:ping`, and is
//!    closed (4201) when nothing comes within the pong timeout.
//! 4. On the close its subscriptions end and its presence entries leave.
//!
//! # Layout
//!
//! - `codes`: Pusher's close and error codes, and Herald's closes in them.
//! - `frames`: the JSON messages in and the connection-level events out.
//! - `session`: the state of a connection and its reader.
//! - `subscribe`: subscriptions, with channel authorization.
//! - `presence`: presence channels: `channel_data`, the member cap, the
//!   member list a subscription starts with.
//! - `client_events`: `client-` events from clients.
//! - `user`: user sign-in, and the user's server-to-user channel.

mod client_events;
mod codes;
mod frames;
mod presence;
mod session;
mod subscribe;
mod user;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_proto::{AppId, CloseCode, bus};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::conn::{OpenGuard, RateLimit, Shared, Writing, finish, start};
use crate::hub::{ConnEntry, Deadlines, Wire};
use crate::outbox::Outbox;

pub(crate) use codes::{OVER_CAPACITY, close_with};
use session::Session;

/// The path prefix of Pusher connections: `/app/{key}`.
pub(crate) const PATH_PREFIX: &str = "/app/";

/// The protocol versions served: pusher-js 4 and later speak 7.
const PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

/// What the upgrade request of a Pusher connection says.
pub(crate) struct PusherRequest {
    /// The app key (the Herald app id).
    pub(crate) key: String,
    /// The `protocol` query parameter, if any.
    pub(crate) protocol: Option<String>,
    /// The upgrade request's `Origin` header, if any.
    pub(crate) origin: Option<String>,
    /// The client's address.
    pub(crate) peer: Option<std::net::IpAddr>,
}

impl PusherRequest {
    /// Reads the key from the path and the protocol from the query.
    pub(crate) fn from_uri(uri: &http::Uri) -> Option<Self> {
        let key = uri.path().strip_prefix(PATH_PREFIX)?;
        if key.is_empty() || key.contains('/') {
            return None;
        }
        let protocol = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .find_map(|pair| pair.strip_prefix("protocol="))
            .map(str::to_owned);
        Some(Self { key: key.to_owned(), protocol, origin: None, peer: None })
    }

    /// Pusher's close code for a missing or unsupported protocol version.
    fn protocol_refusal(&self) -> Option<(u16, &'static str)> {
        match self.protocol.as_deref().map(str::parse::<u32>) {
            None => Some((codes::NO_PROTOCOL, "no protocol version given")),
            Some(Err(_)) => Some((codes::BAD_PROTOCOL_FORMAT, "the protocol version is not a number")),
            Some(Ok(v)) if !PROTOCOLS.contains(&v) => {
                Some((codes::UNSUPPORTED_PROTOCOL, "unsupported protocol version; 7 is served"))
            }
            Some(Ok(_)) => None,
        }
    }
}

/// Writes a refusal to a connection that never started: `pusher:error`
/// and the close frame with `code`.
pub(crate) async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: u16, reason: &str) {
    let bytes = close_with(code, reason);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = wr.write_all(&bytes).await;
        let _ = wr.shutdown().await;
    })
    .await;
}

/// The app's Pusher settings, or the refusal.
async fn app_settings(shared: &Shared, key: &str) -> Result<(AppId, Arc<bus::PusherApp>), (u16, &'static str)> {
    let Ok(app) = AppId::new(key) else { return Err((codes::APP_NOT_FOUND, "no such app key")) };
    let lookup = tokio::time::timeout(shared.config.handshake_timeout.0, shared.hub.pusher_app(&app)).await;
    match lookup {
        Ok(Ok(Some(settings))) if settings.disabled => Err((codes::APP_DISABLED, "the app is disabled")),
        Ok(Ok(Some(settings))) => Ok((app, settings)),
        Ok(Ok(None)) => Err((codes::APP_NOT_FOUND, "no such app key, or Pusher mode is off for it")),
        Ok(Err(e)) => {
            tracing::warn!(%app, error = %e, "pusher app lookup failed");
            Err((codes::UNAVAILABLE, "app settings unavailable; retry later"))
        }
        Err(_) => Err((codes::UNAVAILABLE, "app settings unavailable; retry later")),
    }
}

/// Serves one upgraded WebSocket of the Pusher protocol until it closes.
pub(crate) async fn serve<R, W>(
    mut rd: R,
    mut wr: W,
    early: Bytes,
    direct: Option<Arc<tokio::net::TcpStream>>,
    shared: Arc<Shared>,
    request: PusherRequest,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let _guard = OpenGuard(shared.clone());
    if let Some((code, reason)) = request.protocol_refusal() {
        return refuse(&mut wr, code, reason).await;
    }
    let (app, settings) = match app_settings(&shared, &request.key).await {
        Ok(found) => found,
        Err((code, reason)) => return refuse(&mut wr, code, reason).await,
    };
    // The app's Origin allowlist holds for both protocols.
    if let Some(origin) = &request.origin
        && !settings.allowed_origins.is_empty()
        && !settings.allowed_origins.iter().any(|o| o == origin)
    {
        metrics::counter!("herald_auth_failures_total", "reason" => "origin").increment(1);
        let reason = "this Origin is not allowed for the app";
        crate::tap::refused_close(shared.hub.tap(), app.as_str(), "", CloseCode::OriginNotAllowed, reason);
        return refuse(&mut wr, codes::UNAUTHORIZED, reason).await;
    }
    let config = &shared.config;
    let outbox = Arc::new(
        Outbox::new(config.send_queue_frames as usize, config.send_queue_bytes.as_usize()).with_closer(codes::closer),
    );
    let id = shared.hub.next_id();
    let entry = Arc::new(ConnEntry {
        id,
        app: app.clone(),
        key: std::sync::Mutex::new(None),
        outbox: outbox.clone(),
        wire: Wire::Pusher,
        user: std::sync::Mutex::new(None),
        // Pusher's activity timeout is the connection's own.
        deadlines: Deadlines::none(),
    });
    let limits = match shared.hub.register(entry.clone(), config.max_connections_per_app, None) {
        Ok(limits) => limits,
        Err(refused) => {
            let reason = refused.message();
            crate::tap::refused_close(shared.hub.tap(), app.as_str(), "", refused.code(), &reason);
            return refuse(&mut wr, codes::APP_OVER_QUOTA, &reason).await;
        }
    };
    let (writer, mut reader) = start(&shared, &outbox, wr, direct, early);
    let writer = std::pin::pin!(writer);
    let mut writing = Writing::new(writer);
    metrics::gauge!("herald_pusher_connections").increment(1.0);
    let socket_id = shared.hub.connection_id(id);
    let rate = match settings.client_event_rate {
        0 => config.pusher_client_event_rate,
        n => n,
    };
    let _ = outbox.push(frames::connection_established(&socket_id, config.pusher_activity_timeout.0.as_secs()));
    tracing::debug!(conn = id, %app, socket = %socket_id, "pusher connection established");
    crate::tap::connected(shared.hub.tap(), app.as_str(), &socket_id, crate::tap::PUSHER, request.peer, "");
    let mut session = Session {
        id,
        socket_id,
        app,
        entry,
        subscriptions: Default::default(),
        user: None,
        rate: RateLimit::new(rate, rate),
        events_sent: 0,
        limits,
    };
    let mut reading = Box::pin(session::run(&shared, &mut reader, &mut rd, &mut session));
    let close = writing.beside(reading.as_mut()).await;
    drop(reading);
    if shared.hub.tap().any_on() {
        let (code, reason) =
            close.clone().or_else(|| outbox.close_code()).unwrap_or((CloseCode::Normal, "gone".to_owned()));
        crate::tap::disconnected(shared.hub.tap(), session.app.as_str(), &session.socket_id, code, &reason);
    }
    session.end(&shared);
    shared.hub.unregister(id);
    metrics::gauge!("herald_pusher_connections").decrement(1.0);
    finish(id, &mut rd, &outbox, &mut writing, close).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_key_and_protocol() {
        let uri: http::Uri = "/app/my-app?protocol=7&client=js&version=8.4.0".parse().expect("uri");
        let r = PusherRequest::from_uri(&uri).expect("pusher request");
        assert_eq!((r.key.as_str(), r.protocol.as_deref()), ("my-app", Some("7")));
        assert!(r.protocol_refusal().is_none());
        for (query, code) in [("", 4008), ("?protocol=x", 4006), ("?protocol=4", 4007), ("?protocol=8", 4007)] {
            let uri: http::Uri = format!("/app/a{query}").parse().expect("uri");
            let r = PusherRequest::from_uri(&uri).expect("pusher request");
            assert_eq!(r.protocol_refusal().map(|r| r.0), Some(code), "{query}");
        }
        for path in ["/app/", "/app/a/b", "/v1/connect"] {
            assert!(PusherRequest::from_uri(&path.parse().expect("uri")).is_none(), "{path}");
        }
    }
}
