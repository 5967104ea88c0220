//! [`ClientBuilder`]: a [`Client`]'s configuration, and starting it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::{Client, Inner};
use crate::backoff::Backoff;
use crate::config::ClientConfig;
use crate::driver::Driver;
use crate::error::Error;
use crate::net::default_tls;
use crate::state::ConnectionState;
use crate::token::{TokenProvider, TokenSource};
use crate::transport::{Connector, WsConnector};

impl Client {
    /// Starts configuring a client for the edge at `url` (`ws://host:port`
    /// or `wss://host`; the path defaults to `/v1/connect`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = herald_sdk::Client::builder("ws://127.0.0.1:8081").token("eyJ…").connect().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        let config = ClientConfig { urls: vec![url.into()], ..ClientConfig::default() };
        ClientBuilder { config, token: None, connector: None }
    }
}

/// Configures and starts a [`Client`].
///
/// ```no_run
/// # async fn demo() -> Result<(), herald_sdk::Error> {
/// use std::time::Duration;
/// use herald_sdk::{Backoff, Client};
///
/// let client = Client::builder("wss://edge-1.example.com")
///     .url("wss://edge-2.example.com")
///     .token_provider(|| async { fetch_token_from_my_backend().await })
///     .backoff(Backoff::default().with_max(Duration::from_secs(10)))
///     .publish_queue_capacity(500)
///     .connect()
///     .await?;
/// # Ok(()) }
/// # async fn fetch_token_from_my_backend() -> Result<String, std::io::Error> { Ok(String::new()) }
/// ```
pub struct ClientBuilder {
    config: ClientConfig,
    token: Option<TokenSource>,
    connector: Option<Arc<dyn Connector>>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder").field("config", &self.config).field("token", &self.token).finish()
    }
}

