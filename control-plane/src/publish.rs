//! Publishing: validated messages onto the bus, with per-app rate limits
//! and idempotency.
//!
//! The API layers validate (channel names, capabilities, sizes) and hand
//! [`Prepared`] messages to the [`Publisher`], which
//!
//! 1. takes one token per (message, channel) from the app's bucket
//!    (`rate_limited` when empty, with the wait until one is free);
//! 2. with an idempotency id, claims `(app, channel, id)`: a message already
//!    accepted in the window is not sent again and answers with the same
//!    id; a concurrent duplicate waits for the first attempt's outcome; a
//!    failed attempt releases the claim, so the retry goes through;
//! 3. encodes one `bus::ChannelMessage` per channel and publishes it; the
//!    call resolves only once the bus accepted it (`unavailable` — never a
//!    success — when NATS is unreachable).
//!
//! Several messages (a batch, a stream) go out concurrently, at most
//! `max_publishes_in_flight` at a time, started in order, and their bus
//! writes share flushes; plain ones (one channel, no history, no
//! idempotency id) are handed to the bus in order and confirmed together
//! ([`Publisher::publish_many`]). Rate limits and idempotency ids are per replica;
//! `docs/api.md` says what that means with several replicas.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use std::future::Future;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use herald_bus::{Bus, BusError, Position};
use herald_proto::{AppId, ChannelName, ErrorCode, bus};
use prost::Message as _;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::keys::new_message_id;
use crate::metrics::Metrics;
use crate::store::{IdempotencyClaim, Store};
use herald_bus::now_ms;

/// A message ready to publish: validated, for one app.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The channels it goes to (at least one).
    pub channels: Vec<ChannelName>,
    /// The payload.
    pub data: Bytes,
    /// Event name.
    pub event: Option<String>,
    /// Idempotency id; becomes the message id.
    pub idempotency_id: Option<String>,
    /// The connection (a Pusher `socket_id`, or a Herald connection id) that
    /// must not receive it.
    pub exclude_connection: Option<String>,
    /// Per channel (same order): whether it keeps history, so the message
    /// goes through its namespace's stream and gets a position. Empty (or
    /// shorter) means no history for the rest.
    pub history: Vec<bool>,
}

/// A message accepted by the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The message id (the idempotency id when one was given).
    pub id: String,
    /// Whether every channel had already received it within the
    /// idempotency window (nothing was sent again).
    pub duplicate: bool,
    /// The position in each channel with history it was stored in (not for
    /// duplicates), in channel order.
    pub positions: Vec<(ChannelName, Position)>,
    /// How many channels it went to.
    pub channels: usize,
}

/// The bus envelope of `msg` for one of its channels.
fn envelope(app: &AppId, channel: &ChannelName, msg: &Prepared, id: &str, timestamp_ms: i64) -> bus::ChannelMessage {
    bus::ChannelMessage {
        app_id: app.to_string(),
        channel: channel.to_string(),
        data: msg.data.clone(),
        event: msg.event.clone(),
        id: id.to_owned(),
        publisher: String::new(),
        exclude_connection: msg.exclude_connection.clone().unwrap_or_default(),
        timestamp_ms,
        traceparent: herald_bus::trace::traceparent(),
    }
}

impl Prepared {
    /// One channel without history, no idempotency id: nothing to claim
    /// and no position to wait for, so it can be handed to the bus and
    /// confirmed later ([`Publisher::publish_many`]).
    fn is_plain(&self) -> bool {
        self.channels.len() == 1 && self.idempotency_id.is_none() && !self.history.first().copied().unwrap_or(false)
    }
}

/// A plain message of a batch, handed to the bus or refused before.
enum Handed {
    Sent { receipt: herald_bus::PublishReceipt, id: String, started: Instant },
    Refused(ApiError),
}

