//! REST for the token signing keys: `POST /v1/signing-keys/rotate`
//! (admin).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Caller, RawBody, Shared, TAG_ADMIN, parse_json};
use crate::error::{ApiError, ErrorBody};
use crate::tokens::Rotation;

/// `POST /v1/signing-keys/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the retired key stays in the JWKS, in seconds (the server's
    /// `signing_key_overlap` when absent; 0 drops it at once).
    pub overlap_seconds: Option<u64>,
}

/// Rotates the token signing keys; the previous key stays in the JWKS for
/// the overlap.
#[utoipa::path(post, path = "/v1/signing-keys/rotate", tag = TAG_ADMIN, request_body(content = RotateBody, description = "optional"),
    security(("admin" = [])),
    responses((status = 200, body = Rotation), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn rotate(
    State(core): Shared,
    Caller(who): Caller,
    RawBody(body): RawBody,
) -> Result<Json<Rotation>, ApiError> {
    let depth = core.config.max_json_depth;
    let body: RotateBody = if body.is_empty() { RotateBody::default() } else { parse_json(&body, depth)? };
    Ok(Json(core.rotate_signing_keys(&who, body.overlap_seconds).await?))
}
