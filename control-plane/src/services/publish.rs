//! Publishing through the APIs: who may publish where, what a message and
//! a batch may hold (channels, size, event name, idempotency id, the
//! connection it skips), and the app's limits; then the channels with
//! history are marked and the [`Publisher`](crate::publish::Publisher) puts
//! the messages on the bus. Herald's REST and gRPC APIs and the Pusher HTTP
//! API all publish through here, and here they are counted in the app's
//! usage (by source) and refused while the app is over a message quota.

use bytes::Bytes;
use herald_bus::usage::{Refused, Source};
use herald_proto::caps::Operation;
use herald_proto::claims::{MAX_EVENT_NAME_LEN, MAX_MESSAGE_ID_LEN};
use herald_proto::{AppId, ErrorCode};

use crate::auth::Principal;
use crate::core::Core;
use crate::error::ApiError;
use crate::publish::{Prepared, PublishLimits, Published};
use crate::services::checks::{check_text, parse_app_id, parse_channel, require_app};
use crate::services::limits::EffectiveLimits;
use crate::store::ApiKey;

/// Longest event name the Pusher HTTP API takes (Pusher's own limit;
/// Herald's APIs take [`MAX_EVENT_NAME_LEN`]).
pub const PUSHER_MAX_EVENT_NAME_LEN: usize = 200;

/// One message as a caller gives it, before the checks.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The payload.
    pub data: Bytes,
    /// Event name.
    pub event: Option<String>,
    /// Idempotency id; becomes the message id.
    pub idempotency_id: Option<String>,
    /// The connection that must not receive the message: a Pusher
    /// `socket_id` or a Herald connection id, both `<digits>.<digits>`.
    pub exclude_connection: Option<String>,
}

/// Whether `id` is shaped like a connection id (`^\d+\.\d+$`, the form
/// of Pusher's `socket_id`).
#[must_use]
pub fn is_connection_id(id: &str) -> bool {
    let Some((a, b)) = id.split_once('.') else { return false };
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|c| c.is_ascii_digit());
    digits(a) && digits(b)
}

/// Checks a connection to exclude.
///
/// # Errors
///
/// `bad_request` when it is not `<digits>.<digits>`.
pub fn check_exclusion(field: &str, id: Option<&str>) -> Result<(), ApiError> {
    match id {
        Some(id) if !is_connection_id(id) => Err(ApiError::bad_request(format!(
            "`{field}` {:?} is not a connection id like \"1234.5678\"",
            id.chars().take(64).collect::<String>()
        ))),
        _ => Ok(()),
    }
}

/// Checks an event name against `max` bytes.
///
/// # Errors
///
/// `bad_request`.
pub fn check_event_name(event: Option<&str>, max: usize) -> Result<(), ApiError> {
    event.map_or(Ok(()), |e| check_text("name", e, max))
}

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

