//! The client task: the one owner of the connection, the subscription
//! table, the pending requests and the publish queue. [`crate::Client`]
//! handles send it [`Command`]s through a bounded channel; it answers each
//! through a oneshot.
//!
//! Its life is a loop over one `select!` of three sources, each cancel-safe:
//! the command channel, the current phase's event (an attempt finishing,
//! a frame arriving, a token provider answering), and a timer set to the
//! earliest deadline (reconnect, ping, heartbeat, token refresh, rate
//! limit, resubscribe retry, close).
//!
//! Phases: `Waiting` (backoff) → `Connecting` (an attempt in flight) →
//! `Connected` → back to `Waiting` when the connection drops, or `Closing`
//! (close frame sent) → `Closed`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_proto::client::{self, client_frame, reply, reply_ok, server_frame};
use herald_proto::{Advice, ChannelName, ErrorCode};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};

use crate::backoff::Jitter;
use crate::client::PublishAck;
use crate::state::{ConnectionInfo, ConnectionState, DisconnectReason};
use crate::subscription::{Member, Message, Position, PresenceChange, SubscriptionEvent};
use crate::token::TokenSource;
use crate::transport::{BoxFuture, Connector, Inbound, Link, Outgoing};
use crate::{ClientConfig, Error};

/// Request id of the `Connect` frame; the driver numbers its own requests
/// from 1.
const CONNECT_REQUEST_ID: u64 = 0;

/// Used when the edge's `Connected` frame carries no heartbeat settings.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(25);
const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

/// What a handle asks of the client task.
pub(crate) enum Command {
    Subscribe { channel: ChannelName, reply: oneshot::Sender<Result<Subscribed, Error>> },
    Unsubscribe { channel: ChannelName, sub_id: Option<u64>, reply: Option<oneshot::Sender<Result<(), Error>>> },
    Publish { publish: client::Publish, reply: oneshot::Sender<Result<PublishAck, Error>> },
    Ping { reply: oneshot::Sender<Result<Duration, Error>> },
    Presence { channel: ChannelName, after: String, reply: oneshot::Sender<Result<MembersPage, Error>> },
    Close { reply: oneshot::Sender<()> },
}

/// A confirmed subscription, handed to the caller.
pub(crate) struct Subscribed {
    pub id: u64,
    pub rx: mpsc::Receiver<SubscriptionEvent>,
    pub history: bool,
}

/// A connection that completed the handshake.
pub(crate) struct Established {
    link: Link,
    connected: client::Connected,
    token: String,
    obtained: Instant,
    url: String,
}

enum Phase {
    Waiting { until: Instant },
    Connecting { fut: BoxFuture<Result<Established, DisconnectReason>> },
    Connected(Box<Conn>),
    Closing { link: Link, until: Instant },
    Closed,
}

struct Conn {
    link: Link,
    since: Instant,
    last_seen: Instant,
    ping_every: Duration,
    next_ping: Instant,
    dead_after: Duration,
    expires: Option<Instant>,
    refresh_at: Option<Instant>,
    refresh: Option<BoxFuture<Result<String, String>>>,
    refresh_in_flight: bool,
    max_message: usize,
    bucket: Option<Bucket>,
    /// The `Disconnect` frame, when the edge sent one.
    notice: Option<(u16, String)>,
    /// Set by `GoAway`: the edge is draining. No new publishes go out on
    /// this connection; once the ones in flight are answered (or by this
    /// instant) the client leaves for another edge.
    leave_by: Option<Instant>,
}

enum Pending {
    Subscribe { channel: ChannelName, recovering: bool },
    Unsubscribe { reply: Option<oneshot::Sender<Result<(), Error>>> },
    Publish(Queued),
    Refresh { token: String, obtained: Instant },
    Ping { sent: Instant, reply: Option<oneshot::Sender<Result<Duration, Error>>> },
    Presence { channel: ChannelName, reply: oneshot::Sender<Result<MembersPage, Error>> },
}

/// One page of a presence channel's members.
pub(crate) struct MembersPage {
    pub(crate) members: Vec<Member>,
    /// Where the next page starts; `None` after the last.
    pub(crate) next: Option<String>,
}

struct Queued {
    publish: client::Publish,
    reply: oneshot::Sender<Result<PublishAck, Error>>,
    rate_retries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChanStatus {
    /// Not sent on the current connection.
    Unsent,
    /// Sent; waiting for the reply to this request.
    Pending(u64),
    Active,
    /// Refused with a retryable error; retry then.
    RetryAt(Instant),
}

struct Sub {
    id: u64,
    tx: mpsc::Sender<SubscriptionEvent>,
    dropped: u64,
    /// Confirmed by the edge at least once (so a later confirmation is a
    /// resubscribe for it).
    confirmed: bool,
}

struct Waiter {
    id: u64,
    rx: mpsc::Receiver<SubscriptionEvent>,
    reply: oneshot::Sender<Result<Subscribed, Error>>,
}

struct Channel {
    subs: Vec<Sub>,
    waiters: Vec<Waiter>,
    status: ChanStatus,
    position: Option<Position>,
    history: bool,
    retries: u32,
}

/// A token bucket mirroring the edge's publish limit.
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Option<Self> {
        (rate > 0).then(|| {
            let burst = f64::from(burst.max(1));
            Self { rate: f64::from(rate), burst, tokens: burst, last: Instant::now() }
        })
    }

    fn refill(&mut self, now: Instant) {
        self.tokens =
            (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
    }

    fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_token_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.rate)
    }
}

enum Event {
    Command(Option<Command>),
    Attempt(Result<Established, DisconnectReason>),
    Inbound(Option<Inbound>),
    Refreshed(Result<String, String>),
    Timer,
}

