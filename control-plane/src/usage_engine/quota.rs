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
use crate::usage::{QuotaVerdict, month_start};

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
    let ttl = crate::usage::gauge_ttl(&core.config);
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
    let ended: Vec<AppId> = core.usage.replace_verdicts(verdicts.clone());
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
