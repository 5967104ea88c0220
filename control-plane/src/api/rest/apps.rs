//! REST for apps: `/v1/apps` and `/v1/apps/{app_id}` (admin).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiPath, Body, Caller, Shared, TAG_ADMIN, secs};
use crate::core::Core;
use crate::error::{ApiError, ErrorBody};
use crate::services::pusher::parse_pusher_app_id;
use crate::services::{AppSpec, EffectiveLimits, PusherPatch};
use crate::store::{App, LimitOverrides, PusherSettings};

// ----- bodies -------------------------------------------------------------------

/// Per-app limits in a request; absent or 0 means the server default.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsBody {
    /// Most concurrent connections across edges.
    pub max_connections: Option<u32>,
    /// Largest message payload, in bytes.
    pub max_message_bytes: Option<u32>,
    /// API publishes per second (per control-plane replica).
    pub publish_rate_per_sec: Option<u32>,
    /// Quota: messages published per UTC day (0 removes it).
    pub quota_messages_per_day: Option<u64>,
    /// Quota: messages published per UTC calendar month (0 removes it).
    pub quota_messages_per_month: Option<u64>,
    /// Quota: concurrent connections across edges (0 removes it).
    pub quota_connections: Option<u32>,
}

impl From<LimitsBody> for LimitOverrides {
    fn from(l: LimitsBody) -> Self {
        Self {
            max_connections: l.max_connections,
            max_message_bytes: l.max_message_bytes,
            publish_rate_per_sec: l.publish_rate_per_sec,
            quota_messages_per_day: l.quota_messages_per_day,
            quota_messages_per_month: l.quota_messages_per_month,
            quota_connections: l.quota_connections,
        }
    }
}

/// Pusher settings in a request: on creation, absent fields take their
/// defaults; on a change, they stay.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PusherBody {
    /// Pusher mode: edges accept Pusher clients at `/app/{app_id}` and the
    /// Pusher HTTP API serves the app (default false).
    pub enabled: Option<bool>,
    /// Clients may send `client-` events on private and presence channels
    /// (default false).
    pub client_events: Option<bool>,
    /// Most users in one presence channel; 0: the edge's default.
    pub presence_max_members: Option<u32>,
    /// Largest event `data`, in bytes: the Pusher HTTP API answers 413
    /// above it (default and 0: 10,240).
    pub max_event_bytes: Option<u32>,
    /// Subscribers receive `pusher_internal:subscription_count` events
    /// (default false).
    pub subscription_count: Option<bool>,
    /// Client events one connection may send per second; 0: the edge's
    /// default.
    pub client_event_rate: Option<u32>,
    /// Most events in one `batch_events` request (default and 0: 10).
    pub batch_max: Option<u32>,
    /// The Pusher app id, 1-18 decimal digits as a string (in
    /// `/apps/{app_id}/…` of the Pusher HTTP API), unique across apps;
    /// drawn at random (7 digits) when Pusher mode is on without one.
    #[schema(example = "1234567")]
    pub app_id: Option<String>,
}

impl TryFrom<PusherBody> for PusherPatch {
    type Error = ApiError;

    fn try_from(b: PusherBody) -> Result<Self, ApiError> {
        Ok(Self {
            enabled: b.enabled,
            client_events: b.client_events,
            presence_max_members: b.presence_max_members,
            max_event_bytes: b.max_event_bytes,
            subscription_count: b.subscription_count,
            client_event_rate: b.client_event_rate,
            batch_max: b.batch_max,
            app_id: b.app_id.as_deref().map(|id| parse_pusher_app_id("pusher.app_id", id)).transpose()?,
        })
    }
}

/// An app's Pusher settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PusherView {
    /// Pusher mode is on.
    pub enabled: bool,
    /// Clients may send `client-` events.
    pub client_events: bool,
    /// Most users in one presence channel; 0: the edge's default.
    pub presence_max_members: u32,
    /// Largest event `data`, in bytes.
    pub max_event_bytes: u32,
    /// Subscribers receive `pusher_internal:subscription_count` events.
    pub subscription_count: bool,
    /// Client events per connection and second; 0: the edge's default.
    pub client_event_rate: u32,
    /// Most events in one `batch_events` request.
    pub batch_max: u32,
    /// The Pusher app id (the `appId` of Pusher's server libraries; their
    /// `key` is the app id); null until Pusher mode is first turned on.
    #[schema(example = "1234567")]
    pub app_id: Option<String>,
}

impl From<PusherSettings> for PusherView {
    fn from(s: PusherSettings) -> Self {
        Self {
            enabled: s.enabled,
            client_events: s.client_events,
            presence_max_members: s.presence_max_members,
            max_event_bytes: s.max_event_bytes,
            subscription_count: s.subscription_count,
            client_event_rate: s.client_event_rate,
            batch_max: s.batch_max,
            app_id: s.app_id.map(|id| id.to_string()),
        }
    }
}