/// What one channel's send did.
enum Sent {
    /// Sent; with its position for a channel with history.
    New(Option<Position>),
    /// Already accepted within the idempotency window.
    Duplicate,
}

type IdemKey = (AppId, ChannelName, Box<str>);

enum IdemEntry {
    /// An attempt is in flight; dropping the sender wakes the waiters.
    Pending(watch::Sender<()>),
    /// Accepted at this instant.
    Done(Instant),
}

/// Idempotency ids seen by this replica within the window.
pub(crate) struct Idempotency {
    inner: Mutex<IdemInner>,
    window: Duration,
    max_entries: usize,
}

#[derive(Default)]
struct IdemInner {
    map: HashMap<IdemKey, IdemEntry>,
    done: VecDeque<(Instant, IdemKey)>,
}

enum Claim {
    /// First attempt: publish, then finish the guard.
    New(ClaimGuard),
    /// Already accepted within the window.
    Duplicate,
}

/// Releases a claim when dropped unfinished (failure or cancellation).
struct ClaimGuard {
    idem: Option<Arc<Idempotency>>,
    key: Option<IdemKey>,
}

impl ClaimGuard {
    /// A guard with nothing to release (claims held elsewhere).
    fn detached() -> Self {
        Self { idem: None, key: None }
    }

    fn accept(mut self) {
        if let (Some(idem), Some(key)) = (&self.idem, self.key.take()) {
            idem.finish(key, true);
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if let (Some(idem), Some(key)) = (&self.idem, self.key.take()) {
            idem.finish(key, false);
        }
    }
}

impl Idempotency {
    pub(crate) fn new(window: Duration, max_entries: usize) -> Self {
        Self { inner: Mutex::new(IdemInner::default()), window, max_entries: max_entries.max(1) }
    }

    async fn claim(self: &Arc<Self>, key: IdemKey, wait: Duration) -> Result<Claim, ApiError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut rx = {
                let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                self.expire(&mut inner);
                match inner.map.get(&key) {
                    Some(IdemEntry::Done(_)) => return Ok(Claim::Duplicate),
                    Some(IdemEntry::Pending(tx)) => tx.subscribe(),
                    None => {
                        let (tx, _) = watch::channel(());
                        inner.map.insert(key.clone(), IdemEntry::Pending(tx));
                        return Ok(Claim::New(ClaimGuard { idem: Some(self.clone()), key: Some(key) }));
                    }
                }
            };
            // Wait for the attempt in flight to end, then look again.
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Err(ApiError::new(
                    ErrorCode::Conflict,
                    "a publish with this idempotency id is still in progress; retry later",
                ));
            }
        }
    }

    fn finish(&self, key: IdemKey, accepted: bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if accepted {
            let now = Instant::now();
            while inner.done.len() >= self.max_entries {
                if let Some((at, old)) = inner.done.pop_front()
                    && matches!(inner.map.get(&old), Some(IdemEntry::Done(t)) if *t == at)
                {
                    inner.map.remove(&old);
                }
            }
            inner.done.push_back((now, key.clone()));
            inner.map.insert(key, IdemEntry::Done(now));
        } else {
            inner.map.remove(&key);
        }
    }

    fn expire(&self, inner: &mut IdemInner) {
        let now = Instant::now();
        while let Some((at, _)) = inner.done.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            if let Some((at, key)) = inner.done.pop_front()
                && matches!(inner.map.get(&key), Some(IdemEntry::Done(t)) if *t == at)
            {
                inner.map.remove(&key);
            }
        }
    }

    /// Drops expired ids (also done lazily on every claim).
    pub(crate) fn purge(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.expire(&mut inner);
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-app token buckets: `rate` tokens per second, holding at most one
/// second's worth.
#[derive(Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<AppId, Bucket>>,
}

