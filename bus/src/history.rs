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
//! The embedded mode can keep its [`LocalHistory`] in a file
//! ([`LocalHistory::open`], `herald dev`'s data folder), so history and
//! positions outlive a restart: the same epochs and sequence numbers, the
//! same bounds, the file itself bounded by rewriting it as a snapshot.
//!
//! Recovery from a position `p` is complete exactly when no message of the
//! channel after `p` was dropped. Both limits (size per channel and age) drop
//! a channel's oldest messages first, so: for `p > 0`, recovery is complete
//! when the message at `p` is still held for this channel; for `p = 0`, when
//! the channel never lost a message.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, NamespaceName, bus};

use crate::history_file::{HistoryFile, HistoryFileError, Record};

/// Where a message sits in its channel's history: what a client recovers
/// from after a reconnect.
///
/// ```
/// use herald_bus::Position;
/// let last_seen = Position { seq: 41, epoch: "e1".into() };
/// // A later message of the same stream (same epoch) follows on.
/// assert!(last_seen.seq < 42);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The message's sequence number in its namespace's stream.
    pub seq: u64,
    /// The stream's epoch.
    pub epoch: String,
}

/// The bounds of a namespace's stream.
///
/// ```
/// use std::time::Duration;
/// use herald_bus::HistorySpec;
/// // 100 messages per channel for an hour, at most 1 MiB in the stream.
/// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
/// assert_eq!(spec.clone(), spec);
/// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_bus::{HistorySpec, StreamBounds};
    /// use herald_proto::bus::NamespaceOptions;
    ///
    /// let options = NamespaceOptions { history_size: 100, history_ttl_ms: 60_000, ..Default::default() };
    /// let spec = HistorySpec::new(&options, StreamBounds::DEFAULT);
    /// assert_eq!((spec.size, spec.ttl), (100, Duration::from_secs(60)));
    /// ```
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
///
/// ```
/// use herald_bus::StreamBounds;
/// use herald_proto::bus::NamespaceList;
/// let list = NamespaceList { history_max_bytes: 1 << 30, history_replicas: 3, ..Default::default() };
/// assert_eq!(StreamBounds::from_list(&list), StreamBounds { max_bytes: 1 << 30, replicas: 3 });
/// assert_eq!(StreamBounds::default(), StreamBounds::DEFAULT);
/// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// use herald_bus::StreamBounds;
    /// use herald_proto::bus::NamespaceList;
    ///
    /// // A list that sets no bounds gets the defaults.
    /// assert_eq!(StreamBounds::from_list(&NamespaceList::default()), StreamBounds::DEFAULT);
    /// ```
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
///
/// ```
/// # use std::time::Duration;
/// # use herald_bus::HistorySpec;
/// use bytes::Bytes;
/// use herald_bus::history::LocalHistory;
/// use herald_proto::{AppId, ChannelName, NamespaceName};
/// # let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
/// let (app, ns, channel) = (AppId::new("app1")?, NamespaceName::new("chat")?, ChannelName::new("chat:lobby")?);
/// let mut history = LocalHistory::default();
/// history.ensure(&app, &ns, &spec)?;
/// history.append(&app, &ns, &channel, Bytes::from_static(b"hello"))?;
/// let page = history.read(&app, &ns, &channel, 0, 10).expect("a stream");
/// let entry = &page.messages[0];
/// assert_eq!((entry.seq, &entry.payload[..]), (1, &b"hello"[..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Its sequence number.
    pub seq: u64,
    /// The encoded [`herald_proto::bus::ChannelMessage`].
    pub payload: Bytes,
}

