//! The file that keeps the in-process history across restarts (`herald
//! dev`'s data folder): an append-only log of [`Record`]s, each framed with
//! its length and a CRC-32, rewritten as a snapshot of what is held when it
//! has grown well past that.
//!
//! The log says what happened (a stream created or re-bounded, a stream
//! dropped, a message stored); replaying it through the same bounds as at
//! run time gives back the same history, so trimming is never written.
//!
//! Reading stops at the first damaged record. A short last record (the
//! process died while writing it, before the message was delivered to
//! anyone) is a [`Damage::TruncatedTail`]; anything else is a
//! [`Damage::Corrupt`], after which the sequence numbers of the streams can
//! no longer be trusted. A file that does not start with this format's
//! header is refused with [`HistoryFileError::NotHistory`]. Nothing here
//! panics on the file's content.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use herald_proto::{AppId, ChannelName, NamespaceName};

/// The first bytes of the file: the format and its version.
const MAGIC: &[u8; 8] = b"HRLDHST1";
/// The largest record read back; a longer length is damage.
const MAX_RECORD: u32 = 64 * 1024 * 1024;
/// The log may grow this far past twice its last snapshot before it is
/// rewritten.
const SLACK: u64 = 8 * 1024 * 1024;

/// Why the history file cannot be used.
///
/// ```
/// use herald_bus::HistoryFileError;
/// use herald_bus::history::LocalHistory;
///
/// let path = std::env::temp_dir().join(format!("herald-doc-not-history-{}.txt", std::process::id()));
/// std::fs::write(&path, "a shopping list, not a history file")?;
/// let refused = LocalHistory::open(&path).err().expect("refused");
/// assert!(matches!(&refused, HistoryFileError::NotHistory { path: p } if *p == path));
/// assert!(refused.to_string().contains("move it away"), "{refused}");
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum HistoryFileError {
    /// Reading or writing it failed.
    #[error("history file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// It exists but is not a history file of this format.
    #[error(
        "{path} is not a Herald history file (it does not start with the history header); \
         move it away or delete it to start with empty history"
    )]
    NotHistory {
        /// The file.
        path: PathBuf,
    },
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Record {
    /// A stream was created or its bounds changed; `last_seq` is the
    /// highest sequence it ever gave (kept by snapshots when the messages
    /// are gone).
    Stream {
        app: AppId,
        ns: NamespaceName,
        epoch: String,
        size: u32,
        ttl_ms: u64,
        max_bytes: u64,
        replicas: u8,
        last_seq: u64,
    },
    /// A stream was dropped with everything in it.
    Drop { app: AppId, ns: NamespaceName },
    /// A message was stored, at `at_ms` (Unix milliseconds).
    Message { app: AppId, ns: NamespaceName, channel: ChannelName, seq: u64, at_ms: u64, payload: Bytes },
    /// The channel lost a message to its bounds (snapshots only).
    Lost { app: AppId, ns: NamespaceName, channel: ChannelName },
}

/// What was wrong with a file that was read anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The last record stops short: `lost_bytes` from `offset` were dropped.
    TruncatedTail { offset: u64, lost_bytes: u64 },
    /// A record is damaged: it and everything after it were dropped.
    Corrupt { offset: u64, lost_bytes: u64, reason: String },
}

/// The open log.
pub(crate) struct HistoryFile {
    path: PathBuf,
    file: File,
    len: u64,
    /// The length of the last snapshot (what was held then).
    snapshot_len: u64,
}

