//! # Gap-free recovery
//!
//! A subscription may carry a position (stream epoch + sequence). When the
//! channel's history still holds everything after that position (same
//! epoch, nothing trimmed), the edge replays it, holding live messages that
//! arrive meanwhile; it then releases the held messages it did not replay
//! and goes live, and the subscribe answer's `recovered` flag is true.
//! Otherwise it replays nothing, releases the held messages and goes live at
//! once, and `recovered` is false: the client is told it missed messages.
//!
//! In detail:
//!
//! - Every subscriber of a channel with history is added to the hub
//!   *held* (see [`Hub::subscribe`]): live frames for it are kept aside,
//!   with their positions, from the moment it is added. So nothing published
//!   between the history read and going live is lost.
//! - Recovery needs the namespace's history and the token's `history`
//!   capability; without either the subscribe goes live with `recovered:
//!   false`.
//! - The answer is queued before the replay and carries the position the
//!   client is at once the replay is done (the channel's newest message);
//!   when the history cannot be read at all, it carries no position and the
//!   subscriber goes live at once.
//! - The replay reads the history page by page, each message pushed once
//!   the send queue has room. If a later page cannot be read or the stream
//!   changed epoch meanwhile, the connection is closed (code
//!   `BusUnavailable`): a replay that stopped short must not be
//!   followed by live messages; the client reconnects and recovers from
//!   what it got.
//! - The release passes on the held frames the replay did not cover: those
//!   without a position, those of another epoch (a stream created again),
//!   and those past the last replayed sequence. No gap, no duplicate.

use std::sync::Arc;

use bytes::Bytes;
use herald_bus::Position;
use herald_bus::history::HistoryEntry;
use herald_proto::client::{self, reply_ok};
use herald_proto::{AppId, ChannelName, CloseCode};

use super::reply::reply_ok;
use crate::hub::{EpochTag, Hub};
use crate::outbox::Outbox;

/// Messages per history read of a replay.
const REPLAY_PAGE: usize = 256;

/// A subscriber of a channel with history, just added to the hub (held).
pub(super) struct Recovery<'a> {
    pub(super) hub: &'a Hub,
    pub(super) app: &'a AppId,
    pub(super) channel: &'a ChannelName,
    pub(super) conn_id: u64,
    pub(super) outbox: &'a Arc<Outbox>,
    /// The position to recover from, if the subscription carries one (and
    /// the token allows recovery).
    pub(super) from: Option<client::StreamPosition>,
    /// The namespace's history size (most messages kept per channel).
    pub(super) history_size: usize,
}

impl Recovery<'_> {
    /// Reads the history, answers request `rid`, replays what is to be
    /// replayed, and releases the held frames. Returns the answer when it
    /// was not queued already.
    pub(super) async fn run(self, rid: u64) -> Option<Bytes> {
        let Self { hub, app, channel, conn_id, outbox, from, history_size } = self;
        let (after, limit) = match &from {
            Some(p) => (p.seq, history_size.min(REPLAY_PAGE)),
            None => (0, 0),
        };
        let page = hub.bus().read_history(app, channel, after, limit).await;
        let (recovered, replay, position) = match (&from, page) {
            (Some(from), Ok(page)) if page.epoch == from.epoch && page.complete => {
                // The replay goes on past this page up to the channel's newest.
                let last = page.messages.last().map_or(from.seq, |m| m.seq).max(page.last_seq);
                (true, page.messages, Position { seq: last, epoch: page.epoch })
            }
            (_, Ok(page)) => (false, Vec::new(), Position { seq: page.last_seq, epoch: page.epoch }),
            (_, Err(e)) => {
                // Live delivery works without history: report no position.
                tracing::warn!(%app, %channel, error = %e, "history read failed");
                hub.release(app, channel, conn_id, covered_by(None)).await;
                let result = client::SubscribeResult { history: true, recovered: false, position: None };
                return Some(reply_ok(rid, Some(reply_ok::Value::Subscribed(result))));
            }
        };
        let result = client::SubscribeResult {
            history: true,
            recovered,
            position: Some(client::StreamPosition { seq: position.seq, epoch: position.epoch.clone() }),
        };
        let _ = outbox.push(reply_ok(rid, Some(reply_ok::Value::Subscribed(result))));
        let replayed = match (&from, recovered) {
            (Some(from), true) => replay_all(hub, app, channel, outbox, from.seq, replay, &position.epoch).await,
            _ => 0,
        };
        let replayed = (replayed > 0).then_some(Position { seq: replayed, epoch: position.epoch });
        hub.release(app, channel, conn_id, covered_by(replayed.as_ref())).await;
        None
    }
}