impl RateLimiter {
    /// Takes `n` tokens, or says how long until they would be there.
    pub(crate) fn try_take(&self, app: &AppId, rate: u32, n: u32) -> Result<(), Duration> {
        let rate = f64::from(rate.max(1));
        let n = f64::from(n);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(app) {
            buckets.insert(app.clone(), Bucket { tokens: rate, last: now });
        }
        let Some(bucket) = buckets.get_mut(app) else { return Ok(()) };
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(rate);
        bucket.last = now;
        if bucket.tokens >= n {
            bucket.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((n - bucket.tokens) / rate).min(3600.0)))
        }
    }

    pub(crate) fn forget(&self, app: &AppId) {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).remove(app);
    }
}

/// The ordering key of a channel of an app.
pub(crate) fn channel_key(app: &str, channel: &str) -> String {
    let mut k = String::with_capacity(app.len() + channel.len() + 1);
    k.push_str(app);
    k.push('\0');
    k.push_str(channel);
    k
}

/// Runs futures concurrently — at most `limit` at once — and yields their
/// outputs in push order. A future whose keys (channels) overlap those of
/// one still in flight starts only after it, which keeps the order of
/// messages to one channel: concurrent publishes may reach the bus in any
/// order.
pub(crate) struct InOrder<F: Future> {
    pending: FuturesOrdered<F>,
    keys: VecDeque<Vec<String>>,
    limit: usize,
}

