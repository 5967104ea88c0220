//! The subscription registry: per channel, the application's
//! subscriptions (each a bounded event buffer), the callers still waiting
//! for the edge's confirmation, where the channel stands with the edge on
//! the current connection, and its [`Recovery`] cursor.
//!
//! Several subscriptions to one channel share one subscription on the edge.
//! The registry never sends anything; it tells the client task what to
//! send (a subscribe, an unsubscribe) and it hands events to subscriptions
//! without ever waiting for a slow reader.

use std::collections::HashMap;
use std::time::Duration;

use herald_proto::{ChannelName, client};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::command::Subscribed;
use crate::error::Error;
use crate::event::{Member, Message, PresenceChange, SubscriptionEvent};
use crate::recovery::{Admission, Recovery};

/// Where a channel stands with the edge on the current connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Not sent on the current connection.
    Unsent,
    /// Sent; waiting for the reply to this request.
    Pending(u64),
    Active,
    /// Refused with a retryable error; retry then.
    RetryAt(Instant),
}

/// One application subscription.
struct Sub {
    id: u64,
    tx: mpsc::Sender<SubscriptionEvent>,
    dropped: u64,
    /// Confirmed by the edge at least once (so a later confirmation is a
    /// resubscribe for it).
    confirmed: bool,
}

/// A caller of `subscribe` waiting for the edge's confirmation.
struct Waiter {
    id: u64,
    rx: mpsc::Receiver<SubscriptionEvent>,
    reply: oneshot::Sender<Result<Subscribed, Error>>,
}

struct Channel {
    subs: Vec<Sub>,
    waiters: Vec<Waiter>,
    status: Status,
    recovery: Recovery,
    history: bool,
    retries: u32,
}

impl Channel {
    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.waiters.is_empty()
    }

    /// Hands `event` to every subscription; false when a reader is gone.
    fn broadcast(&mut self, event: &SubscriptionEvent) -> bool {
        let mut all = true;
        for sub in &mut self.subs {
            all &= push(sub, event.clone());
        }
        all
    }

    /// Ends every subscription and fails every waiting caller with `error`.
    fn end(self, error: &Error) {
        for sub in self.subs {
            let _ = sub.tx.try_send(SubscriptionEvent::Ended(error.clone()));
        }
        for w in self.waiters {
            let _ = w.reply.send(Err(error.clone()));
        }
    }
}

/// What [`Subscriptions::add`] did.
pub(super) enum Added {
    /// The channel was active: the caller has its subscription.
    Confirmed,
    /// The channel was active but the caller went away: remove `id`.
    CallerGone(u64),
    /// The caller waits for the edge; a subscribe is to be sent.
    SendSubscribe,
    /// The caller waits for a subscribe already sent or scheduled.
    Waiting,
}

/// What [`Subscriptions::remove`] did.
pub(super) enum Removed {
    /// The client had no subscription to the channel.
    NotSubscribed,
    /// Other subscriptions remain on the channel.
    Kept,
    /// The channel is gone; `told` when the edge knows of it (so an
    /// unsubscribe is to be sent).
    Left { told: bool },
}

/// Every channel this client subscribes to.
pub(super) struct Subscriptions {
    channels: HashMap<ChannelName, Channel>,
    next_id: u64,
    /// Events buffered per subscription.
    buffer: usize,
}

impl Subscriptions {
    pub(super) fn new(buffer: usize) -> Self {
        Self { channels: HashMap::new(), next_id: 1, buffer }
    }

    /// A new subscription to `channel`, answered on `reply` now when the
    /// channel is active, otherwise once the edge confirms it.
    pub(super) fn add(&mut self, channel: &ChannelName, reply: oneshot::Sender<Result<Subscribed, Error>>) -> Added {
        let (tx, rx) = mpsc::channel(self.buffer);
        let id = self.next_id;
        self.next_id += 1;
        let ch = self.channels.entry(channel.clone()).or_insert_with(|| Channel {
            subs: Vec::new(),
            waiters: Vec::new(),
            status: Status::Unsent,
            recovery: Recovery::default(),
            history: false,
            retries: 0,
        });
        if ch.status == Status::Active {
            ch.subs.push(Sub { id, tx, dropped: 0, confirmed: true });
            return match reply.send(Ok(Subscribed { id, rx, history: ch.history })) {
                Ok(()) => Added::Confirmed,
                Err(_) => Added::CallerGone(id),
            };
        }
        ch.subs.push(Sub { id, tx, dropped: 0, confirmed: false });
        ch.waiters.push(Waiter { id, rx, reply });
        if ch.status == Status::Unsent { Added::SendSubscribe } else { Added::Waiting }
    }

