//! Subscription counts told to subscribers: Pusher's
//! `pusher_internal:subscription_count`, for the apps that have it on.
//!
//! A channel's count is its subscribers on every edge, of both protocols,
//! from the edges' occupancy reports (see the hub's `occupancy`). While a
//! channel here has a subscriber that wants its count, the hub follows the
//! occupancy reports of the channel's app and keeps them in an
//! [`OccupancyTable`]; whenever a report (or an expiry) changes the
//! channel's total, the new count goes to the channel's Pusher subscribers
//! here, once. A change on this edge reaches its own subscribers the same
//! way — through its prompt report — so every edge tells the same number.
//! When an edge begins following an app it asks every edge to report the
//! app's counts at once (`OccupancySync` on the control subject), so the
//! subscribers already there are counted without waiting for their
//! periodic reports.

use std::collections::HashMap;
use std::time::Instant;

use herald_bus::ChannelSubscription;
use herald_bus::presence::OccupancyTable;
use herald_proto::{AppId, ChannelName, bus};

use super::registry::ChannelKey;
use super::{Hub, Wire, lock};

/// What the hub counts.
pub(super) struct Counts {
    table: OccupancyTable,
    /// Followed apps: channels counted, and the bus subscription to their
    /// reports (once made).
    apps: HashMap<AppId, (usize, Option<ChannelSubscription>)>,
    /// Counted channels: subscribers wanting the count here, and the count
    /// last told.
    channels: HashMap<ChannelKey, (usize, Option<u64>)>,
}

impl Counts {
    pub(super) fn new(ttl: std::time::Duration) -> Self {
        Self { table: OccupancyTable::new(ttl), apps: HashMap::new(), channels: HashMap::new() }
    }

    /// The counted channels of `app` whose total changed since last told,
    /// with their totals (now told).
    fn changed(&mut self, app: &AppId) -> Vec<(ChannelName, u64)> {
        let totals: HashMap<ChannelName, u64> = self.table.channels(app).into_iter().collect();
        let mut changed = Vec::new();
        for ((a, channel), (_, told)) in &mut self.channels {
            if a != app {
                continue;
            }
            let now = totals.get(channel).copied().unwrap_or(0);
            if *told != Some(now) {
                *told = Some(now);
                changed.push((channel.clone(), now));
            }
        }
        changed
    }
}

impl Hub {
    /// Counts `channel` for one more subscriber; follows its app's
    /// occupancy reports from the first.
    pub(super) async fn count_channel(&self, app: &AppId, channel: &ChannelName) {
        let first_of_app = {
            let mut counts = lock(&self.counts);
            counts.channels.entry((app.clone(), channel.clone())).or_insert((0, None)).0 += 1;
            let (channels, _) = counts.apps.entry(app.clone()).or_insert((0, None));
            *channels += 1;
            *channels == 1
        };
        if !first_of_app {
            return;
        }
        match self.bus.subscribe_occupancy(app).await {
            Ok(sub) => {
                if let Some((_, slot @ None)) = lock(&self.counts).apps.get_mut(app) {
                    *slot = Some(sub);
                }
            }
            Err(e) => {
                tracing::warn!(%app, error = %e, "occupancy reports not followed; counts stay unknown");
                return;
            }
        }
        // The other edges' counts of the app, now rather than at their next
        // periodic report.
        let sync = bus::ControlEvent {
            timestamp_ms: herald_bus::now_ms(),
            kind: Some(bus::control_event::Kind::OccupancySync(bus::OccupancySync { app_id: app.as_str().to_owned() })),
        };
        if let Err(e) = self.bus.publish_control(&sync).await {
            tracing::warn!(%app, error = %e, "occupancy sync not requested; counts complete at the next reports");
        }
    }

    /// Counts `channel` for one subscriber less; stops following its app's
    /// reports after the last.
    pub(super) fn uncount_channel(&self, app: &AppId, channel: &ChannelName) {
        let dropped = {
            let mut counts = lock(&self.counts);
            let key = (app.clone(), channel.clone());
            if let Some((n, _)) = counts.channels.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.channels.remove(&key);
                }
            }
            match counts.apps.get_mut(app) {
                Some((n, _)) if *n > 1 => {
                    *n -= 1;
                    None
                }
                Some(_) => counts.apps.remove(app),
                None => None,
            }
        };
        // Dropped outside the lock: ends the bus subscription.
        drop(dropped);
    }

    /// Applies an occupancy report of a followed app and tells the changed
    /// counts.
    pub(super) fn on_occupancy(&self, report: &bus::OccupancyReport) {
        let Ok(app) = AppId::new(&report.app_id) else { return };
        let changed = {
            let mut counts = lock(&self.counts);
            if !counts.apps.contains_key(&app) {
                return;
            }
            counts.table.apply(report, Instant::now());
            counts.changed(&app)
        };
        self.tell_counts(&app, changed);
    }

    /// Drops the reports past their TTL and tells the counts that changed.
    pub(super) fn expire_counts(&self) {
        let changed: Vec<(AppId, Vec<(ChannelName, u64)>)> = {
            let mut counts = lock(&self.counts);
            if counts.apps.is_empty() {
                return;
            }
            counts.table.expire(Instant::now());
            let apps: Vec<AppId> = counts.apps.keys().cloned().collect();
            apps.into_iter().map(|app| (app.clone(), counts.changed(&app))).collect()
        };
        for (app, changed) in changed {
            self.tell_counts(&app, changed);
        }
    }

    /// Sends each channel's count to its Pusher subscribers here.
    fn tell_counts(&self, app: &AppId, changed: Vec<(ChannelName, u64)>) {
        for (channel, count) in changed {
            let frame = super::pusher::subscription_count_frame(channel.as_str(), count);
            let shard = lock(self.shard(app, &channel));
            let Some(entry) = shard.get(&(app.clone(), channel.clone())) else { continue };
            for sub in entry.subscribers.iter().filter(|s| s.wire == Wire::Pusher) {
                let _ = sub.outbox.push(frame.clone());
            }
        }
    }
}
