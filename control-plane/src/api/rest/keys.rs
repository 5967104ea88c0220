//! REST for API keys: `/v1/apps/{app_id}/keys` (admin).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_proto::Capabilities;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiPath, Body, Caller, Shared, TAG_ADMIN, secs};
use crate::error::{ApiError, ErrorBody};
use crate::store::ApiKey;

/// `POST /v1/apps/{app_id}/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// Display name.
    pub name: String,
    /// Channel pattern → operations; everything when absent.
    #[schema(value_type = Option<HashMap<String, Vec<String>>>)]
    pub capabilities: Option<Capabilities>,
    /// Also give the key a Pusher secret, returned once as
    /// `pusher_secret`: it signs the app's Pusher channel authorizations and
    /// Pusher HTTP API requests (default false).
    #[serde(default)]
    pub pusher: bool,
}

/// A new API key, with the whole secret — shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedKey {
    /// The key id.
    pub id: String,
    /// The whole key, `hk_<id>_<secret>`: send it as `Authorization: Bearer
    /// <key>`. Only its hash is stored.
    pub key: String,
    /// Display name.
    pub name: String,
    /// What the key allows.
    #[schema(value_type = HashMap<String, Vec<String>>)]
    pub capabilities: Capabilities,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// The key's Pusher secret (32 hex characters), for keys created with
    /// `"pusher": true`. Shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pusher_secret: Option<String>,
}

/// An API key, without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyView {
    /// The key id.
    pub id: String,
    /// The app.
    pub app_id: String,
    /// Display name.
    pub name: String,
    /// What the key allows.
    #[schema(value_type = HashMap<String, Vec<String>>)]
    pub capabilities: Capabilities,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Revocation time, Unix seconds; absent while active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Whether the key has a Pusher secret (never shown again).
    pub pusher: bool,
}

/// `GET /v1/apps/{app_id}/keys`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The app's keys, oldest first, revoked ones included.
    pub keys: Vec<KeyView>,
}

/// `DELETE /v1/apps/{app_id}/keys/{key_id}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedKey {
    /// The key id.
    pub id: String,
    /// Revocation time, Unix seconds (the first one when revoked twice).
    pub revoked_at: i64,
    /// Whether edges were told before this answer (otherwise the event is
    /// retried in the background).
    pub edges_notified: bool,
}

fn key_view(key: &ApiKey) -> KeyView {
    KeyView {
        id: key.id.to_string(),
        app_id: key.app_id.to_string(),
        name: key.name.clone(),
        capabilities: key.capabilities.clone(),
        created_at: secs(key.created_at_ms),
        revoked_at: key.revoked_at_ms.map(secs),
        pusher: key.pusher_secret.is_some(),
    }
}

/// Creates an API key; the answer holds the whole secret, this once.
#[utoipa::path(post, path = "/v1/apps/{app_id}/keys", tag = TAG_ADMIN, request_body = CreateKeyBody, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn create_key(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<CreateKeyBody>,
) -> Result<Response, ApiError> {
    let (key, secret) = core.create_key_with(&who, &app_id, &body.name, body.capabilities, body.pusher).await?;
    let created = CreatedKey {
        id: key.id.to_string(),
        key: secret,
        name: key.name,
        capabilities: key.capabilities,
        created_at: secs(key.created_at_ms),
        pusher_secret: key.pusher_secret,
    };
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(created)).into_response())
}

/// Lists an app's keys (without secrets).
#[utoipa::path(get, path = "/v1/apps/{app_id}/keys", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn list_keys(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = core.list_keys(&who, &app_id).await?;
    Ok(Json(KeyList { keys: keys.iter().map(key_view).collect() }))
}

/// Revokes a key: it stops working at once, and edges close connections
/// holding tokens it minted.
#[utoipa::path(delete, path = "/v1/apps/{app_id}/keys/{key_id}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("key_id" = String, Path, description = "The key id")),
    responses((status = 200, body = RevokedKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_key(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, key_id)): ApiPath<(String, String)>,
) -> Result<Json<RevokedKey>, ApiError> {
    let revoked = core.revoke_key(&who, &app_id, &key_id).await?;
    Ok(Json(RevokedKey { id: key_id, revoked_at: secs(revoked.revoked_at_ms), edges_notified: revoked.edges_notified }))
}