    /// Removes subscription `id` of `channel`, or every one of them (each
    /// ending with [`Error::Closed`]) when `id` is `None`; forgets the
    /// channel once none is left.
    pub(super) fn remove(&mut self, channel: &ChannelName, id: Option<u64>) -> Removed {
        let Some(ch) = self.channels.get_mut(channel) else { return Removed::NotSubscribed };
        match id {
            Some(id) => {
                ch.subs.retain(|s| s.id != id);
                ch.waiters.retain(|w| w.id != id);
            }
            None => {
                for sub in ch.subs.drain(..) {
                    let _ = sub.tx.try_send(SubscriptionEvent::Ended(Error::Closed));
                }
                for w in ch.waiters.drain(..) {
                    let _ = w.reply.send(Err(Error::Closed));
                }
            }
        }
        if ch.is_empty() { Removed::Left { told: self.forget(channel) } } else { Removed::Kept }
    }

    /// Drops the subscriptions of `channel` whose reader is gone; forgets
    /// the channel when none is left, returning whether the edge knows of
    /// it (so an unsubscribe is to be sent).
    pub(super) fn prune(&mut self, channel: &ChannelName) -> Option<bool> {
        let ch = self.channels.get_mut(channel)?;
        let waiting: Vec<u64> = ch.waiters.iter().map(|w| w.id).collect();
        ch.subs.retain(|s| !s.tx.is_closed() || waiting.contains(&s.id));
        ch.is_empty().then(|| self.forget(channel))
    }

    /// Forgets `channel`; true when the edge knows of it.
    fn forget(&mut self, channel: &ChannelName) -> bool {
        self.channels.remove(channel).is_some_and(|ch| matches!(ch.status, Status::Pending(_) | Status::Active))
    }

    /// The `Subscribe` request for `channel` (resuming where it stands), and
    /// whether it asks to recover.
    pub(super) fn subscribe_request(&self, channel: &ChannelName) -> Option<(client::Subscribe, bool)> {
        self.channels.get(channel).map(|ch| ch.recovery.subscribe(channel))
    }

    /// The subscribe for `channel` went out as request `request_id`.
    pub(super) fn sent(&mut self, channel: &ChannelName, request_id: u64) {
        if let Some(ch) = self.channels.get_mut(channel) {
            ch.status = Status::Pending(request_id);
        }
    }

    /// The connection is gone: every channel is to be subscribed again on
    /// the next one.
    pub(super) fn disconnected(&mut self) {
        for ch in self.channels.values_mut() {
            ch.status = Status::Unsent;
        }
    }

    /// Channels to subscribe on a new connection.
    pub(super) fn to_restore(&self) -> Vec<ChannelName> {
        self.select(|status| matches!(status, Status::Unsent | Status::RetryAt(_)))
    }

    /// Channels whose retry time has come.
    pub(super) fn retries_due(&self, now: Instant) -> Vec<ChannelName> {
        self.select(|status| matches!(status, Status::RetryAt(t) if now >= t))
    }

    fn select(&self, wanted: impl Fn(Status) -> bool) -> Vec<ChannelName> {
        self.channels.iter().filter(|(_, ch)| wanted(ch.status)).map(|(name, _)| name.clone()).collect()
    }

