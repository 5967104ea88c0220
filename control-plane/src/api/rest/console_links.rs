//! REST for the web console's one-time login links:
//! `POST /v1/console/links` (admin).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Caller, RawBody, Shared, TAG_ADMIN, secs};
use crate::error::{ApiError, ErrorBody};

/// A new login link.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsoleLinkBody {
    /// `/console/login/<token>`: append it to the console's base URL (the
    /// API address, or `console_addr`). It signs in once; shown this once.
    pub path: String,
    /// When it stops working (Unix seconds).
    pub expires_at: i64,
}

/// Creates a one-time login link of the web console.
#[utoipa::path(post, path = "/v1/console/links", tag = TAG_ADMIN, security(("admin" = [])),
    responses((status = 201, body = ConsoleLinkBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub(super) async fn create_link(
    State(core): Shared,
    Caller(who): Caller,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<ConsoleLinkBody>), ApiError> {
    if !body.is_empty() && body.iter().any(|b| !b.is_ascii_whitespace()) && &body[..] != b"{}" {
        return Err(ApiError::bad_request("this request takes no body (or `{}`)"));
    }
    let link = core.create_console_link(&who).await?;
    Ok((StatusCode::CREATED, Json(ConsoleLinkBody { path: link.path, expires_at: secs(link.expires_at_ms) })))
}
