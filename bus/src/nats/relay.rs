//! A channel's relay from NATS to the sink, with the epochs of history
//! streams and the filling of sequence gaps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use herald_proto::{AppId, ChannelName};

use super::NatsBus;
use super::routes::{Bucket, Channel};
use crate::history::Position;
use crate::{Sink, lock};

/// The epochs of the history streams this process met, by stream name.
///
/// A stream's epoch is its creation time (ns). It is looked up once per
/// stream and kept until it may have changed:
///
/// - JetStream announces (stream advisories) that a stream of this subject
///   space was created or deleted: that stream's epoch is forgotten;
/// - the NATS connection is re-established (advisories sent meanwhile were
///   missed, and the server may have lost its storage): every epoch is
///   forgotten;
/// - a sequence number that does not grow (the stream was recreated and its
///   advisory not seen yet) makes the next lookup ask JetStream again, at
///   most once per second.
///
/// A lookup that was under way when epochs were forgotten does not keep
/// what it read (it may describe the stream that is gone).
pub(crate) struct Epochs {
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) known: Arc<Mutex<KnownEpochs>>,
}

#[derive(Default)]
pub(crate) struct KnownEpochs {
    pub(crate) streams: HashMap<String, KnownEpoch>,
    /// Bumped whenever epochs are forgotten.
    pub(crate) generation: u64,
}

pub(crate) struct KnownEpoch {
    pub(crate) epoch: String,
    pub(crate) last_seq: u64,
    pub(crate) checked: std::time::Instant,
}

pub(crate) fn epoch_of(info: &async_nats::jetstream::stream::Info) -> String {
    info.created.unix_timestamp_nanos().to_string()
}

pub(crate) fn forget_all_epochs(known: &Mutex<KnownEpochs>) {
    let mut known = lock(known);
    known.streams.clear();
    known.generation += 1;
}

impl Epochs {
    /// The epoch of `stream` for a message with sequence `seq`, when it is
    /// known and still trusted; [`Self::lookup`] otherwise.
    pub(crate) fn cached(&self, stream: &str, seq: u64) -> Option<String> {
        let mut known = lock(&self.known);
        let k = known.streams.get_mut(stream)?;
        if seq > k.last_seq || k.checked.elapsed() < Duration::from_secs(1) {
            k.last_seq = k.last_seq.max(seq);
            return Some(k.epoch.clone());
        }
        None
    }

    /// The epoch of `stream`, for a message with sequence `seq`.
    pub(crate) async fn get(&self, stream: &str, seq: u64) -> Option<String> {
        match self.cached(stream, seq) {
            Some(epoch) => Some(epoch),
            None => self.lookup(stream, seq).await,
        }
    }

    /// Asks JetStream for the epoch of `stream` and remembers it.
    pub(crate) async fn lookup(&self, stream: &str, seq: u64) -> Option<String> {
        let mut generation = lock(&self.known).generation;
        // Asked again when epochs were forgotten meanwhile: the first answer
        // may be the deleted stream's.
        for attempt in 0..2 {
            let info = match self.js.get_stream(stream).await {
                Ok(s) => s.cached_info().clone(),
                Err(e) => {
                    tracing::warn!(stream, error = %e, "history stream epoch unknown");
                    return None;
                }
            };
            let epoch = epoch_of(&info);
            let mut known = lock(&self.known);
            if known.generation == generation {
                let last_seq = info.state.last_sequence.max(seq);
                known.streams.insert(
                    stream.to_owned(),
                    KnownEpoch { epoch: epoch.clone(), last_seq, checked: std::time::Instant::now() },
                );
                return Some(epoch);
            }
            if attempt == 1 {
                return Some(epoch);
            }
            generation = known.generation;
        }
        None
    }

    pub(crate) fn forget(&self, stream: &str) {
        let mut known = lock(&self.known);
        known.streams.remove(stream);
        known.generation += 1;
    }
}

/// Hands the NATS messages of a bucket of channels to the local
/// subscriptions of their channels, with their history positions, filling
/// gaps in a channel's history sequence from the stream.
///
/// One runs per bucket with local subscriptions ([`super::routes`]), for as
/// long as it has them: its future is kept small (the rare paths — an epoch
/// lookup, a gap fill — are boxed, not inlined into it; a unit test holds
/// the size). A message of a channel without local subscriptions (another
/// node's channel in the same bucket) is dropped and counted.
pub(crate) struct Relay {
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) bucket: Arc<Bucket>,
    /// What the subjects of the bucket's channels start with.
    pub(crate) prefix: Box<str>,
    pub(crate) epochs: Arc<Epochs>,
    pub(crate) bus: Weak<NatsBus>,
    pub(crate) gap_limit: usize,
}

impl Relay {
    pub(crate) async fn run(self, mut messages: impl futures_util::Stream<Item = async_nats::Message> + Unpin) {
        let unrouted = metrics::counter!("herald_bus_unrouted_messages_total");
        while let Some(msg) = messages.next().await {
            let channel = msg.subject.as_str().strip_prefix(&*self.prefix).and_then(|token| self.bucket.channel(token));
            let Some(channel) = channel else {
                unrouted.increment(1);
                continue;
            };
            for id in channel.ids().as_slice() {
                self.deliver(&channel, *id, &msg).await;
            }
        }
    }

