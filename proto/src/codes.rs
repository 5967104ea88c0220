//! Close codes and error codes: one table each, used by the edge, the
//! control plane and the SDK alike.
//!
//! A **close code** ends a connection; it travels in the WebSocket close
//! frame and in the [`crate::client::Disconnect`] frame sent just before it,
//! with a reason of at most [`MAX_CLOSE_REASON_LEN`] bytes (a close frame
//! holds 125 bytes, 2 of them the code). Each code says whether a client
//! should reconnect ([`Advice`]).
//!
//! An **error code** answers one failed request; the connection (or the HTTP
//! client) goes on. It maps to an HTTP status and a gRPC status code, and has
//! a snake_case name used in REST bodies (`{"error": {"code": "..."}}`).

use std::fmt;

use crate::client::ReconnectAdvice;

/// Longest close reason, in bytes.
pub const MAX_CLOSE_REASON_LEN: usize = 123;

/// What a client should do after a close.
///
/// ```
/// use herald_proto::client::ReconnectAdvice;
/// use herald_proto::{Advice, CloseCode};
/// let advice = CloseCode::TokenExpired.advice();
/// assert_eq!((advice, advice.as_str()), (Advice::RefreshToken, "refresh token"));
/// assert_eq!(advice.to_wire(), ReconnectAdvice::RefreshToken);
/// assert_eq!(CloseCode::GoingAway.advice(), Advice::ReconnectNow);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Advice {
    /// Reconnect with backoff (possibly to another edge).
    Reconnect,
    /// Reconnect at once, to another edge.
    ReconnectNow,
    /// Get a fresh token, then reconnect.
    RefreshToken,
    /// Do not reconnect: the same attempt would fail again.
    Terminal,
}

impl Advice {
    /// The advice as sent in [`crate::client::Disconnect`].
    #[must_use]
    pub const fn to_wire(self) -> ReconnectAdvice {
        match self {
            Self::Reconnect => ReconnectAdvice::Reconnect,
            Self::ReconnectNow => ReconnectAdvice::ReconnectNow,
            Self::RefreshToken => ReconnectAdvice::RefreshToken,
            Self::Terminal => ReconnectAdvice::Terminal,
        }
    }

    /// The advice's name in docs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reconnect => "reconnect",
            Self::ReconnectNow => "reconnect now",
            Self::RefreshToken => "refresh token",
            Self::Terminal => "terminal",
        }
    }
}

