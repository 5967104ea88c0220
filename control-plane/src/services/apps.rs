//! Apps: create, list, read, change and delete them (admin only), with the
//! checks of their names, limits, Origin allowlists and Pusher settings
//! (drawing a Pusher app id when Pusher mode is on without one). A change
//! tells edges (`AppLimitsChanged`, and `NamespacesChanged` when it
//! touches the Pusher settings, which edges cache with the namespaces); a
//! deletion drops the app's keys, history streams and caches and has edges
//! close its connections (`AppDeleted`). Disabling an app keeps everything
//! but refuses its API keys (`app_disabled`) and its tokens minted before,
//! and has edges close its connections (`AppStatusChanged`); enabling it
//! lets its keys and new tokens work again.

use herald_bus::now_ms;
use herald_proto::{AppId, ErrorCode, bus};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::keys;
use crate::services::checks::{check_name, parse_app_id, require_admin};
use crate::services::pusher::{MAX_PUSHER_APP_ID_DRAWS, PusherPatch};
use crate::store::{App, Disabled, LimitOverrides, PusherSettings, StoreError};

/// Longest reason for disabling an app, in bytes.
pub const MAX_DISABLED_REASON_BYTES: usize = 200;

/// Longest Origin in an allowlist, in bytes.
pub const MAX_ORIGIN_BYTES: usize = 255;

/// What to create or change in an app.
#[derive(Debug, Clone, Default)]
pub struct AppSpec {
    /// Display name.
    pub name: Option<String>,
    /// Limits; `Some(0)` resets a limit to the server default.
    pub limits: LimitOverrides,
    /// Exact Origin values; `Some(empty)` allows every origin.
    pub allowed_origins: Option<Vec<String>>,
    /// Pusher settings to set: on creation the fields not given take their
    /// defaults (Pusher mode off); on a change they stay. A whole
    /// [`PusherSettings`] converts: `Some(settings.into())`.
    pub pusher: Option<PusherPatch>,
    /// On a change: `Some(true)` disables the app, `Some(false)` enables
    /// it; ignored on creation (apps start enabled).
    pub disabled: Option<bool>,
    /// The reason shown while disabled (with `disabled: Some(true)`, or to
    /// change the reason of a disabled app).
    pub disabled_reason: Option<String>,
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

impl Core {
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

    /// Creates an app (admin). `id` is generated when not given.
    ///
    /// # Errors
    ///
    /// `forbidden`, `bad_request` for invalid fields, `conflict` for a taken
    /// id or Pusher app id, `unavailable`.
    pub async fn create_app(&self, who: &Principal, id: Option<&str>, spec: AppSpec) -> Result<App, ApiError> {
        require_admin(who)?;
        let id = match id {
            Some(id) => AppId::new(id).map_err(|e| ApiError::bad_request(format!("`id`: {e}")))?,
            None => AppId::new(&format!("app{}", keys::random_alnum(16))).map_err(|_| ApiError::internal())?,
        };
        let name = check_name("name", spec.name.as_deref().unwrap_or(""))?;
        let origins = spec.allowed_origins.unwrap_or_default();
        self.check_origins(&origins)?;
        let mut app = App {
            id,
            name,
            limits: self.check_limits(&spec.limits)?,
            allowed_origins: origins,
            created_at_ms: now_ms(),
            pusher: self.check_pusher(&spec.pusher.unwrap_or_default(), PusherSettings::default())?,
            disabled: None,
        };
        self.save_app(&mut app, true).await?;
        self.auth.evict_app(&app.id);
        if app.pusher.enabled || app.pusher.app_id.is_some() {
            // An edge asked about this id before may hold "no such app",
            // and another replica "no app has this Pusher app id".
            self.namespaces_changed(&app.id).await;
        }
        tracing::info!(app = %app.id, "app created");
        Ok(app)
    }

