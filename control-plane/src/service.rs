//! The operations both APIs expose, with their checks: who may call them,
//! what input is valid, which limits apply. REST and gRPC only translate
//! their wire shapes into these calls and the results back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use herald_proto::caps::Operation;
use herald_proto::claims::{AppLimits, MAX_EVENT_NAME_LEN, MAX_INFO_BYTES, MAX_MESSAGE_ID_LEN};
use herald_proto::{AppId, Capabilities, ChannelName, ClientId, ErrorCode, KeyId, bus};
use serde::Serialize;
use tokio::sync::{Notify, mpsc};

use crate::auth::{Auth, Principal};
use crate::config::Config;
use crate::error::ApiError;
use crate::keys;
use crate::metrics::Metrics;
use crate::namespaces::NamespaceCache;
use crate::now_ms;
use crate::publish::{Prepared, PublishLimits, Published, Publisher};
use crate::store::{ApiKey, App, LimitOverrides, Store, StoreError};
use crate::tokens::{MintRequest, Rotation, Signer};

/// The key id put in tokens minted with the admin token.
pub const ADMIN_KEY_ID: &str = "admin";

/// Longest app or key name, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// Longest Origin in an allowlist, in bytes.
pub const MAX_ORIGIN_BYTES: usize = 255;

/// An app's limits with the server defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct EffectiveLimits {
    /// Most concurrent connections across edges.
    pub max_connections: u32,
    /// Largest message payload, in bytes.
    pub max_message_bytes: u32,
    /// API publishes per second (per control-plane replica).
    pub publish_rate_per_sec: u32,
}

/// What to create or change in an app.
#[derive(Debug, Clone, Default)]
pub struct AppSpec {
    /// Display name.
    pub name: Option<String>,
    /// Limits; `Some(0)` resets a limit to the server default.
    pub limits: LimitOverrides,
    /// Exact Origin values; `Some(empty)` allows every origin.
    pub allowed_origins: Option<Vec<String>>,
}

/// The outcome of a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// When the key was revoked (Unix ms; the first time when revoked twice).
    pub revoked_at_ms: i64,
    /// Whether the revocation event reached the bus before the call returned
    /// (when false it is retried in the background).
    pub edges_notified: bool,
}

/// The shared state of one control plane and its operations.
pub struct Core {
    pub(crate) config: Config,
    pub(crate) store: Store,
    pub(crate) auth: Auth,
    pub(crate) signer: Signer,
    pub(crate) publisher: Publisher,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) ready: AtomicBool,
    pub(crate) refresh_signer: Notify,
    pub(crate) retry_events: mpsc::Sender<bus::ControlEvent>,
    pub(crate) namespaces: NamespaceCache,
    pub(crate) reports: crate::channels::Reports,
}

fn check_name(field: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be 1-{MAX_NAME_BYTES} bytes of text without control characters"
        )));
    }
    Ok(name.to_owned())
}

fn check_origin(origin: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "allowed origin {:?} is not an origin like `https://example.com` or `http://localhost:3000`",
            origin.chars().take(64).collect::<String>()
        ))
    };
    if origin.len() > MAX_ORIGIN_BYTES {
        return Err(bad());
    }
    let (scheme, rest) = origin.split_once("://").ok_or_else(bad)?;
    if !matches!(scheme, "http" | "https") || rest.is_empty() {
        return Err(bad());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    if !host_ok || !port_ok {
        return Err(bad());
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "`{field}` must be 1-{max} bytes of text without control characters"
        )));
    }
    Ok(())
}

/// Validates a channel name, answering `invalid_channel`.
///
/// # Errors
///
/// `invalid_channel` naming the broken rule.
pub fn parse_channel(name: &str) -> Result<ChannelName, ApiError> {
    ChannelName::new(name).map_err(|e| ApiError::new(ErrorCode::InvalidChannel, e.to_string()))
}

/// Validates an app id from a path or request.
///
/// # Errors
///
/// `not_found`: an id that cannot exist names no app.
pub fn parse_app_id(id: &str) -> Result<AppId, ApiError> {
    AppId::new(id).map_err(|_| ApiError::not_found("no such app"))
}

