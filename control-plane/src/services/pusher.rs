//! Pusher mode of an app: the checks of its settings ([`PusherPatch`]),
//! turning it on ([`Core::enable_pusher`]), its Pusher app id, the settings
//! and secrets edges get along with the app's namespaces
//! ([`Core::pusher_app`]), and who signed a request to the Pusher HTTP API
//! ([`Core::pusher_caller`]).
//!
//! A Pusher app is a Herald app: its Pusher `key` (in pusher-js's
//! `/app/{key}` and in the `auth_key` of signed requests) is the Herald app
//! id. Its Pusher `app_id` is a number of its own
//! ([`PusherAppId`], see [`crate::pusher_app_id`]), unique across apps:
//! given on creation or a change, or drawn at random when Pusher mode is
//! turned on without one; it stays when Pusher mode is turned off. The HTTP
//! API finds the app by it (cached like other app lookups). Its secrets are
//! the Pusher secrets of its active API keys (keys created with
//! `"pusher": true`); any of them signs, so a secret can be replaced
//! without a gap. The key whose secret signed a request is the request's
//! principal, with that key's capabilities.
//!
//! A change of the settings, and a new Pusher key, send `NamespacesChanged`
//! for the app: edges cache the Pusher settings with the namespaces. A
//! revoked key sends `KeyRevoked`, on which edges drop the same cache.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use herald_proto::AppId;
use herald_proto::bus;
use herald_proto::pusher::request::DEFAULT_TIMESTAMP_WINDOW_SECS;
use herald_proto::pusher::{ApiAuthError, ApiRequest, string_to_sign, verify_request};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::pusher_app_id::PusherAppId;
use crate::services::AppSpec;
use crate::store::{ApiKey, App, DEFAULT_PUSHER_BATCH_MAX, DEFAULT_PUSHER_MAX_EVENT_BYTES, PusherSettings, StoreError};

/// The highest `client_event_rate` an app may set, per connection and
/// second.
pub const MAX_CLIENT_EVENT_RATE: u32 = 10_000;

/// Random Pusher app ids tried before giving up on finding an unused one.
pub(crate) const MAX_PUSHER_APP_ID_DRAWS: usize = 8;

/// Changes to an app's Pusher settings: the fields given change, the others
/// stay (on creation: take their defaults). `max_event_bytes` and
/// `batch_max` of 0 mean their defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PusherPatch {
    /// Pusher mode on or off.
    pub enabled: Option<bool>,
    /// Clients may send `client-` events.
    pub client_events: Option<bool>,
    /// Most users in one presence channel; 0: the edge's default.
    pub presence_max_members: Option<u32>,
    /// Largest event `data`, in bytes; 0: 10,240.
    pub max_event_bytes: Option<u32>,
    /// Subscribers receive `pusher_internal:subscription_count` events.
    pub subscription_count: Option<bool>,
    /// Client events per connection and second; 0: the edge's default.
    pub client_event_rate: Option<u32>,
    /// Most events in one `batch_events` request; 0: 10.
    pub batch_max: Option<u32>,
    /// The Pusher app id (unique across apps); when Pusher mode is on
    /// without one, one is drawn. Parse it with [`parse_pusher_app_id`].
    pub app_id: Option<PusherAppId>,
}

impl From<PusherSettings> for PusherPatch {
    /// Every field of `s`: applied, the patch gives exactly `s`.
    fn from(s: PusherSettings) -> Self {
        Self {
            enabled: Some(s.enabled),
            client_events: Some(s.client_events),
            presence_max_members: Some(s.presence_max_members),
            max_event_bytes: Some(s.max_event_bytes),
            subscription_count: Some(s.subscription_count),
            client_event_rate: Some(s.client_event_rate),
            batch_max: Some(s.batch_max),
            app_id: s.app_id,
        }
    }
}

impl PusherPatch {
    /// `base` with the fields given here changed.
    #[must_use]
    pub fn apply(&self, base: PusherSettings) -> PusherSettings {
        PusherSettings {
            enabled: self.enabled.unwrap_or(base.enabled),
            client_events: self.client_events.unwrap_or(base.client_events),
            presence_max_members: self.presence_max_members.unwrap_or(base.presence_max_members),
            max_event_bytes: self.max_event_bytes.unwrap_or(base.max_event_bytes),
            subscription_count: self.subscription_count.unwrap_or(base.subscription_count),
            client_event_rate: self.client_event_rate.unwrap_or(base.client_event_rate),
            batch_max: self.batch_max.unwrap_or(base.batch_max),
            app_id: self.app_id.or(base.app_id),
        }
    }
}

