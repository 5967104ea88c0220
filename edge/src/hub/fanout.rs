//! The fan-out: a bus message is decoded once and encoded into its outgoing
//! WebSocket frame once per protocol its subscribers speak (Pusher's only
//! when one of them does), and the same `Bytes` go to every local
//! subscriber's bounded [`Outbox`]; and the release of the live frames kept
//! aside for a subscriber while it recovered history.
//!
//! A busy channel with many subscribers (a message less than `CALM_GAP`
//! after the previous one, at least `BURST_MIN_SUBSCRIBERS` subscribers
//! here) has its messages pushed in bursts: they are kept in the channel's
//! burst (`registry::Burst`), in order, and a task pushes them all once the
//! task that delivers them lets others run (a publisher's turn, a relay's
//! batch) — each subscriber's outbox is then locked and its writer woken
//! once per burst, not once per message. A burst holds at most
//! `fanout_burst` messages (the edge's setting, 64 by default; a full one
//! is pushed at once, so a burst bounds both the memory and the delay it
//! adds); while one waits, every message of the channel joins it, so
//! per-subscriber order is that of the channel, as without bursts.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_proto::client::{self, server_frame};
use herald_proto::{AppId, ChannelName, CloseCode, bus};
use prost::Message as _;

use crate::outbox::{Outbox, PushError};
use crate::ws;
use herald_bus::Position;

use super::pusher::PusherParts;
use super::registry::{BurstItem, EpochTag, Held};
use super::{Hub, Wire, lock};

/// A message arriving at least this long after the channel's previous
/// fan-out ended may be written straight to idle subscribers' sockets (one
/// `send` each, nothing woken). Closer together, messages are queued, so
/// each writer coalesces what piles up into one write: under a steady
/// stream, fewer syscalls matter more than the wake-ups saved.
const CALM_GAP: Duration = Duration::from_millis(1);

/// Subscribers a busy channel needs here before its messages are pushed in
/// bursts: below it, a message's fan-out is short, and a burst's task would
/// cost more than it saves.
const BURST_MIN_SUBSCRIBERS: usize = 32;

thread_local! {
    /// The outboxes a fan-out queued a frame in without waking their
    /// writers, to write it once the shard lock is released; kept from one
    /// fan-out to the next so that the list is not allocated each time.
    static DEFERRED: RefCell<Vec<Arc<Outbox>>> = const { RefCell::new(Vec::new()) };
}

impl Hub {
    /// Ends the hold of a subscriber that recovered history: the live frames
    /// kept aside go to its outbox in order — except those `covered(seq,
    /// epoch)` says the replay delivered already — each once the outbox has
    /// room (so a long hold does not overflow it), and from then on frames
    /// go there directly. Frames that arrive meanwhile are still held, and
    /// follow in order. Which frames a replay covered is the recovery's
    /// rule, not the hub's.
    pub async fn release(
        &self,
        app: &AppId,
        channel: &ChannelName,
        conn_id: u64,
        covered: impl Fn(u64, EpochTag) -> bool,
    ) {
        let key = (app.clone(), channel.clone());
        loop {
            let (held, outbox) = {
                let mut shard = lock(self.shard(app, channel));
                let Some(entry) = shard.get_mut(&key) else { return };
                let Some(sub) = entry.subscribers.iter_mut().find(|s| s.conn_id == conn_id) else { return };
                match &mut sub.held {
                    Some(held) if !held.is_empty() => (std::mem::take(held), sub.outbox.clone()),
                    _ => {
                        sub.held = None;
                        return;
                    }
                }
            };
            for Held { seq, epoch, frame } in held {
                if covered(seq, epoch) {
                    continue;
                }
                match outbox.push_paced(frame).await {
                    Ok(()) => {}
                    Err(PushError::Overflow) => {
                        metrics::counter!("herald_slow_consumer_closes_total").increment(1);
                        return;
                    }
                    Err(PushError::Closed) => return,
                }
            }
        }
    }

