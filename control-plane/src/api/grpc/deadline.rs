//! Time bounds of gRPC request bodies: the rules of [`crate::body`] kept
//! while tonic reads the messages, instead of after buffering them.
//!
//! - A call with one request message (unary, and server-streaming like
//!   `DebugService/WatchDebugEvents`): its body, message and end, is one
//!   body under `body_read_timeout` and `min_body_rate_per_sec` (after
//!   `body_rate_grace`) from the call's start — a [`BodyClock`], as REST's.
//! - A call with a request stream ([`STREAMED_REQUESTS`]: `PublishStream`,
//!   reflection): each message is such a body from its first byte; between
//!   messages the client may stay silent for `http_idle_timeout`, no longer.
//!
//! Past a bound the body fails with the `request_timeout` error as a
//! status (`DEADLINE_EXCEEDED`, `herald-error-code: request_timeout`, the
//! message naming the limit); tonic answers the call with it and the
//! HTTP/2 stream is reset, while the connection and its other streams go
//! on. While it is read the body counts as one on its connection, so a
//! full listener may evict a connection whose every request is stalled in
//! one ([`crate::connections`]).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use bytes::Bytes;
use herald_proto::ErrorCode;
use hyper::body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{BodyClock, too_slow};
use crate::config::Config;
use crate::connections::{BodyRead, Conn};
use crate::error::ApiError;

/// The gRPC methods whose request is a stream of messages (client- or
/// bidirectional streaming), by path; every other call sends one message.
pub(crate) const STREAMED_REQUESTS: [&str; 3] = [
    "/herald.api.v1.PublishService/PublishStream",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The limit named when a request stream stays silent too long.
const IDLE: &str = "http_idle_timeout";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The limits a call's body is read under.
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    /// The body limits (restarted for each body).
    clock: BodyClock,
    /// The longest silence between two messages of a stream.
    idle: Duration,
}

impl Bounds {
    /// The limits of `config`.
    pub(crate) fn new(config: &Config) -> Self {
        Self { clock: BodyClock::start(config), idle: config.http_idle_timeout.0 }
    }

    /// `req` with its body read under these limits.
    pub(crate) fn apply(&self, req: Request) -> Request {
        let pace = if STREAMED_REQUESTS.contains(&req.uri().path()) {
            Pace::Stream {
                fresh: self.clock,
                idle: self.idle,
                message: None,
                framing: Framing::default(),
                idle_since: Instant::now(),
            }
        } else {
            Pace::Whole(self.clock.restart())
        };
        let reading = req.extensions().get::<Arc<Conn>>().map(Conn::body);
        let (parts, body) = req.into_parts();
        let sleep = Box::pin(tokio::time::sleep_until(pace.deadline().0));
        let timed = Timed { inner: body, sleep, pace, reading, over: false };
        Request::from_parts(parts, Body::new(timed))
    }
}

/// What bounds a body in time.
enum Pace {
    /// One message: the whole body under the body limits.
    Whole(BodyClock),
    /// A stream of messages: each under the body limits, the gaps between
    /// them under `idle`.
    Stream {
        /// The body limits, restarted for each message.
        fresh: BodyClock,
        idle: Duration,
        /// The message being received, when one has begun.
        message: Option<BodyClock>,
        framing: Framing,
        /// When the last message ended (or the call began).
        idle_since: Instant,
    },
}

impl Pace {
    /// When the next bytes must come by, and the limit that says so.
    fn deadline(&self) -> (Instant, &'static str) {
        match self {
            Self::Whole(clock) => clock.deadline(),
            Self::Stream { message: Some(clock), .. } => clock.deadline(),
            Self::Stream { message: None, idle, idle_since, .. } => (*idle_since + *idle, IDLE),
        }
    }

    /// Bytes of the body arrived.
    fn received(&mut self, mut data: &[u8]) {
        match self {
            Self::Whole(clock) => clock.received(data.len()),
            Self::Stream { fresh, message, framing, idle_since, .. } => {
                while !data.is_empty() {
                    let clock = message.get_or_insert_with(|| fresh.restart());
                    let (used, ended) = framing.consume(data);
                    clock.received(used);
                    data = &data[used..];
                    if ended {
                        *message = None;
                        *idle_since = Instant::now();
                    }
                }
            }
        }
    }
}

