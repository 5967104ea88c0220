//! The namespaces pages: an app's channel namespaces (presence, join and
//! leave events, client publishing, history size and lifetime — the
//! recovery window), a form that creates or changes one with errors beside
//! its fields, and deletion behind a confirmation page.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use herald_proto::bus::NamespaceOptions;

use super::form::{FieldErrors, Form, done_notice, optional_number};
use super::html::{self, Layout, checkbox, csrf_field, e, field, url};
use super::session::Session;
use super::{Console, PageResult, Shared, ok_page, see_other};
use crate::auth::Principal;
use crate::store::Namespace;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/apps/{app}/namespaces", get(list).post(put))
        .route("/apps/{app}/namespaces/{name}/delete", get(confirm_delete).post(delete))
}

const DONE: &[(&str, &str)] = &[("saved", "The namespace was saved."), ("deleted", "The namespace was deleted.")];

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The form's values for `ns` (the edit links prefill the form).
fn form_of(ns: &Namespace) -> Vec<(String, String)> {
    let o = &ns.options;
    let mut v = vec![
        ("name".to_owned(), ns.name.as_str().to_owned()),
        ("history_size".to_owned(), o.history_size.to_string()),
        ("history_ttl".to_owned(), (o.history_ttl_ms / 1000).to_string()),
    ];
    for (k, on) in [("presence", o.presence), ("join_leave", o.join_leave), ("client_publish", o.client_publish)] {
        if on {
            v.push((k.to_owned(), "on".to_owned()));
        }
    }
    v
}

fn page(
    app: &str,
    list: &[Namespace],
    csrf: &str,
    form: &Form,
    errors: &FieldErrors,
    top: &str,
    fresh: bool,
) -> String {
    let mut rows = String::new();
    for ns in list {
        let o = &ns.options;
        let _ = write!(
            rows,
            r#"<tr><td><code>{name}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href="/console/apps/{uapp}/namespaces?edit={uname}#f-name">Edit</a> · <a href="/console/apps/{uapp}/namespaces/{uname}/delete">Delete…</a></td></tr>"#,
            yes(o.presence),
            yes(o.join_leave),
            yes(o.client_publish),
            o.history_size,
            o.history_ttl_ms / 1000,
            name = e(ns.name.as_str()),
            uapp = url(app),
            uname = url(ns.name.as_str()),
        );
    }
    let table = if list.is_empty() {
        "<p>No namespaces: every channel has the defaults (no presence, no history).</p>".to_owned()
    } else {
        format!(
            r#"<div class="scroll"><table><caption>Namespaces</caption><thead><tr><th scope="col">Name</th><th scope="col">Presence</th><th scope="col">Join/leave</th><th scope="col">Client publish</th><th scope="col">History size</th><th scope="col">History TTL (s)</th><th scope="col">Actions</th></tr></thead><tbody>{rows}</tbody></table></div>"#
        )
    };
    let client_publish = if fresh { true } else { form.checked("client_publish") };
    let body = format!(
        r#"{top}{table}<h2>Create or change a namespace</h2><p class="hint">Channels named <code>name:…</code> take its options. History keeps messages for recovery after a reconnect; a size and a TTL of 0 keep none.</p>
<form method="post" action="/console/apps/{uapp}/namespaces" class="card">{c}{name}{p}{jl}{cp}{hs}{ht}<button type="submit">Save namespace</button></form>"#,
        uapp = url(app),
        c = csrf_field(csrf),
        name = field("name", "Name", "text", form.raw("name"), errors.of("name"), "Letters, digits, - and _."),
        p = checkbox("presence", "Presence (members are tracked and served)", form.checked("presence")),
        jl = checkbox("join_leave", "Join and leave events (needs presence)", form.checked("join_leave")),
        cp = checkbox("client_publish", "Clients may publish (when their token allows)", client_publish),
        hs = field(
            "history_size",
            "History size (messages per channel)",
            "text",
            form.raw("history_size"),
            errors.of("history_size"),
            ""
        ),
        ht = field(
            "history_ttl",
            "History TTL (seconds)",
            "text",
            form.raw("history_ttl"),
            errors.of("history_ttl"),
            ""
        ),
    );
    html::page(&Layout { title: "Namespaces", csrf: Some(csrf), app: Some((app, "/namespaces")) }, &body)
}

