//! [`ApiError`]: every failure the REST and gRPC APIs answer with.
//!
//! An `ApiError` is a Herald [`ErrorCode`] plus a message meant for the
//! caller. REST renders it as `{"error": {"code": "<name>", "message":
//! "..."}}` with the code's HTTP status; gRPC as a status with the code's
//! gRPC code and the name in the `herald-error-code` metadata entry.
//! Internal failures are logged once, where they are converted, with their
//! details; the caller only sees a generic message.

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_bus::BusError;
use herald_proto::ErrorCode;
use herald_proto::codes::GrpcCode;
use serde::Serialize;

use crate::store::StoreError;

/// The gRPC metadata entry that carries the error code's name.
pub const ERROR_CODE_METADATA: &str = "herald-error-code";

/// A failed request: what the caller is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The Herald error code.
    pub code: ErrorCode,
    /// A message for the caller; never holds secrets or internals.
    pub message: Cow<'static, str>,
    /// Seconds after which a retry may succeed (rate limits).
    pub retry_after_secs: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self { code, message: message.into(), retry_after_secs: None }
    }

    /// With `Retry-After: secs`.
    #[must_use]
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// `bad_request` (400).
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `unauthorized` (401).
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// `forbidden` (403).
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `app_disabled` (403): the app's keys and tokens are refused; the
    /// message carries the administrator's reason.
    pub fn app_disabled(disabled: &crate::store::Disabled) -> Self {
        let message = if disabled.reason.is_empty() {
            "the app is disabled; an administrator can enable it again".to_owned()
        } else {
            format!("the app is disabled: {}; an administrator can enable it again", disabled.reason)
        };
        Self::new(ErrorCode::AppDisabled, message)
    }

    /// `not_found` (404).
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// `too_large` (413).
    pub fn too_large(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    /// `limit_exceeded` (400).
    pub fn limit_exceeded(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::LimitExceeded, message)
    }

    /// `unavailable` (503).
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// `internal` (500). Log the details before calling this.
    #[must_use]
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error; see the server's logs")
    }

    /// The error as the JSON body REST answers with.
    #[must_use]
    pub fn body(&self) -> ErrorBody {
        ErrorBody { error: ErrorDetail { code: self.code.name().to_owned(), message: self.message.to_string() } }
    }
}

/// The JSON body of every REST error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// One error: the code's name and a message.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The error code's name, e.g. `invalid_channel` (see the protocol's
    /// error-code table).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

fn grpc_code(code: GrpcCode) -> tonic::Code {
    tonic::Code::from_i32(code as i32)
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let mut status = tonic::Status::new(grpc_code(e.code.grpc_code()), e.message.into_owned());
        status.metadata_mut().insert(ERROR_CODE_METADATA, tonic::metadata::MetadataValue::from_static(e.code.name()));
        status
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(ref inner) => {
                tracing::warn!(error = %inner, "database unavailable");
                Self::unavailable("the database is unavailable; retry later")
            }
            StoreError::Conflict(_) => Self::new(ErrorCode::Conflict, "already exists"),
            StoreError::Missing(_) => Self::not_found("not found"),
            other => {
                tracing::error!(error = %other, "store failure");
                Self::internal()
            }
        }
    }
}

impl From<BusError> for ApiError {
    fn from(e: BusError) -> Self {
        match e {
            e if e.is_transient() => {
                tracing::warn!(error = %e, "bus unavailable");
                Self::unavailable("the message bus is unavailable; the message was not accepted; retry later")
            }
            BusError::NoHistory(reason) => {
                tracing::debug!(%reason, "no history stream");
                Self::new(ErrorCode::NotEnabled, "the channel's namespace keeps no history")
            }
            e => {
                tracing::error!(error = %e, "bus refused an operation");
                Self::internal()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_its_grpc_code() {
        for code in ErrorCode::ALL {
            let status = tonic::Status::from(ApiError::new(*code, "x"));
            assert_eq!(status.code() as i32, code.grpc_code() as i32, "{code}");
            let name = status.metadata().get(ERROR_CODE_METADATA).and_then(|v| v.to_str().ok());
            assert_eq!(name, Some(code.name()));
        }
    }

    #[test]
    fn rest_body_shape() {
        let response = ApiError::forbidden("nope").into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let body = serde_json::to_value(ApiError::forbidden("nope").body()).expect("json");
        assert_eq!(body, serde_json::json!({"error": {"code": "forbidden", "message": "nope"}}));
    }
}
