//! REST for channel namespaces: `/v1/apps/{app_id}/namespaces` (admin to
//! change, the app's keys too to read).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_proto::bus;
use herald_proto::units::HumanDuration;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiPath, Body, Caller, Shared, TAG_ADMIN, TAG_APP, secs};
use crate::error::{ApiError, ErrorBody};
use crate::store::Namespace;

/// `PUT /v1/apps/{app_id}/namespaces/{name}`: the whole namespace; absent
/// fields take their defaults.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceBody {
    /// Edges report who is subscribed; presence is served (default false).
    #[serde(default)]
    pub presence: bool,
    /// Subscribers get join and leave events; needs `presence` (default
    /// false).
    #[serde(default)]
    pub join_leave: bool,
    /// Clients may publish when their token allows it (default true). API
    /// keys publish regardless.
    pub client_publish: Option<bool>,
    /// Messages kept per channel (default 0: no history).
    #[serde(default)]
    pub history_size: u32,
    /// How long messages are kept, with a unit: `"30s"`, `"15m"`, `"24h"`
    /// (default none: no history). Set with `history_size`.
    #[schema(value_type = Option<String>)]
    pub history_ttl: Option<HumanDuration>,
}

/// A channel namespace.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceView {
    /// Its name: channels `<name>:…` take its options.
    pub name: String,
    /// Presence is reported and served.
    pub presence: bool,
    /// Subscribers get join and leave events.
    pub join_leave: bool,
    /// Clients may publish.
    pub client_publish: bool,
    /// Messages kept per channel; 0: no history.
    pub history_size: u32,
    /// How long messages are kept (`"0s"`: no history).
    pub history_ttl: String,
    /// The same, in milliseconds.
    pub history_ttl_ms: u64,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// `GET /v1/apps/{app_id}/namespaces`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NamespaceList {
    /// The app's namespaces, by name.
    pub namespaces: Vec<NamespaceView>,
}

fn namespace_view(ns: &Namespace) -> NamespaceView {
    let o = &ns.options;
    NamespaceView {
        name: ns.name.to_string(),
        presence: o.presence,
        join_leave: o.join_leave,
        client_publish: o.client_publish,
        history_size: o.history_size,
        history_ttl: HumanDuration::millis(o.history_ttl_ms).to_string(),
        history_ttl_ms: o.history_ttl_ms,
        created_at: secs(ns.created_at_ms),
        updated_at: secs(ns.updated_at_ms),
    }
}

/// Creates or replaces a channel namespace: channels `<name>:…` take its
/// options. `201` when created, `200` when replaced.
#[utoipa::path(put, path = "/v1/apps/{app_id}/namespaces/{name}", tag = TAG_ADMIN, request_body = NamespaceBody,
    security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("name" = String, Path, description = "The namespace")),
    responses((status = 200, body = NamespaceView, description = "replaced"), (status = 201, body = NamespaceView, description = "created"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the database or the bus (history stream) is unavailable; nothing was changed")))]
pub(super) async fn put_namespace(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, name)): ApiPath<(String, String)>,
    Body(body): Body<NamespaceBody>,
) -> Result<Response, ApiError> {
    let history_ttl_ms = body.history_ttl.map_or(0, |d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX));
    let options = bus::NamespaceOptions {
        presence: body.presence,
        join_leave: body.join_leave,
        client_publish: body.client_publish.unwrap_or(true),
        history_size: body.history_size,
        history_ttl_ms,
    };
    let (ns, created) = core.put_namespace(&who, &app_id, &name, options).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(namespace_view(&ns))).into_response())
}

/// Lists an app's namespaces.
#[utoipa::path(get, path = "/v1/apps/{app_id}/namespaces", tag = TAG_APP, security(("admin" = []), ("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 200, body = NamespaceList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn list_namespaces(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
) -> Result<Json<NamespaceList>, ApiError> {
    let list = core.list_namespaces(&who, &app_id).await?;
    Ok(Json(NamespaceList { namespaces: list.iter().map(namespace_view).collect() }))
}

/// One namespace.
#[utoipa::path(get, path = "/v1/apps/{app_id}/namespaces/{name}", tag = TAG_APP, security(("admin" = []), ("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("name" = String, Path, description = "The namespace")),
    responses((status = 200, body = NamespaceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_namespace(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, name)): ApiPath<(String, String)>,
) -> Result<Json<NamespaceView>, ApiError> {
    Ok(Json(namespace_view(&core.get_namespace(&who, &app_id, &name).await?)))
}

/// Deletes a namespace: its channels fall back to the defaults, and its
/// history is dropped.
#[utoipa::path(delete, path = "/v1/apps/{app_id}/namespaces/{name}", tag = TAG_ADMIN, security(("admin" = [])),
    params(("app_id" = String, Path, description = "The app id"), ("name" = String, Path, description = "The namespace")),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the database or the bus is unavailable; nothing was deleted")))]
pub(super) async fn delete_namespace(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, name)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    core.delete_namespace(&who, &app_id, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