impl ClientBuilder {
    /// Adds another edge URL; reconnects move through them in order.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = herald_sdk::Client::builder("wss://edge-1.example.com")
    ///     .url("wss://edge-2.example.com")
    ///     .token("eyJ…")
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.urls.push(url.into());
        self
    }

    /// A fixed token. The client cannot refresh it: when it expires the edge
    /// closes with `token_expired` and the client stops with
    /// [`Error::Terminal`]. Prefer [`Self::token_provider`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = herald_sdk::Client::builder("ws://127.0.0.1:8081").token("eyJ…").connect().await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(TokenSource::Static(token.into()));
        self
    }

    /// Where fresh tokens come from: called for the first connection, at
    /// `token_refresh_at` of each token's lifetime (the new token is handed
    /// to the edge in band, without a gap in delivery), and after the edge
    /// closed with `token_expired` or `key_revoked`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = herald_sdk::Client::builder("ws://127.0.0.1:8081")
    ///     .token_provider(|| async { Ok::<_, std::io::Error>("eyJ…".to_owned()) })
    ///     .connect()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.token = Some(TokenSource::Provider(Arc::new(provider)));
        self
    }

    /// The reconnect policy.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::{Backoff, Client};
    ///
    /// let builder = Client::builder("ws://127.0.0.1:8081").backoff(Backoff::default().with_max(Duration::from_secs(5)));
    /// ```
    #[must_use]
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.config.backoff = backoff;
        self
    }

    /// Bound of the queue of publishes waiting for a connection.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = herald_sdk::Client::builder("ws://127.0.0.1:8081").publish_queue_capacity(100);
    /// ```
    #[must_use]
    pub fn publish_queue_capacity(mut self, capacity: usize) -> Self {
        self.config.publish_queue_capacity = capacity;
        self
    }

    /// Messages buffered per subscription.
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = herald_sdk::Client::builder("ws://127.0.0.1:8081").subscription_buffer(4096);
    /// ```
    #[must_use]
    pub fn subscription_buffer(mut self, messages: usize) -> Self {
        self.config.subscription_buffer = messages;
        self
    }

    /// User events buffered per [`crate::UserEvents`].
    ///
    /// # Examples
    ///
    /// ```
    /// let builder = herald_sdk::Client::builder("ws://127.0.0.1:8081").user_event_buffer(256);
    /// ```
    #[must_use]
    pub fn user_event_buffer(mut self, events: usize) -> Self {
        self.config.user_event_buffer = events;
        self
    }

    /// Default timeout of publishes.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = herald_sdk::Client::builder("ws://127.0.0.1:8081").publish_timeout(Duration::from_secs(5));
    /// ```
    #[must_use]
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.config.publish_timeout = timeout;
        self
    }

    /// How long [`Self::connect`] keeps trying.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = herald_sdk::Client::builder("ws://127.0.0.1:8081").connect_timeout(Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// TLS settings for `wss://` (e.g. with a private root certificate).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    ///
    /// // Trust a private CA (its certificate in DER) instead of the web PKI.
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.add(rustls::pki_types::CertificateDer::from(std::fs::read("private-ca.der")?))?;
    /// let tls = Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth());
    /// let builder = herald_sdk::Client::builder("wss://edge.internal").tls_config(tls);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Changes any other setting.
    ///
    /// ```
    /// # fn demo(builder: herald_sdk::ClientBuilder) -> herald_sdk::ClientBuilder {
    /// use std::time::Duration;
    /// builder.configure(|c| {
    ///     c.request_timeout = Duration::from_secs(5);
    ///     c.ping_interval = Some(Duration::from_secs(10));
    /// })
    /// # }
    /// ```
    #[must_use]
    pub fn configure(mut self, change: impl FnOnce(&mut ClientConfig)) -> Self {
        change(&mut self.config);
        self
    }

    #[cfg(test)]
    pub(crate) fn connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.connector = Some(connector);
        self
    }

    /// Starts the client and waits for its first connection, retrying
    /// failed attempts with backoff for up to `connect_timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration or no token;
    /// [`Error::Terminal`] when the edge refused the token (or anything else
    /// terminal); [`Error::Connect`] naming the last failure when no
    /// connection succeeded in time; [`Error::GaveUp`] when
    /// `Backoff::max_attempts` ran out first.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let client = herald_sdk::Client::builder("ws://127.0.0.1:8081").token("eyJ…").connect().await?;
    /// let mut room = client.subscribe("chat:lobby").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<Client, Error> {
        let limit = self.config.connect_timeout;
        let client = self.connect_lazy()?;
        let mut events = client.state_events();
        let mut last = None;
        let wait = async {
            // The state may have moved on before the events reader existed.
            if let Some(result) = settled(&client.state()) {
                return result;
            }
            while let Some(state) = events.next().await {
                if let ConnectionState::Disconnected { reason } = &state {
                    last = Some(reason.to_string());
                }
                if let Some(result) = settled(&state) {
                    return result;
                }
            }
            Err(client.stopped())
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                client.close().await;
                Err(Error::Connect(last.unwrap_or_else(|| format!("no connection within {limit:?}"))))
            }
        }
    }

    /// Starts the client without waiting: it connects in the background,
    /// and calls made meanwhile wait for the connection (within their
    /// timeouts). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration or no token.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// // Inside a Tokio runtime; calls wait for the connection.
    /// let client = herald_sdk::Client::builder("ws://127.0.0.1:8081").token("eyJ…").connect_lazy()?;
    /// client.publish("chat:lobby", "hello").await?;
    /// # Ok(()) }
    /// ```
    pub fn connect_lazy(self) -> Result<Client, Error> {
        let Self { config, token, connector } = self;
        config.validate().map_err(Error::Config)?;
        let token = token
            .ok_or_else(|| Error::Config("no token: call .token(…) or .token_provider(…) on the builder".into()))?;
        let config = Arc::new(config);
        let connector = connector.unwrap_or_else(|| {
            Arc::new(WsConnector {
                tls: config.tls.clone().unwrap_or_else(default_tls),
                max_message: config.max_inbound_message_bytes,
                write_buffer: config.write_buffer,
                inbound_buffer: config.inbound_buffer,
                write_timeout: config.write_timeout,
            })
        });
        let (commands_tx, commands_rx) = mpsc::channel(config.command_buffer);
        let (state_tx, state_rx) =
            watch::channel(ConnectionState::Connecting { url: config.urls[0].clone(), attempt: 0 });
        let (events_tx, _) = broadcast::channel(config.state_event_buffer);
        let driver = Driver::new(config.clone(), connector, token, commands_rx, state_tx, events_tx.clone());
        tokio::spawn(driver.run());
        Ok(Client { inner: Arc::new(Inner { commands: commands_tx, state: state_rx, events: events_tx, config }) })
    }
}

/// `Some` once the first connection succeeded or the client stopped.
fn settled(state: &ConnectionState) -> Option<Result<(), Error>> {
    match state {
        ConnectionState::Connected(_) => Some(Ok(())),
        ConnectionState::Closed { error } => Some(Err(error.clone().unwrap_or(Error::Closed))),
        _ => None,
    }
}
