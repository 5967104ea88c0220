//! The apps pages: the list with a create form, an app's settings (name,
//! limits, Origin allowlist, Pusher mode and its settings) with errors
//! beside their fields and the entered values kept, disabling and enabling
//! it (with a reason), and deletion behind a confirmation page.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};

use super::form::{FieldErrors, Form, done_notice, field_of, optional_number};
use super::html::{self, Layout, checkbox, csrf_field, e, field, url};
use super::session::Session;
use super::{Console, PageResult, Shared, ok_page, see_other};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::services::{AppSpec, PusherPatch};
use crate::store::{App, LimitOverrides};

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/apps", get(list).post(create))
        .route("/apps/{app}", get(settings).post(update))
        .route("/apps/{app}/delete", get(confirm_delete).post(delete))
        .route("/apps/{app}/status", post(set_status))
}

const DONE: &[(&str, &str)] = &[
    ("created", "The app was created."),
    ("saved", "The settings were saved."),
    ("deleted", "The app was deleted."),
    ("disabled", "The app was disabled: its keys are refused and its connections closed."),
    ("enabled", "The app was enabled again."),
];

/// An app's status for lists: "enabled", or "disabled" (never colour
/// alone).
fn status(app: &App) -> &'static str {
    if app.disabled.is_some() { "disabled" } else { "enabled" }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn list_body(apps: &[App], csrf: &str, form: &Form, errors: &FieldErrors, notice: &str) -> String {
    let mut rows = String::new();
    for app in apps {
        let _ = write!(
            rows,
            r#"<tr><td><a href="/console/apps/{}"><code>{}</code></a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            url(app.id.as_str()),
            e(app.id.as_str()),
            e(&app.name),
            status(app),
            yes_no(app.pusher.enabled),
            html::time(app.created_at_ms)
        );
    }
    let table = if apps.is_empty() {
        "<p>No apps yet: create one below.</p>".to_owned()
    } else {
        format!(
            r#"<div class="scroll"><table><caption>Apps</caption><thead><tr><th scope="col">Id</th><th scope="col">Name</th><th scope="col">Status</th><th scope="col">Pusher mode</th><th scope="col">Created</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    format!(
        r#"{notice}{table}<h2>Create an app</h2><form method="post" action="/console/apps" class="card">{}{}{}<button type="submit">Create app</button></form>"#,
        csrf_field(csrf),
        field("name", "Name", "text", form.raw("name"), errors.of("name"), "Shown in lists; 1 to 100 characters."),
        field(
            "id",
            "Id (optional)",
            "text",
            form.raw("id"),
            errors.of("id"),
            "Letters, digits, - and _; generated when empty."
        )
    )
}

async fn list(state: Shared, session: Session, Query(q): Query<HashMap<String, String>>) -> PageResult {
    let apps = state.core.list_apps(&Principal::Admin).await?;
    let body = list_body(&apps, &session.csrf, &Form::default(), &FieldErrors::default(), &done_notice(&q, DONE));
    Ok(ok_page(html::page(&Layout { title: "Apps", csrf: Some(&session.csrf), app: None }, &body)))
}

async fn create(state: Shared, request: Request) -> PageResult {
    let (session, form) = Session::read_form(request, &state.core).await?;
    let id = Some(form.text("id")).filter(|s| !s.is_empty());
    let spec = AppSpec { name: Some(form.text("name").to_owned()), ..AppSpec::default() };
    match state.core.create_app(&Principal::Admin, id, spec).await {
        Ok(app) => Ok(see_other(&format!("/console/apps/{}?done=created", url(app.id.as_str())))),
        Err(err) if err.code.http_status() < 500 => {
            let mut errors = FieldErrors::default();
            let at = field_of(&err.message, &["id", "name"], &[]).unwrap_or(if err.message.contains(" id ") {
                "id"
            } else {
                "name"
            });
            errors.add(if at == "id" { "id" } else { "name" }, err.message.to_string());
            let apps = state.core.list_apps(&Principal::Admin).await?;
            let body =
                list_body(&apps, &session.csrf, &form, &errors, &html::notice("error", "The app was not created."));
            let page = html::page(&Layout { title: "Apps", csrf: Some(&session.csrf), app: None }, &body);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::response::Html(page)).into_response())
        }
        Err(err) => Err(err.into()),
    }
}