    /// Fans a decoded message out to a channel's subscribers, each in its
    /// protocol's frame, but the one it excludes, or keeps it in the
    /// channel's burst (see the module doc). Returns how many received a
    /// message now: a burst's messages are counted when it is pushed.
    ///
    /// Under the shard lock frames are only queued (or held); on a calm
    /// channel a frame queued in an idle plain-TCP outbox is written to its
    /// socket after the lock is released (see the module doc of the hub).
    pub(super) fn fan_out(
        &self,
        app: &AppId,
        channel: &ChannelName,
        subscription: u64,
        position: Option<&Position>,
        delivery: Delivery,
    ) -> usize {
        let seq = position.map_or(0, |p| p.seq);
        // Pusher's frame, encoded on meeting the first Pusher subscriber.
        let mut pusher_frame: Option<Bytes> = None;
        let mut epoch = None;
        let mut delivered = 0;
        let mut bytes_out = 0usize;
        let mut slow = 0u64;
        // Deliveries and slow consumers of a burst pushed before this
        // message (already in the channel's usage).
        let (mut earlier, mut earlier_slow) = (0usize, 0u64);
        DEFERRED.with_borrow_mut(|deferred| {
            {
                let mut shard = lock(self.shard(app, channel));
                let Some(entry) = shard.get_mut(&(app.clone(), channel.clone())) else { return };
                if entry.id != subscription {
                    return;
                }
                let calm = entry.last_fan_out.is_none_or(|t| t.elapsed() >= CALM_GAP);
                // A traced message's span counts the subscribers it reached:
                // it never joins a burst. A burst waiting goes out first
                // (order); its deliveries are counted here, not in the span.
                if !delivery.traceparent.is_empty()
                    && let Some(waiting) = entry.burst.take()
                {
                    (earlier, earlier_slow) = self.push_burst(entry, channel, waiting.items);
                }
                // While a burst waits, every other message joins it (order).
                if entry.burst.is_some()
                    || (!calm
                        && self.settings.fanout_burst > 0
                        && entry.subscribers.len() >= BURST_MIN_SUBSCRIBERS
                        && delivery.traceparent.is_empty()
                        && self.schedule_flush(app, channel, subscription))
                {
                    let burst = entry.burst.get_or_insert_default();
                    burst.items.push(BurstItem {
                        seq,
                        epoch: EpochTag::of(position.map_or("", |p| p.epoch.as_str())),
                        herald: delivery.herald,
                        pusher: delivery.pusher,
                        exclude: delivery.exclude,
                    });
                    entry.last_fan_out = Some(std::time::Instant::now());
                    if burst.items.len() >= self.settings.fanout_burst
                        && let Some(full) = entry.burst.take()
                    {
                        (delivered, slow) = self.push_burst(entry, channel, full.items);
                    }
                    return;
                }
                let delivery = &delivery;
                for sub in &mut entry.subscribers {
                    if delivery.exclude == Some(sub.conn_id) {
                        continue;
                    }
                    let frame = match sub.wire {
                        Wire::Herald => &delivery.herald,
                        Wire::Pusher => match delivery.pusher.as_ref() {
                            Some(parts) => &*pusher_frame.get_or_insert_with(|| parts.frame(channel)),
                            // The message was decoded before this edge had
                            // a Pusher subscription.
                            None => continue,
                        },
                    };
                    if let Some(held) = &mut sub.held {
                        if held.len() < self.settings.max_held {
                            let epoch =
                                *epoch.get_or_insert_with(|| EpochTag::of(position.map_or("", |p| p.epoch.as_str())));
                            held.push(Held { seq, epoch, frame: frame.clone() });
                            delivered += 1;
                            bytes_out += frame.len();
                        } else {
                            sub.outbox.close(CloseCode::SlowConsumer, CloseCode::SlowConsumer.reason());
                            slow += 1;
                        }
                        continue;
                    }
                    let pushed = if calm {
                        sub.outbox.push_deferred(frame.clone()).map(|write| {
                            if write {
                                deferred.push(sub.outbox.clone());
                            }
                        })
                    } else {
                        sub.outbox.push(frame.clone())
                    };
                    match pushed {
                        Ok(()) => {
                            delivered += 1;
                            bytes_out += frame.len();
                        }
                        Err(PushError::Overflow) => slow += 1,
                        Err(PushError::Closed) => {}
                    }
                }
                entry.last_fan_out = Some(std::time::Instant::now());
                entry.usage.delivered(delivered as u64, bytes_out as u64);
                entry.usage.refused_n(herald_bus::usage::Refused::Close(CloseCode::SlowConsumer), slow);
            }
            // The shard lock is released: now the socket writes.
            if deferred.is_empty() {
                return;
            }
            write_deferred(deferred);
            // The calm gap counts from the end of the writes: a fan-out
            // that wrote to many sockets took longer than the gap, and the
            // next message is part of the same burst, to be queued for the
            // writers (which coalesce) rather than written one by one again.
            let mut shard = lock(self.shard(app, channel));
            if let Some(entry) = shard.get_mut(&(app.clone(), channel.clone()))
                && entry.id == subscription
            {
                entry.last_fan_out = Some(std::time::Instant::now());
            }
        });
        crate::outbox::flush_written();
        if earlier > 0 {
            metrics::counter!("herald_deliveries_total").increment(earlier as u64);
        }
        let slow = slow + earlier_slow;
        if slow > 0 {
            metrics::counter!("herald_slow_consumer_closes_total").increment(slow);
        }
        delivered
    }
}

