//! REST for presence: `GET /v1/apps/{app_id}/channels/{channel}/presence`
//! (API key).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{ApiPath, ApiQuery, Caller, Shared, TAG_APP};
use crate::error::{ApiError, ErrorBody};
use crate::services::Presence;

/// A member of a presence channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberView {
    /// The client id (the token's `sub`).
    pub client_id: String,
    /// The token's `info` object (`{}` when it had none).
    #[schema(value_type = Object)]
    pub info: Box<RawValue>,
    /// The client's connections in the channel, across edges.
    pub connections: u32,
}

/// `GET /v1/apps/{app_id}/channels/{channel}/presence`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PresenceView {
    /// The channel.
    pub channel: String,
    /// A page of its members, by client id.
    pub members: Vec<MemberView>,
    /// The number of members in all.
    pub count: usize,
    /// Pass as `after` for the next page; absent when this page ends the
    /// list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `GET /v1/apps/{app_id}/channels/{channel}/presence`.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PresenceQuery {
    /// Members whose client id comes after this one (default: from the
    /// first).
    pub after: Option<String>,
    /// Most members to return (default and most: 1,000).
    pub limit: Option<usize>,
}

fn presence_view(p: Presence) -> PresenceView {
    let members: Vec<MemberView> = p
        .members
        .into_iter()
        .map(|m| {
            let info = if m.info.is_empty() { None } else { serde_json::from_slice::<Box<RawValue>>(&m.info).ok() };
            let info = info.unwrap_or_else(|| RawValue::from_string("{}".to_owned()).unwrap_or_default());
            MemberView { client_id: m.client_id, info, connections: m.connections }
        })
        .collect();
    PresenceView { channel: p.channel.to_string(), count: p.total, members, next: p.next }
}

/// The members of a channel (channels of a namespace with presence),
/// counted per client id across connections and edges, in pages by client
/// id.
#[utoipa::path(get, path = "/v1/apps/{app_id}/channels/{channel}/presence", tag = TAG_APP, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"),
           ("channel" = String, Path, description = "The channel name, percent-encoded"), PresenceQuery),
    responses((status = 200, body = PresenceView), (status = 400, body = ErrorBody,
               description = "bad channel; `not_enabled` when the channel's namespace has no presence"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn presence(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, channel)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<PresenceQuery>,
) -> Result<Json<PresenceView>, ApiError> {
    Ok(Json(presence_view(core.presence(&who, &app_id, &channel, q.after.as_deref(), q.limit).await?)))
}
