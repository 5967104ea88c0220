//! Presence and occupancy state, built from the reports edges publish.
//!
//! Edges report every connection that joins or leaves a presence channel,
//! and send snapshots of their entries periodically. Whoever follows a
//! channel's reports (the control plane for every channel; an edge for the
//! presence channels its own clients subscribe to) keeps a
//! [`PresenceTable`]: entries keyed by (edge, connection), members counted
//! per client id. An entry that is not refreshed within the TTL expires, so
//! the entries of an edge that died disappear on their own.
//!
//! [`OccupancyTable`] does the same for the subscriber counts per channel
//! that every edge reports for every app it serves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, bus};

type ChannelKey = (AppId, ChannelName);

/// One edge's counts for one app: when they expire, and the counts.
type EdgeCounts = (Instant, HashMap<ChannelName, u32>);

/// When what a report adds or refreshes expires: the reporter's TTL, or
/// `own` when the report does not say.
fn expiry(now: Instant, ttl_ms: u32, own: Duration) -> Instant {
    now + if ttl_ms > 0 { Duration::from_millis(u64::from(ttl_ms)) } else { own }
}

/// A member of a presence channel: one client id, however many connections.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use herald_bus::presence::PresenceTable;
/// # use herald_proto::{AppId, ChannelName, bus};
/// # let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat:lobby")?);
/// # let join = |connection: &str, client: &str| bus::PresenceReport {
/// #     edge_id: "edge-1".into(),
/// #     kind: Some(bus::presence_report::Kind::Join(bus::PresenceJoin {
/// #         entry: Some(bus::PresenceEntry {
/// #             channel: channel.to_string(), connection_id: connection.into(), client_id: client.into(), info: Default::default(),
/// #         }),
/// #     })),
/// #     ..Default::default()
/// # };
/// # let mut table = PresenceTable::new(Duration::from_secs(30), 100_000);
/// # let now = Instant::now();
/// table.apply(&app, &channel, &join("c1", "ada"), now);
/// table.apply(&app, &channel, &join("c2", "ada"), now);
/// let page = table.members_page(&app, &channel, "", 10, 1 << 20);
/// let ada = &page.members[0];
/// assert_eq!((ada.client_id.as_str(), ada.connections), ("ada", 2));
/// assert!(ada.info.is_empty(), "no `info` claim");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The client id.
    pub client_id: String,
    /// JSON object from the token's `info` claim; empty when none.
    pub info: Bytes,
    /// Its connections in the channel, across edges.
    pub connections: u32,
}

/// A change of a channel's member list.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use herald_bus::presence::PresenceTable;
/// # use herald_proto::{AppId, ChannelName, bus};
/// # let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat:lobby")?);
/// # let join = |connection: &str, client: &str| bus::PresenceReport {
/// #     edge_id: "edge-1".into(),
/// #     kind: Some(bus::presence_report::Kind::Join(bus::PresenceJoin {
/// #         entry: Some(bus::PresenceEntry {
/// #             channel: channel.to_string(), connection_id: connection.into(), client_id: client.into(), info: Default::default(),
/// #         }),
/// #     })),
/// #     ..Default::default()
/// # };
/// # let mut table = PresenceTable::new(Duration::from_secs(30), 100_000);
/// use herald_bus::presence::MemberChange;
/// let now = Instant::now();
/// let changes = table.apply(&app, &channel, &join("c1", "ada"), now);
/// assert!(matches!(&changes[..], [MemberChange::Joined(m)] if m.client_id == "ada"));
/// // A second connection of the same client id changes nothing.
/// assert!(table.apply(&app, &channel, &join("c2", "ada"), now).is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A client id got its first connection in the channel.
    Joined(Member),
    /// A client id lost its last connection in the channel.
    Left(Member),
}

struct Entry {
    client_id: Arc<str>,
    expires: Instant,
}

struct ClientState {
    info: Bytes,
    connections: u32,
}