/// What a history read returns.
///
/// ```
/// # use std::time::Duration;
/// # use herald_bus::HistorySpec;
/// use bytes::Bytes;
/// use herald_bus::history::LocalHistory;
/// use herald_proto::{AppId, ChannelName, NamespaceName};
/// # let (app, ns, channel) = (AppId::new("app1")?, NamespaceName::new("chat")?, ChannelName::new("chat:lobby")?);
/// // A stream keeping 2 messages per channel.
/// let spec = HistorySpec { size: 2, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
/// let mut history = LocalHistory::default();
/// history.ensure(&app, &ns, &spec)?;
/// for text in ["one", "two", "three"] {
///     history.append(&app, &ns, &channel, Bytes::from(text))?;
/// }
/// let page = history.read(&app, &ns, &channel, 0, 10).expect("a stream");
/// assert_eq!((page.messages.len(), page.last_seq), (2, 3));
/// assert!(!page.complete, "message 1 was dropped: recovery from 0 is not complete");
/// assert!(history.read(&app, &ns, &channel, 2, 10).expect("a stream").complete);
/// assert_eq!(Some(page.epoch), history.epoch(&app, &ns));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
/// namespace), bounded like a JetStream stream; in memory, or also in a
/// file ([`Self::open`]).
///
/// ```
/// use std::time::Duration;
/// use bytes::Bytes;
/// use herald_bus::HistorySpec;
/// use herald_bus::history::LocalHistory;
/// use herald_proto::{AppId, ChannelName, NamespaceName};
///
/// let (app, ns, channel) = (AppId::new("app1")?, NamespaceName::new("chat")?, ChannelName::new("chat:lobby")?);
/// let mut history = LocalHistory::default(); // in memory
/// let plain = ChannelName::new("chat:news")?;
/// assert!(history.append(&app, &ns, &plain, Bytes::new())?.is_none(), "no stream yet");
///
/// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
/// history.ensure(&app, &ns, &spec)?;
/// assert!(history.has_stream(&app, &ns));
/// let position = history.append(&app, &ns, &channel, Bytes::from_static(b"hi"))?.expect("stored");
/// assert_eq!(position.seq, 1);
/// history.drop_stream(&app, &ns)?;
/// assert!(!history.has_stream(&app, &ns) && history.read(&app, &ns, &channel, 0, 10).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Default)]
pub struct LocalHistory {
    streams: HashMap<(AppId, NamespaceName), LocalStream>,
    file: Option<HistoryFile>,
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
    /// (sequence, stored at in Unix milliseconds, payload).
    messages: VecDeque<(u64, u64, Bytes)>,
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

/// The wall clock in Unix milliseconds (message ages survive restarts).
fn now_ms() -> u64 {
    u64::try_from(crate::now_ms()).unwrap_or(0)
}

impl LocalHistory {
    /// The history kept in the file at `path` (created when missing): what
    /// it held is read back, and everything from now on is written to it.
    ///
    /// A damaged file (a short last record, a checksum mismatch) is read up
    /// to the damage with a warning, and its streams get new epochs, since
    /// positions given out before may be lost: clients recovering from
    /// them are told recovery is incomplete rather than given a gap. The
    /// file is then rewritten without the damage.
    ///
    /// # Errors
    ///
    /// [`HistoryFileError::NotHistory`] when the file is something else;
    /// `Io` when it cannot be read or written.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use herald_bus::HistorySpec;
    /// use herald_bus::history::LocalHistory;
    /// use herald_proto::{AppId, ChannelName, NamespaceName};
    ///
    /// let (app, ns) = (AppId::new("my-app")?, NamespaceName::new("chat")?);
    /// let channel = ChannelName::new("chat:lobby")?;
    /// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// let path = std::env::temp_dir().join(format!("herald-doc-history-{}.log", std::process::id()));
    /// let mut history = LocalHistory::open(&path)?;
    /// history.ensure(&app, &ns, &spec)?;
    /// let stored = history.append(&app, &ns, &channel, Bytes::from_static(b"hello"))?.expect("a stream");
    /// drop(history);
    ///
    /// // Another start: the same epoch and messages.
    /// let mut history = LocalHistory::open(&path)?;
    /// let page = history.read(&app, &ns, &channel, 0, 10).expect("a stream");
    /// assert_eq!((page.epoch, page.messages.len()), (stored.epoch, 1));
    /// # std::fs::remove_file(&path)?;
    /// # Ok(()) }
    /// ```
    pub fn open(path: &Path) -> Result<Self, HistoryFileError> {
        let (file, records, damage) = HistoryFile::open(path)?;
        let mut history = Self::default();
        let now = now_ms();
        let count = records.len();
        for record in records {
            history.replay(record, now);
        }
        if let Some(damage) = &damage {
            tracing::warn!(
                file = %path.display(),
                ?damage,
                records = count,
                "history file damaged: read up to the damage; its streams get new epochs"
            );
            for stream in history.streams.values_mut() {
                stream.epoch = new_epoch();
            }
        }
        let mut file = file;
        let snapshot = history.snapshot();
        file.held(&snapshot);
        if damage.is_some() || file.wants_snapshot() {
            file.rewrite(&snapshot)?;
        }
        tracing::info!(file = %path.display(), streams = history.streams.len(), records = count, "history read");
        history.file = Some(file);
        Ok(history)
    }