/// `POST /v1/apps`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppBody {
    /// The app id (1-64 of `A-Z a-z 0-9 _ -`); generated when absent.
    pub id: Option<String>,
    /// Display name.
    pub name: String,
    /// Limits; absent ones are the server defaults.
    #[serde(default)]
    pub limits: LimitsBody,
    /// Exact `Origin` values allowed to connect; empty allows every origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Pusher settings; absent fields take their defaults (Pusher mode
    /// off).
    pub pusher: Option<PusherBody>,
}

/// `PATCH /v1/apps/{app_id}`: only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAppBody {
    /// Display name.
    pub name: Option<String>,
    /// Limits to change; 0 resets one to the server default.
    pub limits: Option<LimitsBody>,
    /// Replaces the Origin allowlist.
    pub allowed_origins: Option<Vec<String>>,
    /// Pusher settings to change; absent fields stay.
    pub pusher: Option<PusherBody>,
    /// `true` disables the app: its API keys are refused (403
    /// `app_disabled`), its connections closed, its tokens minted before
    /// refused; `false` enables it again.
    pub disabled: Option<bool>,
    /// Why it is disabled, shown to its callers (at most 200 bytes).
    pub disabled_reason: Option<String>,
}

/// Why and since when an app is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DisabledView {
    /// Since when, Unix seconds.
    pub since: i64,
    /// The administrator's reason (may be empty).
    pub reason: String,
}

/// An app.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppView {
    /// The app id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The limits in force (defaults filled in).
    pub limits: EffectiveLimits,
    /// Exact `Origin` values allowed to connect; empty allows every origin.
    pub allowed_origins: Vec<String>,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Pusher mode and its settings.
    pub pusher: PusherView,
    /// Set while the app is disabled; absent when enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<DisabledView>,
}

/// `GET /v1/apps`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AppList {
    /// Every app, by id.
    pub apps: Vec<AppView>,
}

fn app_view(core: &Core, app: &App) -> AppView {
    AppView {
        id: app.id.to_string(),
        name: app.name.clone(),
        limits: core.effective_limits(app),
        allowed_origins: app.allowed_origins.clone(),
        created_at: secs(app.created_at_ms),
        pusher: app.pusher.into(),
        disabled: app.disabled.as_ref().map(|d| DisabledView { since: secs(d.at_ms), reason: d.reason.clone() }),
    }
}

/// Creates an app.
#[utoipa::path(post, path = "/v1/apps", tag = TAG_ADMIN, request_body = CreateAppBody, security(("admin" = [])),
    responses((status = 201, body = AppView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_app(
    State(core): Shared,
    Caller(who): Caller,
    Body(body): Body<CreateAppBody>,
) -> Result<Response, ApiError> {
    let spec = AppSpec {
        name: Some(body.name),
        limits: body.limits.into(),
        allowed_origins: Some(body.allowed_origins),
        pusher: body.pusher.map(PusherPatch::try_from).transpose()?,
        disabled: None,
        disabled_reason: None,
    };
    let app = core.create_app(&who, body.id.as_deref(), spec).await?;
    Ok((StatusCode::CREATED, Json(app_view(&core, &app))).into_response())
}

/// Lists every app.
#[utoipa::path(get, path = "/v1/apps", tag = TAG_ADMIN, security(("admin" = [])),
    responses((status = 200, body = AppList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_apps(State(core): Shared, Caller(who): Caller) -> Result<Json<AppList>, ApiError> {
    let apps = core.list_apps(&who).await?;
    Ok(Json(AppList { apps: apps.iter().map(|a| app_view(&core, a)).collect() }))
}

/// One app.
#[utoipa::path(get, path = "/v1/apps/{app_id}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = AppView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn get_app(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<Json<AppView>, ApiError> {
    let app = core.get_app(&who, &app_id).await?;
    Ok(Json(app_view(&core, &app)))
}

/// Changes an app's name, limits, Origin allowlist or Pusher settings, or
/// disables or enables it.
#[utoipa::path(patch, path = "/v1/apps/{app_id}", tag = TAG_ADMIN, request_body = UpdateAppBody, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = AppView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn update_app(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<UpdateAppBody>,
) -> Result<Json<AppView>, ApiError> {
    let spec = AppSpec {
        name: body.name,
        limits: body.limits.map(Into::into).unwrap_or_default(),
        allowed_origins: body.allowed_origins,
        pusher: body.pusher.map(PusherPatch::try_from).transpose()?,
        disabled: body.disabled,
        disabled_reason: body.disabled_reason,
    };
    let app = core.update_app(&who, &app_id, spec).await?;
    Ok(Json(app_view(&core, &app)))
}

/// Deletes an app and its keys; edges close its connections.
#[utoipa::path(delete, path = "/v1/apps/{app_id}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn delete_app(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    core.delete_app(&who, &app_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
