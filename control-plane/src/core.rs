//! [`Core`]: the shared state of one control plane — config, store, caches,
//! signer, publisher, metrics, what edges reported — and its wiring:
//! readiness, publishing control events (with retries) and applying those
//! of other replicas to this one's caches.
//!
//! The operations live in the `services` module, one module per noun, as
//! methods on `Core`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use herald_proto::{AppId, KeyId, bus};
use tokio::sync::{Notify, mpsc};

use crate::auth::Auth;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::namespace_cache::NamespaceCache;
use crate::publish::Publisher;
use crate::reports::Reports;
use crate::store::Store;
use crate::tokens::Signer;
use crate::webhooks::Webhooks;

/// The shared state of one control plane; the operations both APIs expose
/// are its methods, in the `services` module.
pub struct Core {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) auth: Auth,
    pub(crate) signer: Signer,
    pub(crate) publisher: Publisher,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ready: AtomicBool,
    pub(crate) refresh_signer: Notify,
    pub(crate) retry_events: mpsc::Sender<bus::ControlEvent>,
    pub(crate) namespaces: NamespaceCache,
    pub(crate) reports: Reports,
    pub(crate) webhooks: Webhooks,
    pub(crate) usage: crate::usage::Usage,
    /// This replica's debug tap: debug events of the apps someone watches.
    pub(crate) tap: herald_bus::debug_tap::DebugTap,
    /// The debug-event watchers this replica serves.
    pub(crate) debug_watchers: crate::debug_tap::Watchers,
    /// The HTTP connections this replica serves.
    pub(crate) connections: Arc<crate::connections::Connections>,
}

impl Core {
    /// Whether the database and the bus are reachable, and the server is
    /// not shutting down. Returns the failing parts. `/readyz` and the gRPC
    /// health service both answer from this.
    pub async fn readiness(&self) -> Result<(), Vec<&'static str>> {
        let mut failing = Vec::new();
        if !self.ready.load(Ordering::Acquire) {
            failing.push("shutting_down");
        }
        let timeout = self.config.readiness_timeout.0;
        if !matches!(tokio::time::timeout(timeout, self.store.ping()).await, Ok(Ok(()))) {
            failing.push("database");
        }
        if !self.publisher.is_connected() {
            failing.push("bus");
        }
        if failing.is_empty() { Ok(()) } else { Err(failing) }
    }

    /// Publishes a control event; on failure, queues it for retries in the
    /// background. Returns whether it went out now.
    pub(crate) async fn notify(&self, kind: bus::control_event::Kind) -> bool {
        let event = bus::ControlEvent { timestamp_ms: herald_bus::now_ms(), kind: Some(kind) };
        match self.publisher.bus().publish_control(&event).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "control event not published; retrying in the background");
                if self.retry_events.try_send(event).is_err() {
                    tracing::error!("control event retry queue full; event dropped");
                }
                false
            }
        }
    }

    /// Reloads what the JWKS serves, so that this replica lists a
    /// revocation from its answer on (other replicas within a second: they
    /// reload a JWKS older than that before serving it). A failure leaves it
    /// to those reloads.
    pub(crate) async fn list_revocations_now(&self) {
        if let Err(e) = self.signer.refresh().await {
            tracing::warn!(error = %e, "jwks not reloaded after a revocation");
        }
    }

    /// Applies a control event from another replica to this one's caches.
    pub(crate) fn on_control(&self, event: &bus::ControlEvent) {
        use bus::control_event::Kind;
        match &event.kind {
            Some(Kind::KeyRevoked(k)) => {
                if let (Ok(id), Ok(app)) = (KeyId::new(&k.key_id), AppId::new(&k.app_id)) {
                    self.auth.evict_key(&id, &app);
                }
            }
            Some(Kind::AppDeleted(a)) => {
                if let Ok(id) = AppId::new(&a.app_id) {
                    self.auth.evict_app(&id);
                    self.namespaces.evict(&id);
                    self.publisher.forget_app(&id);
                }
            }
            Some(Kind::NamespacesChanged(a)) => {
                // Sent for namespace changes, and for Pusher settings and
                // keys (edges cache them with the namespaces).
                if let Ok(id) = AppId::new(&a.app_id) {
                    self.namespaces.evict(&id);
                    self.auth.evict_app(&id);
                }
                // Webhook endpoints changed too, perhaps.
                self.webhooks.changed();
            }
            // Quota states: every replica works its own out from the store.
            Some(
                Kind::PresenceSyncAll(_)
                | Kind::UserTerminated(_)
                | Kind::UserEvent(_)
                | Kind::OccupancySync(_)
                | Kind::QuotaState(_),
            ) => {}
            Some(Kind::DebugTapOn(_)) => self.tap.on_control(event),
            Some(Kind::AppLimitsChanged(a)) => {
                if let Ok(id) = AppId::new(&a.app_id) {
                    self.auth.evict_app(&id);
                }
            }
            Some(Kind::AppStatusChanged(a)) => {
                if let Ok(id) = AppId::new(&a.app_id) {
                    self.auth.evict_app(&id);
                    self.namespaces.evict(&id);
                }
            }
            Some(Kind::SigningKeysRotated(r)) if r.current_kid != self.signer.current_kid() => {
                self.refresh_signer.notify_one();
            }
            Some(Kind::SigningKeysRotated(_)) => {}
            None => {}
        }
    }
}