/// The settings form's values: from the app, or as the user entered them.
struct Values {
    name: String,
    max_connections: String,
    max_message_bytes: String,
    publish_rate_per_sec: String,
    quota_messages_per_day: String,
    quota_messages_per_month: String,
    quota_connections: String,
    allowed_origins: String,
    pusher_enabled: bool,
    client_events: bool,
    subscription_count: bool,
    presence_max_members: String,
    max_event_bytes: String,
    client_event_rate: String,
    batch_max: String,
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

impl Values {
    fn of_app(app: &App) -> Self {
        let p = &app.pusher;
        Self {
            name: app.name.clone(),
            max_connections: opt(app.limits.max_connections),
            max_message_bytes: opt(app.limits.max_message_bytes),
            publish_rate_per_sec: opt(app.limits.publish_rate_per_sec),
            quota_messages_per_day: opt(app.limits.quota_messages_per_day),
            quota_messages_per_month: opt(app.limits.quota_messages_per_month),
            quota_connections: opt(app.limits.quota_connections),
            allowed_origins: app.allowed_origins.join("\n"),
            pusher_enabled: p.enabled,
            client_events: p.client_events,
            subscription_count: p.subscription_count,
            presence_max_members: p.presence_max_members.to_string(),
            max_event_bytes: p.max_event_bytes.to_string(),
            client_event_rate: p.client_event_rate.to_string(),
            batch_max: p.batch_max.to_string(),
        }
    }

