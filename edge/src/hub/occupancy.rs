//! The subscriber counts this edge reports (`OccupancyReport`), from which
//! the control plane answers channel queries.
//!
//! Two paths, the same report:
//!
//! - **Prompt**: a subscribe or unsubscribe marks its app as changed and
//!   wakes the report loop, which waits [`COALESCE`] for a burst of changes
//!   to gather, then reports the counts of the changed apps only — an app
//!   left with no channel here gets an empty report, which clears its
//!   counts. A change thus reaches the bus within about [`COALESCE`]. After
//!   a report of many parts the loop rests a little longer (see
//!   [`PART_REST`], at most [`MAX_REST`]), so a steady churn costs a
//!   bounded number of messages a second.
//! - **Periodic**: every app's counts, with the presence snapshots (the
//!   counts expire at their receivers unless refreshed).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use herald_proto::{AppId, bus};

use super::{Hub, lock};

/// Channels per occupancy report message.
const OCCUPANCY_CHUNK: usize = 2000;

/// How long a prompt report waits for more changes to gather.
pub(super) const COALESCE: Duration = Duration::from_millis(50);

/// The rest after a prompt report, per message it took.
const PART_REST: Duration = Duration::from_millis(20);

/// The longest rest after a prompt report.
const MAX_REST: Duration = Duration::from_secs(1);

impl Hub {
    /// Notes that the subscriber counts of `app` changed; they are reported
    /// within about [`COALESCE`].
    pub(super) fn occupancy_changed(&self, app: &AppId) {
        let first = {
            let mut dirty = lock(&self.occupancy_dirty);
            let first = dirty.is_empty();
            if !dirty.contains(app) {
                dirty.insert(app.clone());
            }
            first
        };
        if first {
            self.occupancy_wake.notify_one();
        }
    }

    /// The counts of every channel with local subscribers, by app; only
    /// those of `apps` when given.
    fn counts(&self, apps: Option<&HashSet<AppId>>) -> HashMap<AppId, Vec<bus::ChannelCount>> {
        let mut counts: HashMap<AppId, Vec<bus::ChannelCount>> = HashMap::new();
        for shard in self.shards.iter() {
            for ((app, channel), entry) in lock(shard).iter() {
                if apps.is_some_and(|a| !a.contains(app)) {
                    continue;
                }
                counts.entry(app.clone()).or_default().push(bus::ChannelCount {
                    channel: channel.as_str().to_owned(),
                    subscribers: entry.subscribers.len() as u32,
                });
            }
        }
        counts
    }

    /// Publishes the counts of the apps changed since their last report
    /// (after waiting [`COALESCE`] for more), then rests in proportion to
    /// what it sent.
    pub(super) async fn report_changed_occupancy(&self) {
        tokio::time::sleep(COALESCE).await;
        let apps = std::mem::take(&mut *lock(&self.occupancy_dirty));
        if apps.is_empty() {
            return;
        }
        let mut counts = self.counts(Some(&apps));
        for app in &apps {
            counts.entry(app.clone()).or_default();
        }
        {
            let mut reported = lock(&self.reported_apps);
            for (app, channels) in &counts {
                if channels.is_empty() {
                    reported.remove(app);
                } else {
                    reported.insert(app.clone());
                }
            }
        }
        let parts = self.publish_counts(counts).await;
        tokio::time::sleep((PART_REST * parts as u32).min(MAX_REST)).await;
    }

    /// Publishes the subscriber counts of every app with local subscribers,
    /// and an empty report for an app that had some at the last report.
    pub(super) async fn report_occupancy(&self) {
        lock(&self.occupancy_dirty).clear();
        let mut counts = self.counts(None);
        {
            let mut reported = lock(&self.reported_apps);
            for app in reported.iter() {
                counts.entry(app.clone()).or_default();
            }
            *reported = counts.iter().filter(|(_, c)| !c.is_empty()).map(|(a, _)| a.clone()).collect();
        }
        self.publish_counts(counts).await;
    }

    /// Publishes the counts, each app's in parts so that an app with many
    /// channels stays far below NATS's payload limit. Returns how many
    /// messages it sent.
    async fn publish_counts(&self, counts: HashMap<AppId, Vec<bus::ChannelCount>>) -> usize {
        let mut sent = 0;
        for (app, channels) in counts {
            let parts = channels.len().div_ceil(OCCUPANCY_CHUNK).max(1);
            for part in 0..parts {
                let chunk = channels.get(part * OCCUPANCY_CHUNK..).unwrap_or_default();
                let report = bus::OccupancyReport {
                    edge_id: self.settings.edge_id.clone(),
                    app_id: app.as_str().to_owned(),
                    channels: chunk.iter().take(OCCUPANCY_CHUNK).cloned().collect(),
                    part: part as u32,
                    parts: parts as u32,
                    ttl_ms: self.report_ttl_ms(),
                };
                sent += 1;
                if let Err(e) = self.bus.publish_occupancy(&app, &report).await {
                    tracing::warn!(%app, error = %e, "occupancy report not sent");
                    return sent;
                }
            }
        }
        sent
    }
}
