//! [`RestError`], why a REST call failed, and how the control plane's
//! answers become one: its JSON error envelope (`{"error": {"code",
//! "message"}}`) carries the Herald error code; an answer without one is
//! given the code its HTTP status stands for.

use std::time::Duration;

use herald_proto::ErrorCode;
use http::StatusCode;
use serde::Deserialize;

/// Why a REST call failed.
///
/// ```
/// use std::time::Duration;
/// use herald_sdk::{ErrorCode, Publisher, RestError};
/// let refused = Publisher::new("ftp://example.com", "my-app", "hk_…").unwrap_err();
/// assert!(matches!(refused, RestError::Config(_)));
///
/// let limited = RestError::Api {
///     status: 429, code: ErrorCode::RateLimited, message: "slow down".into(), retry_after: Some(Duration::from_secs(1)),
/// };
/// assert_eq!(limited.code(), Some(ErrorCode::RateLimited));
/// assert_eq!(limited.to_string(), "rate_limited: slow down (HTTP 429)");
/// assert_eq!(RestError::Transport("connection refused".into()).code(), None);
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// The control plane refused the request.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The Herald error code (`{"error": {"code"}}`).
        code: ErrorCode,
        /// The control plane's explanation.
        message: String,
        /// When the control plane said to retry (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The control plane could not be reached, or the connection failed.
    #[error("request failed: {0}")]
    Transport(String),
    /// No answer within the publisher's timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The answer was not what the API documents.
    #[error("unexpected answer (HTTP {status}): {detail}")]
    Decode {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// The publisher's configuration is invalid.
    #[error("invalid publisher configuration: {0}")]
    Config(String),
    /// An argument is invalid; nothing was sent (e.g. an empty user id).
    #[error("invalid request: {0}")]
    InvalidInput(String),
}

impl RestError {
    /// The Herald error code, for [`RestError::Api`].
    #[must_use]
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The error body of the REST API.
#[derive(Deserialize)]
pub(super) struct ErrorEnvelope {
    pub(super) error: ErrorDetail,
}

/// The `error` object of an error body.
#[derive(Deserialize)]
pub(super) struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

/// Decodes a success answer with `status`.
pub(super) fn decode<T: serde::de::DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, RestError> {
    serde_json::from_slice(bytes).map_err(|e| RestError::Decode { status: status.as_u16(), detail: e.to_string() })
}

/// The error an answer that is not a success stands for.
pub(super) fn error_from(status: StatusCode, bytes: &[u8], retry_after: Option<Duration>) -> RestError {
    match serde_json::from_slice::<ErrorEnvelope>(bytes) {
        Ok(envelope) => api_error(status.as_u16(), envelope.error, retry_after),
        Err(_) => RestError::Api {
            status: status.as_u16(),
            code: code_for_status(status.as_u16()),
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            retry_after,
        },
    }
}

/// The error an error body stands for.
pub(super) fn api_error(status: u16, detail: ErrorDetail, retry_after: Option<Duration>) -> RestError {
    let code = ErrorCode::from_name(&detail.code).unwrap_or_else(|| code_for_status(status));
    RestError::Api { status, code, message: detail.message, retry_after }
}

/// The Herald error code an HTTP status stands for.
fn code_for_status(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        408 => ErrorCode::RequestTimeout,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::TooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_the_herald_code() {
        let e = error_from(StatusCode::FORBIDDEN, br#"{"error": {"code": "forbidden", "message": "no"}}"#, None);
        assert_eq!(e.code(), Some(ErrorCode::Forbidden));
        assert_eq!(e.to_string(), "forbidden: no (HTTP 403)");
        let e = error_from(StatusCode::REQUEST_TIMEOUT, b"", None);
        assert_eq!(e.code(), Some(ErrorCode::RequestTimeout), "a 408 from a proxy, without a body");
        let e = error_from(StatusCode::BAD_GATEWAY, b"<html>", None);
        assert_eq!(e.code(), Some(ErrorCode::Internal));
    }
}