    /// Applies one record of the file, with the bounds of run time.
    fn replay(&mut self, record: Record, now: u64) {
        match record {
            Record::Stream { app, ns, epoch, size, ttl_ms, max_bytes, replicas, last_seq } => {
                let spec = HistorySpec { size, ttl: Duration::from_millis(ttl_ms), max_bytes, replicas };
                let stream = self.streams.entry((app, ns)).or_insert_with(|| LocalStream::new(&spec, epoch.clone()));
                if stream.epoch != epoch {
                    *stream = LocalStream::new(&spec, epoch);
                }
                stream.spec = spec;
                stream.last_seq = stream.last_seq.max(last_seq);
                stream.trim(now);
            }
            Record::Drop { app, ns } => {
                self.streams.remove(&(app, ns));
            }
            Record::Message { app, ns, channel, seq, at_ms, payload } => {
                if let Some(stream) = self.streams.get_mut(&(app, ns)) {
                    stream.push(channel, seq, at_ms, payload, now);
                }
            }
            Record::Lost { app, ns, channel } => {
                if let Some(stream) = self.streams.get_mut(&(app, ns)) {
                    stream.channels.entry(channel).or_default().dropped = true;
                }
            }
        }
    }

    /// What is held, as the records that give it back.
    fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for ((app, ns), stream) in &self.streams {
            out.push(stream.record(app, ns));
            for (channel, ch) in &stream.channels {
                if ch.dropped {
                    out.push(Record::Lost { app: app.clone(), ns: ns.clone(), channel: channel.clone() });
                }
                for (seq, at_ms, payload) in &ch.messages {
                    out.push(Record::Message {
                        app: app.clone(),
                        ns: ns.clone(),
                        channel: channel.clone(),
                        seq: *seq,
                        at_ms: *at_ms,
                        payload: payload.clone(),
                    });
                }
            }
        }
        out
    }

    /// Appends `record` to the file, if there is one.
    fn write(&mut self, record: &Record) -> Result<(), HistoryFileError> {
        match self.file.as_mut() {
            Some(file) => file.append(record),
            None => Ok(()),
        }
    }

    /// Rewrites the file as a snapshot once it has grown well past what is
    /// held. A failure leaves the log as it was (still complete): warned
    /// about, tried again at the next write.
    fn snapshot_if_due(&mut self) {
        if !self.file.as_ref().is_some_and(HistoryFile::wants_snapshot) {
            return;
        }
        let snapshot = self.snapshot();
        if let Some(file) = self.file.as_mut() {
            match file.rewrite(&snapshot) {
                Ok(()) => {
                    tracing::debug!(file = %file.path().display(), records = snapshot.len(), "history file rewritten")
                }
                Err(e) => tracing::warn!(error = %e, "history file not rewritten; it keeps growing until it is"),
            }
        }
    }