macro_rules! close_codes {
    ($($(#[$doc:meta])* $name:ident = $num:literal, $snake:literal, $advice:ident, $reason:literal;)*) => {
        /// Why a connection was closed. See the module docs.
        ///
        /// ```
        /// use herald_proto::{Advice, CloseCode};
        /// let code = CloseCode::from_number(4000).expect("a Herald code");
        /// assert_eq!((code, code.name()), (CloseCode::SlowConsumer, "slow_consumer"));
        /// assert_eq!(code.advice(), Advice::Reconnect);
        /// assert_eq!(CloseCode::InvalidToken.advice(), Advice::Terminal);
        /// assert_eq!(CloseCode::GoingAway.number(), 1001);
        /// assert_eq!(CloseCode::HandshakeTimeout.reason(), "no connect frame before the deadline");
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum CloseCode {
            $($(#[$doc])* $name,)*
        }

        impl CloseCode {
            /// Every close code, in table order.
            pub const ALL: &'static [CloseCode] = &[$(Self::$name,)*];

            /// The number sent in the close frame.
            #[must_use]
            pub const fn number(self) -> u16 {
                match self { $(Self::$name => $num,)* }
            }

            /// The snake_case name.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Self::$name => $snake,)* }
            }

            /// What a client should do.
            #[must_use]
            pub const fn advice(self) -> Advice {
                match self { $(Self::$name => Advice::$advice,)* }
            }

            /// The default reason, at most [`MAX_CLOSE_REASON_LEN`] bytes.
            #[must_use]
            pub const fn reason(self) -> &'static str {
                match self { $(Self::$name => $reason,)* }
            }

            /// The code with this number, if Herald defines it.
            #[must_use]
            pub const fn from_number(n: u16) -> Option<Self> {
                match n { $($num => Some(Self::$name),)* _ => None }
            }
        }

        $(const _: () = assert!($reason.len() <= MAX_CLOSE_REASON_LEN);)*
    };
}

close_codes! {
    /// The connection ended normally (the client closed, or `close()`).
    Normal = 1000, "normal", Terminal, "closed";
    /// The edge is shutting down or draining; reconnect at once elsewhere.
    GoingAway = 1001, "going_away", ReconnectNow, "edge is draining; reconnect to another edge";
    /// The client broke the WebSocket protocol.
    ProtocolError = 1002, "protocol_error", Terminal, "websocket protocol error";
    /// The client sent a text frame; Herald speaks binary Protobuf only.
    UnsupportedData = 1003, "unsupported_data", Terminal, "text frames are not supported; send binary protobuf frames";
    /// A WebSocket message exceeded the frame limit.
    MessageTooBig = 1009, "message_too_big", Terminal, "message exceeds the frame size limit";
    /// The edge failed; reconnect with backoff.
    InternalError = 1011, "internal_error", Reconnect, "internal error";
    /// The connection's send queue passed its bound: the client read too slowly.
    SlowConsumer = 4000, "slow_consumer", Reconnect, "send queue full: the client reads too slowly";
    /// No frame, pong or ping from the client within the heartbeat timeout.
    HeartbeatTimeout = 4001, "heartbeat_timeout", Reconnect, "no heartbeat from the client within the timeout";
    /// No valid `Connect` frame before the handshake deadline.
    HandshakeTimeout = 4002, "handshake_timeout", Reconnect, "no connect frame before the deadline";
    /// The edge holds as many connections as allowed (per edge or per app).
    ConnectionLimit = 4003, "connection_limit", Reconnect, "connection limit reached; retry later or elsewhere";
    /// The edge cannot reach the bus; reconnect, possibly elsewhere. (The
    /// wire name keeps its first word, `backplane`, for the clients that
    /// match it.)
    BusUnavailable = 4004, "backplane_unavailable", Reconnect, "bus unavailable";
    /// The app is at its connection quota (or over a usage quota); retry
    /// later, once the app's usage or quota allows.
    QuotaExceeded = 4005, "quota_exceeded", Reconnect, "the app's usage quota is reached; retry later";
    /// The token expired and was not refreshed in time.
    TokenExpired = 4100, "token_expired", RefreshToken, "token expired";
    /// The API key that minted the token was revoked.
    KeyRevoked = 4101, "key_revoked", RefreshToken, "the api key that minted this token was revoked";
    /// The token is invalid: bad signature, wrong audience or issuer,
    /// malformed, not yet valid, or unknown key id.
    InvalidToken = 4500, "invalid_token", Terminal, "invalid token";
    /// The request's `Origin` is not in the app's allowlist.
    OriginNotAllowed = 4501, "origin_not_allowed", Terminal, "origin not allowed";
    /// The client sent a frame that is not a valid `ClientFrame`, or a
    /// request out of order (e.g. `Subscribe` before `Connect`).
    BadFrame = 4502, "bad_frame", Terminal, "malformed or unexpected frame";
    /// The app was deleted or disabled.
    AppUnavailable = 4503, "app_unavailable", Terminal, "app deleted or disabled";
    /// The app terminated every connection of this user (the token's
    /// subject, or the user a Pusher connection signed in as).
    UserTerminated = 4504, "user_terminated", Terminal, "the app terminated this user's connections";
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.number())
    }
}

