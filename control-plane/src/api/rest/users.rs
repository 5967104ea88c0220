//! REST for users: an event to every connection of one user, and closing
//! them (`/v1/apps/{app_id}/users/{user_id}/…`, API key that may publish on
//! every channel).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::publish::payload;
use super::{ApiPath, Body, Caller, Shared, TAG_APP};
use crate::error::{ApiError, ErrorBody};
use crate::services::Draft;

/// `POST /v1/apps/{app_id}/users/{user_id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserMessageBody {
    /// The payload, as in a publish: a string is sent as its text (or
    /// decoded with `encoding: "base64"`), any other JSON value as its JSON
    /// text.
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
    /// Event name (at most 128 bytes).
    pub name: Option<String>,
    /// `"base64"` to send binary data given as a base64 string.
    pub encoding: Option<String>,
}

/// An event accepted by the bus for a user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserMessageAccepted {
    /// The event's id.
    pub id: String,
}

/// A user's connections being closed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserTerminated {
    /// The user (client id).
    pub user_id: String,
}

/// Sends an event to every connection of a user (Pusher connections signed
/// in as the user id, Herald connections whose token's subject it is).
/// Answers once the bus accepted it.
#[utoipa::path(post, path = "/v1/apps/{app_id}/users/{user_id}/messages", tag = TAG_APP, request_body = UserMessageBody,
    security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"),
           ("user_id" = String, Path, description = "The user (client id), percent-encoded")),
    responses((status = 202, body = UserMessageAccepted), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "the key may not publish on every channel"),
              (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the bus is unavailable; nothing was accepted")))]
pub(super) async fn publish_to_user(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, user_id)): ApiPath<(String, String)>,
    Body(body): Body<UserMessageBody>,
) -> Result<Response, ApiError> {
    let data = payload(&body.data, body.encoding.as_deref())?;
    let draft = Draft { data, event: body.name, ..Draft::default() };
    let id = core.publish_to_user(&who, &app_id, &user_id, draft).await?;
    Ok((StatusCode::ACCEPTED, Json(UserMessageAccepted { id })).into_response())
}

/// Closes every connection of a user, on every edge (they may connect
/// again).
#[utoipa::path(post, path = "/v1/apps/{app_id}/users/{user_id}/terminate", tag = TAG_APP, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"),
           ("user_id" = String, Path, description = "The user (client id), percent-encoded")),
    responses((status = 202, body = UserTerminated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody, description = "the key may not publish on every channel"),
              (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the bus is unavailable; nothing was closed")))]
pub(super) async fn terminate_user(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, user_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    core.terminate_user(&who, &app_id, &user_id).await?;
    Ok((StatusCode::ACCEPTED, Json(UserTerminated { user_id })).into_response())
}