/// Where a stream of gRPC messages is: each is a 5-byte prefix (a flag, a
/// big-endian length) and that many bytes.
#[derive(Debug, Default)]
struct Framing {
    prefix: [u8; 5],
    /// Bytes of the prefix received.
    filled: usize,
    /// Bytes of the message still to come, once its prefix is whole.
    remaining: u64,
}

impl Framing {
    /// Takes the start of `data` up to the end of the current message:
    /// how many bytes it took, and whether the message ended there.
    fn consume(&mut self, data: &[u8]) -> (usize, bool) {
        if self.filled < self.prefix.len() {
            let n = (self.prefix.len() - self.filled).min(data.len());
            self.prefix[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            if self.filled < self.prefix.len() {
                return (n, false);
            }
            let [_, a, b, c, d] = self.prefix;
            self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
            if self.remaining == 0 {
                self.filled = 0;
                return (n, true);
            }
            return (n, false);
        }
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(data.len());
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.filled = 0;
            return (n, true);
        }
        (n, false)
    }
}

/// A request body under a [`Pace`].
struct Timed {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    pace: Pace,
    /// Marks the body as read on its connection, until it ends.
    reading: Option<BodyRead>,
    /// A bound was broken: the body is over.
    over: bool,
}

impl hyper::body::Body for Timed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.over {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.pace.received(data);
                    this.sleep.as_mut().reset(this.pace.deadline().0);
                    if let Some(reading) = &this.reading {
                        reading.progress();
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => {
                this.reading = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.over = true;
                this.reading = None;
                let (_, limit) = this.pace.deadline();
                tracing::debug!(limit, "a gRPC request body was too slow; failing the call");
                Poll::Ready(Some(Err(Box::new(tonic::Status::from(timeout_error(limit))))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.over || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The `request_timeout` error of a body past `limit`.
fn timeout_error(limit: &str) -> ApiError {
    if limit == IDLE {
        ApiError::new(ErrorCode::RequestTimeout, "no request message on the stream within http_idle_timeout")
    } else {
        too_slow(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u32) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len as usize));
        m
    }

    /// Feeds `bytes` in pieces of `step`; the message ends seen.
    fn ends(bytes: &[u8], step: usize) -> usize {
        let mut framing = Framing::default();
        let mut ended = 0;
        for mut chunk in bytes.chunks(step) {
            while !chunk.is_empty() {
                let (used, end) = framing.consume(chunk);
                assert!(used > 0, "progress");
                ended += usize::from(end);
                chunk = &chunk[used..];
            }
        }
        ended
    }

    #[test]
    fn framing_finds_message_ends_however_the_bytes_are_cut() {
        let mut bytes = message(10);
        bytes.extend(message(0));
        bytes.extend(message(300));
        for step in [1, 2, 5, 6, 7, 100, 1000] {
            assert_eq!(ends(&bytes, step), 3, "step {step}");
        }
        assert_eq!(ends(&message(10)[..9], 3), 0, "a message cut short has not ended");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_is_bounded_by_idle_between_messages_and_by_the_body_limits_within_one() {
        let config = Config::default();
        let Bounds { clock, idle } = Bounds::new(&config);
        let mut pace =
            Pace::Stream { fresh: clock, idle, message: None, framing: Framing::default(), idle_since: Instant::now() };
        assert_eq!(pace.deadline(), (Instant::now() + config.http_idle_timeout.0, IDLE));
        tokio::time::advance(Duration::from_secs(3)).await;
        pace.received(&message(4)[..3]);
        let (within, limit) = pace.deadline();
        assert_ne!(limit, IDLE, "inside a message: the body limits");
        assert!(within <= Instant::now() + config.body_read_timeout.0, "from the message's first byte");
        assert!(within > Instant::now(), "from the message's first byte");
        pace.received(&message(4)[3..]);
        assert_eq!(pace.deadline(), (Instant::now() + config.http_idle_timeout.0, IDLE), "between messages again");
    }

    #[test]
    fn streamed_requests_are_exactly_the_streaming_methods_served() {
        use prost::Message as _;
        let mut streamed = Vec::new();
        for set in [
            herald_proto::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(set).expect("a descriptor set");
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        if method.client_streaming() {
                            streamed.push(format!("/{}.{}/{}", file.package(), service.name(), method.name()));
                        }
                    }
                }
            }
        }
        streamed.sort();
        let mut listed: Vec<String> = STREAMED_REQUESTS.iter().map(|s| (*s).to_owned()).collect();
        listed.sort();
        assert_eq!(streamed, listed);
    }
}
