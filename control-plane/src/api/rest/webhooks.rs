//! REST for webhook endpoints: `/v1/apps/{app_id}/webhooks` (admin).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{ApiPath, Body, Caller, RawBody, Shared, TAG_ADMIN, parse_json};
use crate::error::{ApiError, ErrorBody};
use crate::services::{FilterSpec, WebhookPatch, WebhookSpec};
use crate::store::{ChannelFilter, Webhook};

/// Which channels an endpoint hears about: exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    /// Channels whose name starts with this (1-200 bytes of channel-name
    /// characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Channels of this namespace (`<namespace>:…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl From<FilterBody> for FilterSpec {
    fn from(f: FilterBody) -> Self {
        Self { prefix: f.prefix, namespace: f.namespace }
    }
}

impl From<&ChannelFilter> for FilterBody {
    fn from(f: &ChannelFilter) -> Self {
        match f {
            ChannelFilter::Prefix(p) => Self { prefix: Some(p.clone()), namespace: None },
            ChannelFilter::Namespace(ns) => Self { prefix: None, namespace: Some(ns.to_string()) },
        }
    }
}

/// `POST /v1/apps/{app_id}/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookBody {
    /// Where events are POSTed: an absolute `http` or `https` URL, at most
    /// 2,048 bytes, on a public address unless the server allows private
    /// ones (`webhook_allow_private_urls`).
    #[schema(example = "https://example.com/herald/webhooks")]
    pub url: String,
    /// The event types it wants: `channel_occupied`, `channel_vacated`,
    /// `member_added`, `member_removed`, `client_event`,
    /// `subscription_count`, `cache_miss`; at least one.
    pub events: Vec<String>,
    /// `herald` (default) or `pusher` (needs the app in Pusher mode).
    pub format: Option<String>,
    /// Which channels; every channel when absent or null.
    pub filter: Option<FilterBody>,
}

/// `PATCH /v1/apps/{app_id}/webhooks/{webhook_id}`: only the fields given
/// change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookBody {
    /// A new URL.
    pub url: Option<String>,
    /// New event types; at least one.
    pub events: Option<Vec<String>>,
    /// A new format.
    pub format: Option<String>,
    /// A new filter; null removes it (every channel).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<FilterBody>)]
    pub filter: Option<Option<FilterBody>>,
    /// `true` turns a disabled endpoint on again; `false` disables it and
    /// drops its pending deliveries (counted in `dropped`).
    pub enabled: Option<bool>,
}

/// A field that may be null: `Some(None)` when null, `None` when absent
/// (with `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /v1/apps/{app_id}/webhooks/{webhook_id}/rotate-secret`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretBody {
    /// How long requests are also signed with the previous secret, in
    /// seconds (default 86,400: 24 h; 0 drops it at once; at most 30
    /// days).
    pub overlap_seconds: Option<u64>,
}

/// A webhook endpoint, without its secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    /// The endpoint id (`wh_…`).
    pub id: String,
    /// The app.
    pub app_id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The event types it wants, without duplicates.
    pub events: Vec<String>,
    /// `herald` or `pusher`.
    pub format: String,
    /// Which channels; null for every channel.
    pub filter: Option<FilterBody>,
    /// `active`, `failing` (still tried) or `disabled`.
    pub status: String,
    /// Why it is failing or disabled.
    pub status_reason: Option<String>,
    /// Since when it fails without a success, Unix ms.
    pub failing_since_ms: Option<i64>,
    /// Events dropped for it (outbox full, or pending when disabled).
    pub dropped: i64,
    /// Creation time, Unix ms.
    pub created_at_ms: i64,
    /// Last change, Unix ms.
    pub updated_at_ms: i64,
    /// After a rotation: until when (Unix ms) requests are also signed with
    /// the previous secret.
    pub previous_secret_expires_at_ms: Option<i64>,
}

