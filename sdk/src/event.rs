//! What a subscription delivers: [`SubscriptionEvent`]s, and what they
//! carry — [`Message`]s with their [`Position`] in the channel's history,
//! and [`PresenceChange`]s of [`Member`]s. Plain data, shared by the
//! [`Subscription`](crate::Subscription) handle that reads them and the client task that
//! produces them.

use bytes::Bytes;
use herald_proto::ChannelName;

use crate::error::Error;

/// A point in a channel's history: the sequence number of a message and the
/// epoch of the stream it came from.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let mut sub = client.subscribe("chat:lobby").await?;
/// while let Some(message) = sub.next_message().await {
///     if let Some(position) = &message.position {
///         // e.g. keep it to read the history from here later
///         println!("at {} of epoch {}", position.seq, position.epoch);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Position {
    /// Sequence number, increasing per channel.
    pub seq: u64,
    /// Changes when the channel's stream is lost or recreated.
    pub epoch: String,
}

/// One message on a channel.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let mut sub = client.subscribe("chat:lobby").await?;
/// while let Some(message) = sub.next_message().await {
///     let from = message.publisher.as_deref().unwrap_or("the backend");
///     println!("{} on {} from {from}: {:?}", message.id, message.channel, message.event);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The channel.
    pub channel: ChannelName,
    /// The payload, as published (JSON published through the REST API
    /// arrives as its UTF-8 text).
    pub data: Bytes,
    /// The event name, when the publisher gave one.
    pub event: Option<String>,
    /// The message's place in the channel's history, for channels that keep
    /// one.
    pub position: Option<Position>,
    /// The publisher's client id; `None` for publishes through the API.
    pub publisher: Option<String>,
    /// When the message entered Herald (Unix milliseconds, server clock).
    pub timestamp_ms: i64,
    /// The message id (the idempotency id when the publisher gave one).
    pub id: String,
}

impl Message {
    /// The payload as UTF-8 text, when it is.
    ///
    /// ```no_run
    /// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut sub = client.subscribe("chat:lobby").await?;
    /// while let Some(message) = sub.next_message().await {
    ///     println!("{}", message.text().unwrap_or("<binary>"));
    /// }
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

/// A member of a presence channel.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// for member in client.presence("presence-room").await? {
///     let info = std::str::from_utf8(&member.info).unwrap_or("{}");
///     println!("{} is here ({info})", member.client_id);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The member's client id.
    pub client_id: String,
    /// The JSON object from the member's token `info` claim (empty when
    /// none).
    pub info: Bytes,
}

/// A member joined or left a presence channel.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use herald_sdk::SubscriptionEvent;
/// let mut sub = client.subscribe("presence-room").await?;
/// while let Some(event) = sub.next_event().await {
///     if let SubscriptionEvent::Presence(change) = event {
///         let verb = if change.joined { "joined" } else { "left" };
///         println!("{} {verb}", change.member.client_id);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PresenceChange {
    /// True for a join, false for a leave.
    pub joined: bool,
    /// The member.
    pub member: Member,
}

/// What a subscription reports, in order.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use herald_sdk::SubscriptionEvent;
/// let mut sub = client.subscribe("chat:lobby").await?;
/// while let Some(event) = sub.next_event().await {
///     match event {
///         SubscriptionEvent::Message(message) => println!("{:?}", message.text()),
///         SubscriptionEvent::Resubscribed { recovered: false } => println!("missed messages: refetch the state"),
///         SubscriptionEvent::Lagged { dropped } => println!("read too slowly: {dropped} dropped"),
///         SubscriptionEvent::Ended(error) => println!("ended: {error}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// A message.
    Message(Message),
    /// The subscription was restored after a reconnect. `recovered: true`
    /// means every message published meanwhile follows (the channel keeps
    /// history and the edge resumed from the last position seen);
    /// `recovered: false` means messages published while the client was
    /// disconnected are lost to this subscription, and the application
    /// should refetch its state from its own source.
    Resubscribed {
        /// Whether the stream continues without a gap.
        recovered: bool,
    },
    /// The application read too slowly: this many messages were dropped
    /// because the subscription's buffer (`ClientConfig::subscription_buffer`)
    /// was full.
    Lagged {
        /// Messages dropped since the last event.
        dropped: u64,
    },
    /// A member joined or left (presence channels).
    Presence(PresenceChange),
    /// The subscription ended; nothing follows.
    Ended(Error),
}
