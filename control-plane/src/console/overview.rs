//! An app's overview: small live charts of its last [`WINDOW_MINUTES`]
//! minutes — connections, messages in and out per second, webhook
//! deliveries, refusals by reason — with the same figures as text beside
//! them, so the page reads without colour and without JavaScript.
//!
//! The figures are the app's usage (the per-minute rows of
//! `GET /v1/apps/{app}/stats`, through [`Core::app_stats`]) and its
//! connections now (the edges' latest figures, [`Core::quota_use`]).
//! `console.js` polls `overview.json` every few seconds, draws the charts
//! as SVG and replaces the text figures; counts reach the rows within
//! `usage_report_interval`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;

use super::html::{self, Layout, e, url};
use super::session::Session;
use super::{Console, PageResult, Shared, ok_page};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::services::StatsQuery;
use crate::store::UsageUnit;

/// Minutes the charts cover (complete ones; the current one is added,
/// marked partial).
pub const WINDOW_MINUTES: i64 = 30;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route("/apps/{app}/overview", get(page)).route("/apps/{app}/overview.json", get(json))
}

/// One minute of the charts.
#[derive(Debug, Serialize)]
struct Minute {
    /// Its start, Unix ms.
    start: i64,
    /// The current minute, still counting.
    partial: bool,
    peak_connections: i64,
    published: i64,
    delivered: i64,
    /// Messages in and out per second over the minute (over the seconds
    /// gone, for the current one).
    in_per_s: f64,
    out_per_s: f64,
    webhooks_ok: i64,
    webhooks_failed: i64,
    refusals: BTreeMap<String, i64>,
}

/// What the page shows: the minutes, and the text figures by name.
#[derive(Debug, Serialize)]
struct Overview {
    minutes: Vec<Minute>,
    /// Text figures (`data-figure` names), already worded.
    figures: BTreeMap<&'static str, String>,
    /// Refusals in the window by reason, most first.
    refusals: Vec<(String, i64)>,
}

fn rate(n: i64, secs: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let r = n as f64 / secs.max(1) as f64;
    (r * 100.0).round() / 100.0
}

async fn overview(core: &Core, app: &str) -> Result<Overview, ApiError> {
    let now = herald_bus::now_ms();
    let current = UsageUnit::Minute.start(now);
    let first = current - WINDOW_MINUTES * 60_000;
    let q = StatsQuery {
        unit: Some("minute".into()),
        start: Some(first),
        end: Some(now),
        limit: Some(u32::try_from(WINDOW_MINUTES + 1).unwrap_or(u32::MAX)),
        direction: Some("forwards".into()),
    };
    let rows = core.app_stats(&Principal::Admin, app, q).await?.entries;
    let connections_now = core.quota_use(&Principal::Admin, app).await?.connections;
    let mut by_start: BTreeMap<i64, _> = rows.into_iter().map(|r| (r.start_ms, r)).collect();
    let mut minutes = Vec::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for i in 0..=WINDOW_MINUTES {
        let start = first + i * 60_000;
        let partial = start == current;
        let secs = if partial { ((now - start) / 1000).max(1) } else { 60 };
        let mut m = Minute {
            start,
            partial,
            peak_connections: 0,
            published: 0,
            delivered: 0,
            in_per_s: 0.0,
            out_per_s: 0.0,
            webhooks_ok: 0,
            webhooks_failed: 0,
            refusals: BTreeMap::new(),
        };
        if let Some(r) = by_start.remove(&start) {
            m.peak_connections = r.peak_connections;
            m.published = r.published_rest + r.published_grpc + r.published_pusher_http + r.published_client;
            m.delivered = r.delivered;
            m.in_per_s = rate(m.published, secs);
            m.out_per_s = rate(m.delivered, secs);
            m.webhooks_ok = r.webhooks_ok;
            m.webhooks_failed = r.webhooks_failed;
            for (reason, n) in r.refusals {
                *totals.entry(reason.clone()).or_default() += n;
                m.refusals.insert(reason, n);
            }
        }
        minutes.push(m);
    }
    let sum = |f: fn(&Minute) -> i64| minutes.iter().map(f).sum::<i64>();
    let last = minutes.iter().rev().find(|m| !m.partial);
    let mut figures = BTreeMap::new();
    figures.insert("connections_now", connections_now.to_string());
    figures.insert("peak_connections", minutes.iter().map(|m| m.peak_connections).max().unwrap_or(0).to_string());
    figures.insert("in_last_minute", format!("{}/s", last.map_or(0.0, |m| m.in_per_s)));
    figures.insert("out_last_minute", format!("{}/s", last.map_or(0.0, |m| m.out_per_s)));
    figures.insert("published", sum(|m| m.published).to_string());
    figures.insert("delivered", sum(|m| m.delivered).to_string());
    figures.insert("webhooks_ok", sum(|m| m.webhooks_ok).to_string());
    figures.insert("webhooks_failed", sum(|m| m.webhooks_failed).to_string());
    figures.insert("refusals", totals.values().sum::<i64>().to_string());
    figures.insert("updated", html::time(now));
    let mut refusals: Vec<(String, i64)> = totals.into_iter().collect();
    refusals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Overview { minutes, figures, refusals })
}

