//! [`Publisher`]: the control plane's REST API for backends, with an API
//! key: publish one message (optionally keeping it from one connection),
//! publish a batch, send an event to a user, terminate a user's
//! connections, mint tokens for end users.
//!
//! It speaks HTTP/1.1 over `http://` or `https://` (rustls with the Mozilla
//! roots and ring) through one pooled client, so a `Publisher` is cheap to
//! clone and share. Requests the control plane did not accept — connection
//! refused, `429 rate_limited`, `503 unavailable` — are retried with
//! backoff (honouring `Retry-After`) up to `max_retries` times; other
//! failures are returned as [`RestError`] with the Herald error code.
//!
//! The request and answer bodies are in `body`, the errors in `error`, the
//! HTTP client and its retries in `rest`.

mod body;
mod error;
mod rest;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};

use herald_proto::ClientId;

pub use self::body::{Accepted, BatchMessage, Data, MessageOptions, MintedToken, TokenRequest};
use self::body::{BatchAnswer, UserEventAccepted, UserTerminated, user_event_body};
pub use self::error::RestError;
use self::error::decode;
use self::rest::{Rest, segment};
use crate::net::{Endpoint, default_tls};
#[cfg(feature = "realtime")]
use crate::token::BoxError;

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
    rest: Rest,
    app_id: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the API key.
        f.debug_struct("Publisher").field("base", &self.inner.rest.base).field("app_id", &self.inner.app_id).finish()
    }
}

/// Settings of a [`Publisher`].
///
/// ```
/// use std::time::Duration;
/// use herald_sdk::Publisher;
/// let publisher = Publisher::builder("http://127.0.0.1:8080", "my-app", "hk_…")
///     .timeout(Duration::from_secs(3))
///     .max_retries(1)
///     .build()?; // nothing is sent until a call
/// assert_eq!(publisher.app_id(), "my-app");
/// assert!(Publisher::builder("http://127.0.0.1:8080", "", "hk_…").build().is_err(), "no app id");
/// # Ok::<(), herald_sdk::RestError>(())
/// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use herald_sdk::Publisher;
    ///
    /// let publisher = Publisher::builder("http://127.0.0.1:8080", "my-app", "hk_…").timeout(Duration::from_secs(3)).build()?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Retries of requests the control plane did not accept (default 3).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::Publisher;
    ///
    /// let publisher = Publisher::builder("http://127.0.0.1:8080", "my-app", "hk_…").max_retries(0).build()?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// TLS settings for `https://`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use herald_sdk::Publisher;
    ///
    /// // Trust a private CA (its certificate in DER) instead of the web PKI.
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(rustls::pki_types::CertificateDer::from(std::fs::read("private-ca.der")?))?;
    /// let tls = Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth());
    /// let publisher = Publisher::builder("https://herald.internal", "my-app", "hk_…").tls_config(tls).build()?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::Publisher;
    ///
    /// let publisher = Publisher::builder("http://127.0.0.1:8080", "my-app", "hk_…").build()?;
    /// assert_eq!(publisher.app_id(), "my-app");
    /// # Ok(()) }
    /// ```
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
        let tls = self.tls.unwrap_or_else(default_tls);
        let rest = Rest::new(&endpoint, tls, auth, self.timeout, self.max_retries);
        Ok(Publisher { inner: Arc::new(PublisherInner { rest, app_id: self.app_id }) })
    }
}

impl Publisher {
    /// A publisher for app `app_id` on the control plane at `api_url`
    /// (e.g. `http://127.0.0.1:8080`), with its API key.
    ///
    /// # Errors
    ///
    /// As [`PublisherBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::Publisher;
    ///
    /// let publisher = Publisher::new("http://127.0.0.1:8080", "my-app", "hk_…")?;
    /// # Ok(()) }
    /// ```
    pub fn new(
        api_url: impl Into<String>,
        app_id: impl Into<String>,
        api_key: impl Into<String>,
    ) -> Result<Self, RestError> {
        Self::builder(api_url, app_id, api_key).build()
    }

