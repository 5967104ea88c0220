//! Pusher Channels compatibility: the contracts Herald's Pusher mode is
//! built on, kept apart from Herald's own protocol.
//!
//! Nothing here talks to a socket or the bus; these are pure functions and
//! types that the edge (Pusher protocol 7) and the control plane (the Pusher
//! HTTP API) will share:
//!
//! - [`channel`]: [`PusherChannel`], what a valid Pusher channel name is, and
//!   its [`PusherChannelKind`] by prefix.
//! - [`signature`]: channel authorization strings (`key:signature`) for
//!   private and presence subscriptions, and of user sign-ins.
//! - [`request`]: the signature of Pusher HTTP API requests (`auth_key`,
//!   `auth_timestamp`, `auth_version`, `body_md5`, `auth_signature`).
//!
//! Every comparison of a signature is constant-time.

pub mod channel;
pub mod request;
pub mod signature;

pub use channel::{PusherChannel, PusherChannelError, PusherChannelKind};
pub use request::{ApiAuthError, ApiRequest, body_md5, sign_request, string_to_sign, verify_request};
pub use signature::{ChannelAuthError, sign_channel, sign_user, verify_channel, verify_user};
