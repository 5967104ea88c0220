//! Reading a request body whole, within the limits a public endpoint needs,
//! for the REST API, the Pusher API and the console's forms:
//!
//! - `max_body_size`: a `Content-Length` over it is refused before a byte
//!   of the body is read, and a body growing past it too (413);
//! - `max_body_reads_per_key`: an API key (or the admin token) with that
//!   many requests still sending their body gets 429 for the next one, so
//!   one caller's stalled uploads never take every place;
//! - `min_body_rate_per_sec` after `body_rate_grace`: each byte buys
//!   `1/rate` more time, a body slower than that is cut (408, connection
//!   closed);
//! - `body_read_timeout`: the whole body, at any rate (408).
//!
//! The two time limits are kept by a [`BodyClock`], which the gRPC API
//! also runs over its request messages ([`crate::api::grpc`]); past them
//! the caller gets `request_timeout` ([`too_slow`]).
//!
//! While it reads, the connection is marked as reading a body, so a full
//! listener evicts it first when it stalls ([`crate::connections`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::header;
use bytes::{Bytes, BytesMut};
use herald_proto::ErrorCode;
use http_body_util::BodyExt as _;
use tokio::time::Instant;

use crate::config::Config;
use crate::connections::{Conn, Connections};
use crate::error::ApiError;

/// Who sends a request's body, set by authentication before the body is
/// read: the key whose places [`read`] counts.
#[derive(Debug, Clone)]
pub(crate) struct BodyOwner(pub(crate) String);

/// Why a body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Too large (`413`), broken (`400`) or too many of the caller's bodies
    /// being read (`429`).
    Api(ApiError),
    /// Too slow (`408`, and the connection closed): which limit it broke.
    Slow(&'static str),
}

impl BodyError {
    /// The error the caller is answered with.
    pub(crate) fn into_api(self) -> ApiError {
        match self {
            Self::Api(e) => e,
            Self::Slow(limit) => too_slow(limit),
        }
    }
}

/// The `request_timeout` (408) of a body that broke `limit`, naming it.
pub(crate) fn too_slow(limit: &str) -> ApiError {
    let message = match limit {
        MIN_RATE => "the request body arrived slower than the server accepts (min_body_rate_per_sec)",
        _ => "the request body did not arrive within body_read_timeout",
    };
    ApiError::new(ErrorCode::RequestTimeout, message)
}

const MIN_RATE: &str = "min_body_rate_per_sec";
const TIMEOUT: &str = "body_read_timeout";

/// The time limits of one body, as its bytes arrive: the whole of it
/// within `body_read_timeout` of its start, and after `body_rate_grace`
/// at least `min_body_rate_per_sec` (each byte received buys `1/rate`
/// more time).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyClock {
    start: Instant,
    hard: Instant,
    rate: u64,
    grace: Duration,
    received: u64,
}

impl BodyClock {
    /// The clock of a body starting now, under `config`'s limits.
    pub(crate) fn start(config: &Config) -> Self {
        let start = Instant::now();
        Self {
            start,
            hard: start + config.body_read_timeout.0,
            rate: config.min_body_rate_per_sec.0,
            grace: config.body_rate_grace.0,
            received: 0,
        }
    }

    /// A clock with the same limits for a body starting now.
    pub(crate) fn restart(&self) -> Self {
        let start = Instant::now();
        Self { start, hard: start + (self.hard - self.start), received: 0, ..*self }
    }

    /// `n` more bytes of the body arrived.
    pub(crate) fn received(&mut self, n: usize) {
        self.received = self.received.saturating_add(n as u64);
    }

    /// When the body must have its next bytes (or its end) by, and the
    /// name of the limit that sets it.
    pub(crate) fn deadline(&self) -> (Instant, &'static str) {
        let by_rate = (self.rate > 0).then(|| {
            let earned = Duration::from_secs_f64(self.received as f64 / self.rate as f64);
            self.start + self.grace.saturating_add(earned)
        });
        match by_rate {
            Some(at) if at < self.hard => (at, MIN_RATE),
            _ => (self.hard, TIMEOUT),
        }
    }
}

/// Reads the body of `req` within the limits of `config` (see the module
/// docs).
pub(crate) async fn read(req: Request, config: &Config, connections: &Arc<Connections>) -> Result<Bytes, BodyError> {
    let limit = config.max_body_size.0;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::Api(too_large()));
    }
    if declared == Some(0) {
        return Ok(Bytes::new());
    }
    let _slot = match req.extensions().get::<BodyOwner>() {
        Some(BodyOwner(key)) => {
            Some(connections.body_slot(key, config.max_body_reads_per_key).ok_or_else(|| {
                BodyError::Api(
                    ApiError::new(
                        ErrorCode::RateLimited,
                        format!(
                            "this key already has {} requests sending their body (max_body_reads_per_key); finish those first",
                            config.max_body_reads_per_key
                        ),
                    )
                    .retry_after(1),
                )
            })?)
        }
        None => None,
    };
    let reading = req.extensions().get::<Arc<Conn>>().map(Conn::body);
    let mut body = req.into_body();
    let mut clock = BodyClock::start(config);
    let capacity = usize::try_from(declared.unwrap_or(0).min(limit).min(64 * 1024)).unwrap_or(0);
    let mut bytes = BytesMut::with_capacity(capacity);
    loop {
        let (deadline, broken) = clock.deadline();
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyError::Slow(broken)),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(BodyError::Api(ApiError::bad_request(format!("could not read the request body: {e}"))));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if (bytes.len() + data.len()) as u64 > limit {
                return Err(BodyError::Api(too_large()));
            }
            bytes.extend_from_slice(&data);
            clock.received(data.len());
            if let Some(reading) = &reading {
                reading.progress();
            }
        }
    }
    Ok(bytes.freeze())
}

/// The 413 of a body over `max_body_size`.
pub(crate) fn too_large() -> ApiError {
    ApiError::too_large("the request body is larger than the server accepts (max_body_size)")
}
