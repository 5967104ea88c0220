//! Sessions: signing in with the admin token (a form) or a one-time login
//! link, signing out, and the session every other page needs.
//!
//! A session id is 32 random bytes (hex) in an `HttpOnly; SameSite=Strict;
//! Path=/console` cookie, `Secure` when the request came over HTTPS (or
//! `console_secure_cookies` is set). The database holds only its SHA-256,
//! with its expiry and its CSRF token, so sessions survive restarts and
//! work on every replica. Login links hold a token stored the same way,
//! deleted on use. Failed sign-ins are counted per client IP in a bounded
//! table ([`SigninLimiter`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use herald_bus::now_ms;

use super::form::Form;
use super::html::{self, Layout};
use super::{Console, Failure, PageResult, Shared};
use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::keys::constant_time_eq;
use crate::services::console::{hashed, random_hex};

/// The session cookie's name.
pub const COOKIE: &str = "herald_console";

/// Longest admin token the sign-in form takes, in bytes.
const MAX_TOKEN_BYTES: usize = 1024;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .route("/login/{token}", get(login_link))
}

/// Creates a one-time login link's token (valid for `console_link_ttl`):
/// the console signs in whoever opens `/console/login/<token>` first.
///
/// # Errors
///
/// As [`Core::create_console_link`].
pub async fn create_login_link(core: &Core) -> Result<String, ApiError> {
    Ok(core.create_console_link(&Principal::Admin).await?.token)
}

/// A signed-in request's session.
pub struct Session {
    /// The SHA-256 (hex) of the session id.
    pub id_hash: String,
    /// The CSRF token every form of this session carries.
    pub csrf: String,
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

impl Session {
    /// The session of `headers`' cookie, if it is live.
    ///
    /// # Errors
    ///
    /// [`Failure`] when the database fails.
    pub async fn of(headers: &HeaderMap, core: &Core) -> Result<Option<Self>, Failure> {
        let Some(id) = cookie_value(headers, COOKIE) else { return Ok(None) };
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let id_hash = hashed(id);
        let csrf = core.store.console_session(&id_hash, now_ms()).await.map_err(ApiError::from)?;
        Ok(csrf.map(|csrf| Self { id_hash, csrf }))
    }

    /// Reads the form of a signed-in request and checks its CSRF token.
    ///
    /// # Errors
    ///
    /// [`Failure::SignIn`] without a session, a 403 page for a missing or
    /// wrong CSRF token, and as [`Form::read`].
    pub async fn read_form(request: Request, core: &Core) -> Result<(Self, Form), Failure> {
        let session = Self::of(request.headers(), core).await?.ok_or(Failure::SignIn)?;
        let form = Form::read(request, core).await?;
        if !session.csrf_ok(form.text("csrf")) {
            tracing::info!("console form refused: missing or wrong CSRF token");
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form's security token is missing or wrong (was it sent from another page or session?). \
                 Nothing was changed: reload the page and try again.",
            ));
        }
        Ok((session, form))
    }

    /// Whether `token` is this session's CSRF token (constant time).
    #[must_use]
    pub fn csrf_ok(&self, token: &str) -> bool {
        constant_time_eq(token.as_bytes(), self.csrf.as_bytes())
    }
}

impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Self, Failure> {
        Self::of(&parts.headers, &console.core).await?.ok_or(Failure::SignIn)
    }
}

/// Creates a session; returns the `Set-Cookie` value.
async fn new_session(console: &Console, headers: &HeaderMap) -> Result<HeaderValue, Failure> {
    let core = &console.core;
    let (id, csrf) = (random_hex()?, random_hex()?);
    let now = now_ms();
    let ttl = core.config.console_session_ttl.0;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    core.store
        .insert_console_session(&hashed(&id), &csrf, now, now.saturating_add(ttl_ms))
        .await
        .map_err(ApiError::from)?;
    let secure = core.config.console_secure_cookies || over_tls(headers);
    let cookie = format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    HeaderValue::from_str(&cookie).map_err(|_| Failure::from(ApiError::internal()))
}

/// Whether the request came over HTTPS, as a TLS-terminating proxy says.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').next().is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

fn signed_in(cookie: HeaderValue) -> Response {
    let mut r = super::see_other("/console");
    r.headers_mut().insert(header::SET_COOKIE, cookie);
    r
}

