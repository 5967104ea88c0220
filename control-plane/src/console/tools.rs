//! The event creator (publish a message to a channel from the page, as
//! `POST /v1/apps/{app}/channels/{channel}/messages` does) and the token
//! generator (a client token with capabilities and a lifetime, shown with
//! a copy button).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use herald_bus::usage::Source;

use super::channels::channel_href;
use super::form::{FieldErrors, Form, optional_number};
use super::html::{self, Layout, csrf_field, e, field, secret, url};
use super::keys::parse_capabilities;
use super::session::Session;
use super::{Console, PageResult, Shared, ok_page, see_other};
use crate::auth::Principal;
use crate::services::Draft;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/apps/{app}/publish", get(publish_page).post(publish))
        .route("/apps/{app}/tokens", get(token_page).post(mint))
}

fn publish_form(
    app: &str,
    csrf: &str,
    channel: &str,
    event: &str,
    data: &str,
    errors: &FieldErrors,
    top: &str,
) -> String {
    let body = format!(
        r#"{top}<form method="post" action="/console/apps/{uapp}/publish" class="card">{c}{ch}{ev}{da}<button type="submit">Publish</button></form>"#,
        uapp = url(app),
        c = csrf_field(csrf),
        ch = field("channel", "Channel", "text", channel, errors.of("channel"), "e.g. chat or chat:room-1"),
        ev = field("event", "Event name (optional)", "text", event, errors.of("event"), ""),
        da = field("data", "Data", "textarea", data, errors.of("data"), "Sent as it is written (JSON or text)."),
    );
    html::page(&Layout { title: "Event creator", csrf: Some(csrf), app: Some((app, "/publish")) }, &body)
}

async fn publish_page(
    state: Shared,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    state.core.get_app(&Principal::Admin, &app).await?;
    let channel = q.get("channel").map(String::as_str).unwrap_or("");
    let top = match q.get("sent") {
        Some(id) => format!(
            r#"{}<p>Message id <code>{}</code> · <a href="{}">See the channel</a></p>"#,
            html::notice("ok", "The message was published."),
            e(id),
            e(&channel_href(&app, channel))
        ),
        None => String::new(),
    };
    Ok(ok_page(publish_form(&app, &session.csrf, channel, "", "", &FieldErrors::default(), &top)))
}

async fn publish(state: Shared, Path(app): Path<String>, request: Request) -> PageResult {
    let (session, form) = Session::read_form(request, &state.core).await?;
    let channel = form.text("channel");
    let event = Some(form.text("event")).filter(|s| !s.is_empty()).map(str::to_owned);
    let draft =
        Draft { data: Bytes::from(form.raw("data").to_owned()), event, idempotency_id: None, exclude_connection: None };
    // Counted as a REST publish; its debug event names the console.
    let published = crate::debug_tap::with_source(
        "console",
        state.core.publish(&Principal::Admin, &app, &[channel], draft, Source::Rest),
    )
    .await;
    let err = match published {
        Ok(p) => {
            return Ok(see_other(&format!(
                "/console/apps/{}/publish?channel={}&sent={}",
                url(&app),
                url(channel),
                url(&p.id)
            )));
        }
        Err(err) if err.code.http_status() == 404 || err.code.http_status() >= 500 => return Err(err.into()),
        Err(err) => err,
    };
    let mut errors = FieldErrors::default();
    let m = err.message.to_lowercase();
    let at = if err.code == herald_proto::ErrorCode::InvalidChannel || m.contains("channel") {
        "channel"
    } else if m.contains("event") || m.contains("`name`") {
        "event"
    } else {
        "data"
    };
    errors.add(at, err.message.to_string());
    let top = html::notice("error", "Nothing was published: correct the field marked below.");
    let page =
        publish_form(&app, &session.csrf, form.raw("channel"), form.raw("event"), form.raw("data"), &errors, &top);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::response::Html(page)).into_response())
}