/// Cuts `reason` to at most [`MAX_CLOSE_REASON_LEN`] bytes on a character
/// boundary, so any text can go into a close frame.
///
/// ```
/// use herald_proto::codes::{MAX_CLOSE_REASON_LEN, truncate_reason};
/// assert_eq!(truncate_reason("bye"), "bye");
/// let long = "é".repeat(100); // 200 bytes, 2 per character
/// assert_eq!(truncate_reason(&long).len(), MAX_CLOSE_REASON_LEN - 1);
/// ```
#[must_use]
pub fn truncate_reason(reason: &str) -> &str {
    if reason.len() <= MAX_CLOSE_REASON_LEN {
        return reason;
    }
    let mut end = MAX_CLOSE_REASON_LEN;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident = $num:literal, $snake:literal, $http:literal, $grpc:ident, $retry:literal;)*) => {
        /// Why a request failed. See the module docs.
        ///
        /// ```
        /// use herald_proto::ErrorCode;
        /// let code = ErrorCode::from_name("rate_limited").expect("known");
        /// assert_eq!((code.number(), code.http_status(), code.retryable()), (9, 429, true));
        /// assert_eq!(ErrorCode::from_number(16), Some(ErrorCode::QuotaExceeded));
        /// assert_eq!(ErrorCode::NotFound.name(), "not_found");
        /// assert_eq!(ErrorCode::Unavailable.grpc_code() as i32, 14);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every error code, in table order.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$name,)*];

            /// The number sent in `ReplyError.code`.
            #[must_use]
            pub const fn number(self) -> u32 {
                match self { $(Self::$name => $num,)* }
            }

            /// The snake_case name used in REST and gRPC error bodies.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self { $(Self::$name => $snake,)* }
            }

            /// The HTTP status the REST API answers with.
            #[must_use]
            pub const fn http_status(self) -> u16 {
                match self { $(Self::$name => $http,)* }
            }

            /// The gRPC status code the gRPC API answers with.
            #[must_use]
            pub const fn grpc_code(self) -> GrpcCode {
                match self { $(Self::$name => GrpcCode::$grpc,)* }
            }

            /// Whether the same request may succeed later.
            #[must_use]
            pub const fn retryable(self) -> bool {
                match self { $(Self::$name => $retry,)* }
            }

            /// The code with this number, if Herald defines it.
            #[must_use]
            pub const fn from_number(n: u32) -> Option<Self> {
                match n { $($num => Some(Self::$name),)* _ => None }
            }

            /// The code with this snake_case name, if Herald defines it.
            #[must_use]
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($snake => Some(Self::$name),)* _ => None }
            }
        }
    };
}

