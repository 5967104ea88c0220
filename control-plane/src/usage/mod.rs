//! Per-app usage and quotas on the control plane.
//!
//! - Counting: this replica counts what it sees itself (publishes through
//!   REST, gRPC and Pusher's HTTP API, webhook deliveries, refusals of
//!   those) in a [`UsageRegistry`], like an edge does, and stores its
//!   counts every `usage_report_interval` (`flush`).
//! - Reports: edges' usage reports arrive over the bus (one replica of the
//!   queue group answers each) and are stored with
//!   [`Store::store_usage`](crate::store::Store::store_usage) (`sink`).
//! - Quotas (`quota`): every interval each replica works out, from the
//!   durable usage, which apps are over a quota; its publishes check that
//!   table, and it announces the apps over one to edges (`QuotaState`).
//! - Retention (`retention`): old rows deleted per unit, and batch ids and
//!   stale node figures forgotten.

mod flush;
mod quota;
mod retention;
mod sink;

pub use quota::{QuotaVerdict, format_utc_minute, month_start};
pub use sink::UsageSink;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use herald_bus::usage::{AppCounters, UsageRegistry};
use herald_proto::AppId;
use tokio::task::JoinHandle;

use crate::core::Core;

/// This replica's usage counters and the quota verdicts it works out.
#[derive(Debug, Default)]
pub struct Usage {
    registry: Arc<UsageRegistry>,
    verdicts: RwLock<HashMap<AppId, QuotaVerdict>>,
}

impl Usage {
    /// The counters of `app` on this replica.
    #[must_use]
    pub fn counters(&self, app: &AppId) -> Arc<AppCounters> {
        self.registry.app(app)
    }

    /// The app's quota verdict, when it is over a quota.
    #[must_use]
    pub fn verdict(&self, app: &AppId) -> Option<QuotaVerdict> {
        self.verdicts.read().unwrap_or_else(|e| e.into_inner()).get(app).cloned()
    }
}

/// How long usage figures of a node stay counted: three report intervals.
pub(crate) fn gauge_ttl(core: &Core) -> Duration {
    core.config.usage_report_interval.0 * 3
}

/// Works out the apps' quota verdicts now (at start, before serving: a
/// replica that starts refuses what the quotas refuse from its first
/// request). A database failure leaves them to the periodic task.
pub(crate) async fn load_quotas(core: &Arc<Core>) {
    if let Err(e) = quota::evaluate(core).await {
        tracing::warn!(error = %e, "quotas not evaluated at start; retried every usage_report_interval");
    }
}

/// Starts the usage tasks: storing this replica's counts, quotas,
/// retention.
pub(crate) fn start(core: &Arc<Core>) -> Vec<JoinHandle<()>> {
    let weak: Weak<Core> = Arc::downgrade(core);
    vec![
        tokio::spawn(flush::run(weak.clone())),
        tokio::spawn(quota::run(weak.clone())),
        tokio::spawn(retention::run(weak)),
    ]
}