fn token_form(app: &str, csrf: &str, form: &Form, errors: &FieldErrors, top: &str, ttl_hint: &str) -> String {
    let body = format!(
        r#"{top}<form method="post" action="/console/apps/{uapp}/tokens" class="card">{c}{cid}{caps}{ttl}{info}<button type="submit">Generate token</button></form>"#,
        uapp = url(app),
        c = csrf_field(csrf),
        cid = field(
            "client_id",
            "Client id",
            "text",
            form.raw("client_id"),
            errors.of("client_id"),
            "Who the token is for, e.g. user-42."
        ),
        caps = field(
            "capabilities",
            "Capabilities",
            "textarea",
            form.raw("capabilities"),
            errors.of("capabilities"),
            "One rule per line: pattern then operations, e.g. chat:* subscribe publish. Empty: everything."
        ),
        ttl = field(
            "ttl_seconds",
            "Lifetime in seconds (optional)",
            "text",
            form.raw("ttl_seconds"),
            errors.of("ttl_seconds"),
            ttl_hint
        ),
        info =
            field("info", "Presence info (optional JSON object)", "textarea", form.raw("info"), errors.of("info"), ""),
    );
    html::page(&Layout { title: "Token generator", csrf: Some(csrf), app: Some((app, "/tokens")) }, &body)
}

fn ttl_hint(state: &Console) -> String {
    let c = &state.core.config;
    format!(
        "Between {} and {}; default {}.",
        c.token_min_ttl.0.as_secs(),
        c.token_max_ttl.0.as_secs(),
        c.token_default_ttl.0.as_secs()
    )
}

async fn token_page(state: Shared, session: Session, Path(app): Path<String>) -> PageResult {
    state.core.get_app(&Principal::Admin, &app).await?;
    Ok(ok_page(token_form(&app, &session.csrf, &Form::default(), &FieldErrors::default(), "", &ttl_hint(&state))))
}

async fn mint(state: Shared, Path(app): Path<String>, request: Request) -> PageResult {
    let (session, form) = Session::read_form(request, &state.core).await?;
    let mut errors = FieldErrors::default();
    let caps = parse_capabilities(form.raw("capabilities")).unwrap_or_else(|m| {
        errors.add("capabilities", m);
        None
    });
    let ttl = optional_number::<u64>(&form, "ttl_seconds", "The lifetime").unwrap_or_else(|m| {
        errors.add("ttl_seconds", m);
        None
    });
    let info = match form.text("info") {
        "" => None,
        text => match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
            Ok(map) => Some(map),
            Err(err) => {
                errors.add("info", format!("not a JSON object: {err}"));
                None
            }
        },
    };
    if errors.is_empty() {
        match state.core.mint_token(&Principal::Admin, &app, form.text("client_id"), caps, ttl, info).await {
            Ok((token, expires)) => {
                let top = format!(
                    "{}{}<p>Expires {}.</p>",
                    html::notice("ok", "The token was generated."),
                    secret("new-token", "Client token", &token),
                    html::time(expires.saturating_mul(1000))
                );
                return Ok(ok_page(token_form(
                    &app,
                    &session.csrf,
                    &form,
                    &FieldErrors::default(),
                    &top,
                    &ttl_hint(&state),
                )));
            }
            Err(err) if err.code.http_status() == 404 || err.code.http_status() >= 500 => return Err(err.into()),
            Err(err) => {
                let m = &err.message;
                let at = if m.contains("client_id") {
                    "client_id"
                } else if m.contains("ttl") {
                    "ttl_seconds"
                } else if m.contains("info") {
                    "info"
                } else {
                    "capabilities"
                };
                errors.add(at, m.to_string());
            }
        }
    }
    let top = html::notice("error", "No token was generated: correct the fields marked below.");
    let page = token_form(&app, &session.csrf, &form, &errors, &top, &ttl_hint(&state));
    Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::response::Html(page)).into_response())
}
