//! Pusher's HTTP API for apps in Pusher mode, as Pusher's server libraries
//! call it (`pusher` on npm, `pusher` on PyPI, …), on the REST port. The
//! `{app_id}` of the paths is the app's numeric Pusher app id
//! (`pusher.app_id` of the app, found through a cache; an unknown one
//! answers 404); the Pusher `key`, which every request carries as
//! `auth_key`, is the Herald app id. A library is configured with
//! `appId` = the Pusher app id, `key` = the Herald app id, `secret` = the
//! `pusher_secret` of one of the app's keys.
//!
//! - [`events`]: `POST /apps/{app_id}/events` and `/batch_events`: channel
//!   events, and events to a user on `#server-to-user-{user_id}` (what the
//!   libraries' `sendToUser` / `send_to_user` send).
//! - [`channels`]: `GET /apps/{app_id}/channels`, `/channels/{channel}` and
//!   `/channels/{channel}/users`.
//! - [`users`]: `POST /apps/{app_id}/users/{user_id}/terminate_connections`,
//!   also without the `/apps/{app_id}` prefix (pusher-http-python sends it
//!   so, signed over that shorter path; the app is then the one whose
//!   Herald id is the `auth_key`).
//!
//! Every request is signed as Pusher's are (`auth_key` = the Herald app
//! id, `auth_timestamp` within 600 s, `auth_version` 1.0, `body_md5` of a
//! body — also accepted, and checked, on a request without one, as
//! pusher-http-python sends the MD5 of the empty body with every GET —
//! `auth_signature`); [`Signed`] checks it against the Pusher secrets of the
//! app's active API keys (`Core::pusher_caller`). The key that signed is
//! the principal: its capabilities apply as on Herald's own APIs. Handlers
//! only translate; publishing, channel state and users are the services
//! REST and gRPC call.
//!
//! Errors are answered as Pusher answers them: a status and a plain-text
//! explanation. 400: bad body, parameter or channel name; 401: the
//! signature (and why); 403: Pusher mode off, the key's capabilities, or
//! the app's publish rate (Pusher's "over quota"); 404: no app has that
//! Pusher app id (or, without the prefix, that key); 413: `data` over the
//! app's `max_event_bytes` (or the request over `max_body_size`); 503: the
//! bus or the database is unavailable.

pub mod channels;
pub mod events;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use herald_proto::ErrorCode;
use herald_proto::pusher::ApiRequest;
use serde::de::DeserializeOwned;

use crate::api::rest::{BodyError, read_body};
use crate::core::Core;
use crate::error::ApiError;
use crate::services::PusherCaller;
use crate::services::pusher::PusherAppRef;

/// The Pusher HTTP API's routes.
pub fn router(core: Arc<Core>) -> Router {
    let limit = core.config.max_body_size.as_usize();
    Router::new()
        .route("/apps/{app_id}/events", post(events::trigger))
        .route("/apps/{app_id}/batch_events", post(events::trigger_batch))
        .route("/apps/{app_id}/channels", get(channels::list))
        .route("/apps/{app_id}/channels/{channel}", get(channels::channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(channels::users))
        .route("/apps/{app_id}/users/{user_id}/terminate_connections", post(users::terminate))
        .route("/users/{user_id}/terminate_connections", post(users::terminate))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(core)
}

/// A failed Pusher HTTP API request: a status and a plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for the caller.
    pub message: String,
    /// Seconds after which a retry may succeed (the publish rate).
    pub retry_after_secs: Option<u64>,
}

impl PusherError {
    /// 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into(), retry_after_secs: None }
    }

    /// 413 with `message`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self { status: StatusCode::PAYLOAD_TOO_LARGE, message: message.into(), retry_after_secs: None }
    }
}

impl From<ApiError> for PusherError {
    fn from(e: ApiError) -> Self {
        let (status, message) = match e.code {
            // Pusher answers 403 for an app over its message quota.
            ErrorCode::RateLimited => (StatusCode::FORBIDDEN, format!("over quota: {}", e.message)),
            code => (
                StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.message.into_owned(),
            ),
        };
        Self { status, message, retry_after_secs: e.retry_after_secs }
    }
}

impl IntoResponse for PusherError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], self.message).into_response();
        if let Some(secs) = self.retry_after_secs
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// A request whose Pusher signature checked out: who signed it, its
/// parameters and its body.
pub struct Signed {
    /// The app and the key that signed.
    pub caller: PusherCaller,
    /// The path parameters, percent-decoded.
    pub path: Vec<(String, String)>,
    /// The query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Bytes,
    max_json_depth: usize,
}

impl Signed {
    /// The app id, as the services take it.
    #[must_use]
    pub fn app(&self) -> &str {
        self.caller.app.id.as_str()
    }

