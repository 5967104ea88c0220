//! [`Reports`]: what edges report — who is present in which channel, how
//! many subscribe — kept by every replica (each follows every report), and
//! forgotten for edges that stopped reporting.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use herald_bus::presence::{MembersPage, OccupancyTable, PresenceTable};
use herald_proto::{AppId, ChannelName, bus};

/// The presence and occupancy tables filled from edges' reports.
pub(crate) struct Reports {
    presence: Mutex<PresenceTable>,
    occupancy: Mutex<OccupancyTable>,
}

impl Reports {
    pub(crate) fn new(ttl: Duration, max_per_channel: usize) -> Self {
        Self {
            presence: Mutex::new(PresenceTable::new(ttl, max_per_channel)),
            occupancy: Mutex::new(OccupancyTable::new(ttl)),
        }
    }

    pub(crate) fn presence(&self, app: &AppId, channel: &ChannelName, report: &bus::PresenceReport) {
        let mut table = self.presence.lock().unwrap_or_else(|e| e.into_inner());
        table.apply(app, channel, report, Instant::now());
    }

    pub(crate) fn occupancy(&self, report: &bus::OccupancyReport) {
        self.occupancy.lock().unwrap_or_else(|e| e.into_inner()).apply(report, Instant::now());
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
        let left = self.presence.lock().unwrap_or_else(|e| e.into_inner()).expire(now).len();
        self.occupancy.lock().unwrap_or_else(|e| e.into_inner()).expire(now);
        if left > 0 {
            tracing::debug!(left, "presence entries of silent edges expired");
        }
    }
}