async fn json(state: Shared, _session: Session, Path(app): Path<String>) -> PageResult {
    Ok(axum::Json(overview(&state.core, &app).await?).into_response())
}

/// A text figure the script keeps up to date.
fn figure(o: &Overview, name: &'static str, label: &str) -> String {
    let value = o.figures.get(name).map_or("", String::as_str);
    format!(r#"<div><dt>{}</dt><dd data-figure="{name}">{}</dd></div>"#, e(label), e(value))
}

/// A chart (drawn by the script into the `svg`) with its figures.
fn chart(name: &str, title: &str, description: &str, figures: &str, extra: &str) -> String {
    format!(
        r#"<section class="chart" aria-labelledby="chart-{name}"><h2 id="chart-{name}">{title}</h2><div class="chart-row"><svg data-chart="{name}" viewBox="0 0 320 140" role="img" aria-label="{description}"></svg><dl class="figures">{figures}</dl></div><p class="legend" data-legend="{name}"></p>{extra}</section>"#
    )
}

async fn page(state: Shared, session: Session, Path(app): Path<String>) -> PageResult {
    state.core.get_app(&Principal::Admin, &app).await?;
    let o = overview(&state.core, &app).await?;
    let mut rows = String::new();
    for (reason, n) in &o.refusals {
        let _ = write!(rows, "<tr><td><code>{}</code></td><td>{n}</td></tr>", e(reason));
    }
    let refusal_table = format!(
        r#"<div class="scroll"><table class="refusals"><caption>Refusals by reason, last {WINDOW_MINUTES} minutes</caption><thead><tr><th scope="col">Reason</th><th scope="col">Refusals</th></tr></thead><tbody data-refusals>{rows}</tbody></table></div><p class="empty-note" data-refusals-empty>{}</p>"#,
        if o.refusals.is_empty() { "No refusals." } else { "" }
    );
    let per = format!("per minute, last {WINDOW_MINUTES} minutes");
    let body = format!(
        r#"<p class="hint">The app's last {WINDOW_MINUTES} minutes, per minute (the last point is the current minute, still counting). Figures arrive within the usage report interval; the page refreshes them every few seconds. Updated <span data-figure="updated">{updated}</span>. Longer ranges: <a href="/console/apps/{uapp}/usage">Usage</a>.</p>
<div class="charts" data-overview="/console/apps/{uapp}/overview.json">{c1}{c2}{c3}{c4}</div>"#,
        updated = e(o.figures.get("updated").map_or("", String::as_str)),
        uapp = url(&app),
        c1 = chart(
            "connections",
            "Connections",
            &format!("Peak connections {per}"),
            &(figure(&o, "connections_now", "Now (edges' latest figures)")
                + &figure(&o, "peak_connections", "Peak, last 30 minutes")),
            "",
        ),
        c2 = chart(
            "messages",
            "Messages per second",
            &format!("Messages in (published, solid line) and out (delivered, dashed line) per second, {per}"),
            &(figure(&o, "in_last_minute", "In, last whole minute")
                + &figure(&o, "out_last_minute", "Out, last whole minute")
                + &figure(&o, "published", "Published, last 30 minutes")
                + &figure(&o, "delivered", "Delivered, last 30 minutes")),
            "",
        ),
        c3 = chart(
            "webhooks",
            "Webhook deliveries",
            &format!("Webhook deliveries succeeded (solid line) and failed (dashed line) {per}"),
            &(figure(&o, "webhooks_ok", "Succeeded, last 30 minutes")
                + &figure(&o, "webhooks_failed", "Failed, last 30 minutes")),
            "",
        ),
        c4 = chart(
            "refusals",
            "Refusals",
            &format!("Refusals {per}, stacked by reason (see the table)"),
            &figure(&o, "refusals", "Last 30 minutes"),
            &refusal_table,
        ),
    );
    let layout = Layout { title: "Overview", csrf: Some(&session.csrf), app: Some((&app, "/overview")) };
    Ok(ok_page(html::page(&layout, &body)))
}