    /// Creates the namespace's stream, or changes its bounds.
    ///
    /// # Errors
    ///
    /// When the history is kept in a file and writing it failed (nothing
    /// changed then).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use herald_bus::HistorySpec;
    /// use herald_bus::history::LocalHistory;
    /// use herald_proto::{AppId, ChannelName, NamespaceName};
    ///
    /// let (app, ns) = (AppId::new("my-app")?, NamespaceName::new("chat")?);
    /// let channel = ChannelName::new("chat:lobby")?;
    /// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// let mut history = LocalHistory::default();
    /// history.ensure(&app, &ns, &spec)?;
    /// assert!(history.has_stream(&app, &ns));
    /// # Ok(()) }
    /// ```
    pub fn ensure(&mut self, app: &AppId, ns: &NamespaceName, spec: &HistorySpec) -> Result<(), HistoryFileError> {
        let key = (app.clone(), ns.clone());
        match self.streams.get(&key) {
            Some(stream) if stream.spec == *spec => {}
            Some(stream) => {
                let record = stream_record(app, ns, spec, &stream.epoch, stream.last_seq);
                self.write(&record)?;
            }
            None => {
                let stream = LocalStream::new(spec, new_epoch());
                self.write(&stream_record(app, ns, spec, &stream.epoch, 0))?;
                self.streams.insert(key.clone(), stream);
            }
        }
        if let Some(stream) = self.streams.get_mut(&key) {
            stream.spec = spec.clone();
            stream.trim(now_ms());
        }
        self.snapshot_if_due();
        Ok(())
    }

    /// Removes the namespace's stream and everything in it.
    ///
    /// # Errors
    ///
    /// As [`Self::ensure`].
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use herald_bus::HistorySpec;
    /// use herald_bus::history::LocalHistory;
    /// use herald_proto::{AppId, ChannelName, NamespaceName};
    ///
    /// let (app, ns) = (AppId::new("my-app")?, NamespaceName::new("chat")?);
    /// let channel = ChannelName::new("chat:lobby")?;
    /// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// let mut history = LocalHistory::default();
    /// history.ensure(&app, &ns, &spec)?;
    /// history.drop_stream(&app, &ns)?;
    /// assert!(!history.has_stream(&app, &ns));
    /// # Ok(()) }
    /// ```
    pub fn drop_stream(&mut self, app: &AppId, ns: &NamespaceName) -> Result<(), HistoryFileError> {
        let key = (app.clone(), ns.clone());
        if self.streams.contains_key(&key) {
            self.write(&Record::Drop { app: app.clone(), ns: ns.clone() })?;
            self.streams.remove(&key);
            self.snapshot_if_due();
        }
        Ok(())
    }

