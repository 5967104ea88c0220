//! The client task: the one owner of the connection, the subscription
//! registry, the pending requests and the publish queue. [`crate::Client`]
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
//!
//! # Layout
//!
//! - this module: [`Driver`], its loop, the commands, the timers and
//!   everything that sends a request.
//! - `lifecycle`: connecting, losing a connection (reconnect with backoff,
//!   or stop as the close code advises), moving after `GoAway`, closing.
//! - `frames`: what arrives from the edge: replies, messages, presence
//!   events, `Disconnect`, `GoAway`.
//! - `connection`: the handshake and the state of one open connection.
//! - `subscriptions`: the subscription registry.
//! - `requests`: the requests in flight and their answers.
//! - `publishes`: the publish queue and its rate limit.
//! - `user_events`: the readers of user events.
//! - Gap-free recovery lives in [`crate::recovery`].

mod connection;
mod frames;
mod lifecycle;
mod publishes;
mod requests;
mod subscriptions;
mod user_events;

use std::sync::Arc;
use std::time::Duration;

use herald_proto::ChannelName;
use herald_proto::client::{self, client_frame};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::{Instant, sleep_until, timeout};

use self::connection::{Conn, Established};
use self::publishes::{Bucket, Next, Publishes};
use self::requests::{Pending, Requests};
use self::subscriptions::{Added, Removed, Subscriptions};
use self::user_events::UserEventReaders;
use crate::backoff::Jitter;
use crate::command::{Command, Subscribed};
use crate::config::ClientConfig;
use crate::error::Error;
use crate::state::{ConnectionState, DisconnectReason};
use crate::token::TokenSource;
use crate::transport::{BoxFuture, Connector, Inbound, Link, Outgoing};

enum Phase {
    Waiting { until: Instant },
    Connecting { fut: BoxFuture<Result<Established, DisconnectReason>> },
    Connected(Box<Conn>),
    Closing { link: Link, until: Instant },
    Closed,
}

impl Phase {
    fn conn_mut(&mut self) -> Option<&mut Conn> {
        match self {
            Self::Connected(c) => Some(c),
            _ => None,
        }
    }