impl HistoryFile {
    /// Opens (or creates) the log at `path` and reads its records, up to
    /// any damage.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<Record>, Option<Damage>), HistoryFileError> {
        let io = |source| HistoryFileError::Io { path: path.to_owned(), source };
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(io)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content).map_err(io)?;
        if content.is_empty() {
            file.write_all(MAGIC).map_err(io)?;
            let len = MAGIC.len() as u64;
            return Ok((Self { path: path.to_owned(), file, len, snapshot_len: len }, Vec::new(), None));
        }
        if !content.starts_with(MAGIC) {
            return Err(HistoryFileError::NotHistory { path: path.to_owned() });
        }
        let (records, damage) = decode_all(&content);
        let len = content.len() as u64;
        Ok((Self { path: path.to_owned(), file, len, snapshot_len: len }, records, damage))
    }

    /// Appends one record. On failure the file is cut back to where it
    /// was, so a failed write leaves no half record behind.
    pub(crate) fn append(&mut self, record: &Record) -> Result<(), HistoryFileError> {
        let frame = frame(record);
        if let Err(source) = self.file.write_all(&frame) {
            let _ = self.file.set_len(self.len);
            return Err(HistoryFileError::Io { path: self.path.clone(), source });
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Whether the log has grown enough past its last snapshot to be
    /// rewritten.
    pub(crate) fn wants_snapshot(&self) -> bool {
        self.len > self.snapshot_len.saturating_mul(2) + SLACK
    }

    /// Takes `records` (what the log holds, read back at start) as the last
    /// snapshot, so the log is bounded by what is held, not by its length
    /// at the last start.
    pub(crate) fn held(&mut self, records: &[Record]) {
        self.snapshot_len = MAGIC.len() as u64 + records.iter().map(|r| frame(r).len() as u64).sum::<u64>();
    }

    /// Replaces the log with `records` (what is held now): written to a
    /// temporary file, synced, then renamed over the log.
    pub(crate) fn rewrite(&mut self, records: &[Record]) -> Result<(), HistoryFileError> {
        let io = |source| HistoryFileError::Io { path: self.path.clone(), source };
        let tmp = self.path.with_extension("tmp");
        let mut out = Vec::with_capacity(MAGIC.len());
        out.extend_from_slice(MAGIC);
        for record in records {
            out.extend_from_slice(&frame(record));
        }
        let mut file = File::create(&tmp).map_err(io)?;
        file.write_all(&out).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        self.file = OpenOptions::new().append(true).open(&self.path).map_err(io)?;
        self.len = out.len() as u64;
        self.snapshot_len = self.len;
        Ok(())
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

/// The records of `content` (which starts with [`MAGIC`]), up to the first
/// damaged one.
fn decode_all(content: &[u8]) -> (Vec<Record>, Option<Damage>) {
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while at < content.len() {
        let offset = at as u64;
        let lost_bytes = (content.len() - at) as u64;
        let Some(header) = content.get(at..at + 8) else {
            return (records, Some(Damage::TruncatedTail { offset, lost_bytes }));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            let reason = format!("a record of {len} bytes");
            return (records, Some(Damage::Corrupt { offset, lost_bytes, reason }));
        }
        let Some(body) = content.get(at + 8..at + 8 + len as usize) else {
            return (records, Some(Damage::TruncatedTail { offset, lost_bytes }));
        };
        if crc32(body) != crc {
            let reason = "checksum mismatch".to_owned();
            return (records, Some(Damage::Corrupt { offset, lost_bytes, reason }));
        }
        match decode(body) {
            Some(record) => records.push(record),
            None => {
                let reason = "an undecodable record".to_owned();
                return (records, Some(Damage::Corrupt { offset, lost_bytes, reason }));
            }
        }
        at += 8 + len as usize;
    }
    (records, None)
}

fn frame(record: &Record) -> Vec<u8> {
    let body = encode(record);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc32(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn encode(record: &Record) -> Vec<u8> {
    let mut w = Vec::new();
    let text = |w: &mut Vec<u8>, s: &str| {
        w.extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_le_bytes());
        w.extend_from_slice(&s.as_bytes()[..s.len().min(usize::from(u16::MAX))]);
    };
    match record {
        Record::Stream { app, ns, epoch, size, ttl_ms, max_bytes, replicas, last_seq } => {
            w.push(1);
            text(&mut w, app.as_str());
            text(&mut w, ns.as_str());
            text(&mut w, epoch);
            w.extend_from_slice(&size.to_le_bytes());
            w.extend_from_slice(&ttl_ms.to_le_bytes());
            w.extend_from_slice(&max_bytes.to_le_bytes());
            w.push(*replicas);
            w.extend_from_slice(&last_seq.to_le_bytes());
        }
        Record::Drop { app, ns } => {
            w.push(2);
            text(&mut w, app.as_str());
            text(&mut w, ns.as_str());
        }
        Record::Message { app, ns, channel, seq, at_ms, payload } => {
            w.push(3);
            text(&mut w, app.as_str());
            text(&mut w, ns.as_str());
            text(&mut w, channel.as_str());
            w.extend_from_slice(&seq.to_le_bytes());
            w.extend_from_slice(&at_ms.to_le_bytes());
            w.extend_from_slice(payload);
        }
        Record::Lost { app, ns, channel } => {
            w.push(4);
            text(&mut w, app.as_str());
            text(&mut w, ns.as_str());
            text(&mut w, channel.as_str());
        }
    }
    w
}

/// A cursor over a record's body.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn text(&mut self) -> Option<&'a str> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::from(len))?).ok()
    }
    fn app(&mut self) -> Option<AppId> {
        AppId::new(self.text()?).ok()
    }
    fn ns(&mut self) -> Option<NamespaceName> {
        NamespaceName::new(self.text()?).ok()
    }
    fn channel(&mut self) -> Option<ChannelName> {
        ChannelName::new(self.text()?).ok()
    }
}

fn decode(body: &[u8]) -> Option<Record> {
    let mut r = Reader(body);
    let record = match r.u8()? {
        1 => Record::Stream {
            app: r.app()?,
            ns: r.ns()?,
            epoch: r.text()?.to_owned(),
            size: r.u32()?,
            ttl_ms: r.u64()?,
            max_bytes: r.u64()?,
            replicas: r.u8()?,
            last_seq: r.u64()?,
        },
        2 => Record::Drop { app: r.app()?, ns: r.ns()? },
        3 => {
            let (app, ns, channel, seq, at_ms) = (r.app()?, r.ns()?, r.channel()?, r.u64()?, r.u64()?);
            let payload = Bytes::copy_from_slice(std::mem::take(&mut r.0));
            Record::Message { app, ns, channel, seq, at_ms, payload }
        }
        4 => Record::Lost { app: r.app()?, ns: r.ns()?, channel: r.channel()? },
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

/// CRC-32 (IEEE 802.3), table-driven.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "herald-history-file-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn records() -> Vec<Record> {
        let (app, ns) = (AppId::new("a").expect("app"), NamespaceName::new("n").expect("ns"));
        let channel = ChannelName::new("n:c").expect("ch");
        vec![
            Record::Stream {
                app: app.clone(),
                ns: ns.clone(),
                epoch: "123".into(),
                size: 3,
                ttl_ms: 60_000,
                max_bytes: 1 << 20,
                replicas: 1,
                last_seq: 0,
            },
            Record::Message {
                app: app.clone(),
                ns: ns.clone(),
                channel: channel.clone(),
                seq: 1,
                at_ms: 5,
                payload: Bytes::from_static(b"hello"),
            },
            Record::Lost { app: app.clone(), ns: ns.clone(), channel },
            Record::Drop { app, ns },
        ]
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_through_the_file() {
        let path = dir().join("history.log");
        let (mut file, read, damage) = HistoryFile::open(&path).expect("open");
        assert!(read.is_empty() && damage.is_none());
        for r in &records() {
            file.append(r).expect("append");
        }
        drop(file);
        let (_, read, damage) = HistoryFile::open(&path).expect("reopen");
        assert_eq!(read, records());
        assert_eq!(damage, None);
    }

    #[test]
    fn a_short_tail_and_a_flipped_bit_are_damage_not_panics() {
        let path = dir().join("history.log");
        let (mut file, _, _) = HistoryFile::open(&path).expect("open");
        for r in &records() {
            file.append(r).expect("append");
        }
        drop(file);
        let full = std::fs::read(&path).expect("read");
        // Every cut of the file reads back a prefix of the records.
        for cut in MAGIC.len()..full.len() {
            std::fs::write(&path, &full[..cut]).expect("write");
            let (_, read, damage) = HistoryFile::open(&path).expect("open cut file");
            assert_eq!(read[..], records()[..read.len()], "cut at {cut}");
            assert!(matches!(damage, None | Some(Damage::TruncatedTail { .. })), "cut at {cut}: {damage:?}");
        }
        // Every flipped byte after the header is caught.
        for at in MAGIC.len()..full.len() {
            let mut bad = full.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).expect("write");
            let (_, read, damage) = HistoryFile::open(&path).expect("open damaged file");
            assert!(read.len() < records().len(), "flip at {at} went unnoticed");
            assert!(damage.is_some(), "flip at {at}");
        }
        std::fs::write(&path, b"not a history file").expect("write");
        assert!(matches!(HistoryFile::open(&path), Err(HistoryFileError::NotHistory { .. })));
    }

    #[test]
    fn rewrite_replaces_the_log() {
        let path = dir().join("history.log");
        let (mut file, _, _) = HistoryFile::open(&path).expect("open");
        for r in &records() {
            file.append(r).expect("append");
        }
        file.rewrite(&records()[..1]).expect("rewrite");
        file.append(&records()[3]).expect("append after rewrite");
        drop(file);
        let (_, read, damage) = HistoryFile::open(&path).expect("reopen");
        assert_eq!(read, vec![records()[0].clone(), records()[3].clone()]);
        assert!(damage.is_none());
    }
}