/// Which held frames a replay up to `replayed` covered (none: nothing was
/// replayed): those with a position in the replayed epoch, at or below its
/// last sequence. A frame without a position (sequence 0) or from another
/// epoch is never covered.
pub(super) fn covered_by(replayed: Option<&Position>) -> impl Fn(u64, EpochTag) -> bool + Send + Sync + 'static {
    let covered = replayed.map(|p| (p.seq, EpochTag::of(&p.epoch)));
    move |seq, epoch| seq != 0 && covered.is_some_and(|(upto, tag)| epoch == tag && seq <= upto)
}

/// Replays a recovering subscriber's history after `from`: `first` (the
/// first page), then page after page until the channel's newest message,
/// each message pushed once the send queue has room (a long replay never
/// overflows it). Returns the last sequence replayed, so that the live
/// frames held meanwhile follow it with no gap and no duplicate. If a later
/// page cannot be read, or the stream changed epoch meanwhile, the
/// connection is closed (the client reconnects and recovers from what it
/// got): a replay that stopped short must not be followed by live frames.
async fn replay_all(
    hub: &Hub,
    app: &AppId,
    channel: &ChannelName,
    outbox: &Outbox,
    from: u64,
    first: Vec<HistoryEntry>,
    epoch: &str,
) -> u64 {
    let mut replayed = from;
    let mut page = first;
    loop {
        let full = page.len() == REPLAY_PAGE;
        for entry in page {
            let at = Position { seq: entry.seq, epoch: epoch.to_owned() };
            match crate::hub::encode_replay(channel, entry.payload, &at) {
                Ok(frame) => {
                    if outbox.push_paced(frame).await.is_err() {
                        return replayed;
                    }
                    metrics::counter!("herald_recovered_messages_total").increment(1);
                }
                Err(e) => tracing::warn!(%app, %channel, error = %e, "undecodable stored message skipped"),
            }
            replayed = replayed.max(entry.seq);
        }
        if !full {
            return replayed;
        }
        match hub.bus().read_history(app, channel, replayed, REPLAY_PAGE).await {
            Ok(next) if next.epoch == epoch => page = next.messages,
            Ok(_) => {
                tracing::info!(%app, %channel, "history stream changed during a replay; closing the connection");
                outbox.close(CloseCode::BusUnavailable, "history changed during the replay; reconnect");
                return replayed;
            }
            Err(e) => {
                tracing::warn!(%app, %channel, error = %e, "history read failed during a replay; closing the connection");
                outbox.close(CloseCode::BusUnavailable, "history unavailable during the replay; reconnect");
                return replayed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_bus::{Bus, LocalBus};
    use herald_proto::bus;
    use herald_proto::client::server_frame;
    use prost::Message as _;

    use super::*;
    use crate::hub::SubscribeOptions;

    #[tokio::test]
    async fn a_release_skips_only_what_the_replay_covered_in_its_own_epoch() {
        let bus = Bus::local(&LocalBus::new());
        let hub = Hub::new(bus.clone());
        bus.attach(hub.clone()).await.expect("attach");
        let (app, channel) = (AppId::new("app").expect("app"), ChannelName::new("room").expect("channel"));
        let outbox = Arc::new(Outbox::new(64, 64 * 1024));
        let how = SubscribeOptions {
            options: bus::NamespaceOptions::default(),
            hold: true,
            presence: None,
            wire: crate::hub::Wire::Herald,
            count: false,
        };
        hub.subscribe(&app, &channel, 1, &outbox, how).await.expect("subscribe");
        let id = hub.subscription_id(&app, &channel).expect("channel");
        // Live frames while the replay runs: the replayed epoch's 9..=11,
        // then the stream is created again and its 1 and 2 follow.
        for (epoch, seq) in [("A", 9), ("A", 10), ("A", 11), ("B", 1), ("B", 2)] {
            let message = bus::ChannelMessage { data: Bytes::from(format!("{epoch}{seq}")), ..Default::default() };
            let position = Position { seq, epoch: epoch.into() };
            herald_bus::Sink::deliver(&*hub, &app, &channel, id, Bytes::from(message.encode_to_vec()), Some(&position));
        }
        hub.release(&app, &channel, 1, covered_by(Some(&Position { seq: 10, epoch: "A".into() }))).await;
        let batch = outbox.take().await;
        let got: Vec<String> = batch
            .frames()
            .filter_map(|frame| match client::ServerFrame::decode(&frame[2..]).expect("decodes").kind {
                Some(server_frame::Kind::Message(m)) => Some(String::from_utf8_lossy(&m.data).into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(got, ["A11", "B1", "B2"], "the new epoch's frames are not taken for replayed ones");
    }

    #[test]
    fn nothing_is_covered_without_a_replay_or_a_position() {
        let none = covered_by(None);
        assert!(!none(5, EpochTag::of("A")));
        let upto = covered_by(Some(&Position { seq: 10, epoch: "A".into() }));
        assert!(upto(10, EpochTag::of("A")));
        assert!(!upto(11, EpochTag::of("A")));
        assert!(!upto(3, EpochTag::of("B")));
        assert!(!upto(0, EpochTag::of("")), "a frame without a position is never covered");
    }
}
