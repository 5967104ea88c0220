//! [`UserEvents`]: the events the app's backend sends to this client's user
//! ([`crate::Publisher::publish_to_user`], Pusher's server-to-user events),
//! as a `Stream` of [`UserMessage`]s, with the [`UserEvent`]s that matter
//! between them: messages dropped because the application read too slowly,
//! a reconnect (events sent meanwhile are lost), and the end.
//!
//! The edge sends a user event to every connection whose token's subject is
//! that user, as a `Message` with an empty channel; no subscription is
//! needed. The client task hands each one to every open [`UserEvents`]
//! without waiting for a slow reader: each has its own bounded buffer
//! (`ClientConfig::user_event_buffer`), and a full one drops the newest
//! events and reports [`UserEvent::Lagged`] before the next one that fits,
//! as subscriptions do. Events that arrive while no [`UserEvents`] is open
//! are dropped.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;
use tokio::sync::mpsc;

use crate::error::Error;

/// One event sent to this client's user.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let mut events = client.user_events().await?;
/// while let Some(message) = events.next_message().await {
///     println!("{} at {}: {:?} {:?}", message.id, message.timestamp_ms, message.event, message.text());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserMessage {
    /// The event name, when the sender gave one.
    pub event: Option<String>,
    /// The payload, as sent (JSON sent through the REST API arrives as its
    /// UTF-8 text).
    pub data: Bytes,
    /// The event's id (what [`crate::Publisher::publish_to_user`] returned).
    pub id: String,
    /// When the event entered Herald (Unix milliseconds, server clock).
    pub timestamp_ms: i64,
}

impl UserMessage {
    /// The payload as UTF-8 text, when it is.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut events = client.user_events().await?;
    /// while let Some(m) = events.next_message().await {
    ///     println!("{:?}: {}", m.event, m.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

/// What a [`UserEvents`] reports, in order.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use herald_sdk::UserEvent;
/// let mut events = client.user_events().await?;
/// while let Some(event) = events.next_event().await {
///     match event {
///         UserEvent::Message(message) => println!("{:?}", message.event),
///         UserEvent::Lagged { dropped } => println!("{dropped} events dropped"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum UserEvent {
    /// An event for the user.
    Message(UserMessage),
    /// The application read too slowly: this many events were dropped
    /// because the buffer (`ClientConfig::user_event_buffer`) was full.
    Lagged {
        /// Events dropped since the last report.
        dropped: u64,
    },
    /// The client connected again after losing its connection: user events
    /// sent while it was disconnected are lost (they are not kept), and the
    /// application should refetch what it needs from its own source.
    Reconnected,
    /// The client stopped; nothing follows. A user terminated by the app's
    /// backend ([`crate::Publisher::terminate_user`]) ends with
    /// [`Error::Terminal`] of code 4504 (`user_terminated`).
    Ended(Error),
}

/// The events sent to this client's user, from
/// [`crate::Client::user_events`]; a `Stream` of [`UserMessage`].
///
/// Each `UserEvents` gets every user event that arrives after
/// [`crate::Client::user_events`] resolved, on the current connection and
/// the next ones; events that arrive while none is open are dropped. Its
/// buffer holds `ClientConfig::user_event_buffer` events: a reader that
/// falls behind loses the newest and is told how many
/// ([`UserEvent::Lagged`]). After each reconnect it reports
/// [`UserEvent::Reconnected`]: events sent while the client was
/// disconnected are lost.
///
/// Reading it as a `Stream` (or with [`Self::next_message`]) yields only
/// the messages; [`Self::next_event`] yields everything in order. Dropping
/// it stops the delivery to it.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), herald_sdk::Error> {
/// use herald_sdk::UserEvent;
///
/// let mut inbox = client.user_events().await?;
/// while let Some(event) = inbox.next_event().await {
///     match event {
///         UserEvent::Message(m) => println!("{:?}: {}", m.event, m.text().unwrap_or("<binary>")),
///         UserEvent::Reconnected => println!("may have missed events; reload"),
///         UserEvent::Ended(e) => println!("ended: {e}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
pub struct UserEvents {
    rx: mpsc::Receiver<UserEvent>,
    ended: Option<Error>,
}

impl std::fmt::Debug for UserEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEvents").field("ended", &self.ended).finish_non_exhaustive()
    }
}

impl UserEvents {
    pub(crate) fn new(rx: mpsc::Receiver<UserEvent>) -> Self {
        Self { rx, ended: None }
    }

    /// Why the stream ended, once it has.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut events = client.user_events().await?;
    /// while events.next_message().await.is_some() {}
    /// println!("ended: {:?}", events.end_reason());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn end_reason(&self) -> Option<&Error> {
        self.ended.as_ref()
    }

    /// The next event; `None` once the client stopped (the last event
    /// before that is [`UserEvent::Ended`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut events = client.user_events().await?;
    /// while let Some(event) = events.next_event().await {
    ///     println!("{event:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_event(&mut self) -> Option<UserEvent> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// The next user message, skipping other events; `None` once the client
    /// stopped.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// # let mut events = client.user_events().await?;
    /// while let Some(m) = events.next_message().await {
    ///     println!("{}", m.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_message(&mut self) -> Option<UserMessage> {
        std::future::poll_fn(|cx| self.poll_message(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<UserEvent>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                if let UserEvent::Ended(e) = &event {
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

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<UserMessage>> {
        loop {
            match self.poll_event(cx) {
                Poll::Ready(Some(UserEvent::Message(m))) => return Poll::Ready(Some(m)),
                Poll::Ready(Some(UserEvent::Ended(_)) | None) => return Poll::Ready(None),
                Poll::Ready(Some(other)) => {
                    tracing::debug!(event = ?other, "user event skipped by a message reader");
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Stream for UserEvents {
    type Item = UserMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<UserMessage>> {
        self.poll_message(cx)
    }
}
