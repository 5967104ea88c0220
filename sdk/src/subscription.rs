//! [`Subscription`]: one channel's messages, as a `Stream`, plus the events
//! that matter between them ([`SubscriptionEvent`]): restored after a
//! reconnect (recovered or not), messages dropped because the application
//! read too slowly, presence changes, and the end.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use herald_proto::ChannelName;
use tokio::sync::{mpsc, oneshot};

use crate::command::Command;
use crate::error::Error;
pub use crate::event::{Member, Message, Position, PresenceChange, SubscriptionEvent};

/// One channel's messages; a `Stream` of [`Message`].
///
/// Reading it as a `Stream` (or with [`Self::next_message`]) yields only
/// messages; [`Self::next_event`] yields everything, in order, including
/// [`SubscriptionEvent::Resubscribed`] with `recovered: false` after a
/// reconnect that lost messages. Dropping the subscription unsubscribes.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), herald_sdk::Error> {
/// use herald_sdk::SubscriptionEvent;
///
/// let mut sub = client.subscribe("chat:lobby").await?;
/// while let Some(event) = sub.next_event().await {
///     match event {
///         SubscriptionEvent::Message(m) => println!("{}", m.text().unwrap_or("<binary>")),
///         SubscriptionEvent::Resubscribed { recovered: false } => println!("missed messages; reload"),
///         SubscriptionEvent::Ended(e) => println!("ended: {e}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Subscription {
    pub(crate) channel: ChannelName,
    pub(crate) id: u64,
    pub(crate) history: bool,
    pub(crate) rx: mpsc::Receiver<SubscriptionEvent>,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) request_timeout: std::time::Duration,
    pub(crate) ended: Option<Error>,
    pub(crate) unsubscribed: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("channel", &self.channel).field("id", &self.id).finish_non_exhaustive()
    }
}

impl Subscription {
    /// The channel.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut sub = client.subscribe("chat:lobby").await?;
    /// println!("subscribed to {}", sub.channel());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// Whether the channel keeps history (its messages carry a
    /// [`Position`], and reconnects resume without a gap).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut sub = client.subscribe("chat:lobby").await?;
    /// if sub.has_history() {
    ///     println!("missed messages are recovered after a reconnect");
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn has_history(&self) -> bool {
        self.history
    }

    /// Why the subscription ended, once it has.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut sub = client.subscribe("chat:lobby").await?;
    /// while sub.next_message().await.is_some() {}
    /// println!("ended: {:?}", sub.end_reason());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn end_reason(&self) -> Option<&Error> {
        self.ended.as_ref()
    }

    /// The next event; `None` once the subscription ended (the last event
    /// before that is [`SubscriptionEvent::Ended`] when the client could
    /// deliver it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut sub = client.subscribe("chat:lobby").await?;
    /// use herald_sdk::SubscriptionEvent;
    ///
    /// while let Some(event) = sub.next_event().await {
    ///     match event {
    ///         SubscriptionEvent::Message(m) => println!("{:?}", m.text()),
    ///         other => println!("{other:?}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_event(&mut self) -> Option<SubscriptionEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next message, skipping other events; `None` once the
    /// subscription ended.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut sub = client.subscribe("chat:lobby").await?;
    /// while let Some(message) = sub.next_message().await {
    ///     println!("{}", message.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_message(&mut self) -> Option<Message> {
        std::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<SubscriptionEvent>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                if let SubscriptionEvent::Ended(e) = &event {
                    self.ended = Some(e.clone());
                }
                Poll::Ready(Some(event))
            }
            Poll::Ready(None) => {
                if self.ended.is_none() {
                    self.ended = Some(Error::Closed);
                }
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        loop {
            match self.poll_event(cx) {
                Poll::Ready(Some(SubscriptionEvent::Message(m))) => return Poll::Ready(Some(m)),
                Poll::Ready(Some(SubscriptionEvent::Ended(_))) | Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(other)) => {
                    tracing::debug!(channel = %self.channel, event = ?other, "subscription event skipped by a message reader");
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Stops this subscription. The edge is told when no other subscription
    /// of this client is on the channel.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] when the edge refuses, [`Error::TimedOut`] when
    /// it did not answer within `request_timeout`. A stopped client has no
    /// subscriptions, so this is `Ok` then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut sub = client.subscribe("chat:lobby").await?;
    /// sub.unsubscribe().await?;
    /// # Ok(()) }
    /// ```
    pub async fn unsubscribe(mut self) -> Result<(), Error> {
        self.unsubscribed = true;
        let (tx, rx) = oneshot::channel();
        let cmd = Command::Unsubscribe { channel: self.channel.clone(), sub_id: Some(self.id), reply: Some(tx) };
        let limit = self.request_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        match tokio::time::timeout_at(deadline, self.commands.send(cmd)).await {
            Err(_) => return Err(Error::TimedOut(limit)),
            Ok(Err(_)) => return Ok(()),
            Ok(Ok(())) => {}
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(Error::TimedOut(limit)),
            Ok(result) => result.unwrap_or(Ok(())),
        }
    }
}

impl Stream for Subscription {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.poll_message(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if !self.unsubscribed && self.ended.is_none() {
            // Best effort: when the command queue is full the client task
            // notices the closed receiver on the next delivery instead.
            let _ = self.commands.try_send(Command::Unsubscribe {
                channel: self.channel.clone(),
                sub_id: Some(self.id),
                reply: None,
            });
        }
    }
}
