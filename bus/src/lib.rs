//! Herald's bus: how messages, control events, history and presence travel
//! between edges and the control plane. Both sides of NATS depend on this
//! crate and on `herald-proto`, never on each other.
//!
//! [`Bus`] is a `Clone` handle with two implementations behind one
//! API:
//!
//! - **NATS** ([`Bus::connect_nats`]): core NATS subjects from
//!   [`SubjectSpace`](herald_proto::SubjectSpace); async-nats reconnects on its own and re-sends the
//!   subscriptions of every live channel after a NATS restart.
//! - **Local** ([`Bus::local`]): an in-process bus for the embedded
//!   mode and fast tests; several handles on one [`LocalBus`] behave like
//!   several nodes on one NATS.
//!
//! Whoever receives (an edge, or the control plane) attaches a [`Sink`]; the
//! bus hands it every message of the channels it subscribed to, every
//! control event, and the presence and occupancy reports it asked for.
//!
//! Beyond channel messages the bus carries:
//!
//! - **History**: a JetStream stream per (app, namespace) that keeps the
//!   namespace's channels ([`Bus::ensure_history`]); a history
//!   message is published into the stream ([`Bus::publish_history`]),
//!   which stores it and republishes it on the channel subject with its
//!   sequence, so live subscribers get the [`Position`] with the message.
//!   When no stream takes a history message, the namespace's options are
//!   asked of the control plane again; if it still keeps history, its lost
//!   stream is created again and the message sent once more.
//!   [`Bus::read_history`] reads a channel back.
//! - **Namespaces**: edges ask the control plane for an app's namespace
//!   options by request/reply ([`Bus::fetch_namespaces`],
//!   [`Bus::serve_namespaces`]).
//! - **Presence** and **occupancy** reports from edges.
//! - **Debug events** of an app, only while someone watches it
//!   ([`debug_tap`], [`Bus::publish_debug_event`],
//!   [`Bus::subscribe_debug_events`]).
//! - **Webhook events** seen on edges (client events, cache misses): an
//!   edge reports each one by request/reply and the control plane answers
//!   once it stored it ([`Bus::report_webhook_event`],
//!   [`Bus::serve_webhook_events`]).
//! - **Usage reports**: every node sends its per-app usage counts by
//!   request/reply to one control plane of the queue group
//!   ([`Bus::report_usage`], [`Bus::serve_usage`], [`usage`]).
//!
//! A publish resolves once the NATS server has the message: the client must
//! be connected, and a round trip sent after the message must have come
//! back (the server handles a connection's commands in order), within
//! [`NatsOptions::publish_timeout`]. Otherwise the caller gets
//! a transient [`BusError`] — never a false success, not even for a
//! message still in a socket buffer when the server stopped answering.
//! Concurrent publishes share one round trip (`nats::NatsBus::receipt`).
//! A publisher that keeps several messages in flight hands each over with
//! [`Bus::send_encoded`] and awaits its [`PublishReceipt`] later.

//!
//! # Layout
//!
//! - [`Bus`] (`handle`): the handle, dispatching to one of
//!   - `nats`: NATS and JetStream (relay of a channel's messages with gap
//!     fills in `nats::relay`), or
//!   - [`LocalBus`] (`local`): the in-process bus.
//! - [`Sink`], [`NamespaceSource`], [`WebhookEventSink`] and [`UsageSink`] (`sink`): what
//!   the users of the bus implement.
//! - [`history`]: history positions, pages, stream bounds, and the
//!   in-process history store.
//! - [`presence`]: presence and occupancy tables built from edges' reports.
//! - [`app_config`]: an app's configuration as edges look it up (its
//!   namespaces and Pusher settings), and the control plane's answer.
//! - [`cache`]: cache channels, whose last message is kept.
//! - [`DebugEventSubscription`] (`debug_events`): debug events on the bus,
//!   sent and subscribed.
//! - [`debug_tap`]: a node's debug tap: which apps are watched, and the
//!   sampled, rate-bounded sending of their debug events.
//! - [`namespaces`]: namespace rules (defaults, history) and the cache of
//!   apps' namespace options.
//! - [`webhook_events`]: what makes a reported webhook event acceptable.
//! - [`usage`]: per-app usage counters, the node's reporter, and what makes
//!   a usage report acceptable.
//! - [`PublishReceipt`] (`receipt`): publishes handed over in order and
//!   confirmed later.
//! - [`BusError`] (`error`): why an operation failed, by kind.

pub mod app_config;
pub mod cache;
mod debug_events;
pub mod debug_tap;
mod error;
mod handle;
pub mod history;
mod history_file;
mod local;
pub mod namespaces;
mod nats;
pub mod presence;
mod receipt;
mod sink;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod usage;
pub mod webhook_events;

pub use app_config::AppConfig;
pub use debug_events::DebugEventSubscription;
pub use error::BusError;
pub use handle::{Bus, ChannelSubscription};
pub use history::{HistoryEntry, HistoryPage, HistorySpec, Position, StreamBounds};
pub use history_file::HistoryFileError;
pub use local::LocalBus;
pub use nats::{ChannelRouting, NatsOptions};
pub use receipt::PublishReceipt;
pub use sink::{NamespaceSource, Sink, UsageSink, WebhookEventSink};

/// Wall-clock time in Unix milliseconds (0 before 1970, saturating far
/// ahead): the one clock of presence entries, control events and token
/// checks.
///
/// # Examples
///
/// ```
/// let now = herald_bus::now_ms();
/// assert!(now > 1_600_000_000_000, "after 2020");
/// ```
#[must_use]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
