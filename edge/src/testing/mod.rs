//! Test support (feature `test-support`): a signing authority that serves
//! its JWKS like the control plane does, an edge started on port 0, and a
//! raw WebSocket client that can send anything — including what a correct
//! client never would.
//!
//! # Layout
//!
//! - `authority`: [`TestAuthority`], tokens and the JWKS they are checked
//!   against.
//! - `bus`: NATS buses in unique subject spaces, [`StaticNamespaces`] and
//!   [`NatsServer`].
//! - `edge`: [`TestEdge`] and [`http_get`].
//! - `client`: [`RawClient`] and what it receives.
//! - `pusher`: [`TestApps`] (apps' Pusher settings, served as the control
//!   plane would) and [`PusherClient`], a raw client of `/app/{key}`.

mod authority;
mod bus;
mod client;
mod edge;
mod pusher;

use std::future::Future;
use std::time::Duration;

pub use authority::TestAuthority;
pub use bus::{
    NatsServer, StaticNamespaces, namespace, nats_bus, nats_url, serve_namespaces, serve_source, unique_subjects,
};
pub use client::{RawClient, Received, is_error, is_ok, masked_frame};
pub use edge::{TestEdge, http_get};
pub use pusher::{PusherClient, PusherEvent, PusherReceived, TestApps, pusher_settings};

/// Runs `f` with a deadline, panicking with `what` when it passes.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}
