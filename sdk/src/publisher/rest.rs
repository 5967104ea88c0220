//! The REST transport of the [`Publisher`](super::Publisher): one pooled
//! HTTP/1.1 client over `http://` or `https://` (opened by the crate's own
//! TCP and TLS code), the API key on every request, and the retries of
//! requests the control plane did not accept — connection refused,
//! `429 rate_limited`, `503 unavailable` — with backoff, honouring
//! `Retry-After`, within one timeout.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::body::BatchAnswer;
use super::error::{RestError, error_from};
use crate::net::{Endpoint, Stream, open_stream};

/// Largest response body read from the control plane.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// The pooled client for one control plane and API key.
pub(super) struct Rest {
    client: HttpClient<HttpConnector, Full<Bytes>>,
    /// Scheme, authority and path prefix, without a trailing `/`.
    pub(super) base: String,
    auth: HeaderValue,
    timeout: Duration,
    max_retries: u32,
}

/// How long an idle keep-alive connection stays in the pool: well under
/// the control plane's `header_read_timeout` (10 s by default), after
/// which it closes an HTTP/1.1 connection that sends no request. A pooled
/// connection kept longer could be reused just as the server closes it,
/// and the request would meet a reset instead of an answer.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

impl Rest {
    /// A client for the control plane at `endpoint` (its path is a prefix
    /// of every request's), sending `auth` as the `Authorization` header.
    pub(super) fn new(
        endpoint: &Endpoint,
        tls: Arc<rustls::ClientConfig>,
        auth: HeaderValue,
        timeout: Duration,
        max_retries: u32,
    ) -> Self {
        let scheme = if endpoint.tls { "https" } else { "http" };
        let prefix = endpoint.path.trim_end_matches('/');
        let base = format!("{scheme}://{}{prefix}", endpoint.authority);
        let client = HttpClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(HttpConnector { tls });
        Self { client, base, auth, timeout, max_retries }
    }

    /// Sends a request; an answer that is not a success is an error.
    pub(super) async fn request(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(StatusCode, Bytes), RestError> {
        let (status, bytes, retry_after) = self.send_with_retries(method, path, body, true).await?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        Err(error_from(status, &bytes, retry_after))
    }

    /// Like [`Self::request`], but a 503 answer with per-message results
    /// is an answer, not an error.
    pub(super) async fn request_batch(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<(StatusCode, Bytes), RestError> {
        let (status, bytes, retry_after) = self.send_with_retries(Method::POST, path, body, false).await?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE && serde_json::from_slice::<BatchAnswer>(&bytes).is_ok() {
            return Ok((status, bytes));
        }
        Err(error_from(status, &bytes, retry_after))
    }

    /// Sends a request, retrying what the control plane did not accept
    /// (`429`, and `503` when `retry_unavailable`; connections refused)
    /// within the timeout. Returns the last answer with its `Retry-After`.
    async fn send_with_retries(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
        retry_unavailable: bool,
    ) -> Result<(StatusCode, Bytes, Option<Duration>), RestError> {
        let limit = self.timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let body = Bytes::from(serde_json::to_vec(body).map_err(|e| RestError::Config(e.to_string()))?);
        let uri = format!("{}{path}", self.base);
        let mut attempt = 0u32;
        loop {
            let outcome = tokio::time::timeout_at(deadline, self.send_once(&method, &uri, body.clone())).await;
            let retry_in = match outcome {
                Err(_) => return Err(RestError::TimedOut(limit)),
                Ok(Ok((status, bytes, retry_after))) => {
                    let refused = status == StatusCode::TOO_MANY_REQUESTS
                        || (retry_unavailable && status == StatusCode::SERVICE_UNAVAILABLE);
                    if !refused || attempt >= self.max_retries {
                        return Ok((status, bytes, retry_after));
                    }
                    tracing::debug!(%status, attempt, "request not accepted; retrying");
                    retry_after.unwrap_or_else(|| retry_delay(attempt))
                }
                Ok(Err(SendError::NotSent(e))) if attempt < self.max_retries => {
                    tracing::debug!(error = %e, attempt, "control plane unreachable; retrying");
                    retry_delay(attempt)
                }
                Ok(Err(SendError::NotSent(e) | SendError::Failed(e))) => return Err(RestError::Transport(e)),
            };
            attempt += 1;
            if tokio::time::Instant::now() + retry_in >= deadline {
                return Err(RestError::TimedOut(limit));
            }
            tokio::time::sleep(retry_in).await;
        }
    }

    /// One try of a request.
    async fn send_once(
        &self,
        method: &Method,
        uri: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes, Option<Duration>), SendError> {
        let request = http::Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::AUTHORIZATION, self.auth.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("herald-sdk-rust/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| SendError::Failed(e.to_string()))?;
        let response = self.client.request(request).await.map_err(|e| {
            // The client's own text ("client error (Connect)") says little;
            // its causes say what happened ("Connection refused").
            let text = format!("{uri}: {}", with_causes(&e));
            if e.is_connect() { SendError::NotSent(text) } else { SendError::Failed(text) }
        })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(60)));
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| SendError::Failed(format!("{uri}: reading the answer: {e}")))?
            .to_bytes();
        Ok((status, bytes, retry_after))
    }
}

/// An error's text followed by its causes', each after `: `.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Why one try of a request failed.
enum SendError {
    /// Nothing reached the control plane: safe to retry.
    NotSent(String),
    /// The request may have reached the control plane.
    Failed(String),
}

/// The pause before retry `attempt` + 1: 200 ms doubling, at most 12.8 s.
fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6)))
}

/// A TCP or TLS stream for hyper.
struct HttpStream(TokioIo<Stream>);

impl hyper::rt::Read for HttpStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<Result<(), io::Error>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for HttpStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<Result<usize, io::Error>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Connection for HttpStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Opens `http://` and `https://` connections for the pooled client.
#[derive(Clone)]
struct HttpConnector {
    tls: Arc<rustls::ClientConfig>,
}

impl tower_service::Service<Uri> for HttpConnector {
    type Response = HttpStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpStream, io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        Box::pin(async move {
            let endpoint = Endpoint::parse_with_default_path(&uri.to_string(), "/")
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = open_stream(&endpoint, &tls).await?;
            Ok(HttpStream(TokioIo::new(stream)))
        })
    }
}

/// Percent-encodes one path segment.
pub(super) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("chat:room-1"), "chat%3Aroom-1");
        assert_eq!(segment("a/b#c"), "a%2Fb%23c");
        assert_eq!(segment("plain_name~1"), "plain_name~1");
    }
}
