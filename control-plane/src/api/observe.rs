//! What every request leaves behind: a request id (the caller's
//! `x-request-id` when it is a sane one, else a new one; returned in the
//! answer's `x-request-id`), a count and a latency in
//! `herald_cp_requests_total` / `herald_cp_request_duration_seconds` by API,
//! route and status, and one access-log line (`herald::access`: method,
//! route, status, latency, app, request id — the route template, never the
//! query string, so no signature or secret reaches a log), and, when
//! traces are exported, a server span that honours the caller's
//! `traceparent` (a publish carries it on to the edges' delivery spans).
//!
//! The route is the matched template (`/v1/apps/{app_id}/keys`), never the
//! raw path, so an attacker's paths cannot grow the metrics: an unmatched
//! request is `unmatched`. gRPC requests are `/<Service>/<Method>` with
//! the `grpc-status` of a trailers-only answer (errors) or `0`; a method
//! the service does not know is `unknown`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header::HeaderName};
use axum::middleware::Next;
use axum::response::Response;
use herald_proto::AppId;
use tracing::Instrument as _;

use crate::core::Core;

/// The request id header, read and answered.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a caller.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Which API a request went to.
fn api_of(route: &str, grpc: bool) -> &'static str {
    if grpc {
        "grpc"
    } else if route.starts_with("/apps/") {
        "pusher"
    } else {
        "rest"
    }
}

/// The one layer every request goes through, on every route and the
/// fallback (where the matched route template is known): the request id,
/// the API the request came through for its publishes' debug events
/// ([`crate::debug_tap::with_source`]), the request's span, the metrics
/// and the access log.
pub(crate) async fn observe(State(core): State<Arc<Core>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id =
        request.headers().get(&REQUEST_ID).filter(|v| is_sane_id(v.as_bytes())).cloned().unwrap_or_else(new_request_id);
    request.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    let method = request.method().clone();
    let grpc = crate::api::grpc::is_grpc(request.headers());
    let uri = request.uri().clone();
    let path = uri.path();
    let template = request.extensions().get::<MatchedPath>().cloned();
    let source = if grpc {
        "grpc"
    } else if path.starts_with("/apps/") {
        "pusher_http"
    } else {
        "rest"
    };
    // Only a matched route gets a span (its name is the route template).
    let span = match &template {
        Some(t) => trace_span(&request, Some(t)),
        None => tracing::Span::none(),
    };
    let run = next.run(request).instrument(span.clone());
    let mut response = crate::debug_tap::with_source(source, run).await;
    if !span.is_none() {
        span.record("http.response.status_code", response.status().as_u16());
        if let Some(status) = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()) {
            span.record("rpc.grpc.status_code", status);
        }
    }
    let latency = started.elapsed();
    response.headers_mut().insert(REQUEST_ID.clone(), id.clone());

    let template = template.as_ref().map(MatchedPath::as_str);
    let code = response.status();
    let (route, status) = if grpc {
        let status = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0");
        // 12: unimplemented — a method name the caller made up.
        let route = if template.is_some() && status != "12" { path } else { "unknown" };
        (route, status)
    } else {
        (template.unwrap_or("unmatched"), code.as_str())
    };
    let api = api_of(route, grpc);
    core.metrics.request(api, method.as_str(), route, status, latency);
    if core.config.access_log {
        let app = template.and_then(|t| app_of(t, path));
        tracing::info!(
            target: "herald::access",
            api,
            method = %method,
            route = %route,
            status = %status,
            latency_ms = latency.as_secs_f64() * 1000.0,
            app = app.as_ref().map(AppId::as_str).unwrap_or(""),
            request_id = id.to_str().unwrap_or(""),
        );
    }
    response
}

/// The request's span when traces are exported (none otherwise): a
/// server span named after the method and the matched route (gRPC: its
/// `/Service/Method` path), the child of the caller's `traceparent` when it
/// sends a valid one; its status is recorded when it ends.
fn trace_span(request: &Request, template: Option<&MatchedPath>) -> tracing::Span {
    if !herald_bus::trace::enabled() {
        return tracing::Span::none();
    }
    let grpc = crate::api::grpc::is_grpc(request.headers());
    let route = if grpc { request.uri().path() } else { template.map_or("unmatched", MatchedPath::as_str) };
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
        http.response.status_code = tracing::field::Empty,
        rpc.grpc.status_code = tracing::field::Empty,
        request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or(""),
    );
    if let Some(parent) = request.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        herald_bus::trace::follow(&span, parent);
    }
    span
}

/// A caller's request id is kept when it is 1–128 visible ASCII bytes.
fn is_sane_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// A new request id: 20 random letters and digits.
fn new_request_id() -> HeaderValue {
    HeaderValue::from_str(&crate::keys::random_alnum(20)).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// The app a path names, where its template has `{app_id}` (REST) —
/// only a valid app id, so nothing the caller made up reaches the log.
fn app_of(template: &str, path: &str) -> Option<AppId> {
    let at = template.split('/').position(|s| s == "{app_id}")?;
    AppId::new(path.split('/').nth(at)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert!(is_sane_id(b"abc-123_X"));
        assert!(!is_sane_id(b""));
        assert!(!is_sane_id(b"has space"));
        assert!(!is_sane_id(&[b'a'; 129]));
        assert_eq!(new_request_id().len(), 20);
    }

    #[test]
    fn the_app_comes_from_the_template() {
        let app = app_of("/v1/apps/{app_id}/keys", "/v1/apps/app_abc/keys");
        assert_eq!(app.as_ref().map(AppId::as_str), Some("app_abc"));
        assert!(app_of("/v1/apps", "/v1/apps").is_none());
        assert!(app_of("/v1/apps/{app_id}", "/v1/apps/not an id").is_none());
        assert_eq!(api_of("/apps/{app_id}/events", false), "pusher");
        assert_eq!(api_of("/v1/apps", false), "rest");
    }
}