    /// A query parameter (names compared as Pusher signs them:
    /// lower-cased).
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// A path parameter.
    #[must_use]
    pub fn path_param(&self, name: &str) -> Option<&str> {
        self.path.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    ///
    /// # Errors
    ///
    /// 400 naming what is wrong.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PusherError> {
        if self.body.is_empty() {
            return Err(PusherError::bad_request("the request body is empty; send a JSON object"));
        }
        crate::api::rest::parse_json(&self.body, self.max_json_depth).map_err(|e| PusherError::bad_request(e.message))
    }
}

/// Decodes `%XX` escapes; `None` when one is malformed or the result is not
/// UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl FromRequest<Arc<Core>> for Signed {
    type Rejection = PusherError;

    async fn from_request(req: Request, core: &Arc<Core>) -> Result<Self, PusherError> {
        let (mut parts, body) = req.into_parts();
        let path: Vec<(String, String)> = RawPathParams::from_request_parts(&mut parts, core)
            .await
            .map_err(|e| PusherError::bad_request(format!("invalid path: {}", e.body_text())))?
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let query: Vec<(String, String)> = match parts.uri.query() {
            Some(_) => {
                Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                    .map_err(|e| PusherError::bad_request(format!("invalid query: {}", e.body_text())))?
                    .0
            }
            None => Vec::new(),
        };
        let method = parts.method.clone();
        let raw_path = parts.uri.path().to_owned();
        let body = read_body(Request::from_parts(parts, body), core)
            .await
            .map_err(|e| PusherError::from(BodyError::into_api(e)))?;
        let to = match path.iter().find(|(k, _)| k == "app_id") {
            Some((_, id)) => PusherAppRef::AppId(id),
            None => query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("auth_key"))
                .map(|(_, key)| PusherAppRef::Key(key))
                .ok_or_else(|| PusherError::from(ApiError::unauthorized("missing parameter auth_key")))?,
        };
        // Server libraries sign the path before their HTTP client encodes
        // it: a user id with reserved characters arrives escaped.
        let decoded = percent_decode(&raw_path).filter(|d| *d != raw_path);
        let mut paths = vec![raw_path.as_str()];
        if let Some(d) = &decoded {
            paths.push(d);
        }
        let params: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let req = ApiRequest { method: method.as_str(), path: &raw_path, params: &params, body: &body };
        let caller = core.pusher_caller(to, &req, &paths).await?;
        Ok(Self { caller, path, query, body, max_json_depth: core.config.max_json_depth })
    }
}

/// The attributes a request asks for with `info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Info {
    /// `user_count`: distinct users of a presence channel.
    pub user_count: bool,
    /// `subscription_count`: connections subscribed.
    pub subscription_count: bool,
}

impl Info {
    /// Parses Pusher's comma-separated `info`.
    ///
    /// # Errors
    ///
    /// 400 for an attribute Herald does not know.
    pub fn parse(info: Option<&str>) -> Result<Self, PusherError> {
        let mut out = Self::default();
        for attr in info.unwrap_or("").split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match attr {
                "user_count" => out.user_count = true,
                "subscription_count" => out.subscription_count = true,
                other => {
                    return Err(PusherError::bad_request(format!(
                        "unknown info attribute {:?}; use user_count and/or subscription_count",
                        other.chars().take(64).collect::<String>()
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Whether any attribute is asked for.
    #[must_use]
    pub fn any(self) -> bool {
        self.user_count || self.subscription_count
    }

    /// The attributes of a channel: `user_count` only for a channel with
    /// presence.
    #[must_use]
    pub fn attributes(self, state: &crate::services::ChannelState) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        if self.user_count
            && let Some(members) = state.members
        {
            out.insert("user_count".into(), members.into());
        }
        if self.subscription_count {
            out.insert("subscription_count".into(), state.subscriptions.into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/users/a%20b/x").as_deref(), Some("/users/a b/x"));
        assert_eq!(percent_decode("/plain").as_deref(), Some("/plain"));
        assert_eq!(percent_decode("%e2%9c%93").as_deref(), Some("\u{2713}"));
        for bad in ["%", "%2", "%zz", "%ff"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn info_attributes() {
        assert_eq!(Info::parse(None), Ok(Info::default()));
        let both = Info::parse(Some("user_count, subscription_count")).expect("info");
        assert!(both.user_count && both.subscription_count);
        assert_eq!(Info::parse(Some("cache")).map_err(|e| e.status), Err(StatusCode::BAD_REQUEST));
        let state = crate::services::ChannelState { subscriptions: 3, members: None };
        assert_eq!(serde_json::Value::Object(both.attributes(&state)), serde_json::json!({"subscription_count": 3}));
    }

    #[test]
    fn errors_are_plain_text_with_pushers_statuses() {
        let limited = ApiError { retry_after_secs: Some(2), ..ApiError::new(ErrorCode::RateLimited, "slow down") };
        let e = PusherError::from(limited);
        assert_eq!((e.status, e.message.as_str()), (StatusCode::FORBIDDEN, "over quota: slow down"));
        let response = e.into_response();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(PusherError::from(ApiError::too_large("big")).status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(PusherError::from(ApiError::unauthorized("sig")).status, StatusCode::UNAUTHORIZED);
    }
}
