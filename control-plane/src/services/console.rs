//! Console sign-in links (admin only): a one-time login link of the web
//! console, valid for `console_link_ttl`. Only the SHA-256 of its token is
//! stored; opening `/console/login/<token>` deletes it (see
//! [`crate::console`]).

use herald_bus::now_ms;

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::keys::hash_secret;
use crate::services::checks::require_admin;

/// A new login link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLink {
    /// The token (64 hex digits); shown once.
    pub token: String,
    /// The path that signs in with it: `/console/login/<token>`.
    pub path: String,
    /// When it stops working, Unix ms.
    pub expires_at_ms: i64,
}

/// `bytes` in lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a console secret (session id or link token): its
/// SHA-256 in hex.
#[must_use]
pub fn hashed(secret: &str) -> String {
    hex(&hash_secret(secret))
}

/// 32 random bytes in hex.
///
/// # Errors
///
/// `internal` when the system random generator fails.
pub fn random_hex() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(|_| {
        tracing::error!("system random generator failed");
        ApiError::internal()
    })?;
    Ok(hex(&bytes))
}

impl Core {
    /// Creates a one-time login link of the web console (admin).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_enabled` when the console is off, `unavailable`.
    pub async fn create_console_link(&self, who: &Principal) -> Result<ConsoleLink, ApiError> {
        require_admin(who)?;
        if !self.config.console_enabled {
            return Err(ApiError::new(herald_proto::ErrorCode::NotEnabled, "the console is off (console_enabled)"));
        }
        let token = random_hex()?;
        let now = now_ms();
        let ttl = i64::try_from(self.config.console_link_ttl.0.as_millis()).unwrap_or(i64::MAX);
        let expires_at_ms = now.saturating_add(ttl);
        self.store.insert_console_link(&hashed(&token), now, expires_at_ms).await?;
        tracing::info!("console login link created");
        Ok(ConsoleLink { path: format!("/console/login/{token}"), token, expires_at_ms })
    }
}
