//! What the client task does with what arrives from the edge: replies to
//! its requests, messages and presence events for the subscription
//! registry, user events (messages with no channel) for their readers, the
//! edge's `Disconnect` notice and `GoAway`, and the end of the connection.

use std::time::Duration;

use herald_proto::client::{self, reply_ok, server_frame};
use tokio::time::Instant;

use super::connection::{closed_reason, instant_of, refresh_point};
use super::requests::{Answer, Pending, answer_ping, answer_presence, answer_unsubscribe};
use super::{Driver, Phase};
use crate::transport::Inbound;

impl Driver {
    pub(super) async fn on_inbound(&mut self, ev: Option<Inbound>) {
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
                Some(server_frame::Kind::Message(m)) if m.channel.is_empty() => self.user_events.deliver(m),
                Some(server_frame::Kind::Message(m)) => {
                    if let Some(channel) = self.subscriptions.deliver(m) {
                        self.prune(&channel).await;
                    }
                }
                Some(server_frame::Kind::PresenceEvent(p)) => {
                    if let Some(channel) = self.subscriptions.presence(p) {
                        self.prune(&channel).await;
                    }
                }
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
        let request_id = r.request_id;
        let Some((pending, answer)) = self.requests.answered(r) else { return };
        match pending {
            Pending::Publish(q) => {
                self.publishes.answered(q, answer, self.phase.bucket());
                self.drain_queue().await;
            }
            Pending::Subscribe { channel, recovering } => {
                let answer = answer.map(|value| match value {
                    Some(reply_ok::Value::Subscribed(s)) => s,
                    _ => client::SubscribeResult::default(),
                });
                let (backoff, rng) = (&self.cfg.backoff, &mut self.rng);
                let gone = self
                    .subscriptions
                    .answered(&channel, request_id, recovering, answer, |retries| backoff.delay(retries, rng.unit()));
                for id in gone {
                    self.unsubscribe(&channel, Some(id), None).await;
                }
            }
            Pending::Unsubscribe { reply } => answer_unsubscribe(reply, answer),
            Pending::Refresh { token, obtained } => self.refresh_answered(token, obtained, answer),
            Pending::Ping { sent, reply } => answer_ping(sent, reply, answer),
            Pending::Presence { channel, reply } => answer_presence(&channel, reply, answer),
        }
    }

    fn refresh_answered(&mut self, token: String, obtained: Instant, answer: Answer) {
        match answer {
            Ok(value) => {
                let exp_ms = match value {
                    Some(reply_ok::Value::Refreshed(r)) => r.token_expires_at_ms,
                    _ => 0,
                };
                let expires = instant_of(exp_ms);
                let due = expires.map(|exp| refresh_point(obtained, exp, self.cfg.token_refresh_at));
                self.token = Some(token);
                self.token_due = due;
                if let Some(conn) = self.conn_mut() {
                    conn.refreshed(expires, due);
                }
                tracing::debug!(expires_at_ms = exp_ms, "token refreshed");
            }
            Err(e) => {
                let Some(conn) = self.conn_mut() else { return };
                let delay = conn.refresh_failed();
                tracing::warn!(code = e.code, message = %e.message, retry_ms = delay.as_millis() as u64, "token refresh refused; retrying");
            }
        }
    }
}