impl Hub {
    /// Starts the task that pushes the burst of `channel` (entry `id`)
    /// once the current task lets others run; `false` outside a runtime
    /// (the message is then pushed at once).
    fn schedule_flush(&self, app: &AppId, channel: &ChannelName, id: u64) -> bool {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return false };
        let (me, app, channel) = (self.me.clone(), app.clone(), channel.clone());
        runtime.spawn(async move {
            if let Some(hub) = me.upgrade() {
                hub.flush_burst(&app, &channel, id);
            }
        });
        true
    }

    /// Pushes the burst waiting for `channel` (entry `id`), if any.
    fn flush_burst(&self, app: &AppId, channel: &ChannelName, id: u64) {
        let (delivered, slow) = {
            let mut shard = lock(self.shard(app, channel));
            let Some(entry) = shard.get_mut(&(app.clone(), channel.clone())) else { return };
            if entry.id != id {
                return;
            }
            let Some(burst) = entry.burst.take() else { return };
            self.push_burst(entry, channel, burst.items)
        };
        metrics::counter!("herald_deliveries_total").increment(delivered as u64);
        if slow > 0 {
            metrics::counter!("herald_slow_consumer_closes_total").increment(slow);
        }
    }

    /// Pushes a burst's messages, in order, to each subscriber of `entry`
    /// (its shard lock held): one lock of each outbox and one wake-up of its
    /// writer for them all. Held subscribers keep them aside, as single
    /// messages. Returns the deliveries made and the subscribers closed as
    /// slow consumers.
    fn push_burst(
        &self,
        entry: &mut super::registry::Channel,
        channel: &ChannelName,
        items: Vec<BurstItem>,
    ) -> (usize, u64) {
        // Pusher's frames, encoded once each when a Pusher subscriber is here.
        let pusher: Vec<Option<Bytes>> = if entry.subscribers.iter().any(|s| s.wire == Wire::Pusher) {
            items.iter().map(|i| i.pusher.as_ref().map(|p| p.frame(channel))).collect()
        } else {
            Vec::new()
        };
        let (mut delivered, mut bytes_out, mut slow) = (0usize, 0usize, 0u64);
        for sub in &mut entry.subscribers {
            let (conn_id, wire, pusher) = (sub.conn_id, sub.wire, &pusher);
            let frames = items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| Some((item, burst_frame(i, item, pusher, conn_id, wire)?)));
            if let Some(held) = &mut sub.held {
                for (item, frame) in frames {
                    if held.len() >= self.settings.max_held {
                        sub.outbox.close(CloseCode::SlowConsumer, CloseCode::SlowConsumer.reason());
                        slow += 1;
                        break;
                    }
                    held.push(Held { seq: item.seq, epoch: item.epoch, frame: frame.clone() });
                    delivered += 1;
                    bytes_out += frame.len();
                }
                continue;
            }
            match sub.outbox.push_many(frames.map(|(_, f)| f)) {
                Ok((n, bytes)) => {
                    delivered += n;
                    bytes_out += bytes;
                }
                Err(PushError::Overflow) => slow += 1,
                Err(PushError::Closed) => {}
            }
        }
        entry.last_fan_out = Some(std::time::Instant::now());
        entry.usage.delivered(delivered as u64, bytes_out as u64);
        entry.usage.refused_n(herald_bus::usage::Refused::Close(CloseCode::SlowConsumer), slow);
        (delivered, slow)
    }
}

