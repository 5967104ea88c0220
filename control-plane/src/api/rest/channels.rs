//! REST for channels: the app's occupied channels and a channel's history
//! (API key).

use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::{ApiPath, ApiQuery, Caller, Shared, TAG_APP};
use crate::error::{ApiError, ErrorBody};
use crate::services::{History, Occupancy};

/// `GET /v1/apps/{app_id}/channels`.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChannelsQuery {
    /// Only channels whose name starts with this.
    pub prefix: Option<String>,
}

/// An occupied channel.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelView {
    /// The channel name.
    pub name: String,
    /// Subscriptions across edges.
    pub subscribers: u64,
}

/// The app's occupied channels.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChannelList {
    /// Channels with subscribers, by name.
    pub channels: Vec<ChannelView>,
    /// True when more channels matched than the server lists
    /// (`max_channels_listed`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// `GET /v1/apps/{app_id}/channels/{channel}/history`.
#[derive(Debug, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Messages after this sequence number (default 0: from the oldest
    /// held).
    pub since: Option<u64>,
    /// Most messages to return (default 100, at most `max_history_limit`).
    pub limit: Option<usize>,
    /// The epoch `since` belongs to; when it is not the stream's, `since`
    /// is ignored and the page is not `complete`.
    pub epoch: Option<String>,
}

/// One message of a channel's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryMessageView {
    /// Its sequence number.
    pub seq: u64,
    /// The message id.
    pub id: String,
    /// Event name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The payload, as publishing takes it: JSON text as that JSON value,
    /// other UTF-8 text as a string, other bytes as a base64 string with
    /// `encoding: "base64"`.
    #[schema(value_type = Value)]
    pub data: Box<RawValue>,
    /// `"base64"` when `data` is base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The publishing client, empty for the API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub publisher: String,
    /// When it was published, Unix ms.
    pub timestamp_ms: i64,
}

/// A page of a channel's history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    /// The channel.
    pub channel: String,
    /// The stream's epoch; sequence numbers of another epoch mean nothing
    /// here.
    pub epoch: String,
    /// Messages after `since`, oldest first.
    pub messages: Vec<HistoryMessageView>,
    /// True when every message after `since` is still held: the page
    /// continues exactly where the caller was. False when some fell out of
    /// history (size or TTL) or the epoch changed.
    pub complete: bool,
    /// The channel's newest sequence number (0 when it holds none); read
    /// on with `since` = the last message's `seq` while it is below this.
    pub last_seq: u64,
}

/// `data` for a payload, the way publishing takes it, and its `encoding`.
fn data_view(payload: &[u8]) -> (Box<RawValue>, Option<String>) {
    if let Ok(raw) = serde_json::from_slice::<Box<RawValue>>(payload) {
        return (raw, None);
    }
    let (text, encoding) = match std::str::from_utf8(payload) {
        Ok(text) => (text.to_owned(), None),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(payload), Some("base64".to_owned())),
    };
    // A string always serializes; the default (`null`) is never used.
    (serde_json::value::to_raw_value(&text).unwrap_or_default(), encoding)
}

fn channel_list(o: Occupancy) -> ChannelList {
    ChannelList {
        channels: o.channels.into_iter().map(|(n, c)| ChannelView { name: n.to_string(), subscribers: c }).collect(),
        truncated: o.truncated,
    }
}

fn history_view(h: History) -> HistoryView {
    HistoryView {
        channel: h.channel.to_string(),
        epoch: h.epoch,
        messages: h
            .messages
            .into_iter()
            .map(|m| {
                let (data, encoding) = data_view(&m.message.data);
                HistoryMessageView {
                    seq: m.seq,
                    id: m.message.id,
                    name: m.message.event,
                    data,
                    encoding,
                    publisher: m.message.publisher,
                    timestamp_ms: m.message.timestamp_ms,
                }
            })
            .collect(),
        complete: h.complete,
        last_seq: h.last_seq,
    }
}

/// Reads a channel's history (channels of a namespace with history).
#[utoipa::path(get, path = "/v1/apps/{app_id}/channels/{channel}/history", tag = TAG_APP, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"),
           ("channel" = String, Path, description = "The channel name, percent-encoded"), HistoryQuery),
    responses((status = 200, body = HistoryView), (status = 400, body = ErrorBody,
               description = "bad query or channel; `not_enabled` when the channel's namespace keeps no history"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn history(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath((app_id, channel)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    let h = core.history(&who, &app_id, &channel, q.since.unwrap_or(0), q.limit, q.epoch.as_deref()).await?;
    Ok(Json(history_view(h)))
}

/// The app's channels with subscribers, and how many.
#[utoipa::path(get, path = "/v1/apps/{app_id}/channels", tag = TAG_APP, security(("api_key" = [])),
    params(("app_id" = String, Path, description = "The app id"), ChannelsQuery),
    responses((status = 200, body = ChannelList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn channels(
    State(core): Shared,
    Caller(who): Caller,
    ApiPath(app_id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ChannelsQuery>,
) -> Result<Json<ChannelList>, ApiError> {
    Ok(Json(channel_list(core.occupied_channels(&who, &app_id, q.prefix.as_deref()).await?)))
}
