//! [`Publisher`]: the control plane's REST API for backends, with an API
//! key: publish one message, publish a batch, mint tokens for end users.
//!
//! It speaks HTTP/1.1 over `http://` or `https://` (rustls with the Mozilla
//! roots and ring) through one pooled client, so a `Publisher` is cheap to
//! clone and share. Requests the control plane did not accept — connection
//! refused, `429 rate_limited`, `503 unavailable` — are retried with
//! backoff (honouring `Retry-After`) up to `max_retries` times; other
//! failures are returned as [`RestError`] with the Herald error code.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use herald_proto::ErrorCode;
use http::{HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Deserialize;

use crate::token::BoxError;
use crate::transport::{Endpoint, Stream, default_tls, open_stream};

/// Largest response body read from the control plane.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Why a REST call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// The control plane refused the request.
    #[error("{code}: {message} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The Herald error code (`{"error": {"code"}}`).
        code: ErrorCode,
        /// The control plane's explanation.
        message: String,
        /// When the control plane said to retry (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The control plane could not be reached, or the connection failed.
    #[error("request failed: {0}")]
    Transport(String),
    /// No answer within the publisher's timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The answer was not what the API documents.
    #[error("unexpected answer (HTTP {status}): {detail}")]
    Decode {
        /// The HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// The publisher's configuration is invalid.
    #[error("invalid publisher configuration: {0}")]
    Config(String),
}

impl RestError {
    /// The Herald error code, for [`RestError::Api`].
    #[must_use]
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A message payload for the REST API.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Any JSON value; subscribers receive its JSON text.
    Json(serde_json::Value),
    /// Text; subscribers receive it as UTF-8.
    Text(String),
    /// Bytes; sent base64-encoded, subscribers receive the bytes.
    Binary(Bytes),
}

impl From<serde_json::Value> for Data {
    fn from(v: serde_json::Value) -> Self {
        Self::Json(v)
    }
}

impl From<&str> for Data {
    fn from(s: &str) -> Self {
        Self::Text(s.to_owned())
    }
}

impl From<String> for Data {
    fn from(s: String) -> Self {
        Self::Text(s)
    }
}

impl From<Bytes> for Data {
    fn from(b: Bytes) -> Self {
        Self::Binary(b)
    }
}

impl From<Vec<u8>> for Data {
    fn from(b: Vec<u8>) -> Self {
        Self::Binary(Bytes::from(b))
    }
}

impl Data {
    /// The `data` and `encoding` fields of a request body.
    fn fields(&self) -> (serde_json::Value, Option<&'static str>) {
        match self {
            Self::Json(v) => (v.clone(), None),
            Self::Text(s) => (serde_json::Value::String(s.clone()), None),
            Self::Binary(b) => {
                (serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(b)), Some("base64"))
            }
        }
    }
}

/// A message accepted by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// The channel sequence, for channels with history (when known).
    #[serde(default)]
    pub seq: Option<u64>,
    /// True when the idempotency id was seen recently and nothing was sent
    /// again.
    #[serde(default)]
    pub duplicate: bool,
}

/// One message of [`Publisher::publish_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct BatchMessage {
    /// The channels it goes to (one or more).
    pub channels: Vec<String>,
    /// The payload.
    pub data: Data,
    /// An event name.
    pub name: Option<String>,
    /// An idempotency id.
    pub id: Option<String>,
}

impl BatchMessage {
    /// A message for `channel`.
    #[must_use]
    pub fn new(channel: impl Into<String>, data: impl Into<Data>) -> Self {
        Self { channels: vec![channel.into()], data: data.into(), name: None, id: None }
    }

    /// Also sends it to `channel`.
    #[must_use]
    pub fn also_to(mut self, channel: impl Into<String>) -> Self {
        self.channels.push(channel.into());
        self
    }