#[derive(Default)]
struct ChannelPresence {
    /// (edge id, connection id) → entry.
    entries: HashMap<(Box<str>, Box<str>), Entry>,
    clients: HashMap<Arc<str>, ClientState>,
    /// Whether an entry was ignored for the bound (warned once).
    full: bool,
}

impl ChannelPresence {
    /// Adds or refreshes an entry (to live until `expires`); a new one past
    /// `max` entries is ignored.
    fn join(&mut self, edge: &str, entry: &bus::PresenceEntry, expires: Instant, max: usize) -> Option<MemberChange> {
        let key: (Box<str>, Box<str>) = (edge.into(), entry.connection_id.as_str().into());
        if let Some(existing) = self.entries.get_mut(&key) {
            existing.expires = expires;
            return None;
        }
        if self.entries.len() >= max {
            if !self.full {
                self.full = true;
                tracing::warn!(channel = %entry.channel, max, "presence entries of a channel at their bound; more are ignored");
            }
            return None;
        }
        let client_id: Arc<str> = match self.clients.get_key_value(entry.client_id.as_str()) {
            Some((id, _)) => id.clone(),
            None => entry.client_id.as_str().into(),
        };
        self.entries.insert(key, Entry { client_id: client_id.clone(), expires });
        let state =
            self.clients.entry(client_id).or_insert_with(|| ClientState { info: entry.info.clone(), connections: 0 });
        state.connections += 1;
        (state.connections == 1).then(|| {
            MemberChange::Joined(Member {
                client_id: entry.client_id.clone(),
                info: state.info.clone(),
                connections: 1,
            })
        })
    }

    fn leave(&mut self, edge: &str, connection_id: &str) -> Option<MemberChange> {
        let entry = self.entries.remove(&(Box::<str>::from(edge), Box::<str>::from(connection_id)))?;
        self.release(&entry.client_id)
    }

    fn release(&mut self, client_id: &Arc<str>) -> Option<MemberChange> {
        let state = self.clients.get_mut(client_id)?;
        state.connections = state.connections.saturating_sub(1);
        if state.connections > 0 {
            return None;
        }
        let state = self.clients.remove(client_id)?;
        Some(MemberChange::Left(Member { client_id: client_id.to_string(), info: state.info, connections: 0 }))
    }
}

/// Most members in one page of a member list, on the client protocol and
/// the control plane's APIs alike (with `info` at most 1 KiB per member, a
/// page stays near 1 MiB).
pub const MAX_MEMBERS_PAGE: usize = 1_000;

/// A page of a channel's members (see [`PresenceTable::members_page`]).
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use herald_bus::presence::PresenceTable;
/// # use herald_proto::{AppId, ChannelName, bus};
/// # let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat:lobby")?);
/// # let join = |connection: &str, client: &str| bus::PresenceReport {
/// #     edge_id: "edge-1".into(),
/// #     kind: Some(bus::presence_report::Kind::Join(bus::PresenceJoin {
/// #         entry: Some(bus::PresenceEntry {
/// #             channel: channel.to_string(), connection_id: connection.into(), client_id: client.into(), info: Default::default(),
/// #         }),
/// #     })),
/// #     ..Default::default()
/// # };
/// # let mut table = PresenceTable::new(Duration::from_secs(30), 100_000);
/// # let now = Instant::now();
/// for (connection, client) in [("c1", "ada"), ("c2", "bob"), ("c3", "cy")] {
///     table.apply(&app, &channel, &join(connection, client), now);
/// }
/// let first = table.members_page(&app, &channel, "", 2, 1 << 20);
/// assert_eq!((first.members.len(), first.next.as_deref(), first.total), (2, Some("bob"), 3));
/// let rest = table.members_page(&app, &channel, "bob", 2, 1 << 20);
/// assert_eq!((rest.members[0].client_id.as_str(), rest.next), ("cy", None));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembersPage {
    /// Members, by client id.
    pub members: Vec<Member>,
    /// The client id to continue after; `None` when the page ends the list.
    pub next: Option<String>,
    /// How many members the channel has in all.
    pub total: usize,
}

