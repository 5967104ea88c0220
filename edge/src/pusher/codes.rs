//! The codes a Pusher connection is told: Pusher's close codes, Herald's
//! close codes in Pusher's words (the outbox's closer), and the codes of
//! `pusher:error` events that do not end the connection.
//!
//! pusher-js acts on a close code's range: 4000–4099 it does not reconnect,
//! 4100–4199 it reconnects after backing off, 4200–4299 it reconnects at
//! once; 1002–1004 back off too. Where Pusher's protocol documents a code,
//! it is that code; within a range, the others are Herald's.

use bytes::{Bytes, BytesMut};
use herald_proto::CloseCode;

use crate::ws;

/// Pusher 4001: the app does not exist, or has Pusher mode off.
pub const APP_NOT_FOUND: u16 = 4001;
/// Pusher 4003: the app was deleted or disabled.
pub const APP_DISABLED: u16 = 4003;
/// Pusher 4004: the app is over its connection quota (on this edge).
pub const APP_OVER_QUOTA: u16 = 4004;
/// Pusher 4006: the `protocol` parameter is not a number.
pub const BAD_PROTOCOL_FORMAT: u16 = 4006;
/// Pusher 4007: a protocol version other than 5, 6 or 7.
pub const UNSUPPORTED_PROTOCOL: u16 = 4007;
/// Pusher 4008: no `protocol` parameter.
pub const NO_PROTOCOL: u16 = 4008;
/// Pusher 4009: the connection is unauthorized (a failed sign-in, or the
/// app terminated the user's connections).
pub const UNAUTHORIZED: u16 = 4009;
/// Pusher 4100: over capacity (the edge's connection limit); back off.
pub const OVER_CAPACITY: u16 = 4100;
/// Herald's, in Pusher's back-off range: the app's settings cannot be
/// looked up now, or the bus is unavailable.
pub const UNAVAILABLE: u16 = 4101;
/// Herald's, in Pusher's back-off range: the send queue passed its bound
/// (the client reads too slowly).
pub const SLOW_CONSUMER: u16 = 4102;
/// Pusher 4200: reconnect now (the edge is draining).
pub const RECONNECT_NOW: u16 = 4200;
/// Pusher 4201: no pong within the timeout after a `pusher:ping`.
pub const PONG_TIMEOUT: u16 = 4201;

/// Herald's, in Pusher's "other errors" range, on `pusher:error` events
/// that leave the connection open: a message that is not JSON, has no
/// `event`, names an unknown event or carries bad `data`, or a binary
/// frame.
pub const BAD_MESSAGE: u16 = 4300;
/// Pusher 4301: a client event over the connection's rate.
pub const CLIENT_EVENT_RATE: u16 = 4301;
/// Herald's: a client event refused (client events off for the app, a
/// channel that is not private or presence, or not subscribed).
pub const CLIENT_EVENT_REFUSED: u16 = 4302;
/// Herald's: a client event whose `data` is larger than allowed.
pub const CLIENT_EVENT_TOO_LARGE: u16 = 4303;
/// Herald's, on the `pusher:error` sent before the close 1009 of a message
/// over the frame size limit (`max_frame_size`).
pub const MESSAGE_TOO_BIG: u16 = 4304;

/// The Pusher close code a Herald close of a Pusher connection goes out
/// with.
#[must_use]
pub fn close_code(code: CloseCode) -> u16 {
    match code {
        CloseCode::Normal => 1000,
        CloseCode::GoingAway => RECONNECT_NOW,
        CloseCode::ProtocolError => 1002,
        CloseCode::UnsupportedData => 1003,
        CloseCode::MessageTooBig => 1009,
        CloseCode::InternalError => RECONNECT_NOW,
        CloseCode::SlowConsumer => SLOW_CONSUMER,
        CloseCode::HeartbeatTimeout => PONG_TIMEOUT,
        CloseCode::HandshakeTimeout => RECONNECT_NOW,
        CloseCode::ConnectionLimit | CloseCode::QuotaExceeded => OVER_CAPACITY,
        CloseCode::BusUnavailable => UNAVAILABLE,
        CloseCode::AppUnavailable => APP_DISABLED,
        CloseCode::TokenExpired
        | CloseCode::KeyRevoked
        | CloseCode::InvalidToken
        | CloseCode::OriginNotAllowed
        | CloseCode::UserTerminated => UNAUTHORIZED,
        CloseCode::BadFrame => BAD_MESSAGE,
        // A code added later: reconnect.
        _ => RECONNECT_NOW,
    }
}

/// A `pusher:error` event: `data` is an object `{"code", "message"}`, as
/// Pusher sends it.
#[must_use]
pub fn error_frame(code: u16, message: &str) -> Bytes {
    metrics::counter!("herald_pusher_errors_total", "code" => code.to_string()).increment(1);
    let json = serde_json::json!({"event": "pusher:error", "data": {"code": code, "message": message}});
    ws::text_frame(json.to_string().as_bytes())
}

/// A `pusher:error` (for the 4000s) and the close frame with `code`.
#[must_use]
pub fn close_with(code: u16, reason: &str) -> Bytes {
    let close = ws::close_frame(code, reason);
    if code < 4000 {
        return close;
    }
    let notice = error_frame(code, reason);
    let mut tail = BytesMut::with_capacity(notice.len() + close.len());
    tail.extend_from_slice(&notice);
    tail.extend_from_slice(&close);
    tail.freeze()
}

/// The outbox's closer of a Pusher connection: Herald's close in Pusher's
/// code.
pub fn closer(code: CloseCode, reason: &str) -> Bytes {
    close_with(close_code(code), reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_lands_in_the_range_pusher_js_expects() {
        for code in CloseCode::ALL {
            let pusher = close_code(*code);
            let expected = match code.advice() {
                herald_proto::Advice::ReconnectNow => 4200..=4299,
                herald_proto::Advice::Reconnect => 4100..=4299,
                _ => 1000..=4999,
            };
            assert!(expected.contains(&pusher), "{code} → {pusher}");
        }
        assert_eq!(close_code(CloseCode::UserTerminated), 4009);
        assert_eq!(close_code(CloseCode::HeartbeatTimeout), 4201);
    }

    #[test]
    fn closes_in_the_4000s_are_told_first() {
        let tail = closer(CloseCode::HeartbeatTimeout, "pong");
        assert_eq!(tail[0], 0x81, "a pusher:error text frame first");
        assert!(String::from_utf8_lossy(&tail).contains(r#""code":4201"#));
        assert_eq!(closer(CloseCode::Normal, "bye")[0], 0x88, "a normal close is the close frame alone");
    }
}