/// A new or rotated webhook endpoint, with its signing secret: shown this
/// once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret (`whsec_…`) that the Herald format's signatures
    /// are made with.
    pub secret: String,
}

/// `GET /v1/apps/{app_id}/webhooks`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookList {
    /// The app's endpoints, oldest first.
    pub webhooks: Vec<WebhookView>,
}

/// The view of an endpoint, at `now_ms` (a previous secret past its time
/// is not shown).
#[must_use]
pub fn webhook_view(hook: &Webhook, now_ms: i64) -> WebhookView {
    WebhookView {
        id: hook.id.clone(),
        app_id: hook.app_id.to_string(),
        url: hook.url.clone(),
        events: hook.events.iter().map(|k| k.as_str().to_owned()).collect(),
        format: hook.format.as_str().to_owned(),
        filter: hook.filter.as_ref().map(FilterBody::from),
        status: hook.status.as_str().to_owned(),
        status_reason: hook.status_reason.clone(),
        failing_since_ms: hook.failing_since_ms,
        dropped: hook.dropped,
        created_at_ms: hook.created_at_ms,
        updated_at_ms: hook.updated_at_ms,
        previous_secret_expires_at_ms: hook.previous_secret_until(now_ms),
    }
}

fn with_secret(hook: &Webhook) -> WebhookWithSecret {
    WebhookWithSecret { webhook: webhook_view(hook, herald_bus::now_ms()), secret: hook.secret.clone() }
}

/// Creates a webhook endpoint; its signing secret is in the answer, this
/// once.
#[utoipa::path(post, path = "/v1/apps/{app_id}/webhooks", tag = TAG_ADMIN, request_body = CreateWebhookBody,
    security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 201, body = WebhookWithSecret), (status = 400, body = ErrorBody, description = "invalid field, or the app has webhook_max_endpoints_per_app endpoints"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn create_webhook(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<CreateWebhookBody>,
) -> Result<Response, ApiError> {
    let spec =
        WebhookSpec { url: body.url, events: body.events, format: body.format, filter: body.filter.map(Into::into) };
    let hook = core.create_webhook(&who, &app_id, spec).await?;
    Ok((StatusCode::CREATED, Json(with_secret(&hook))).into_response())
}

/// Lists an app's webhook endpoints, without their secrets.
#[utoipa::path(get, path = "/v1/apps/{app_id}/webhooks", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn list_webhooks(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<Json<WebhookList>, ApiError> {
    let list = core.list_webhooks(&who, &app_id).await?;
    let now = herald_bus::now_ms();
    Ok(Json(WebhookList { webhooks: list.iter().map(|h| webhook_view(h, now)).collect() }))
}

/// One webhook endpoint, without its secret.
#[utoipa::path(get, path = "/v1/apps/{app_id}/webhooks/{webhook_id}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("webhook_id" = String, Path, description = "The endpoint id")),
    responses((status = 200, body = WebhookView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn get_webhook(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, id)): ApiPath<(String, String)>,
) -> Result<Json<WebhookView>, ApiError> {
    let hook = core.get_webhook(&who, &app_id, &id).await?;
    Ok(Json(webhook_view(&hook, herald_bus::now_ms())))
}

/// Changes a webhook endpoint: its URL, events, format or filter, or turns
/// it off (`"enabled": false`, which drops its pending deliveries) or on.
#[utoipa::path(patch, path = "/v1/apps/{app_id}/webhooks/{webhook_id}", tag = TAG_ADMIN, request_body = UpdateWebhookBody,
    security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("webhook_id" = String, Path, description = "The endpoint id")),
    responses((status = 200, body = WebhookView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn update_webhook(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, id)): ApiPath<(String, String)>,
    Body(body): Body<UpdateWebhookBody>,
) -> Result<Json<WebhookView>, ApiError> {
    let patch = WebhookPatch {
        url: body.url,
        events: body.events,
        format: body.format,
        filter: body.filter.map(|f| f.map(Into::into)),
        enabled: body.enabled,
    };
    let hook = core.update_webhook(&who, &app_id, &id, patch).await?;
    Ok(Json(webhook_view(&hook, herald_bus::now_ms())))
}

