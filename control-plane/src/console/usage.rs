//! An app's usage page: the rows of `GET /v1/apps/{app}/stats` (through
//! [`Core::app_stats`](crate::core::Core::app_stats)) as a table, per
//! minute, hour or UTC day over a range given in UTC, newest first, a page
//! of [`PAGE_ROWS`] at a time; and what counts against the app's quotas
//! now ([`Core::quota_use`](crate::core::Core::quota_use)) beside the
//! quotas, when the app has any.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use super::form::FieldErrors;
use super::html::{self, Layout, e, url};
use super::session::Session;
use super::{Console, PageResult, Shared};
use crate::auth::Principal;
use crate::services::{QuotaUse, StatsQuery};
use crate::store::{App, UsageRow, UsageUnit};
use crate::usage::{format_utc_minute, parse_utc_minute};

/// Rows in a page of the table.
pub const PAGE_ROWS: u32 = 100;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route("/apps/{app}/usage", get(page))
}

/// The range shown unless `from` says otherwise.
const fn default_span_ms(unit: UsageUnit) -> i64 {
    match unit {
        UsageUnit::Minute => 3_600_000,
        UsageUnit::Hour => 48 * 3_600_000,
        UsageUnit::Day => 31 * 86_400_000,
    }
}

fn quota_line(label: &str, used: i64, quota: Option<u64>) -> String {
    match quota {
        Some(q) if q > 0 => {
            #[allow(clippy::cast_precision_loss)]
            let pct = (used.max(0) as f64 / q as f64 * 100.0).round();
            format!(
                r#"<tr><th scope="row">{label}</th><td>{used} of {q} ({pct}%)</td><td><meter min="0" max="{q}" value="{v}" aria-label="{label}: {pct}% of the quota">{pct}%</meter></td></tr>"#,
                v = used.max(0)
            )
        }
        _ => format!(r#"<tr><th scope="row">{label}</th><td>{used}</td><td>no quota</td></tr>"#),
    }
}

fn quotas(app: &App, used: QuotaUse, over: Option<&str>) -> String {
    let l = &app.limits;
    let any =
        l.quota_messages_per_day.is_some() || l.quota_messages_per_month.is_some() || l.quota_connections.is_some();
    let note = if any {
        String::new()
    } else {
        format!(
            r#"<p>This app has no quotas: <a href="/console/apps/{}">set them in its settings</a>.</p>"#,
            url(app.id.as_str())
        )
    };
    let over = over.map(|reason| html::notice("error", &format!("Over a quota now: {reason}."))).unwrap_or_default();
    format!(
        r#"<h2>Quotas</h2>{over}{note}<div class="scroll"><table class="quotas"><caption>Use now (UTC day and month)</caption><thead><tr><th scope="col">What</th><th scope="col">Used</th><th scope="col">Of the quota</th></tr></thead><tbody>{}{}{}</tbody></table></div>"#,
        quota_line("Messages today", used.messages_today, l.quota_messages_per_day),
        quota_line("Messages this month", used.messages_this_month, l.quota_messages_per_month),
        quota_line("Connections now", used.connections, l.quota_connections.map(u64::from)),
    )
}

fn row(r: &UsageRow) -> String {
    let refusals = if r.refusals.is_empty() {
        "0".to_owned()
    } else {
        r.refusals.iter().map(|(k, n)| format!("{}: {n}", e(k))).collect::<Vec<_>>().join(", ")
    };
    format!(
        "<tr><td>{}</td><td>{}</td><td>{} / {} / {} / {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{refusals}</td></tr>",
        format_utc_minute(r.start_ms),
        r.published_rest + r.published_grpc + r.published_pusher_http + r.published_client,
        r.published_rest,
        r.published_grpc,
        r.published_pusher_http,
        r.published_client,
        r.delivered,
        r.bytes_in,
        r.bytes_out,
        r.connections_opened,
        r.peak_connections,
        r.peak_channels,
        r.webhooks_ok,
        r.webhooks_failed,
    )
}

async fn page(
    state: Shared,
    session: Session,
    Path(app_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let core = &state.core;
    let app = core.get_app(&Principal::Admin, &app_id).await?;
    let get = |k: &str| q.get(k).map_or("", |v| v.trim());
    let mut errors = FieldErrors::default();
    let unit = match get("unit") {
        "" => UsageUnit::Minute,
        u => UsageUnit::parse(u).unwrap_or_else(|| {
            errors.add("unit", "Choose minute, hour or day.");
            UsageUnit::Minute
        }),
    };
    let now = herald_bus::now_ms();
    let mut time = |name: &'static str, default: i64| match get(name) {
        "" => default,
        text => parse_utc_minute(text).unwrap_or_else(|| {
            errors.add(name, "Write a UTC date and time as 2026-12-07 05:30 (or just the date).");
            default
        }),
    };
    let end = time("to", now);
    let start = time("from", end.saturating_sub(default_span_ms(unit))).max(0);
    if errors.is_empty() && start > end {
        errors.add("from", "The start is after the end.");
    }
    let mut table = String::new();
    if errors.is_empty() {
        let query = StatsQuery {
            unit: Some(unit.as_str().into()),
            start: Some(start),
            end: Some(end),
            limit: Some(PAGE_ROWS),
            direction: None,
        };
        let stats = core.app_stats(&Principal::Admin, &app_id, query).await?;
        let rows: String = stats.entries.iter().map(row).collect();
        table = if rows.is_empty() {
            "<p>No usage in this range (intervals without usage have no row).</p>".to_owned()
        } else {
            format!(
                r#"<div class="scroll"><table class="usage"><caption>Usage per {unit} (UTC), newest first</caption><thead><tr><th scope="col">Interval start</th><th scope="col">Published</th><th scope="col">REST / gRPC / Pusher HTTP / clients</th><th scope="col">Delivered</th><th scope="col">Bytes in</th><th scope="col">Bytes out</th><th scope="col">Connections opened</th><th scope="col">Peak connections</th><th scope="col">Peak channels</th><th scope="col">Webhooks ok / failed</th><th scope="col">Refusals</th></tr></thead><tbody>{rows}</tbody></table></div>"#,
                unit = unit.as_str()
            )
        };
        if let Some((_, next_end)) = stats.next {
            let _ = write!(
                table,
                r#"<p><a href="/console/apps/{}/usage?unit={}&amp;from={}&amp;to={}">Older rows</a></p>"#,
                url(&app_id),
                unit.as_str(),
                url(&format_utc_minute(start)),
                url(&format_utc_minute(next_end)),
            );
        }
    }
    let mut units = String::new();
    for u in UsageUnit::ALL {
        let selected = if u == unit { " selected" } else { "" };
        let _ = write!(units, r#"<option value="{0}"{selected}>{0}</option>"#, u.as_str());
    }
    let form = format!(
        r#"<form method="get" action="/console/apps/{uapp}/usage" class="card"><div class="field"><label for="f-unit">Unit</label><select id="f-unit" name="unit">{units}</select>{unit_err}</div>{from}{to}<button type="submit">Show</button></form>"#,
        uapp = url(&app_id),
        unit_err = errors
            .of("unit")
            .map(|m| format!(r#"<span class="field-error"><strong>Error:</strong> {}</span>"#, e(m)))
            .unwrap_or_default(),
        from = html::field(
            "from",
            "From (UTC, optional)",
            "text",
            q.get("from").map_or("", String::as_str),
            errors.of("from"),
            "e.g. 2026-12-07 05:30; default: an hour, two days or a month before the end, by unit."
        ),
        to = html::field(
            "to",
            "To (UTC, optional)",
            "text",
            q.get("to").map_or("", String::as_str),
            errors.of("to"),
            "Default: now."
        ),
    );
    let used = core.quota_use(&Principal::Admin, &app_id).await?;
    let verdict = core.usage.verdict(&app.id).map(|v| v.reason);
    let body = format!(
        r#"{top}{quotas}<h2>Usage</h2><p class="hint">Counted per UTC minute, hour and day; counts arrive within the usage report interval. The same rows as <code>GET /v1/apps/{eapp}/stats</code>.</p>{form}{table}"#,
        top = if errors.is_empty() { String::new() } else { html::notice("error", "Correct the field marked below.") },
        quotas = quotas(&app, used, verdict.as_deref()),
        eapp = e(&app_id),
    );
    let layout = Layout { title: "Usage", csrf: Some(&session.csrf), app: Some((&app_id, "/usage")) };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    Ok((status, axum::response::Html(html::page(&layout, &body))).into_response())
}