    /// Sets the event name.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the idempotency id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    fn to_json(&self) -> serde_json::Value {
        let (data, encoding) = self.data.fields();
        let mut body = serde_json::Map::new();
        match self.channels.as_slice() {
            [one] => body.insert("channel".into(), one.clone().into()),
            many => body.insert("channels".into(), many.to_vec().into()),
        };
        body.insert("data".into(), data);
        if let Some(encoding) = encoding {
            body.insert("encoding".into(), encoding.into());
        }
        if let Some(name) = &self.name {
            body.insert("name".into(), name.clone().into());
        }
        if let Some(id) = &self.id {
            body.insert("id".into(), id.clone().into());
        }
        serde_json::Value::Object(body)
    }
}

/// What a token allows and for whom.
///
/// ```
/// use std::time::Duration;
/// use herald_sdk::TokenRequest;
///
/// let request = TokenRequest::new("user-42")
///     .allow("chat:*", ["subscribe", "publish"])
///     .allow("lobby", ["subscribe", "presence"])
///     .ttl(Duration::from_secs(900))
///     .info(serde_json::json!({"name": "Ada"}));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TokenRequest {
    /// The end user's client id.
    pub client_id: String,
    /// Channel pattern → operations (`subscribe`, `publish`, `presence`,
    /// `history`); `None`: everything the API key allows.
    pub capabilities: Option<BTreeMap<String, Vec<String>>>,
    /// Lifetime; `None`: the control plane's default (an hour).
    pub ttl: Option<Duration>,
    /// A JSON object shown to presence members.
    pub info: Option<serde_json::Value>,
}

impl TokenRequest {
    /// A token for `client_id` with the API key's capabilities.
    #[must_use]
    pub fn new(client_id: impl Into<String>) -> Self {
        Self { client_id: client_id.into(), ..Self::default() }
    }

    /// Allows `operations` on channels matching `pattern`.
    #[must_use]
    pub fn allow<I, S>(mut self, pattern: impl Into<String>, operations: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let caps = self.capabilities.get_or_insert_with(BTreeMap::new);
        caps.entry(pattern.into()).or_default().extend(operations.into_iter().map(Into::into));
        self
    }

    /// Sets the lifetime (whole seconds, at least one).
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets the `info` object.
    #[must_use]
    pub fn info(mut self, info: serde_json::Value) -> Self {
        self.info = Some(info);
        self
    }

    fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("client_id".into(), self.client_id.clone().into());
        if let Some(caps) = &self.capabilities {
            body.insert("capabilities".into(), serde_json::json!(caps));
        }
        if let Some(ttl) = self.ttl {
            body.insert("ttl_seconds".into(), ttl.as_secs().max(1).into());
        }
        if let Some(info) = &self.info {
            body.insert("info".into(), info.clone());
        }
        serde_json::Value::Object(body)
    }
}

/// A minted token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MintedToken {
    /// The JWT to give the realtime client.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BatchItem {
    Err(ErrorEnvelope),
    Ok(Accepted),
}

#[derive(Deserialize)]
struct BatchAnswer {
    results: Vec<BatchItem>,
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
fn segment(s: &str) -> String {
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

/// The REST client for backends.
///
/// ```no_run
/// # async fn demo() -> Result<(), herald_sdk::RestError> {
/// use herald_sdk::{BatchMessage, Publisher, TokenRequest};
///
/// let publisher = Publisher::new("http://127.0.0.1:8080", "my-app", "hk_…")?;
/// publisher.publish("orders", serde_json::json!({"id": 42, "status": "shipped"})).await?;
/// let results = publisher
///     .publish_batch(vec![BatchMessage::new("a", "one"), BatchMessage::new("b", "two").name("greeting")])
///     .await?;
/// assert_eq!(results.len(), 2);
/// let token = publisher.mint_token(&TokenRequest::new("user-42").allow("chat:*", ["subscribe"])).await?;
/// println!("{}", token.token);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<PublisherInner>,
}

struct PublisherInner {
    http: HttpClient<HttpConnector, Full<Bytes>>,
    base: String,
    app_id: String,
    auth: HeaderValue,
    timeout: Duration,
    max_retries: u32,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the API key.
        f.debug_struct("Publisher").field("base", &self.inner.base).field("app_id", &self.inner.app_id).finish()
    }
}