    /// The earliest retry time of a refused resubscribe.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter_map(|ch| match ch.status {
                Status::RetryAt(t) => Some(t),
                _ => None,
            })
            .min()
    }

    /// Takes in the edge's answer to subscribe request `request_id` of
    /// `channel` (`recovering` as [`Self::subscribe_request`] said).
    /// `retry_delay(n)` is the wait before the `n`th retry of a refused
    /// resubscribe. Returns the subscriptions whose caller went away before
    /// the confirmation, to be removed.
    pub(super) fn answered(
        &mut self,
        channel: &ChannelName,
        request_id: u64,
        recovering: bool,
        result: Result<client::SubscribeResult, client::ReplyError>,
        retry_delay: impl FnOnce(u32) -> Duration,
    ) -> Vec<u64> {
        let Some(ch) = self.channels.get_mut(channel) else { return Vec::new() };
        if ch.status != Status::Pending(request_id) {
            return Vec::new();
        }
        let restoring = ch.subs.iter().any(|s| s.confirmed);
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => {
                let error = Error::rejected(e.code, e.message, e.retryable);
                if restoring && e.retryable {
                    ch.retries += 1;
                    ch.status = Status::RetryAt(Instant::now() + retry_delay(ch.retries));
                    tracing::warn!(%channel, %error, "resubscribe refused; retrying");
                    // New subscribers learn of the failure now.
                    let waiting: Vec<u64> = ch.waiters.iter().map(|w| w.id).collect();
                    for w in ch.waiters.drain(..) {
                        let _ = w.reply.send(Err(error.clone()));
                    }
                    ch.subs.retain(|s| !waiting.contains(&s.id));
                } else {
                    tracing::warn!(%channel, %error, "subscribe refused");
                    if let Some(ch) = self.channels.remove(channel) {
                        ch.end(&error);
                    }
                }
                return Vec::new();
            }
        };
        ch.status = Status::Active;
        ch.history = answer.history;
        ch.retries = 0;
        if let Some(event) = ch.recovery.subscribed(channel, recovering, restoring, &answer) {
            for sub in ch.subs.iter_mut().filter(|s| s.confirmed) {
                push(sub, event.clone());
            }
        }
        let history = ch.history;
        let mut gone = Vec::new();
        for w in ch.waiters.drain(..) {
            if let Some(sub) = ch.subs.iter_mut().find(|s| s.id == w.id) {
                sub.confirmed = true;
            }
            if w.reply.send(Ok(Subscribed { id: w.id, rx: w.rx, history })).is_err() {
                gone.push(w.id);
            }
        }
        gone
    }

    /// Delivers a message to its channel's subscriptions, unless it is a
    /// replay of one already delivered. Returns the channel when one of its
    /// readers is gone (to be pruned).
    pub(super) fn deliver(&mut self, m: client::Message) -> Option<ChannelName> {
        let Ok(channel) = ChannelName::new(&m.channel) else {
            tracing::debug!(channel = %m.channel, "message for an invalid channel name");
            return None;
        };
        let Some(ch) = self.channels.get_mut(&channel) else {
            tracing::trace!(%channel, "message for a channel no longer subscribed");
            return None;
        };
        let Admission::Deliver(position) = ch.recovery.admit(&channel, m.seq, &m.epoch) else { return None };
        let message = Message {
            channel: channel.clone(),
            data: m.data,
            event: m.event,
            position,
            publisher: (!m.publisher.is_empty()).then_some(m.publisher),
            timestamp_ms: m.timestamp_ms,
            id: m.id,
        };
        (!ch.broadcast(&SubscriptionEvent::Message(message))).then_some(channel)
    }

    /// Hands a presence change to its channel's subscriptions. Returns the
    /// channel when one of its readers is gone (to be pruned).
    pub(super) fn presence(&mut self, p: client::PresenceEvent) -> Option<ChannelName> {
        let channel = ChannelName::new(&p.channel).ok()?;
        let ch = self.channels.get_mut(&channel)?;
        let member = p.member?;
        let joined = p.kind == client::presence_event::Kind::Join as i32;
        let change = PresenceChange { joined, member: Member { client_id: member.client_id, info: member.info } };
        (!ch.broadcast(&SubscriptionEvent::Presence(change))).then_some(channel)
    }

    /// The client stopped: every subscription ends with `error`.
    pub(super) fn end_all(&mut self, error: &Error) {
        for (_, ch) in self.channels.drain() {
            ch.end(error);
        }
    }
}

/// Offers `event` to a subscription without waiting; returns false when its
/// reader is gone. A full buffer drops the event and counts it, and the next
/// event that fits is preceded by [`SubscriptionEvent::Lagged`].
fn push(sub: &mut Sub, event: SubscriptionEvent) -> bool {
    use mpsc::error::TrySendError;
    if sub.dropped > 0 {
        match sub.tx.try_send(SubscriptionEvent::Lagged { dropped: sub.dropped }) {
            Ok(()) => sub.dropped = 0,
            Err(TrySendError::Full(_)) => {
                sub.dropped += 1;
                return true;
            }
            Err(TrySendError::Closed(_)) => return false,
        }
    }
    match sub.tx.try_send(event) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            if sub.dropped == 0 {
                tracing::warn!(subscription = sub.id, "subscription buffer full; dropping messages until it is read");
            }
            sub.dropped += 1;
            true
        }
        Err(TrySendError::Closed(_)) => false,
    }
}
