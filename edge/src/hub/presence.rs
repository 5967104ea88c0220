//! Presence and occupancy: the hub follows the presence reports of the
//! channels it serves (a [`PresenceTable`](herald_bus::presence::PresenceTable)), turns member changes into
//! join/leave events for their subscribers, answers member queries, and
//! publishes its own connections' entries and every channel's subscriber
//! count ([`Hub::report_loop`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::client::{self, server_frame};
use herald_proto::{AppId, ChannelName, bus};

use crate::ws;
use herald_bus::presence::{MemberChange, MembersPage};

use super::{Hub, lock};

/// Entries per presence snapshot message.
const SNAPSHOT_CHUNK: usize = 500;

/// Channels per occupancy report message.
const OCCUPANCY_CHUNK: usize = 2000;

/// An edge following at most this many channels reports its subscriber
/// counts within a second of a change (at most 5 messages a second); one
/// following more waits for its periodic report.
const PROMPT_OCCUPANCY_MAX_CHANNELS: usize = 5 * OCCUPANCY_CHUNK;

impl Hub {
    /// A page of the members of a presence channel this edge follows (see
    /// [`PresenceTable::members_page`](herald_bus::presence::PresenceTable::members_page)); `None` when it does not follow the
    /// channel's presence.
    #[must_use]
    pub fn members_page(
        &self,
        app: &AppId,
        channel: &ChannelName,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Option<MembersPage> {
        let follows =
            lock(self.shard(app, channel)).get(&(app.clone(), channel.clone())).is_some_and(|c| c.options.presence);
        follows.then(|| lock(&self.presence).members_page(app, channel, after, limit, max_bytes))
    }

    /// Sends join/leave events for member changes of a channel to its
    /// subscribers, when the channel's namespace wants them and the channel
    /// has at most `presence_events_max_members` members.
    pub(super) fn announce(&self, app: &AppId, channel: &ChannelName, changes: Vec<MemberChange>) {
        if changes.is_empty() {
            return;
        }
        let wanted =
            lock(self.shard(app, channel)).get(&(app.clone(), channel.clone())).is_some_and(|c| c.options.join_leave);
        if !wanted {
            return;
        }
        // Counted with the member an event is about: a member who joined
        // unannounced leaves unannounced too.
        let members = lock(&self.presence).member_count(app, channel);
        let max = self.settings.presence_events_max_members;
        for change in changes {
            let (kind, member) = match change {
                MemberChange::Joined(m) if members <= max => (client::presence_event::Kind::Join, m),
                MemberChange::Left(m) if members < max => (client::presence_event::Kind::Leave, m),
                _ => continue,
            };
            let frame = ws::binary_frame(&client::ServerFrame {
                kind: Some(server_frame::Kind::PresenceEvent(client::PresenceEvent {
                    channel: channel.as_str().to_owned(),
                    kind: kind as i32,
                    member: Some(client::Member { client_id: member.client_id.clone(), info: member.info }),
                })),
            });
            let delivered = self.fan_out_presence(app, channel, &member.client_id, &frame);
            metrics::counter!("herald_presence_events_total").increment(delivered as u64);
        }
    }

    /// Sends a presence event to a channel's subscribers, except the
    /// connections of the member it is about.
    fn fan_out_presence(&self, app: &AppId, channel: &ChannelName, client_id: &str, frame: &Bytes) -> usize {
        let shard = lock(self.shard(app, channel));
        let Some(entry) = shard.get(&(app.clone(), channel.clone())) else { return 0 };
        let mut delivered = 0;
        for sub in &entry.subscribers {
            if sub.presence.as_ref().is_some_and(|p| p.client_id == client_id) {
                continue;
            }
            if sub.outbox.push(frame.clone()).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// This edge's presence entries for one channel, in snapshot chunks.
    fn snapshot_reports(&self, app: &AppId, channel: &ChannelName) -> Vec<bus::PresenceReport> {
        let entries: Vec<bus::PresenceEntry> = lock(self.shard(app, channel))
            .get(&(app.clone(), channel.clone()))
            .map(|c| c.subscribers.iter().filter_map(|s| s.presence.as_deref().cloned()).collect())
            .unwrap_or_default();
        let taken_at_ms = herald_bus::now_ms();
        entries
            .chunks(SNAPSHOT_CHUNK)
            .map(|chunk| {
                let snapshot = bus::PresenceSnapshot { entries: chunk.to_vec(), taken_at_ms };
                self.presence_report(app, bus::presence_report::Kind::Snapshot(snapshot))
            })
            .collect()
    }

    /// Publishes this edge's snapshot of one channel in the background (an
    /// answer to another edge's sync request).
    fn spawn_snapshot(&self, app: &AppId, channel: &ChannelName) {
        let reports = self.snapshot_reports(app, channel);
        if reports.is_empty() {
            return;
        }
        let (bus, app, channel) = (self.bus.clone(), app.clone(), channel.clone());
        tokio::spawn(async move {
            for report in reports {
                if let Err(e) = bus.publish_presence(&app, &channel, &report).await {
                    tracing::warn!(%app, %channel, error = %e, "presence snapshot not sent");
                    return;
                }
            }
        });
    }

    /// Publishes the snapshots of every presence channel and the subscriber
    /// counts of every app.
    async fn report_all(&self) {
        let mut presence_channels = Vec::new();
        for shard in self.shards.iter() {
            for ((app, channel), entry) in lock(shard).iter() {
                if entry.options.presence {
                    presence_channels.push((app.clone(), channel.clone()));
                }
            }
        }
        for (app, channel) in presence_channels {
            for report in self.snapshot_reports(&app, &channel) {
                if let Err(e) = self.bus.publish_presence(&app, &channel, &report).await {
                    tracing::warn!(%app, %channel, error = %e, "presence snapshot not sent");
                    return;
                }
            }
        }
        self.report_occupancy().await;
    }

    /// Publishes the subscriber counts of every app with local subscribers,
    /// and an empty report for an app that had some at the last report.
    async fn report_occupancy(&self) {
        self.occupancy_changed.store(false, Ordering::Relaxed);
        let mut counts: HashMap<AppId, Vec<bus::ChannelCount>> = HashMap::new();
        for shard in self.shards.iter() {
            for ((app, channel), entry) in lock(shard).iter() {
                counts.entry(app.clone()).or_default().push(bus::ChannelCount {
                    channel: channel.as_str().to_owned(),
                    subscribers: entry.subscribers.len() as u32,
                });
            }
        }
        {
            let mut reported = lock(&self.reported_apps);
            for app in reported.iter() {
                counts.entry(app.clone()).or_default();
            }
            *reported = counts.iter().filter(|(_, c)| !c.is_empty()).map(|(a, _)| a.clone()).collect();
        }
        for (app, channels) in counts {
            // In parts, so that an app with many channels stays far below
            // NATS's payload limit.
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
                if let Err(e) = self.bus.publish_occupancy(&app, &report).await {
                    tracing::warn!(%app, error = %e, "occupancy report not sent");
                    return;
                }
            }
        }
    }

    /// Runs until the hub is dropped: expires other edges' presence entries
    /// every second (announcing the leaves) and publishes this edge's
    /// reports every `interval` and whenever the control plane asks, and
    /// its subscriber counts within a second of a change (see
    /// `PROMPT_OCCUPANCY_MAX_CHANNELS`).
    pub async fn report_loop(self: Arc<Self>, interval: Duration) {
        let mut next_report = tokio::time::Instant::now() + interval;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let expired = lock(&self.presence).expire(Instant::now());
                    for (app, channel, change) in expired {
                        self.announce(&app, &channel, vec![change]);
                    }
                    if tokio::time::Instant::now() >= next_report {
                        next_report = tokio::time::Instant::now() + interval;
                        self.report_all().await;
                    } else if self.occupancy_changed.load(Ordering::Relaxed)
                        && self.channel_count() <= PROMPT_OCCUPANCY_MAX_CHANNELS
                    {
                        self.report_occupancy().await;
                    }
                }
                () = self.report_now.notified() => self.report_all().await,
            }
        }
    }

    /// Applies a presence report of another edge (or a sync request).
    pub(super) fn on_presence(&self, app: &AppId, channel: &ChannelName, report: bus::PresenceReport) {
        if let Some(bus::presence_report::Kind::Sync(_)) = report.kind {
            if report.edge_id != self.settings.edge_id {
                self.spawn_snapshot(app, channel);
            }
            return;
        }
        let mut changes = lock(&self.presence).apply(app, channel, &report, Instant::now());
        if let Some(bus::presence_report::Kind::Snapshot(_)) = report.kind {
            // Members first seen in a snapshot are not news: they were there
            // before this edge started following the channel (or their join
            // was lost). Only their leaving is announced.
            changes.retain(|c| matches!(c, MemberChange::Left(_)));
        }
        self.announce(app, channel, changes);
    }
}
