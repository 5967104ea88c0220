//! The APIs: [`rest`] (axum), [`grpc`] (tonic) and [`pusher`] (Pusher's
//! HTTP API, for apps in Pusher mode), served together on one port.
//! HTTP/1.1 and h2c requests go to the REST routes (`/v1/…`, operations)
//! and the Pusher routes (`/apps/{app_id}/…`); requests with
//! `content-type: application/grpc` on a `/herald.api.v1.<Service>/<Method>`
//! path go to the gRPC services. [`observe`] gives every request an id, a
//! count and latency in the metrics, and an access-log line.

pub mod grpc;
pub mod observe;
pub mod pusher;
pub mod rest;
pub mod strict_json;

use std::sync::Arc;

use axum::Router;

use crate::core::Core;

/// The router serving the three APIs, every request observed
/// ([`observe`]: request id, the API it came through, span, metrics,
/// access log) by one layer on every route and the fallback.
pub fn router(core: Arc<Core>) -> Router {
    grpc::add_services(rest::router(core.clone()).merge(pusher::router(core.clone())), core.clone())
        .layer(axum::middleware::from_fn_with_state(core, observe::observe))
}
