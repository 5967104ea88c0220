//! The operations both APIs expose, one module per noun, each with its
//! checks: who may call, what input is valid, which limits apply. They are
//! methods on [`Core`](crate::core::Core); REST and gRPC only translate
//! their wire shapes into these calls and the results back, and every
//! refusal is an [`ApiError`](crate::error::ApiError) both render.
//!
//! - [`checks`]: access (admin, the app's keys, capabilities) and
//!   identifiers and texts.
//! - [`limits`]: an app's limit overrides and the limits in force.
//! - [`apps`]: create, list, read, change, delete apps.
//! - [`pusher`]: an app's Pusher mode: its settings, what edges get of it,
//!   and who signed a Pusher HTTP API request.
//! - [`keys`]: create (with a Pusher secret or not), list, revoke API keys.
//! - [`tokens`]: minting tokens, rotating signing keys, the JWKS.
//! - [`namespaces`]: channel namespaces and their history streams.
//! - [`channels`]: channel history, occupied channels, a channel's state.
//! - [`presence`]: the members of presence channels.
//! - [`publish`]: publishing messages and batches.
//! - [`stats`]: an app's usage per minute, hour or day, in pages.
//! - [`users`]: events to every connection of a user, and closing them.
//! - [`console`]: one-time login links of the web console.
//! - [`debug`]: watching an app's live debug events.
//! - [`webhooks`]: webhook endpoints, their checks (URLs against SSRF) and
//!   secret rotation.

pub mod apps;
pub mod channels;
pub mod checks;
pub mod console;
pub mod debug;
pub mod keys;
pub mod limits;
pub mod namespaces;
pub mod presence;
pub mod publish;
pub mod pusher;
pub mod stats;
pub mod tokens;
pub mod users;
pub mod webhooks;

pub use apps::AppSpec;
pub use channels::{ChannelState, History, HistoryMessage, Occupancy};
pub use keys::Revoked;
pub use limits::EffectiveLimits;
pub use presence::Presence;
pub use publish::Draft;
pub use pusher::{PusherCaller, PusherPatch};
pub use stats::{QuotaUse, StatsPage, StatsQuery};
pub use webhooks::{FilterSpec, WebhookPatch, WebhookSpec};
