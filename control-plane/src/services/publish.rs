//! Publishing through the APIs: who may publish where, what a message and
//! a batch may hold (channels, size, event name, idempotency id), and the
//! app's limits; then the channels with history are marked and the
//! [`Publisher`](crate::publish::Publisher) puts the messages on the bus.

use bytes::Bytes;
use herald_proto::AppId;
use herald_proto::caps::Operation;
use herald_proto::claims::{MAX_EVENT_NAME_LEN, MAX_MESSAGE_ID_LEN};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::publish::{Prepared, PublishLimits, Published};
use crate::services::checks::{check_text, parse_app_id, parse_channel, require_app};
use crate::services::limits::EffectiveLimits;
use crate::store::ApiKey;

/// The channels of a message that names `channel` or `channels` (exactly
/// one of them).
///
/// # Errors
///
/// `bad_request` when both or neither are given.
pub fn message_channels<'a>(
    channel: Option<&'a str>,
    channels: Option<&'a [String]>,
) -> Result<Vec<&'a str>, ApiError> {
    match (channel, channels) {
        (Some(c), None) => Ok(vec![c]),
        (None, Some(cs)) => Ok(cs.iter().map(String::as_str).collect()),
        (Some(_), Some(_)) => Err(ApiError::bad_request("give `channel` or `channels`, not both")),
        (None, None) => Err(ApiError::bad_request("give `channel` or `channels`")),
    }
}

impl Core {
    /// Refuses an empty batch or one over `max_batch_messages`.
    ///
    /// # Errors
    ///
    /// `bad_request`, `limit_exceeded`.
    pub fn check_batch(&self, messages: usize) -> Result<(), ApiError> {
        if messages == 0 {
            return Err(ApiError::bad_request("`messages` is empty"));
        }
        let max = self.config.max_batch_messages;
        if messages > max {
            return Err(ApiError::limit_exceeded(format!("{messages} messages in the batch; the limit is {max}")));
        }
        Ok(())
    }

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
        let key = require_app(who, &app_id)?;
        let app = self.auth.app(&app_id).await?;
        Ok((app_id, key, self.effective_limits(&app)))
    }

    /// Checks and publishes one message of `app` to `channels`.
    ///
    /// # Errors
    ///
    /// As [`Self::publish_context`], [`Self::prepare`] and
    /// [`Self::publish_one`].
    pub async fn publish(
        &self,
        who: &Principal,
        app: &str,
        channels: &[&str],
        data: Bytes,
        event: Option<String>,
        idempotency_id: Option<String>,
    ) -> Result<Published, ApiError> {
        let (app, key, limits) = self.publish_context(who, app).await?;
        let msg = self.prepare(key, &limits, channels, data, event, idempotency_id)?;
        self.publish_one(&app, &limits, msg).await
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
    /// As [`Publisher::publish`](crate::publish::Publisher::publish).
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
}