async fn list(
    state: Shared,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let list = state.core.list_namespaces(&Principal::Admin, &app).await?;
    let editing = q.get("edit").and_then(|n| list.iter().find(|ns| ns.name.as_str() == n));
    let (form, fresh) = match editing {
        Some(ns) => (Form::from_pairs(form_of(ns)), false),
        None => (Form::default(), true),
    };
    Ok(ok_page(page(&app, &list, &session.csrf, &form, &FieldErrors::default(), &done_notice(&q, DONE), fresh)))
}

async fn put(state: Shared, Path(app): Path<String>, request: Request) -> PageResult {
    let (session, form) = Session::read_form(request, &state.core).await?;
    let mut errors = FieldErrors::default();
    let size = optional_number::<u32>(&form, "history_size", "The history size").unwrap_or_else(|m| {
        errors.add("history_size", m);
        None
    });
    let ttl = optional_number::<u64>(&form, "history_ttl", "The history TTL").unwrap_or_else(|m| {
        errors.add("history_ttl", m);
        None
    });
    if errors.is_empty() {
        let options = NamespaceOptions {
            presence: form.checked("presence"),
            join_leave: form.checked("join_leave"),
            client_publish: form.checked("client_publish"),
            history_size: size.unwrap_or(0),
            history_ttl_ms: ttl.unwrap_or(0).saturating_mul(1000),
        };
        match state.core.put_namespace(&Principal::Admin, &app, form.text("name"), options).await {
            Ok(_) => return Ok(see_other(&format!("/console/apps/{}/namespaces?done=saved", url(&app)))),
            Err(err) if err.code.http_status() == 404 || err.code.http_status() >= 500 => {
                return Err(err.into());
            }
            Err(err) => {
                let m = &err.message;
                let at = if m.contains("history_size") {
                    "history_size"
                } else if m.contains("history_ttl") {
                    "history_ttl"
                } else {
                    "name"
                };
                errors.add(at, m.to_string());
            }
        }
    }
    let list = state.core.list_namespaces(&Principal::Admin, &app).await?;
    let top = html::notice("error", "Nothing was saved: correct the fields marked below.");
    let html = page(&app, &list, &session.csrf, &form, &errors, &top, false);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::response::Html(html)).into_response())
}

async fn confirm_delete(state: Shared, session: Session, Path((app, name)): Path<(String, String)>) -> PageResult {
    let ns = state.core.get_namespace(&Principal::Admin, &app, &name).await?;
    let body = format!(
        r#"<p>Delete the namespace <code>{n}</code>? Its channels fall back to the defaults and its history is dropped.</p>
<form method="post" action="/console/apps/{uapp}/namespaces/{un}/delete" class="card">{c}<button type="submit" class="danger">Delete the namespace</button> <a href="/console/apps/{uapp}/namespaces">Cancel</a></form>"#,
        n = e(ns.name.as_str()),
        uapp = url(&app),
        un = url(ns.name.as_str()),
        c = csrf_field(&session.csrf),
    );
    let layout = Layout { title: "Delete namespace", csrf: Some(&session.csrf), app: Some((&app, "/namespaces")) };
    Ok(ok_page(html::page(&layout, &body)))
}

async fn delete(state: Shared, Path((app, name)): Path<(String, String)>, request: Request) -> PageResult {
    let _ = Session::read_form(request, &state.core).await?;
    state.core.delete_namespace(&Principal::Admin, &app, &name).await?;
    Ok(see_other(&format!("/console/apps/{}/namespaces?done=deleted", url(&app))))
}
