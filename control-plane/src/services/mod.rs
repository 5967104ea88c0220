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
//! - [`keys`]: create, list, revoke API keys.
//! - [`tokens`]: minting tokens, rotating signing keys, the JWKS.
//! - [`namespaces`]: channel namespaces and their history streams.
//! - [`channels`]: channel history and occupied channels.
//! - [`presence`]: the members of presence channels.
//! - [`publish`]: publishing messages and batches.

pub mod apps;
pub mod channels;
pub mod checks;
pub mod keys;
pub mod limits;
pub mod namespaces;
pub mod presence;
pub mod publish;
pub mod tokens;

pub use apps::AppSpec;
pub use channels::{History, HistoryMessage, Occupancy};
pub use keys::Revoked;
pub use limits::EffectiveLimits;
pub use presence::Presence;