error_codes! {
    /// The request is malformed: a missing field, a wrong type, bad JSON.
    BadRequest = 1, "bad_request", 400, InvalidArgument, false;
    /// The channel name breaks a rule of [`crate::channel`].
    InvalidChannel = 2, "invalid_channel", 400, InvalidArgument, false;
    /// No credentials, or wrong, expired or revoked ones.
    Unauthorized = 3, "unauthorized", 401, Unauthenticated, false;
    /// The credentials are valid but do not allow this.
    Forbidden = 4, "forbidden", 403, PermissionDenied, false;
    /// The app, key or channel does not exist.
    NotFound = 5, "not_found", 404, NotFound, false;
    /// The request conflicts with the current state (e.g. already subscribed).
    Conflict = 6, "conflict", 409, AlreadyExists, false;
    /// The message or body is larger than allowed.
    TooLarge = 7, "too_large", 413, InvalidArgument, false;
    /// A count limit was reached (subscriptions per connection, batch size).
    LimitExceeded = 8, "limit_exceeded", 400, ResourceExhausted, false;
    /// Too many requests; slow down and retry.
    RateLimited = 9, "rate_limited", 429, ResourceExhausted, true;
    /// The token expired; refresh it.
    TokenExpired = 10, "token_expired", 401, Unauthenticated, false;
    /// The request is not valid in this state (e.g. unsubscribe from a channel
    /// the connection is not subscribed to).
    NotSubscribed = 11, "not_subscribed", 400, FailedPrecondition, false;
    /// A dependency (NATS, the database) is unreachable; retry later.
    Unavailable = 12, "unavailable", 503, Unavailable, true;
    /// The server failed; details are in its logs.
    Internal = 13, "internal", 500, Internal, true;
    /// The frame kind is not known to this edge.
    UnknownRequest = 14, "unknown_request", 400, Unimplemented, false;
    /// A feature is off for this channel (e.g. presence on a channel without
    /// presence).
    NotEnabled = 15, "not_enabled", 400, FailedPrecondition, false;
    /// The app is over one of its usage quotas (messages per day or month,
    /// connections); publishes are refused until the period ends or the
    /// quota is raised.
    QuotaExceeded = 16, "quota_exceeded", 403, ResourceExhausted, false;
    /// An administrator disabled the app: its API keys and tokens are
    /// refused until it is enabled again.
    AppDisabled = 17, "app_disabled", 403, PermissionDenied, false;
    /// The request did not arrive in time: its body (or a gRPC request
    /// message) came slower than the server accepts or stopped, or a gRPC
    /// request stream went silent. The request was not acted on (a
    /// stream's earlier messages were); sent again in time, it may succeed.
    RequestTimeout = 18, "request_timeout", 408, DeadlineExceeded, true;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// gRPC status codes, with the numbers of the gRPC specification; kept here
/// so the contract crate does not depend on tonic.
///
/// ```
/// use herald_proto::ErrorCode;
/// use herald_proto::codes::GrpcCode;
/// assert_eq!(ErrorCode::Forbidden.grpc_code(), GrpcCode::PermissionDenied);
/// assert_eq!(GrpcCode::PermissionDenied as i32, 7);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
#[repr(i32)]
pub enum GrpcCode {
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

/// The close-code and error-code tables as Markdown, exactly as
/// `docs/protocol.md` shows them (`herald codes` prints the same).
///
/// ```
/// let tables = herald_proto::codes::markdown_tables();
/// assert!(tables.contains("| 4000 | `slow_consumer` | reconnect |"));
/// assert!(tables.contains("| 9 | `rate_limited` | 429 | ResourceExhausted (8) | yes |"));
/// ```
#[must_use]
pub fn markdown_tables() -> String {
    use std::fmt::Write;
    let mut out = String::from("| close code | name | client should | reason |\n|---|---|---|---|\n");
    for c in CloseCode::ALL {
        let _ = writeln!(out, "| {} | `{}` | {} | {} |", c.number(), c.name(), c.advice().as_str(), c.reason());
    }
    out.push_str("\n| error code | name | HTTP | gRPC | retryable |\n|---|---|---|---|---|\n");
    for e in ErrorCode::ALL {
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {:?} ({}) | {} |",
            e.number(),
            e.name(),
            e.http_status(),
            e.grpc_code(),
            e.grpc_code() as i32,
            if e.retryable() { "yes" } else { "no" }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn close_codes_are_unique_and_in_range() {
        let mut numbers = HashSet::new();
        let mut names = HashSet::new();
        for code in CloseCode::ALL {
            assert!(numbers.insert(code.number()), "duplicate number {code}");
            assert!(names.insert(code.name()), "duplicate name {code}");
            assert!(code.reason().len() <= MAX_CLOSE_REASON_LEN);
            assert!(!code.reason().is_empty());
            let n = code.number();
            // Standard codes or the private-use range.
            assert!((1000..=1011).contains(&n) || (4000..=4999).contains(&n), "{code}");
            assert_eq!(CloseCode::from_number(n), Some(*code));
            // Herald's own codes: 4500+ are terminal.
            if n >= 4500 {
                assert_eq!(code.advice(), Advice::Terminal, "{code}");
            }
        }
        assert_eq!(CloseCode::from_number(4999), None);
    }

    #[test]
    fn error_codes_are_unique_and_map_to_statuses() {
        let mut numbers = HashSet::new();
        let mut names = HashSet::new();
        for code in ErrorCode::ALL {
            assert!(numbers.insert(code.number()), "duplicate {code}");
            assert!(names.insert(code.name()), "duplicate {code}");
            assert_eq!(ErrorCode::from_number(code.number()), Some(*code));
            assert_eq!(ErrorCode::from_name(code.name()), Some(*code));
            assert!((400..=599).contains(&code.http_status()));
        }
        assert_eq!(ErrorCode::Unauthorized.http_status(), 401);
        assert_eq!(ErrorCode::Unavailable.grpc_code() as i32, 14);
        assert_eq!(ErrorCode::from_name("nope"), None);
    }

    #[test]
    fn protocol_doc_shows_the_current_tables() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
            .expect("docs/protocol.md");
        assert!(
            doc.contains(&markdown_tables()),
            "docs/protocol.md is out of date; paste the output of `herald codes` into it:\n{}",
            markdown_tables()
        );
    }

    #[test]
    fn reasons_are_truncated_on_char_boundaries() {
        assert_eq!(truncate_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= MAX_CLOSE_REASON_LEN);
        assert_eq!(cut.len(), 122);
    }
}
