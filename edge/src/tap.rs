//! The edge's debug events: what the connections of a watched app do on
//! this edge — connects, disconnects, subscribes, client publishes and
//! refusals — built from the edge's own types and handed to the node's
//! [`DebugTap`], which sends them only while someone watches the app and
//! within its rate (see `herald_bus::debug_tap`). With no watcher each call
//! here costs one atomic load.

use std::net::IpAddr;

use herald_bus::debug_tap::DebugTap;
use herald_proto::bus::{self, debug_event::Kind};
use herald_proto::{CloseCode, ErrorCode};

/// `herald` or `pusher`, as [`bus::DebugConnect::protocol`] says it.
pub(crate) const HERALD: &str = "herald";
/// See [`HERALD`].
pub(crate) const PUSHER: &str = "pusher";

/// A connection of `app` authenticated.
pub(crate) fn connected(tap: &DebugTap, app: &str, conn: &str, protocol: &str, peer: Option<IpAddr>, user: &str) {
    tap.emit(app, conn, |_| {
        Kind::Connect(bus::DebugConnect {
            protocol: protocol.to_owned(),
            remote_ip: peer.map(|p| p.to_string()).unwrap_or_default(),
            user_id: user.to_owned(),
        })
    });
}

/// A connection of `app` closed with `code`.
pub(crate) fn disconnected(tap: &DebugTap, app: &str, conn: &str, code: CloseCode, reason: &str) {
    tap.emit(app, conn, |_| {
        Kind::Disconnect(bus::DebugDisconnect { code: u32::from(code.number()), reason: reason.to_owned() })
    });
}

/// A connection of `app` subscribed to `channel` (or, `on` false, left it).
pub(crate) fn subscribed(tap: &DebugTap, app: &str, conn: &str, channel: &str, on: bool) {
    tap.emit(app, conn, |_| {
        let s = bus::DebugSubscribe { channel: channel.to_owned() };
        if on { Kind::Subscribe(s) } else { Kind::Unsubscribe(s) }
    });
}

/// A connection of `app` was closed or refused with `code`.
pub(crate) fn refused_close(tap: &DebugTap, app: &str, conn: &str, code: CloseCode, reason: &str) {
    tap.emit(app, conn, |_| {
        Kind::Refusal(bus::DebugRefusal {
            code: code.name().to_owned(),
            number: u32::from(code.number()),
            reason: reason.to_owned(),
            channel: String::new(),
        })
    });
}

/// A request of a connection of `app` about `channel` was refused with
/// `code`.
pub(crate) fn refused(tap: &DebugTap, app: &str, conn: &str, code: ErrorCode, reason: &str, channel: &str) {
    tap.emit(app, conn, |_| {
        Kind::Refusal(bus::DebugRefusal {
            code: code.name().to_owned(),
            number: code.number(),
            reason: reason.to_owned(),
            channel: channel.to_owned(),
        })
    });
}

/// A request of a connection of `app` was refused with a code of another
/// table (Pusher's: its error kind or code, and number).
pub(crate) fn refused_as(tap: &DebugTap, app: &str, conn: &str, code: &str, number: u32, reason: &str, channel: &str) {
    tap.emit(app, conn, |_| {
        Kind::Refusal(bus::DebugRefusal {
            code: code.to_owned(),
            number,
            reason: reason.to_owned(),
            channel: channel.to_owned(),
        })
    });
}

/// A connection of `app` published `data` to `channel` (`source`:
/// `client`, or `client_event` for a Pusher client event).
pub(crate) fn published(tap: &DebugTap, app: &str, conn: &str, source: &str, channel: &str, event: &str, data: &[u8]) {
    tap.emit(app, conn, |tap| tap.publish_event(source, channel, event, data));
}

/// The app a token names, read without checking it: only to tell the
/// watcher of that app that a connection was refused, and only when some
/// app is watched on this edge.
pub(crate) fn unverified_app(tap: &DebugTap, token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct AppOnly {
        app: String,
    }
    if !tap.any_on() || token.len() > 16 * 1024 {
        return None;
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<AppOnly>(token).ok().map(|c| c.app)
}