    /// The open connection's publish rate limit.
    fn bucket(&mut self) -> Option<&mut Bucket> {
        self.conn_mut().and_then(|c| c.bucket.as_mut())
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
    subscriptions: Subscriptions,
    user_events: UserEventReaders,
    requests: Requests,
    publishes: Publishes,
    closers: Vec<oneshot::Sender<()>>,
    close_requested: bool,
    close_deadline: Option<Instant>,
    broken: Option<DisconnectReason>,
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
        let subscriptions = Subscriptions::new(cfg.subscription_buffer);
        let user_events = UserEventReaders::new(cfg.user_event_buffer);
        let publishes =
            Publishes::new(cfg.publish_queue_capacity, cfg.max_in_flight_publishes, cfg.rate_limited_retries);
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
            subscriptions,
            user_events,
            requests: Requests::new(),
            publishes,
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
                    self.request_close(None);
                }
                Event::Attempt(Ok(established)) => self.on_connected(established).await,
                Event::Attempt(Err(reason)) => self.on_lost(reason, None),
                Event::Inbound(ev) => self.on_inbound(ev).await,
                Event::Refreshed(token) => self.on_refreshed(token).await,
                Event::Timer => self.on_timer().await,
            }
            if let Some(reason) = self.broken.take()
                && let Phase::Connected(conn) = &self.phase
            {
                let since = conn.since;
                self.on_lost(reason, Some(since));
            }
            if self.close_requested {
                self.progress_close();
            } else {
                self.progress_move();
            }
        }
        // Answer whatever is still queued for the task.
        let error = self.final_error();
        self.commands.close();
        while let Ok(cmd) = self.commands.try_recv() {
            cmd.fail(&error);
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
        self.phase.conn_mut()
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
        let at = match &self.phase {
            Phase::Waiting { until } | Phase::Closing { until, .. } => Some(*until),
            Phase::Connected(conn) => {
                let queue = (self.publishes.ready() && conn.leave_by.is_none())
                    .then(|| [self.publishes.blocked_until(), conn.bucket.as_ref().map(Bucket::next_token_at)]);
                let close = self.close_deadline.filter(|_| self.close_requested);
                [Some(conn.next_timer()), self.subscriptions.next_retry(), close]
                    .into_iter()
                    .chain(queue.into_iter().flatten())
                    .flatten()
                    .min()
            }
            Phase::Connecting { .. } | Phase::Closed => None,
        };
        at.map_or(far, |at| at.min(far))
    }

    // ----- sending ---------------------------------------------------------------

    /// Sends a request on the current connection and remembers it; gives the
    /// pending entry back when there is no usable connection.
    async fn send(&mut self, kind: client_frame::Kind, pending: Pending) -> Result<u64, Pending> {
        if self.broken.is_some() {
            return Err(pending);
        }
        let write_timeout = self.cfg.write_timeout;
        let frame = client::ClientFrame { request_id: self.requests.next_id(), kind: Some(kind) };
        let Some(conn) = self.phase.conn_mut() else { return Err(pending) };
        match timeout(write_timeout, conn.link.out.send(Outgoing::frame(&frame))).await {
            Ok(Ok(())) => Ok(self.requests.sent(pending)),
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
        let Some((subscribe, recovering)) = self.subscriptions.subscribe_request(channel) else { return };
        let pending = Pending::Subscribe { channel: channel.clone(), recovering };
        if let Ok(id) = self.send(client_frame::Kind::Subscribe(subscribe), pending).await {
            self.subscriptions.sent(channel, id);
        }
    }

    /// Sends queued publishes while the connection, the in-flight bound and
    /// the rate limit allow, in queue order.
    async fn drain_queue(&mut self) {
        loop {
            let Some(conn) = self.phase.conn_mut() else { return };
            if conn.leave_by.is_some() {
                return;
            }
            let Next::Send(q) = self.publishes.next(Instant::now(), conn.max_message, conn.bucket.as_mut()) else {
                return;
            };
            let kind = client_frame::Kind::Publish(q.publish.clone());
            match self.send(kind, Pending::Publish(q)).await {
                Ok(_) => self.publishes.sent(),
                Err(Pending::Publish(q)) => {
                    self.publishes.unsent(q);
                    return;
                }
                Err(_) => return,
            }
        }
    }

    // ----- commands --------------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) {
        if let Command::Close { reply } = cmd {
            self.request_close(Some(reply));
            return;
        }
        if self.close_requested {
            cmd.fail(&Error::Closed);
            return;
        }
        match cmd {
            Command::Subscribe { channel, reply } => self.subscribe(channel, reply).await,
            Command::Unsubscribe { channel, sub_id, reply } => self.unsubscribe(&channel, sub_id, reply).await,
            Command::Publish { publish, reply } => {
                self.publishes.push(publish, reply);
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
            Command::UserEvents { reply } => {
                let _ = reply.send(Ok(self.user_events.open()));
            }
            Command::Close { reply } => self.request_close(Some(reply)),
        }
    }

    async fn subscribe(&mut self, channel: ChannelName, reply: oneshot::Sender<Result<Subscribed, Error>>) {
        match self.subscriptions.add(&channel, reply) {
            Added::Confirmed | Added::Waiting => {}
            Added::CallerGone(id) => self.unsubscribe(&channel, Some(id), None).await,
            Added::SendSubscribe => {
                if self.conn().is_some() {
                    self.send_subscribe(&channel).await;
                }
            }
        }
    }

    async fn unsubscribe(
        &mut self,
        channel: &ChannelName,
        sub_id: Option<u64>,
        reply: Option<oneshot::Sender<Result<(), Error>>>,
    ) {
        match self.subscriptions.remove(channel, sub_id) {
            Removed::Left { told } => self.left(channel, told, reply).await,
            Removed::NotSubscribed | Removed::Kept => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }

    /// Drops the subscriptions of `channel` whose reader is gone; leaves the
    /// channel when none is left.
    async fn prune(&mut self, channel: &ChannelName) {
        if let Some(told) = self.subscriptions.prune(channel) {
            self.left(channel, told, None).await;
        }
    }

    /// The registry forgot `channel`: tells the edge when it knows of it.
    async fn left(&mut self, channel: &ChannelName, told: bool, reply: Option<oneshot::Sender<Result<(), Error>>>) {
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

    // ----- tokens and timers -----------------------------------------------------

    /// The token provider answered a refresh.
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
                let delay = conn.refresh_failed();
                tracing::warn!(error = %e, retry_ms = delay.as_millis() as u64, "token provider failed; retrying");
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        let due = match &mut self.phase {
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
                let due = conn.due(now);
                if due.refresh {
                    conn.refresh = Some(self.tokens.fetch(self.cfg.attempt_timeout));
                }
                due
            }
        };
        if due.dead {
            self.broken = Some(DisconnectReason::HeartbeatTimeout);
            return;
        }
        if due.refresh {
            tracing::debug!("refreshing the token");
        }
        if due.ping {
            let pending = Pending::Ping { sent: now, reply: None };
            let _ = self.send(client_frame::Kind::Ping(client::Ping {}), pending).await;
        }
        for channel in self.subscriptions.retries_due(now) {
            self.send_subscribe(&channel).await;
        }
        self.publishes.unblock(now);
        self.drain_queue().await;
    }
}