fn parse_key_id(id: &str) -> Result<KeyId, ApiError> {
    KeyId::new(id).map_err(|_| ApiError::not_found("no such key"))
}

impl Core {
    // ----- access -----------------------------------------------------------

    /// Refuses anything but the admin token.
    ///
    /// # Errors
    ///
    /// `forbidden` for an API key.
    pub fn require_admin(&self, who: &Principal) -> Result<(), ApiError> {
        match who {
            Principal::Admin => Ok(()),
            Principal::Key(_) => {
                Err(ApiError::forbidden("this operation needs the admin token; API keys cannot call it"))
            }
        }
    }

    /// Refuses a key of another app. Returns the key, `None` for the admin.
    ///
    /// # Errors
    ///
    /// `forbidden` for a key of another app.
    pub fn require_app<'a>(&self, who: &'a Principal, app: &AppId) -> Result<Option<&'a ApiKey>, ApiError> {
        match who {
            Principal::Admin => Ok(None),
            Principal::Key(key) if &key.app_id == app => Ok(Some(key)),
            Principal::Key(_) => Err(ApiError::forbidden("this API key belongs to another app")),
        }
    }

    /// The app's limits with defaults filled in.
    #[must_use]
    pub fn effective_limits(&self, app: &App) -> EffectiveLimits {
        let c = &self.config;
        EffectiveLimits {
            max_connections: app.limits.max_connections.unwrap_or(c.default_max_connections),
            max_message_bytes: app
                .limits
                .max_message_bytes
                .unwrap_or(u32::try_from(c.default_max_message_size.0).unwrap_or(u32::MAX)),
            publish_rate_per_sec: app.limits.publish_rate_per_sec.unwrap_or(c.default_publish_rate_per_sec),
        }
    }

    fn check_limits(&self, limits: &LimitOverrides) -> Result<LimitOverrides, ApiError> {
        let zero_is_default = |v: Option<u32>| v.filter(|v| *v != 0);
        let out = LimitOverrides {
            max_connections: zero_is_default(limits.max_connections),
            max_message_bytes: zero_is_default(limits.max_message_bytes),
            publish_rate_per_sec: zero_is_default(limits.publish_rate_per_sec),
        };
        if let Some(v) = out.max_message_bytes
            && u64::from(v) > self.config.max_message_size_ceiling.0
        {
            return Err(ApiError::bad_request(format!(
                "`limits.max_message_bytes` is {v}; the server allows at most {}",
                self.config.max_message_size_ceiling.0
            )));
        }
        Ok(out)
    }

    fn check_origins(&self, origins: &[String]) -> Result<(), ApiError> {
        if origins.len() > self.config.max_allowed_origins {
            return Err(ApiError::limit_exceeded(format!(
                "{} allowed origins; the limit is {}",
                origins.len(),
                self.config.max_allowed_origins
            )));
        }
        origins.iter().try_for_each(|o| check_origin(o))
    }

    // ----- apps ---------------------------------------------------------------

    /// Creates an app (admin). `id` is generated when not given.
    ///
    /// # Errors
    ///
    /// `forbidden`, `bad_request` for invalid fields, `conflict` for a taken
    /// id, `unavailable`.
    pub async fn create_app(&self, who: &Principal, id: Option<&str>, spec: AppSpec) -> Result<App, ApiError> {
        self.require_admin(who)?;
        let id = match id {
            Some(id) => AppId::new(id).map_err(|e| ApiError::bad_request(format!("`id`: {e}")))?,
            None => AppId::new(&format!("app{}", keys::random_alnum(16))).map_err(|_| ApiError::internal())?,
        };
        let name = check_name("name", spec.name.as_deref().unwrap_or(""))?;
        let origins = spec.allowed_origins.unwrap_or_default();
        self.check_origins(&origins)?;
        let app = App {
            id,
            name,
            limits: self.check_limits(&spec.limits)?,
            allowed_origins: origins,
            created_at_ms: now_ms(),
        };
        match self.store.insert_app(&app).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::new(ErrorCode::Conflict, format!("an app with id {:?} exists", app.id.as_str())));
            }
            Err(e) => return Err(e.into()),
        }
        self.auth.evict_app(&app.id);
        tracing::info!(app = %app.id, "app created");
        Ok(app)
    }

    /// Every app (admin).
    ///
    /// # Errors
    ///
    /// `forbidden`, `unavailable`.
    pub async fn list_apps(&self, who: &Principal) -> Result<Vec<App>, ApiError> {
        self.require_admin(who)?;
        Ok(self.store.list_apps().await?)
    }

    /// One app (admin).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn get_app(&self, who: &Principal, id: &str) -> Result<App, ApiError> {
        self.require_admin(who)?;
        let id = parse_app_id(id)?;
        self.store.get_app(&id).await?.ok_or_else(|| ApiError::not_found(format!("no app {:?}", id.as_str())))
    }

    /// Changes an app's name, limits or Origin allowlist (admin); edges are
    /// told to refetch.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `bad_request`, `unavailable`.
    pub async fn update_app(&self, who: &Principal, id: &str, spec: AppSpec) -> Result<App, ApiError> {
        let mut app = self.get_app(who, id).await?;
        if let Some(name) = &spec.name {
            app.name = check_name("name", name)?;
        }
        let merged = LimitOverrides {
            max_connections: spec.limits.max_connections.or(app.limits.max_connections),
            max_message_bytes: spec.limits.max_message_bytes.or(app.limits.max_message_bytes),
            publish_rate_per_sec: spec.limits.publish_rate_per_sec.or(app.limits.publish_rate_per_sec),
        };
        app.limits = self.check_limits(&merged)?;
        if let Some(origins) = spec.allowed_origins {
            self.check_origins(&origins)?;
            app.allowed_origins = origins;
        }
        if !self.store.update_app(&app).await? {
            return Err(ApiError::not_found(format!("no app {:?}", app.id.as_str())));
        }
        self.auth.evict_app(&app.id);
        let limits = self.effective_limits(&app);
        let kind = bus::control_event::Kind::AppLimitsChanged(bus::AppLimitsChanged {
            app_id: app.id.to_string(),
            max_message_bytes: limits.max_message_bytes,
            max_connections: limits.max_connections,
        });
        self.notify(kind).await;
        tracing::info!(app = %app.id, "app updated");
        Ok(app)
    }

    /// Deletes an app and its keys (admin); edges close its connections.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn delete_app(&self, who: &Principal, id: &str) -> Result<(), ApiError> {
        self.require_admin(who)?;
        let id = parse_app_id(id)?;
        let namespaces = self.store.list_namespaces(&id).await?;
        let now = now_ms();
        if !self.store.delete_app(&id, now, self.signer.revocations_since_ms(now)).await? {
            return Err(ApiError::not_found(format!("no app {:?}", id.as_str())));
        }
        self.auth.evict_app(&id);
        self.namespaces.evict(&id);
        self.publisher.forget_app(&id);
        self.drop_app_history(&namespaces).await;
        let (at, until) = self.signer.revocation_bounds(now);
        self.list_revocations_now().await;
        self.notify(bus::control_event::Kind::AppDeleted(bus::AppDeleted { app_id: id.to_string(), at, until })).await;
        tracing::info!(app = %id, "app deleted");
        Ok(())
    }

    // ----- API keys -----------------------------------------------------------

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
        let new = keys::new_key().map_err(|_| {
            tracing::error!("system random generator failed");
            ApiError::internal()
        })?;
        let key = ApiKey {
            id: new.id.clone(),
            app_id: app.id.clone(),
            name,
            capabilities,
            secret_hash: new.secret_hash.clone(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        match self.store.insert_key(&key).await {
            Ok(()) => {}
            Err(StoreError::Missing(_)) => return Err(ApiError::not_found(format!("no app {:?}", app.id.as_str()))),
            Err(e) => return Err(e.into()),
        }
        self.auth.evict_key(&key.id);
        tracing::info!(app = %app.id, key = %key.id, "api key created");
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

    /// Revokes a key (admin): it stops working on this replica at once, on
    /// other replicas when they get the event (or within the cache TTL), and
    /// edges close the connections holding tokens it minted.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn revoke_key(&self, who: &Principal, app: &str, key: &str) -> Result<Revoked, ApiError> {
        self.require_admin(who)?;
        let app = parse_app_id(app)?;
        let key = parse_key_id(key)?;
        let Some(revoked_at_ms) = self.store.revoke_key(&app, &key, now_ms()).await? else {
            return Err(ApiError::not_found(format!("app {:?} has no key {:?}", app.as_str(), key.as_str())));
        };
        self.auth.evict_key(&key);
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

    /// Reloads what the JWKS serves, so that this replica lists a
    /// revocation from its answer on (other replicas within a second: they
    /// reload a JWKS older than that before serving it). A failure leaves it
    /// to those reloads.
    async fn list_revocations_now(&self) {
        if let Err(e) = self.signer.refresh().await {
            tracing::warn!(error = %e, "jwks not reloaded after a revocation");
        }
    }

    // ----- tokens ---------------------------------------------------------------

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
        let key = self.require_app(who, &app_id)?;
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
        self.require_admin(who)?;
        let overlap = overlap_secs.unwrap_or(self.config.signing_key_overlap.0.as_secs());
        if overlap > 10 * 365 * 86_400 {
            return Err(ApiError::bad_request("`overlap_seconds` must be at most ten years"));
        }
        let rotation = self.signer.rotate(Duration::from_secs(overlap)).await?;
        let kind =
            bus::control_event::Kind::SigningKeysRotated(bus::SigningKeysRotated { current_kid: rotation.kid.clone() });
        self.notify(kind).await;
        Ok(rotation)
    }

    // ----- publishing -------------------------------------------------------------

    /// Checks one message against the caller's capabilities and the app's
    /// limits.
    ///
    /// # Errors
    ///
    /// `bad_request`, `invalid_channel`, `limit_exceeded` (channels),
    /// `too_large` (payload), `forbidden` (no `publish` capability).
    pub fn prepare(
        &self,
        key: Option<&ApiKey>,
        limits: &EffectiveLimits,
        channels: &[&str],
        data: Bytes,
        event: Option<String>,
        idempotency_id: Option<String>,
    ) -> Result<Prepared, ApiError> {
        if channels.is_empty() {
            return Err(ApiError::bad_request("give `channel` or a non-empty `channels`"));
        }
        if channels.len() > self.config.max_channels_per_message {
            return Err(ApiError::limit_exceeded(format!(
                "{} channels; a message may go to at most {}",
                channels.len(),
                self.config.max_channels_per_message
            )));
        }
        let mut names = Vec::with_capacity(channels.len());
        for c in channels {
            let name = parse_channel(c)?;
            if let Some(key) = key
                && !key.capabilities.allows(name.as_str(), Operation::Publish)
            {
                return Err(ApiError::forbidden(format!(
                    "the API key does not allow publishing to {:?}",
                    name.as_str()
                )));
            }
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if data.len() > limits.max_message_bytes as usize {
            return Err(ApiError::too_large(format!(
                "the message is {} bytes; this app allows at most {}",
                data.len(),
                limits.max_message_bytes
            )));
        }
        if let Some(e) = &event {
            check_text("name", e, MAX_EVENT_NAME_LEN)?;
        }
        if let Some(id) = &idempotency_id {
            check_text("id", id, MAX_MESSAGE_ID_LEN)?;
        }
        Ok(Prepared { channels: names, data, event, idempotency_id, history: Vec::new() })
    }

    /// The caller's key (if any) and the app's limits, for publishing.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key), `not_found`, `unavailable`.
    pub async fn publish_context<'a>(
        &self,
        who: &'a Principal,
        app: &str,
    ) -> Result<(AppId, Option<&'a ApiKey>, EffectiveLimits), ApiError> {
        let app_id = parse_app_id(app)?;
        let key = self.require_app(who, &app_id)?;
        let app = self.auth.app(&app_id).await?;
        Ok((app_id, key, self.effective_limits(&app)))
    }

    /// Publishes prepared messages; one result per message.
    pub async fn publish_many(
        &self,
        app: &AppId,
        limits: &EffectiveLimits,
        items: Vec<Result<Prepared, ApiError>>,
    ) -> Vec<Result<Published, ApiError>> {
        let limits = PublishLimits { rate_per_sec: limits.publish_rate_per_sec };
        let mut marked = Vec::with_capacity(items.len());
        for item in items {
            marked.push(match item {
                Ok(msg) => self.resolve_history(app, msg).await,
                Err(e) => Err(e),
            });
        }
        self.publisher.publish_many(app, limits, marked).await
    }

    /// Marks the channels of `msg` that keep history (only channels with a
    /// namespace prefix can).
    async fn resolve_history(&self, app: &AppId, msg: Prepared) -> Result<Prepared, ApiError> {
        if !msg.channels.iter().any(|c| c.namespace().is_some()) {
            return Ok(msg);
        }
        self.mark_history(app, msg).await
    }

    /// Publishes one prepared message.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`].
    pub async fn publish_one(
        &self,
        app: &AppId,
        limits: &EffectiveLimits,
        msg: Prepared,
    ) -> Result<Published, ApiError> {
        let limits = PublishLimits { rate_per_sec: limits.publish_rate_per_sec };
        let msg = self.resolve_history(app, msg).await?;
        self.publisher.publish(app, limits, msg).await
    }

    // ----- health -------------------------------------------------------------------

    /// Whether the database and the bus are reachable, and the server is
    /// not shutting down. Returns the failing parts.
    pub async fn readiness(&self) -> Result<(), Vec<&'static str>> {
        let mut failing = Vec::new();
        if !self.ready.load(Ordering::Acquire) {
            failing.push("shutting_down");
        }
        let timeout = self.config.readiness_timeout.0;
        if !matches!(tokio::time::timeout(timeout, self.store.ping()).await, Ok(Ok(()))) {
            failing.push("database");
        }
        if !self.publisher.is_connected() {
            failing.push("bus");
        }
        if failing.is_empty() { Ok(()) } else { Err(failing) }
    }

    // ----- control events -------------------------------------------------------------

    /// Publishes a control event; on failure, queues it for retries in the
    /// background. Returns whether it went out now.
    pub(crate) async fn notify(&self, kind: bus::control_event::Kind) -> bool {
        let event = bus::ControlEvent { timestamp_ms: now_ms(), kind: Some(kind) };
        match self.publisher.bus().publish_control(&event).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "control event not published; retrying in the background");
                if self.retry_events.try_send(event).is_err() {
                    tracing::error!("control event retry queue full; event dropped");
                }
                false
            }
        }
    }

    /// Applies a control event from another replica to this one's caches.
    pub(crate) fn on_control(&self, event: &bus::ControlEvent) {
        use bus::control_event::Kind;
        match &event.kind {
            Some(Kind::KeyRevoked(k)) => {
                if let Ok(id) = KeyId::new(&k.key_id) {
                    self.auth.evict_key(&id);
                }
            }
            Some(Kind::AppDeleted(a)) => {
                if let Ok(id) = AppId::new(&a.app_id) {
                    self.auth.evict_app(&id);
                    self.namespaces.evict(&id);
                    self.publisher.forget_app(&id);
                }
            }
            Some(Kind::NamespacesChanged(a)) => {
                if let Ok(id) = AppId::new(&a.app_id) {
                    self.namespaces.evict(&id);
                }
            }
            Some(Kind::PresenceSyncAll(_)) => {}
            Some(Kind::AppLimitsChanged(a)) => {
                if let Ok(id) = AppId::new(&a.app_id) {
                    self.auth.evict_app(&id);
                }
            }
            Some(Kind::SigningKeysRotated(r)) if r.current_kid != self.signer.current_kid() => {
                self.refresh_signer.notify_one();
            }
            Some(Kind::SigningKeysRotated(_)) => {}
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        for ok in ["https://example.com", "http://localhost:3000", "https://a.b-c.example:8443", "http://[::1]:80"] {
            check_origin(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", "example.com", "ftp://x", "https://", "https://a/b", "https://a:b", "https://a b", "*"] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_texts() {
        assert!(check_name("name", "  ").is_err());
        assert!(check_name("name", "a\nb").is_err());
        assert_eq!(check_name("name", " Chat ").expect("ok"), "Chat");
        assert!(check_text("id", &"x".repeat(129), MAX_MESSAGE_ID_LEN).is_err());
        assert!(check_text("id", "", MAX_MESSAGE_ID_LEN).is_err());
        check_text("id", "retry-1", MAX_MESSAGE_ID_LEN).expect("ok");
    }
}