/// Settings of a [`Publisher`].
#[derive(Debug, Clone)]
pub struct PublisherBuilder {
    api_url: String,
    app_id: String,
    api_key: String,
    timeout: Duration,
    max_retries: u32,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PublisherBuilder {
    /// Longest wait for one request, retries included (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries of requests the control plane did not accept (default 3).
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// TLS settings for `https://`.
    #[must_use]
    pub fn tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Builds the publisher. Needs no runtime; requests do.
    ///
    /// # Errors
    ///
    /// [`RestError::Config`] for a URL that is not `http://` or `https://`,
    /// an empty app id, or an API key that cannot go in a header.
    pub fn build(self) -> Result<Publisher, RestError> {
        let endpoint = Endpoint::parse_with_default_path(&self.api_url, "/").map_err(RestError::Config)?;
        if self.app_id.is_empty() {
            return Err(RestError::Config("the app id is empty".into()));
        }
        if self.timeout.is_zero() {
            return Err(RestError::Config("the timeout must be above zero".into()));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key))
            .map_err(|_| RestError::Config("the API key holds characters that cannot go in a header".into()))?;
        auth.set_sensitive(true);
        let scheme = if endpoint.tls { "https" } else { "http" };
        let prefix = endpoint.path.trim_end_matches('/');
        let base = format!("{scheme}://{}{prefix}", endpoint.authority);
        let connector = HttpConnector { tls: self.tls.unwrap_or_else(default_tls) };
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Publisher {
            inner: Arc::new(PublisherInner {
                http,
                base,
                app_id: self.app_id,
                auth,
                timeout: self.timeout,
                max_retries: self.max_retries,
            }),
        })
    }
}

impl Publisher {
    /// A publisher for app `app_id` on the control plane at `api_url`
    /// (e.g. `http://127.0.0.1:8080`), with its API key.
    ///
    /// # Errors
    ///
    /// As [`PublisherBuilder::build`].
    pub fn new(
        api_url: impl Into<String>,
        app_id: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Result<Self, RestError> {
        Self::builder(api_url, app_id, api_key).build()
    }

    /// Starts configuring a publisher.
    #[must_use]
    pub fn builder(
        api_url: impl Into<String>,
        app_id: impl Into<String>,
        api_key: impl Into<String>,
    ) -> PublisherBuilder {
        PublisherBuilder {
            api_url: api_url.into(),
            app_id: app_id.into(),
            api_key: api_key.into(),
            timeout: Duration::from_secs(10),
            max_retries: 3,
            tls: None,
        }
    }

    /// The app this publisher acts for.
    #[must_use]
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// Publishes `data` to `channel`; resolves once the control plane's bus
    /// accepted it (HTTP 202).
    ///
    /// # Errors
    ///
    /// [`RestError::Api`] with `invalid_channel`, `unauthorized`,
    /// `forbidden`, `too_large`, `rate_limited` or `unavailable` (the last
    /// two after the retries); [`RestError::Transport`];
    /// [`RestError::TimedOut`].
    pub async fn publish(&self, channel: &str, data: impl Into<Data>) -> Result<Accepted, RestError> {
        self.publish_message(channel, data, None, None).await
    }

    /// Publishes with an event `name` and an idempotency `id`.
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    pub async fn publish_message(
        &self,
        channel: &str,
        data: impl Into<Data>,
        name: Option<&str>,
        id: Option<&str>,
    ) -> Result<Accepted, RestError> {
        let (data, encoding) = data.into().fields();
        let mut body = serde_json::Map::new();
        body.insert("data".into(), data);
        if let Some(encoding) = encoding {
            body.insert("encoding".into(), encoding.into());
        }
        if let Some(name) = name {
            body.insert("name".into(), name.into());
        }
        if let Some(id) = id {
            body.insert("id".into(), id.into());
        }
        let path = format!("/v1/apps/{}/channels/{}/messages", segment(&self.inner.app_id), segment(channel));
        let (_, bytes) = self.request(Method::POST, &path, &serde_json::Value::Object(body)).await?;
        decode(StatusCode::ACCEPTED, &bytes)
    }

    /// Publishes several messages in one request; one result per message,
    /// in order. Messages to one channel keep their order.
    ///
    /// # Errors
    ///
    /// The outer error when the whole request failed (`bad_request`,
    /// `limit_exceeded` past the batch size, `unauthorized`, …); the inner
    /// ones per message (a 503 answer carries `unavailable` for messages
    /// that were not accepted and may be sent again).
    pub async fn publish_batch(
        &self,
        messages: Vec<BatchMessage>,
    ) -> Result<Vec<Result<Accepted, RestError>>, RestError> {
        let body = serde_json::json!({ "messages": messages.iter().map(BatchMessage::to_json).collect::<Vec<_>>() });
        let path = format!("/v1/apps/{}/messages", segment(&self.inner.app_id));
        let (status, bytes) = self.request_batch(&path, &body).await?;
        let answer: BatchAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| RestError::Decode { status: status.as_u16(), detail: e.to_string() })?;
        Ok(answer
            .results
            .into_iter()
            .map(|item| match item {
                BatchItem::Ok(accepted) => Ok(accepted),
                BatchItem::Err(envelope) => Err(api_error(status.as_u16(), envelope.error, None)),
            })
            .collect())
    }