/// The members of presence channels.
///
/// ```
/// use std::time::{Duration, Instant};
/// use herald_bus::presence::{MemberChange, PresenceTable};
/// use herald_proto::{AppId, ChannelName, bus};
///
/// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat:lobby")?);
/// let report = |kind| bus::PresenceReport { edge_id: "edge-1".into(), kind: Some(kind), ..Default::default() };
/// let entry = bus::PresenceEntry {
///     channel: channel.to_string(), connection_id: "c1".into(), client_id: "ada".into(), ..Default::default()
/// };
/// let mut table = PresenceTable::new(Duration::from_secs(30), 100_000);
/// let now = Instant::now();
///
/// let join = report(bus::presence_report::Kind::Join(bus::PresenceJoin { entry: Some(entry.clone()) }));
/// assert!(matches!(&table.apply(&app, &channel, &join, now)[..], [MemberChange::Joined(_)]));
/// assert!(table.is_member(&app, &channel, "ada"));
/// assert_eq!(table.member_count(&app, &channel), 1);
/// let page = table.members_page(&app, &channel, "", 100, 1 << 20);
/// assert_eq!((page.members[0].client_id.as_str(), page.total), ("ada", 1));
///
/// let leave = report(bus::presence_report::Kind::Leave(bus::PresenceLeave { entry: Some(entry) }));
/// assert!(matches!(&table.apply(&app, &channel, &leave, now)[..], [MemberChange::Left(_)]));
/// assert_eq!(table.member_count(&app, &channel), 0);
///
/// // An edge that stops reporting: its entries expire after the TTL.
/// table.apply(&app, &channel, &join, now);
/// assert!(table.expire(now + Duration::from_secs(10)).is_empty());
/// let expired = table.expire(now + Duration::from_secs(31));
/// assert!(matches!(&expired[..], [(_, _, MemberChange::Left(m))] if m.client_id == "ada"));
///
/// // Or the edge's last subscriber left: the channel is forgotten at once.
/// table.apply(&app, &channel, &join, now);
/// table.forget(&app, &channel);
/// assert!(!table.is_member(&app, &channel, "ada"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PresenceTable {
    ttl: Duration,
    max_per_channel: usize,
    channels: HashMap<ChannelKey, ChannelPresence>,
}

impl PresenceTable {
    /// An empty table whose entries expire after their last refresh: the
    /// TTL the report said (its edge's), or `ttl` when it said none; keeping
    /// at most `max_per_channel` entries (member connections) per
    /// channel: joins past it are ignored until some leave.
    #[must_use]
    pub fn new(ttl: Duration, max_per_channel: usize) -> Self {
        Self { ttl, max_per_channel, channels: HashMap::new() }
    }

    /// Applies one report about `channel`; returns the member changes it
    /// caused. Entries naming another channel are ignored.
    pub fn apply(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        report: &bus::PresenceReport,
        now: Instant,
    ) -> Vec<MemberChange> {
        use bus::presence_report::Kind;
        let mut changes = Vec::new();
        let edge = report.edge_id.as_str();
        let key = (app.clone(), channel.clone());
        let valid = |e: &bus::PresenceEntry| e.channel == channel.as_str() && !e.client_id.is_empty();
        let expires = expiry(now, report.ttl_ms, self.ttl);
        match &report.kind {
            Some(Kind::Join(bus::PresenceJoin { entry: Some(entry) })) if valid(entry) => {
                changes.extend(self.channels.entry(key).or_default().join(edge, entry, expires, self.max_per_channel));
            }
            Some(Kind::Snapshot(snapshot)) => {
                let max = self.max_per_channel;
                let ch = self.channels.entry(key.clone()).or_default();
                for entry in snapshot.entries.iter().filter(|e| valid(e)) {
                    changes.extend(ch.join(edge, entry, expires, max));
                }
                if ch.entries.is_empty() {
                    self.channels.remove(&key);
                }
            }
            Some(Kind::Leave(bus::PresenceLeave { entry: Some(entry) })) => {
                if let Some(ch) = self.channels.get_mut(&key) {
                    changes.extend(ch.leave(edge, &entry.connection_id));
                    if ch.entries.is_empty() {
                        self.channels.remove(&key);
                    }
                }
            }
            _ => {}
        }
        changes
    }