fn signin_form(message: Option<&str>, status: StatusCode) -> Response {
    let notice = message.map(|m| html::notice("error", m)).unwrap_or_default();
    let body = format!(
        r#"{notice}<form method="post" action="/console/signin" class="card">
{}
<p class="hint">Or open a one-time login link: <code>herald dev</code> prints one at start.</p>
<button type="submit">Sign in</button></form>"#,
        html::field("token", "Admin token", "password", "", None, "The control plane's admin_token.")
    );
    let page = html::page(&Layout { title: "Sign in", csrf: None, app: None }, &body);
    (status, axum::response::Html(page)).into_response()
}

async fn signin_page(state: Shared, headers: HeaderMap) -> PageResult {
    if Session::of(&headers, &state.core).await?.is_some() {
        return Ok(super::see_other("/console"));
    }
    Ok(signin_form(None, StatusCode::OK))
}

/// The client's IP (the peer address the server recorded).
fn client_ip(parts: &axum::http::Extensions) -> IpAddr {
    parts.get::<axum::extract::ConnectInfo<SocketAddr>>().map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip())
}

async fn signin(state: Shared, request: axum::extract::Request) -> PageResult {
    let ip = client_ip(request.extensions());
    let headers = request.headers().clone();
    let form = Form::read(request, &state.core).await?;
    if !state.limiter.allowed(ip) {
        return Ok(signin_form(
            Some("Too many failed sign-ins from this address: wait a minute and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        ));
    }
    let token = form.text("token");
    let bearer = format!("Bearer {token}");
    let admin = !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && matches!(state.core.auth.authenticate(Some(bearer.as_str())).await, Ok(Principal::Admin));
    if !admin {
        state.limiter.failed(ip);
        tracing::info!(%ip, "console sign-in refused");
        return Ok(signin_form(Some("That is not the admin token."), StatusCode::FORBIDDEN));
    }
    tracing::info!(%ip, "console sign-in with the admin token");
    Ok(signed_in(new_session(&state, &headers).await?))
}

async fn signout(state: Shared, request: axum::extract::Request) -> PageResult {
    let (session, _form) = Session::read_form(request, &state.core).await?;
    state.core.store.delete_console_session(&session.id_hash).await.map_err(ApiError::from)?;
    let mut r = super::see_other("/console/signin");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("herald_console=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(r)
}

async fn login_link(state: Shared, headers: HeaderMap, Path(token): Path<String>) -> PageResult {
    let valid = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid || !state.core.store.take_console_link(&hashed(&token), now_ms()).await.map_err(ApiError::from)? {
        let body = format!(
            r#"{}<p><a href="/console/signin">Sign in with the admin token</a></p>"#,
            html::notice("error", "This login link is unknown, expired or already used: a link signs in once.")
        );
        let page = html::page(&Layout { title: "Login link not valid", csrf: None, app: None }, &body);
        return Ok((StatusCode::FORBIDDEN, axum::response::Html(page)).into_response());
    }
    tracing::info!("console sign-in with a login link");
    Ok(signed_in(new_session(&state, &headers).await?))
}

/// Failed sign-ins per client IP in the current minute, for at most
/// `max_clients` IPs: at the limit, expired entries go first, and when
/// none has expired sign-ins from new IPs are refused (never unbounded).
pub struct SigninLimiter {
    attempts: u32,
    max_clients: usize,
    table: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl SigninLimiter {
    /// A limiter allowing `attempts` failures per IP per minute.
    #[must_use]
    pub fn new(attempts: u32, max_clients: usize) -> Self {
        Self { attempts, max_clients, table: Mutex::new(HashMap::new()) }
    }

    /// Whether `ip` may try to sign in now.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match table.get(&ip) {
            Some((start, n)) if start.elapsed() < WINDOW => *n < self.attempts,
            Some(_) => {
                table.remove(&ip);
                true
            }
            None if table.len() >= self.max_clients => {
                table.retain(|_, (start, _)| start.elapsed() < WINDOW);
                table.len() < self.max_clients
            }
            None => true,
        }
    }

    /// Counts a failed sign-in of `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let mut table = self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !table.contains_key(&ip) && table.len() >= self.max_clients {
            table.retain(|_, (start, _)| start.elapsed() < WINDOW);
            if table.len() >= self.max_clients {
                return;
            }
        }
        let entry = table.entry(ip).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_is_bounded() {
        let l = SigninLimiter::new(2, 2);
        let a = IpAddr::from([10, 0, 0, 1]);
        assert!(l.allowed(a));
        l.failed(a);
        l.failed(a);
        assert!(!l.allowed(a));
        l.failed(IpAddr::from([10, 0, 0, 2]));
        // The table is full: a third client is refused.
        assert!(!l.allowed(IpAddr::from([10, 0, 0, 3])));
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; herald_console=abc; b=2"));
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
        assert!(!over_tls(&h));
    }
}