    /// Delivers one message to one local subscription of its channel.
    async fn deliver(&self, channel: &Channel, id: u64, msg: &async_nats::Message) {
        let (app, name) = (self.bucket.app(), &channel.name);
        let Some((stream, seq, previous)) = republished(msg) else {
            self.sink.deliver(app, name, id, msg.payload.clone(), None);
            return;
        };
        let epoch = match self.epochs.cached(stream, seq) {
            Some(epoch) => Some(epoch),
            None => Box::pin(self.epochs.lookup(stream, seq)).await,
        };
        let Some(epoch) = epoch else {
            self.sink.deliver(app, name, id, msg.payload.clone(), None);
            return;
        };
        // Sequences compare within one stream: a stream created again
        // counts from 1, none of its messages was delivered.
        let delivered = channel.last(id).map(|(e, l)| if e == epoch { l } else { 0 });
        if delivered.is_some_and(|l| seq <= l) {
            return; // already delivered by a gap fill
        }
        if let Some(l) = delivered
            && previous > l
        {
            // Messages of this channel were stored but never reached this
            // subscription (NATS reconnected, or the client dropped them):
            // deliver them from the stream first.
            let gap = Gap { after: l, before: seq, epoch: &epoch, limit: self.gap_limit };
            Box::pin(fill_gap(&self.bus, &self.sink, app, name, id, gap)).await;
        }
        let at = Position { seq, epoch };
        self.sink.deliver(app, name, id, msg.payload.clone(), Some(&at));
        channel.set_last(id, at.epoch, seq);
    }
}

/// Messages of a channel's history a subscription missed: those after
/// sequence `after` and before `before`, in stream epoch `epoch`, at most
/// `limit`.
pub(crate) struct Gap<'a> {
    pub(crate) after: u64,
    pub(crate) before: u64,
    pub(crate) epoch: &'a str,
    pub(crate) limit: usize,
}

/// Delivers a [`Gap`] from the history stream, before the message that
/// revealed it.
pub(crate) async fn fill_gap(
    bus: &Weak<NatsBus>,
    sink: &Arc<dyn Sink>,
    app: &AppId,
    channel: &ChannelName,
    id: u64,
    gap: Gap<'_>,
) {
    metrics::counter!("herald_history_gap_fills_total").increment(1);
    let Some(inner) = bus.upgrade() else { return };
    let Some(ns) = channel.namespace_name() else { return };
    let n = &inner;
    match n.read_history(app, &ns, channel, gap.after, gap.limit).await {
        Ok(page) if page.epoch != gap.epoch => {
            tracing::warn!(%app, %channel, "history gap not filled: the stream changed again");
        }
        Ok(page) => {
            for m in page.messages.into_iter().filter(|m| m.seq < gap.before) {
                let at = Position { seq: m.seq, epoch: gap.epoch.to_owned() };
                sink.deliver(app, channel, id, m.payload, Some(&at));
            }
        }
        Err(e) => tracing::warn!(%app, %channel, error = %e, "history gap not filled"),
    }
}

/// The stream, sequence and the channel's previous sequence of a message
/// JetStream republished.
pub(crate) fn republished(msg: &async_nats::Message) -> Option<(&str, u64, u64)> {
    let headers = msg.headers.as_ref()?;
    let stream = headers.get(async_nats::header::NATS_STREAM)?.as_str();
    let seq = headers.get(async_nats::header::NATS_SEQUENCE)?.as_str().parse().ok()?;
    let previous =
        headers.get(async_nats::header::NATS_LAST_SEQUENCE).and_then(|v| v.as_str().parse().ok()).unwrap_or(0);
    Some((stream, seq, previous))
}

/// The JetStream stream advisories after which a stream's epoch is looked
/// up again (`$JS.EVENT.ADVISORY.STREAM.<kind>.<stream>`).
pub(crate) const STREAM_ADVISORIES: [&str; 2] = ["CREATED", "DELETED"];

pub(crate) fn is_stream_not_found(e: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    matches!(e.kind(), GetStreamErrorKind::JetStream(err) if err.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One relay runs per bucket with local subscriptions, for as long as it
    /// has them: keep its future small (the bound is for debug builds;
    /// release builds are smaller). Inlining the epoch lookup and the gap
    /// fill made it 7.5 KiB.
    #[tokio::test]
    pub(crate) async fn the_channel_relay_future_stays_small() {
        // A client that never connects: the relay only needs to be built.
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("nats://127.0.0.1:1")
            .await
            .expect("client");
        struct Nowhere;
        impl Sink for Nowhere {
            fn deliver(&self, _: &AppId, _: &ChannelName, _: u64, _: bytes::Bytes, _: Option<&Position>) {}
            fn control(&self, _: herald_proto::bus::ControlEvent) {}
        }
        let buckets = Arc::new(super::super::routes::Buckets::default());
        let (app, channel) = (AppId::new("app1").expect("app"), ChannelName::new("chat").expect("channel"));
        let guard = buckets.add(&app, &channel, 1, super::super::ChannelRouting::Bucket);
        let relay = Relay {
            sink: Arc::new(Nowhere),
            bucket: guard.bucket().clone(),
            prefix: "herald.ch.app1.171.".into(),
            epochs: Arc::new(Epochs { js: async_nats::jetstream::new(client), known: Arc::default() }),
            bus: Weak::new(),
            gap_limit: 16,
        };
        let run = relay.run(futures_util::stream::pending::<async_nats::Message>());
        let size = size_of_val(&run);
        eprintln!("relay future: {size} bytes");
        assert!(size <= 1024, "the relay future is {size} bytes");
    }
}
