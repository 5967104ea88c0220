//! Turns bus-wide state changes into recorded events.
//!
//! One task per replica (looking at up to `CONCURRENCY` channels at once,
//! each channel by one look at a time). It wakes when reports changed a
//! channel of an app with endpoints, when a debounce runs out, when
//! endpoints changed, and every few seconds. For each channel to look at it compares what edges
//! report now (subscribers over every edge; the user ids present) with what
//! the database last recorded, and records each difference with its event
//! ([`crate::store::Store::record_webhook_transition`]):
//!
//! - subscribers and nothing recorded: `channel_occupied` (and the first
//!   `subscription_count`); a different count: `subscription_count`, at most
//!   one per channel per debounce period, the latest count winning;
//! - a user present and not recorded: `member_added`;
//! - a recorded user absent for the whole debounce: `member_removed`; a
//!   recorded channel without subscribers for the whole debounce, once its
//!   members are removed: `channel_vacated`.
//!
//! Removals wait while the replica's bus is down (its tables would empty
//! for want of reports, not because anyone left), and for one debounce
//! after the replica starts or its bus comes back, when edges re-send their
//! state (the replica asks them to).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;

use herald_bus::now_ms;
use herald_proto::webhook::EventKind;
use herald_proto::{AppId, ChannelName};
use tokio::time::Instant;

use crate::core::Core;
use crate::reports::ChangedChannels;
use crate::store::{EventDraft, Transition};

/// Longest sleep between two looks (timers and changes wake it earlier).
const IDLE: Duration = Duration::from_secs(1);

/// Channels looked at at once (each its own database round trips).
const CONCURRENCY: usize = 16;

type ChannelKey = (AppId, ChannelName);

/// Since when what is recorded of a channel has been seen absent.
#[derive(Default)]
struct Absence {
    /// The channel's subscribers.
    channel: Option<Instant>,
    /// Members, by user id.
    members: HashMap<String, Instant>,
}

impl Absence {
    fn earliest(&self) -> Option<Instant> {
        self.channel.into_iter().chain(self.members.values().copied()).min()
    }

    fn is_empty(&self) -> bool {
        self.channel.is_none() && self.members.is_empty()
    }
}

/// The task's memory between passes (locked briefly, never across an
/// await: channels are looked at concurrently).
struct Pass {
    absent: Mutex<HashMap<ChannelKey, Absence>>,
    /// When a channel's held-back subscriber count may go out.
    counts_due: Mutex<HashMap<ChannelKey, Instant>>,
    /// Since when the replica has followed reports without a break (its
    /// start, or its bus's last reconnection): removals wait a debounce
    /// after it, while edges re-send their state.
    following_since: Mutex<Instant>,
}

