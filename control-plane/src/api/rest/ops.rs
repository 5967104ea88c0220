//! HTTP infrastructure: liveness, readiness, metrics and the JWKS (no
//! gRPC counterpart: probes, Prometheus and edges use them over HTTP).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Shared, TAG_OPS};
use crate::tokens::Jwks;

/// `/readyz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// What is not ready: `database`, `bus`, `shutting_down`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

/// Liveness: the process serves requests.
#[utoipa::path(get, path = "/healthz", tag = TAG_OPS, responses((status = 200, description = "alive")))]
pub(super) async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the database and the bus are reachable.
#[utoipa::path(get, path = "/readyz", tag = TAG_OPS, responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub(super) async fn readyz(State(core): Shared) -> Response {
    match core.readiness().await {
        Ok(()) => Json(Readiness { status: "ready".into(), failing: vec![] }).into_response(),
        Err(failing) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness { status: "not_ready".into(), failing: failing.into_iter().map(String::from).collect() }),
        )
            .into_response(),
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = TAG_OPS, responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(super) async fn metrics(State(core): Shared) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], core.metrics.render()).into_response()
}

/// The public keys that verify tokens: the current one and those still in
/// their overlap.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = TAG_OPS, responses((status = 200, body = Jwks)))]
pub(super) async fn jwks(State(core): Shared) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=60")], Json(core.jwks().await)).into_response()
}
