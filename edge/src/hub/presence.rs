//! Presence and occupancy: the hub follows the presence reports of the
//! channels it serves (a [`PresenceTable`](herald_bus::presence::PresenceTable)), turns member changes into
//! join/leave events for their subscribers, answers member queries, and
//! publishes its own connections' entries and every channel's subscriber
//! count ([`Hub::report_loop`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_proto::client::{self, server_frame};
use herald_proto::{AppId, ChannelName, bus};

use crate::ws;
use herald_bus::presence::{Member, MemberChange, MembersPage};

use super::{Hub, Wire, lock};

/// Entries per presence snapshot message.
const SNAPSHOT_CHUNK: usize = 500;

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
    /// has at most `presence_events_max_members` members. With
    /// `joins_for_herald` false, joins go to Pusher subscribers only.
    pub(super) fn announce(
        &self,
        app: &AppId,
        channel: &ChannelName,
        changes: Vec<MemberChange>,
        joins_for_herald: bool,
    ) {
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
            let herald = joins_for_herald || kind == client::presence_event::Kind::Leave;
            let delivered = self.fan_out_presence(app, channel, kind, &member, herald);
            metrics::counter!("herald_presence_events_total").increment(delivered as u64);
        }
    }

    /// Sends a presence event to a channel's subscribers, each in its
    /// protocol's frame (built once, when a subscriber speaks it), except
    /// the connections of the member it is about (and Herald subscribers
    /// unless `herald`).
    fn fan_out_presence(
        &self,
        app: &AppId,
        channel: &ChannelName,
        kind: client::presence_event::Kind,
        member: &Member,
        herald: bool,
    ) -> usize {
        let herald_event = || {
            ws::binary_frame(&client::ServerFrame {
                kind: Some(server_frame::Kind::PresenceEvent(client::PresenceEvent {
                    channel: channel.as_str().to_owned(),
                    kind: kind as i32,
                    member: Some(client::Member { client_id: member.client_id.clone(), info: member.info.clone() }),
                })),
            })
        };
        let pusher_event = || match kind {
            client::presence_event::Kind::Leave => super::pusher::member_removed_frame(channel.as_str(), member),
            _ => super::pusher::member_added_frame(channel.as_str(), member),
        };
        let (mut herald_frame, mut pusher_frame) = (None, None);
        let shard = lock(self.shard(app, channel));
        let Some(entry) = shard.get(&(app.clone(), channel.clone())) else { return 0 };
        let mut delivered = 0;
        for sub in &entry.subscribers {
            if sub.presence.as_ref().is_some_and(|p| p.client_id == member.client_id) {
                continue;
            }
            let frame = match sub.wire {
                Wire::Herald if !herald => continue,
                Wire::Herald => herald_frame.get_or_insert_with(herald_event),
                Wire::Pusher => pusher_frame.get_or_insert_with(pusher_event),
            };
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

    /// Runs until the hub is dropped: expires other edges' presence entries
    /// every second (announcing the leaves) and publishes this edge's
    /// reports every `interval` and whenever the control plane asks, and
    /// the subscriber counts of an app promptly after they changed (see the
    /// hub's `occupancy`).
    pub async fn report_loop(self: Arc<Self>, interval: Duration) {
        let mut next_report = tokio::time::Instant::now() + interval;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let expired = lock(&self.presence).expire(Instant::now());
                    for (app, channel, change) in expired {
                        self.announce(&app, &channel, vec![change], true);
                    }
                    self.expire_counts();
                    if tokio::time::Instant::now() >= next_report {
                        next_report = tokio::time::Instant::now() + interval;
                        self.report_all().await;
                    }
                }
                () = self.report_now.notified() => self.report_all().await,
                () = self.occupancy_wake.notified() => self.report_changed_occupancy().await,
            }
        }
    }

    /// Reports that a connection joined a presence channel (a failure is
    /// logged: the next snapshot carries the entry).
    pub async fn report_join(&self, app: &AppId, channel: &ChannelName, entry: &bus::PresenceEntry) {
        let report = self
            .presence_report(app, bus::presence_report::Kind::Join(bus::PresenceJoin { entry: Some(entry.clone()) }));
        if let Err(e) = self.bus.publish_presence(app, channel, &report).await {
            tracing::warn!(%app, %channel, error = %e, "presence join not sent; the next snapshot carries it");
        }
    }

    /// Reports that a connection left a presence channel (a failure is
    /// logged: the entry expires instead).
    pub async fn report_leave(&self, app: &AppId, entry: Arc<bus::PresenceEntry>) {
        let Ok(channel) = ChannelName::new(&entry.channel) else { return };
        let report = self.presence_report(
            app,
            bus::presence_report::Kind::Leave(bus::PresenceLeave { entry: Some((*entry).clone()) }),
        );
        if let Err(e) = self.bus.publish_presence(app, &channel, &report).await {
            tracing::warn!(%app, %channel, error = %e, "presence leave not sent; it expires instead");
        }
    }

    /// Reports the leaves of a connection that closed, in the background:
    /// the close must not wait for the bus.
    pub fn report_leaves_later(self: &Arc<Self>, app: &AppId, leaves: Vec<Arc<bus::PresenceEntry>>) {
        if leaves.is_empty() {
            return;
        }
        let (hub, app) = (self.clone(), app.clone());
        tokio::spawn(async move {
            for entry in leaves {
                hub.report_leave(&app, entry).await;
            }
        });
    }

    /// Whether `client_id` is a member of a presence channel this edge
    /// follows, and how many members it has; `None` when it does not follow
    /// the channel's presence.
    #[must_use]
    pub fn member_status(&self, app: &AppId, channel: &ChannelName, client_id: &str) -> Option<(bool, usize)> {
        let follows =
            lock(self.shard(app, channel)).get(&(app.clone(), channel.clone())).is_some_and(|c| c.options.presence);
        follows.then(|| {
            let table = lock(&self.presence);
            (table.is_member(app, channel, client_id), table.member_count(app, channel))
        })
    }

    /// Applies a presence report of another edge (or a sync request).
    pub(super) fn on_presence(&self, app: &AppId, channel: &ChannelName, report: bus::PresenceReport) {
        if let Some(bus::presence_report::Kind::Sync(_)) = report.kind {
            if report.edge_id != self.settings.edge_id {
                self.spawn_snapshot(app, channel);
            }
            return;
        }
        let changes = lock(&self.presence).apply(app, channel, &report, Instant::now());
        // Members first seen in a snapshot are not news to Herald clients:
        // they were there before this edge started following the channel
        // (or their join was lost), and the member list shows them. Pusher
        // clients have no member list but the one their subscription began
        // with, which the snapshot was not in yet: they are told.
        let snapshot = matches!(report.kind, Some(bus::presence_report::Kind::Snapshot(_)));
        self.announce(app, channel, changes, !snapshot);
    }
}
