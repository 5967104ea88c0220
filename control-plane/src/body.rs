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
    /// The message for a [`BodyError::Slow`] body.
    pub(crate) fn slow_message(limit: &str) -> String {
        match limit {
            "min_body_rate_per_sec" => {
                "the request body arrived slower than the server accepts (min_body_rate_per_sec)"
            }
            _ => "the request body did not arrive within body_read_timeout",
        }
        .to_owned()
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
    let start = Instant::now();
    let hard = start + config.body_read_timeout.0;
    let rate = config.min_body_rate_per_sec.0;
    let grace = config.body_rate_grace.0;
    let capacity = usize::try_from(declared.unwrap_or(0).min(limit).min(64 * 1024)).unwrap_or(0);
    let mut bytes = BytesMut::with_capacity(capacity);
    loop {
        // Each byte received buys 1/rate more time after the grace period.
        let by_rate = (rate > 0).then(|| {
            let earned = Duration::from_secs_f64(bytes.len() as f64 / rate as f64);
            start + grace.saturating_add(earned)
        });
        let (deadline, broken) = match by_rate {
            Some(at) if at < hard => (at, "min_body_rate_per_sec"),
            _ => (hard, "body_read_timeout"),
        };
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
