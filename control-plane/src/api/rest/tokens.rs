//! REST for tokens: `POST /v1/apps/{app_id}/tokens` (API key).

use axum::Json;
use axum::extract::State;
use herald_proto::Capabilities;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiPath, Body, Caller, Shared, TAG_APP};
use crate::error::{ApiError, ErrorBody};

/// `POST /v1/apps/{app_id}/tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenBody {
    /// The end user.
    pub client_id: String,
    /// Channel pattern → operations; a subset of the key's (the key's when
    /// absent).
    #[schema(value_type = Option<HashMap<String, Vec<String>>>)]
    pub capabilities: Option<Capabilities>,
    /// Lifetime in seconds (default 3600, at most 86400 by default).
    pub ttl_seconds: Option<u64>,
    /// A JSON object shown to presence members (at most 1 KiB).
    #[schema(value_type = Option<Object>)]
    pub info: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A minted token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The JWT.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// Mints a token for an end user.
#[utoipa::path(post, path = "/v1/apps/{app_id}/tokens", tag = TAG_APP, request_body = TokenBody, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = TokenView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "another app's key, or capabilities beyond the key's"),
              (status = 404, body = ErrorBody)))]
pub(super) async fn mint_token(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<TokenBody>,
) -> Result<Json<TokenView>, ApiError> {
    let (token, expires_at) =
        core.mint_token(&who, &app_id, &body.client_id, body.capabilities, body.ttl_seconds, body.info).await?;
    Ok(Json(TokenView { token, expires_at }))
}
