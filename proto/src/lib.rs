//! Herald's contracts: everything two Herald components must agree on.
//!
//! # Layout
//!
//! - [`client`]: the client protocol `herald.client.v1` (edge ⇄ client frames).
//! - [`bus`]: the bus envelope `herald.bus.v1` (what travels on NATS).
//! - [`api`]: the gRPC API `herald.api.v1` (services with the `grpc` feature).
//! - [`channel`]: [`ChannelName`], the one place that decides what a valid
//!   channel name is.
//! - [`ids`]: [`AppId`], [`KeyId`], [`ClientId`], [`NamespaceName`].
//! - [`subject`]: [`SubjectSpace`], the mapping from (app, channel) to NATS
//!   subjects.
//! - [`caps`]: [`Capabilities`], channel patterns to allowed operations.
//! - [`claims`]: [`Claims`], what a Herald token says.
//! - [`codes`]: [`CloseCode`] and [`ErrorCode`], the one table of each.
//! - [`pusher`]: Pusher Channels compatibility: [`pusher::PusherChannel`],
//!   its subject-token escaping and Pusher's signatures.
//! - [`units`]: [`units::ByteSize`] and [`units::HumanDuration`] for configuration.
//! - [`webhook`]: webhook event kinds and body formats.
//!
//! The wire schemas live in `schemas/` and are compiled by `build.rs`;
//! `docs/protocol.md` describes them for client authors.

#![warn(missing_docs)]

pub mod caps;
pub mod channel;
pub mod claims;
pub mod codes;
pub mod ids;
pub mod pusher;
pub mod subject;
pub mod units;
pub mod webhook;

/// The client protocol, `herald.client.v1` (generated from
/// `schemas/herald/client/v1/client.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod client {
    include!(concat!(env!("OUT_DIR"), "/herald.client.v1.rs"));
}

/// The bus envelope, `herald.bus.v1` (generated from
/// `schemas/herald/bus/v1/bus.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod bus {
    include!(concat!(env!("OUT_DIR"), "/herald.bus.v1.rs"));
}

/// The gRPC API, `herald.api.v1` (generated from
/// `schemas/herald/api/v1/api.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod api {
    include!(concat!(env!("OUT_DIR"), "/herald.api.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every Herald schema, e.g. for gRPC
/// reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/herald_descriptor.bin"));

/// The WebSocket subprotocol of the client protocol.
pub const SUBPROTOCOL: &str = "herald.v1";

/// The path on which edges accept WebSocket connections.
pub const CONNECT_PATH: &str = "/v1/connect";

pub use caps::{Capabilities, ChannelPattern, Operation, Operations};
pub use channel::{ChannelName, ChannelNameError};
pub use claims::Claims;
pub use codes::{Advice, CloseCode, ErrorCode};
pub use ids::{AppId, ClientId, IdError, KeyId, NamespaceName};
pub use subject::SubjectSpace;

/// The README's examples, compiled and run as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
