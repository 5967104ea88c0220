//! API keys: create (the secret is shown once and only its hash stored),
//! list and revoke them (admin only). A revoked key stops working on this
//! replica at once; edges close the connections holding tokens it minted
//! (`KeyRevoked`).
//!
//! A key created with a Pusher secret ([`Core::create_pusher_key`]) also
//! signs Pusher channel authorizations and Pusher HTTP API requests of its
//! app; its creation sends `NamespacesChanged`, so edges learn the new
//! secret with the app's Pusher settings.

use herald_bus::now_ms;
use herald_proto::{Capabilities, bus};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::keys;
use crate::services::checks::{check_name, parse_app_id, parse_key_id, require_admin};
use crate::store::{ApiKey, StoreError};

/// The outcome of a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// When the key was revoked (Unix ms; the first time when revoked twice).
    pub revoked_at_ms: i64,
    /// Whether the revocation event reached the bus before the call returned
    /// (when false it is retried in the background).
    pub edges_notified: bool,
}

impl Core {
    /// Creates an API key (admin); returns it with the whole secret, which
    /// is not kept. Capabilities default to everything.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `bad_request`, `limit_exceeded`,
    /// `unavailable`.
    pub async fn create_key(
        &self,
        who: &Principal,
        app: &str,
        name: &str,
        capabilities: Option<Capabilities>,
    ) -> Result<(ApiKey, String), ApiError> {
        self.create_key_with(who, app, name, capabilities, false).await
    }

    /// Creates an API key with a Pusher secret (admin); returns the key,
    /// the whole key (`hk_…`) and the Pusher secret. The Pusher secret is
    /// stored (see [`crate::store`]); edges are told (`NamespacesChanged`).
    ///
    /// # Errors
    ///
    /// As [`Self::create_key`].
    pub async fn create_pusher_key(
        &self,
        who: &Principal,
        app: &str,
        name: &str,
        capabilities: Option<Capabilities>,
    ) -> Result<(ApiKey, String, String), ApiError> {
        let (key, secret) = self.create_key_with(who, app, name, capabilities, true).await?;
        let pusher_secret = key.pusher_secret.clone().ok_or_else(ApiError::internal)?;
        Ok((key, secret, pusher_secret))
    }

    /// Creates an API key (admin), with a Pusher secret when `pusher`;
    /// returns it with the whole secret, which is not kept.
    ///
    /// # Errors
    ///
    /// As [`Self::create_key`].
    pub async fn create_key_with(
        &self,
        who: &Principal,
        app: &str,
        name: &str,
        capabilities: Option<Capabilities>,
        pusher: bool,
    ) -> Result<(ApiKey, String), ApiError> {
        let app = self.get_app(who, app).await?;
        let name = check_name("name", name)?;
        let capabilities = capabilities.unwrap_or_else(Capabilities::all);
        if capabilities.is_empty() {
            return Err(ApiError::bad_request("`capabilities` must allow something"));
        }
        if self.store.count_keys(&app.id).await? >= self.config.max_keys_per_app {
            return Err(ApiError::limit_exceeded(format!(
                "the app has {} keys, the limit; delete the app's unused keys or raise max_keys_per_app",
                self.config.max_keys_per_app
            )));
        }
        let random_failed = |_| {
            tracing::error!("system random generator failed");
            ApiError::internal()
        };
        let new = keys::new_key().map_err(random_failed)?;
        let pusher_secret = if pusher { Some(keys::new_pusher_secret().map_err(random_failed)?) } else { None };
        let key = ApiKey {
            id: new.id.clone(),
            app_id: app.id.clone(),
            name,
            capabilities,
            secret_hash: new.secret_hash.clone(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
            pusher_secret,
        };
        match self.store.insert_key(&key).await {
            Ok(()) => {}
            Err(StoreError::Missing(_)) => return Err(ApiError::not_found(format!("no app {:?}", app.id.as_str()))),
            Err(e) => return Err(e.into()),
        }
        self.auth.evict_key(&key.id, &app.id);
        if pusher {
            self.namespaces_changed(&app.id).await;
        }
        tracing::info!(app = %app.id, key = %key.id, pusher, "api key created");
        Ok((key, new.key))
    }

    /// The keys of an app (admin), without secrets.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn list_keys(&self, who: &Principal, app: &str) -> Result<Vec<ApiKey>, ApiError> {
        let app = self.get_app(who, app).await?;
        Ok(self.store.list_keys(&app.id).await?)
    }

    /// When each key of an app was last used (admin), by key id: as
    /// replicas last wrote it, a few seconds late at most.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn keys_last_used(
        &self,
        who: &Principal,
        app: &str,
    ) -> Result<std::collections::HashMap<String, i64>, ApiError> {
        let app = self.get_app(who, app).await?;
        Ok(self.store.key_usage(&app.id).await?.into_iter().collect())
    }

    /// Revokes a key (admin): it stops working on this replica at once, on
    /// other replicas when they get the event (or within the cache TTL), and
    /// edges close the connections holding tokens it minted.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn revoke_key(&self, who: &Principal, app: &str, key: &str) -> Result<Revoked, ApiError> {
        require_admin(who)?;
        let app = parse_app_id(app)?;
        let key = parse_key_id(key)?;
        let Some(revoked_at_ms) = self.store.revoke_key(&app, &key, now_ms()).await? else {
            return Err(ApiError::not_found(format!("app {:?} has no key {:?}", app.as_str(), key.as_str())));
        };
        self.auth.evict_key(&key, &app);
        let (at, until) = self.signer.revocation_bounds(revoked_at_ms);
        let kind = bus::control_event::Kind::KeyRevoked(bus::KeyRevoked {
            app_id: app.to_string(),
            key_id: key.to_string(),
            at,
            until,
        });
        self.list_revocations_now().await;
        let edges_notified = self.notify(kind).await;
        tracing::info!(app = %app, key = %key, edges_notified, "api key revoked");
        Ok(Revoked { revoked_at_ms, edges_notified })
    }
}