/// The frame of a burst's `i`-th message for a subscriber (`conn_id`,
/// speaking `wire`): `None` when the message excludes it, or has no Pusher
/// frame for a Pusher subscriber (decoded before the edge had one).
fn burst_frame<'a>(
    i: usize,
    item: &'a BurstItem,
    pusher: &'a [Option<Bytes>],
    conn_id: u64,
    wire: Wire,
) -> Option<&'a Bytes> {
    if item.exclude == Some(conn_id) {
        return None;
    }
    match wire {
        Wire::Herald => Some(&item.herald),
        Wire::Pusher => pusher.get(i).and_then(Option::as_ref),
    }
}

/// Deferred writes a fan-out hands to another worker thread at a time: a
/// calm message to a large channel is written to its sockets by every core
/// the edge may use, not by the one that received it alone.
const WRITES_PER_TASK: usize = 512;

/// Writes what a calm fan-out queued in idle outboxes to their sockets
/// (see [`Outbox::write_deferred`]). Beyond [`WRITES_PER_TASK`] sockets,
/// and when the runtime has more than one worker, all but the first share
/// go to tasks of their own, which idle workers take: each socket's write
/// still comes before anything queued after it (the outbox writes only its
/// first frame and leaves the rest to its writer), so per-subscriber order
/// holds whichever thread writes.
fn write_deferred(deferred: &mut Vec<Arc<Outbox>>) {
    // The runtime is looked up only for a fan-out large enough to share.
    let workers = if deferred.len() > WRITES_PER_TASK {
        tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers())
    } else {
        1
    };
    if workers > 1 {
        // Shares as even as the workers allow, at least WRITES_PER_TASK each.
        let shares = deferred.len().div_ceil(WRITES_PER_TASK).min(workers * 4);
        let size = deferred.len().div_ceil(shares);
        while deferred.len() > size {
            let share = deferred.split_off(deferred.len() - size);
            tokio::spawn(async move {
                for outbox in share {
                    outbox.write_deferred();
                }
            });
        }
    }
    for outbox in deferred.drain(..) {
        outbox.write_deferred();
    }
}

/// A bus message, decoded once: Herald's frame, and what Pusher's frame is
/// built from when a Pusher subscriber is to get it.
pub(super) struct Delivery {
    /// Herald's frame.
    pub(super) herald: Bytes,
    /// What Pusher's frame needs; kept only while the edge has Pusher
    /// subscriptions.
    pub(super) pusher: Option<PusherParts>,
    /// This edge's connection that must not receive the message.
    pub(super) exclude: Option<u64>,
    /// The publisher's trace (`traceparent`), when it is traced.
    pub(super) traceparent: String,
}

