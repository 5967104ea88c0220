//! Channel history: the types the bus's history API speaks, and the
//! in-process store the embedded mode keeps history in.
//!
//! A channel keeps history when its namespace says so. Every message of such
//! a channel gets a [`Position`]: a sequence number, increasing within the
//! namespace's stream, and the stream's epoch, which changes whenever the
//! stream is lost or recreated (its sequence numbers then mean nothing any
//! more). With NATS the stream is a JetStream stream per (app, namespace);
//! in the embedded mode it is a [`LocalHistory`].
//!
//! Recovery from a position `p` is complete exactly when no message of the
//! channel after `p` was dropped. Both limits (size per channel and age) drop
//! a channel's oldest messages first, so: for `p > 0`, recovery is complete
//! when the message at `p` is still held for this channel; for `p = 0`, when
//! the channel never lost a message.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, NamespaceName, bus};

/// Where a message sits in its channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The message's sequence number in its namespace's stream.
    pub seq: u64,
    /// The stream's epoch.
    pub epoch: String,
}

/// The bounds of a namespace's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySpec {
    /// Messages kept per channel.
    pub size: u32,
    /// How long a message is kept.
    pub ttl: Duration,
    /// Bytes kept in the whole stream, oldest dropped first.
    pub max_bytes: u64,
    /// Copies kept by the NATS cluster (the in-process store keeps one).
    pub replicas: u8,
}

impl HistorySpec {
    /// The bounds of the stream of a namespace with `options` (which keep
    /// history), in a deployment whose streams get `bounds`.
    #[must_use]
    pub fn new(options: &bus::NamespaceOptions, bounds: StreamBounds) -> Self {
        Self {
            size: options.history_size,
            ttl: Duration::from_millis(options.history_ttl_ms),
            max_bytes: bounds.max_bytes,
            replicas: bounds.replicas,
        }
    }
}

/// The bounds every history stream of a deployment gets, from the control
/// plane's configuration rather than from the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamBounds {
    /// Bytes kept in one stream ([`HistorySpec::max_bytes`]).
    pub max_bytes: u64,
    /// Copies kept by the NATS cluster ([`HistorySpec::replicas`]).
    pub replicas: u8,
}

impl StreamBounds {
    /// The control plane's defaults: 256 MiB, one copy.
    pub const DEFAULT: Self = Self { max_bytes: 256 * 1024 * 1024, replicas: 1 };

    /// The bounds a [`bus::NamespaceList`] carries; the defaults for those
    /// it does not set.
    #[must_use]
    pub fn from_list(list: &bus::NamespaceList) -> Self {
        Self {
            max_bytes: if list.history_max_bytes == 0 { Self::DEFAULT.max_bytes } else { list.history_max_bytes },
            replicas: u8::try_from(list.history_replicas).ok().filter(|r| *r > 0).unwrap_or(Self::DEFAULT.replicas),
        }
    }
}

impl Default for StreamBounds {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One stored message.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Its sequence number.
    pub seq: u64,
    /// The encoded [`herald_proto::bus::ChannelMessage`].
    pub payload: Bytes,
}

/// What a history read returns.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// The stream's epoch.
    pub epoch: String,
    /// Messages after the requested sequence, oldest first.
    pub messages: Vec<HistoryEntry>,
    /// Whether every message after the requested sequence is still held
    /// (false: some were dropped, so the page does not continue it).
    pub complete: bool,
    /// The sequence of the channel's newest message (0 when none).
    pub last_seq: u64,
}

/// The in-process history of the embedded mode: one stream per (app,
/// namespace), bounded like a JetStream stream.
#[derive(Default)]
pub struct LocalHistory {
    streams: HashMap<(AppId, NamespaceName), LocalStream>,
}

struct LocalStream {
    spec: HistorySpec,
    epoch: String,
    last_seq: u64,
    bytes: u64,
    channels: HashMap<ChannelName, LocalChannel>,
}

