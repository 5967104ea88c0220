//! The publish queue: publishes waiting for a connection (bounded, in call
//! order), how many are in flight, and the pace they may go out at — a
//! [`Bucket`] mirroring the edge's publish rate limit, and a pause after
//! the edge answered `rate_limited` anyway.

use std::collections::VecDeque;
use std::time::Duration;

use herald_proto::{ErrorCode, client};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::command::PublishAck;
use crate::error::Error;
use crate::event::Position;

/// A publish and the caller waiting for its acknowledgement.
pub(super) struct Queued {
    pub(super) publish: client::Publish,
    pub(super) reply: oneshot::Sender<Result<PublishAck, Error>>,
    rate_retries: u32,
}

/// A token bucket mirroring the edge's publish limit.
pub(super) struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// The bucket for `rate` publishes a second with bursts of `burst`;
    /// `None` when the edge sets no limit.
    pub(super) fn new(rate: u32, burst: u32) -> Option<Self> {
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

    /// When the next publish may go out.
    pub(super) fn next_token_at(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        self.last + Duration::from_secs_f64(missing / self.rate)
    }

    /// The edge refused for the rate: start again from an empty bucket.
    fn empty(&mut self, now: Instant) {
        self.tokens = 0.0;
        self.last = now;
    }
}

/// What the queue offers to send next.
pub(super) enum Next {
    /// This publish, counted in flight once sent.
    Send(Queued),
    /// Nothing may go out now.
    Wait,
}

/// The publish queue and its in-flight count.
pub(super) struct Publishes {
    queue: VecDeque<Queued>,
    in_flight: usize,
    blocked_until: Option<Instant>,
    capacity: usize,
    max_in_flight: usize,
    rate_limited_retries: u32,
}

impl Publishes {
    pub(super) fn new(capacity: usize, max_in_flight: usize, rate_limited_retries: u32) -> Self {
        Self {
            queue: VecDeque::new(),
            in_flight: 0,
            blocked_until: None,
            capacity,
            max_in_flight,
            rate_limited_retries,
        }
    }

    /// Queues a publish; fails it at once with [`Error::QueueFull`] when
    /// `capacity` publishes whose callers still wait are queued.
    pub(super) fn push(&mut self, publish: client::Publish, reply: oneshot::Sender<Result<PublishAck, Error>>) {
        if self.queue.len() >= self.capacity {
            // Publishes whose callers gave up do not count.
            self.queue.retain(|q| !q.reply.is_closed());
        }
        if self.queue.len() >= self.capacity {
            let _ = reply.send(Err(Error::QueueFull { capacity: self.capacity }));
            return;
        }
        self.queue.push_back(Queued { publish, reply, rate_retries: 0 });
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether queued publishes wait only for time to pass (a pause or the
    /// bucket), not for an answer.
    pub(super) fn ready(&self) -> bool {
        !self.queue.is_empty() && self.in_flight < self.max_in_flight
    }

    /// The end of the pause after a `rate_limited` answer.
    pub(super) fn blocked_until(&self) -> Option<Instant> {
        self.blocked_until
    }

    /// Ends the pause once its time has come.
    pub(super) fn unblock(&mut self, now: Instant) {
        if self.blocked_until.is_some_and(|t| now >= t) {
            self.blocked_until = None;
        }
    }

    /// A new connection: no pause from the last one's rate limit.
    pub(super) fn clear_pause(&mut self) {
        self.blocked_until = None;
    }

    /// The next publish to send on a connection that accepts messages of up
    /// to `max_message` bytes with `bucket`'s rate limit. Publishes whose
    /// callers gave up are dropped; ones too large fail.
    pub(super) fn next(&mut self, now: Instant, max_message: usize, bucket: Option<&mut Bucket>) -> Next {
        if self.in_flight >= self.max_in_flight || self.blocked_until.is_some_and(|t| now < t) {
            return Next::Wait;
        }
        loop {
            let Some(front) = self.queue.front() else { return Next::Wait };
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
            break;
        }
        if let Some(bucket) = bucket
            && !bucket.take(now)
        {
            return Next::Wait;
        }
        self.queue.pop_front().map_or(Next::Wait, Next::Send)
    }

    /// The publish [`Self::next`] gave went out.
    pub(super) fn sent(&mut self) {
        self.in_flight += 1;
    }

    /// The publish [`Self::next`] gave could not go out; it stays first in
    /// line.
    pub(super) fn unsent(&mut self, q: Queued) {
        self.queue.push_front(q);
    }

    /// The edge answered publish `q`. A `rate_limited` refusal is retried
    /// (up to `rate_limited_retries` times) in front of everything queued
    /// after it, after a pause of one token of `bucket`.
    pub(super) fn answered(
        &mut self,
        mut q: Queued,
        result: Result<Option<client::reply_ok::Value>, client::ReplyError>,
        bucket: Option<&mut Bucket>,
    ) {
        self.in_flight = self.in_flight.saturating_sub(1);
        match result {
            Ok(value) => {
                let ack = match value {
                    Some(client::reply_ok::Value::Published(p)) => {
                        PublishAck { id: p.id, position: p.position.map(|p| Position { seq: p.seq, epoch: p.epoch }) }
                    }
                    _ => PublishAck { id: String::new(), position: None },
                };
                let _ = q.reply.send(Ok(ack));
            }
            Err(e) if e.code == ErrorCode::RateLimited.number() && q.rate_retries < self.rate_limited_retries => {
                // Not published: wait for the edge's bucket and try again, in
                // front of everything queued after it.
                q.rate_retries += 1;
                let pause = match &bucket {
                    Some(b) => Duration::from_secs_f64(1.0 / b.rate),
                    None => Duration::from_millis(100),
                };
                tracing::debug!(retry = q.rate_retries, pause_ms = pause.as_millis() as u64, "publish rate limited");
                let now = Instant::now();
                self.blocked_until = Some(now + pause);
                if let Some(bucket) = bucket {
                    bucket.empty(now);
                }
                self.queue.push_front(q);
            }
            Err(e) => {
                let _ = q.reply.send(Err(Error::rejected(e.code, e.message, e.retryable)));
            }
        }
    }

    /// The connection dropped: nothing is in flight any more, and `resend`
    /// (publishes that were in flight, in the order they went out) goes out
    /// first on the next connection.
    pub(super) fn disconnected(&mut self, resend: Vec<Queued>) {
        self.in_flight = 0;
        for q in resend.into_iter().rev() {
            self.queue.push_front(q);
        }
    }

    /// The client stopped: every queued publish fails with `error`.
    pub(super) fn fail_all(&mut self, error: &Error) {
        for q in self.queue.drain(..) {
            let _ = q.reply.send(Err(error.clone()));
        }
    }
}