impl Delivery {
    /// Decodes `payload` and encodes Herald's frame; keeps Pusher's parts
    /// when `for_pusher`.
    pub(super) fn decode(
        hub: &Hub,
        channel: &ChannelName,
        payload: Bytes,
        position: Option<&Position>,
        for_pusher: bool,
    ) -> Result<Self, prost::DecodeError> {
        let mut msg = bus::ChannelMessage::decode(payload)?;
        let traceparent = std::mem::take(&mut msg.traceparent);
        let exclude =
            if msg.exclude_connection.is_empty() { None } else { hub.local_connection(&msg.exclude_connection) };
        let pusher = for_pusher.then(|| PusherParts {
            event: msg.event.clone(),
            data: msg.data.clone(),
            user_id: super::pusher::user_id_of(channel.as_str(), &msg.publisher).map(str::to_owned),
        });
        Ok(Self { herald: herald_frame(channel, msg, position), pusher, exclude, traceparent })
    }
}

/// Builds the client-facing frame of a stored message, for a replay.
///
/// # Errors
///
/// When the stored bytes are not a [`bus::ChannelMessage`].
pub fn encode_replay(channel: &ChannelName, payload: Bytes, position: &Position) -> Result<Bytes, prost::DecodeError> {
    Ok(herald_frame(channel, bus::ChannelMessage::decode(payload)?, Some(position)))
}

/// Herald's frame of a bus message.
fn herald_frame(channel: &ChannelName, msg: bus::ChannelMessage, position: Option<&Position>) -> Bytes {
    let frame = client::ServerFrame {
        kind: Some(server_frame::Kind::Message(client::Message {
            channel: channel.as_str().to_owned(),
            data: msg.data,
            event: msg.event,
            seq: position.map_or(0, |p| p.seq),
            epoch: position.map(|p| p.epoch.clone()).unwrap_or_default(),
            publisher: msg.publisher,
            timestamp_ms: msg.timestamp_ms,
            id: msg.id,
        })),
    };
    ws::binary_frame(&frame)
}

#[cfg(test)]
mod tests {
    use herald_proto::client::server_frame;
    use prost::Message as _;

    use super::*;
    use crate::hub::SubscribeOptions;
    use herald_bus::{Bus, LocalBus};

    /// A hub on an in-process bus with subscribers 1..=`subscribers` to
    /// app/room on Herald's wire, each with an outbox from `outbox`; those
    /// `hold` picks are held (as for a replay).
    async fn hub_with_subscribers(
        subscribers: u64,
        outbox: impl Fn() -> Outbox,
        hold: impl Fn(u64) -> bool,
    ) -> (Arc<Hub>, Bus, AppId, ChannelName, Vec<Arc<Outbox>>) {
        let bus = LocalBus::new();
        let bus = Bus::local(&bus);
        let hub = Hub::new(bus.clone());
        bus.attach(hub.clone()).await.expect("attach");
        let (app, channel) = (AppId::new("app").expect("app"), ChannelName::new("room").expect("channel"));
        let mut outboxes = Vec::new();
        for id in 1..=subscribers {
            let outbox = Arc::new(outbox());
            let how = SubscribeOptions {
                options: bus::NamespaceOptions::default(),
                hold: hold(id),
                presence: None,
                wire: Wire::Herald,
                count: false,
            };
            hub.subscribe(&app, &channel, id, &outbox, how).await.expect("subscribe");
            outboxes.push(outbox);
        }
        (hub, bus, app, channel, outboxes)
    }

    /// A hub with subscriber 1 of app/room held, its outbox bounded to
    /// `max_frames` and 64 KiB.
    async fn held_subscriber(max_frames: usize) -> (Arc<Hub>, Bus, AppId, ChannelName, Arc<Outbox>) {
        let (hub, bus, app, channel, mut outboxes) =
            hub_with_subscribers(1, || Outbox::new(max_frames, 64 * 1024), |_| true).await;
        (hub, bus, app, channel, outboxes.remove(0))
    }

