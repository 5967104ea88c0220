//! A node's usage reports: batches of drained counts, each with the node's
//! id and a sequence, kept until a control plane acknowledges them.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use herald_proto::bus;

use super::UsageRegistry;
use crate::Bus;

/// The batches of one node not yet acknowledged, and what it reports next.
///
/// ```
/// use herald_bus::usage::Reporter;
/// use herald_proto::bus;
/// let mut reporter = Reporter::new("edge-1".to_owned(), 10_000);
/// assert_eq!(reporter.node_id(), "edge-1");
/// assert!(reporter.next_report(Vec::new(), Vec::new(), 1_000).is_none(), "nothing to tell");
///
/// let counts = vec![bus::AppUsage { app_id: "app1".into(), delivered: 5, ..Default::default() }];
/// let first = reporter.next_report(counts.clone(), Vec::new(), 2_000).expect("a report");
/// assert_eq!(reporter.pending_apps(), 1);
/// // Not acknowledged: the next report carries both batches.
/// let second = reporter.next_report(counts, Vec::new(), 3_000).expect("a report");
/// let seqs: Vec<u64> = second.batches.iter().map(|b| b.seq).collect();
/// assert_eq!((first.batches[0].seq, seqs), (1, vec![1, 2]));
/// reporter.acknowledged(&second);
/// assert_eq!(reporter.pending_apps(), 0);
/// ```
#[derive(Debug)]
pub struct Reporter {
    node_id: String,
    next_seq: u64,
    pending: VecDeque<bus::UsageBatch>,
    max_pending_apps: usize,
    /// Apps the previous report gave a gauge for: one that has none now is
    /// reported once more, at zero.
    gauged: HashSet<String>,
}

impl Reporter {
    /// A reporter for the node `node_id` (unique per process run), keeping
    /// at most `max_pending_apps` app entries in unacknowledged batches.
    #[must_use]
    pub fn new(node_id: String, max_pending_apps: usize) -> Self {
        Self { node_id, next_seq: 1, pending: VecDeque::new(), max_pending_apps, gauged: HashSet::new() }
    }

    /// The node's id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// App entries in unacknowledged batches.
    #[must_use]
    pub fn pending_apps(&self) -> usize {
        self.pending.iter().map(|b| b.apps.len()).sum()
    }

    /// The next report: `fresh` counts (if any) become a new batch after
    /// the unacknowledged ones, with the node's current `gauges`. The
    /// oldest batches go when the kept entries pass the bound (counted in
    /// `herald_usage_dropped_apps_total`). `None` when there is nothing to
    /// tell.
    pub fn next_report(
        &mut self,
        fresh: Vec<bus::AppUsage>,
        mut gauges: Vec<bus::AppGauge>,
        now_ms: i64,
    ) -> Option<bus::UsageReport> {
        if !fresh.is_empty() {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.pending.push_back(bus::UsageBatch { seq, timestamp_ms: now_ms.max(1), apps: fresh });
        }
        let mut kept = self.pending_apps();
        while kept > self.max_pending_apps {
            let Some(dropped) = self.pending.pop_front() else { break };
            kept -= dropped.apps.len();
            metrics::counter!("herald_usage_dropped_apps_total").increment(dropped.apps.len() as u64);
            tracing::warn!(apps = dropped.apps.len(), seq = dropped.seq, "unacknowledged usage batch dropped");
        }
        let now: HashSet<String> = gauges.iter().map(|g| g.app_id.clone()).collect();
        for gone in self.gauged.difference(&now) {
            gauges.push(bus::AppGauge { app_id: gone.clone(), connections: 0, channels: 0 });
        }
        self.gauged = now;
        if self.pending.is_empty() && gauges.is_empty() {
            return None;
        }
        Some(bus::UsageReport {
            node_id: self.node_id.clone(),
            batches: self.pending.iter().cloned().collect(),
            gauges,
            timestamp_ms: now_ms,
        })
    }

    /// `report` was stored: its batches are forgotten.
    pub fn acknowledged(&mut self, report: &bus::UsageReport) {
        let Some(last) = report.batches.iter().map(|b| b.seq).max() else { return };
        self.pending.retain(|b| b.seq > last);
    }