    /// Drops the entries not refreshed within their TTL; returns the member
    /// changes, per channel.
    pub fn expire(&mut self, now: Instant) -> Vec<(AppId, ChannelName, MemberChange)> {
        let mut changes = Vec::new();
        self.channels.retain(|(app, channel), ch| {
            let stale: Vec<(Box<str>, Box<str>)> =
                ch.entries.iter().filter(|(_, e)| now > e.expires).map(|(k, _)| k.clone()).collect();
            for key in stale {
                if let Some(entry) = ch.entries.remove(&key)
                    && let Some(change) = ch.release(&entry.client_id)
                {
                    changes.push((app.clone(), channel.clone(), change));
                }
            }
            !ch.entries.is_empty()
        });
        changes
    }

    /// Forgets a channel (an edge whose last subscriber left it).
    pub fn forget(&mut self, app: &AppId, channel: &ChannelName) {
        self.channels.remove(&(app.clone(), channel.clone()));
    }

    /// One page of the channel's members, by client id: those after
    /// `after`, at most `limit` and about `max_bytes` of ids and info (at
    /// least one member when any is left, however large).
    #[must_use]
    pub fn members_page(
        &self,
        app: &AppId,
        channel: &ChannelName,
        after: &str,
        limit: usize,
        max_bytes: usize,
    ) -> MembersPage {
        let Some(ch) = self.channels.get(&(app.clone(), channel.clone())) else { return MembersPage::default() };
        let mut rest: Vec<(&Arc<str>, &ClientState)> =
            ch.clients.iter().filter(|(id, _)| id.as_ref() > after).collect();
        rest.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut members = Vec::new();
        let mut bytes = 0;
        for (id, state) in &rest {
            let size = id.len() + state.info.len() + 16;
            if members.len() == limit.max(1) || (!members.is_empty() && bytes + size > max_bytes) {
                break;
            }
            bytes += size;
            members.push(Member {
                client_id: id.to_string(),
                info: state.info.clone(),
                connections: state.connections,
            });
        }
        let next = (members.len() < rest.len()).then(|| members.last().map(|m| m.client_id.clone())).flatten();
        MembersPage { members, next, total: ch.clients.len() }
    }

    /// Whether `client_id` is a member of the channel.
    #[must_use]
    pub fn is_member(&self, app: &AppId, channel: &ChannelName, client_id: &str) -> bool {
        self.channels.get(&(app.clone(), channel.clone())).is_some_and(|c| c.clients.contains_key(client_id))
    }

    /// How many client ids are in the channel.
    #[must_use]
    pub fn member_count(&self, app: &AppId, channel: &ChannelName) -> usize {
        self.channels.get(&(app.clone(), channel.clone())).map_or(0, |c| c.clients.len())
    }
}