pub(crate) struct Driver {
    cfg: Arc<ClientConfig>,
    connector: Arc<dyn Connector>,
    tokens: TokenSource,
    commands: mpsc::Receiver<Command>,
    accepting: bool,
    state: watch::Sender<ConnectionState>,
    events: broadcast::Sender<ConnectionState>,
    rng: Jitter,
    phase: Phase,
    url_index: usize,
    attempt: u32,
    token: Option<String>,
    /// When the cached token should no longer be used for a new connection.
    token_due: Option<Instant>,
    channels: HashMap<ChannelName, Channel>,
    next_sub_id: u64,
    requests: HashMap<u64, Pending>,
    next_request_id: u64,
    queue: VecDeque<Queued>,
    in_flight: usize,
    queue_blocked_until: Option<Instant>,
    closers: Vec<oneshot::Sender<()>>,
    close_requested: bool,
    close_deadline: Option<Instant>,
    broken: Option<DisconnectReason>,
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The instant matching a Unix-ms wall-clock time.
fn instant_of(unix_ms: i64) -> Option<Instant> {
    if unix_ms <= 0 {
        return None;
    }
    let left = unix_ms.saturating_sub(wall_ms()).max(0);
    Some(Instant::now() + Duration::from_millis(left as u64))
}

/// Why a connection ended, from the `Disconnect` frame (preferred: it
/// carries the edge's code and reason) or the close frame.
fn closed_reason(notice: Option<(u16, String)>, code: Option<u16>, reason: String) -> DisconnectReason {
    match (notice, code) {
        (Some((code, reason)), _) => DisconnectReason::Closed { code, reason },
        (None, Some(code)) => DisconnectReason::Closed { code, reason },
        (None, None) => DisconnectReason::Transport(reason),
    }
}

/// One connection attempt: token, socket, `Connect`, `Connected`.
async fn attempt(
    connector: Arc<dyn Connector>,
    url: String,
    token: BoxFuture<Result<String, String>>,
    client_name: String,
    limit: Duration,
) -> Result<Established, DisconnectReason> {
    let obtained = Instant::now();
    let token = token.await.map_err(DisconnectReason::TokenProvider)?;
    let deadline = Instant::now() + limit;
    let mut link = match timeout_at(deadline, connector.connect(&url)).await {
        Err(_) => return Err(DisconnectReason::Timeout),
        Ok(Err(e)) => return Err(DisconnectReason::Transport(e)),
        Ok(Ok(link)) => link,
    };
    let hello = client::ClientFrame {
        request_id: CONNECT_REQUEST_ID,
        kind: Some(client_frame::Kind::Connect(client::Connect { token: token.clone(), client_name })),
    };
    if link.out.send(Outgoing::frame(&hello)).await.is_err() {
        return Err(DisconnectReason::Transport("the connection closed during the handshake".into()));
    }
    let mut notice = None;
    loop {
        match timeout_at(deadline, link.inbound.recv()).await {
            Err(_) => return Err(DisconnectReason::Timeout),
            Ok(None) => return Err(DisconnectReason::Transport("the connection closed during the handshake".into())),
            Ok(Some(Inbound::Frame(client::ServerFrame { kind: Some(server_frame::Kind::Connected(connected)) }))) => {
                return Ok(Established { link, connected, token, obtained, url });
            }
            Ok(Some(Inbound::Frame(client::ServerFrame { kind: Some(server_frame::Kind::Disconnect(d)) }))) => {
                notice = Some((u16::try_from(d.code).unwrap_or(u16::MAX), d.reason));
            }
            Ok(Some(Inbound::Closed { code, reason })) => return Err(closed_reason(notice, code, reason)),
            Ok(Some(_)) => {}
        }
    }
}

async fn phase_event(phase: &mut Phase) -> Event {
    match phase {
        Phase::Connecting { fut } => Event::Attempt(fut.await),
        Phase::Connected(conn) => {
            let Conn { link, refresh, .. } = &mut **conn;
            tokio::select! {
                ev = link.inbound.recv() => Event::Inbound(ev),
                token = async {
                    match refresh.as_mut() {
                        Some(fut) => fut.await,
                        None => std::future::pending().await,
                    }
                } => Event::Refreshed(token),
            }
        }
        Phase::Closing { link, .. } => Event::Inbound(link.inbound.recv().await),
        Phase::Waiting { .. } | Phase::Closed => std::future::pending().await,
    }
}

impl Driver {
    pub(crate) fn new(
        cfg: Arc<ClientConfig>,
        connector: Arc<dyn Connector>,
        tokens: TokenSource,
        commands: mpsc::Receiver<Command>,
        state: watch::Sender<ConnectionState>,
        events: broadcast::Sender<ConnectionState>,
    ) -> Self {
        Self {
            cfg,
            connector,
            tokens,
            commands,
            accepting: true,
            state,
            events,
            rng: Jitter::new(),
            phase: Phase::Waiting { until: Instant::now() },
            url_index: 0,
            attempt: 0,
            token: None,
            token_due: None,
            channels: HashMap::new(),
            next_sub_id: 1,
            requests: HashMap::new(),
            next_request_id: CONNECT_REQUEST_ID + 1,
            queue: VecDeque::new(),
            in_flight: 0,
            queue_blocked_until: None,
            closers: Vec::new(),
            close_requested: false,
            close_deadline: None,
            broken: None,
        }
    }

    /// Runs until the client is closed.
    pub(crate) async fn run(mut self) {
        self.start_attempt();
        loop {
            if matches!(self.phase, Phase::Closed) {
                break;
            }
            let deadline = self.next_deadline();
            let accepting = self.accepting;
            let event = tokio::select! {
                cmd = self.commands.recv(), if accepting => Event::Command(cmd),
                ev = phase_event(&mut self.phase) => ev,
                () = sleep_until(deadline) => Event::Timer,
            };
            match event {
                Event::Command(Some(cmd)) => self.on_command(cmd).await,
                Event::Command(None) => {
                    // Every handle is gone: close gracefully.
                    self.accepting = false;
                    self.request_close(None).await;
                }
                Event::Attempt(Ok(established)) => self.on_connected(established).await,
                Event::Attempt(Err(reason)) => self.on_lost(reason, None),
                Event::Inbound(ev) => self.on_inbound(ev).await,
                Event::Refreshed(token) => self.on_refreshed(token).await,
                Event::Timer => self.on_timer().await,
            }
            if let Some(reason) = self.broken.take()
                && matches!(self.phase, Phase::Connected(_))
            {
                let since = self.conn().map(|c| c.since);
                self.on_lost(reason, since);
            }
            if self.close_requested {
                self.progress_close().await;
            } else {
                self.progress_move();
            }
        }
        // Answer whatever is still queued for the task.
        let error = self.final_error();
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            fail_command(cmd, &error);
        }
    }

