//! Deleting usage past its retention; safe on every replica at once (each
//! delete is idempotent).

use std::sync::Weak;
use std::time::Duration;

use crate::core::Core;
use crate::store::UsageUnit;

/// How often old usage is looked for.
const EVERY: Duration = Duration::from_secs(300);

/// How long stored batch ids are kept: far longer than any node keeps a
/// batch it could resend.
const BATCH_IDS_KEPT_MS: i64 = 86_400_000;

pub(super) async fn run(core: Weak<Core>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        let now = herald_bus::now_ms();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        for (unit, keep) in [
            (UsageUnit::Minute, core.config.usage_minute_retention.0),
            (UsageUnit::Hour, core.config.usage_hour_retention.0),
            (UsageUnit::Day, core.config.usage_day_retention.0),
        ] {
            match core.store.delete_usage_before(unit, now.saturating_sub(ms(keep))).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(unit = unit.as_str(), rows = n, "old usage deleted"),
                Err(e) => tracing::warn!(error = %e, "old usage not deleted; next time"),
            }
        }
        let stale = now.saturating_sub(ms(crate::usage::gauge_ttl(&core.config)) * 10);
        if let Err(e) = core.store.forget_usage_batches(now - BATCH_IDS_KEPT_MS, stale).await {
            tracing::warn!(error = %e, "old usage batch ids not forgotten; next time");
        }
    }
}