#[derive(Default)]
struct LocalChannel {
    messages: VecDeque<(u64, Instant, Bytes)>,
    /// Whether a message of this channel was ever dropped.
    dropped: bool,
}

/// A fresh epoch: the creation time in nanoseconds, made unique within the
/// process.
fn new_epoch() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let prev = LAST.fetch_max(now, Ordering::Relaxed);
    let value = if now > prev { now } else { LAST.fetch_add(1, Ordering::Relaxed) + 1 };
    format!("{value}")
}

impl LocalHistory {
    /// Creates the namespace's stream, or changes its bounds.
    pub fn ensure(&mut self, app: &AppId, ns: &NamespaceName, spec: &HistorySpec) {
        let stream = self.streams.entry((app.clone(), ns.clone())).or_insert_with(|| LocalStream {
            spec: spec.clone(),
            epoch: new_epoch(),
            last_seq: 0,
            bytes: 0,
            channels: HashMap::new(),
        });
        stream.spec = spec.clone();
        stream.trim(Instant::now());
    }

    /// Removes the namespace's stream and everything in it.
    pub fn drop_stream(&mut self, app: &AppId, ns: &NamespaceName) {
        self.streams.remove(&(app.clone(), ns.clone()));
    }

    /// Whether the namespace has a stream.
    #[must_use]
    pub fn has_stream(&self, app: &AppId, ns: &NamespaceName) -> bool {
        self.streams.contains_key(&(app.clone(), ns.clone()))
    }

    /// Stores a message; `None` when the namespace has no stream.
    pub fn append(
        &mut self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        payload: Bytes,
    ) -> Option<Position> {
        let stream = self.streams.get_mut(&(app.clone(), ns.clone()))?;
        let now = Instant::now();
        stream.last_seq += 1;
        let seq = stream.last_seq;
        stream.bytes += payload.len() as u64;
        stream.channels.entry(channel.clone()).or_default().messages.push_back((seq, now, payload));
        stream.trim(now);
        Some(Position { seq, epoch: stream.epoch.clone() })
    }

    /// Up to `limit` messages of the channel after `after_seq`; `None` when
    /// the namespace has no stream.
    pub fn read(
        &mut self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        after_seq: u64,
        limit: usize,
    ) -> Option<HistoryPage> {
        let stream = self.streams.get_mut(&(app.clone(), ns.clone()))?;
        stream.trim(Instant::now());
        let epoch = stream.epoch.clone();
        let Some(ch) = stream.channels.get(channel) else {
            // Nothing held: complete unless the position is from the future.
            return Some(HistoryPage {
                epoch,
                messages: Vec::new(),
                complete: after_seq <= stream.last_seq,
                last_seq: 0,
            });
        };
        let complete =
            if after_seq == 0 { !ch.dropped } else { ch.messages.binary_search_by_key(&after_seq, |m| m.0).is_ok() };
        let start = ch.messages.partition_point(|m| m.0 <= after_seq);
        let messages = ch
            .messages
            .iter()
            .skip(start)
            .take(limit)
            .map(|(seq, _, p)| HistoryEntry { seq: *seq, payload: p.clone() })
            .collect();
        let last_seq = ch.messages.back().map_or(0, |m| m.0);
        Some(HistoryPage { epoch, messages, complete, last_seq })
    }

    /// The stream's current epoch.
    #[must_use]
    pub fn epoch(&self, app: &AppId, ns: &NamespaceName) -> Option<String> {
        self.streams.get(&(app.clone(), ns.clone())).map(|s| s.epoch.clone())
    }
}