/// Parses the Pusher app id a request gives in `field`.
///
/// # Errors
///
/// `bad_request` naming the field and the expected form.
pub fn parse_pusher_app_id(field: &str, id: &str) -> Result<PusherAppId, ApiError> {
    PusherAppId::parse(id).map_err(|e| ApiError::bad_request(format!("`{field}`: {e}")))
}

/// How a Pusher HTTP API request names its app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PusherAppRef<'a> {
    /// The Pusher app id of the path, `/apps/{app_id}/…`.
    AppId(&'a str),
    /// The request's `auth_key` (the Herald app id), for a path without
    /// `/apps/{app_id}` (pusher-http-python's `terminate_connections`).
    Key(&'a str),
}

/// The caller of a signed Pusher HTTP API request.
#[derive(Debug, Clone)]
pub struct PusherCaller {
    /// The app (in Pusher mode).
    pub app: Arc<App>,
    /// The API key whose Pusher secret signed the request.
    pub who: Principal,
}

/// The Pusher settings edges get for `app`, with the secrets of `keys`
/// and the app's Origin allowlist.
fn to_bus(app: &App, keys: &[Arc<ApiKey>]) -> bus::PusherApp {
    let settings = &app.pusher;
    bus::PusherApp {
        client_events: settings.client_events,
        presence_max_members: settings.presence_max_members,
        max_event_bytes: settings.max_event_bytes,
        subscription_count: settings.subscription_count,
        secrets: keys
            .iter()
            .filter_map(|k| {
                k.pusher_secret.as_ref().map(|s| bus::PusherSecret { key_id: k.id.to_string(), secret: s.clone() })
            })
            .collect(),
        client_event_rate: settings.client_event_rate,
        allowed_origins: app.allowed_origins.clone(),
        disabled: app.disabled.is_some(),
        disabled_reason: app.disabled.as_ref().map(|d| d.reason.clone()).unwrap_or_default(),
    }
}

/// Unix seconds now.
fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A refused signature: 401 with the reason.
fn unauthorized(e: &ApiAuthError) -> ApiError {
    ApiError::unauthorized(e.to_string())
}

impl Core {
    /// `patch` applied to `base`, with defaults for zeros, checked against
    /// the server's bounds. A default (or a stored value) beyond the bounds
    /// is brought within them; a value the patch gives is refused.
    ///
    /// # Errors
    ///
    /// `bad_request` naming the field.
    pub fn check_pusher(&self, patch: &PusherPatch, base: PusherSettings) -> Result<PusherSettings, ApiError> {
        let mut s = patch.apply(base);
        if s.max_event_bytes == 0 {
            s.max_event_bytes = DEFAULT_PUSHER_MAX_EVENT_BYTES;
        }
        if s.batch_max == 0 {
            s.batch_max = DEFAULT_PUSHER_BATCH_MAX;
        }
        let given = |v: Option<u32>| v.is_some_and(|v| v != 0);
        let ceiling = u32::try_from(self.config.max_message_size_ceiling.0).unwrap_or(u32::MAX);
        if s.max_event_bytes > ceiling {
            if given(patch.max_event_bytes) {
                return Err(ApiError::bad_request(format!(
                    "`pusher.max_event_bytes` is {}; the server allows at most {ceiling} (max_message_size_ceiling)",
                    s.max_event_bytes
                )));
            }
            s.max_event_bytes = ceiling;
        }
        let max_batch = u32::try_from(self.config.max_batch_messages).unwrap_or(u32::MAX).max(1);
        if s.batch_max > max_batch {
            if given(patch.batch_max) {
                return Err(ApiError::bad_request(format!(
                    "`pusher.batch_max` is {}; the server allows at most {max_batch} (max_batch_messages)",
                    s.batch_max
                )));
            }
            s.batch_max = max_batch;
        }
        let max_members = self.config.presence_max_per_channel;
        if s.presence_max_members > max_members {
            if patch.presence_max_members.is_some() {
                return Err(ApiError::bad_request(format!(
                    "`pusher.presence_max_members` is {}; the server tracks at most {max_members} per channel \
                     (presence_max_per_channel)",
                    s.presence_max_members
                )));
            }
            s.presence_max_members = max_members;
        }
        if s.client_event_rate > MAX_CLIENT_EVENT_RATE {
            return Err(ApiError::bad_request(format!(
                "`pusher.client_event_rate` is {}; it must be at most {MAX_CLIENT_EVENT_RATE} per second",
                s.client_event_rate
            )));
        }
        Ok(s)
    }

    /// Turns Pusher mode on for `app` (admin), with or without client
    /// events, and returns the app: its Pusher app id is
    /// `app.pusher.app_id` (drawn when it had none). The other settings
    /// stay. A shorthand for [`Core::update_app`] with a
    /// [`PusherPatch`].
    ///
    /// # Errors
    ///
    /// As [`Core::update_app`].
    pub async fn enable_pusher(&self, who: &Principal, app: &str, client_events: bool) -> Result<App, ApiError> {
        let patch = PusherPatch { enabled: Some(true), client_events: Some(client_events), ..PusherPatch::default() };
        self.update_app(who, app, AppSpec { pusher: Some(patch), ..AppSpec::default() }).await
    }

    /// A random Pusher app id no app has (yet: the unique index has the
    /// last word).
    ///
    /// # Errors
    ///
    /// `unavailable`; `internal` when every draw was taken.
    pub(crate) async fn unused_pusher_app_id(&self) -> Result<PusherAppId, ApiError> {
        for _ in 0..MAX_PUSHER_APP_ID_DRAWS {
            let id = PusherAppId::random();
            if self.store.get_app_by_pusher_id(id).await?.is_none() {
                return Ok(id);
            }
        }
        tracing::error!("no unused Pusher app id found in {MAX_PUSHER_APP_ID_DRAWS} draws");
        Err(ApiError::internal())
    }

    /// Gives every app in Pusher mode without a Pusher app id one (apps
    /// that turned it on before Pusher app ids existed); run at start.
    /// Failures are logged: such an app gets its id on its next change.
    pub(crate) async fn assign_missing_pusher_app_ids(&self) {
        let apps = match self.store.list_apps().await {
            Ok(apps) => apps,
            Err(e) => {
                tracing::warn!(error = %e, "apps in Pusher mode without a Pusher app id not checked");
                return;
            }
        };
        for app in apps.iter().filter(|a| a.pusher.enabled && a.pusher.app_id.is_none()) {
            let assigned = match self.unused_pusher_app_id().await {
                Ok(id) => self.store.set_missing_pusher_app_id(&app.id, id).await.map(|set| set.then_some(id)),
                Err(e) => {
                    tracing::warn!(app = %app.id, error = %e, "no Pusher app id assigned");
                    continue;
                }
            };
            match assigned {
                Ok(Some(id)) => {
                    tracing::info!(app = %app.id, pusher_app_id = %id, "Pusher app id assigned");
                    self.auth.evict_app(&app.id);
                    self.namespaces_changed(&app.id).await;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(app = %app.id, error = %e, "no Pusher app id assigned"),
            }
        }
    }

    /// The Pusher settings of `app` as edges get them, with the secrets of
    /// its active Pusher keys; `None` when the app does not exist or has
    /// Pusher mode off. Read from the database (an edge asks after a change
    /// it was told of); while the database is down, from this replica's
    /// cache when it holds the app.
    ///
    /// # Errors
    ///
    /// The store's error when the database is down and nothing is cached.
    pub async fn pusher_app(&self, app: &AppId) -> Result<Option<bus::PusherApp>, StoreError> {
        let lookup = async {
            let Some(stored) = self.store.get_app(app).await? else { return Ok(None) };
            if !stored.pusher.enabled {
                return Ok(None);
            }
            let keys: Vec<_> = self.store.list_pusher_keys(app).await?.into_iter().map(Arc::new).collect();
            Ok::<_, StoreError>(Some(to_bus(&stored, &keys)))
        };
        match lookup.await {
            Ok(found) => Ok(found),
            Err(e) => {
                let (Some(cached), Some(keys)) = (self.auth.cached_app(app), self.auth.cached_pusher_keys(app)) else {
                    return Err(e);
                };
                tracing::warn!(%app, error = %e, "Pusher settings answered from the cache");
                Ok(cached.pusher.enabled.then(|| to_bus(&cached, &keys)))
            }
        }
    }

    /// The app a Pusher HTTP API request names.
    ///
    /// # Errors
    ///
    /// `not_found` (no app has that Pusher app id, or that key),
    /// `app_disabled`, `unavailable`.
    async fn pusher_target(&self, to: PusherAppRef<'_>) -> Result<Arc<App>, ApiError> {
        let app = self.pusher_app_named(to).await?;
        match &app.disabled {
            Some(disabled) => Err(ApiError::app_disabled(disabled)),
            None => Ok(app),
        }
    }

    async fn pusher_app_named(&self, to: PusherAppRef<'_>) -> Result<Arc<App>, ApiError> {
        match to {
            PusherAppRef::AppId(id) => match PusherAppId::parse(id) {
                Ok(id) => self.auth.app_by_pusher_id(id).await,
                Err(_) => Err(ApiError::not_found(format!(
                    "no app has the Pusher app_id {:?}: Pusher app ids are numbers (the app's `pusher.app_id`; its \
                     Herald id is the Pusher key)",
                    id.chars().take(64).collect::<String>()
                ))),
            },
            PusherAppRef::Key(key) => match AppId::new(key) {
                Ok(id) => self.auth.app(&id).await,
                Err(_) => Err(ApiError::not_found(format!(
                    "no app has the Pusher key (auth_key) {:?}",
                    key.chars().take(64).collect::<String>()
                ))),
            },
        }
    }

    /// Who signed a Pusher HTTP API request to the app `to` names: the
    /// active API key of the app whose Pusher secret verifies it
    /// (`auth_key` is the Herald app id). `paths` are the forms of the
    /// request path the signature may cover (as received, and
    /// percent-decoded: server libraries sign the path before their HTTP
    /// client encodes it); `req.path` is ignored.
    ///
    /// # Errors
    ///
    /// `not_found` (no such app), `unauthorized` (missing, stale or wrong
    /// signature parameters, no key's secret matches, or the app has no
    /// Pusher key), `forbidden` (Pusher mode is off for the app),
    /// `unavailable`.
    pub async fn pusher_caller(
        &self,
        to: PusherAppRef<'_>,
        req: &ApiRequest<'_>,
        paths: &[&str],
    ) -> Result<PusherCaller, ApiError> {
        let stored = self.pusher_target(to).await?;
        let app_id = stored.id.clone();
        let keys = self.auth.pusher_keys(&app_id).await?;
        if keys.is_empty() {
            return Err(ApiError::unauthorized(format!(
                "app {:?} has no active API key with a Pusher secret; create one with \
                 POST /v1/apps/{}/keys {{\"pusher\": true}}",
                app_id.as_str(),
                app_id.as_str()
            )));
        }
        let now = now_secs();
        let mut matched = None;
        'keys: for key in keys.iter() {
            let Some(secret) = &key.pusher_secret else { continue };
            for &path in paths {
                let attempt = ApiRequest { path, ..*req };
                match verify_request(app_id.as_str(), secret, &attempt, now, DEFAULT_TIMESTAMP_WINDOW_SECS) {
                    Ok(()) => {
                        matched = Some(key.clone());
                        break 'keys;
                    }
                    Err(ApiAuthError::BadSignature | ApiAuthError::NotHex) => {}
                    // Independent of the secret: the same for every key.
                    Err(e) => return Err(unauthorized(&e)),
                }
            }
        }
        let Some(key) = matched else {
            let signed = string_to_sign(req.method, paths.first().copied().unwrap_or(req.path), req.params);
            return Err(ApiError::unauthorized(format!(
                "invalid auth_signature: expected the lower-case hex HMAC-SHA256 of {signed:?}, keyed with the \
                 Pusher secret of an active API key of the app"
            )));
        };
        if !stored.pusher.enabled {
            return Err(ApiError::forbidden(format!(
                "Pusher mode is off for app {:?}; turn it on with PATCH /v1/apps/{} {{\"pusher\": {{\"enabled\": true}}}}",
                app_id.as_str(),
                app_id.as_str()
            )));
        }
        Ok(PusherCaller { app: stored, who: Principal::Key(key) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_change_only_what_they_name() {
        let base = PusherSettings::default();
        let on = PusherPatch { enabled: Some(true), batch_max: Some(5), ..Default::default() };
        let s = on.apply(base);
        assert!(s.enabled);
        assert_eq!((s.batch_max, s.max_event_bytes, s.client_events), (5, DEFAULT_PUSHER_MAX_EVENT_BYTES, false));
        let all = PusherPatch::from(s);
        assert_eq!(all.apply(PusherSettings::default()), s);
        assert_eq!(PusherPatch::default().apply(s), s);
        let id = PusherAppId::parse("42").ok();
        let with_id = PusherPatch { app_id: id, ..Default::default() }.apply(s);
        assert_eq!(with_id.app_id, id);
        assert_eq!(PusherPatch::default().apply(with_id).app_id, id, "an id stays unless one is given");
    }
}
