//! The debug console: an app's debug events, live, on the page that asks
//! for them (`/console/apps/{app}/debug`), from the same tap as
//! `GET /v1/apps/{app}/debug/events` (see [`crate::debug_tap`]).
//!
//! The page is a filter form (channel prefix, event types: a plain GET
//! form, validated here as the API validates them) and an empty table;
//! `console.js` opens the session's stream (`…/debug/events`, Server-Sent
//! Events) and writes each event into it with `textContent`. The stream is
//! authenticated by the console session (never an API key or the admin
//! token in the page), ends when the replica shuts down (like the API's),
//! and ends within [`SESSION_CHECK`] once the session is signed out or
//! expires.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::StreamExt as _;

use super::html::{self, Layout, e, url};
use super::session::Session;
use super::{Console, Failure, PageResult, Shared};
use crate::auth::Principal;
use crate::core::Core;
use crate::debug_tap::DebugFilter;
use crate::debug_tap::event::{MAX_CHANNEL_PREFIX, TYPES};

/// How often an idle stream sends a keep-alive comment (as the API's).
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How often an open stream checks that its session still exists.
pub const SESSION_CHECK: Duration = Duration::from_secs(5);

/// Events the page keeps on screen, and events it holds while paused
/// (past it, events are counted as skipped): `data-max` of the table.
pub const PAGE_MAX_EVENTS: usize = 500;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route("/apps/{app}/debug", get(page)).route("/apps/{app}/debug/events", get(events))
}

/// The filter's fields as the query gives them: `channel`, and `types`
/// as repeated checkboxes or comma-separated.
struct FilterQuery {
    channel: String,
    types: Vec<String>,
}

impl FilterQuery {
    fn of(query: Option<&str>) -> Self {
        let mut q = Self { channel: String::new(), types: Vec::new() };
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "channel" => q.channel = v.into_owned(),
                "types" => q.types.extend(v.split(',').map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())),
                _ => {}
            }
        }
        q
    }

    fn parse(&self) -> Result<DebugFilter, crate::error::ApiError> {
        DebugFilter::parse(Some(&self.channel), Some(&self.types.join(",")))
    }

    /// The query of the stream's URL.
    fn to_query(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if !self.channel.is_empty() {
            s.append_pair("channel", &self.channel);
        }
        if !self.types.is_empty() {
            s.append_pair("types", &self.types.join(","));
        }
        s.finish()
    }
}

async fn page(state: Shared, session: Session, Path(app): Path<String>, RawQuery(query): RawQuery) -> PageResult {
    state.core.get_app(&Principal::Admin, &app).await?;
    let q = FilterQuery::of(query.as_deref());
    let (filter, error) = match q.parse() {
        Ok(f) => (Some(f), None),
        Err(err) => (None, Some(err.message.into_owned())),
    };
    let (channel_error, types_error) = match &error {
        Some(m) if m.contains("`types`") => (None, Some(m.as_str())),
        Some(m) => (Some(m.as_str()), None),
        None => (None, None),
    };
    let mut boxes = String::new();
    for t in TYPES {
        let checked = if q.types.iter().any(|x| x == t) { " checked" } else { "" };
        let _ = write!(
            boxes,
            r#"<span class="check"><input id="f-type-{t}" name="types" type="checkbox" value="{t}"{checked}><label for="f-type-{t}">{t}</label></span>"#
        );
    }
    let types_err = types_error
        .map(|m| format!(r#"<span class="field-error" id="f-types-err"><strong>Error:</strong> {}</span>"#, e(m)))
        .unwrap_or_default();
    let form = format!(
        r#"<form method="get" action="/console/apps/{uapp}/debug" class="card filters">{channel}<fieldset{types_invalid}><legend>Event types</legend><p class="hint">None ticked: every type.</p><div class="checks">{boxes}</div>{types_err}</fieldset><button type="submit">Apply filters</button></form>"#,
        uapp = url(&app),
        channel = html::field(
            "channel",
            "Channel prefix (optional)",
            "text",
            &q.channel,
            channel_error,
            &format!(
                "Only events about channels starting with this; connects, disconnects and webhook deliveries \
                 (about no channel) are then left out. At most {MAX_CHANNEL_PREFIX} bytes."
            ),
        ),
        types_invalid = if types_error.is_some() { r#" aria-describedby="f-types-err""# } else { "" },
    );
    let live = match filter {
        Some(_) => format!(
            r#"<div class="toolbar" aria-label="Stream controls"><button type="button" data-debug-pause aria-pressed="false">Pause</button><button type="button" data-debug-clear>Clear</button></div>
<p class="debug-status" role="status" data-debug-status>Connecting…</p>
<noscript><p class="notice error"><strong>Note:</strong> the live stream needs JavaScript. Without it: <code>herald apps debug {eapp}</code>, or <code>GET /v1/apps/{eapp}/debug/events</code>.</p></noscript>
<div class="scroll"><table class="debug" data-debug-stream="/console/apps/{uapp}/debug/events?{query}" data-max="{PAGE_MAX_EVENTS}"><caption>Events, newest first (at most {PAGE_MAX_EVENTS} kept on the page)</caption><thead><tr><th scope="col">Time (UTC)</th><th scope="col">Type</th><th scope="col">Channel</th><th scope="col">Details</th></tr></thead><tbody></tbody></table></div>"#,
            uapp = url(&app),
            eapp = e(&app),
            query = e(&q.to_query()),
        ),
        None => html::notice("error", "The stream is not started: correct the filter marked above."),
    };
    let intro = r#"<p class="hint">What the app's connections and backends do, as it happens: publishes, connects and disconnects, subscriptions, refusals, webhook deliveries. Busy apps are sampled (a row says how many events a node left out).</p>"#;
    let layout = Layout { title: "Debug console", csrf: Some(&session.csrf), app: Some((&app, "/debug")) };
    let body = html::page(&layout, &format!("{intro}{form}{live}"));
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::response::Html(body)).into_response())
}

/// The session's stream of the app's debug events (Server-Sent Events,
/// as the API's: `event: debug`, `data:` one JSON object).
async fn events(state: Shared, session: Session, Path(app): Path<String>, RawQuery(query): RawQuery) -> PageResult {
    let filter = FilterQuery::of(query.as_deref()).parse().map_err(Failure::from)?;
    let items = state.core.watch_debug(&Principal::Admin, &app, filter).await?;
    let ended = session_ended(Arc::downgrade(&state.core), session.id_hash);
    let events = items
        .take_until(ended)
        .map(|item| Ok::<_, Infallible>(Event::default().event("debug").data(item.to_json().to_string())));
    let mut response = Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    let h = response.headers_mut();
    // Proxies must pass events on as they come; like every console page,
    // nothing of it is stored.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Resolves once the session `id_hash` is gone (signed out, expired) or
/// the control plane is.
async fn session_ended(core: Weak<Core>, id_hash: String) {
    let mut tick = tokio::time::interval(SESSION_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        match core.store.console_session(&id_hash, herald_bus::now_ms()).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::debug!("console debug stream ended: its session is gone");
                return;
            }
            // The database is down: keep the stream, check again later.
            Err(err) => tracing::debug!(error = %err, "console session not checked"),
        }
    }
}