/// Subscriber counts per channel, summed over the edges that report them.
///
/// ```
/// use std::time::{Duration, Instant};
/// use herald_bus::presence::OccupancyTable;
/// use herald_proto::{AppId, ChannelName, bus};
///
/// let report = |edge: &str, counts: &[(&str, u32)]| bus::OccupancyReport {
///     edge_id: edge.into(),
///     app_id: "app1".into(),
///     channels: counts.iter().map(|(c, n)| bus::ChannelCount { channel: (*c).into(), subscribers: *n }).collect(),
///     ttl_ms: 30_000,
///     ..Default::default()
/// };
/// let mut table = OccupancyTable::new(Duration::from_secs(30));
/// let now = Instant::now();
/// let (app, changed) = table.apply(&report("edge-1", &[("chat", 2), ("news", 1)]), now).expect("a valid app id");
/// assert_eq!(changed.len(), 2);
/// table.apply(&report("edge-2", &[("chat", 3)]), now);
///
/// let chat = ChannelName::new("chat")?;
/// assert_eq!(table.subscribers(&app, &chat), 5, "summed over the edges");
/// let channels: Vec<(String, u64)> = table.channels(&app).into_iter().map(|(c, n)| (c.to_string(), n)).collect();
/// assert_eq!(channels, [("chat".to_owned(), 5), ("news".to_owned(), 1)]);
///
/// // Edges that stop reporting: their counts expire with their TTL.
/// assert_eq!(table.expire(now + Duration::from_secs(31)).len(), 3);
/// assert_eq!(table.subscribers(&app, &chat), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OccupancyTable {
    ttl: Duration,
    /// (edge id, app, part) → when they expire, and the counts.
    reports: HashMap<(Box<str>, AppId, u32), EdgeCounts>,
}