impl<F: Future> InOrder<F> {
    pub(crate) fn new(limit: usize) -> Self {
        Self { pending: FuturesOrdered::new(), keys: VecDeque::new(), limit: limit.max(1) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts `fut` once there is room and no overlapping future is in
    /// flight; outputs finished meanwhile go to `out`.
    pub(crate) async fn push(&mut self, keys: Vec<String>, fut: F, out: &mut Vec<F::Output>) {
        while self.pending.len() >= self.limit || self.keys.iter().any(|ks| ks.iter().any(|k| keys.contains(k))) {
            match self.next().await {
                Some(r) => out.push(r),
                None => break,
            }
        }
        self.pending.push_back(fut);
        self.keys.push_back(keys);
    }

    /// The next output, in push order.
    pub(crate) async fn next(&mut self) -> Option<F::Output> {
        let r = self.pending.next().await;
        if r.is_some() {
            self.keys.pop_front();
        }
        r
    }

    /// Waits for every future in flight.
    pub(crate) async fn drain(&mut self, out: &mut Vec<F::Output>) {
        while let Some(r) = self.next().await {
            out.push(r);
        }
    }
}

/// Puts messages on the bus.
pub struct Publisher {
    bus: Bus,
    shared: Option<SharedIdempotency>,
    idempotency: Arc<Idempotency>,
    limiter: RateLimiter,
    metrics: Arc<Metrics>,
    max_in_flight: usize,
    idempotency_wait: Duration,
}

/// The per-app limits a publish is checked against.
#[derive(Debug, Clone, Copy)]
pub struct PublishLimits {
    /// Publishes per second (tokens per second of the app's bucket).
    pub rate_per_sec: u32,
}

impl Publisher {
    pub(crate) fn new(
        bus: Bus,
        shared: Option<SharedIdempotency>,
        metrics: Arc<Metrics>,
        idempotency_window: Duration,
        idempotency_max_entries: usize,
        max_in_flight: usize,
    ) -> Self {
        Self {
            bus,
            shared,
            idempotency: Arc::new(Idempotency::new(idempotency_window, idempotency_max_entries)),
            limiter: RateLimiter::default(),
            metrics,
            max_in_flight: max_in_flight.max(1),
            idempotency_wait: Duration::from_secs(10),
        }
    }

    /// Whether the bus is connected.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.bus.is_connected()
    }

    pub(crate) fn bus(&self) -> &Bus {
        &self.bus
    }

    pub(crate) fn purge(&self) {
        self.idempotency.purge();
    }

    pub(crate) fn forget_app(&self, app: &AppId) {
        self.limiter.forget(app);
    }

    /// Publishes one message.
    ///
    /// # Errors
    ///
    /// `rate_limited`, `conflict` (a duplicate still in flight),
    /// `unavailable` (the bus did not accept it) or `internal`.
    pub async fn publish(&self, app: &AppId, limits: PublishLimits, msg: Prepared) -> Result<Published, ApiError> {
        let started = Instant::now();
        let result = self.publish_inner(app, limits, msg).await;
        match &result {
            Ok(_) => self.metrics.publish_latency(started.elapsed()),
            Err(e) => self.metrics.publish_failed(e.code),
        }
        result
    }

    /// Publishes several messages, concurrently, with one result per
    /// message, in order. Items that already failed validation are passed
    /// through. Messages to the same channel reach subscribers in batch
    /// order.
    ///
    /// Plain messages (one channel, no history, no idempotency id) are
    /// handed to the bus one after the other without waiting for each
    /// ([`Bus::send_encoded`]: the bus keeps their order) and confirmed
    /// together, at most `max_publishes_in_flight` unconfirmed. The others
    /// go through [`Self::publish`], concurrently, a message starting only
    /// after those before it to any of its channels finished. Moving from
    /// one kind to the other waits for the messages of the first.
    pub async fn publish_many(
        &self,
        app: &AppId,
        limits: PublishLimits,
        items: Vec<Result<Prepared, ApiError>>,
    ) -> Vec<Result<Published, ApiError>> {
        let mut out = Vec::with_capacity(items.len());
        let mut handed = VecDeque::with_capacity(items.len().min(self.max_in_flight));
        let mut in_order = InOrder::new(self.max_in_flight);
        for item in items {
            let plain = match &item {
                Ok(msg) => msg.is_plain(),
                // A refused item keeps its place in whichever queue runs.
                Err(_) => in_order.is_empty(),
            };
            if plain {
                in_order.drain(&mut out).await;
                if handed.len() >= self.max_in_flight {
                    self.confirm_oldest(app, &mut handed, &mut out).await;
                }
                handed.push_back(match item {
                    Ok(msg) => self.hand_over(app, limits, msg).await,
                    Err(e) => Handed::Refused(e),
                });
                continue;
            }
            self.confirm_all(app, &mut handed, &mut out).await;
            let keys = match &item {
                Ok(msg) => msg.channels.iter().map(|c| channel_key(app.as_str(), c.as_str())).collect(),
                Err(_) => Vec::new(),
            };
            let fut = async move {
                match item {
                    Ok(msg) => self.publish(app, limits, msg).await,
                    Err(e) => Err(e),
                }
            };
            in_order.push(keys, fut, &mut out).await;
        }
        self.confirm_all(app, &mut handed, &mut out).await;
        in_order.drain(&mut out).await;
        out
    }

    /// Hands a plain message (see [`Prepared::is_plain`]) to the bus.
    async fn hand_over(&self, app: &AppId, limits: PublishLimits, msg: Prepared) -> Handed {
        let started = Instant::now();
        let handed = async {
            self.take(app, limits, 1)?;
            let [channel] = msg.channels.as_slice() else {
                tracing::error!(channels = msg.channels.len(), "a batch's plain message must have one channel");
                return Err(ApiError::internal());
            };
            let id = new_message_id();
            let envelope = envelope(app, channel, &msg, &id, now_ms());
            let receipt = self
                .bus
                .send_encoded(app, channel, Bytes::from(envelope.encode_to_vec()))
                .await
                .map_err(ApiError::from)?;
            Ok((receipt, id))
        };
        match handed.await {
            Ok((receipt, id)) => Handed::Sent { receipt, id, started },
            Err(e) => Handed::Refused(e),
        }
    }

    /// Waits for every handed message's receipt, oldest first.
    async fn confirm_all(
        &self,
        app: &AppId,
        handed: &mut VecDeque<Handed>,
        out: &mut Vec<Result<Published, ApiError>>,
    ) {
        while !handed.is_empty() {
            self.confirm_oldest(app, handed, out).await;
        }
    }

    /// Waits for the oldest handed message's receipt; its result goes to
    /// `out`.
    async fn confirm_oldest(
        &self,
        app: &AppId,
        handed: &mut VecDeque<Handed>,
        out: &mut Vec<Result<Published, ApiError>>,
    ) {
        let result = match handed.pop_front() {
            None => return,
            Some(Handed::Refused(e)) => Err(e),
            Some(Handed::Sent { receipt, id, started }) => match receipt.confirmed().await {
                Ok(()) => {
                    self.metrics.publish_latency(started.elapsed());
                    self.metrics.published(app, 1);
                    Ok(Published { id, duplicate: false, positions: Vec::new(), channels: 1 })
                }
                Err(e) => Err(ApiError::from(e)),
            },
        };
        if let Err(e) = &result {
            self.metrics.publish_failed(e.code);
        }
        out.push(result);
    }

    /// Takes `n` publishes from the app's bucket.
    fn take(&self, app: &AppId, limits: PublishLimits, n: usize) -> Result<(), ApiError> {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.limiter.try_take(app, limits.rate_per_sec, n).map_err(|wait| {
            let mut e = ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "publish rate limit of {} messages/s for this app reached; retry later, or raise the app's \
                     limits.publish_rate_per_sec or the control plane's default_publish_rate_per_sec",
                    limits.rate_per_sec
                ),
            );
            e.retry_after_secs = Some(wait.as_secs().max(1));
            e
        })
    }

    /// Sends an event to every connection of one user (on the control
    /// subject, to every edge), counted as one publish of the app. Resolves
    /// once the bus accepted it.
    ///
    /// # Errors
    ///
    /// `rate_limited`, `unavailable` (the bus did not accept it).
    pub async fn publish_user_event(
        &self,
        app: &AppId,
        limits: PublishLimits,
        event: bus::UserEvent,
    ) -> Result<(), ApiError> {
        let started = Instant::now();
        let result = async {
            self.take(app, limits, 1)?;
            let event = bus::ControlEvent {
                timestamp_ms: event.timestamp_ms,
                kind: Some(bus::control_event::Kind::UserEvent(event)),
            };
            self.bus.publish_control(&event).await.map_err(ApiError::from)
        }
        .await;
        match &result {
            Ok(()) => {
                self.metrics.publish_latency(started.elapsed());
                self.metrics.published(app, 1);
            }
            Err(e) => self.metrics.publish_failed(e.code),
        }
        result
    }

    async fn publish_inner(&self, app: &AppId, limits: PublishLimits, msg: Prepared) -> Result<Published, ApiError> {
        self.take(app, limits, msg.channels.len())?;
        let id = msg.idempotency_id.clone().unwrap_or_else(new_message_id);
        let timestamp_ms = now_ms();
        let history = |i: usize| msg.history.get(i).copied().unwrap_or(false);
        let results = if let [channel] = msg.channels.as_slice() {
            vec![self.send(app, channel, history(0), &msg, &id, timestamp_ms).await]
        } else {
            // A message to several channels: each channel is its own
            // publish (and idempotency claim); they go out together.
            let sends = msg
                .channels
                .iter()
                .enumerate()
                .map(|(i, channel)| self.send(app, channel, history(i), &msg, &id, timestamp_ms));
            futures_util::future::join_all(sends).await
        };
        let (mut sent, mut duplicates, mut first_error) = (0u64, 0usize, None);
        let mut positions = Vec::new();
        for (r, channel) in results.into_iter().zip(&msg.channels) {
            match r {
                Ok(Sent::New(position)) => {
                    sent += 1;
                    if let Some(p) = position {
                        positions.push((channel.clone(), p));
                    }
                }
                Ok(Sent::Duplicate) => duplicates += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if sent > 0 {
            self.metrics.published(app, sent);
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(Published { id, duplicate: duplicates == msg.channels.len(), positions, channels: msg.channels.len() })
    }

    /// Sends `msg` to one channel (through its history stream when
    /// `history`); `Sent::Duplicate` when its idempotency id was already
    /// accepted there.
    async fn send(
        &self,
        app: &AppId,
        channel: &ChannelName,
        history: bool,
        msg: &Prepared,
        id: &str,
        timestamp_ms: i64,
    ) -> Result<Sent, ApiError> {
        let guard = match &msg.idempotency_id {
            Some(idem) => {
                // The idempotency, shared-idempotency and history futures
                // are boxed: they are only run with an id or history, and
                // inline they would weigh on every publish's future.
                let claim =
                    self.idempotency.claim((app.clone(), channel.clone(), idem.as_str().into()), self.idempotency_wait);
                match Box::pin(claim).await? {
                    Claim::Duplicate => return Ok(Sent::Duplicate),
                    Claim::New(guard) => Some(guard),
                }
            }
            None => None,
        };
        // With several replicas, the database decides across them.
        let shared = match (&msg.idempotency_id, &self.shared) {
            (Some(idem), Some(shared)) => {
                match Box::pin(shared.claim(app, channel, idem, self.idempotency_wait)).await? {
                    Claim::Duplicate => {
                        if let Some(guard) = guard {
                            guard.accept();
                        }
                        return Ok(Sent::Duplicate);
                    }
                    Claim::New(_) => Some((shared, idem)),
                }
            }
            _ => None,
        };
        let envelope = envelope(app, channel, msg, id, timestamp_ms);
        let sent = if history {
            Box::pin(self.bus.publish_history(app, channel, &envelope)).await.map(Some)
        } else {
            self.bus.publish_encoded(app, channel, Bytes::from(envelope.encode_to_vec())).await.map(|()| None)
        };
        if let Some((shared, idem)) = shared {
            Box::pin(shared.finish(app, channel, idem, sent.is_ok())).await;
        }
        let position = sent.map_err(|e| match e {
            // The namespace's history was turned off since this replica
            // looked, or its stream was lost and could not be created
            // again: the message was not accepted.
            BusError::NoHistory(reason) => {
                tracing::warn!(%app, %channel, %reason, "history publish found no stream");
                ApiError::unavailable(
                    "the channel's history stream is missing (its namespace just changed?); nothing was accepted; retry",
                )
            }
            other => ApiError::from(other),
        })?;
        if let Some(guard) = guard {
            guard.accept();
        }
        Ok(Sent::New(position))
    }

    /// Drops expired shared idempotency ids.
    pub(crate) async fn purge_shared(&self) {
        if let Some(shared) = &self.shared
            && let Err(e) = shared.store.purge_idempotency(now_ms()).await
        {
            tracing::warn!(error = %e, "expired idempotency ids not purged");
        }
    }
}

/// Idempotency ids in the database, shared by every replica (PostgreSQL).
pub(crate) struct SharedIdempotency {
    store: Store,
    window: Duration,
    /// How long a claim may stay pending before another attempt may take it
    /// over (its replica may have died).
    pending_ttl: Duration,
}

impl SharedIdempotency {
    pub(crate) fn new(store: Store, window: Duration) -> Self {
        Self { store, window, pending_ttl: Duration::from_secs(30) }
    }

    /// `New` when this attempt owns the id, `Duplicate` when it was accepted
    /// within the window; waits while another attempt is in flight.
    async fn claim(&self, app: &AppId, channel: &ChannelName, id: &str, wait: Duration) -> Result<Claim, ApiError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = now_ms();
            let pending_until = now.saturating_add(i64::try_from(self.pending_ttl.as_millis()).unwrap_or(i64::MAX / 4));
            match self.store.claim_idempotency(app.as_str(), channel.as_str(), id, now, pending_until).await? {
                IdempotencyClaim::Claimed => return Ok(Claim::New(ClaimGuard::detached())),
                IdempotencyClaim::Accepted => return Ok(Claim::Duplicate),
                IdempotencyClaim::Pending if tokio::time::Instant::now() >= deadline => {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        "a publish with this idempotency id is still in progress; retry later",
                    ));
                }
                IdempotencyClaim::Pending => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Marks the id accepted (for the window) or releases it.
    async fn finish(&self, app: &AppId, channel: &ChannelName, id: &str, accepted: bool) {
        let result = if accepted {
            let until = now_ms().saturating_add(i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX / 4));
            self.store.accept_idempotency(app.as_str(), channel.as_str(), id, until).await
        } else {
            self.store.release_idempotency(app.as_str(), channel.as_str(), id).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, accepted, "shared idempotency id not updated");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> IdemKey {
        (AppId::new("a").expect("app"), ChannelName::new("c").expect("channel"), id.into())
    }

    #[tokio::test]
    async fn idempotency_claims() {
        let idem = Arc::new(Idempotency::new(Duration::from_secs(120), 10));
        let Claim::New(guard) = idem.claim(key("x"), Duration::from_secs(1)).await.expect("claim") else {
            panic!("first claim is new")
        };
        // A failed attempt releases the claim.
        drop(guard);
        let Claim::New(guard) = idem.claim(key("x"), Duration::from_secs(1)).await.expect("claim") else {
            panic!("claim after a failure is new")
        };
        guard.accept();
        assert!(matches!(idem.claim(key("x"), Duration::from_secs(1)).await, Ok(Claim::Duplicate)));
        assert!(matches!(idem.claim(key("y"), Duration::from_secs(1)).await, Ok(Claim::New(_))));
    }

    #[tokio::test]
    async fn concurrent_duplicate_waits_for_the_first() {
        let idem = Arc::new(Idempotency::new(Duration::from_secs(120), 10));
        let Ok(Claim::New(guard)) = idem.claim(key("x"), Duration::from_secs(1)).await else { panic!("new") };
        let idem2 = idem.clone();
        let waiter = tokio::spawn(async move { idem2.claim(key("x"), Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        guard.accept();
        assert!(matches!(waiter.await.expect("join"), Ok(Claim::Duplicate)));
    }

    #[tokio::test]
    async fn idempotency_window_expires() {
        let idem = Arc::new(Idempotency::new(Duration::from_millis(50), 10));
        let Ok(Claim::New(guard)) = idem.claim(key("x"), Duration::from_secs(1)).await else { panic!("new") };
        guard.accept();
        assert!(matches!(idem.claim(key("x"), Duration::from_secs(1)).await, Ok(Claim::Duplicate)));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(idem.claim(key("x"), Duration::from_secs(1)).await, Ok(Claim::New(_))), "expired");
    }

    #[tokio::test]
    async fn idempotency_is_bounded() {
        let idem = Arc::new(Idempotency::new(Duration::from_secs(120), 3));
        for i in 0..10 {
            let Ok(Claim::New(guard)) = idem.claim(key(&i.to_string()), Duration::from_secs(1)).await else {
                panic!("new")
            };
            guard.accept();
        }
        let inner = idem.inner.lock().expect("lock");
        assert_eq!(inner.map.len(), 3);
        assert_eq!(inner.done.len(), 3);
    }

    #[test]
    fn rate_limiter_refuses_past_the_rate() {
        let rl = RateLimiter::default();
        let app = AppId::new("a").expect("app");
        for _ in 0..10 {
            rl.try_take(&app, 10, 1).expect("within rate");
        }
        let wait = rl.try_take(&app, 10, 1).expect_err("over rate");
        assert!(wait <= Duration::from_millis(150));
        assert!(rl.try_take(&app, 10, 11).is_err(), "more than a second's worth at once");
    }
}