/// Deletes a webhook endpoint, its pending deliveries and its log.
#[utoipa::path(delete, path = "/v1/apps/{app_id}/webhooks/{webhook_id}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("webhook_id" = String, Path, description = "The endpoint id")),
    responses((status = 204, description = "deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn delete_webhook(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    core.delete_webhook(&who, &app_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gives a webhook endpoint a new signing secret, in the answer this once;
/// requests are also signed with the previous one for the overlap.
#[utoipa::path(post, path = "/v1/apps/{app_id}/webhooks/{webhook_id}/rotate-secret", tag = TAG_ADMIN,
    request_body(content = RotateSecretBody, description = "optional"), security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("webhook_id" = String, Path, description = "The endpoint id")),
    responses((status = 200, body = WebhookWithSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn rotate_secret(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, id)): ApiPath<(String, String)>,
    RawBody(body): RawBody,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    let depth = core.config.max_json_depth;
    let body: RotateSecretBody = if body.is_empty() { RotateSecretBody::default() } else { parse_json(&body, depth)? };
    let hook = core.rotate_webhook_secret(&who, &app_id, &id, body.overlap_seconds).await?;
    Ok(Json(with_secret(&hook)))
}

/// `POST /v1/apps/{app_id}/webhooks/{webhook_id}/test`: what the test
/// request got.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestView {
    /// The test event's id.
    pub event_id: String,
    /// The HTTP status; absent when no answer came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: i64,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    /// The event's id.
    pub event_id: String,
    /// The event type (`webhook_test` for a test send).
    #[serde(rename = "type")]
    pub kind: String,
    /// Its channel.
    pub channel: String,
    /// 1 for the event's first attempt.
    pub attempt: i64,
    /// When it started (Unix ms).
    pub at_ms: i64,
    /// The HTTP status; absent when no answer came.
    pub status: Option<u16>,
    /// How long it took.
    pub latency_ms: i64,
    /// What went wrong, if anything.
    pub error: Option<String>,
    /// `delivered`, `retrying`, `failed` or `test`.
    pub outcome: String,
}

/// `GET /v1/apps/{app_id}/webhooks/{webhook_id}/deliveries`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub deliveries: Vec<DeliveryView>,
}

/// `?limit=` of the delivery log.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Most attempts returned (default and ceiling: `webhook_log_size`).
    pub limit: Option<u64>,
}

#[utoipa::path(post, path = "/v1/apps/{app_id}/webhooks/{webhook_id}/test", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("webhook_id" = String, Path, description = "The endpoint id")),
    responses((status = 200, body = TestView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn test_webhook(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, id)): ApiPath<(String, String)>,
) -> Result<Json<TestView>, ApiError> {
    let t = core.test_webhook(&who, &app_id, &id).await?;
    Ok(Json(TestView { event_id: t.event_id, status: t.status, latency_ms: t.latency_ms, error: t.error }))
}

#[utoipa::path(get, path = "/v1/apps/{app_id}/webhooks/{webhook_id}/deliveries", tag = TAG_ADMIN,
    security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("webhook_id" = String, Path, description = "The endpoint id"),
           DeliveriesQuery),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn list_deliveries(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, id)): ApiPath<(String, String)>,
    super::ApiQuery(query): super::ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let list = core.webhook_deliveries(&who, &app_id, &id, query.limit).await?;
    let deliveries = list
        .into_iter()
        .map(|a| DeliveryView {
            event_id: a.event_id,
            kind: a.kind,
            channel: a.channel,
            attempt: a.attempt,
            at_ms: a.at_ms,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
            outcome: a.outcome,
        })
        .collect();
    Ok(Json(DeliveryList { deliveries }))
}
