//! REST for publishing: one message to a channel, and batches.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use herald_bus::usage::Source;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{ApiPath, Body, Caller, Shared, TAG_APP};
use crate::error::{ApiError, ErrorBody};
use crate::publish::Published;
use crate::services::Draft;
use crate::services::publish::message_channels;

/// `POST /v1/apps/{app_id}/channels/{channel}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// The payload: a string is sent as its text (or decoded with
    /// `encoding: "base64"`), any other JSON value as its JSON text.
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
    /// Event name (at most 128 bytes).
    pub name: Option<String>,
    /// Idempotency id (at most 128 bytes): retries with the same id within
    /// the window are accepted once. Becomes the message id.
    pub id: Option<String>,
    /// `"base64"` to send binary data given as a base64 string.
    pub encoding: Option<String>,
    /// A connection id (`"1234.5678"`, a Pusher client's `socket_id`) that
    /// must not receive the message: the sender's own, typically.
    pub exclude_connection: Option<String>,
}

/// Where a message sits in its channel's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PositionView {
    /// Its sequence number in the namespace's stream.
    pub seq: u64,
    /// The stream's epoch (a new epoch restarts the numbering).
    pub epoch: String,
}

/// A position in one channel of a message sent to several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelPosition {
    /// The channel.
    pub channel: String,
    /// Its sequence number in the namespace's stream.
    pub seq: u64,
    /// The stream's epoch.
    pub epoch: String,
}

/// A message accepted by the bus.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// The message id.
    pub id: String,
    /// The channel sequence, for a message to one channel with history
    /// (`position.seq`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The message's position, for a message to one channel with history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<PositionView>,
    /// The position in every channel with history, for a message to
    /// several channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub positions: Vec<ChannelPosition>,
    /// True when the idempotency id was seen within the window and nothing
    /// was sent again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

impl From<Published> for Accepted {
    fn from(p: Published) -> Self {
        let (position, positions) = match (p.channels, p.positions.as_slice()) {
            (1, [(_, pos)]) => (Some(PositionView { seq: pos.seq, epoch: pos.epoch.clone() }), Vec::new()),
            _ => (
                None,
                p.positions
                    .into_iter()
                    .map(|(c, pos)| ChannelPosition { channel: c.to_string(), seq: pos.seq, epoch: pos.epoch })
                    .collect(),
            ),
        };
        Self { id: p.id, seq: position.as_ref().map(|p| p.seq), position, positions, duplicate: p.duplicate }
    }
}

/// One message of a batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchMessage {
    /// One channel…
    pub channel: Option<String>,
    /// …or several (not both).
    pub channels: Option<Vec<String>>,
    /// As in a single publish.
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
    /// Event name.
    pub name: Option<String>,
    /// Idempotency id.
    pub id: Option<String>,
    /// `"base64"` for binary data.
    pub encoding: Option<String>,
    /// A connection that must not receive it.
    pub exclude_connection: Option<String>,
}

/// `POST /v1/apps/{app_id}/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// The messages (at most `max_batch_messages`).
    #[serde(deserialize_with = "batch_messages")]
    pub messages: Vec<BatchMessage>,
}

/// Room a batch's message list starts with: a typical batch fits, so the
/// list (160 bytes a message) is not grown and copied as it is read.
const BATCH_ROOM: usize = 64;

/// Reads a batch's message list into room for [`BATCH_ROOM`] messages
/// (growing past it for a longer one, which is refused later if it is over
/// `max_batch_messages`).
fn batch_messages<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<BatchMessage>, D::Error> {
    struct List;
    impl<'de> serde::de::Visitor<'de> for List {
        type Value = Vec<BatchMessage>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of messages")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut messages = Vec::with_capacity(seq.size_hint().unwrap_or(BATCH_ROOM).min(BATCH_ROOM));
            while let Some(message) = seq.next_element()? {
                messages.push(message);
            }
            Ok(messages)
        }
    }
    deserializer.deserialize_seq(List)
}

/// The result of one message of a batch: `{"id", …}` or `{"error": …}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    /// Accepted.
    Ok(Accepted),
    /// Refused or failed.
    Err(ErrorBody),
}

/// The answer to a batch: one result per message, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResults {
    /// One per message.
    pub results: Vec<BatchResult>,
    /// Set (with status 503) when the bus was unavailable for some message:
    /// those were not accepted and may be retried.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::error::ErrorDetail>,
}

