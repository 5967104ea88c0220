//! Tokens: minting a JWT for an end user (a key's capabilities or a subset,
//! the app's allowlist and limits inside), rotating the signing keys
//! (admin), and the JWKS edges verify tokens with.

use std::time::Duration;

use herald_proto::claims::{AppLimits, MAX_INFO_BYTES};
use herald_proto::{Capabilities, ClientId, KeyId, bus};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::services::checks::{parse_app_id, require_admin, require_app};
use crate::tokens::{Jwks, MintRequest, Rotation};

/// The key id put in tokens minted with the admin token.
pub const ADMIN_KEY_ID: &str = "admin";

/// The longest overlap a rotation accepts, in seconds (ten years).
pub const MAX_OVERLAP_SECS: u64 = 10 * 365 * 86_400;

impl Core {
    /// Mints a token for an end user with the key's capabilities or a subset.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key, escalation), `bad_request` (client id,
    /// TTL out of range, info), `too_large`, `not_found`, `unavailable`.
    pub async fn mint_token(
        &self,
        who: &Principal,
        app: &str,
        client_id: &str,
        capabilities: Option<Capabilities>,
        ttl_secs: Option<u64>,
        info: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(String, i64), ApiError> {
        let app_id = parse_app_id(app)?;
        let key = require_app(who, &app_id)?;
        // The app must exist (a deleted app's keys are gone, but the admin
        // token could name any id); its allowlist and limits go into the
        // token so edges decide offline.
        let app = self.auth.app(&app_id).await?;
        let limits = self.effective_limits(&app);
        let client_id = ClientId::new(client_id).map_err(|e| ApiError::bad_request(format!("`client_id`: {e}")))?;
        let ceiling = key.map_or_else(Capabilities::all, |k| k.capabilities.clone());
        let capabilities = capabilities.unwrap_or_else(|| ceiling.clone());
        if !capabilities.is_subset_of(&ceiling) {
            return Err(ApiError::forbidden(
                "the requested capabilities exceed the API key's: a token can only narrow its key's capabilities",
            ));
        }
        let c = &self.config;
        let ttl = ttl_secs.unwrap_or(c.token_default_ttl.0.as_secs());
        if !(c.token_min_ttl.0.as_secs()..=c.token_max_ttl.0.as_secs()).contains(&ttl) {
            return Err(ApiError::bad_request(format!(
                "`ttl_seconds` is {ttl}; it must lie between {} and {}",
                c.token_min_ttl.0.as_secs(),
                c.token_max_ttl.0.as_secs()
            )));
        }
        if let Some(info) = &info {
            let len = serde_json::to_vec(info).map(|v| v.len()).unwrap_or(usize::MAX);
            if len > MAX_INFO_BYTES {
                return Err(ApiError::too_large(format!(
                    "`info` is {len} bytes as JSON; the limit is {MAX_INFO_BYTES}"
                )));
            }
        }
        let key_id = match key {
            Some(k) => k.id.clone(),
            None => KeyId::new(ADMIN_KEY_ID).map_err(|_| ApiError::internal())?,
        };
        let minted = self.signer.mint(MintRequest {
            app: app_id,
            key: key_id,
            client_id,
            capabilities,
            ttl: Duration::from_secs(ttl),
            info,
            origins: app.allowed_origins.clone(),
            limits: Some(AppLimits {
                max_message_bytes: Some(limits.max_message_bytes),
                publish_rate: None,
                max_connections: Some(limits.max_connections),
            }),
        })?;
        self.metrics.token_minted();
        Ok(minted)
    }

    /// Rotates the signing keys (admin). `overlap` defaults to the config's.
    ///
    /// # Errors
    ///
    /// `forbidden`, `bad_request` (overlap too long), `unavailable`.
    pub async fn rotate_signing_keys(&self, who: &Principal, overlap_secs: Option<u64>) -> Result<Rotation, ApiError> {
        require_admin(who)?;
        let overlap = overlap_secs.unwrap_or(self.config.signing_key_overlap.0.as_secs());
        if overlap > MAX_OVERLAP_SECS {
            return Err(ApiError::bad_request("`overlap_seconds` must be at most ten years"));
        }
        let rotation = self.signer.rotate(Duration::from_secs(overlap)).await?;
        let kind =
            bus::control_event::Kind::SigningKeysRotated(bus::SigningKeysRotated { current_kid: rotation.kid.clone() });
        self.notify(kind).await;
        Ok(rotation)
    }

    /// The public keys that verify tokens (the current one and those in
    /// their overlap) and the revocations edges apply; reloaded first when
    /// older than a second.
    pub async fn jwks(&self) -> Jwks {
        self.signer.jwks_fresh(herald_bus::now_ms()).await
    }
}
