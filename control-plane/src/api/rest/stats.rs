//! `GET /v1/apps/{app_id}/stats`: an app's usage per minute, hour or day.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiPath, ApiQuery, Caller, Shared, TAG_APP};
use crate::error::{ApiError, ErrorBody};
use crate::services::{StatsPage, StatsQuery};
use crate::store::UsageRow;

/// `GET /v1/apps/{app_id}/stats`.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// `minute` (default), `hour` or `day`.
    pub unit: Option<String>,
    /// Intervals starting at or after this time, Unix ms (default 0).
    pub start: Option<i64>,
    /// Intervals starting at or before this time, Unix ms (default now).
    pub end: Option<i64>,
    /// Most intervals in the page (default 100, at most `usage_max_limit`).
    pub limit: Option<u32>,
    /// `backwards` (default: newest first) or `forwards`.
    pub direction: Option<String>,
}

/// One interval of an app's usage. Intervals without any usage are left
/// out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsEntry {
    /// The interval's start, Unix ms (UTC minute, hour or day).
    pub interval_start: i64,
    /// `minute`, `hour` or `day`.
    pub unit: String,
    /// Messages published, every source (one per channel a message went
    /// to).
    pub published: i64,
    /// Messages published through the REST API.
    pub published_rest: i64,
    /// Through the gRPC API.
    pub published_grpc: i64,
    /// Through Pusher's HTTP API.
    pub published_pusher_http: i64,
    /// By clients: Herald client publishes and Pusher client events.
    pub published_client: i64,
    /// Messages delivered to subscribers (one per subscriber).
    pub delivered: i64,
    /// Payload bytes published.
    pub bytes_in: i64,
    /// Frame bytes delivered to subscribers.
    pub bytes_out: i64,
    /// Connections opened.
    pub connections_opened: i64,
    /// Most concurrent connections across edges.
    pub peak_connections: i64,
    /// Most channels with a subscriber (summed over edges).
    pub peak_channels: i64,
    /// Webhook deliveries that succeeded.
    pub webhooks_ok: i64,
    /// Webhook deliveries given up.
    pub webhooks_failed: i64,
    /// Refusals by reason (a close or error code's name).
    pub refusals: BTreeMap<String, i64>,
}

/// The `start` and `end` of the next page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsNext {
    /// Pass as `start`.
    pub start: i64,
    /// Pass as `end`.
    pub end: i64,
}

/// A page of an app's usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    /// Intervals with usage, newest first (`direction=forwards`: oldest
    /// first).
    pub entries: Vec<StatsEntry>,
    /// Where the next page starts (with the same `unit`, `limit` and
    /// `direction`); absent when this page is the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<StatsNext>,
}

/// An interval of usage as the API shows it.
#[must_use]
pub fn entry(unit: &str, r: UsageRow) -> StatsEntry {
    StatsEntry {
        interval_start: r.start_ms,
        unit: unit.to_owned(),
        published: r.published_rest + r.published_grpc + r.published_pusher_http + r.published_client,
        published_rest: r.published_rest,
        published_grpc: r.published_grpc,
        published_pusher_http: r.published_pusher_http,
        published_client: r.published_client,
        delivered: r.delivered,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        connections_opened: r.connections_opened,
        peak_connections: r.peak_connections,
        peak_channels: r.peak_channels,
        webhooks_ok: r.webhooks_ok,
        webhooks_failed: r.webhooks_failed,
        refusals: r.refusals.into_iter().collect(),
    }
}

fn view(page: StatsPage) -> StatsView {
    let unit = page.unit.as_str();
    StatsView {
        entries: page.entries.into_iter().map(|r| entry(unit, r)).collect(),
        next: page.next.map(|(start, end)| StatsNext { start, end }),
    }
}

/// The app's usage per minute, hour or day (the app's API key, any
/// capability, or the admin token).
#[utoipa::path(get, path = "/v1/apps/{app_id}/stats", tag = TAG_APP, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"), StatsParams),
    responses((status = 200, body = StatsView), (status = 400, body = ErrorBody, description = "a bad parameter, named"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn stats(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatsParams>,
) -> Result<Json<StatsView>, ApiError> {
    let q = StatsQuery { unit: q.unit, start: q.start, end: q.end, limit: q.limit, direction: q.direction };
    Ok(Json(view(core.app_stats(&who, &app_id, q).await?)))
}
