//! [`Client`]: the `Clone` handle applications hold, and (in `builder`)
//! [`ClientBuilder`].
//!
//! Every call becomes a command (see the `command` module) to the one task
//! that owns the connection (see the `driver` module); the handle waits for
//! its answer with the configured timeout.

mod builder;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use herald_proto::{ChannelName, client};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::command::Command;
pub use crate::command::PublishAck;
use crate::config::ClientConfig;
use crate::error::Error;
use crate::event::Member;
use crate::state::{ConnectionInfo, ConnectionState, StateEvents};
use crate::subscription::Subscription;
use crate::user_events::UserEvents;

pub use builder::ClientBuilder;

/// Options of one publish.
///
/// ```
/// use std::time::Duration;
/// use herald_sdk::PublishOptions;
/// let options = PublishOptions::event("order.updated")
///     .with_idempotency_id("order-42-v3")
///     .with_timeout(Duration::from_secs(2));
/// assert_eq!(options.event.as_deref(), Some("order.updated"));
/// assert_eq!(PublishOptions::default().timeout, None, "the client's publish_timeout applies");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// An event name, e.g. `"order.updated"` (at most 128 bytes).
    pub event: Option<String>,
    /// An idempotency id (at most 128 bytes); it becomes the message id. A
    /// publish with one that was in flight when the connection dropped is
    /// sent again after the reconnect (subscribers can drop the duplicate
    /// by id) instead of failing with [`Error::ConnectionLost`].
    pub idempotency_id: Option<String>,
    /// Overrides `ClientConfig::publish_timeout` for this publish.
    pub timeout: Option<Duration>,
}

impl PublishOptions {
    /// Options with an event name.
    ///
    /// # Examples
    ///
    /// ```
    /// use herald_sdk::PublishOptions;
    ///
    /// let options = PublishOptions::event("order.updated");
    /// assert_eq!(options.event.as_deref(), Some("order.updated"));
    /// ```
    #[must_use]
    pub fn event(name: impl Into<String>) -> Self {
        Self { event: Some(name.into()), ..Self::default() }
    }

    /// Adds an idempotency id.
    ///
    /// # Examples
    ///
    /// ```
    /// use herald_sdk::PublishOptions;
    ///
    /// let options = PublishOptions::event("order.updated").with_idempotency_id("order-42-v3");
    /// assert_eq!(options.idempotency_id.as_deref(), Some("order-42-v3"));
    /// ```
    #[must_use]
    pub fn with_idempotency_id(mut self, id: impl Into<String>) -> Self {
        self.idempotency_id = Some(id.into());
        self
    }

    /// Sets the timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::PublishOptions;
    ///
    /// let options = PublishOptions::default().with_timeout(Duration::from_secs(2));
    /// assert_eq!(options.timeout, Some(Duration::from_secs(2)));
    /// ```
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// The acknowledgement of a publish started with [`Client::start_publish`];
/// resolves as [`Client::publish`] does.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use herald_sdk::PublishOptions;
/// // Queue several publishes at once, then wait for their acknowledgements.
/// let mut pending = Vec::new();
/// for i in 0..10 {
///     pending.push(client.start_publish("ticks", format!("{i}"), PublishOptions::default()).await?);
/// }
/// for publish in pending {
///     publish.await?;
/// }
/// # Ok(()) }
/// ```
#[must_use = "a publish's outcome is only known by awaiting it"]
pub struct PendingPublish {
    rx: oneshot::Receiver<Result<PublishAck, Error>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    client: Client,
}

impl std::fmt::Debug for PendingPublish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingPublish").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl Future for PendingPublish {
    type Output = Result<PublishAck, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match Pin::new(&mut this.rx).poll(cx) {
            Poll::Ready(Ok(result)) => return Poll::Ready(result),
            Poll::Ready(Err(_)) => return Poll::Ready(Err(this.client.stopped())),
            Poll::Pending => {}
        }
        match this.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Error::TimedOut(this.limit))),
            Poll::Pending => Poll::Pending,
        }
    }
}

struct Inner {
    commands: mpsc::Sender<Command>,
    state: watch::Receiver<ConnectionState>,
    events: broadcast::Sender<ConnectionState>,
    config: Arc<ClientConfig>,
}