    fn of_form(f: &Form) -> Self {
        let s = |k: &str| f.raw(k).to_owned();
        Self {
            name: s("name"),
            max_connections: s("max_connections"),
            max_message_bytes: s("max_message_bytes"),
            publish_rate_per_sec: s("publish_rate_per_sec"),
            quota_messages_per_day: s("quota_messages_per_day"),
            quota_messages_per_month: s("quota_messages_per_month"),
            quota_connections: s("quota_connections"),
            allowed_origins: s("allowed_origins"),
            pusher_enabled: f.checked("pusher_enabled"),
            client_events: f.checked("client_events"),
            subscription_count: f.checked("subscription_count"),
            presence_max_members: s("presence_max_members"),
            max_event_bytes: s("max_event_bytes"),
            client_event_rate: s("client_event_rate"),
            batch_max: s("batch_max"),
        }
    }
}

fn settings_body(app: &App, v: &Values, csrf: &str, errors: &FieldErrors, notice: &str, limits: &str) -> String {
    let id = url(app.id.as_str());
    let pusher_id = app.pusher.app_id.map(|i| i.to_string()).unwrap_or_else(|| "none".into());
    format!(
        r#"{notice}<p>Name: <strong>{name}</strong> · created {created} · Pusher app id <code>{pusher_id}</code></p><p>Limits in force: {limits}</p>
<form method="post" action="/console/apps/{id}" class="card">{csrf}
<fieldset><legend>General</legend>{f_name}{f_origins}</fieldset>
<fieldset><legend>Limits (empty: keep; 0: the server default)</legend>{f_conn}{f_bytes}{f_rate}</fieldset>
<fieldset><legend>Quotas (empty: keep; 0: none)</legend>{f_qday}{f_qmonth}{f_qconn}</fieldset>
<fieldset><legend>Pusher mode</legend>{c_pusher}{c_client}{c_count}{f_members}{f_event}{f_cer}{f_batch}</fieldset>
<button type="submit">Save settings</button></form>
{status}
<h2>Delete</h2><p><a class="danger" href="/console/apps/{id}/delete">Delete this app…</a> (asks for confirmation)</p>"#,
        name = e(&app.name),
        created = html::time(app.created_at_ms),
        status = status_section(app, csrf),
        csrf = csrf_field(csrf),
        f_name = field("name", "Name", "text", &v.name, errors.of("name"), ""),
        f_origins = field(
            "allowed_origins",
            "Allowed origins",
            "textarea",
            &v.allowed_origins,
            errors.of("allowed_origins"),
            "One per line, like https://example.com; none: every origin."
        ),
        f_conn =
            field("max_connections", "Max connections", "text", &v.max_connections, errors.of("max_connections"), ""),
        f_bytes = field(
            "max_message_bytes",
            "Max message bytes",
            "text",
            &v.max_message_bytes,
            errors.of("max_message_bytes"),
            ""
        ),
        f_rate = field(
            "publish_rate_per_sec",
            "Publishes per second",
            "text",
            &v.publish_rate_per_sec,
            errors.of("publish_rate_per_sec"),
            ""
        ),
        f_qday = field(
            "quota_messages_per_day",
            "Messages per UTC day",
            "text",
            &v.quota_messages_per_day,
            errors.of("quota_messages_per_day"),
            ""
        ),
        f_qmonth = field(
            "quota_messages_per_month",
            "Messages per UTC month",
            "text",
            &v.quota_messages_per_month,
            errors.of("quota_messages_per_month"),
            ""
        ),
        f_qconn = field(
            "quota_connections",
            "Concurrent connections",
            "text",
            &v.quota_connections,
            errors.of("quota_connections"),
            ""
        ),
        c_pusher = checkbox("pusher_enabled", "Pusher mode on", v.pusher_enabled),
        c_client = checkbox(
            "client_events",
            "Client events (client- events on private and presence channels)",
            v.client_events
        ),
        c_count = checkbox("subscription_count", "Subscription count events", v.subscription_count),
        f_members = field(
            "presence_max_members",
            "Presence cap (members per channel; 0: default)",
            "text",
            &v.presence_max_members,
            errors.of("presence_max_members"),
            ""
        ),
        f_event = field(
            "max_event_bytes",
            "Max event bytes (0: default)",
            "text",
            &v.max_event_bytes,
            errors.of("max_event_bytes"),
            ""
        ),
        f_cer = field(
            "client_event_rate",
            "Client events per second per connection (0: default)",
            "text",
            &v.client_event_rate,
            errors.of("client_event_rate"),
            ""
        ),
        f_batch =
            field("batch_max", "Most events per batch (0: default)", "text", &v.batch_max, errors.of("batch_max"), ""),
    )
}

fn settings_page(state: &Console, app: &App, v: &Values, csrf: &str, errors: &FieldErrors, notice: &str) -> String {
    let l = state.core.effective_limits(app);
    let limits = format!(
        "{} connections, {} bytes per message, {} publishes per second",
        l.max_connections, l.max_message_bytes, l.publish_rate_per_sec
    );
    let body = settings_body(app, v, csrf, errors, notice, &limits);
    html::page(&Layout { title: "App settings", csrf: Some(csrf), app: Some((app.id.as_str(), "")) }, &body)
}

async fn settings(
    state: Shared,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let app = state.core.get_app(&Principal::Admin, &app).await?;
    let page = settings_page(
        &state,
        &app,
        &Values::of_app(&app),
        &session.csrf,
        &FieldErrors::default(),
        &done_notice(&q, DONE),
    );
    Ok(ok_page(page))
}

const FIELDS: &[&str] = &[
    "name",
    "max_connections",
    "max_message_bytes",
    "publish_rate_per_sec",
    "quota_messages_per_day",
    "quota_messages_per_month",
    "quota_connections",
    "allowed_origins",
    "presence_max_members",
    "max_event_bytes",
    "client_event_rate",
    "batch_max",
];

/// The change the form asks for, or the errors of its fields.
fn spec_of(form: &Form) -> Result<AppSpec, FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut big = |name: &'static str, label: &str| match optional_number::<u64>(form, name, label) {
        Ok(v) => v,
        Err(msg) => {
            errors.add(name, msg);
            None
        }
    };
    let quota_day = big("quota_messages_per_day", "Messages per UTC day");
    let quota_month = big("quota_messages_per_month", "Messages per UTC month");
    let mut num = |name: &'static str, label: &str| match optional_number::<u32>(form, name, label) {
        Ok(v) => v,
        Err(msg) => {
            errors.add(name, msg);
            None
        }
    };
    let limits = LimitOverrides {
        max_connections: num("max_connections", "Max connections"),
        max_message_bytes: num("max_message_bytes", "Max message bytes"),
        publish_rate_per_sec: num("publish_rate_per_sec", "Publishes per second"),
        quota_messages_per_day: quota_day,
        quota_messages_per_month: quota_month,
        quota_connections: num("quota_connections", "Concurrent connections"),
    };
    let pusher = PusherPatch {
        enabled: Some(form.checked("pusher_enabled")),
        client_events: Some(form.checked("client_events")),
        subscription_count: Some(form.checked("subscription_count")),
        presence_max_members: num("presence_max_members", "The presence cap"),
        max_event_bytes: num("max_event_bytes", "Max event bytes"),
        client_event_rate: num("client_event_rate", "Client events per second"),
        batch_max: num("batch_max", "Most events per batch"),
        app_id: None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let origins =
        form.raw("allowed_origins").lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    Ok(AppSpec {
        name: Some(form.text("name").to_owned()),
        limits,
        allowed_origins: Some(origins),
        pusher: Some(pusher),
        disabled: None,
        disabled_reason: None,
    })
}