/// The payload bytes of `data` (see [`PublishBody::data`]).
pub(super) fn payload(data: &RawValue, encoding: Option<&str>) -> Result<Bytes, ApiError> {
    let text = data.get();
    let is_string = text.starts_with('"');
    match encoding {
        None | Some("utf-8" | "utf8" | "json") => {
            if is_string {
                let s: String = serde_json::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("`data` is not a valid JSON string: {e}")))?;
                Ok(Bytes::from(s))
            } else {
                Ok(Bytes::copy_from_slice(text.as_bytes()))
            }
        }
        Some("base64") => {
            if !is_string {
                return Err(ApiError::bad_request("with `encoding: \"base64\"`, `data` must be a string"));
            }
            let s: String = serde_json::from_str(text)
                .map_err(|e| ApiError::bad_request(format!("`data` is not a valid JSON string: {e}")))?;
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map(Bytes::from)
                .map_err(|e| ApiError::bad_request(format!("`data` is not valid base64: {e}")))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "unknown `encoding` {:?}; use \"base64\" or leave it out",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// Publishes a message to one channel. Answers once the bus accepted it.
#[utoipa::path(post, path = "/v1/apps/{app_id}/channels/{channel}/messages", tag = TAG_APP, request_body = PublishBody,
    security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"),
           ("channel" = String, Path, description = "The channel name, percent-encoded")),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 429, body = ErrorBody),
              (status = 503, body = ErrorBody, description = "the bus is unavailable; nothing was accepted")))]
pub(super) async fn publish(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, channel)): ApiPath<(String, String)>,
    Body(body): Body<PublishBody>,
) -> Result<Response, ApiError> {
    let data = payload(&body.data, body.encoding.as_deref())?;
    let draft = Draft { data, event: body.name, idempotency_id: body.id, exclude_connection: body.exclude_connection };
    let published = core.publish(&who, &app_id, &[channel.as_str()], draft, Source::Rest).await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted::from(published))).into_response())
}

/// Publishes a batch of messages; one result per message.
#[utoipa::path(post, path = "/v1/apps/{app_id}/messages", tag = TAG_APP, request_body = BatchBody, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id")),
    responses((status = 202, body = BatchResults, description = "processed; each result says accepted or why not"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 413, body = ErrorBody),
              (status = 503, body = BatchResults, description = "the bus was unavailable for some messages")))]
pub(super) async fn publish_batch(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    Body(body): Body<BatchBody>,
) -> Result<Response, ApiError> {
    let (app, key, limits) = core.publish_context(&who, &app_id).await?;
    core.check_batch(body.messages.len())?;
    let items = body
        .messages
        .into_iter()
        .map(|m| {
            let channels = message_channels(m.channel.as_deref(), m.channels.as_deref())?;
            let data = payload(&m.data, m.encoding.as_deref())?;
            // The strings move into the draft; the channels borrow others.
            let draft = Draft { data, event: m.name, idempotency_id: m.id, exclude_connection: m.exclude_connection };
            core.prepare(key, &limits, &channels, draft)
        })
        .collect();
    let results = core.publish_many(&app, &limits, items, Source::Rest).await;
    let unavailable = results.iter().any(|r| matches!(r, Err(e) if e.code == herald_proto::ErrorCode::Unavailable));
    let results: Vec<BatchResult> = results
        .into_iter()
        .map(|r| match r {
            Ok(p) => BatchResult::Ok(p.into()),
            Err(e) => BatchResult::Err(e.body()),
        })
        .collect();
    if unavailable {
        let error = ApiError::unavailable(
            "the message bus is unavailable; messages with an `unavailable` result were not accepted",
        );
        let body = BatchResults { results, error: Some(error.body().error) };
        return Ok((StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(BatchResults { results, error: None })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rest::parse_json;
    use crate::api::rest::tokens::TokenBody;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("raw")
    }

    #[test]
    fn payloads() {
        assert_eq!(payload(&raw(r#""hi""#), None).expect("string"), Bytes::from_static(b"hi"));
        assert_eq!(payload(&raw(r#"{"a": 1}"#), None).expect("object"), Bytes::from_static(br#"{"a": 1}"#));
        assert_eq!(payload(&raw("42"), None).expect("number"), Bytes::from_static(b"42"));
        assert_eq!(payload(&raw(r#""AAE=""#), Some("base64")).expect("b64"), Bytes::from_static(&[0, 1]));
        assert!(payload(&raw(r#""!!""#), Some("base64")).is_err());
        assert!(payload(&raw("1"), Some("base64")).is_err());
        assert!(payload(&raw(r#""x""#), Some("rot13")).is_err());
    }

    #[test]
    fn raw_values_survive_path_tracking() {
        let body: PublishBody = parse_json(br#"{"data": {"x": [1, 2]}, "name": "e"}"#, 32).expect("body");
        assert_eq!(body.data.get(), r#"{"x": [1, 2]}"#);
        let err = parse_json::<TokenBody>(br#"{"client_id": "u", "ttl_seconds": "long"}"#, 32).expect_err("type");
        assert!(err.message.contains("ttl_seconds"), "{}", err.message);
    }
}