impl LocalStream {
    /// Applies the bounds: per-channel size, age, and the stream's bytes.
    fn trim(&mut self, now: Instant) {
        let size = self.spec.size as usize;
        let ttl = self.spec.ttl;
        for ch in self.channels.values_mut() {
            while ch.messages.len() > size || ch.messages.front().is_some_and(|m| now.duration_since(m.1) > ttl) {
                if let Some((_, _, p)) = ch.messages.pop_front() {
                    self.bytes -= p.len() as u64;
                    ch.dropped = true;
                }
            }
        }
        while self.bytes > self.spec.max_bytes {
            // Drop the oldest message of the whole stream.
            let Some(oldest) = self
                .channels
                .iter()
                .filter_map(|(name, ch)| ch.messages.front().map(|m| (m.0, name.clone())))
                .min_by_key(|(seq, _)| *seq)
            else {
                break;
            };
            if let Some(ch) = self.channels.get_mut(&oldest.1)
                && let Some((_, _, p)) = ch.messages.pop_front()
            {
                self.bytes -= p.len() as u64;
                ch.dropped = true;
            }
        }
        // Channels that hold nothing and never lost anything carry no state.
        self.channels.retain(|_, ch| !ch.messages.is_empty() || ch.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (AppId, NamespaceName, ChannelName) {
        (AppId::new("a").expect("app"), NamespaceName::new("n").expect("ns"), ChannelName::new("n:c").expect("ch"))
    }

    fn spec(size: u32) -> HistorySpec {
        HistorySpec { size, ttl: Duration::from_secs(60), max_bytes: 1 << 20, replicas: 1 }
    }

    #[test]
    fn replays_after_a_position_and_reports_completeness() {
        let (app, ns, ch) = ids();
        let mut h = LocalHistory::default();
        assert!(h.append(&app, &ns, &ch, Bytes::from_static(b"x")).is_none(), "no stream yet");
        h.ensure(&app, &ns, &spec(3));
        let positions: Vec<Position> =
            (0..5).map(|i| h.append(&app, &ns, &ch, Bytes::from(vec![i])).expect("stream")).collect();
        assert_eq!(positions.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        // Seqs 3..=5 are held: from 3 nothing is missing; from 2 (dropped) we cannot tell.
        let page = h.read(&app, &ns, &ch, 3, 10).expect("stream");
        assert!(page.complete);
        assert_eq!(page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(page.last_seq, 5);
        let page = h.read(&app, &ns, &ch, 2, 10).expect("stream");
        assert!(!page.complete, "message 2 was dropped");
        assert!(!h.read(&app, &ns, &ch, 0, 10).expect("stream").complete, "the channel lost messages");
        assert!(!h.read(&app, &ns, &ch, 99, 10).expect("stream").complete, "a position from the future");
        let page = h.read(&app, &ns, &ch, 3, 1).expect("stream");
        assert_eq!(page.messages.len(), 1, "limit applies");
    }

    #[test]
    fn a_new_stream_has_a_new_epoch() {
        let (app, ns, ch) = ids();
        let mut h = LocalHistory::default();
        h.ensure(&app, &ns, &spec(3));
        let first = h.append(&app, &ns, &ch, Bytes::new()).expect("stream");
        h.ensure(&app, &ns, &spec(5));
        assert_eq!(h.epoch(&app, &ns), Some(first.epoch.clone()), "changing bounds keeps the epoch");
        h.drop_stream(&app, &ns);
        h.ensure(&app, &ns, &spec(5));
        let second = h.append(&app, &ns, &ch, Bytes::new()).expect("stream");
        assert_ne!(first.epoch, second.epoch);
        assert_eq!(second.seq, 1);
    }

    #[test]
    fn byte_bound_drops_the_oldest_of_the_stream() {
        let (app, ns, ch) = ids();
        let other = ChannelName::new("n:d").expect("ch");
        let mut h = LocalHistory::default();
        h.ensure(&app, &ns, &HistorySpec { size: 100, ttl: Duration::from_secs(60), max_bytes: 10, replicas: 1 });
        h.append(&app, &ns, &ch, Bytes::from_static(b"12345"));
        h.append(&app, &ns, &other, Bytes::from_static(b"12345"));
        h.append(&app, &ns, &other, Bytes::from_static(b"12345"));
        let page = h.read(&app, &ns, &ch, 0, 10).expect("stream");
        assert!(page.messages.is_empty() && !page.complete);
        assert_eq!(h.read(&app, &ns, &other, 0, 10).expect("stream").messages.len(), 2);
    }
}
