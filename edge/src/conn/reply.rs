//! What the edge answers a client with: replies to requests (ok or an
//! error code), the reply to a bus failure, and the frames that end a
//! connection ([`Close`], `Disconnect`, `GoAway`).

use std::time::Duration;

use bytes::Bytes;
use herald_proto::client::{self, reply, reply_ok, server_frame};
use herald_proto::{CloseCode, ErrorCode};

use crate::auth::AuthError;
use crate::ws::{self};
use herald_bus::BusError;

/// Why the reader stopped, and how the connection is to be closed.
pub(super) struct Close(pub(super) CloseCode, pub(super) String);

impl Close {
    pub(super) fn code(code: CloseCode) -> Self {
        Self(code, code.reason().to_owned())
    }

    /// How a connection whose token is refused is closed.
    pub(super) fn refused(e: AuthError) -> Self {
        match e {
            AuthError::Expired => Self::code(CloseCode::TokenExpired),
            AuthError::Invalid(reason) => Self(CloseCode::InvalidToken, format!("invalid token: {reason}")),
            AuthError::KeysUnavailable => Self(CloseCode::InternalError, "signing keys unavailable".into()),
            AuthError::KeyRevoked => Self::code(CloseCode::KeyRevoked),
            AuthError::AppDeleted => Self(CloseCode::AppUnavailable, "the app was deleted".into()),
            AuthError::AppDisabled => Self(CloseCode::AppUnavailable, "the app is disabled".into()),
        }
    }
}

pub(super) fn reply_ok(request_id: u64, value: Option<reply_ok::Value>) -> Bytes {
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::Reply(client::Reply {
            request_id,
            result: Some(reply::Result::Ok(client::ReplyOk { value })),
        })),
    })
}

pub(super) fn reply_err(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Bytes {
    metrics::counter!("herald_request_errors_total", "code" => code.name()).increment(1);
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::Reply(client::Reply {
            request_id,
            result: Some(reply::Result::Error(client::ReplyError {
                code: code.number(),
                message: message.into(),
                retryable: code.retryable(),
            })),
        })),
    })
}

/// The `Disconnect` frame that precedes a close frame.
pub(crate) fn disconnect_frame(code: CloseCode, reason: &str) -> Bytes {
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::Disconnect(client::Disconnect {
            code: u32::from(code.number()),
            reason: reason.to_owned(),
            advice: code.advice().to_wire() as i32,
        })),
    })
}

/// How a Herald connection ends (the outbox's closer): a `Disconnect` frame
/// with the code, reason and advice (but for a normal close), then the
/// close frame.
pub(crate) fn close_tail(code: CloseCode, reason: &str) -> Bytes {
    let close = ws::close_frame(code.number(), reason);
    if code == CloseCode::Normal {
        return close;
    }
    let notice = disconnect_frame(code, reason);
    let mut tail = bytes::BytesMut::with_capacity(notice.len() + close.len());
    tail.extend_from_slice(&notice);
    tail.extend_from_slice(&close);
    tail.freeze()
}

/// The `GoAway` frame: the edge is draining; the client has `within` to
/// finish its requests and move.
pub(crate) fn go_away_frame(within: Duration) -> Bytes {
    ws::binary_frame(&client::ServerFrame {
        kind: Some(server_frame::Kind::GoAway(client::GoAway {
            within_ms: u32::try_from(within.as_millis()).unwrap_or(u32::MAX),
        })),
    })
}

/// The reply to a bus failure.
pub(super) fn bus_err(rid: u64, what: &str, e: &BusError) -> Bytes {
    tracing::warn!(error = %e, "{what} failed on the bus");
    match e {
        BusError::NoHistory(m) => reply_err(rid, ErrorCode::Unavailable, format!("history unavailable: {m}")),
        _ => reply_err(rid, ErrorCode::Unavailable, "bus unavailable; retry"),
    }
}
