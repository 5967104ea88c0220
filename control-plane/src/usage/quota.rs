//! Quotas: which apps are over one, worked out by every replica from the
//! durable usage every report interval (so the answer survives a restart
//! and is the same on every replica), and announced to edges.
//!
//! An app is over its message quota when the messages published (every
//! source) in the current UTC day, or the current UTC month, reached the
//! quota; at its connection quota when the connections of every edge (their
//! latest figures) reached it. Publishes of an app over a message quota are
//! refused (`quota_exceeded`); new connections of an app at its connection
//! quota are refused by edges with close code `quota_exceeded`. Edges learn
//! it from `QuotaState` control events, repeated every interval while it
//! holds (and kept for three intervals), and once more when it ends.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use herald_proto::{AppId, bus};

use crate::core::Core;
use crate::store::UsageUnit;

/// Why an app is over a quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaVerdict {
    /// Publishes are refused.
    pub messages_over: bool,
    /// New connections are refused.
    pub connections_over: bool,
    /// Which quota, in words.
    pub reason: String,
}

pub(super) async fn run(core: Weak<Core>) {
    let Some(interval) = core.upgrade().map(|c| c.config.usage_report_interval.0) else { return };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        if let Err(e) = evaluate(&core).await {
            tracing::warn!(error = %e, "quotas not evaluated; the previous verdicts stand");
        }
    }
}

/// Works out every app's verdict now, keeps them, and tells edges.
///
/// # Errors
///
/// Database errors (the previous verdicts stay).
pub(crate) async fn evaluate(core: &Arc<Core>) -> Result<(), crate::store::StoreError> {
    let now = herald_bus::now_ms();
    let (day, month) = (UsageUnit::Day.start(now), month_start(now));
    let ttl = super::gauge_ttl(core);
    let fresh_after = now - i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let mut verdicts = HashMap::new();
    for crate::store::AppQuotas { app, per_day, per_month, connections } in core.store.apps_with_quotas().await? {
        let (used_day, used_month, open) = core.store.usage_for_quota(&app, day, month, fresh_after).await?;
        let mut reasons = Vec::new();
        let mut messages_over = false;
        if let Some(q) = per_day.filter(|q| used_day >= *q) {
            messages_over = true;
            reasons.push(format!("daily message quota of {q} reached"));
        }
        if let Some(q) = per_month.filter(|q| used_month >= *q) {
            messages_over = true;
            reasons.push(format!("monthly message quota of {q} reached"));
        }
        let connections_over = connections.is_some_and(|q| open >= q);
        if let Some(q) = connections.filter(|_| connections_over) {
            reasons.push(format!("connection quota of {q} reached"));
        }
        if messages_over || connections_over {
            let reason = herald_proto::codes::truncate_reason(&reasons.join("; ")).to_owned();
            verdicts.insert(app, QuotaVerdict { messages_over, connections_over, reason });
        }
    }
    let ended: Vec<AppId> = {
        let mut current = core.usage.verdicts.write().unwrap_or_else(|e| e.into_inner());
        let ended = current.keys().filter(|a| !verdicts.contains_key(*a)).cloned().collect();
        *current = verdicts.clone();
        ended
    };
    let ttl_ms = u32::try_from(ttl.as_millis()).unwrap_or(u32::MAX);
    for app in ended {
        tracing::info!(%app, "app back under its quotas");
        let state = bus::QuotaState { app_id: app.to_string(), ttl_ms, ..Default::default() };
        core.notify(bus::control_event::Kind::QuotaState(state)).await;
    }
    core.metrics.apps_over_quota(verdicts.len());
    for (app, v) in verdicts {
        let state = bus::QuotaState {
            app_id: app.to_string(),
            messages_over: v.messages_over,
            connections_over: v.connections_over,
            reason: v.reason,
            ttl_ms,
        };
        core.notify(bus::control_event::Kind::QuotaState(state)).await;
    }
    Ok(())
}

/// The start (Unix ms) of the UTC month holding `t_ms`.
#[must_use]
pub fn month_start(t_ms: i64) -> i64 {
    let days = t_ms.div_euclid(86_400_000);
    let (y, m, _) = civil_from_days(days);
    days_from_civil(y, m, 1) * 86_400_000
}

/// `t_ms` as a UTC date and time to the minute: `2026-12-07 05:12`.
#[must_use]
pub fn format_utc_minute(t_ms: i64) -> String {
    let (y, m, d) = civil_from_days(t_ms.div_euclid(86_400_000));
    let minutes = t_ms.rem_euclid(86_400_000) / 60_000;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", minutes / 60, minutes % 60)
}

/// (year, month, day) of a day count since 1970-01-01 (Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_on_their_first_day() {
        // 2026-12-07T05:00:00Z → 2026-12-01.
        assert_eq!(month_start(1_796_619_600_000), 1_796_083_200_000);
        // 2024-02-29T23:59:59.999Z → 2024-02-01.
        assert_eq!(month_start(1_709_251_199_999), 1_706_745_600_000);
        // The first instant of a month is its own start.
        assert_eq!(month_start(1_706_745_600_000), 1_706_745_600_000);
        assert_eq!(month_start(0), 0);
        assert_eq!(format_utc_minute(1_796_619_600_000), "2026-12-07 05:00");
    }
}
