//! The web console under `/console`: server-rendered administration pages
//! (apps, keys, channels, the event creator and token generator,
//! namespaces, webhooks) and live ones (an app's overview charts, its debug
//! events, its usage) for operators, signed in with the admin token or a
//! one-time login link.
//!
//! Every page calls the same [`Core`] service methods as REST and gRPC, as
//! [`Principal::Admin`](crate::auth::Principal::Admin): the console adds
//! no checks of its own beyond its session and CSRF token. Forms are plain
//! POSTs answered with a 303 (post/redirect/get); JavaScript
//! (`assets/console.js`) adds copy buttons, refreshes live lists, draws the
//! overview's charts and shows the debug stream.
//!
//! - this module: the router, the security headers on every response
//!   (including redirects and errors), the error page, expiry of old
//!   sessions and links;
//! - [`html`]: escaping and the layout;
//! - [`session`]: sessions, sign-in and out, login links, the sign-in
//!   rate limit;
//! - [`form`]: the form extractor (bounded body, CSRF check);
//! - one module per page group: [`apps`], [`overview`], [`keys`],
//!   [`channels`], [`debug`] (the debug console and its session stream),
//!   [`tools`] (event creator, token generator), [`namespaces`],
//!   [`webhooks`], [`usage`].

pub mod apps;
pub mod channels;
pub mod debug;
pub mod form;
pub mod html;
pub mod keys;
pub mod namespaces;
pub mod overview;
pub mod session;
pub mod tools;
pub mod usage;
pub mod webhooks;

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use herald_proto::ErrorCode;

use crate::core::Core;
use crate::error::ApiError;

pub use session::create_login_link;

/// The console's shared state.
pub struct Console {
    /// The control plane.
    pub core: Arc<Core>,
    /// Failed sign-ins per client IP.
    pub limiter: session::SigninLimiter,
}

type Shared = axum::extract::State<Arc<Console>>;

/// The Content-Security-Policy of every console response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's routes, under `/console`, with their headers.
pub fn router(core: Arc<Core>) -> Router {
    let limiter = session::SigninLimiter::new(core.config.console_signin_attempts, core.config.console_signin_clients);
    let console = Arc::new(Console { core, limiter });
    let inner = Router::new()
        .route("/", get(home))
        .route("/assets/console.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
        .route("/assets/console.js", get(|| async { asset(JS, "text/javascript; charset=utf-8") }))
        .merge(session::routes())
        .merge(apps::routes())
        .merge(keys::routes())
        .merge(channels::routes())
        .merge(tools::routes())
        .merge(namespaces::routes())
        .merge(webhooks::routes())
        .merge(overview::routes())
        .merge(debug::routes())
        .merge(usage::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(console);
    Router::new()
        .nest("/console", inner)
        .route("/console/", get(|| async { Redirect::to("/console") }))
        .layer(axum::middleware::map_response(headers))
}

async fn home() -> Redirect {
    Redirect::to("/console/apps")
}

fn asset(text: &'static str, kind: &'static str) -> Response {
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=300"));
    r
}

/// Adds the security headers to every console response; pages (everything
/// but the assets) get `Cache-Control: no-store`.
async fn headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

async fn not_found() -> Response {
    Failure::new(StatusCode::NOT_FOUND, "Not found", "There is no console page at this address.").into_response()
}

async fn method_not_allowed() -> Response {
    Failure::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", "This page does not take that method.")
        .into_response()
}

/// Why a console request failed: an error page (never a 401, never a 500
/// for bad input), or a redirect to the sign-in page.
#[derive(Debug)]
pub enum Failure {
    /// An error page.
    Page {
        /// Its status.
        status: StatusCode,
        /// Its title.
        title: &'static str,
        /// What went wrong (escaped when shown).
        message: String,
    },
    /// Not signed in: 303 to the sign-in page.
    SignIn,
}

impl Failure {
    /// An error page.
    #[must_use]
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        Self::Page { status, title, message: message.into() }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        let status = match e.code {
            // The console is signed in as the admin: these never reach a
            // visitor as a demand for credentials.
            ErrorCode::Unauthorized => StatusCode::FORBIDDEN,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            code => StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
        };
        let title = match status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Forbidden",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            s if s.is_server_error() => "Server error",
            _ => "Request refused",
        };
        Self::Page { status, title, message: e.message.into_owned() }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/console/signin").into_response(),
            Self::Page { status, title, message } => {
                let body =
                    format!(r#"{}<p><a href="/console">Back to the console</a></p>"#, html::notice("error", &message));
                let layout = html::Layout { title, csrf: None, app: None };
                (status, axum::response::Html(html::page(&layout, &body))).into_response()
            }
        }
    }
}

/// A console handler's result.
pub type PageResult = Result<Response, Failure>;

/// An HTML page response.
#[must_use]
pub fn ok_page(html: String) -> Response {
    axum::response::Html(html).into_response()
}

/// A 303 to `to` (post/redirect/get).
#[must_use]
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Deletes expired sessions and login links every minute while `core`
/// lives.
pub async fn purge_loop(core: Weak<Core>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        match core.store.purge_console(herald_bus::now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "expired console sessions and links deleted"),
            Err(e) => tracing::warn!(error = %e, "expired console sessions not deleted; retrying in a minute"),
        }
    }
}