    /// Whether the namespace has a stream.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use herald_bus::HistorySpec;
    /// use herald_bus::history::LocalHistory;
    /// use herald_proto::{AppId, ChannelName, NamespaceName};
    ///
    /// let (app, ns) = (AppId::new("my-app")?, NamespaceName::new("chat")?);
    /// let channel = ChannelName::new("chat:lobby")?;
    /// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// let mut history = LocalHistory::default();
    /// assert!(!history.has_stream(&app, &ns));
    /// history.ensure(&app, &ns, &spec)?;
    /// assert!(history.has_stream(&app, &ns));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn has_stream(&self, app: &AppId, ns: &NamespaceName) -> bool {
        self.streams.contains_key(&(app.clone(), ns.clone()))
    }

    /// Stores a message; `Ok(None)` when the namespace has no stream.
    ///
    /// # Errors
    ///
    /// When the history is kept in a file and writing it failed (the
    /// message is not stored then).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use herald_bus::HistorySpec;
    /// use herald_bus::history::LocalHistory;
    /// use herald_proto::{AppId, ChannelName, NamespaceName};
    ///
    /// let (app, ns) = (AppId::new("my-app")?, NamespaceName::new("chat")?);
    /// let channel = ChannelName::new("chat:lobby")?;
    /// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// let mut history = LocalHistory::default();
    /// assert!(history.append(&app, &ns, &channel, Bytes::from_static(b"x"))?.is_none(), "no stream yet");
    /// history.ensure(&app, &ns, &spec)?;
    /// let first = history.append(&app, &ns, &channel, Bytes::from_static(b"a"))?.expect("a stream");
    /// let second = history.append(&app, &ns, &channel, Bytes::from_static(b"b"))?.expect("a stream");
    /// assert_eq!((first.seq, second.seq), (1, 2));
    /// # Ok(()) }
    /// ```
    pub fn append(
        &mut self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        payload: Bytes,
    ) -> Result<Option<Position>, HistoryFileError> {
        let key = (app.clone(), ns.clone());
        let Some(seq) = self.streams.get(&key).map(|s| s.last_seq + 1) else { return Ok(None) };
        let now = now_ms();
        self.write(&Record::Message {
            app: app.clone(),
            ns: ns.clone(),
            channel: channel.clone(),
            seq,
            at_ms: now,
            payload: payload.clone(),
        })?;
        let position = self.streams.get_mut(&key).map(|stream| {
            stream.push(channel.clone(), seq, now, payload, now);
            Position { seq, epoch: stream.epoch.clone() }
        });
        self.snapshot_if_due();
        Ok(position)
    }

    /// Up to `limit` messages of the channel after `after_seq`; `None` when
    /// the namespace has no stream.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use herald_bus::HistorySpec;
    /// use herald_bus::history::LocalHistory;
    /// use herald_proto::{AppId, ChannelName, NamespaceName};
    ///
    /// let (app, ns) = (AppId::new("my-app")?, NamespaceName::new("chat")?);
    /// let channel = ChannelName::new("chat:lobby")?;
    /// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// let mut history = LocalHistory::default();
    /// history.ensure(&app, &ns, &spec)?;
    /// let first = history.append(&app, &ns, &channel, Bytes::from_static(b"a"))?.expect("a stream");
    /// history.append(&app, &ns, &channel, Bytes::from_static(b"b"))?;
    /// // Everything after the first message: complete, since nothing was dropped.
    /// let page = history.read(&app, &ns, &channel, first.seq, 10).expect("a stream");
    /// assert!(page.complete);
    /// assert_eq!(page.messages[0].payload, Bytes::from_static(b"b"));
    /// # Ok(()) }
    /// ```
    pub fn read(
        &mut self,
        app: &AppId,
        ns: &NamespaceName,
        channel: &ChannelName,
        after_seq: u64,
        limit: usize,
    ) -> Option<HistoryPage> {
        let stream = self.streams.get_mut(&(app.clone(), ns.clone()))?;
        stream.trim(now_ms());
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
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use bytes::Bytes;
    /// use herald_bus::HistorySpec;
    /// use herald_bus::history::LocalHistory;
    /// use herald_proto::{AppId, ChannelName, NamespaceName};
    ///
    /// let (app, ns) = (AppId::new("my-app")?, NamespaceName::new("chat")?);
    /// let channel = ChannelName::new("chat:lobby")?;
    /// let spec = HistorySpec { size: 100, ttl: Duration::from_secs(3600), max_bytes: 1 << 20, replicas: 1 };
    /// let mut history = LocalHistory::default();
    /// history.ensure(&app, &ns, &spec)?;
    /// let stored = history.append(&app, &ns, &channel, Bytes::from_static(b"a"))?.expect("a stream");
    /// assert_eq!(history.epoch(&app, &ns), Some(stored.epoch));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn epoch(&self, app: &AppId, ns: &NamespaceName) -> Option<String> {
        self.streams.get(&(app.clone(), ns.clone())).map(|s| s.epoch.clone())
    }
}