async fn update(state: Shared, Path(id): Path<String>, request: Request) -> PageResult {
    let (session, form) = Session::read_form(request, &state.core).await?;
    let app = state.core.get_app(&Principal::Admin, &id).await?;
    let errors = match spec_of(&form) {
        Ok(spec) => match state.core.update_app(&Principal::Admin, &id, spec).await {
            Ok(app) => return Ok(see_other(&format!("/console/apps/{}?done=saved", url(app.id.as_str())))),
            Err(err) if err.code.http_status() < 500 && err.code.http_status() != 404 => {
                let mut errors = FieldErrors::default();
                let at = field_of(&err.message, FIELDS, &[])
                    .or_else(|| err.message.contains("origin").then_some("allowed_origins"));
                match at {
                    Some(f) => {
                        errors.add(FIELDS.iter().copied().find(|x| *x == f).unwrap_or("name"), err.message.to_string())
                    }
                    None => errors.add("name", err.message.to_string()),
                }
                errors
            }
            Err(err) => return Err(err.into()),
        },
        Err(errors) => errors,
    };
    let notice = html::notice("error", "Nothing was saved: correct the fields marked below.");
    let page = settings_page(&state, &app, &Values::of_form(&form), &session.csrf, &errors, &notice);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::response::Html(page)).into_response())
}

async fn confirm_delete(state: Shared, session: Session, Path(app): Path<String>) -> PageResult {
    let app = state.core.get_app(&Principal::Admin, &app).await?;
    let body = format!(
        r#"<p>Delete the app <code>{id}</code> (<strong>{name}</strong>)? Its keys stop working, its connections are closed and its history is dropped. This cannot be undone.</p>
<form method="post" action="/console/apps/{uid}/delete" class="card">{csrf}<button type="submit" class="danger">Delete the app</button> <a href="/console/apps/{uid}">Cancel</a></form>"#,
        id = e(app.id.as_str()),
        name = e(&app.name),
        uid = url(app.id.as_str()),
        csrf = csrf_field(&session.csrf)
    );
    let layout = Layout { title: "Delete app", csrf: Some(&session.csrf), app: Some((app.id.as_str(), "/delete")) };
    Ok(ok_page(html::page(&layout, &body)))
}

async fn delete(state: Shared, Path(app): Path<String>, request: Request) -> PageResult {
    let (_session, _form) = Session::read_form(request, &state.core).await?;
    state.core.delete_app(&Principal::Admin, &app).await?;
    Ok(see_other("/console/apps?done=deleted"))
}

/// The settings page's "Status" section: disable the app (with a reason),
/// or see why it is disabled and enable it again.
fn status_section(app: &App, csrf: &str) -> String {
    let id = url(app.id.as_str());
    match &app.disabled {
        None => format!(
            r#"<h2>Status</h2><p>The app is <strong>enabled</strong>.</p>
<form method="post" action="/console/apps/{id}/status" class="card">{csrf}<input type="hidden" name="action" value="disable">{reason}<button type="submit" class="danger">Disable the app</button></form>"#,
            csrf = csrf_field(csrf),
            reason = field(
                "reason",
                "Reason (optional)",
                "text",
                "",
                None,
                "Shown to the app's callers. Disabling refuses its keys, closes its connections and refuses the tokens minted before; nothing is deleted."
            )
        ),
        Some(d) => format!(
            r#"<h2>Status</h2><p>The app is <strong>disabled</strong> since {since}{reason}. Its keys are refused and its connections closed.</p>
<form method="post" action="/console/apps/{id}/status" class="card">{csrf}<input type="hidden" name="action" value="enable"><button type="submit">Enable the app</button></form>"#,
            since = html::time(d.at_ms),
            reason = if d.reason.is_empty() { String::new() } else { format!(": {}", e(&d.reason)) },
            csrf = csrf_field(csrf),
        ),
    }
}

async fn set_status(state: Shared, Path(id): Path<String>, request: Request) -> PageResult {
    let (_session, form) = Session::read_form(request, &state.core).await?;
    let (disabled, done) = match form.raw("action") {
        "disable" => (true, "disabled"),
        "enable" => (false, "enabled"),
        _ => return Err(ApiError::bad_request("`action` must be `disable` or `enable`").into()),
    };
    let reason = form.raw("reason").trim();
    let spec = AppSpec {
        disabled: Some(disabled),
        disabled_reason: (disabled && !reason.is_empty()).then(|| reason.to_owned()),
        ..AppSpec::default()
    };
    let app = state.core.update_app(&Principal::Admin, &id, spec).await?;
    Ok(see_other(&format!("/console/apps/{}?done={done}", url(app.id.as_str()))))
}
