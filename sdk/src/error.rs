//! [`Error`]: every way a realtime operation can fail, one variant per kind.
//!
//! The client decides from the edge's close codes whether to reconnect;
//! what reaches the application is either a result or one of these kinds.
//! Errors are `Clone` because one failure (a terminal close, say) resolves
//! many waiting calls at once.

use std::time::Duration;

use herald_proto::{ChannelNameError, CloseCode, ErrorCode};

/// Why a realtime operation failed.
///
/// ```
/// use std::time::Duration;
/// use herald_sdk::{CloseCode, Error, ErrorCode};
///
/// assert!(Error::TimedOut(Duration::from_secs(10)).is_retryable());
/// let terminal = Error::Terminal { code: 4500, reason: "invalid token".into() };
/// assert!(!terminal.is_retryable());
/// assert_eq!(terminal.close_code(), Some(CloseCode::InvalidToken));
/// assert_eq!(terminal.to_string(), "closed by the edge with 4500 (invalid_token): invalid token");
/// let refused = Error::Rejected { code: ErrorCode::Forbidden, message: "not allowed".into(), retryable: false };
/// assert_eq!(refused.error_code(), Some(ErrorCode::Forbidden));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client was closed by [`crate::Client::close`], or every handle was
    /// dropped.
    #[error("the client is closed")]
    Closed,
    /// The edge closed the connection with a code that says not to
    /// reconnect (e.g. `invalid_token`, 4500), or with `token_expired`
    /// while the client has no token provider to get a fresh one from. The
    /// client has stopped.
    #[error("closed by the edge with {code} ({}): {reason}", close_code_name(*.code))]
    Terminal {
        /// The close code.
        code: u16,
        /// The reason the edge gave.
        reason: String,
    },
    /// The publish queue (`ClientConfig::publish_queue_capacity`) is full.
    #[error("the publish queue is full ({capacity} messages waiting)")]
    QueueFull {
        /// The queue's bound.
        capacity: usize,
    },
    /// No answer within the time allowed. For a publish, the message may
    /// still go out if it had already been sent.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The edge refused the request; the connection goes on.
    #[error("refused by the edge: {code}: {message}")]
    Rejected {
        /// The error code (unknown numbers map to [`ErrorCode::Internal`]).
        code: ErrorCode,
        /// The edge's explanation.
        message: String,
        /// Whether the same request may succeed later.
        retryable: bool,
    },
    /// The connection dropped after the request was sent and before the
    /// edge answered: a publish may or may not have gone out. Publishes with
    /// an idempotency id are re-sent after the reconnect instead.
    #[error("the connection was lost before the edge answered")]
    ConnectionLost,
    /// The request needs a live connection (a ping, a presence query) and
    /// the client is between connections.
    #[error("not connected")]
    NotConnected,
    /// The client could not connect within `ClientConfig::connect_timeout`.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The client gave up after `Backoff::max_attempts` failed attempts.
    #[error("gave up reconnecting after {attempts} attempts; last: {last}")]
    GaveUp {
        /// Consecutive failed attempts.
        attempts: u32,
        /// Why the last one failed.
        last: String,
    },
    /// The channel name is not valid.
    #[error("invalid channel name: {0}")]
    InvalidChannel(#[from] ChannelNameError),
    /// The configuration is invalid.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

fn close_code_name(code: u16) -> &'static str {
    CloseCode::from_number(code).map_or("unknown", CloseCode::name)
}

impl Error {
    /// The close code, for [`Error::Terminal`], as Herald knows it.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// match client.publish("chat:lobby", "hi").await {
    ///     Err(e) => println!("close code: {:?}", e.close_code()),
    ///     Ok(_) => {}
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Self::Terminal { code, .. } => CloseCode::from_number(*code),
            _ => None,
        }
    }

    /// The error code, for [`Error::Rejected`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Err(e) = client.subscribe("secret:room").await {
    ///     if e.error_code() == Some(herald_sdk::ErrorCode::Forbidden) {
    ///         println!("not allowed");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the same call may succeed if made again later.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Err(e) = client.publish("chat:lobby", "hi").await {
    ///     if e.is_retryable() {
    ///         // Try again later.
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Rejected { retryable, .. } => *retryable,
            Self::QueueFull { .. } | Self::TimedOut(_) | Self::ConnectionLost | Self::NotConnected => true,
            _ => false,
        }
    }

    pub(crate) fn rejected(code: u32, message: String, retryable: bool) -> Self {
        match ErrorCode::from_number(code) {
            Some(code) => Self::Rejected { code, message, retryable },
            None => {
                Self::Rejected { code: ErrorCode::Internal, message: format!("(code {code}) {message}"), retryable }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_well() {
        let e = Error::Terminal { code: 4500, reason: "invalid token: bad signature".into() };
        assert_eq!(e.to_string(), "closed by the edge with 4500 (invalid_token): invalid token: bad signature");
        assert_eq!(e.close_code(), Some(CloseCode::InvalidToken));
        let e = Error::rejected(4, "no".into(), false);
        assert_eq!(e.to_string(), "refused by the edge: forbidden: no");
        assert_eq!(e.error_code(), Some(ErrorCode::Forbidden));
        let e = Error::rejected(999, "new".into(), true);
        assert_eq!(e.error_code(), Some(ErrorCode::Internal));
        assert!(e.is_retryable());
        assert!(!Error::Closed.is_retryable());
    }
}
