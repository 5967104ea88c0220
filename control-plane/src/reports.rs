//! [`Reports`]: what edges report — who is present in which channel, how
//! many subscribe — kept by every replica (each follows every report), and
//! forgotten for edges that stopped reporting.
//!
//! For webhooks, the channels of *watched* apps (those with webhook
//! endpoints) whose subscriber count or members changed are collected in a
//! bounded set ([`Reports::take_changed`]); past its bound the set is
//! dropped and flagged, and the reader goes over every channel instead.

use std::collections::HashSet;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use herald_bus::presence::{MembersPage, OccupancyTable, PresenceTable};
use herald_proto::{AppId, ChannelName, bus};

/// Most changed channels remembered between two reads of
/// [`Reports::take_changed`]; past it, the reader looks at every channel.
const MAX_CHANGED: usize = 100_000;

/// Channels of watched apps whose state changed since the last read.
#[derive(Default)]
struct Changed {
    channels: HashSet<(AppId, ChannelName)>,
    overflowed: bool,
}

/// What changed since the last [`Reports::take_changed`].
pub(crate) enum ChangedChannels {
    /// These channels.
    Some(HashSet<(AppId, ChannelName)>),
    /// Too many to list: every channel of every watched app may have.
    All,
}

/// The presence and occupancy tables filled from edges' reports.
pub(crate) struct Reports {
    presence: Mutex<PresenceTable>,
    occupancy: Mutex<OccupancyTable>,
    watched: RwLock<HashSet<AppId>>,
    changed: Mutex<Changed>,
    /// Woken when a channel is added to `changed`.
    pub(crate) changes: Notify,
}

impl Reports {
    pub(crate) fn new(ttl: Duration, max_per_channel: usize) -> Self {
        Self {
            presence: Mutex::new(PresenceTable::new(ttl, max_per_channel)),
            occupancy: Mutex::new(OccupancyTable::new(ttl)),
            watched: RwLock::new(HashSet::new()),
            changed: Mutex::new(Changed::default()),
            changes: Notify::new(),
        }
    }

    pub(crate) fn presence(&self, app: &AppId, channel: &ChannelName, report: &bus::PresenceReport) {
        let changes = {
            let mut table = self.presence.lock().unwrap_or_else(|e| e.into_inner());
            table.apply(app, channel, report, Instant::now())
        };
        if !changes.is_empty() {
            self.mark([(app, channel)]);
        }
    }

    pub(crate) fn occupancy(&self, report: &bus::OccupancyReport) {
        let changed = self.occupancy.lock().unwrap_or_else(|e| e.into_inner()).apply(report, Instant::now());
        if let Some((app, channels)) = changed
            && !channels.is_empty()
        {
            self.mark(channels.iter().map(|c| (&app, c)));
        }
    }

    /// Which apps' changes to collect (those with webhook endpoints).
    pub(crate) fn watch(&self, apps: HashSet<AppId>) {
        *self.watched.write().unwrap_or_else(|e| e.into_inner()) = apps;
    }

    /// Whether `app` is watched.
    pub(crate) fn is_watched(&self, app: &AppId) -> bool {
        self.watched.read().unwrap_or_else(|e| e.into_inner()).contains(app)
    }

    fn mark<'a>(&self, channels: impl IntoIterator<Item = (&'a AppId, &'a ChannelName)>) {
        let mut marked = false;
        {
            let watched = self.watched.read().unwrap_or_else(|e| e.into_inner());
            if watched.is_empty() {
                return;
            }
            let mut changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
            for (app, channel) in channels {
                if !watched.contains(app) || changed.overflowed {
                    continue;
                }
                if changed.channels.len() >= MAX_CHANGED {
                    changed.channels = HashSet::new();
                    changed.overflowed = true;
                } else {
                    changed.channels.insert((app.clone(), channel.clone()));
                }
                marked = true;
            }
        }
        if marked {
            self.changes.notify_one();
        }
    }

    /// The channels of watched apps that changed since the last call.
    pub(crate) fn take_changed(&self) -> ChangedChannels {
        let mut changed = self.changed.lock().unwrap_or_else(|e| e.into_inner());
        let taken = std::mem::take(&mut *changed);
        if taken.overflowed { ChangedChannels::All } else { ChangedChannels::Some(taken.channels) }
    }

    /// The subscribers of one channel over every edge.
    pub(crate) fn subscribers(&self, app: &AppId, channel: &ChannelName) -> u64 {
        self.occupancy.lock().unwrap_or_else(|e| e.into_inner()).subscribers(app, channel)
    }

    /// The user (client) ids present in a channel, over every edge.
    pub(crate) fn member_ids(&self, app: &AppId, channel: &ChannelName) -> Vec<String> {
        let table = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        table.members_page(app, channel, "", usize::MAX, usize::MAX).members.into_iter().map(|m| m.client_id).collect()
    }

    /// A page of a channel's members, by client id, after `after`.
    pub(crate) fn members_page(&self, app: &AppId, channel: &ChannelName, after: &str, limit: usize) -> MembersPage {
        let table = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        table.members_page(app, channel, after, limit, usize::MAX)
    }

    /// How many members (client ids) a presence channel has.
    pub(crate) fn member_count(&self, app: &AppId, channel: &ChannelName) -> usize {
        self.presence.lock().unwrap_or_else(|e| e.into_inner()).member_count(app, channel)
    }

    /// The app's channels with subscribers, and how many, by name.
    pub(crate) fn channels(&self, app: &AppId) -> Vec<(ChannelName, u64)> {
        self.occupancy.lock().unwrap_or_else(|e| e.into_inner()).channels(app)
    }

    /// Drops what silent edges reported.
    pub(crate) fn expire(&self) {
        let now = Instant::now();
        let left = self.presence.lock().unwrap_or_else(|e| e.into_inner()).expire(now);
        let emptied = self.occupancy.lock().unwrap_or_else(|e| e.into_inner()).expire(now);
        if !left.is_empty() {
            tracing::debug!(left = left.len(), "presence entries of silent edges expired");
        }
        self.mark(left.iter().map(|(app, channel, _)| (app, channel)).chain(emptied.iter().map(|(a, c)| (a, c))));
    }
}
