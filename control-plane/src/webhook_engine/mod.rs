//! The webhook engine: the tasks that turn bus-wide state changes and
//! edges' reports into signed HTTP requests to customers' endpoints,
//! durably. Its state lives in [`crate::webhooks`], held by the core.
//!
//! - `reconcile`: compares what edges report (the replica's presence and
//!   occupancy tables) with the state last recorded in the database, and
//!   records each difference with its event in one transaction — the state
//!   write is conditional, so of several replicas seeing the same change
//!   one records it. Vacated channels and removed members wait out the
//!   debounce first; an edge that died is counted out by the expiry of its
//!   reports, like presence.
//! - `edge_events`: stores the events edges report (client events, cache
//!   misses).
//! - `deliver`: leases due deliveries from the outbox and sends them, with
//!   retries, per-endpoint fairness and per-channel order; keeps each
//!   endpoint's status and delivery log; test sends.

mod deliver;
mod edge_events;
mod reconcile;

use std::sync::{Arc, Weak};

use tokio::task::JoinHandle;

use crate::core::Core;

pub use deliver::{TestResult, send_test};
pub(crate) use edge_events::Sink as EdgeEventSink;

/// Starts the engine's tasks (aborted when the handles drop).
pub(crate) fn start(core: &Arc<Core>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(reconcile::run(Arc::downgrade(core))),
        tokio::spawn(deliver::run(Arc::downgrade(core))),
        tokio::spawn(deliver::watch_backlog(Arc::downgrade(core))),
    ]
}

/// Reloads the endpoints from the database; returns the apps that got
/// their first one (their channels are all looked at).
pub(crate) async fn reload(core: &Weak<Core>) -> Option<crate::webhooks::Reloaded> {
    let core = core.upgrade()?;
    match core.store.enabled_webhooks().await {
        Ok(list) => {
            let reloaded = core.webhooks.replace(list);
            core.reports.watch(core.webhooks.apps());
            Some(reloaded)
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook endpoints not reloaded");
            None
        }
    }
}