impl OccupancyTable {
    /// An empty table whose reports expire the TTL they say (their edge's)
    /// after they arrived, or `ttl` when they say none.
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, reports: HashMap::new() }
    }

    /// Replaces the reporting edge's counts for the report's app and part
    /// (and drops its parts past the report's count). Reports with an
    /// invalid app id, and entries with an invalid channel name, are
    /// ignored. Returns the app and the channels whose count from this edge
    /// changed.
    pub fn apply(&mut self, report: &bus::OccupancyReport, now: Instant) -> Option<(AppId, Vec<ChannelName>)> {
        let app = AppId::new(&report.app_id).ok()?;
        let parts = report.parts.max(1);
        if report.part >= parts {
            return None;
        }
        let mut before: HashMap<ChannelName, u32> = HashMap::new();
        self.reports.retain(|(edge, a, part), (_, counts)| {
            let gone = &**edge == report.edge_id.as_str() && *a == app && *part >= parts;
            if gone {
                before.extend(counts.drain());
            }
            !gone
        });
        let counts: HashMap<ChannelName, u32> = report
            .channels
            .iter()
            .filter(|c| c.subscribers > 0)
            .filter_map(|c| ChannelName::new(&c.channel).ok().map(|n| (n, c.subscribers)))
            .collect();
        let key = (Box::<str>::from(report.edge_id.as_str()), app.clone(), report.part);
        let old = if counts.is_empty() {
            self.reports.remove(&key)
        } else {
            self.reports.insert(key, (expiry(now, report.ttl_ms, self.ttl), counts.clone()))
        };
        if let Some((_, old)) = old {
            before.extend(old);
        }
        let mut changed: Vec<ChannelName> =
            counts.into_iter().filter(|(name, n)| before.remove(name) != Some(*n)).map(|(name, _)| name).collect();
        changed.extend(before.into_keys());
        Some((app, changed))
    }

    /// Drops the reports older than their TTL; returns the channels whose
    /// counts they held.
    pub fn expire(&mut self, now: Instant) -> Vec<(AppId, ChannelName)> {
        let mut dropped = Vec::new();
        self.reports.retain(|(_, app, _), (expires, counts)| {
            let keep = now <= *expires;
            if !keep {
                dropped.extend(counts.keys().map(|name| (app.clone(), name.clone())));
            }
            keep
        });
        dropped
    }

    /// The subscribers of one channel, over every edge.
    #[must_use]
    pub fn subscribers(&self, app: &AppId, channel: &ChannelName) -> u64 {
        self.reports
            .iter()
            .filter(|((_, a, _), _)| a == app)
            .filter_map(|(_, (_, counts))| counts.get(channel))
            .map(|n| u64::from(*n))
            .sum()
    }

    /// The app's occupied channels with their subscriber counts, by name.
    #[must_use]
    pub fn channels(&self, app: &AppId) -> Vec<(ChannelName, u64)> {
        let mut sums: HashMap<&ChannelName, u64> = HashMap::new();
        for ((_, a, _), (_, counts)) in &self.reports {
            if a == app {
                for (name, n) in counts {
                    *sums.entry(name).or_default() += u64::from(*n);
                }
            }
        }
        let mut out: Vec<(ChannelName, u64)> = sums.into_iter().map(|(n, c)| (n.clone(), c)).collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::presence_report::Kind;

    fn ids() -> (AppId, ChannelName) {
        (AppId::new("a").expect("app"), ChannelName::new("room:1").expect("channel"))
    }

    fn entry(conn: &str, client: &str) -> bus::PresenceEntry {
        bus::PresenceEntry {
            channel: "room:1".into(),
            connection_id: conn.into(),
            client_id: client.into(),
            info: Bytes::from_static(b"{}"),
        }
    }

    fn report(edge: &str, kind: Kind) -> bus::PresenceReport {
        bus::PresenceReport { edge_id: edge.into(), app_id: "a".into(), ttl_ms: 0, kind: Some(kind) }
    }

    fn join(edge: &str, conn: &str, client: &str) -> bus::PresenceReport {
        report(edge, Kind::Join(bus::PresenceJoin { entry: Some(entry(conn, client)) }))
    }

    fn leave(edge: &str, conn: &str, client: &str) -> bus::PresenceReport {
        report(edge, Kind::Leave(bus::PresenceLeave { entry: Some(entry(conn, client)) }))
    }

    #[test]
    fn members_are_counted_per_client_across_connections_and_edges() {
        let (app, ch) = ids();
        let mut t = PresenceTable::new(Duration::from_secs(30), 100_000);
        let now = Instant::now();
        let changes = t.apply(&app, &ch, &join("e1", "c1", "ada"), now);
        assert!(matches!(&changes[..], [MemberChange::Joined(m)] if m.client_id == "ada"));
        assert!(t.apply(&app, &ch, &join("e2", "c9", "ada"), now).is_empty(), "second tab: no join");
        assert!(t.apply(&app, &ch, &join("e1", "c1", "ada"), now).is_empty(), "repeated join is a refresh");
        t.apply(&app, &ch, &join("e2", "c2", "bob"), now);
        let members = t.members_page(&app, &ch, "", usize::MAX, usize::MAX).members;
        assert_eq!(
            members.iter().map(|m| (m.client_id.as_str(), m.connections)).collect::<Vec<_>>(),
            vec![("ada", 2), ("bob", 1)]
        );
        assert!(t.apply(&app, &ch, &leave("e1", "c1", "ada"), now).is_empty(), "ada still has a tab");
        let changes = t.apply(&app, &ch, &leave("e2", "c9", "ada"), now);
        assert!(matches!(&changes[..], [MemberChange::Left(m)] if m.client_id == "ada"));
        assert!(t.apply(&app, &ch, &leave("e2", "c9", "ada"), now).is_empty(), "leave twice: nothing");
        assert_eq!(t.member_count(&app, &ch), 1);
    }

    #[test]
    fn entries_of_a_silent_edge_expire_and_snapshots_keep_the_others() {
        let (app, ch) = ids();
        let ttl = Duration::from_secs(30);
        let mut t = PresenceTable::new(ttl, 100_000);
        let start = Instant::now();
        t.apply(&app, &ch, &join("dead", "c1", "ghost"), start);
        t.apply(&app, &ch, &join("live", "c2", "ada"), start);
        let later = start + ttl - Duration::from_secs(1);
        let snapshot = bus::PresenceSnapshot { entries: vec![entry("c2", "ada")], taken_at_ms: 0 };
        assert!(t.apply(&app, &ch, &report("live", Kind::Snapshot(snapshot)), later).is_empty());
        let changes = t.expire(start + ttl + Duration::from_secs(1));
        assert_eq!(changes.len(), 1);
        assert!(matches!(&changes[0].2, MemberChange::Left(m) if m.client_id == "ghost"));
        assert_eq!(t.members_page(&app, &ch, "", usize::MAX, usize::MAX).members.len(), 1);
        assert!(t.expire(later + ttl + Duration::from_secs(1)).len() == 1, "ada expires once her edge is silent too");
        assert_eq!(t.member_count(&app, &ch), 0);
    }

    #[test]
    fn a_report_that_says_its_ttl_expires_by_it() {
        let (app, ch) = ids();
        let mut t = PresenceTable::new(Duration::from_secs(30), 100_000);
        let start = Instant::now();
        let mut short = join("e1", "c1", "ada");
        short.ttl_ms = 5_000;
        t.apply(&app, &ch, &short, start);
        t.apply(&app, &ch, &join("e2", "c2", "bob"), start);
        assert!(t.expire(start + Duration::from_secs(4)).is_empty());
        let changes = t.expire(start + Duration::from_secs(6));
        assert_eq!(changes.len(), 1, "the edge's 5 s, not the table's 30 s");
        assert!(matches!(&changes[0].2, MemberChange::Left(m) if m.client_id == "ada"));
        assert!(t.expire(start + Duration::from_secs(31)).len() == 1, "bob: the table's own TTL");
        let mut o = OccupancyTable::new(Duration::from_secs(30));
        let counts = |edge: &str, ttl_ms| bus::OccupancyReport {
            edge_id: edge.into(),
            app_id: "a".into(),
            channels: vec![bus::ChannelCount { channel: "x".into(), subscribers: 1 }],
            ttl_ms,
            ..Default::default()
        };
        o.apply(&counts("e1", 5_000), start);
        o.apply(&counts("e2", 0), start);
        o.expire(start + Duration::from_secs(6));
        assert_eq!(o.channels(&app).first().map(|(_, n)| *n), Some(1), "only e2's count is left");
    }

    #[test]
    fn entries_for_another_channel_or_without_client_are_ignored() {
        let (app, ch) = ids();
        let mut t = PresenceTable::new(Duration::from_secs(30), 100_000);
        let mut other = entry("c1", "ada");
        other.channel = "room:2".into();
        t.apply(&app, &ch, &report("e", Kind::Join(bus::PresenceJoin { entry: Some(other) })), Instant::now());
        t.apply(&app, &ch, &join("e", "c2", ""), Instant::now());
        assert_eq!(t.member_count(&app, &ch), 0);
    }

    #[test]
    fn members_come_in_pages_that_cover_the_list_once() {
        let (app, ch) = ids();
        let mut t = PresenceTable::new(Duration::from_secs(30), 100_000);
        let now = Instant::now();
        for i in 0..2_500 {
            t.apply(&app, &ch, &join("e", &format!("c{i}"), &format!("u{i:05}")), now);
        }
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let page = t.members_page(&app, &ch, &after, 1000, usize::MAX);
            assert_eq!(page.total, 2_500);
            assert!(page.members.len() <= 1000);
            seen.extend(page.members.iter().map(|m| m.client_id.clone()));
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        let expected: Vec<String> = (0..2_500).map(|i| format!("u{i:05}")).collect();
        assert_eq!(seen, expected, "every member once, in order");
        // A byte budget shortens pages, but never below one member.
        let page = t.members_page(&app, &ch, "", 1000, 100);
        assert_eq!(page.members.len(), 4, "{page:?}");
        assert_eq!(t.members_page(&app, &ch, "", 1000, 1).members.len(), 1);
        assert_eq!(
            t.members_page(&app, &ch, "u02499", 1000, usize::MAX),
            MembersPage { total: 2_500, ..Default::default() }
        );
        let unknown = ChannelName::new("room:9").expect("valid");
        assert_eq!(t.members_page(&app, &unknown, "", 10, 100), MembersPage::default());
    }

    #[test]
    fn a_channel_keeps_at_most_its_bound_of_entries() {
        let (app, ch) = ids();
        let mut t = PresenceTable::new(Duration::from_secs(30), 3);
        let now = Instant::now();
        for i in 0..5 {
            t.apply(&app, &ch, &join("e", &format!("c{i}"), &format!("u{i}")), now);
        }
        assert_eq!(t.member_count(&app, &ch), 3, "joins past the bound are ignored");
        assert!(t.apply(&app, &ch, &join("e", "c0", "u0"), now).is_empty(), "a known entry still refreshes");
        t.apply(&app, &ch, &leave("e", "c1", "u1"), now);
        // Room again: the next report of an ignored connection gets in.
        let changes = t.apply(&app, &ch, &join("e", "c4", "u4"), now);
        assert!(matches!(&changes[..], [MemberChange::Joined(m)] if m.client_id == "u4"));
        assert_eq!(t.member_count(&app, &ch), 3);
    }

    #[test]
    fn ten_thousand_members() {
        let (app, ch) = ids();
        let mut t = PresenceTable::new(Duration::from_secs(30), 100_000);
        let now = Instant::now();
        let entries: Vec<_> = (0..10_000).map(|i| entry(&format!("c{i}"), &format!("u{i}"))).collect();
        for chunk in entries.chunks(500) {
            let snapshot = bus::PresenceSnapshot { entries: chunk.to_vec(), taken_at_ms: 0 };
            assert_eq!(t.apply(&app, &ch, &report("e", Kind::Snapshot(snapshot)), now).len(), chunk.len());
        }
        assert_eq!(t.members_page(&app, &ch, "", usize::MAX, usize::MAX).members.len(), 10_000);
        assert_eq!(t.expire(now + Duration::from_secs(31)).len(), 10_000);
    }

    #[test]
    fn occupancy_sums_edges_and_expires() {
        let app = AppId::new("a").expect("app");
        let mut t = OccupancyTable::new(Duration::from_secs(30));
        let now = Instant::now();
        let count = |c: &str, n| bus::ChannelCount { channel: c.into(), subscribers: n };
        t.apply(
            &bus::OccupancyReport {
                edge_id: "e1".into(),
                app_id: "a".into(),
                channels: vec![count("x", 2), count("y", 1)],
                ..Default::default()
            },
            now,
        );
        t.apply(
            &bus::OccupancyReport {
                edge_id: "e2".into(),
                app_id: "a".into(),
                channels: vec![count("x", 3), count("bad*name", 1)],
                ..Default::default()
            },
            now + Duration::from_secs(20),
        );
        let names =
            |t: &OccupancyTable| t.channels(&app).into_iter().map(|(n, c)| (n.to_string(), c)).collect::<Vec<_>>();
        assert_eq!(names(&t), vec![("x".to_owned(), 5), ("y".to_owned(), 1)]);
        t.expire(now + Duration::from_secs(31));
        assert_eq!(names(&t), vec![("x".to_owned(), 3)]);
        t.apply(&bus::OccupancyReport { edge_id: "e2".into(), app_id: "a".into(), ..Default::default() }, now);
        assert!(t.channels(&app).is_empty());
        // In parts: each part replaces itself; fewer parts drop the rest.
        let part = |part, parts, c: &str| bus::OccupancyReport {
            edge_id: "e3".into(),
            app_id: "a".into(),
            channels: vec![count(c, 1)],
            part,
            parts,
            ttl_ms: 0,
        };
        t.apply(&part(0, 2, "p"), now);
        t.apply(&part(1, 2, "q"), now);
        assert_eq!(names(&t), vec![("p".to_owned(), 1), ("q".to_owned(), 1)]);
        t.apply(&part(0, 1, "p"), now);
        assert_eq!(names(&t), vec![("p".to_owned(), 1)]);
        t.apply(&part(5, 2, "bad"), now);
        assert_eq!(names(&t), vec![("p".to_owned(), 1)]);
    }
}
