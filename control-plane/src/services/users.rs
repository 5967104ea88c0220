//! Users: what the APIs do to every connection of one user at once — send
//! it an event ([`Core::publish_to_user`], a `UserEvent`) or close its
//! connections ([`Core::terminate_user`], a `UserTerminated`). A user's
//! connections are the Pusher connections signed in as the user id and the
//! Herald connections whose token's subject (client id) it is, on any edge:
//! both events go to every edge on the control subject.
//!
//! Both need an API key that may publish on every channel (`"*":
//! ["publish"]`, as keys created without capabilities may): a user event
//! reaches the user whatever channels it is in, and terminating ends all of
//! its connections. A user event counts as one publish of the app (rate
//! limit) and answers once the bus accepted it, like a publish.

use std::sync::LazyLock;

use herald_bus::now_ms;
use herald_proto::claims::MAX_EVENT_NAME_LEN;
use herald_proto::{AppId, Capabilities, ClientId, bus};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::keys::new_message_id;
use crate::publish::PublishLimits;
use crate::services::checks::{parse_app_id, require_app};
use crate::services::publish::{Draft, check_event_name, check_payload};
use crate::store::ApiKey;

/// What a key needs to reach users: `publish` on every channel.
static ALL_CHANNELS: LazyLock<Option<Capabilities>> =
    LazyLock::new(|| Capabilities::from_pairs([("*", ["publish"])]).ok());

/// Refuses a key that may not publish on every channel (the admin may).
///
/// # Errors
///
/// `forbidden`.
pub fn require_all_channels(key: Option<&ApiKey>) -> Result<(), ApiError> {
    let Some(key) = key else { return Ok(()) };
    match &*ALL_CHANNELS {
        Some(all) if all.is_subset_of(&key.capabilities) => Ok(()),
        _ => Err(ApiError::forbidden(
            "events to users and terminating users need an API key that allows `publish` on every channel (\"*\")",
        )),
    }
}

/// Validates a user id (a Herald client id: 1-255 bytes of printable text).
///
/// # Errors
///
/// `bad_request`.
pub fn parse_user_id(user: &str) -> Result<ClientId, ApiError> {
    ClientId::new(user).map_err(|e| ApiError::bad_request(format!("user id: {e}")))
}

impl Core {
    /// Sends an event to every connection of `user` in `app`; returns the
    /// event's id. `draft.idempotency_id` and `draft.exclude_connection` are
    /// not used.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key, or one that may not publish on every
    /// channel), `not_found` (app), `bad_request` (user id, event name),
    /// `too_large`, `rate_limited`, `unavailable` (the bus did not accept
    /// it).
    pub async fn publish_to_user(
        &self,
        who: &Principal,
        app: &str,
        user: &str,
        draft: Draft,
    ) -> Result<String, ApiError> {
        self.publish_to_user_with(who, app, user, draft, MAX_EVENT_NAME_LEN).await
    }

    /// [`Self::publish_to_user`], with event names of up to
    /// `max_event_name` bytes.
    ///
    /// # Errors
    ///
    /// As [`Self::publish_to_user`].
    pub async fn publish_to_user_with(
        &self,
        who: &Principal,
        app: &str,
        user: &str,
        draft: Draft,
        max_event_name: usize,
    ) -> Result<String, ApiError> {
        let (app, key, limits) = self.publish_context(who, app).await?;
        require_all_channels(key)?;
        let user = parse_user_id(user)?;
        check_payload(&limits, &draft.data)?;
        check_event_name(draft.event.as_deref(), max_event_name)?;
        let id = new_message_id();
        let event = bus::UserEvent {
            app_id: app.to_string(),
            user_id: user.to_string(),
            event: draft.event.unwrap_or_default(),
            data: draft.data,
            id: id.clone(),
            timestamp_ms: now_ms(),
        };
        let limits = PublishLimits { rate_per_sec: limits.publish_rate_per_sec };
        self.publisher.publish_user_event(&app, limits, event).await?;
        tracing::debug!(%app, "event sent to a user");
        Ok(id)
    }

    /// Closes every connection of `user` in `app`, on every edge. The users
    /// may connect again.
    ///
    /// # Errors
    ///
    /// `forbidden` (another app's key, or one that may not publish on every
    /// channel), `not_found` (app), `bad_request` (user id), `unavailable`
    /// (the bus did not take the event: nothing was closed; retry).
    pub async fn terminate_user(&self, who: &Principal, app: &str, user: &str) -> Result<(), ApiError> {
        let app = parse_app_id(app)?;
        let key = require_app(who, &app)?;
        require_all_channels(key)?;
        let user = parse_user_id(user)?;
        self.auth.app(&app).await?;
        self.publish_user_terminated(&app, &user).await
    }

    async fn publish_user_terminated(&self, app: &AppId, user: &ClientId) -> Result<(), ApiError> {
        let event = bus::ControlEvent {
            timestamp_ms: now_ms(),
            kind: Some(bus::control_event::Kind::UserTerminated(bus::UserTerminated {
                app_id: app.to_string(),
                user_id: user.to_string(),
            })),
        };
        self.publisher.bus().publish_control(&event).await.map_err(|e| {
            tracing::warn!(%app, error = %e, "user termination not published");
            ApiError::unavailable("the message bus is unavailable; no connection was closed; retry later")
        })?;
        tracing::info!(%app, "user's connections terminated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert!(parse_user_id("user@example.com").is_ok());
        assert!(parse_user_id("").is_err());
        assert!(parse_user_id("a\nb").is_err());
    }
}
