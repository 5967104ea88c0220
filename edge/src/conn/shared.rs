//! What every connection of an edge shares: the hub, the token verifier,
//! the webhook reporter, the configuration, and the count of open
//! connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

use crate::auth::Verifier;
use crate::config::EdgeConfig;
use crate::hub::Hub;
use crate::webhooks::WebhookReporter;

/// What every connection of an edge shares.
pub(crate) struct Shared {
    pub hub: Arc<Hub>,
    pub verifier: Verifier,
    /// Reports client events and cache misses the app's webhooks want.
    pub webhooks: WebhookReporter,
    pub config: EdgeConfig,
    pub edge_id: String,
    /// WebSocket connections open now, authenticated or not.
    pub open: AtomicUsize,
    /// Becomes true when the edge starts draining.
    pub draining: watch::Receiver<bool>,
}

/// Decrements the open-connection count when the connection ends.
pub(crate) struct OpenGuard(pub(crate) Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}