/// The record of a stream with `spec`.
fn stream_record(app: &AppId, ns: &NamespaceName, spec: &HistorySpec, epoch: &str, last_seq: u64) -> Record {
    Record::Stream {
        app: app.clone(),
        ns: ns.clone(),
        epoch: epoch.to_owned(),
        size: spec.size,
        ttl_ms: u64::try_from(spec.ttl.as_millis()).unwrap_or(u64::MAX),
        max_bytes: spec.max_bytes,
        replicas: spec.replicas,
        last_seq,
    }
}

impl LocalStream {
    fn new(spec: &HistorySpec, epoch: String) -> Self {
        Self { spec: spec.clone(), epoch, last_seq: 0, bytes: 0, channels: HashMap::new() }
    }

    fn record(&self, app: &AppId, ns: &NamespaceName) -> Record {
        stream_record(app, ns, &self.spec, &self.epoch, self.last_seq)
    }

    /// Stores message `seq` of `channel`, stored at `at_ms`, and applies the
    /// bounds as of `now`.
    fn push(&mut self, channel: ChannelName, seq: u64, at_ms: u64, payload: Bytes, now: u64) {
        self.last_seq = self.last_seq.max(seq);
        self.bytes += payload.len() as u64;
        self.channels.entry(channel).or_default().messages.push_back((seq, at_ms, payload));
        self.trim(now);
    }