    /// Every `interval`, drains `registry` and reports over `bus`, until
    /// `stop` resolves: then it reports once more (what was counted last,
    /// and the node's gauges gone to zero) and ends. `gauges` gives the
    /// node's current per-app figures. A report not acknowledged stays
    /// pending for the next one.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use futures_util::future::BoxFuture;
    /// use herald_bus::usage::{Reporter, Source, UsageRegistry};
    /// use herald_bus::{Bus, LocalBus, UsageSink};
    /// use herald_proto::{AppId, bus};
    ///
    /// /// The control plane's side: keeps the reports.
    /// #[derive(Clone, Default)]
    /// struct Reports(Arc<Mutex<Vec<bus::UsageReport>>>);
    /// impl UsageSink for Reports {
    ///     fn store(&self, report: bus::UsageReport) -> BoxFuture<'static, Result<(), String>> {
    ///         self.0.lock().unwrap().push(report);
    ///         Box::pin(async { Ok(()) })
    ///     }
    /// }
    ///
    /// let local = LocalBus::default();
    /// let reports = Reports::default();
    /// Bus::local(&local).serve_usage(Arc::new(reports.clone())).await?;
    /// let registry = Arc::new(UsageRegistry::new());
    /// registry.app(&AppId::new("app1")?).published(Source::Rest, 1, 10);
    ///
    /// let reporter = Reporter::new("edge-1".to_owned(), 10_000);
    /// // Stopped at once: it reports what was counted, then ends.
    /// reporter.run(Bus::local(&local), registry, Vec::new, Duration::from_secs(60), std::future::ready(())).await;
    /// let reports = reports.0.lock().unwrap();
    /// assert_eq!(reports[0].batches[0].apps[0].published_rest, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn run(
        mut self,
        bus: Bus,
        registry: Arc<UsageRegistry>,
        gauges: impl Fn() -> Vec<bus::AppGauge> + Send,
        interval: Duration,
        stop: impl std::future::Future<Output = ()> + Send,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut stop = std::pin::pin!(stop);
        loop {
            let last = tokio::select! {
                _ = tick.tick() => false,
                () = &mut stop => true,
            };
            let now = if last { Vec::new() } else { gauges() };
            let report = self.next_report(registry.drain(), now, crate::now_ms());
            if let Some(report) = report {
                self.send(&bus, &report).await;
            }
            if last {
                return;
            }
        }
    }

    /// Sends `report`; forgets its batches once acknowledged.
    async fn send(&mut self, bus: &Bus, report: &bus::UsageReport) {
        match bus.report_usage(report).await {
            Ok(()) => self.acknowledged(report),
            Err(e) => {
                metrics::counter!("herald_usage_report_failures_total").increment(1);
                tracing::debug!(error = %e, pending_apps = self.pending_apps(), "usage report not stored; kept");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(app: &str, n: u64) -> bus::AppUsage {
        bus::AppUsage { app_id: app.into(), delivered: n, ..Default::default() }
    }

    #[test]
    fn unacknowledged_batches_are_resent_with_their_sequence() {
        let mut r = Reporter::new("n".into(), 100);
        let first = r.next_report(vec![usage("a", 1)], vec![], 10).expect("report");
        assert_eq!(first.batches.iter().map(|b| b.seq).collect::<Vec<_>>(), [1]);
        // Not acknowledged: sent again with the next counts.
        let second = r.next_report(vec![usage("a", 2)], vec![], 20).expect("report");
        assert_eq!(second.batches.iter().map(|b| b.seq).collect::<Vec<_>>(), [1, 2]);
        r.acknowledged(&second);
        assert_eq!(r.pending_apps(), 0);
        assert!(r.next_report(vec![], vec![], 30).is_none());
        let third = r.next_report(vec![usage("b", 1)], vec![], 40).expect("report");
        assert_eq!(third.batches.iter().map(|b| b.seq).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn past_the_bound_the_oldest_batches_go() {
        let mut r = Reporter::new("n".into(), 2);
        let _ = r.next_report(vec![usage("a", 1), usage("b", 1)], vec![], 10);
        let report = r.next_report(vec![usage("c", 1)], vec![], 20).expect("report");
        assert_eq!(report.batches.iter().map(|b| b.seq).collect::<Vec<_>>(), [2]);
        assert_eq!(r.pending_apps(), 1);
    }

    #[test]
    fn a_gauge_that_went_away_is_reported_once_at_zero() {
        let mut r = Reporter::new("n".into(), 10);
        let g = bus::AppGauge { app_id: "a".into(), connections: 2, channels: 1 };
        let report = r.next_report(vec![], vec![g], 10).expect("report");
        assert_eq!(report.gauges.len(), 1);
        let report = r.next_report(vec![], vec![], 20).expect("report");
        assert_eq!(report.gauges, [bus::AppGauge { app_id: "a".into(), connections: 0, channels: 0 }]);
        assert!(r.next_report(vec![], vec![], 30).is_none());
    }
}
