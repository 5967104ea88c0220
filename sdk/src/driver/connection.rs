//! One connection to an edge, from the attempt to its end: the handshake
//! ([`attempt`]: token, socket, `Connect`, `Connected`), then what the
//! client task keeps about the open connection ([`Conn`]): its heartbeat
//! and ping schedule, the token's expiry and refresh point, the limits the
//! edge set, the edge's `Disconnect` notice and a `GoAway` deadline.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_proto::client::{self, client_frame, server_frame};
use tokio::time::{Instant, timeout_at};

use super::publishes::Bucket;
use super::requests::CONNECT_REQUEST_ID;
use crate::config::ClientConfig;
use crate::state::{ConnectionInfo, DisconnectReason};
use crate::transport::{BoxFuture, Connector, Inbound, Link, Outgoing};

/// Used when the edge's `Connected` frame carries no heartbeat settings.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(25);
const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection that completed the handshake.
pub(super) struct Established {
    link: Link,
    connected: client::Connected,
    token: String,
    obtained: Instant,
    url: String,
}

/// An open connection.
pub(super) struct Conn {
    pub(super) link: Link,
    pub(super) since: Instant,
    pub(super) last_seen: Instant,
    ping_every: Duration,
    next_ping: Instant,
    dead_after: Duration,
    expires: Option<Instant>,
    refresh_at: Option<Instant>,
    /// The token provider's answer, while it is asked for a new token.
    pub(super) refresh: Option<BoxFuture<Result<String, String>>>,
    /// A `RefreshToken` request awaits the edge's answer.
    pub(super) refresh_in_flight: bool,
    pub(super) max_message: usize,
    pub(super) bucket: Option<Bucket>,
    /// The `Disconnect` frame, when the edge sent one.
    pub(super) notice: Option<(u16, String)>,
    /// Set by `GoAway`: the edge is draining. No new publishes go out on
    /// this connection; once the ones in flight are answered (or by this
    /// instant) the client leaves for another edge.
    pub(super) leave_by: Option<Instant>,
}

/// A connection just opened, with what the client task takes from it.
pub(super) struct Opened {
    pub(super) conn: Conn,
    pub(super) info: ConnectionInfo,
    pub(super) token: String,
    /// When the token should no longer be used for a new connection.
    pub(super) token_due: Option<Instant>,
}

/// What is due on an open connection at a timer tick.
pub(super) struct Due {
    /// Nothing arrived for the heartbeat timeout: the connection is dead.
    pub(super) dead: bool,
    pub(super) ping: bool,
    /// The token is to be refreshed now.
    pub(super) refresh: bool,
}

impl Conn {
    /// Takes in a completed handshake. `can_refresh`: the token comes from a
    /// provider, so it is refreshed before it expires.
    pub(super) fn open(est: Established, cfg: &ClientConfig, can_refresh: bool) -> Opened {
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
        let ping_every = cfg.ping_interval.unwrap_or(interval);
        let dead_after = cfg.heartbeat_timeout.unwrap_or(server_timeout);
        let expires = instant_of(connected.token_expires_at_ms);
        let token_due = expires.map(|exp| refresh_point(obtained, exp, cfg.token_refresh_at));
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
        let conn = Self {
            link,
            since: now,
            last_seen: now,
            ping_every,
            next_ping: now + ping_every,
            dead_after,
            expires,
            refresh_at: if can_refresh { token_due } else { None },
            refresh: None,
            refresh_in_flight: false,
            max_message,
            bucket: Bucket::new(limits.publish_rate_per_sec, limits.publish_burst),
            notice: None,
            leave_by: None,
        };
        Opened { conn, info, token, token_due }
    }

    /// The earliest instant something is due on the connection (heartbeat
    /// timeout, ping, token refresh, leaving after `GoAway`).
    pub(super) fn next_timer(&self) -> Instant {
        let refresh = self.refresh_at.filter(|_| self.refresh.is_none() && !self.refresh_in_flight);
        [Some(self.last_seen + self.dead_after), Some(self.next_ping), refresh, self.leave_by]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(self.next_ping)
    }

    /// What is due at `now`; schedules the next ping when one is.
    pub(super) fn due(&mut self, now: Instant) -> Due {
        if now >= self.last_seen + self.dead_after {
            tracing::warn!(silent_ms = (now - self.last_seen).as_millis() as u64, "no heartbeat from the edge");
            return Due { dead: true, ping: false, refresh: false };
        }
        let ping = now >= self.next_ping;
        if ping {
            self.next_ping = now + self.ping_every;
        }
        let refresh = self.refresh.is_none() && !self.refresh_in_flight && self.refresh_at.is_some_and(|t| now >= t);
        if refresh {
            self.refresh_at = None;
        }
        Due { dead: false, ping, refresh }
    }

    /// The edge took a new token that expires at `expires` and is due for
    /// refresh at `due`.
    pub(super) fn refreshed(&mut self, expires: Option<Instant>, due: Option<Instant>) {
        self.refresh_in_flight = false;
        if let (Some(new), Some(old)) = (expires, self.expires)
            && new <= old
        {
            tracing::warn!("the token provider returned a token that expires no later than the current one");
        }
        self.expires = expires.or(self.expires);
        // Never sooner than a second from now, so a provider that hands out
        // short tokens cannot spin the client.
        self.refresh_at = due.map(|d| d.max(Instant::now() + Duration::from_secs(1)));
    }

    /// A refresh failed (the provider or the edge refused); schedules the
    /// next try, returning how long it is.
    pub(super) fn refresh_failed(&mut self) -> Duration {
        self.refresh = None;
        self.refresh_in_flight = false;
        let delay = refresh_retry_delay(self.expires);
        self.refresh_at = Some(Instant::now() + delay);
        delay
    }
}

/// When to refresh a token obtained at `obtained` that expires at `exp`:
/// at `fraction` of its life.
pub(super) fn refresh_point(obtained: Instant, exp: Instant, fraction: f64) -> Instant {
    obtained + exp.saturating_duration_since(obtained).mul_f64(fraction)
}

/// How long to wait before retrying a failed token refresh: a quarter of
/// the time left, between 250 ms and 10 s.
fn refresh_retry_delay(expires: Option<Instant>) -> Duration {
    let left = expires.map_or(Duration::from_secs(10), |e| e.saturating_duration_since(Instant::now()));
    (left / 4).clamp(Duration::from_millis(250), Duration::from_secs(10))
}

fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The instant matching a Unix-ms wall-clock time.
pub(super) fn instant_of(unix_ms: i64) -> Option<Instant> {
    if unix_ms <= 0 {
        return None;
    }
    let left = unix_ms.saturating_sub(wall_ms()).max(0);
    Some(Instant::now() + Duration::from_millis(left as u64))
}

/// Why a connection ended, from the `Disconnect` frame (preferred: it
/// carries the edge's code and reason) or the close frame.
pub(super) fn closed_reason(notice: Option<(u16, String)>, code: Option<u16>, reason: String) -> DisconnectReason {
    match (notice, code) {
        (Some((code, reason)), _) => DisconnectReason::Closed { code, reason },
        (None, Some(code)) => DisconnectReason::Closed { code, reason },
        (None, None) => DisconnectReason::Transport(reason),
    }
}

/// One connection attempt: token, socket, `Connect`, `Connected`.
pub(super) async fn attempt(
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