pub(super) async fn run(core: Weak<Core>) {
    let Some(first) = super::reload(&core).await else { return };
    // What apps without endpoints left behind (e.g. deleted while this
    // replica was down) goes once at start, then whenever an app loses
    // its last endpoint.
    forget_unwatched(&core).await;
    let pass = Pass {
        absent: Mutex::new(HashMap::new()),
        counts_due: Mutex::new(HashMap::new()),
        following_since: Mutex::new(Instant::now()),
    };
    let mut was_connected = true;
    let mut sweep: HashSet<AppId> = first.new.into_iter().collect();
    let mut last_reload = Instant::now();
    loop {
        let Some(c) = core.upgrade() else { return };
        let wake = pass.next_timer().map_or(Instant::now() + IDLE, |t| t.min(Instant::now() + IDLE));
        let mut reload = last_reload.elapsed() >= crate::webhooks::RELOAD_INTERVAL;
        if !reload && sweep.is_empty() {
            tokio::select! {
                () = c.reports.changes.notified() => {}
                () = c.webhooks.reload.notified() => reload = true,
                () = tokio::time::sleep_until(wake) => {}
            }
        }
        drop(c);
        if reload {
            last_reload = Instant::now();
            if let Some(reloaded) = super::reload(&core).await {
                sweep.extend(reloaded.new);
                if reloaded.lost_some {
                    forget_unwatched(&core).await;
                }
            }
        }
        let Some(c) = core.upgrade() else { return };
        // Back on the bus after a break: what expired meanwhile is not
        // gone; ask every edge for its state and wait for it.
        let connected = c.publisher.is_connected();
        if connected && !was_connected {
            *lock(&pass.following_since) = Instant::now();
            if let Err(e) = c.publisher.bus().request_presence_sync().await {
                tracing::warn!(error = %e, "presence sync not requested after the bus came back");
            }
        }
        was_connected = connected;
        let mut todo: HashSet<ChannelKey> = HashSet::new();
        match c.reports.take_changed() {
            ChangedChannels::Some(set) => todo.extend(set),
            ChangedChannels::All => sweep.extend(c.webhooks.apps()),
        }
        for app in std::mem::take(&mut sweep) {
            todo.extend(c.reports.channels(&app).into_iter().map(|(name, _)| (app.clone(), name)));
            match c.store.webhook_recorded_channels(&app).await {
                Ok(names) => {
                    todo.extend(names.iter().filter_map(|n| ChannelName::new(n).ok()).map(|n| (app.clone(), n)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, %app, "recorded webhook state not read; trying again");
                    sweep.insert(app);
                }
            }
        }
        todo.extend(pass.due(Instant::now(), c.config.webhook_debounce.0));
        let failed: Mutex<HashSet<AppId>> = Mutex::new(HashSet::new());
        futures_util::stream::iter(todo)
            .for_each_concurrent(CONCURRENCY, |(app, channel)| {
                let (c, pass, failed) = (&c, &pass, &failed);
                async move {
                    if !c.reports.is_watched(&app) {
                        pass.forget(&(app, channel));
                        return;
                    }
                    if let Err(e) = pass.channel(c, &app, &channel).await {
                        tracing::warn!(error = %e, %app, %channel, "webhook state not recorded; trying again");
                        lock(failed).insert(app);
                    }
                }
            })
            .await;
        sweep.extend(failed.into_inner().unwrap_or_else(|e| e.into_inner()));
    }
}

async fn forget_unwatched(core: &Weak<Core>) {
    if let Some(c) = core.upgrade()
        && let Err(e) = c.store.forget_unwatched_webhook_state().await
    {
        tracing::warn!(error = %e, "webhook state of apps without endpoints not cleared");
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pass {
    fn next_timer(&self) -> Option<Instant> {
        // Debounces are checked on every pass; a pass happens at least
        // every IDLE, which bounds how late one runs out.
        lock(&self.counts_due).values().min().copied()
    }

    /// The channels whose debounce or held-back count is due at `now`.
    fn due(&self, now: Instant, debounce: Duration) -> Vec<ChannelKey> {
        let mut due: Vec<ChannelKey> = lock(&self.absent)
            .iter()
            .filter(|(_, a)| a.earliest().is_some_and(|t| t + debounce <= now))
            .map(|(k, _)| k.clone())
            .collect();
        lock(&self.counts_due).retain(|key, at| {
            let is_due = *at <= now;
            if is_due {
                due.push(key.clone());
            }
            !is_due
        });
        due
    }

    fn forget(&self, key: &ChannelKey) {
        lock(&self.absent).remove(key);
        lock(&self.counts_due).remove(key);
    }

    /// Notes that what is recorded of `key` (the channel, or a member) is
    /// absent now, if not noted before; whether it has been absent for the
    /// whole debounce and removals are safe now.
    fn absent_long_enough(&self, core: &Core, key: &ChannelKey, member: Option<&str>) -> bool {
        let debounce = core.config.webhook_debounce.0;
        let now = Instant::now();
        let since = {
            let mut absent = lock(&self.absent);
            let entry = absent.entry(key.clone()).or_default();
            match member {
                Some(user) => *entry.members.entry(user.to_owned()).or_insert(now),
                None => *entry.channel.get_or_insert(now),
            }
        };
        let following_since = *lock(&self.following_since);
        now >= since + debounce && now >= following_since + debounce && core.publisher.is_connected()
    }

    /// Forgets the absences of `key` that no longer wait: the channel's when
    /// `channel_waits` is false, and those of members not in `waiting`.
    fn settle(&self, key: &ChannelKey, channel_waits: bool, waiting: &BTreeSet<String>) {
        let mut absent = lock(&self.absent);
        if let Some(entry) = absent.get_mut(key) {
            if !channel_waits {
                entry.channel = None;
            }
            entry.members.retain(|user, _| waiting.contains(user));
            if entry.is_empty() {
                absent.remove(key);
            }
        }
    }

    async fn channel(&self, core: &Core, app: &AppId, channel: &ChannelName) -> Result<(), crate::store::StoreError> {
        let key = (app.clone(), channel.clone());
        let subscribers = core.reports.subscribers(app, channel);
        let present: BTreeSet<String> = core.reports.member_ids(app, channel).into_iter().collect();
        let stored = core.store.webhook_channel_record(app, channel.as_str()).await?;
        let recorded: BTreeSet<String> = stored.members.into_iter().collect();
        let gap = core.config.webhook_debounce.0;
        let gap_ms = i64::try_from(gap.as_millis()).unwrap_or(i64::MAX);

        if subscribers > 0 {
            match stored.subscribers {
                None => {
                    // The first count goes with the occupation, in its
                    // transaction.
                    let count = format!(r#"{{"subscription_count":{subscribers}}}"#);
                    let events = [(EventKind::ChannelOccupied, "{}"), (EventKind::SubscriptionCount, count.as_str())];
                    record_all(core, app, channel, Transition::Occupied { subscribers }, &events).await?;
                }
                Some((sent, sent_at)) if u64::try_from(sent).ok() != Some(subscribers) => {
                    let now = now_ms();
                    if now.saturating_sub(sent_at) >= gap_ms {
                        let count = format!(r#"{{"subscription_count":{subscribers}}}"#);
                        let t = Transition::Count { subscribers, min_gap_ms: gap_ms };
                        record(core, app, channel, t, EventKind::SubscriptionCount, &count).await?;
                    } else {
                        let wait = Duration::from_millis(u64::try_from(sent_at + gap_ms - now).unwrap_or(0));
                        lock(&self.counts_due).insert(key.clone(), Instant::now() + wait);
                    }
                }
                Some(_) => {}
            }
        }

        for user in present.difference(&recorded) {
            let data = serde_json::json!({ "user_id": user }).to_string();
            record(core, app, channel, Transition::MemberAdded(user.clone()), EventKind::MemberAdded, &data).await?;
        }
        let mut waiting = BTreeSet::new();
        for user in recorded.difference(&present) {
            if self.absent_long_enough(core, &key, Some(user)) {
                let data = serde_json::json!({ "user_id": user }).to_string();
                let t = Transition::MemberRemoved(user.clone());
                record(core, app, channel, t, EventKind::MemberRemoved, &data).await?;
            } else {
                waiting.insert(user.clone());
            }
        }

        let mut channel_waits = false;
        if subscribers == 0 && stored.subscribers.is_some() {
            // Members go first: the channel waits for their removal.
            if self.absent_long_enough(core, &key, None) && waiting.is_empty() {
                record(core, app, channel, Transition::Vacated, EventKind::ChannelVacated, "{}").await?;
            } else {
                channel_waits = true;
            }
        }
        // What is present again, was removed, or another replica recorded
        // meanwhile needs no more waiting here.
        self.settle(&key, channel_waits, &waiting);
        Ok(())
    }
}

fn draft(app: &AppId, channel: &ChannelName, kind: EventKind, data: &str) -> EventDraft {
    EventDraft {
        id: crate::webhooks::new_event_id(),
        app: app.clone(),
        channel: channel.to_string(),
        kind,
        occurred_at_ms: now_ms(),
        data: data.to_owned(),
    }
}

async fn record(
    core: &Core,
    app: &AppId,
    channel: &ChannelName,
    transition: Transition,
    kind: EventKind,
    data: &str,
) -> Result<(), crate::store::StoreError> {
    record_all(core, app, channel, transition, &[(kind, data)]).await
}

/// Records `transition` with its events (the first is the transition's).
async fn record_all(
    core: &Core,
    app: &AppId,
    channel: &ChannelName,
    transition: Transition,
    events: &[(EventKind, &str)],
) -> Result<(), crate::store::StoreError> {
    let drafts: Vec<(EventDraft, Vec<String>)> = events
        .iter()
        .map(|(kind, data)| (draft(app, channel, *kind, data), core.webhooks.targets(app, *kind, channel.as_str())))
        .collect();
    let recorded =
        core.store.record_webhook_transition(&transition, &drafts, core.config.webhook_outbox_max_per_app).await?;
    if let Some((kind, _)) = events.first() {
        note(core, *kind, recorded);
    }
    Ok(())
}

/// Counts what recording did, and wakes the delivery task.
pub(super) fn note(core: &Core, kind: EventKind, recorded: crate::store::Recorded) {
    if recorded.queued > 0 {
        core.metrics.webhook_queued(kind, recorded.queued);
        core.webhooks.queued.notify_one();
    }
    if recorded.dropped > 0 {
        core.metrics.webhook_dropped(kind.as_str(), recorded.dropped);
        tracing::warn!(
            kind = kind.as_str(),
            dropped = recorded.dropped,
            "webhook outbox of the app full; event dropped"
        );
    }
}
