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
//! # #[cfg(all(feature = "realtime", feature = "publisher"))]
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
//!
//! # Features
//!
//! Both are on by default:
//!
//! - `realtime`: the WebSocket client ([`Client`] and everything under it).
//! - `publisher`: the REST client for backends ([`Publisher`]). A backend
//!   that only publishes needs no WebSocket code: `default-features =
//!   false, features = ["publisher"]`; an app that only subscribes (with
//!   tokens from elsewhere): `features = ["realtime"]`.
//!
//! [`Publisher::token_provider`], which feeds the client with tokens the
//! publisher mints, needs both.

#![warn(missing_docs)]

#[cfg(feature = "realtime")]
pub mod backoff;
#[cfg(feature = "realtime")]
pub mod client;
#[cfg(feature = "realtime")]
mod command;
#[cfg(feature = "realtime")]
pub mod config;
#[cfg(feature = "realtime")]
mod driver;
#[cfg(feature = "realtime")]
pub mod error;
#[cfg(feature = "realtime")]
mod event;
#[cfg(any(feature = "realtime", feature = "publisher"))]
mod net;
#[cfg(feature = "publisher")]
pub mod publisher;
#[cfg(feature = "realtime")]
mod recovery;
#[cfg(feature = "realtime")]
pub mod state;
#[cfg(feature = "realtime")]
pub mod subscription;
#[cfg(feature = "realtime")]
pub mod token;
#[cfg(feature = "realtime")]
mod transport;
#[cfg(feature = "realtime")]
pub mod user_events;

#[cfg(feature = "realtime")]
pub use backoff::Backoff;
#[cfg(feature = "realtime")]
pub use client::{Client, ClientBuilder, PendingPublish, PublishAck, PublishOptions};
#[cfg(feature = "realtime")]
pub use config::ClientConfig;
#[cfg(feature = "realtime")]
pub use error::Error;
pub use herald_proto::{ChannelName, CloseCode, ErrorCode};
#[cfg(feature = "publisher")]
pub use publisher::{Accepted, BatchMessage, Data, MessageOptions, MintedToken, Publisher, RestError, TokenRequest};
#[cfg(feature = "realtime")]
pub use state::{ConnectionInfo, ConnectionState, DisconnectReason, StateEvents};
#[cfg(feature = "realtime")]
pub use subscription::{Member, Message, Position, PresenceChange, Subscription, SubscriptionEvent};
#[cfg(feature = "realtime")]
pub use token::{BoxError, TokenProvider};
#[cfg(feature = "realtime")]
pub use user_events::{UserEvent, UserEvents, UserMessage};

#[cfg(all(test, feature = "realtime"))]
mod tests;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
