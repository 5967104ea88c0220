//! The connection lifecycle of the client task: starting an attempt,
//! taking in a new connection (subscriptions restored first, then the
//! queued publishes), losing one (reconnect with backoff, at once after a
//! drain, with a fresh token, or stop — as the close code advises), moving
//! to another edge after `GoAway`, and closing.

use std::time::Duration;

use herald_proto::Advice;
use tokio::sync::oneshot;
use tokio::time::{Instant, timeout};

use super::connection::{Conn, Established, attempt};
use super::{Driver, Phase};
use crate::error::Error;
use crate::state::{ConnectionState, DisconnectReason};
use crate::transport::{BoxFuture, Outgoing};

impl Driver {
    pub(super) fn start_attempt(&mut self) {
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

    pub(super) async fn on_connected(&mut self, est: Established) {
        let opened = Conn::open(est, &self.cfg, self.tokens.can_refresh());
        self.token = Some(opened.token);
        self.token_due = opened.token_due;
        self.phase = Phase::Connected(Box::new(opened.conn));
        self.publishes.clear_pause();
        self.set_state(ConnectionState::Connected(opened.info));
        self.user_events.connected();
        // Restore every subscription, then let the queued publishes go, in
        // that order: the edge handles one connection's requests in order,
        // so a queued publish reaches the client's own subscriptions.
        for channel in self.subscriptions.to_restore() {
            self.send_subscribe(&channel).await;
        }
        self.drain_queue().await;
    }

    /// The connection (or an attempt) ended: fail or keep what was pending,
    /// then reconnect, or stop, as the close code advises.
    pub(super) fn on_lost(&mut self, reason: DisconnectReason, since: Option<Instant>) {
        self.phase = Phase::Waiting { until: Instant::now() };
        self.set_state(ConnectionState::Disconnected { reason: reason.clone() });
        let resend = self.requests.disconnected();
        self.publishes.disconnected(resend);
        self.subscriptions.disconnected();
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

    pub(super) fn request_close(&mut self, reply: Option<oneshot::Sender<()>>) {
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
    pub(super) fn progress_close(&mut self) {
        let Phase::Connected(_) = &self.phase else {
            if matches!(self.phase, Phase::Waiting { .. } | Phase::Connecting { .. }) {
                self.finish_close(None);
            }
            return;
        };
        let publishes_left = !self.publishes.is_empty() || self.requests.publishing();
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
    pub(super) fn progress_move(&mut self) {
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
    pub(super) fn finish_close(&mut self, error: Option<Error>) {
        self.phase = Phase::Closed;
        let err = error.clone().unwrap_or(Error::Closed);
        self.requests.fail_all(&err);
        self.publishes.fail_all(&err);
        self.subscriptions.end_all(&err);
        self.user_events.end_all(&err);
        self.set_state(ConnectionState::Closed { error });
        for closer in self.closers.drain(..) {
            let _ = closer.send(());
        }
    }
}
