//! The webhooks pages: an app's endpoints, a create form whose answer shows
//! the signing secret once, an endpoint's page (change it, send a test and
//! see its result, its delivery log), and deletion behind a confirmation
//! page.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use herald_proto::webhook::EventKind;

use super::form::{FieldErrors, Form, done_notice};
use super::html::{self, Layout, checkbox, csrf_field, e, field, secret, url};
use super::session::Session;
use super::{Console, PageResult, Shared, ok_page, see_other};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::services::{FilterSpec, WebhookPatch, WebhookSpec};
use crate::store::{ChannelFilter, Webhook};

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/apps/{app}/webhooks", get(list).post(create))
        .route("/apps/{app}/webhooks/{id}", get(detail).post(update))
        .route("/apps/{app}/webhooks/{id}/test", post(test))
        .route("/apps/{app}/webhooks/{id}/delete", get(confirm_delete).post(delete))
}

const DONE: &[(&str, &str)] = &[("saved", "The endpoint was saved."), ("deleted", "The endpoint was deleted.")];

fn events_fields(form: &Form, errors: &FieldErrors) -> String {
    let mut out = String::from(r#"<fieldset><legend>Events</legend>"#);
    for kind in EventKind::ALL {
        let name = kind.as_str();
        let id = format!("f-ev-{name}");
        let checked = if form.all("events").contains(&name) { " checked" } else { "" };
        let _ = write!(
            out,
            r#"<div class="field check"><input id="{id}" name="events" type="checkbox" value="{name}"{checked}><label for="{id}">{name}</label></div>"#
        );
    }
    if let Some(msg) = errors.of("events") {
        let _ = write!(out, r#"<span class="field-error" role="alert"><strong>Error:</strong> {}</span>"#, e(msg));
    }
    out.push_str("</fieldset>");
    out
}

fn format_field(current: &str) -> String {
    let mut out =
        String::from(r#"<div class="field"><label for="f-format">Format</label><select id="f-format" name="format">"#);
    for f in ["herald", "pusher"] {
        let sel = if f == current { " selected" } else { "" };
        let _ = write!(out, r#"<option value="{f}"{sel}>{f}</option>"#);
    }
    out.push_str("</select></div>");
    out
}

fn endpoint_form(action: &str, csrf: &str, form: &Form, errors: &FieldErrors, edit: bool, button: &str) -> String {
    let enabled = if edit { checkbox("enabled", "Enabled", form.checked("enabled")) } else { String::new() };
    format!(
        r#"<form method="post" action="{action}" class="card">{c}{u}{f}{ev}{p}{enabled}<button type="submit">{button}</button></form>"#,
        action = e(action),
        c = csrf_field(csrf),
        u = field("url", "URL", "url", form.raw("url"), errors.of("url"), "Where events are POSTed (http or https)."),
        f = format_field(if form.text("format").is_empty() { "herald" } else { form.text("format") }),
        ev = events_fields(form, errors),
        p = field(
            "prefix",
            "Channel prefix filter (optional)",
            "text",
            form.raw("prefix"),
            errors.of("prefix"),
            "Only channels starting with this."
        ),
    )
}

fn list_page(app: &str, hooks: &[Webhook], csrf: &str, form: &Form, errors: &FieldErrors, top: &str) -> String {
    let mut rows = String::new();
    for h in hooks {
        let _ = write!(
            rows,
            r#"<tr><td><a href="/console/apps/{}/webhooks/{}"><code>{}</code></a></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            url(app),
            url(&h.id),
            e(&h.id),
            e(&h.url),
            h.format.as_str(),
            h.events.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
            h.status.as_str(),
        );
    }
    let table = if hooks.is_empty() {
        "<p>No webhook endpoints.</p>".to_owned()
    } else {
        format!(
            r#"<div class="scroll"><table><caption>Endpoints</caption><thead><tr><th scope="col">Id</th><th scope="col">URL</th><th scope="col">Format</th><th scope="col">Events</th><th scope="col">Status</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    let create =
        endpoint_form(&format!("/console/apps/{}/webhooks", url(app)), csrf, form, errors, false, "Create endpoint");
    let body = format!("{top}{table}<h2>Create an endpoint</h2>{create}");
    html::page(&Layout { title: "Webhooks", csrf: Some(csrf), app: Some((app, "/webhooks")) }, &body)
}

async fn list(
    state: Shared,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let hooks = state.core.list_webhooks(&Principal::Admin, &app).await?;
    Ok(ok_page(list_page(
        &app,
        &hooks,
        &session.csrf,
        &Form::default(),
        &FieldErrors::default(),
        &done_notice(&q, DONE),
    )))
}

fn filter_of(form: &Form) -> Option<FilterSpec> {
    Some(form.text("prefix"))
        .filter(|p| !p.is_empty())
        .map(|p| FilterSpec { prefix: Some(p.to_owned()), namespace: None })
}

/// The field a refusal is about.
fn error_field(err: &ApiError) -> &'static str {
    let m = &err.message;
    if m.contains("event") {
        "events"
    } else if m.contains("prefix") || m.contains("filter") {
        "prefix"
    } else {
        "url"
    }
}

fn passes(err: &ApiError) -> bool {
    err.code.http_status() == 404 || err.code.http_status() >= 500
}

async fn create(state: Shared, Path(app): Path<String>, request: Request) -> PageResult {
    let (session, form) = Session::read_form(request, &state.core).await?;
    let spec = WebhookSpec {
        url: form.text("url").to_owned(),
        events: form.all("events").into_iter().map(str::to_owned).collect(),
        format: Some(form.text("format").to_owned()).filter(|f| !f.is_empty()),
        filter: filter_of(&form),
    };
    let mut errors = FieldErrors::default();
    match state.core.create_webhook(&Principal::Admin, &app, spec).await {
        Ok(hook) => {
            let top = format!(
                "{}{}",
                html::notice("ok", "The endpoint was created."),
                secret("new-webhook-secret", "Signing secret", &hook.secret)
            );
            let hooks = state.core.list_webhooks(&Principal::Admin, &app).await?;
            return Ok(ok_page(list_page(
                &app,
                &hooks,
                &session.csrf,
                &Form::default(),
                &FieldErrors::default(),
                &top,
            )));
        }
        Err(err) if passes(&err) => return Err(err.into()),
        Err(err) => errors.add(error_field(&err), err.message.to_string()),
    }
    let hooks = state.core.list_webhooks(&Principal::Admin, &app).await?;
    let top = html::notice("error", "The endpoint was not created: correct the fields marked below.");
    let page = list_page(&app, &hooks, &session.csrf, &form, &errors, &top);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::response::Html(page)).into_response())
}

fn form_of(h: &Webhook) -> Form {
    let mut v = vec![("url".to_owned(), h.url.clone()), ("format".to_owned(), h.format.as_str().to_owned())];
    v.extend(h.events.iter().map(|k| ("events".to_owned(), k.as_str().to_owned())));
    if let Some(ChannelFilter::Prefix(p)) = &h.filter {
        v.push(("prefix".to_owned(), p.clone()));
    }
    if h.status != crate::store::WebhookStatus::Disabled {
        v.push(("enabled".to_owned(), "on".to_owned()));
    }
    Form::from_pairs(v)
}

async fn detail_page(
    state: &Console,
    app: &str,
    hook: &Webhook,
    csrf: &str,
    form: &Form,
    errors: &FieldErrors,
    top: &str,
) -> Result<String, ApiError> {
    let base = format!("/console/apps/{}/webhooks/{}", url(app), url(&hook.id));
    let attempts = state.core.webhook_deliveries(&Principal::Admin, app, &hook.id, None).await?;
    let mut rows = String::new();
    for a in &attempts {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{} ms</td><td>{}</td></tr>",
            html::time(a.at_ms),
            e(&a.kind),
            e(&a.channel),
            a.attempt,
            a.status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into()),
            a.latency_ms,
            e(&format!("{}{}", a.outcome, a.error.as_deref().map(|x| format!(": {x}")).unwrap_or_default())),
        );
    }
    let log = if attempts.is_empty() {
        "<p>No deliveries yet.</p>".to_owned()
    } else {
        format!(
            r#"<div class="scroll"><table><caption>Delivery log (newest first)</caption><thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Channel</th><th scope="col">Attempt</th><th scope="col">HTTP status</th><th scope="col">Latency</th><th scope="col">Outcome</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    let reason = hook.status_reason.as_deref().map(|r| format!(" ({})", e(r))).unwrap_or_default();
    let body = format!(
        r#"{top}<p>Endpoint <code>{id}</code> · status <strong>{status}</strong>{reason} · {dropped} events dropped</p>
{edit}
<h2>Test</h2><form method="post" action="{base}/test" class="card">{c}<button type="submit">Send a test event</button></form>
<h2>Deliveries</h2>{log}
<h2>Delete</h2><p><a class="danger" href="{base}/delete">Delete this endpoint…</a></p>"#,
        id = e(&hook.id),
        status = hook.status.as_str(),
        dropped = hook.dropped,
        edit = endpoint_form(&base, csrf, form, errors, true, "Save endpoint"),
        base = e(&base),
        c = csrf_field(csrf),
    );
    Ok(html::page(&Layout { title: "Webhook endpoint", csrf: Some(csrf), app: Some((app, "/webhooks")) }, &body))
}

async fn detail(
    state: Shared,
    session: Session,
    Path((app, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let hook = state.core.get_webhook(&Principal::Admin, &app, &id).await?;
    let page = detail_page(
        &state,
        &app,
        &hook,
        &session.csrf,
        &form_of(&hook),
        &FieldErrors::default(),
        &done_notice(&q, DONE),
    )
    .await?;
    Ok(ok_page(page))
}

async fn update(state: Shared, Path((app, id)): Path<(String, String)>, request: Request) -> PageResult {
    let (session, form) = Session::read_form(request, &state.core).await?;
    let patch = WebhookPatch {
        url: Some(form.text("url").to_owned()),
        events: Some(form.all("events").into_iter().map(str::to_owned).collect()),
        format: Some(form.text("format").to_owned()).filter(|f| !f.is_empty()),
        filter: Some(filter_of(&form)),
        enabled: Some(form.checked("enabled")),
    };
    let err = match state.core.update_webhook(&Principal::Admin, &app, &id, patch).await {
        Ok(_) => return Ok(see_other(&format!("/console/apps/{}/webhooks/{}?done=saved", url(&app), url(&id)))),
        Err(err) if passes(&err) => return Err(err.into()),
        Err(err) => err,
    };
    let hook = state.core.get_webhook(&Principal::Admin, &app, &id).await?;
    let mut errors = FieldErrors::default();
    errors.add(error_field(&err), err.message.to_string());
    let top = html::notice("error", "Nothing was saved: correct the fields marked below.");
    let page = detail_page(&state, &app, &hook, &session.csrf, &form, &errors, &top).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::response::Html(page)).into_response())
}

async fn test(state: Shared, Path((app, id)): Path<(String, String)>, request: Request) -> PageResult {
    let (session, _) = Session::read_form(request, &state.core).await?;
    let result = state.core.test_webhook(&Principal::Admin, &app, &id).await?;
    let hook = state.core.get_webhook(&Principal::Admin, &app, &id).await?;
    let ok = result.error.is_none() && result.status.is_some_and(|s| (200..300).contains(&s));
    let text = format!(
        "Test event {}: {} in {} ms{}",
        result.event_id,
        result.status.map(|s| format!("HTTP {s}")).unwrap_or_else(|| "no answer".into()),
        result.latency_ms,
        result.error.as_deref().map(|x| format!(" ({x})")).unwrap_or_default()
    );
    let top = html::notice(if ok { "ok" } else { "error" }, &text);
    let page = detail_page(&state, &app, &hook, &session.csrf, &form_of(&hook), &FieldErrors::default(), &top).await?;
    Ok(ok_page(page))
}

async fn confirm_delete(state: Shared, session: Session, Path((app, id)): Path<(String, String)>) -> PageResult {
    let hook = state.core.get_webhook(&Principal::Admin, &app, &id).await?;
    let body = format!(
        r#"<p>Delete the endpoint <code>{id}</code> (<code>{u}</code>)? Its queued events are dropped.</p>
<form method="post" action="/console/apps/{uapp}/webhooks/{uid}/delete" class="card">{c}<button type="submit" class="danger">Delete the endpoint</button> <a href="/console/apps/{uapp}/webhooks/{uid}">Cancel</a></form>"#,
        id = e(&hook.id),
        u = e(&hook.url),
        uapp = url(&app),
        uid = url(&hook.id),
        c = csrf_field(&session.csrf),
    );
    let layout = Layout { title: "Delete endpoint", csrf: Some(&session.csrf), app: Some((&app, "/webhooks")) };
    Ok(ok_page(html::page(&layout, &body)))
}

async fn delete(state: Shared, Path((app, id)): Path<(String, String)>, request: Request) -> PageResult {
    let _ = Session::read_form(request, &state.core).await?;
    state.core.delete_webhook(&Principal::Admin, &app, &id).await?;
    Ok(see_other(&format!("/console/apps/{}/webhooks?done=deleted", url(&app))))
}
