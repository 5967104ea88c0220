//! The usage tasks of the control plane, filling [`Usage`](crate::usage::Usage):
//!
//! - `sink`: stores the usage reports nodes send over the bus;
//! - `flush`: stores this replica's own counts every report interval;
//! - `quota`: works out every app's quota verdict from the durable usage
//!   and announces those over a quota to edges (`QuotaState`);
//! - `retention`: deletes usage past its retention.

mod flush;
mod quota;
mod retention;
mod sink;

pub use sink::UsageSink;

use std::sync::{Arc, Weak};

use tokio::task::JoinHandle;

use crate::core::Core;

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
