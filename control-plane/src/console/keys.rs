//! The keys pages: an app's API keys (capabilities, created, last used,
//! revoked), a
//! create form whose answer shows the new secret once with a copy button,
//! revocation behind a confirmation page, and signing-key rotation.
//!
//! Capabilities are written one rule per line: a channel pattern, then its
//! operations (`chat:* subscribe publish`); an empty box means everything.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use herald_proto::Capabilities;

use super::form::{FieldErrors, Form, done_notice};
use super::html::{self, Layout, checkbox, csrf_field, e, field, secret, url};
use super::session::Session;
use super::{Console, PageResult, Shared, ok_page, see_other};
use crate::auth::Principal;
use crate::store::ApiKey;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/apps/{app}/keys", get(list).post(create))
        .route("/apps/{app}/keys/{key}/revoke", get(confirm_revoke).post(revoke))
        .route("/signing-keys/rotate", post(rotate))
}

const DONE: &[(&str, &str)] = &[
    ("revoked", "The key was revoked: it stops working now, and connections using its tokens are closed."),
    ("rotated", "The signing keys were rotated; the previous key stays valid for the overlap."),
];

/// Parses capability rules (`pattern op op…` per line); empty is `None`.
///
/// # Errors
///
/// A message naming the line that is wrong.
pub fn parse_capabilities(text: &str) -> Result<Option<Capabilities>, String> {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).collect::<Vec<_>>())
        .filter(|w| !w.is_empty())
        .collect();
    if lines.is_empty() {
        return Ok(None);
    }
    if let Some(line) = lines.iter().find(|w| w.len() < 2) {
        return Err(format!(
            "the rule {:?} names no operation: write a pattern then its operations, like `chat:* subscribe publish`",
            line.join(" ")
        ));
    }
    Capabilities::from_pairs(lines.iter().map(|w| (w[0], w[1..].iter().copied())))
        .map(Some)
        .map_err(|err| err.to_string())
}

