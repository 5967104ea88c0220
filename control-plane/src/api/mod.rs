//! The APIs: [`rest`] (axum) and [`grpc`] (tonic), served together on one
//! port. HTTP/1.1 and h2c requests go to the REST routes; requests with
//! `content-type: application/grpc` on a `/herald.api.v1.<Service>/<Method>`
//! path go to the gRPC services.

pub mod grpc;
pub mod rest;

use std::sync::Arc;

use axum::Router;

use crate::core::Core;

/// The router serving both APIs.
pub fn router(core: Arc<Core>) -> Router {
    grpc::add_services(rest::router(core.clone()), core)
}