/// A realtime client: a cheap `Clone` handle on one task that owns the
/// WebSocket, reconnects on its own and restores every subscription.
///
/// ```no_run
/// # async fn demo() -> Result<(), herald_sdk::Error> {
/// use herald_sdk::Client;
///
/// let client = Client::builder("ws://127.0.0.1:8081").token("eyJ…").connect().await?;
/// let mut sub = client.subscribe("chat:lobby").await?;
/// client.publish("chat:lobby", "hello").await?;
/// if let Some(message) = sub.next_message().await {
///     println!("{}", message.text().unwrap_or_default());
/// }
/// client.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("state", &*self.inner.state.borrow()).finish_non_exhaustive()
    }
}

impl Client {
    /// The configuration in force.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// println!("publishes time out after {:?}", client.config().publish_timeout);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The current connection state.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// if client.state().is_connected() {
    ///     println!("online");
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn state(&self) -> ConnectionState {
        self.inner.state.borrow().clone()
    }

    /// The current connection, when connected.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// if let Some(info) = client.connection() {
    ///     println!("connected to {} as {}", info.edge_id, info.connection_id);
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn connection(&self) -> Option<ConnectionInfo> {
        match &*self.inner.state.borrow() {
            ConnectionState::Connected(info) => Some(info.clone()),
            _ => None,
        }
    }

    /// The current connection's id, when connected: the value to give the
    /// app's backend to keep a message from this client
    /// ([`crate::MessageOptions::exclude_connection`], what a Pusher client
    /// calls its `socket_id`). Every connection has its own, so it changes
    /// with each reconnect; read it when it is needed, or follow
    /// [`Self::state_events`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// // Hand it to the backend so its publish skips this client.
    /// let socket_id = client.connection_id();
    /// println!("{socket_id:?}");
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn connection_id(&self) -> Option<String> {
        match &*self.inner.state.borrow() {
            ConnectionState::Connected(info) => Some(info.connection_id.clone()),
            _ => None,
        }
    }

