//! Herald's Rust SDK: a realtime client that keeps an app subscribed on a
//! bad network, and a REST publisher for backends.
//!
//! # Layout
//!
//! - [`client`]: [`Client`], the `Clone` handle apps hold, and
//!   [`ClientBuilder`].
//! - `command`: what handles ask of the client task, and its answers.
//! - `driver`: the one task that owns the connection, the subscriptions,
//!   the pending requests and the publish queue; handles send it commands.
//! - `recovery`: gap-free recovery — the last position seen per channel,
//!   resubscribing from it, dropping replayed duplicates, telling the app
//!   when a reconnect lost messages.
//! - `transport`: TCP, TLS, the WebSocket upgrade, and the reader and writer
//!   tasks of one connection.
//! - [`subscription`]: [`Subscription`], a `Stream` of [`Message`]s with
//!   [`SubscriptionEvent`]s between them.
//! - `event`: [`SubscriptionEvent`] and what it carries ([`Message`],
//!   [`Position`], [`PresenceChange`], [`Member`]).
//! - [`user_events`]: [`UserEvents`], a `Stream` of the [`UserMessage`]s
//!   the app's backend sends to this client's user, with [`UserEvent`]s
//!   between them.
//! - [`state`]: [`ConnectionState`] and [`StateEvents`], what apps watch.
//! - [`backoff`]: [`Backoff`], the reconnect schedule as plain functions.
//! - [`config`]: [`ClientConfig`], every timeout and bound.
//! - [`token`]: [`TokenProvider`], where fresh tokens come from.
//! - [`error`]: [`Error`], one variant per kind of failure.
//! - [`publisher`]: [`Publisher`], the REST client for backends: publish
//!   (optionally keeping a message from one connection), batch publish,
//!   events to users, terminating users, mint tokens.
//!
//! # The realtime client in one page
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::StreamExt as _;
//! use herald_sdk::{Client, ConnectionState, Publisher, TokenRequest};
//!
//! // A backend mints tokens with its API key…
//! let publisher = Publisher::new("http://127.0.0.1:8080", "my-app", "hk_…")?;
//! let tokens = publisher.token_provider(TokenRequest::new("user-42").allow("chat:*", ["subscribe", "publish"]));
//!
//! // …and the app connects with them; the client refreshes them on its own.
//! let client = Client::builder("ws://127.0.0.1:8081").token_provider(tokens).connect().await?;
//!
//! let mut states = client.state_events();
//! tokio::spawn(async move {
//!     while let Some(state) = states.next().await {
//!         if let ConnectionState::Reconnecting { attempt, delay } = state {
//!             eprintln!("reconnecting (attempt {attempt}) in {delay:?}");
//!         }
//!     }
//! });
//!
//! let mut room = client.subscribe("chat:lobby").await?;
//! client.publish("chat:lobby", "hello").await?;
//! while let Some(message) = room.next().await {
//!     println!("{}: {}", message.publisher.as_deref().unwrap_or("api"), message.text().unwrap_or("<binary>"));
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! `docs/sdk.md` describes states, the reconnect policy, errors and limits.

#![warn(missing_docs)]

pub mod backoff;
pub mod client;
mod command;
pub mod config;
mod driver;
pub mod error;
mod event;
pub mod publisher;
mod recovery;
pub mod state;
pub mod subscription;
pub mod token;
mod transport;
pub mod user_events;

pub use backoff::Backoff;
pub use client::{Client, ClientBuilder, PendingPublish, PublishAck, PublishOptions};
pub use config::ClientConfig;
pub use error::Error;
pub use herald_proto::{ChannelName, CloseCode, ErrorCode};
pub use publisher::{Accepted, BatchMessage, Data, MessageOptions, MintedToken, Publisher, RestError, TokenRequest};
pub use state::{ConnectionInfo, ConnectionState, DisconnectReason, StateEvents};
pub use subscription::{Member, Message, Position, PresenceChange, Subscription, SubscriptionEvent};
pub use token::{BoxError, TokenProvider};
pub use user_events::{UserEvent, UserEvents, UserMessage};

#[cfg(test)]
mod tests;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