    /// Mints a token for an end user.
    ///
    /// # Errors
    ///
    /// [`RestError::Api`] with `bad_request` (bad capabilities, ttl or
    /// info), `unauthorized`, `forbidden` (capabilities beyond the key's),
    /// `not_found`; [`RestError::Transport`]; [`RestError::TimedOut`].
    pub async fn mint_token(&self, request: &TokenRequest) -> Result<MintedToken, RestError> {
        let path = format!("/v1/apps/{}/tokens", segment(&self.inner.app_id));
        let (_, bytes) = self.request(Method::POST, &path, &request.to_json()).await?;
        decode(StatusCode::OK, &bytes)
    }

    /// A [`crate::TokenProvider`] that mints `request` on each call: the
    /// simplest way to run the realtime client in a trusted process (a
    /// service, a CLI, a test).
    pub fn token_provider(
        &self,
        request: TokenRequest,
    ) -> impl Fn() -> Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>> + Send + Sync + 'static + use<>
    {
        let publisher = self.clone();
        let request = Arc::new(request);
        move || {
            let publisher = publisher.clone();
            let request = request.clone();
            Box::pin(async move {
                publisher.mint_token(&request).await.map(|t| t.token).map_err(|e| Box::new(e) as BoxError)
            })
        }
    }

    async fn request(
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
    async fn request_batch(&self, path: &str, body: &serde_json::Value) -> Result<(StatusCode, Bytes), RestError> {
        let (status, bytes, retry_after) = self.send_with_retries(Method::POST, path, body, false).await?;
        if status.is_success() {
            return Ok((status, bytes));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE && serde_json::from_slice::<BatchAnswer>(&bytes).is_ok() {
            return Ok((status, bytes));
        }
        Err(error_from(status, &bytes, retry_after))
    }

    async fn send_with_retries(
        &self,
        method: Method,
        path: &str,
        body: &serde_json::Value,
        retry_unavailable: bool,
    ) -> Result<(StatusCode, Bytes, Option<Duration>), RestError> {
        let limit = self.inner.timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let body = Bytes::from(serde_json::to_vec(body).map_err(|e| RestError::Config(e.to_string()))?);
        let uri = format!("{}{path}", self.inner.base);
        let mut attempt = 0u32;
        loop {
            let outcome = tokio::time::timeout_at(deadline, self.send_once(&method, &uri, body.clone())).await;
            let retry_in = match outcome {
                Err(_) => return Err(RestError::TimedOut(limit)),
                Ok(Ok((status, bytes, retry_after))) => {
                    let refused = status == StatusCode::TOO_MANY_REQUESTS
                        || (retry_unavailable && status == StatusCode::SERVICE_UNAVAILABLE);
                    if !refused || attempt >= self.inner.max_retries {
                        return Ok((status, bytes, retry_after));
                    }
                    tracing::debug!(%status, attempt, "request not accepted; retrying");
                    retry_after.unwrap_or_else(|| retry_delay(attempt))
                }
                Ok(Err(SendError::NotSent(e))) if attempt < self.inner.max_retries => {
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

    async fn send_once(
        &self,
        method: &Method,
        uri: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes, Option<Duration>), SendError> {
        let request = http::Request::builder()
            .method(method.clone())
            .uri(uri)
            .header(header::AUTHORIZATION, self.inner.auth.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, concat!("herald-sdk-rust/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(body))
            .map_err(|e| SendError::Failed(e.to_string()))?;
        let response = self.inner.http.request(request).await.map_err(|e| {
            if e.is_connect() {
                SendError::NotSent(format!("{uri}: {e}"))
            } else {
                SendError::Failed(format!("{uri}: {e}"))
            }
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

enum SendError {
    /// Nothing reached the control plane: safe to retry.
    NotSent(String),
    Failed(String),
}

fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6)))
}

fn decode<T: serde::de::DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, RestError> {
    serde_json::from_slice(bytes).map_err(|e| RestError::Decode { status: status.as_u16(), detail: e.to_string() })
}

fn error_from(status: StatusCode, bytes: &[u8], retry_after: Option<Duration>) -> RestError {
    match serde_json::from_slice::<ErrorEnvelope>(bytes) {
        Ok(envelope) => api_error(status.as_u16(), envelope.error, retry_after),
        Err(_) => RestError::Api {
            status: status.as_u16(),
            code: code_for_status(status.as_u16()),
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            retry_after,
        },
    }
}

fn api_error(status: u16, detail: ErrorDetail, retry_after: Option<Duration>) -> RestError {
    let code = ErrorCode::from_name(&detail.code).unwrap_or_else(|| code_for_status(status));
    RestError::Api { status, code, message: detail.message, retry_after }
}

fn code_for_status(status: u16) -> ErrorCode {
    match status {
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::TooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Publisher>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("chat:room-1"), "chat%3Aroom-1");
        assert_eq!(segment("a/b#c"), "a%2Fb%23c");
        assert_eq!(segment("plain_name~1"), "plain_name~1");
    }

    #[test]
    fn payloads_encode_as_the_api_expects() {
        let m = BatchMessage::new("a", serde_json::json!({"x": 1})).name("e").id("i");
        assert_eq!(m.to_json(), serde_json::json!({"channel": "a", "data": {"x": 1}, "name": "e", "id": "i"}));
        let m = BatchMessage::new("a", vec![0u8, 1]).also_to("b");
        assert_eq!(m.to_json(), serde_json::json!({"channels": ["a", "b"], "data": "AAE=", "encoding": "base64"}));
        let t = TokenRequest::new("u").allow("chat:*", ["subscribe"]).ttl(Duration::from_secs(60));
        assert_eq!(
            t.to_json(),
            serde_json::json!({"client_id": "u", "capabilities": {"chat:*": ["subscribe"]}, "ttl_seconds": 60})
        );
    }

    #[test]
    fn errors_keep_the_herald_code() {
        let e = error_from(StatusCode::FORBIDDEN, br#"{"error": {"code": "forbidden", "message": "no"}}"#, None);
        assert_eq!(e.code(), Some(ErrorCode::Forbidden));
        assert_eq!(e.to_string(), "forbidden: no (HTTP 403)");
        let e = error_from(StatusCode::BAD_GATEWAY, b"<html>", None);
        assert_eq!(e.code(), Some(ErrorCode::Internal));
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(matches!(Publisher::new("ftp://x", "a", "k"), Err(RestError::Config(_))));
        assert!(matches!(Publisher::new("http://x", "", "k"), Err(RestError::Config(_))));
        assert!(matches!(Publisher::new("http://x", "a", "bad\nkey"), Err(RestError::Config(_))));
        let p = Publisher::new("https://api.example.com/herald/", "a", "k").expect("valid");
        assert_eq!(p.inner.base, "https://api.example.com/herald");
        assert!(!format!("{p:?}").contains("Bearer"));
    }
}
