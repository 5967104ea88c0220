//! [`ClientConfig`]: every timeout, bound and policy of the realtime client,
//! with defaults that suit a mobile app on a bad network.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::net::Endpoint;

/// Settings of a [`crate::Client`]. Build one through
/// [`crate::Client::builder`]; every field has a default.
///
/// Every queue the client keeps is bounded here:
/// `publish_queue_capacity` (publishes waiting for a connection),
/// `max_in_flight_publishes` (sent, not yet acknowledged),
/// `subscription_buffer` (messages waiting to be read, per subscription),
/// `user_event_buffer` (user events waiting to be read, per
/// [`crate::UserEvents`]),
/// `command_buffer` (calls waiting for the client task),
/// `write_buffer` (frames waiting for the socket),
/// `inbound_buffer` (frames read, waiting for the client task) and
/// `state_event_buffer` (state transitions per [`crate::StateEvents`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use herald_sdk::Client;
///
/// let client = Client::builder("ws://127.0.0.1:8081")
///     .token("eyJ…")
///     .publish_timeout(Duration::from_secs(5))
///     .configure(|config| config.client_name = "checkout-page".into())
///     .connect_lazy()?; // connects in the background
/// let config = client.config();
/// assert_eq!((config.client_name.as_str(), config.publish_timeout), ("checkout-page", Duration::from_secs(5)));
/// assert_eq!(config.urls, ["ws://127.0.0.1:8081"]);
/// client.close().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Edge URLs (`ws://host:port` or `wss://…`; the path defaults to
    /// `/v1/connect`). Each reconnect moves to the next one.
    pub urls: Vec<String>,
    /// Sent in `Connect.client_name`, for the edge's logs.
    pub client_name: String,
    /// Reconnect policy.
    pub backoff: Backoff,
    /// Longest time one attempt may take: TCP, TLS, the upgrade and the
    /// edge's `Connected`; also the longest wait for the token provider.
    pub attempt_timeout: Duration,
    /// How long [`crate::ClientBuilder::connect`] keeps trying before it
    /// returns [`crate::Error::Connect`].
    pub connect_timeout: Duration,
    /// Longest wait for the answer to a subscribe, unsubscribe, ping or
    /// presence query (including the time spent waiting for a connection).
    pub request_timeout: Duration,
    /// Longest wait for a publish's acknowledgement, including the time it
    /// waited in the queue. Overridable per publish.
    pub publish_timeout: Duration,
    /// Longest time [`crate::Client::close`] waits for queued and in-flight
    /// publishes before it closes the socket.
    pub close_timeout: Duration,
    /// A write to the socket making no progress this long drops the
    /// connection (and a reconnect follows).
    pub write_timeout: Duration,
    /// Publishes that wait for a connection or for the rate limit; past it
    /// a publish fails at once with [`crate::Error::QueueFull`].
    pub publish_queue_capacity: usize,
    /// Publishes sent and not yet acknowledged.
    pub max_in_flight_publishes: usize,
    /// Messages buffered per subscription; when the application reads
    /// slower than messages arrive, the newest are dropped and the
    /// subscription reports [`crate::SubscriptionEvent::Lagged`].
    pub subscription_buffer: usize,
    /// User events buffered per [`crate::UserEvents`]; when the application
    /// reads slower than they arrive, the newest are dropped and the reader
    /// is told with [`crate::UserEvent::Lagged`].
    pub user_event_buffer: usize,
    /// Calls waiting for the client task.
    pub command_buffer: usize,
    /// Frames waiting to be written to the socket.
    pub write_buffer: usize,
    /// Frames read from the socket and waiting for the client task.
    pub inbound_buffer: usize,
    /// Transitions buffered per [`crate::StateEvents`] reader.
    pub state_event_buffer: usize,
    /// Largest WebSocket message accepted from the edge.
    pub max_inbound_message_bytes: usize,
    /// Refresh the token when this fraction of its lifetime has passed.
    pub token_refresh_at: f64,
    /// Send an app-level `Ping` this often; `None`: the edge's heartbeat
    /// interval from `Connected`.
    pub ping_interval: Option<Duration>,
    /// Consider the connection dead after this long without a frame from
    /// the edge; `None`: the edge's heartbeat timeout from `Connected`.
    pub heartbeat_timeout: Option<Duration>,
    /// Retries of a publish the edge refused with `rate_limited`.
    pub rate_limited_retries: u32,
    /// TLS settings for `wss://`; `None`: the Mozilla root certificates
    /// (webpki-roots) with the ring provider.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            client_name: concat!("herald-sdk-rust/", env!("CARGO_PKG_VERSION")).to_owned(),
            backoff: Backoff::default(),
            attempt_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            publish_queue_capacity: 1024,
            max_in_flight_publishes: 256,
            subscription_buffer: 4096,
            user_event_buffer: 1024,
            command_buffer: 256,
            write_buffer: 1024,
            inbound_buffer: 1024,
            state_event_buffer: 64,
            max_inbound_message_bytes: 16 * 1024 * 1024 + 4096,
            token_refresh_at: 0.8,
            ping_interval: None,
            heartbeat_timeout: None,
            rate_limited_retries: 5,
            tls: None,
        }
    }
}

impl ClientConfig {
    /// Checks every value.
    ///
    /// # Errors
    ///
    /// A message naming the first field out of range.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let builder = herald_sdk::Client::builder("ws://127.0.0.1:8081").configure(|c| c.request_timeout = Duration::from_secs(5));
    /// # let _ = builder;
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("urls: give at least one edge URL".into());
        }
        for url in &self.urls {
            Endpoint::parse(url).map_err(|e| format!("urls: {e}"))?;
        }
        self.backoff.validate()?;
        let positive = [
            ("attempt_timeout", self.attempt_timeout),
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
            ("publish_timeout", self.publish_timeout),
            ("write_timeout", self.write_timeout),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err(format!("{name} must be above zero"));
            }
        }
        let bounds = [
            ("publish_queue_capacity", self.publish_queue_capacity),
            ("max_in_flight_publishes", self.max_in_flight_publishes),
            ("subscription_buffer", self.subscription_buffer),
            ("user_event_buffer", self.user_event_buffer),
            ("command_buffer", self.command_buffer),
            ("write_buffer", self.write_buffer),
            ("inbound_buffer", self.inbound_buffer),
            ("state_event_buffer", self.state_event_buffer),
        ];
        for (name, n) in bounds {
            if n == 0 {
                return Err(format!("{name} must be above zero"));
            }
        }
        if self.max_inbound_message_bytes < 1024 {
            return Err("max_inbound_message_bytes must be at least 1024".into());
        }
        if !(self.token_refresh_at > 0.0 && self.token_refresh_at < 1.0) {
            return Err("token_refresh_at must be in (0, 1)".into());
        }
        if self.ping_interval.is_some_and(|d| d.is_zero()) {
            return Err("ping_interval must be above zero".into());
        }
        if self.heartbeat_timeout.is_some_and(|d| d.is_zero()) {
            return Err("heartbeat_timeout must be above zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_once_a_url_is_given() {
        let mut c = ClientConfig::default();
        assert!(c.validate().unwrap_err().contains("urls"));
        c.urls.push("ws://127.0.0.1:8080".into());
        c.validate().expect("valid");
        c.publish_queue_capacity = 0;
        assert!(c.validate().unwrap_err().contains("publish_queue_capacity"));
        c.publish_queue_capacity = 1;
        c.urls.push("ftp://x".into());
        assert!(c.validate().unwrap_err().contains("urls"));
    }
}