    fn final_error(&self) -> Error {
        match &*self.state.borrow() {
            ConnectionState::Closed { error: Some(e) } => e.clone(),
            _ => Error::Closed,
        }
    }

    fn conn(&self) -> Option<&Conn> {
        match &self.phase {
            Phase::Connected(c) => Some(c),
            _ => None,
        }
    }

    fn conn_mut(&mut self) -> Option<&mut Conn> {
        match &mut self.phase {
            Phase::Connected(c) => Some(c),
            _ => None,
        }
    }

    fn set_state(&self, state: ConnectionState) {
        match &state {
            ConnectionState::Connected(info) => {
                tracing::info!(url = %info.url, connection = %info.connection_id, edge = %info.edge_id, "connected");
            }
            ConnectionState::Disconnected { reason } => tracing::info!(%reason, "disconnected"),
            ConnectionState::Reconnecting { attempt, delay } => {
                tracing::info!(attempt, delay_ms = delay.as_millis() as u64, "reconnecting");
            }
            ConnectionState::Connecting { url, attempt } => tracing::debug!(%url, attempt, "connecting"),
            ConnectionState::Closed { error } => match error {
                Some(e) => tracing::warn!(error = %e, "client stopped"),
                None => tracing::info!("client closed"),
            },
        }
        let _ = self.events.send(state.clone());
        self.state.send_replace(state);
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(86_400);
        let mut at = far;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t
                && t < at
            {
                at = t;
            }
        };
        match &self.phase {
            Phase::Waiting { until } | Phase::Closing { until, .. } => consider(Some(*until)),
            Phase::Connected(conn) => {
                consider(Some(conn.last_seen + conn.dead_after));
                consider(Some(conn.next_ping));
                if conn.refresh.is_none() && !conn.refresh_in_flight {
                    consider(conn.refresh_at);
                }
                for ch in self.channels.values() {
                    if let ChanStatus::RetryAt(t) = ch.status {
                        consider(Some(t));
                    }
                }
                consider(conn.leave_by);
                if !self.queue.is_empty()
                    && self.in_flight < self.cfg.max_in_flight_publishes
                    && conn.leave_by.is_none()
                {
                    consider(self.queue_blocked_until);
                    if let Some(bucket) = &conn.bucket {
                        consider(Some(bucket.next_token_at()));
                    }
                }
                if self.close_requested {
                    consider(self.close_deadline);
                }
            }
            Phase::Connecting { .. } | Phase::Closed => {}
        }
        at
    }

    // ----- connecting ------------------------------------------------------------

    fn start_attempt(&mut self) {
        let urls = &self.cfg.urls;
        let url = urls[self.url_index % urls.len()].clone();
        self.url_index = self.url_index.wrapping_add(1);
        self.set_state(ConnectionState::Connecting { url: url.clone(), attempt: self.attempt });
        let fresh_needed = self.token.is_none() || self.token_due.is_some_and(|due| Instant::now() >= due);
        let token: BoxFuture<Result<String, String>> = match (&self.token, fresh_needed) {
            (Some(token), false) => {
                let token = token.clone();
                Box::pin(async move { Ok(token) })
            }
            _ => self.tokens.fetch(self.cfg.attempt_timeout),
        };
        let fut = attempt(self.connector.clone(), url, token, self.cfg.client_name.clone(), self.cfg.attempt_timeout);
        self.phase = Phase::Connecting { fut: Box::pin(fut) };
    }

    async fn on_connected(&mut self, est: Established) {
        let Established { link, connected, token, obtained, url } = est;
        let now = Instant::now();
        let interval = match connected.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT_INTERVAL,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let server_timeout = match connected.heartbeat_timeout_ms {
            0 => DEFAULT_HEARTBEAT_TIMEOUT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let ping_every = self.cfg.ping_interval.unwrap_or(interval);
        let dead_after = self.cfg.heartbeat_timeout.unwrap_or(server_timeout);
        let expires = instant_of(connected.token_expires_at_ms);
        let refresh_at = expires.map(|exp| self.refresh_point(obtained, exp));
        self.token = Some(token);
        self.token_due = refresh_at;
        let refresh_at = if self.tokens.can_refresh() { refresh_at } else { None };
        let limits = connected.limits.unwrap_or_default();
        let max_message = match limits.max_message_bytes {
            0 => usize::MAX,
            n => n as usize,
        };
        let info = ConnectionInfo {
            url,
            connection_id: connected.connection_id,
            client_id: connected.client_id,
            edge_id: connected.edge_id,
            token_expires_at_ms: connected.token_expires_at_ms,
        };
        self.phase = Phase::Connected(Box::new(Conn {
            link,
            since: now,
            last_seen: now,
            ping_every,
            next_ping: now + ping_every,
            dead_after,
            expires,
            refresh_at,
            refresh: None,
            refresh_in_flight: false,
            max_message,
            bucket: Bucket::new(limits.publish_rate_per_sec, limits.publish_burst),
            notice: None,
            leave_by: None,
        }));
        self.queue_blocked_until = None;
        self.set_state(ConnectionState::Connected(info));
        // Restore every subscription, then let the queued publishes go, in
        // that order: the edge handles one connection's requests in order,
        // so a queued publish reaches the client's own subscriptions.
        let channels: Vec<ChannelName> = self
            .channels
            .iter()
            .filter(|(_, ch)| matches!(ch.status, ChanStatus::Unsent | ChanStatus::RetryAt(_)))
            .map(|(name, _)| name.clone())
            .collect();
        for channel in channels {
            self.send_subscribe(&channel).await;
        }
        self.drain_queue().await;
    }

    /// When to refresh a token obtained at `obtained` that expires at `exp`.
    fn refresh_point(&self, obtained: Instant, exp: Instant) -> Instant {
        let life = exp.saturating_duration_since(obtained);
        obtained + life.mul_f64(self.cfg.token_refresh_at)
    }

    /// The connection (or an attempt) ended: fail or keep what was pending,
    /// then reconnect, or stop, as the close code advises.
    fn on_lost(&mut self, reason: DisconnectReason, since: Option<Instant>) {
        self.phase = Phase::Waiting { until: Instant::now() };
        self.set_state(ConnectionState::Disconnected { reason: reason.clone() });
        let mut resend: Vec<(u64, Queued)> = Vec::new();
        for (id, pending) in self.requests.drain() {
            match pending {
                Pending::Publish(q) if q.publish.idempotency_id.is_some() => resend.push((id, q)),
                Pending::Publish(q) => {
                    let _ = q.reply.send(Err(Error::ConnectionLost));
                }
                Pending::Unsubscribe { reply } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
                Pending::Ping { reply, .. } => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(Error::ConnectionLost));
                    }
                }
                Pending::Presence { reply, .. } => {
                    let _ = reply.send(Err(Error::ConnectionLost));
                }
                Pending::Subscribe { .. } | Pending::Refresh { .. } => {}
            }
        }
        self.in_flight = 0;
        resend.sort_by_key(|(id, _)| *id);
        for (_, q) in resend.into_iter().rev() {
            self.queue.push_front(q);
        }
        for ch in self.channels.values_mut() {
            ch.status = ChanStatus::Unsent;
        }
        if self.close_requested {
            self.finish_close(None);
            return;
        }
        let terminal = |code: Option<u16>, reason: &DisconnectReason| Error::Terminal {
            code: code.unwrap_or(1000),
            reason: match reason {
                DisconnectReason::Closed { reason, .. } => reason.clone(),
                other => other.to_string(),
            },
        };
        match reason.advice() {
            Advice::Terminal => {
                let error = terminal(reason.code(), &reason);
                self.finish_close(Some(error));
            }
            Advice::RefreshToken if !self.tokens.can_refresh() => {
                let error = terminal(reason.code(), &reason);
                self.finish_close(Some(error));
            }
            Advice::RefreshToken => {
                self.token = None;
                self.token_due = None;
                self.schedule_backoff(since, &reason);
            }
            Advice::ReconnectNow => {
                self.attempt = 0;
                let delay = self.cfg.backoff.drain_delay(self.rng.unit());
                self.set_state(ConnectionState::Reconnecting { attempt: 1, delay });
                self.phase = Phase::Waiting { until: Instant::now() + delay };
            }
            Advice::Reconnect => self.schedule_backoff(since, &reason),
        }
    }

    fn schedule_backoff(&mut self, since: Option<Instant>, reason: &DisconnectReason) {
        let backoff = &self.cfg.backoff;
        if since.is_some_and(|s| s.elapsed() >= backoff.stable_after) {
            self.attempt = 0;
        }
        if let Some(max) = backoff.max_attempts
            && self.attempt >= max
        {
            let error = Error::GaveUp { attempts: self.attempt, last: reason.to_string() };
            self.finish_close(Some(error));
            return;
        }
        self.attempt += 1;
        let delay = backoff.delay(self.attempt, self.rng.unit());
        self.set_state(ConnectionState::Reconnecting { attempt: self.attempt, delay });
        self.phase = Phase::Waiting { until: Instant::now() + delay };
    }

    // ----- closing ---------------------------------------------------------------

    async fn request_close(&mut self, reply: Option<oneshot::Sender<()>>) {
        if let Some(reply) = reply {
            self.closers.push(reply);
        }
        if !self.close_requested {
            self.close_requested = true;
            self.close_deadline = Some(Instant::now() + self.cfg.close_timeout);
            // Publishes that never went out fail now when there is no
            // connection to send them on.
            if !matches!(self.phase, Phase::Connected(_)) {
                self.finish_close(None);
            }
        }
    }

    /// While closing: once nothing is left to send (or the close timeout
    /// passed), send the close frame.
    async fn progress_close(&mut self) {
        let Phase::Connected(_) = &self.phase else {
            if matches!(self.phase, Phase::Waiting { .. } | Phase::Connecting { .. }) {
                self.finish_close(None);
            }
            return;
        };
        let publishes_left = !self.queue.is_empty() || self.requests.values().any(|p| matches!(p, Pending::Publish(_)));
        let overdue = self.close_deadline.is_some_and(|d| Instant::now() >= d);
        if publishes_left && !overdue {
            return;
        }
        let Phase::Connected(conn) = std::mem::replace(&mut self.phase, Phase::Closed) else { return };
        let conn = *conn;
        let _ = conn.link.out.try_send(Outgoing::Close(1000, String::new()));
        let until = Instant::now() + Duration::from_secs(1).min(self.cfg.close_timeout.max(Duration::from_millis(100)));
        self.phase = Phase::Closing { link: conn.link, until };
    }

    /// After `GoAway`: once every request on the connection is answered (or
    /// the time to leave came), close it and reconnect at once elsewhere.
    /// Queued publishes wait for the next connection.
    fn progress_move(&mut self) {
        let Phase::Connected(conn) = &self.phase else { return };
        let Some(leave_by) = conn.leave_by else { return };
        if !self.requests.is_empty() && Instant::now() < leave_by {
            return;
        }
        let since = conn.since;
        let Phase::Connected(conn) = std::mem::replace(&mut self.phase, Phase::Closed) else { return };
        let mut link = conn.link;
        // The close goes out and the edge answers it without holding up the
        // reconnect.
        let _ = link.out.try_send(Outgoing::Close(1000, String::new()));
        tokio::spawn(async move {
            let _ = timeout(Duration::from_secs(1), async { while link.inbound.recv().await.is_some() {} }).await;
        });
        self.on_lost(DisconnectReason::Moved, Some(since));
    }

    /// Stops for good: everything pending fails with `error` (or
    /// [`Error::Closed`]), subscriptions end.
    fn finish_close(&mut self, error: Option<Error>) {
        self.phase = Phase::Closed;
        let err = error.clone().unwrap_or(Error::Closed);
        for (_, pending) in self.requests.drain() {
            match pending {
                Pending::Publish(q) => {
                    let _ = q.reply.send(Err(err.clone()));
                }
                Pending::Unsubscribe { reply: Some(reply) } => {
                    let _ = reply.send(Ok(()));
                }
                Pending::Ping { reply: Some(reply), .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                Pending::Presence { reply, .. } => {
                    let _ = reply.send(Err(err.clone()));
                }
                _ => {}
            }
        }
        for q in self.queue.drain(..) {
            let _ = q.reply.send(Err(err.clone()));
        }
        for (_, ch) in self.channels.drain() {
            for sub in ch.subs {
                let _ = sub.tx.try_send(SubscriptionEvent::Ended(err.clone()));
            }
            for w in ch.waiters {
                let _ = w.reply.send(Err(err.clone()));
            }
        }
        self.set_state(ConnectionState::Closed { error });
        for closer in self.closers.drain(..) {
            let _ = closer.send(());
        }
    }

    // ----- sending ---------------------------------------------------------------

    /// Sends a request on the current connection and remembers it; gives the
    /// pending entry back when there is no usable connection.
    async fn send(&mut self, kind: client_frame::Kind, pending: Pending) -> Result<u64, Pending> {
        if self.broken.is_some() {
            return Err(pending);
        }
        let write_timeout = self.cfg.write_timeout;
        let id = self.next_request_id;
        let Some(conn) = self.conn_mut() else { return Err(pending) };
        let frame = client::ClientFrame { request_id: id, kind: Some(kind) };
        match timeout(write_timeout, conn.link.out.send(Outgoing::frame(&frame))).await {
            Ok(Ok(())) => {
                self.next_request_id += 1;
                self.requests.insert(id, pending);
                Ok(id)
            }
            Ok(Err(_)) => {
                self.broken = Some(DisconnectReason::Transport("the connection's writer stopped".into()));
                Err(pending)
            }
            Err(_) => {
                self.broken =
                    Some(DisconnectReason::Transport(format!("the socket accepted nothing for {write_timeout:?}")));
                Err(pending)
            }
        }
    }

    async fn send_subscribe(&mut self, channel: &ChannelName) {
        let Some(ch) = self.channels.get(channel) else { return };
        let recover_from = ch.position.clone();
        let recovering = recover_from.is_some();
        let kind = client_frame::Kind::Subscribe(client::Subscribe {
            channel: channel.as_str().to_owned(),
            recover_from: recover_from.map(|p| client::StreamPosition { seq: p.seq, epoch: p.epoch }),
        });
        let pending = Pending::Subscribe { channel: channel.clone(), recovering };
        if let Ok(id) = self.send(kind, pending).await
            && let Some(ch) = self.channels.get_mut(channel)
        {
            ch.status = ChanStatus::Pending(id);
        }
    }

    /// Sends queued publishes while the connection, the in-flight bound and
    /// the rate limit allow, in queue order.
    async fn drain_queue(&mut self) {
        loop {
            let now = Instant::now();
            if self.in_flight >= self.cfg.max_in_flight_publishes || self.queue_blocked_until.is_some_and(|t| now < t) {
                return;
            }
            let Some(conn) = self.conn_mut() else { return };
            if conn.leave_by.is_some() {
                return;
            }
            let max_message = conn.max_message;
            let Some(front) = self.queue.front() else { return };
            if front.reply.is_closed() {
                // The caller gave up (timed out or dropped the call).
                self.queue.pop_front();
                continue;
            }
            if front.publish.data.len() > max_message {
                if let Some(q) = self.queue.pop_front() {
                    let message = format!("data is {} bytes; the edge accepts {max_message}", q.publish.data.len());
                    let _ = q.reply.send(Err(Error::Rejected { code: ErrorCode::TooLarge, message, retryable: false }));
                }
                continue;
            }
            let Some(conn) = self.conn_mut() else { return };
            if let Some(bucket) = &mut conn.bucket
                && !bucket.take(now)
            {
                return;
            }
            let Some(q) = self.queue.pop_front() else { return };
            let kind = client_frame::Kind::Publish(q.publish.clone());
            match self.send(kind, Pending::Publish(q)).await {
                Ok(_) => self.in_flight += 1,
                Err(Pending::Publish(q)) => {
                    self.queue.push_front(q);
                    return;
                }
                Err(_) => return,
            }
        }
    }

    // ----- commands --------------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) {
        if let Command::Close { reply } = cmd {
            self.request_close(Some(reply)).await;
            return;
        }
        if self.close_requested {
            fail_command(cmd, &Error::Closed);
            return;
        }
        match cmd {
            Command::Subscribe { channel, reply } => self.subscribe(channel, reply).await,
            Command::Unsubscribe { channel, sub_id, reply } => self.unsubscribe(&channel, sub_id, reply).await,
            Command::Publish { publish, reply } => {
                if self.queue.len() >= self.cfg.publish_queue_capacity {
                    // Publishes whose callers gave up do not count.
                    self.queue.retain(|q| !q.reply.is_closed());
                }
                if self.queue.len() >= self.cfg.publish_queue_capacity {
                    let _ = reply.send(Err(Error::QueueFull { capacity: self.cfg.publish_queue_capacity }));
                    return;
                }
                self.queue.push_back(Queued { publish, reply, rate_retries: 0 });
                self.drain_queue().await;
            }
            Command::Ping { reply } => {
                let pending = Pending::Ping { sent: Instant::now(), reply: Some(reply) };
                if let Err(Pending::Ping { reply: Some(reply), .. }) =
                    self.send(client_frame::Kind::Ping(client::Ping {}), pending).await
                {
                    let _ = reply.send(Err(Error::NotConnected));
                }
            }
            Command::Presence { channel, after, reply } => {
                let kind = client_frame::Kind::PresenceQuery(client::PresenceQuery {
                    channel: channel.to_string(),
                    after,
                    limit: 0,
                });
                if let Err(Pending::Presence { reply, .. }) =
                    self.send(kind, Pending::Presence { channel, reply }).await
                {
                    let _ = reply.send(Err(Error::NotConnected));
                }
            }
            Command::Close { reply } => self.request_close(Some(reply)).await,
        }
    }

    async fn subscribe(&mut self, channel: ChannelName, reply: oneshot::Sender<Result<Subscribed, Error>>) {
        let (tx, rx) = mpsc::channel(self.cfg.subscription_buffer);
        let id = self.next_sub_id;
        self.next_sub_id += 1;
        let ch = self.channels.entry(channel.clone()).or_insert_with(|| Channel {
            subs: Vec::new(),
            waiters: Vec::new(),
            status: ChanStatus::Unsent,
            position: None,
            history: false,
            retries: 0,
        });
        if ch.status == ChanStatus::Active {
            ch.subs.push(Sub { id, tx, dropped: 0, confirmed: true });
            if reply.send(Ok(Subscribed { id, rx, history: ch.history })).is_err() {
                self.remove_sub(&channel, id).await;
            }
            return;
        }
        ch.subs.push(Sub { id, tx, dropped: 0, confirmed: false });
        ch.waiters.push(Waiter { id, rx, reply });
        if ch.status == ChanStatus::Unsent && self.conn().is_some() {
            self.send_subscribe(&channel).await;
        }
    }

    async fn unsubscribe(
        &mut self,
        channel: &ChannelName,
        sub_id: Option<u64>,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        let Some(ch) = self.channels.get_mut(channel) else {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
            return;
        };
        match sub_id {
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
        if ch.subs.is_empty() && ch.waiters.is_empty() {
            self.leave(channel, reply).await;
        } else if let Some(reply) = reply {
            let _ = reply.send(Ok(()));
        }
    }

    /// Forgets a channel and tells the edge, when it knows of it.
    async fn leave(&mut self, channel: &ChannelName, reply: Option<oneshot::Sender<Result<(), Error>>>) {
        let Some(ch) = self.channels.remove(channel) else { return };
        let told = matches!(ch.status, ChanStatus::Pending(_) | ChanStatus::Active);
        if told && self.conn().is_some() {
            let kind = client_frame::Kind::Unsubscribe(client::Unsubscribe { channel: channel.as_str().to_owned() });
            if let Err(Pending::Unsubscribe { reply: Some(reply) }) =
                self.send(kind, Pending::Unsubscribe { reply }).await
            {
                let _ = reply.send(Ok(()));
            }
        } else if let Some(reply) = reply {
            let _ = reply.send(Ok(()));
        }
    }

    async fn remove_sub(&mut self, channel: &ChannelName, id: u64) {
        self.unsubscribe(channel, Some(id), None).await;
    }

    // ----- inbound ---------------------------------------------------------------

    async fn on_inbound(&mut self, ev: Option<Inbound>) {
        let now = Instant::now();
        if let Some(conn) = self.conn_mut() {
            conn.last_seen = now;
        }
        match ev {
            None => self.connection_ended(None, "the connection closed".into()),
            Some(Inbound::Life) => {}
            Some(Inbound::Closed { code, reason }) => self.connection_ended(code, reason),
            Some(Inbound::Frame(frame)) => match frame.kind {
                Some(server_frame::Kind::Reply(r)) => self.on_reply(r).await,
                Some(server_frame::Kind::Message(m)) => self.deliver(m).await,
                Some(server_frame::Kind::PresenceEvent(p)) => self.presence_event(p).await,
                Some(server_frame::Kind::Disconnect(d)) => {
                    let code = u16::try_from(d.code).unwrap_or(u16::MAX);
                    tracing::debug!(code, reason = %d.reason, "the edge is closing the connection");
                    if let Some(conn) = self.conn_mut() {
                        conn.notice = Some((code, d.reason));
                    }
                }
                Some(server_frame::Kind::GoAway(g)) => {
                    let within = Duration::from_millis(u64::from(g.within_ms));
                    tracing::info!(within_ms = g.within_ms, "the edge is draining; moving once requests are answered");
                    if let Some(conn) = self.conn_mut() {
                        // Leave a margin before the edge's own close.
                        conn.leave_by.get_or_insert(now + within.mul_f64(0.8));
                    }
                }
                Some(server_frame::Kind::Connected(_)) | None => {}
            },
        }
    }

    fn connection_ended(&mut self, code: Option<u16>, reason: String) {
        match &mut self.phase {
            Phase::Closing { .. } => self.finish_close(None),
            Phase::Connected(conn) => {
                let notice = conn.notice.take();
                self.broken = Some(closed_reason(notice, code, reason));
            }
            _ => {}
        }
    }

    async fn on_reply(&mut self, r: client::Reply) {
        let Some(pending) = self.requests.remove(&r.request_id) else {
            if r.request_id != CONNECT_REQUEST_ID {
                tracing::debug!(request = r.request_id, "reply to an unknown request");
            }
            return;
        };
        let result = match r.result {
            Some(reply::Result::Ok(ok)) => Ok(ok.value),
            Some(reply::Result::Error(e)) => Err(e),
            None => Ok(None),
        };
        match pending {
            Pending::Publish(q) => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.publish_answered(q, result);
                self.drain_queue().await;
            }
            Pending::Subscribe { channel, recovering } => {
                self.subscribe_answered(&channel, r.request_id, recovering, result).await;
            }
            Pending::Unsubscribe { reply } => {
                if let Some(reply) = reply {
                    let outcome = match result {
                        Ok(_) => Ok(()),
                        Err(e) if e.code == ErrorCode::NotSubscribed.number() => Ok(()),
                        Err(e) => Err(Error::rejected(e.code, e.message, e.retryable)),
                    };
                    let _ = reply.send(outcome);
                }
            }
            Pending::Refresh { token, obtained } => self.refresh_answered(token, obtained, result),
            Pending::Ping { sent, reply } => {
                if let Some(reply) = reply {
                    let outcome = match result {
                        Ok(_) => Ok(sent.elapsed()),
                        Err(e) => Err(Error::rejected(e.code, e.message, e.retryable)),
                    };
                    let _ = reply.send(outcome);
                }
            }
            Pending::Presence { channel, reply } => {
                let outcome = match result {
                    Ok(Some(reply_ok::Value::Presence(p))) => Ok(MembersPage {
                        members: p
                            .members
                            .into_iter()
                            .map(|m| Member { client_id: m.client_id, info: m.info })
                            .collect(),
                        next: Some(p.next).filter(|n| !n.is_empty()),
                    }),
                    Ok(_) => Ok(MembersPage { members: Vec::new(), next: None }),
                    Err(e) => Err(Error::rejected(e.code, e.message, e.retryable)),
                };
                tracing::trace!(%channel, "presence answered");
                let _ = reply.send(outcome);
            }
        }
    }

    fn publish_answered(&mut self, mut q: Queued, result: Result<Option<reply_ok::Value>, client::ReplyError>) {
        match result {
            Ok(value) => {
                let ack = match value {
                    Some(reply_ok::Value::Published(p)) => {
                        PublishAck { id: p.id, position: p.position.map(|p| Position { seq: p.seq, epoch: p.epoch }) }
                    }
                    _ => PublishAck { id: String::new(), position: None },
                };
                let _ = q.reply.send(Ok(ack));
            }
            Err(e) if e.code == ErrorCode::RateLimited.number() && q.rate_retries < self.cfg.rate_limited_retries => {
                // Not published: wait for the edge's bucket and try again, in
                // front of everything queued after it.
                q.rate_retries += 1;
                let pause = match self.conn().and_then(|c| c.bucket.as_ref()) {
                    Some(b) => Duration::from_secs_f64(1.0 / b.rate),
                    None => Duration::from_millis(100),
                };
                tracing::debug!(retry = q.rate_retries, pause_ms = pause.as_millis() as u64, "publish rate limited");
                self.queue_blocked_until = Some(Instant::now() + pause);
                if let Some(bucket) = self.conn_mut().and_then(|c| c.bucket.as_mut()) {
                    bucket.tokens = 0.0;
                    bucket.last = Instant::now();
                }
                self.queue.push_front(q);
            }
            Err(e) => {
                let _ = q.reply.send(Err(Error::rejected(e.code, e.message, e.retryable)));
            }
        }
    }

    async fn subscribe_answered(
        &mut self,
        channel: &ChannelName,
        request_id: u64,
        recovering: bool,
        result: Result<Option<reply_ok::Value>, client::ReplyError>,
    ) {
        let retry_delay = {
            let Some(ch) = self.channels.get(channel) else { return };
            self.cfg.backoff.delay(ch.retries + 1, self.rng.unit())
        };
        let Some(ch) = self.channels.get_mut(channel) else { return };
        if ch.status != ChanStatus::Pending(request_id) {
            return;
        }
        match result {
            Ok(value) => {
                let res = match value {
                    Some(reply_ok::Value::Subscribed(s)) => s,
                    _ => client::SubscribeResult::default(),
                };
                ch.status = ChanStatus::Active;
                ch.history = res.history;
                ch.retries = 0;
                let server_position = res.position.map(|p| Position { seq: p.seq, epoch: p.epoch });
                if ch.position.is_none() || (recovering && !res.recovered) {
                    ch.position = server_position.filter(|_| res.history);
                }
                let recovered = recovering && res.recovered;
                for sub in &mut ch.subs {
                    if sub.confirmed {
                        push(sub, SubscriptionEvent::Resubscribed { recovered });
                    }
                }
                if !recovered && ch.subs.iter().any(|s| s.confirmed) {
                    tracing::info!(%channel, history = res.history, "resubscribed without recovery");
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
                for id in gone {
                    self.remove_sub(channel, id).await;
                }
            }
            Err(e) => {
                let error = Error::rejected(e.code, e.message, e.retryable);
                let confirmed = ch.subs.iter().any(|s| s.confirmed);
                if confirmed && e.retryable {
                    ch.retries += 1;
                    ch.status = ChanStatus::RetryAt(Instant::now() + retry_delay);
                    tracing::warn!(%channel, %error, "resubscribe refused; retrying");
                    // New subscribers learn of the failure now.
                    let waiting: Vec<u64> = ch.waiters.iter().map(|w| w.id).collect();
                    for w in ch.waiters.drain(..) {
                        let _ = w.reply.send(Err(error.clone()));
                    }
                    ch.subs.retain(|s| !waiting.contains(&s.id));
                    return;
                }
                tracing::warn!(%channel, %error, "subscribe refused");
                if let Some(ch) = self.channels.remove(channel) {
                    for sub in ch.subs {
                        let _ = sub.tx.try_send(SubscriptionEvent::Ended(error.clone()));
                    }
                    for w in ch.waiters {
                        let _ = w.reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    async fn deliver(&mut self, m: client::Message) {
        let Ok(channel) = ChannelName::new(&m.channel) else {
            tracing::debug!(channel = %m.channel, "message for an invalid channel name");
            return;
        };
        let Some(ch) = self.channels.get_mut(&channel) else {
            tracing::trace!(%channel, "message for a channel no longer subscribed");
            return;
        };
        let position = if m.seq > 0 {
            if let Some(last) = &ch.position
                && last.epoch == m.epoch
                && m.seq <= last.seq
            {
                tracing::debug!(%channel, seq = m.seq, "duplicate message dropped");
                return;
            }
            let p = Position { seq: m.seq, epoch: m.epoch };
            ch.position = Some(p.clone());
            Some(p)
        } else {
            None
        };
        let message = Message {
            channel: channel.clone(),
            data: m.data,
            event: m.event,
            position,
            publisher: (!m.publisher.is_empty()).then_some(m.publisher),
            timestamp_ms: m.timestamp_ms,
            id: m.id,
        };
        let mut closed = false;
        for sub in &mut ch.subs {
            closed |= !push(sub, SubscriptionEvent::Message(message.clone()));
        }
        if closed {
            self.prune(&channel).await;
        }
    }

    async fn presence_event(&mut self, p: client::PresenceEvent) {
        let Ok(channel) = ChannelName::new(&p.channel) else { return };
        let Some(ch) = self.channels.get_mut(&channel) else { return };
        let Some(member) = p.member else { return };
        let joined = p.kind == client::presence_event::Kind::Join as i32;
        let change = PresenceChange { joined, member: Member { client_id: member.client_id, info: member.info } };
        let mut closed = false;
        for sub in &mut ch.subs {
            closed |= !push(sub, SubscriptionEvent::Presence(change.clone()));
        }
        if closed {
            self.prune(&channel).await;
        }
    }

    /// Drops subscriptions whose reader is gone; leaves the channel when
    /// none is left.
    async fn prune(&mut self, channel: &ChannelName) {
        let Some(ch) = self.channels.get_mut(channel) else { return };
        let waiting: Vec<u64> = ch.waiters.iter().map(|w| w.id).collect();
        ch.subs.retain(|s| !s.tx.is_closed() || waiting.contains(&s.id));
        if ch.subs.is_empty() && ch.waiters.is_empty() {
            self.leave(channel, None).await;
        }
    }

    // ----- tokens ----------------------------------------------------------------

    async fn on_refreshed(&mut self, token: Result<String, String>) {
        let Some(conn) = self.conn_mut() else { return };
        conn.refresh = None;
        match token {
            Ok(token) => {
                conn.refresh_in_flight = true;
                let kind = client_frame::Kind::RefreshToken(client::RefreshToken { token: token.clone() });
                let pending = Pending::Refresh { token, obtained: Instant::now() };
                if self.send(kind, pending).await.is_err()
                    && let Some(conn) = self.conn_mut()
                {
                    conn.refresh_in_flight = false;
                }
            }
            Err(e) => {
                let delay = refresh_retry_delay(conn.expires);
                tracing::warn!(error = %e, retry_ms = delay.as_millis() as u64, "token provider failed; retrying");
                conn.refresh_at = Some(Instant::now() + delay);
            }
        }
    }

    fn refresh_answered(
        &mut self,
        token: String,
        obtained: Instant,
        result: Result<Option<reply_ok::Value>, client::ReplyError>,
    ) {
        let fraction = self.cfg.token_refresh_at;
        match result {
            Ok(value) => {
                let exp_ms = match value {
                    Some(reply_ok::Value::Refreshed(r)) => r.token_expires_at_ms,
                    _ => 0,
                };
                let expires = instant_of(exp_ms);
                let due = expires.map(|exp| obtained + exp.saturating_duration_since(obtained).mul_f64(fraction));
                self.token = Some(token);
                self.token_due = due;
                if let Some(conn) = self.conn_mut() {
                    conn.refresh_in_flight = false;
                    if let (Some(new), Some(old)) = (expires, conn.expires)
                        && new <= old
                    {
                        tracing::warn!(
                            "the token provider returned a token that expires no later than the current one"
                        );
                    }
                    conn.expires = expires.or(conn.expires);
                    // Never sooner than a second from now, so a provider that
                    // hands out short tokens cannot spin the client.
                    conn.refresh_at = due.map(|d| d.max(Instant::now() + Duration::from_secs(1)));
                }
                tracing::debug!(expires_at_ms = exp_ms, "token refreshed");
            }
            Err(e) => {
                let Some(conn) = self.conn_mut() else { return };
                conn.refresh_in_flight = false;
                let delay = refresh_retry_delay(conn.expires);
                tracing::warn!(code = e.code, message = %e.message, retry_ms = delay.as_millis() as u64, "token refresh refused; retrying");
                conn.refresh_at = Some(Instant::now() + delay);
            }
        }
    }

    // ----- timers ----------------------------------------------------------------

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let (ping_due, refresh_due) = match &mut self.phase {
            Phase::Waiting { until } => {
                if now >= *until {
                    self.start_attempt();
                }
                return;
            }
            Phase::Closing { until, .. } => {
                if now >= *until {
                    self.finish_close(None);
                }
                return;
            }
            Phase::Connecting { .. } | Phase::Closed => return,
            Phase::Connected(conn) => {
                if now >= conn.last_seen + conn.dead_after {
                    tracing::warn!(silent_ms = (now - conn.last_seen).as_millis() as u64, "no heartbeat from the edge");
                    self.broken = Some(DisconnectReason::HeartbeatTimeout);
                    return;
                }
                let ping_due = now >= conn.next_ping;
                if ping_due {
                    conn.next_ping = now + conn.ping_every;
                }
                let refresh_due =
                    conn.refresh.is_none() && !conn.refresh_in_flight && conn.refresh_at.is_some_and(|t| now >= t);
                if refresh_due {
                    conn.refresh_at = None;
                    conn.refresh = Some(self.tokens.fetch(self.cfg.attempt_timeout));
                }
                (ping_due, refresh_due)
            }
        };
        if refresh_due {
            tracing::debug!("refreshing the token");
        }
        if ping_due {
            let pending = Pending::Ping { sent: now, reply: None };
            let _ = self.send(client_frame::Kind::Ping(client::Ping {}), pending).await;
        }
        let retry: Vec<ChannelName> = self
            .channels
            .iter()
            .filter(|(_, ch)| matches!(ch.status, ChanStatus::RetryAt(t) if now >= t))
            .map(|(name, _)| name.clone())
            .collect();
        for channel in retry {
            self.send_subscribe(&channel).await;
        }
        if self.queue_blocked_until.is_some_and(|t| now >= t) {
            self.queue_blocked_until = None;
        }
        self.drain_queue().await;
    }
}

/// How long to wait before retrying a failed token refresh: a quarter of
/// the time left, between 250 ms and 10 s.
fn refresh_retry_delay(expires: Option<Instant>) -> Duration {
    let left = expires.map_or(Duration::from_secs(10), |e| e.saturating_duration_since(Instant::now()));
    (left / 4).clamp(Duration::from_millis(250), Duration::from_secs(10))
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

fn fail_command(cmd: Command, error: &Error) {
    match cmd {
        Command::Subscribe { reply, .. } => {
            let _ = reply.send(Err(error.clone()));
        }
        Command::Unsubscribe { reply, .. } => {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(()));
            }
        }
        Command::Publish { reply, .. } => {
            let _ = reply.send(Err(error.clone()));
        }
        Command::Ping { reply } => {
            let _ = reply.send(Err(error.clone()));
        }
        Command::Presence { reply, .. } => {
            let _ = reply.send(Err(error.clone()));
        }
        Command::Close { reply } => {
            let _ = reply.send(());
        }
    }
}