/// Refuses a payload over the app's message size.
///
/// # Errors
///
/// `too_large`.
pub fn check_payload(limits: &EffectiveLimits, data: &[u8]) -> Result<(), ApiError> {
    if data.len() > limits.max_message_bytes as usize {
        return Err(ApiError::too_large(format!(
            "the message is {} bytes; this app allows at most {}",
            data.len(),
            limits.max_message_bytes
        )));
    }
    Ok(())
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
        draft: Draft,
    ) -> Result<Prepared, ApiError> {
        self.prepare_with(key, limits, channels, draft, MAX_EVENT_NAME_LEN)
    }

    /// [`Self::prepare`], with event names of up to `max_event_name` bytes.
    ///
    /// # Errors
    ///
    /// As [`Self::prepare`].
    pub fn prepare_with(
        &self,
        key: Option<&ApiKey>,
        limits: &EffectiveLimits,
        channels: &[&str],
        draft: Draft,
        max_event_name: usize,
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
        check_payload(limits, &draft.data)?;
        check_event_name(draft.event.as_deref(), max_event_name)?;
        if let Some(id) = &draft.idempotency_id {
            check_text("id", id, MAX_MESSAGE_ID_LEN)?;
        }
        check_exclusion("exclude_connection", draft.exclude_connection.as_deref())?;
        Ok(Prepared {
            channels: names,
            data: draft.data,
            event: draft.event,
            idempotency_id: draft.idempotency_id,
            exclude_connection: draft.exclude_connection,
            history: Vec::new(),
        })
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
        if let Some(verdict) = self.usage.verdict(&app_id).filter(|v| v.messages_over) {
            self.usage.counters(&app_id).refused(Refused::Error(ErrorCode::QuotaExceeded));
            return Err(ApiError::new(ErrorCode::QuotaExceeded, format!("the app is over quota: {}", verdict.reason)));
        }
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
        draft: Draft,
        source: Source,
    ) -> Result<Published, ApiError> {
        let (app, key, limits) = self.publish_context(who, app).await?;
        let msg = self.prepare(key, &limits, channels, draft).inspect_err(|e| self.count_refusal(&app, e))?;
        self.publish_one(&app, &limits, msg, source).await
    }

    /// Counts a message published from `source` in the app's usage (one
    /// per channel it went to; nothing for a duplicate), or its refusal.
    fn count_publish(&self, app: &AppId, source: Source, bytes: usize, result: &Result<Published, ApiError>) {
        match result {
            Ok(p) if !p.duplicate => {
                let n = p.channels as u64;
                self.usage.counters(app).published(source, n, (bytes as u64).saturating_mul(n));
            }
            Ok(_) => {}
            Err(e) => self.count_refusal(app, e),
        }
    }

    /// Counts a refused publish in the app's usage.
    pub(crate) fn count_refusal(&self, app: &AppId, e: &ApiError) {
        self.usage.counters(app).refused(Refused::Error(e.code));
    }

    /// Publishes prepared messages; one result per message.
    pub async fn publish_many(
        &self,
        app: &AppId,
        limits: &EffectiveLimits,
        items: Vec<Result<Prepared, ApiError>>,
        source: Source,
    ) -> Vec<Result<Published, ApiError>> {
        let limits = PublishLimits { rate_per_sec: limits.publish_rate_per_sec };
        let sizes: Vec<usize> = items.iter().map(|i| i.as_ref().map_or(0, |m| m.data.len())).collect();
        let mut marked = Vec::with_capacity(items.len());
        for item in items {
            marked.push(match item {
                Ok(msg) => self.resolve_history(app, msg).await,
                Err(e) => Err(e),
            });
        }
        let tapped: Vec<Option<Tapped>> =
            marked.iter().map(|m| m.as_ref().ok().and_then(|m| self.tap_before(app, m))).collect();
        let results = self.publisher.publish_many(app, limits, marked).await;
        for ((result, bytes), tapped) in results.iter().zip(sizes).zip(tapped) {
            self.count_publish(app, source, bytes, result);
            if result.is_ok() {
                self.tap_after(app, tapped);
            }
        }
        results
    }

    /// What a publish's debug events need, kept only while `app` is
    /// watched.
    fn tap_before(&self, app: &AppId, msg: &Prepared) -> Option<Tapped> {
        self.tap.is_on(app.as_str()).then(|| Tapped {
            channels: msg.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            data: msg.data.clone(),
            event: msg.event.clone().unwrap_or_default(),
        })
    }

    /// One debug event per channel of a publish the bus took.
    fn tap_after(&self, app: &AppId, tapped: Option<Tapped>) {
        let Some(t) = tapped else { return };
        let source = crate::debug_tap::source();
        for channel in &t.channels {
            self.tap.emit(app.as_str(), "", |tap| tap.publish_event(source, channel, &t.event, &t.data));
        }
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
        source: Source,
    ) -> Result<Published, ApiError> {
        let limits = PublishLimits { rate_per_sec: limits.publish_rate_per_sec };
        let bytes = msg.data.len();
        let result = match self.resolve_history(app, msg).await {
            Ok(msg) => {
                let tapped = self.tap_before(app, &msg);
                let published = self.publisher.publish(app, limits, msg).await;
                if published.is_ok() {
                    self.tap_after(app, tapped);
                }
                published
            }
            Err(e) => Err(e),
        };
        self.count_publish(app, source, bytes, &result);
        result
    }
}

/// A publish of a watched app, kept for its debug events.
struct Tapped {
    channels: Vec<String>,
    data: Bytes,
    event: String,
}