    /// Applies the bounds as of `now` (Unix milliseconds): per-channel
    /// size, age, and the stream's bytes.
    fn trim(&mut self, now: u64) {
        let size = self.spec.size as usize;
        let ttl = u64::try_from(self.spec.ttl.as_millis()).unwrap_or(u64::MAX);
        for ch in self.channels.values_mut() {
            while ch.messages.len() > size || ch.messages.front().is_some_and(|m| now.saturating_sub(m.1) > ttl) {
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
        assert!(h.append(&app, &ns, &ch, Bytes::from_static(b"x")).expect("memory").is_none(), "no stream yet");
        h.ensure(&app, &ns, &spec(3)).expect("memory");
        let positions: Vec<Position> =
            (0..5).map(|i| h.append(&app, &ns, &ch, Bytes::from(vec![i])).expect("memory").expect("stream")).collect();
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
        h.ensure(&app, &ns, &spec(3)).expect("memory");
        let first = h.append(&app, &ns, &ch, Bytes::new()).expect("memory").expect("stream");
        h.ensure(&app, &ns, &spec(5)).expect("memory");
        assert_eq!(h.epoch(&app, &ns), Some(first.epoch.clone()), "changing bounds keeps the epoch");
        h.drop_stream(&app, &ns).expect("memory");
        h.ensure(&app, &ns, &spec(5)).expect("memory");
        let second = h.append(&app, &ns, &ch, Bytes::new()).expect("memory").expect("stream");
        assert_ne!(first.epoch, second.epoch);
        assert_eq!(second.seq, 1);
    }

    #[test]
    fn byte_bound_drops_the_oldest_of_the_stream() {
        let (app, ns, ch) = ids();
        let other = ChannelName::new("n:d").expect("ch");
        let mut h = LocalHistory::default();
        h.ensure(&app, &ns, &HistorySpec { size: 100, ttl: Duration::from_secs(60), max_bytes: 10, replicas: 1 })
            .expect("memory");
        h.append(&app, &ns, &ch, Bytes::from_static(b"12345")).expect("memory");
        h.append(&app, &ns, &other, Bytes::from_static(b"12345")).expect("memory");
        h.append(&app, &ns, &other, Bytes::from_static(b"12345")).expect("memory");
        let page = h.read(&app, &ns, &ch, 0, 10).expect("stream");
        assert!(page.messages.is_empty() && !page.complete);
        assert_eq!(h.read(&app, &ns, &other, 0, 10).expect("stream").messages.len(), 2);
    }

    fn file_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("herald-local-history-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join("history.log")
    }

    #[test]
    fn a_file_gives_back_streams_positions_and_bounds() {
        let (app, ns, ch) = ids();
        let path = file_path("reopen");
        let mut h = LocalHistory::open(&path).expect("open");
        h.ensure(&app, &ns, &spec(3)).expect("ensure");
        let positions: Vec<Position> =
            (0..5).map(|i| h.append(&app, &ns, &ch, Bytes::from(vec![i])).expect("write").expect("stream")).collect();
        let before = h.read(&app, &ns, &ch, 0, 10).expect("stream");
        drop(h);

        let mut h = LocalHistory::open(&path).expect("reopen");
        assert_eq!(h.read(&app, &ns, &ch, 0, 10), Some(before), "the same page, lost messages and all");
        let page = h.read(&app, &ns, &ch, positions[2].seq, 10).expect("stream");
        assert!(page.complete);
        assert_eq!(page.epoch, positions[2].epoch, "the same epoch");
        // Ensuring again at start keeps everything; sequence numbers go on.
        h.ensure(&app, &ns, &spec(3)).expect("ensure");
        let next = h.append(&app, &ns, &ch, Bytes::from_static(b"n")).expect("write").expect("stream");
        assert_eq!((next.seq, &next.epoch), (6, &positions[0].epoch));
        // A dropped stream stays dropped.
        h.drop_stream(&app, &ns).expect("drop");
        drop(h);
        assert!(!LocalHistory::open(&path).expect("reopen").has_stream(&app, &ns));
    }

    #[test]
    fn a_damaged_file_is_read_up_to_the_damage_with_new_epochs() {
        let (app, ns, ch) = ids();
        let path = file_path("damaged");
        let mut h = LocalHistory::open(&path).expect("open");
        h.ensure(&app, &ns, &spec(10)).expect("ensure");
        let first = h.append(&app, &ns, &ch, Bytes::from_static(b"a")).expect("write").expect("stream");
        h.append(&app, &ns, &ch, Bytes::from_static(b"b")).expect("write");
        drop(h);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("cut the last record short");

        let mut h = LocalHistory::open(&path).expect("a short file is read");
        let page = h.read(&app, &ns, &ch, 0, 10).expect("stream");
        assert_eq!(page.messages.iter().map(|m| m.payload.clone()).collect::<Vec<_>>(), [Bytes::from_static(b"a")]);
        assert_ne!(page.epoch, first.epoch, "positions given before may be lost: a new epoch");
        let epoch = page.epoch;
        drop(h);
        // The damage was cut away: the next start reads it clean.
        let mut h = LocalHistory::open(&path).expect("reopen");
        assert_eq!(h.read(&app, &ns, &ch, 0, 10).expect("stream").epoch, epoch);
    }

    #[test]
    fn the_file_is_rewritten_before_it_grows_past_its_bound() {
        let (app, ns, ch) = ids();
        let path = file_path("bounded");
        let mut h = LocalHistory::open(&path).expect("open");
        h.ensure(&app, &ns, &spec(2)).expect("ensure");
        let payload = Bytes::from(vec![7u8; 64 * 1024]);
        for _ in 0..300 {
            h.append(&app, &ns, &ch, payload.clone()).expect("write");
        }
        let len = std::fs::metadata(&path).expect("file").len();
        // Two messages held; the log may grow 8 MiB past twice that.
        assert!(len < 9 * 1024 * 1024, "the file grew to {len} bytes");
        drop(h);
        // Restarts do not raise the bound: it follows what is held.
        for _ in 0..3 {
            let mut h = LocalHistory::open(&path).expect("reopen");
            assert_eq!(h.read(&app, &ns, &ch, 0, 10).expect("stream").messages.len(), 2);
            for _ in 0..100 {
                h.append(&app, &ns, &ch, payload.clone()).expect("write");
            }
        }
        let len = std::fs::metadata(&path).expect("file").len();
        assert!(len < 9 * 1024 * 1024, "the file grew to {len} bytes across restarts");
    }
}
