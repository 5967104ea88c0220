//! Usage counting and reporting: what each node (edge or control plane)
//! counts per app, and how those counts travel to the control plane.
//!
//! - `counters`: [`UsageRegistry`] — per-app atomic counters. The hot path
//!   holds the app's [`AppCounters`] (an `Arc` taken once per connection or
//!   channel) and adds to it with relaxed atomics: no lock and no
//!   allocation per message.
//! - `reporter`: [`Reporter`] — every report interval the node drains its
//!   counters into a batch (node id + sequence), sends the batches not yet
//!   acknowledged in one [`bus::UsageReport`] by request/reply
//!   ([`crate::Bus::report_usage`]), and forgets them once answered. The
//!   batches kept are bounded by a number of app entries; past it the
//!   oldest batches are dropped (and counted in
//!   `herald_usage_dropped_apps_total`).
//! - [`check`]: what makes a report acceptable, checked by the serving side
//!   before the [`UsageSink`](crate::UsageSink) stores it.

mod counters;
mod reporter;

pub use counters::{AppCounters, Refused, Source, UsageRegistry};
pub use reporter::Reporter;

use herald_proto::{AppId, bus};

/// Longest node id, in bytes.
pub const MAX_NODE_ID_LEN: usize = 128;

/// Most batches in one report.
pub const MAX_BATCHES: usize = 1_000;

/// Most app entries (over every batch, and gauges apart) in one report.
pub const MAX_APPS_PER_REPORT: usize = 100_000;

/// Most refusal reasons of one app entry.
pub const MAX_REFUSALS: usize = 64;

/// The error a serving control plane answers when it is storing as many
/// reports as it takes at once (the node retries).
pub const BUSY: &str = "busy: too many usage reports being stored at once; retry";

/// Whether `report` may be stored: a node id, bounded batches with
/// increasing sequences, valid app ids and refusal reasons. The error names
/// the failing field.
///
/// ```
/// use herald_bus::usage::check;
/// use herald_proto::bus;
/// let usage = bus::AppUsage { app_id: "app1".into(), delivered: 10, ..Default::default() };
/// let batch = bus::UsageBatch { seq: 1, timestamp_ms: 1_764_100_000_000, apps: vec![usage] };
/// let report = bus::UsageReport { node_id: "edge-1".into(), batches: vec![batch.clone()], ..Default::default() };
/// assert_eq!(check(&report), Ok(()));
/// let unsequenced = bus::UsageReport { batches: vec![bus::UsageBatch { seq: 0, ..batch }], ..report };
/// assert!(check(&unsequenced).unwrap_err().contains("seq"));
/// ```
///
/// # Errors
///
/// A description of what is wrong, naming the field.
pub fn check(report: &bus::UsageReport) -> Result<(), String> {
    if report.node_id.is_empty() || report.node_id.len() > MAX_NODE_ID_LEN {
        return Err(format!("usage report: node_id must be 1-{MAX_NODE_ID_LEN} bytes"));
    }
    if report.batches.len() > MAX_BATCHES {
        return Err(format!("usage report: batches: at most {MAX_BATCHES}"));
    }
    let entries: usize = report.batches.iter().map(|b| b.apps.len()).sum();
    if entries > MAX_APPS_PER_REPORT || report.gauges.len() > MAX_APPS_PER_REPORT {
        return Err(format!("usage report: apps: at most {MAX_APPS_PER_REPORT} entries"));
    }
    for batch in &report.batches {
        if batch.seq == 0 || i64::try_from(batch.seq).is_err() {
            return Err("usage report: seq must be 1 to 2^63-1".to_owned());
        }
        if batch.timestamp_ms <= 0 {
            return Err("usage report: timestamp_ms must be positive".to_owned());
        }
        for app in &batch.apps {
            check_app(&app.app_id)?;
            if app.refusals.len() > MAX_REFUSALS {
                return Err(format!("usage report: refusals: at most {MAX_REFUSALS} reasons"));
            }
            for refusal in &app.refusals {
                if Refused::from_name(&refusal.reason).is_none() {
                    let shown: String = refusal.reason.chars().take(64).collect();
                    return Err(format!("usage report: refusals: unknown reason {shown:?}"));
                }
            }
        }
    }
    for gauge in &report.gauges {
        check_app(&gauge.app_id)?;
    }
    Ok(())
}

fn check_app(app: &str) -> Result<(), String> {
    AppId::new(app).map(|_| ()).map_err(|e| format!("usage report: app_id: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> bus::UsageReport {
        bus::UsageReport {
            node_id: "edge-1".into(),
            batches: vec![bus::UsageBatch {
                seq: 1,
                timestamp_ms: 1_000,
                apps: vec![bus::AppUsage {
                    app_id: "app1".into(),
                    delivered: 3,
                    refusals: vec![bus::Refusal { reason: "quota_exceeded".into(), count: 1 }],
                    ..Default::default()
                }],
            }],
            gauges: vec![bus::AppGauge { app_id: "app1".into(), connections: 2, channels: 1 }],
            timestamp_ms: 1_000,
        }
    }

    #[test]
    fn accepts_a_valid_report() {
        assert_eq!(check(&report()), Ok(()));
    }

    #[test]
    fn refusals_name_the_field() {
        let mut cases = Vec::new();
        cases.push((bus::UsageReport { node_id: String::new(), ..report() }, "node_id"));
        cases.push((bus::UsageReport { node_id: "n".repeat(MAX_NODE_ID_LEN + 1), ..report() }, "node_id"));
        let mut r = report();
        r.batches[0].seq = 0;
        cases.push((r, "seq"));
        let mut r = report();
        r.batches[0].timestamp_ms = 0;
        cases.push((r, "timestamp_ms"));
        let mut r = report();
        r.batches[0].apps[0].app_id = "a b".into();
        cases.push((r, "app_id"));
        let mut r = report();
        r.batches[0].apps[0].refusals[0].reason = "nonsense".into();
        cases.push((r, "refusals"));
        let mut r = report();
        r.gauges[0].app_id = String::new();
        cases.push((r, "app_id"));
        for (bad, field) in cases {
            let error = check(&bad).expect_err(field);
            assert!(error.starts_with(&format!("usage report: {field}")), "{error}");
        }
    }
}