    /// Writes `app`, inserted when `insert` or else updated, after drawing
    /// a Pusher app id when Pusher mode is on without one (another if a
    /// concurrent change took it). Returns false when the app to update
    /// does not exist.
    ///
    /// # Errors
    ///
    /// `conflict` for a taken app id or Pusher app id, `unavailable`.
    async fn save_app(&self, app: &mut App, insert: bool) -> Result<bool, ApiError> {
        let draw = app.pusher.enabled && app.pusher.app_id.is_none();
        for _ in 0..MAX_PUSHER_APP_ID_DRAWS {
            if draw {
                app.pusher.app_id = Some(self.unused_pusher_app_id().await?);
            }
            let saved =
                if insert { self.store.insert_app(app).await.map(|()| true) } else { self.store.update_app(app).await };
            match saved {
                Ok(found) => return Ok(found),
                Err(e) if e.is_pusher_app_id_conflict() && draw => {}
                Err(e) if e.is_pusher_app_id_conflict() => {
                    let id = app.pusher.app_id.map(|id| id.to_string()).unwrap_or_default();
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!("another app has the Pusher app_id {id:?}; choose another or leave it out"),
                    ));
                }
                Err(StoreError::Conflict(_)) => {
                    return Err(ApiError::new(
                        ErrorCode::Conflict,
                        format!("an app with id {:?} exists", app.id.as_str()),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::error!(app = %app.id, "every Pusher app id drawn was taken meanwhile");
        Err(ApiError::internal())
    }

    /// Every app (admin).
    ///
    /// # Errors
    ///
    /// `forbidden`, `unavailable`.
    pub async fn list_apps(&self, who: &Principal) -> Result<Vec<App>, ApiError> {
        require_admin(who)?;
        Ok(self.store.list_apps().await?)
    }

    /// One app (admin).
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn get_app(&self, who: &Principal, id: &str) -> Result<App, ApiError> {
        require_admin(who)?;
        let id = parse_app_id(id)?;
        self.store.get_app(&id).await?.ok_or_else(|| ApiError::not_found(format!("no app {:?}", id.as_str())))
    }

    /// Changes an app's name, limits, Origin allowlist or Pusher settings
    /// (admin); edges are told to refetch.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `bad_request`, `conflict` for a Pusher app
    /// id another app has, `unavailable`.
    pub async fn update_app(&self, who: &Principal, id: &str, spec: AppSpec) -> Result<App, ApiError> {
        let mut app = self.get_app(who, id).await?;
        if let Some(name) = &spec.name {
            app.name = check_name("name", name)?;
        }
        let merged = LimitOverrides {
            max_connections: spec.limits.max_connections.or(app.limits.max_connections),
            max_message_bytes: spec.limits.max_message_bytes.or(app.limits.max_message_bytes),
            publish_rate_per_sec: spec.limits.publish_rate_per_sec.or(app.limits.publish_rate_per_sec),
            quota_messages_per_day: spec.limits.quota_messages_per_day.or(app.limits.quota_messages_per_day),
            quota_messages_per_month: spec.limits.quota_messages_per_month.or(app.limits.quota_messages_per_month),
            quota_connections: spec.limits.quota_connections.or(app.limits.quota_connections),
        };
        app.limits = self.check_limits(&merged)?;
        if let Some(origins) = spec.allowed_origins {
            self.check_origins(&origins)?;
            app.allowed_origins = origins;
        }
        if let Some(patch) = &spec.pusher {
            app.pusher = self.check_pusher(patch, app.pusher)?;
        }
        let status = disabled_change(&app, spec.disabled, spec.disabled_reason.as_deref())?;
        if !self.save_app(&mut app, false).await? {
            return Err(ApiError::not_found(format!("no app {:?}", app.id.as_str())));
        }
        if let Some(status) = status {
            self.set_disabled(&mut app, status).await?;
        }
        self.auth.evict_app(&app.id);
        let limits = self.effective_limits(&app);
        let kind = bus::control_event::Kind::AppLimitsChanged(bus::AppLimitsChanged {
            app_id: app.id.to_string(),
            max_message_bytes: limits.max_message_bytes,
            max_connections: limits.max_connections,
        });
        self.notify(kind).await;
        if spec.pusher.is_some() {
            self.namespaces_changed(&app.id).await;
        }
        tracing::info!(app = %app.id, "app updated");
        Ok(app)
    }

    /// Writes the app's disabled state, and tells edges and the other
    /// replicas (edges close the connections of a disabled app).
    async fn set_disabled(&self, app: &mut App, status: Option<Disabled>) -> Result<(), ApiError> {
        let now = now_ms();
        if !self.store.set_app_disabled(&app.id, status.as_ref(), self.signer.revocations_since_ms(now)).await? {
            return Err(ApiError::not_found(format!("no app {:?}", app.id.as_str())));
        }
        self.auth.evict_app(&app.id);
        self.namespaces.evict(&app.id);
        let event = match &status {
            Some(d) => {
                self.list_revocations_now().await;
                let (at, until) = self.signer.revocation_bounds(d.at_ms);
                bus::AppStatusChanged {
                    app_id: app.id.to_string(),
                    disabled: true,
                    reason: d.reason.clone(),
                    at,
                    until,
                }
            }
            None => bus::AppStatusChanged { app_id: app.id.to_string(), ..Default::default() },
        };
        self.notify(bus::control_event::Kind::AppStatusChanged(event)).await;
        match &status {
            Some(d) => tracing::info!(app = %app.id, reason = %d.reason, "app disabled"),
            None => tracing::info!(app = %app.id, "app enabled"),
        }
        app.disabled = status;
        Ok(())
    }

    /// Deletes an app and its keys (admin); edges close its connections.
    ///
    /// # Errors
    ///
    /// `forbidden`, `not_found`, `unavailable`.
    pub async fn delete_app(&self, who: &Principal, id: &str) -> Result<(), ApiError> {
        require_admin(who)?;
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
}

/// The disabled state an update asks for, if it changes anything:
/// `Some(None)` to enable, `Some(Some(_))` to disable (or change the
/// reason, keeping since when).
///
/// # Errors
///
/// `bad_request` for a reason too long or with control characters, or a
/// reason for an app that stays enabled.
fn disabled_change(
    app: &App,
    disabled: Option<bool>,
    reason: Option<&str>,
) -> Result<Option<Option<Disabled>>, ApiError> {
    let reason = reason.map(str::trim);
    if let Some(r) = reason
        && (r.len() > MAX_DISABLED_REASON_BYTES || r.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(format!(
            "`disabled_reason` must be at most {MAX_DISABLED_REASON_BYTES} bytes of text without control characters"
        )));
    }
    let disable = disabled.unwrap_or(app.disabled.is_some());
    if !disable {
        if reason.is_some_and(|r| !r.is_empty()) {
            return Err(ApiError::bad_request("`disabled_reason` is only for a disabled app: send `disabled`: true"));
        }
        return Ok(app.disabled.is_some().then_some(None));
    }
    let next = Disabled {
        at_ms: app.disabled.as_ref().map_or_else(now_ms, |d| d.at_ms),
        reason: reason
            .map(str::to_owned)
            .or_else(|| app.disabled.as_ref().map(|d| d.reason.clone()))
            .unwrap_or_default(),
    };
    Ok((app.disabled.as_ref() != Some(&next)).then_some(Some(next)))
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
}
