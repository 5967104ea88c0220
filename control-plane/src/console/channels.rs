//! The channels pages: an app's occupied channels with their subscriber
//! counts (filter by prefix; `console.js` refreshes the table from
//! `channels.json`), and one channel's state, presence members and history
//! with sequence numbers. Channel names travel in the query
//! (`channel?name=…`), never in the path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query};
use axum::response::IntoResponse;
use axum::routing::get;
use herald_proto::ErrorCode;

use super::html::{self, Layout, e, url};
use super::session::Session;
use super::{Console, PageResult, Shared, ok_page};
use crate::auth::Principal;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/apps/{app}/channels", get(list))
        .route("/apps/{app}/channels.json", get(list_json))
        .route("/apps/{app}/channel", get(channel))
}

/// Messages of history shown on a channel's page.
const HISTORY_SHOWN: usize = 50;

/// The channel page's link for `channel` of `app`.
#[must_use]
pub fn channel_href(app: &str, channel: &str) -> String {
    format!("/console/apps/{}/channel?name={}", url(app), url(channel))
}

async fn list(
    state: Shared,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let prefix = q.get("prefix").map(String::as_str).unwrap_or("");
    let occupancy =
        state.core.occupied_channels(&Principal::Admin, &app, Some(prefix).filter(|p| !p.is_empty())).await?;
    let mut rows = String::new();
    for (name, subscribers) in &occupancy.channels {
        let _ = write!(
            rows,
            r#"<tr><td><a href="{}"><code>{}</code></a></td><td>{subscribers}</td></tr>"#,
            e(&channel_href(&app, name.as_str())),
            e(name.as_str())
        );
    }
    let cut = if occupancy.truncated { "<p>The list is cut at max_channels_listed.</p>" } else { "" };
    let body = format!(
        r#"<form method="get" action="/console/apps/{uapp}/channels" class="inline-form"><label for="f-prefix">Channel name prefix</label><input id="f-prefix" name="prefix" type="text" value="{prefix}"><button type="submit">Filter</button></form>
<p class="hint">Channels with subscribers now, across edges; the table refreshes every few seconds.</p>{cut}
<div class="scroll"><table data-refresh="/console/apps/{uapp}/channels.json?prefix={uprefix}"><caption>Occupied channels</caption><thead><tr><th scope="col">Channel</th><th scope="col">Subscribers</th></tr></thead><tbody>{rows}</tbody></table></div>
<p class="empty-note" data-empty-note>{empty}</p>"#,
        uapp = url(&app),
        prefix = e(prefix),
        uprefix = url(prefix),
        empty = if occupancy.channels.is_empty() { "No occupied channels." } else { "" },
    );
    let layout = Layout { title: "Channels", csrf: Some(&session.csrf), app: Some((&app, "/channels")) };
    Ok(ok_page(html::page(&layout, &body)))
}

async fn list_json(
    state: Shared,
    _session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let prefix = q.get("prefix").map(String::as_str).filter(|p| !p.is_empty());
    let occupancy = state.core.occupied_channels(&Principal::Admin, &app, prefix).await?;
    let channels: Vec<serde_json::Value> = occupancy
        .channels
        .iter()
        .map(|(name, n)| {
            serde_json::json!({"name": name.as_str(), "subscribers": n, "href": channel_href(&app, name.as_str())})
        })
        .collect();
    Ok(axum::Json(serde_json::json!({"channels": channels, "truncated": occupancy.truncated})).into_response())
}

async fn channel(
    state: Shared,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let name = q.get("name").map(String::as_str).unwrap_or("");
    let core = &state.core;
    let st = core.channel_state(&Principal::Admin, &app, name).await?;
    let mut body = format!(
        r#"<p>Channel <code>{}</code>: {} subscriptions{}.</p>"#,
        e(name),
        st.subscriptions,
        st.members.map(|m| format!(", {m} presence members")).unwrap_or_default()
    );
    body.push_str("<h2>Presence</h2>");
    match core.presence(&Principal::Admin, &app, name, None, None).await {
        Ok(p) if p.members.is_empty() => body.push_str("<p>No members.</p>"),
        Ok(p) => {
            let mut rows = String::new();
            for m in &p.members {
                let _ = write!(
                    rows,
                    r#"<tr><td><code>{}</code></td><td>{}</td><td><pre class="inline">{}</pre></td></tr>"#,
                    e(&m.client_id),
                    m.connections,
                    e(&String::from_utf8_lossy(&m.info))
                );
            }
            let _ = write!(
                body,
                r#"<div class="scroll"><table><caption>Members ({} in all)</caption><thead><tr><th scope="col">Client id</th><th scope="col">Connections</th><th scope="col">Info</th></tr></thead><tbody>{rows}</tbody></table></div>"#,
                p.total
            );
        }
        Err(err) if err.code == ErrorCode::NotEnabled => {
            body.push_str("<p>This channel's namespace has no presence.</p>");
        }
        Err(err) => return Err(err.into()),
    }
    body.push_str("<h2>History</h2>");
    match core
        .history(&Principal::Admin, &app, name, 0, Some(HISTORY_SHOWN.min(core.config.max_history_limit)), None)
        .await
    {
        Ok(h) if h.messages.is_empty() => body.push_str("<p>No messages held.</p>"),
        Ok(h) => {
            let mut rows = String::new();
            for m in &h.messages {
                let _ = write!(
                    rows,
                    r#"<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td><pre class="inline">{}</pre></td></tr>"#,
                    m.seq,
                    html::time(m.message.timestamp_ms),
                    e(m.message.event.as_deref().unwrap_or("")),
                    e(&m.message.id),
                    e(&String::from_utf8_lossy(&m.message.data))
                );
            }
            let _ = write!(
                body,
                r#"<div class="scroll"><table><caption>Oldest held messages (last seq {})</caption><thead><tr><th scope="col">Seq</th><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Id</th><th scope="col">Data</th></tr></thead><tbody>{rows}</tbody></table></div>"#,
                h.last_seq
            );
        }
        Err(err) if err.code == ErrorCode::NotEnabled => {
            body.push_str("<p>This channel's namespace keeps no history.</p>");
        }
        Err(err) => return Err(err.into()),
    }
    let _ = write!(
        body,
        r#"<p><a href="/console/apps/{}/publish?channel={}">Publish to this channel</a></p>"#,
        url(&app),
        url(name)
    );
    let layout = Layout { title: "Channel", csrf: Some(&session.csrf), app: Some((&app, "/channels")) };
    Ok(ok_page(html::page(&layout, &body)))
}