    /// A receiver of the latest state (for UIs: it may skip intermediate
    /// states; see [`Self::state_events`] for every transition).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut state = client.watch_state();
    /// while state.changed().await.is_ok() {
    ///     println!("now {:?}", *state.borrow());
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.inner.state.clone()
    }

    /// Every state transition from now on, in order.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut events = client.state_events();
    /// while let Some(state) = events.next().await {
    ///     println!("{state:?}");
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn state_events(&self) -> StateEvents {
        StateEvents::new(self.inner.events.subscribe())
    }

    /// Waits until the client is connected.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] after `limit`; the error that stopped the client
    /// when it is closed.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    ///
    /// let info = client.wait_connected(Duration::from_secs(10)).await?;
    /// println!("connected: {}", info.connection_id);
    /// # Ok(()) }
    /// ```
    pub async fn wait_connected(&self, limit: Duration) -> Result<ConnectionInfo, Error> {
        let mut state = self.inner.state.clone();
        let wait = async {
            loop {
                let current = state.borrow_and_update().clone();
                match current {
                    ConnectionState::Connected(info) => return Ok(info),
                    ConnectionState::Closed { error } => return Err(error.unwrap_or(Error::Closed)),
                    _ => {}
                }
                if state.changed().await.is_err() {
                    return Err(self.stopped());
                }
            }
        };
        tokio::time::timeout(limit, wait).await.unwrap_or(Err(Error::TimedOut(limit)))
    }

    /// The error to report once the client task is gone.
    pub(crate) fn stopped(&self) -> Error {
        match &*self.inner.state.borrow() {
            ConnectionState::Closed { error: Some(e) } => e.clone(),
            _ => Error::Closed,
        }
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Error>>) -> Command,
        limit: Duration,
    ) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + limit;
        let sent = tokio::time::timeout_at(deadline, self.inner.commands.send(make(tx))).await;
        match sent {
            Err(_) => return Err(Error::TimedOut(limit)),
            Ok(Err(_)) => return Err(self.stopped()),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(Error::TimedOut(limit)),
            Ok(Err(_)) => Err(self.stopped()),
            Ok(Ok(result)) => result,
        }
    }

    /// Subscribes to `channel`. Resolves once the edge confirmed it (while
    /// disconnected, after the reconnect); messages that arrive meanwhile
    /// are kept. Several subscriptions to one channel share one on the
    /// edge.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidChannel`]; [`Error::Rejected`] when the edge refuses
    /// (`forbidden`, `limit_exceeded`, …); [`Error::TimedOut`] after
    /// `request_timeout`; [`Error::Closed`] or [`Error::Terminal`] when the
    /// client stopped.
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), herald_sdk::Error> {
    /// use futures_util::StreamExt as _;
    ///
    /// let mut sub = client.subscribe("prices:eur-usd").await?;
    /// while let Some(message) = sub.next().await {
    ///     println!("{} {:?}", message.id, message.data);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&self, channel: impl AsRef<str>) -> Result<Subscription, Error> {
        let channel = ChannelName::new(channel.as_ref())?;
        let name = channel.clone();
        let subscribed =
            self.call(|reply| Command::Subscribe { channel: name, reply }, self.inner.config.request_timeout).await?;
        Ok(Subscription {
            channel,
            id: subscribed.id,
            history: subscribed.history,
            rx: subscribed.rx,
            commands: self.inner.commands.clone(),
            request_timeout: self.inner.config.request_timeout,
            ended: None,
            unsubscribed: false,
        })
    }

    /// Ends every subscription of this client to `channel` (each one's last
    /// event is `Ended(Error::Closed)`) and tells the edge.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidChannel`]; [`Error::Rejected`] when the edge refuses;
    /// [`Error::TimedOut`] after `request_timeout`. A stopped client has no
    /// subscriptions, so this is `Ok` then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// client.unsubscribe("chat:lobby").await?;
    /// # Ok(()) }
    /// ```
    pub async fn unsubscribe(&self, channel: impl AsRef<str>) -> Result<(), Error> {
        let channel = ChannelName::new(channel.as_ref())?;
        let limit = self.inner.config.request_timeout;
        match self.call(|reply| Command::Unsubscribe { channel, sub_id: None, reply: Some(reply) }, limit).await {
            Err(Error::Closed | Error::Terminal { .. }) => Ok(()),
            other => other,
        }
    }

    /// Publishes `data` to `channel`; resolves with the edge's
    /// acknowledgement. While disconnected the publish waits in the bounded
    /// queue and goes out, in order, after the reconnect. The client keeps
    /// to the edge's publish rate limit by itself.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] at once when `publish_queue_capacity` publishes
    /// are waiting; [`Error::TimedOut`] after `publish_timeout`;
    /// [`Error::Rejected`] when the edge refuses (`forbidden`, `too_large`,
    /// …); [`Error::ConnectionLost`] when the connection dropped after it
    /// was sent; [`Error::InvalidChannel`]; [`Error::Closed`] or
    /// [`Error::Terminal`] when the client stopped.
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), herald_sdk::Error> {
    /// let ack = client.publish("chat:lobby", r#"{"text":"hi"}"#).await?;
    /// println!("published as {}", ack.id);
    /// # Ok(()) }
    /// ```
    pub async fn publish(&self, channel: impl AsRef<str>, data: impl Into<Bytes>) -> Result<PublishAck, Error> {
        self.publish_with(channel, data, PublishOptions::default()).await
    }

    /// [`Self::publish`] with an event name, an idempotency id or a timeout.
    ///
    /// # Errors
    ///
    /// As [`Self::publish`].
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), herald_sdk::Error> {
    /// use herald_sdk::PublishOptions;
    ///
    /// let options = PublishOptions::event("order.updated").with_idempotency_id("order-42-v7");
    /// client.publish_with("orders", r#"{"id":42}"#, options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_with(
        &self,
        channel: impl AsRef<str>,
        data: impl Into<Bytes>,
        options: PublishOptions,
    ) -> Result<PublishAck, Error> {
        self.start_publish(channel, data, options).await?.await
    }

    /// Hands a publish to the client task and returns at once with a future
    /// of its acknowledgement: publishes started one after the other go out
    /// in that order, however their acknowledgements are awaited. For
    /// pipelining many publishes from one task.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidChannel`]; [`Error::TimedOut`] when the client task
    /// did not take the publish within its timeout; [`Error::Closed`] or
    /// [`Error::Terminal`] when the client stopped. The returned future
    /// resolves with the errors of [`Self::publish`].
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), herald_sdk::Error> {
    /// use herald_sdk::PublishOptions;
    ///
    /// let mut pending = Vec::new();
    /// for i in 0..100 {
    ///     pending.push(client.start_publish("ticks", i.to_string(), PublishOptions::default()).await?);
    /// }
    /// for ack in pending {
    ///     ack.await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn start_publish(
        &self,
        channel: impl AsRef<str>,
        data: impl Into<Bytes>,
        options: PublishOptions,
    ) -> Result<PendingPublish, Error> {
        let channel = ChannelName::new(channel.as_ref())?;
        let publish = client::Publish {
            channel: channel.as_str().to_owned(),
            data: data.into(),
            event: options.event,
            idempotency_id: options.idempotency_id,
        };
        let limit = options.timeout.unwrap_or(self.inner.config.publish_timeout);
        let deadline = tokio::time::Instant::now() + limit;
        let (tx, rx) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.inner.commands.send(Command::Publish { publish, reply: tx })).await
        {
            Err(_) => Err(Error::TimedOut(limit)),
            Ok(Err(_)) => Err(self.stopped()),
            Ok(Ok(())) => Ok(PendingPublish {
                rx,
                sleep: Box::pin(tokio::time::sleep_until(deadline)),
                limit,
                client: self.clone(),
            }),
        }
    }

    /// Sends an app-level `Ping` and returns the round-trip time.
    ///
    /// # Errors
    ///
    /// [`Error::NotConnected`] between connections, [`Error::TimedOut`]
    /// after `request_timeout`, [`Error::ConnectionLost`], [`Error::Closed`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let rtt = client.ping().await?;
    /// println!("round trip {rtt:?}");
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, Error> {
        self.call(|reply| Command::Ping { reply }, self.inner.config.request_timeout).await
    }

    /// The members of a presence channel, by client id. The edge answers in
    /// pages (about 1,000 members each); this asks for every page in turn.
    /// Members joining or leaving meanwhile may or may not be in the list;
    /// the channel's presence events tell about them.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] with `not_enabled` when the channel has no
    /// presence, `forbidden` without the `presence` capability; otherwise as
    /// [`Self::ping`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// for member in client.presence("room:1").await? {
    ///     println!("{}", member.client_id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn presence(&self, channel: impl AsRef<str>) -> Result<Vec<Member>, Error> {
        let channel = ChannelName::new(channel.as_ref())?;
        let mut members = Vec::new();
        let mut after = String::new();
        loop {
            let (channel, from) = (channel.clone(), after.clone());
            let page = self
                .call(|reply| Command::Presence { channel, after: from, reply }, self.inner.config.request_timeout)
                .await?;
            members.extend(page.members);
            match page.next {
                // Pages move forward by client id; anything else would loop.
                Some(next) if next > after => after = next,
                _ => return Ok(members),
            }
        }
    }

    /// The events the app's backend sends to this client's user (the
    /// token's subject, [`crate::Publisher::publish_to_user`]) from now on,
    /// over every connection; no subscription is needed. Buffering, lag and
    /// reconnects are as the [`UserEvents`] docs say. When the backend
    /// terminates the user ([`crate::Publisher::terminate_user`]) the client
    /// stops with [`Error::Terminal`] of code 4504 (`user_terminated`): the
    /// state becomes `Closed`, and every `UserEvents` ends with that error.
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), herald_sdk::Error> {
    /// use futures_util::StreamExt as _;
    ///
    /// let mut inbox = client.user_events().await?;
    /// while let Some(m) = inbox.next().await {
    ///     println!("{:?}: {}", m.event, m.text().unwrap_or("<binary>"));
    /// }
    /// if let Some(e) = inbox.end_reason() {
    ///     println!("stopped: {e}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] or [`Error::Terminal`] when the client stopped;
    /// [`Error::TimedOut`] when the client task did not answer within
    /// `request_timeout`.
    pub async fn user_events(&self) -> Result<UserEvents, Error> {
        let rx = self.call(|reply| Command::UserEvents { reply }, self.inner.config.request_timeout).await?;
        Ok(UserEvents::new(rx))
    }

    /// Closes the client gracefully: queued and in-flight publishes get up
    /// to `close_timeout` to be acknowledged, then the WebSocket is closed
    /// with 1000; subscriptions end; later calls fail with
    /// [`Error::Closed`]. Resolves once the client stopped; closing twice is
    /// harmless.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// client.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.commands.send(Command::Close { reply: tx }).await.is_ok() {
            let _ = rx.await;
        }
    }
}