    #[tokio::test]
    async fn releasing_a_long_hold_waits_for_room_in_the_outbox_and_keeps_order() {
        // At most 16 frames or 64 KiB queued; nothing drains it yet.
        let (hub, bus, app, channel, outbox) = held_subscriber(16).await;
        // 100 frames of 4 KiB arrive while held: 400 KiB.
        for i in 0..100u8 {
            let message = bus::ChannelMessage {
                app_id: app.as_str().into(),
                channel: channel.as_str().into(),
                data: Bytes::from(vec![i; 4096]),
                ..Default::default()
            };
            bus.publish(&app, &channel, &message).await.expect("publish");
        }
        let release = {
            let (hub, app, channel) = (hub.clone(), app.clone(), channel.clone());
            tokio::spawn(async move { hub.release(&app, &channel, 1, |_, _| false).await })
        };
        let got = first_bytes(&outbox, 100).await;
        release.await.expect("released");
        assert_eq!(got, (0..100).collect::<Vec<u8>>());
        assert!(!outbox.is_closing());
    }

    /// The first bytes of the first `n` Herald message bodies taken from
    /// `outbox`, in order; the outbox must not close meanwhile.
    async fn first_bytes(outbox: &Outbox, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            let batch = tokio::time::timeout(Duration::from_secs(5), outbox.take()).await.expect("frames come");
            assert!(batch.close.is_none(), "closed after {} frames", got.len());
            for frame in batch.frames() {
                // An unmasked server frame: 2 header bytes, plus 2 for a
                // 16-bit length (up to 64 KiB here).
                let payload = &frame[if frame[1] & 0x7f == 126 { 4 } else { 2 }..];
                if let Some(server_frame::Kind::Message(m)) =
                    client::ServerFrame::decode(payload).expect("decodes").kind
                {
                    got.push(m.data[0]);
                }
            }
        }
        got
    }

    /// Back-to-back messages to a channel with many subscribers are pushed
    /// in bursts (more than one, as a burst holds at most `fanout_burst`):
    /// every subscriber gets every message in order, but the one a message
    /// excludes, and a held subscriber gets them, in order, on release.
    #[tokio::test]
    async fn a_busy_channels_messages_come_in_bursts_in_order() {
        const SUBSCRIBERS: u64 = BURST_MIN_SUBSCRIBERS as u64 + 8;
        const MESSAGES: u8 = 138; // two full bursts of 64, and more
        // Subscriber 1 replays history meanwhile.
        let (hub, bus, app, channel, outboxes) =
            hub_with_subscribers(SUBSCRIBERS, || Outbox::new(1024, 1 << 20), |id| id == 1).await;
        let excluded = hub.connection_id(2).to_string();
        for i in 0..MESSAGES {
            let message = bus::ChannelMessage {
                app_id: app.as_str().into(),
                channel: channel.as_str().into(),
                data: Bytes::from(vec![i]),
                // Message 5 is not for subscriber 2.
                exclude_connection: if i == 5 { excluded.clone() } else { String::new() },
                ..Default::default()
            };
            bus.publish(&app, &channel, &message).await.expect("publish");
        }
        let all: Vec<u8> = (0..MESSAGES).collect();
        let but_5: Vec<u8> = all.iter().copied().filter(|&i| i != 5).collect();
        for (n, outbox) in outboxes.iter().enumerate().skip(1) {
            let want = if n == 1 { &but_5 } else { &all };
            assert_eq!(&first_bytes(outbox, want.len()).await, want, "subscriber {}", n + 1);
        }
        assert!(outboxes[0].is_empty(), "the held subscriber got nothing yet");
        hub.release(&app, &channel, 1, |_, _| false).await;
        assert_eq!(first_bytes(&outboxes[0], all.len()).await, all);
    }

    /// A traced message that meets a waiting burst pushes the burst first
    /// (order) and is counted on its own: what its span records as its
    /// subscribers is every subscriber, not the 0 of a message kept aside.
    #[tokio::test]
    async fn a_traced_message_pushes_the_waiting_burst_first_and_counts_its_subscribers() {
        const SUBSCRIBERS: u64 = BURST_MIN_SUBSCRIBERS as u64 + 2;
        let (hub, bus, app, channel, outboxes) =
            hub_with_subscribers(SUBSCRIBERS, || Outbox::new(1024, 1 << 20), |_| false).await;
        let message = |i: u8, traceparent: &str| bus::ChannelMessage {
            app_id: app.as_str().into(),
            channel: channel.as_str().into(),
            data: Bytes::from(vec![i]),
            traceparent: traceparent.into(),
            ..Default::default()
        };
        // Back to back: the second message starts a burst, whose flush task
        // cannot run before this task lets it.
        for i in 0..2 {
            bus.publish(&app, &channel, &message(i, "")).await.expect("publish");
        }
        let key = (app.clone(), channel.clone());
        let id = {
            let shard = lock(hub.shard(&app, &channel));
            let entry = shard.get(&key).expect("the channel's entry");
            assert!(entry.burst.is_some(), "a burst waits");
            entry.id
        };
        let traced = message(2, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let delivery =
            Delivery::decode(&hub, &channel, Bytes::from(traced.encode_to_vec()), None, false).expect("decodes");
        assert!(!delivery.traceparent.is_empty());
        assert_eq!(hub.fan_out(&app, &channel, id, None, delivery), SUBSCRIBERS as usize);
        assert!(lock(hub.shard(&app, &channel)).get(&key).expect("entry").burst.is_none());
        for (n, outbox) in outboxes.iter().enumerate() {
            assert_eq!(first_bytes(outbox, 3).await, [0, 1, 2], "subscriber {}", n + 1);
        }
    }

    /// A calm message to a channel of more than `WRITES_PER_TASK`
    /// subscribers on plain TCP is written by several tasks (every worker
    /// may take a share); every subscriber still reads every message, in
    /// the order published.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calm_messages_to_a_large_channel_arrive_in_order_whichever_thread_writes() {
        use tokio::io::AsyncReadExt as _;
        const SUBSCRIBERS: usize = 3 * WRITES_PER_TASK;
        const MESSAGES: u8 = 30;
        let bus = LocalBus::new();
        let bus = Bus::local(&bus);
        let hub = Hub::new(bus.clone());
        bus.attach(hub.clone()).await.expect("attach");
        let (app, channel) = (AppId::new("app").expect("app"), ChannelName::new("room").expect("channel"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut clients = Vec::with_capacity(SUBSCRIBERS);
        for id in 0..SUBSCRIBERS as u64 {
            let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            let sock = Arc::new(server);
            let outbox = Arc::new(Outbox::new(1024, 1 << 20));
            outbox.write_through(sock.clone());
            tokio::spawn(crate::conn::write_loop(
                crate::tcp::SharedWrite(sock),
                outbox.clone(),
                Duration::from_secs(10),
            ));
            let how = SubscribeOptions {
                options: bus::NamespaceOptions::default(),
                hold: false,
                presence: None,
                wire: Wire::Herald,
                count: false,
            };
            hub.subscribe(&app, &channel, id + 1, &outbox, how).await.expect("subscribe");
            clients.push(client);
        }
        for i in 0..MESSAGES {
            let message = bus::ChannelMessage {
                app_id: app.as_str().into(),
                channel: channel.as_str().into(),
                data: Bytes::from(vec![i]),
                ..Default::default()
            };
            bus.publish(&app, &channel, &message).await.expect("publish");
            // Apart by more than the calm gap: each message is written
            // straight from the fan-out, shared between tasks.
            tokio::time::sleep(CALM_GAP * 3).await;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        for (n, mut client) in clients.into_iter().enumerate() {
            let mut got = Vec::with_capacity(MESSAGES as usize);
            while got.len() < MESSAGES as usize {
                let mut header = [0u8; 2];
                tokio::time::timeout_at(deadline, client.read_exact(&mut header))
                    .await
                    .expect("frames come in time")
                    .expect("read");
                assert!(header[1] < 126, "small frames only");
                let mut payload = vec![0u8; usize::from(header[1])];
                client.read_exact(&mut payload).await.expect("read");
                if let Some(server_frame::Kind::Message(m)) =
                    client::ServerFrame::decode(payload.as_slice()).expect("decodes").kind
                {
                    got.push(m.data[0]);
                }
            }
            assert_eq!(got, (0..MESSAGES).collect::<Vec<u8>>(), "subscriber {n}");
        }
    }
}