    /// Starts configuring a publisher.
    ///
    /// # Examples
    ///
    /// ```
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::Publisher;
    ///
    /// let publisher = Publisher::builder("http://127.0.0.1:8080", "my-app", "hk_…").max_retries(1).build()?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
    /// assert!(!publisher.app_id().is_empty());
    /// # Ok(()) }
    /// ```
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
    /// let accepted = publisher.publish("chat:lobby", "hello").await?;
    /// println!("message {}", accepted.id);
    /// # Ok(()) }
    /// ```
    pub async fn publish(&self, channel: &str, data: impl Into<Data>) -> Result<Accepted, RestError> {
        self.publish_with(channel, data, MessageOptions::default()).await
    }

    /// Publishes with an event `name` and an idempotency `id`.
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
    /// publisher
    ///     .publish_message("orders:42", serde_json::json!({"status": "paid"}), Some("order.updated"), Some("order-42-v3"))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_message(
        &self,
        channel: &str,
        data: impl Into<Data>,
        name: Option<&str>,
        id: Option<&str>,
    ) -> Result<Accepted, RestError> {
        let options =
            MessageOptions { name: name.map(str::to_owned), id: id.map(str::to_owned), exclude_connection: None };
        self.publish_with(channel, data, options).await
    }

    /// Publishes with [`MessageOptions`]: an event name, an idempotency id,
    /// and a connection that must not receive the message (typically the
    /// sender's own realtime connection, [`crate::Client::connection_id`]).
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher, app: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::MessageOptions;
    ///
    /// // The app asked its backend to post a chat line; everyone else gets it.
    /// let me = app.connection_id().ok_or("not connected")?;
    /// publisher.publish_with("chat:lobby", "hello", MessageOptions::new().name("line").exclude_connection(me)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Self::publish`]; [`RestError::Api`] with `bad_request` when
    /// `exclude_connection` is not a connection id (`"1234.5678"`), or the
    /// name or id is too long.
    pub async fn publish_with(
        &self,
        channel: &str,
        data: impl Into<Data>,
        options: MessageOptions,
    ) -> Result<Accepted, RestError> {
        let body = options.body(&data.into());
        let path = format!("/v1/apps/{}/channels/{}/messages", segment(&self.inner.app_id), segment(channel));
        let (_, bytes) = self.inner.rest.request(Method::POST, &path, &body).await?;
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
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::BatchMessage;
    ///
    /// let results = publisher
    ///     .publish_batch(vec![BatchMessage::new("chat:a", "one"), BatchMessage::new("chat:b", "two").name("note")])
    ///     .await?;
    /// assert_eq!(results.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn publish_batch(
        &self,
        messages: Vec<BatchMessage>,
    ) -> Result<Vec<Result<Accepted, RestError>>, RestError> {
        let body = serde_json::json!({ "messages": messages.iter().map(BatchMessage::to_json).collect::<Vec<_>>() });
        let path = format!("/v1/apps/{}/messages", segment(&self.inner.app_id));
        let (status, bytes) = self.inner.rest.request_batch(&path, &body).await?;
        let answer: BatchAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| RestError::Decode { status: status.as_u16(), detail: e.to_string() })?;
        Ok(answer.into_results(status.as_u16()))
    }

    /// Sends an event to every connection of user `user_id` (the realtime
    /// clients whose token's subject it is, and Pusher connections signed in
    /// as it), on every edge, whatever their channels; returns the event's
    /// id once the control plane's bus accepted it. The client receives it
    /// through [`crate::Client::user_events`]. Needs an API key that allows
    /// `publish` on every channel (`"*"`).
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), herald_sdk::RestError> {
    /// let id = publisher.publish_to_user("user-42", serde_json::json!({"unread": 3}), Some("inbox.updated")).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`RestError::InvalidInput`] for a user id that is not a client id
    /// (empty, over 255 bytes, control characters), before anything is
    /// sent; [`RestError::Api`] with `bad_request` (event name),
    /// `forbidden` (a key without `publish` on every channel), `too_large`,
    /// `rate_limited` or `unavailable` (after the retries);
    /// [`RestError::Transport`]; [`RestError::TimedOut`].
    pub async fn publish_to_user(
        &self,
        user_id: &str,
        data: impl Into<Data>,
        name: Option<&str>,
    ) -> Result<String, RestError> {
        let path = self.user_path(user_id, "messages")?;
        let body = user_event_body(&data.into(), name);
        let (_, bytes) = self.inner.rest.request(Method::POST, &path, &body).await?;
        decode::<UserEventAccepted>(StatusCode::ACCEPTED, &bytes).map(|a| a.id)
    }

    /// Closes every connection of user `user_id` on every edge: realtime
    /// clients whose token's subject it is end with the terminal close code
    /// `user_terminated` (4504) and do not reconnect by themselves. The user
    /// may connect again. Resolves once the control plane's bus accepted
    /// the order. Needs an API key that allows `publish` on every channel.
    ///
    /// # Errors
    ///
    /// As [`Self::publish_to_user`] (`unavailable`: nothing was closed;
    /// retry).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
    /// publisher.terminate_user("user-42").await?;
    /// # Ok(()) }
    /// ```
    pub async fn terminate_user(&self, user_id: &str) -> Result<(), RestError> {
        let path = self.user_path(user_id, "terminate")?;
        let (_, bytes) = self.inner.rest.request(Method::POST, &path, &serde_json::json!({})).await?;
        let answer: UserTerminated = decode(StatusCode::ACCEPTED, &bytes)?;
        tracing::debug!(user = %answer.user_id, "user's connections terminated");
        Ok(())
    }

    /// `/v1/apps/{app}/users/{user}/{action}`, once `user_id` is a valid
    /// client id.
    fn user_path(&self, user_id: &str, action: &str) -> Result<String, RestError> {
        let user = ClientId::new(user_id).map_err(|e| RestError::InvalidInput(format!("user id: {e}")))?;
        Ok(format!("/v1/apps/{}/users/{}/{action}", segment(&self.inner.app_id), segment(user.as_str())))
    }

    /// Mints a token for an end user.
    ///
    /// # Errors
    ///
    /// [`RestError::Api`] with `bad_request` (bad capabilities, ttl or
    /// info), `unauthorized`, `forbidden` (capabilities beyond the key's),
    /// `not_found`; [`RestError::Transport`]; [`RestError::TimedOut`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use herald_sdk::TokenRequest;
    ///
    /// let request = TokenRequest::new("user-42").allow("chat:*", ["subscribe", "publish"]).ttl(Duration::from_secs(3600));
    /// let minted = publisher.mint_token(&request).await?;
    /// println!("{}", minted.token);
    /// # Ok(()) }
    /// ```
    pub async fn mint_token(&self, request: &TokenRequest) -> Result<MintedToken, RestError> {
        let path = format!("/v1/apps/{}/tokens", segment(&self.inner.app_id));
        let (_, bytes) = self.inner.rest.request(Method::POST, &path, &request.to_json()).await?;
        decode(StatusCode::OK, &bytes)
    }

    /// A [`crate::TokenProvider`] that mints `request` on each call: the
    /// simplest way to run the realtime client in a trusted process (a
    /// service, a CLI, a test). Needs the `realtime` feature too.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(publisher: herald_sdk::Publisher) -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_sdk::{Client, TokenRequest};
    ///
    /// let tokens = publisher.token_provider(TokenRequest::new("worker-1").allow("jobs:*", ["subscribe"]));
    /// let client = Client::builder("ws://127.0.0.1:8081").token_provider(tokens).connect().await?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "realtime")]
    pub fn token_provider(
        &self,
        request: TokenRequest,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, BoxError>> + Send>>
    + Send
    + Sync
    + 'static
    + use<> {
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
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Publisher>();
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configuration_is_refused() {
        assert!(matches!(Publisher::new("ftp://x", "a", "k"), Err(RestError::Config(_))));
        assert!(matches!(Publisher::new("http://x", "", "k"), Err(RestError::Config(_))));
        assert!(matches!(Publisher::new("http://x", "a", "bad\nkey"), Err(RestError::Config(_))));
        let p = Publisher::new("https://api.example.com/herald/", "a", "k").expect("valid");
        assert_eq!(p.inner.rest.base, "https://api.example.com/herald");
        assert!(!format!("{p:?}").contains("Bearer"));
    }
}
