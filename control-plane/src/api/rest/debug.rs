//! REST for the debug tap: an app's live debug events as Server-Sent
//! Events (admin token, or an API key of the app).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiPath, ApiQuery, Caller, Shared, TAG_APP};
use crate::debug_tap::DebugFilter;
use crate::error::{ApiError, ErrorBody};

/// How often an idle stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// `GET /v1/apps/{app_id}/debug/events`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DebugQuery {
    /// Only events about channels whose name starts with this (connects,
    /// disconnects and webhook deliveries, about no channel, are left out).
    pub channel: Option<String>,
    /// Only these types, comma-separated: `publish`, `connect`,
    /// `disconnect`, `subscribe`, `unsubscribe`, `refusal`, `webhook`.
    pub types: Option<String>,
}

/// The app's debug events, live, while the stream stays open.
#[utoipa::path(get, path = "/v1/apps/{app_id}/debug/events", tag = TAG_APP, security(("admin" = []), ("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"), DebugQuery),
    responses((status = 200, content_type = "text/event-stream",
               description = "Server-Sent Events: `event: debug`, `data:` one JSON object per event (its `type`, \
                              `timestamp_ms`, `node`, `connection_id`, `dropped` and the type's fields; \
                              `{\"type\": \"missed\", \"missed\": N}` when this watcher fell behind); a \
                              keep-alive comment every 15 s"),
              (status = 400, body = ErrorBody, description = "bad `channel` or `types` (named)"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "`debug_tap_max_watchers` watchers already"),
              (status = 503, body = ErrorBody)))]
pub(super) async fn debug_events(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DebugQuery>,
) -> Result<Response, ApiError> {
    let filter = DebugFilter::parse(q.channel.as_deref(), q.types.as_deref())?;
    let items = core.watch_debug(&who, &app_id, filter).await?;
    let events =
        items.map(|item| Ok::<_, Infallible>(Event::default().event("debug").data(item.to_json().to_string())));
    let mut response = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    // Proxies must pass events on as they come.
    response.headers_mut().insert("x-accel-buffering", axum::http::HeaderValue::from_static("no"));
    Ok(response)
}
