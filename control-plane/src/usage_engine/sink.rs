//! Storing the usage reports nodes send over the bus.

use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;
use herald_proto::bus;

use crate::core::Core;

/// Stores usage reports from the bus in the database.
pub struct UsageSink(pub Weak<Core>);

impl herald_bus::UsageSink for UsageSink {
    fn store(&self, report: bus::UsageReport) -> BoxFuture<'static, Result<(), String>> {
        let core = self.0.clone();
        Box::pin(async move {
            let Some(core) = core.upgrade() else { return Err("control plane stopping".to_owned()) };
            store(&core, &report).await
        })
    }
}

/// Stores `report` now; the error says why not.
pub(crate) async fn store(core: &Arc<Core>, report: &bus::UsageReport) -> Result<(), String> {
    let now = herald_bus::now_ms();
    let fresh_after = now - i64::try_from(crate::usage::gauge_ttl(&core.config).as_millis()).unwrap_or(i64::MAX);
    match core.store.store_usage(report, now, fresh_after).await {
        Ok(stored) => {
            core.metrics.usage_batches(stored.stored, stored.duplicates);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(node = %report.node_id, error = %e, "usage report not stored");
            Err(format!("usage report not stored: {e}"))
        }
    }
}