/// Capabilities as the form writes them.
#[must_use]
pub fn capabilities_text(c: &Capabilities) -> String {
    c.iter()
        .map(|(pattern, ops)| {
            let ops: Vec<&str> = ops.iter().map(|op| op.as_str()).collect();
            format!("{} {}", pattern.as_str(), ops.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn keys_table(app: &str, keys: &[ApiKey], used: &HashMap<String, i64>) -> String {
    if keys.is_empty() {
        return "<p>No keys yet.</p>".to_owned();
    }
    let mut rows = String::new();
    for k in keys {
        let state = match k.revoked_at_ms {
            Some(at) => format!("revoked {}", html::time(at)),
            None => format!(
                r#"active · <a href="/console/apps/{}/keys/{}/revoke">Revoke…</a>"#,
                url(app),
                url(k.id.as_str())
            ),
        };
        let _ = write!(
            rows,
            r#"<tr><td><code>{}</code></td><td>{}</td><td><pre class="inline">{}</pre></td><td>{}</td><td>{}</td><td>{}</td><td>{state}</td></tr>"#,
            e(k.id.as_str()),
            e(&k.name),
            e(&capabilities_text(&k.capabilities)),
            if k.pusher_secret.is_some() { "yes" } else { "no" },
            html::time(k.created_at_ms),
            used.get(k.id.as_str()).map_or_else(|| "never".to_owned(), |at| html::time(*at)),
        );
    }
    format!(
        r#"<div class="scroll"><table><caption>API keys</caption><thead><tr><th scope="col">Id</th><th scope="col">Name</th><th scope="col">Capabilities</th><th scope="col">Pusher secret</th><th scope="col">Created</th><th scope="col">Last used</th><th scope="col">State</th></tr></thead><tbody>{rows}</tbody></table></div>"#
    )
}

fn keys_page(
    app: &str,
    keys: &[ApiKey],
    used: &HashMap<String, i64>,
    csrf: &str,
    form: &Form,
    errors: &FieldErrors,
    top: &str,
) -> String {
    let body = format!(
        r#"{top}{table}<h2>Create a key</h2><form method="post" action="/console/apps/{uid}/keys" class="card">{c}{name}{caps}{pusher}<button type="submit">Create key</button></form>
<h2>Signing keys</h2><form method="post" action="/console/signing-keys/rotate" class="card">{c}<input type="hidden" name="back" value="/console/apps/{uid}/keys"><p>Rotating makes a new key sign tokens; tokens signed with the previous one stay valid for the overlap (all apps).</p><button type="submit">Rotate signing keys</button></form>"#,
        table = keys_table(app, keys, used),
        uid = url(app),
        c = csrf_field(csrf),
        name = field("name", "Name", "text", form.raw("name"), errors.of("name"), "What uses it, e.g. backend."),
        caps = field(
            "capabilities",
            "Capabilities",
            "textarea",
            form.raw("capabilities"),
            errors.of("capabilities"),
            "One rule per line: pattern then operations (subscribe publish presence history), e.g. chat:* subscribe publish. Empty: everything."
        ),
        pusher = checkbox(
            "pusher",
            "With a Pusher secret (signs Pusher auth and HTTP API requests)",
            form.checked("pusher")
        ),
    );
    html::page(&Layout { title: "Keys", csrf: Some(csrf), app: Some((app, "/keys")) }, &body)
}

async fn list(
    state: Shared,
    session: Session,
    Path(app): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> PageResult {
    let keys = state.core.list_keys(&Principal::Admin, &app).await?;
    let used = state.core.keys_last_used(&Principal::Admin, &app).await?;
    let page =
        keys_page(&app, &keys, &used, &session.csrf, &Form::default(), &FieldErrors::default(), &done_notice(&q, DONE));
    Ok(ok_page(page))
}

async fn create(state: Shared, Path(app): Path<String>, request: Request) -> PageResult {
    let (session, form) = Session::read_form(request, &state.core).await?;
    let mut errors = FieldErrors::default();
    let caps = parse_capabilities(form.raw("capabilities")).unwrap_or_else(|msg| {
        errors.add("capabilities", msg);
        None
    });
    if errors.is_empty() {
        let made =
            state.core.create_key_with(&Principal::Admin, &app, form.text("name"), caps, form.checked("pusher")).await;
        match made {
            Ok((key, whole)) => {
                let mut top = html::notice("ok", "The key was created.");
                top.push_str(&secret("new-key", "API key", &whole));
                if let Some(p) = &key.pusher_secret {
                    top.push_str(&secret("new-pusher-secret", "Pusher secret", p));
                }
                let keys = state.core.list_keys(&Principal::Admin, &app).await?;
                let used = state.core.keys_last_used(&Principal::Admin, &app).await?;
                return Ok(ok_page(keys_page(
                    &app,
                    &keys,
                    &used,
                    &session.csrf,
                    &Form::default(),
                    &FieldErrors::default(),
                    &top,
                )));
            }
            Err(err) if err.code.http_status() == 404 || err.code.http_status() >= 500 => return Err(err.into()),
            Err(err) => {
                let at = if err.message.contains("capabilit") { "capabilities" } else { "name" };
                errors.add(at, err.message.to_string());
            }
        }
    }
    let keys = state.core.list_keys(&Principal::Admin, &app).await?;
    let used = state.core.keys_last_used(&Principal::Admin, &app).await?;
    let top = html::notice("error", "The key was not created: correct the fields marked below.");
    let page = keys_page(&app, &keys, &used, &session.csrf, &form, &errors, &top);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::response::Html(page)).into_response())
}

async fn confirm_revoke(state: Shared, session: Session, Path((app, key)): Path<(String, String)>) -> PageResult {
    let keys = state.core.list_keys(&Principal::Admin, &app).await?;
    let Some(k) = keys.iter().find(|k| k.id.as_str() == key) else {
        return Err(crate::error::ApiError::not_found(format!("app {app:?} has no key {key:?}")).into());
    };
    let body = format!(
        r#"<p>Revoke the key <code>{id}</code> (<strong>{name}</strong>)? It stops working at once and connections holding tokens it minted are closed.</p>
<form method="post" action="/console/apps/{uapp}/keys/{ukey}/revoke" class="card">{csrf}<button type="submit" class="danger">Revoke the key</button> <a href="/console/apps/{uapp}/keys">Cancel</a></form>"#,
        id = e(k.id.as_str()),
        name = e(&k.name),
        uapp = url(&app),
        ukey = url(&key),
        csrf = csrf_field(&session.csrf),
    );
    Ok(ok_page(html::page(
        &Layout { title: "Revoke key", csrf: Some(&session.csrf), app: Some((&app, "/keys")) },
        &body,
    )))
}

async fn revoke(state: Shared, Path((app, key)): Path<(String, String)>, request: Request) -> PageResult {
    let _ = Session::read_form(request, &state.core).await?;
    state.core.revoke_key(&Principal::Admin, &app, &key).await?;
    Ok(see_other(&format!("/console/apps/{}/keys?done=revoked", url(&app))))
}

async fn rotate(state: Shared, request: Request) -> PageResult {
    let (_, form) = Session::read_form(request, &state.core).await?;
    state.core.rotate_signing_keys(&Principal::Admin, None).await?;
    // Back to the console page the form was on.
    let back = Some(form.text("back"))
        .filter(|p| {
            p.starts_with("/console/apps/") && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"/%-_.~".contains(&b))
        })
        .unwrap_or("/console/apps");
    Ok(see_other(&format!("{back}?done=rotated")))
}
