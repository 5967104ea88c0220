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
//! The SDK keeps one [`Recovery`] per subscribed channel: the position of
//! the last message it delivered on that channel (before the first one, the
//! position the subscribe answer reports for a channel with history). Every
//! subscribe after a reconnect carries it as `recover_from`. Messages at or
//! below it in the same epoch are replays of what the application already
//! has and are dropped. When the answer comes, every subscription the edge
//! had confirmed before is told [`SubscriptionEvent::Resubscribed`] with
//! `recovered: true` only when the client asked to recover and the edge
//! says it did; otherwise `recovered: false` (always so on channels
//! without history, and when the client had no position to resume from),
//! and the client starts again from the position the answer reports — so
//! the application knows to refetch its state from its own source. A
//! retryable refusal of a resubscribe keeps the position, so the retry
//! still recovers.

use herald_proto::{ChannelName, client};

use crate::event::{Position, SubscriptionEvent};

/// One channel's place in its stream, as far as this client has seen it.
#[derive(Debug, Default)]
pub(crate) struct Recovery {
    position: Option<Position>,
}

/// What to do with a message that arrived on a channel.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Deliver it; its position (`None` on channels without history) is now
    /// the channel's.
    Deliver(Option<Position>),
    /// Already delivered before a reconnect; drop it.
    Duplicate,
}

impl Recovery {
    /// The `Subscribe` request for `channel`, resuming from the last
    /// position seen when there is one; and whether it asks to recover.
    pub(crate) fn subscribe(&self, channel: &ChannelName) -> (client::Subscribe, bool) {
        let recover_from =
            self.position.as_ref().map(|p| client::StreamPosition { seq: p.seq, epoch: p.epoch.clone() });
        let recovering = recover_from.is_some();
        (client::Subscribe { channel: channel.as_str().to_owned(), recover_from }, recovering)
    }

    /// Takes in the edge's answer to a subscribe sent with
    /// [`Self::subscribe`] (`recovering` as it returned). `restoring` says
    /// whether some subscription of the channel was confirmed before, i.e.
    /// this answer restores it after a reconnect; then the event to tell
    /// those subscriptions is returned.
    pub(crate) fn subscribed(
        &mut self,
        channel: &ChannelName,
        recovering: bool,
        restoring: bool,
        answer: &client::SubscribeResult,
    ) -> Option<SubscriptionEvent> {
        let recovered = recovering && answer.recovered;
        if self.position.is_none() || (recovering && !answer.recovered) {
            // Nothing seen yet, or the gap cannot be filled: start from
            // where the channel is now.
            self.position = answer
                .position
                .as_ref()
                .filter(|_| answer.history)
                .map(|p| Position { seq: p.seq, epoch: p.epoch.clone() });
        }
        if !restoring {
            return None;
        }
        if !recovered {
            tracing::info!(%channel, history = answer.history, "resubscribed without recovery");
        }
        Some(SubscriptionEvent::Resubscribed { recovered })
    }

    /// Decides about a message at `seq` of stream `epoch` (`seq` 0: the
    /// channel keeps no history), and remembers its position when it is
    /// delivered.
    pub(crate) fn admit(&mut self, channel: &ChannelName, seq: u64, epoch: &str) -> Admission {
        if seq == 0 {
            return Admission::Deliver(None);
        }
        if let Some(last) = &self.position
            && last.epoch == epoch
            && seq <= last.seq
        {
            tracing::debug!(%channel, seq, "duplicate message dropped");
            return Admission::Duplicate;
        }
        let position = Position { seq, epoch: epoch.to_owned() };
        self.position = Some(position.clone());
        Admission::Deliver(Some(position))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> ChannelName {
        ChannelName::new("prices").expect("valid")
    }

    fn answer(history: bool, recovered: bool, at: Option<(u64, &str)>) -> client::SubscribeResult {
        client::SubscribeResult {
            history,
            recovered,
            position: at.map(|(seq, epoch)| client::StreamPosition { seq, epoch: epoch.into() }),
        }
    }

    #[test]
    fn a_first_subscribe_asks_nothing_and_starts_from_the_answer() {
        let mut r = Recovery::default();
        let (s, recovering) = r.subscribe(&channel());
        assert_eq!((s.recover_from, recovering), (None, false));
        assert_eq!(r.subscribed(&channel(), false, false, &answer(true, false, Some((6, "e1")))), None);
        let (s, recovering) = r.subscribe(&channel());
        assert_eq!(s.recover_from, Some(client::StreamPosition { seq: 6, epoch: "e1".into() }));
        assert!(recovering);
    }

    #[test]
    fn replays_of_delivered_messages_are_dropped() {
        let mut r = Recovery::default();
        assert_eq!(r.admit(&channel(), 7, "e1"), Admission::Deliver(Some(Position { seq: 7, epoch: "e1".into() })));
        assert_eq!(r.admit(&channel(), 7, "e1"), Admission::Duplicate);
        assert_eq!(r.admit(&channel(), 3, "e1"), Admission::Duplicate);
        // A new epoch starts over.
        assert!(matches!(r.admit(&channel(), 1, "e2"), Admission::Deliver(Some(_))));
        // No history: nothing to track.
        assert_eq!(r.admit(&channel(), 0, ""), Admission::Deliver(None));
    }

    #[test]
    fn a_recovered_resubscribe_keeps_the_position_seen() {
        let mut r = Recovery::default();
        r.admit(&channel(), 8, "e1");
        let (_, recovering) = r.subscribe(&channel());
        let told = r.subscribed(&channel(), recovering, true, &answer(true, true, Some((9, "e1"))));
        assert_eq!(told, Some(SubscriptionEvent::Resubscribed { recovered: true }));
        assert_eq!(r.subscribe(&channel()).0.recover_from.map(|p| p.seq), Some(8));
    }

    #[test]
    fn a_lost_gap_is_reported_and_the_answer_position_taken() {
        let mut r = Recovery::default();
        r.admit(&channel(), 9, "e1");
        let told = r.subscribed(&channel(), true, true, &answer(true, false, Some((2, "e2"))));
        assert_eq!(told, Some(SubscriptionEvent::Resubscribed { recovered: false }));
        assert_eq!(r.subscribe(&channel()).0.recover_from, Some(client::StreamPosition { seq: 2, epoch: "e2".into() }));
        // The channel lost its history: nothing to resume from.
        let told = r.subscribed(&channel(), true, true, &answer(false, false, None));
        assert_eq!(told, Some(SubscriptionEvent::Resubscribed { recovered: false }));
        assert_eq!(
            r.subscribe(&channel()),
            (client::Subscribe { channel: "prices".into(), recover_from: None }, false)
        );
    }

    #[test]
    fn a_resubscribe_without_a_position_is_not_recovered() {
        let mut r = Recovery::default();
        let told = r.subscribed(&channel(), false, true, &answer(false, false, None));
        assert_eq!(told, Some(SubscriptionEvent::Resubscribed { recovered: false }));
    }
}
