//! Storing this replica's own usage counts every report interval.

use std::sync::Weak;

use herald_bus::usage::Reporter;

use crate::core::Core;

pub(super) async fn run(core: Weak<Core>) {
    let (interval, max_pending) = match core.upgrade() {
        Some(c) => (c.config.usage_report_interval.0, c.config.usage_max_pending_apps as usize),
        None => return,
    };
    let node = format!("cp-{:016x}", rand_u64());
    let mut reporter = Reporter::new(node, max_pending);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        let fresh = core.usage.drain();
        let Some(report) = reporter.next_report(fresh, Vec::new(), herald_bus::now_ms()) else { continue };
        if super::sink::store(&core, &report).await.is_ok() {
            reporter.acknowledged(&report);
        }
    }
}

/// A random id for this replica's usage batches (their sequence starts at
/// 1 on every start).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_i64(herald_bus::now_ms());
    h.finish()
}
