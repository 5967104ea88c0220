//! The JSON messages of a Pusher connection: what a client sends, read
//! into [`ClientMessage`], and the connection-level events the edge sends
//! (`pusher:connection_established`, `pusher:pong`, subscription answers,
//! `pusher:signin_success`). Channel messages, member events and user
//! events are the hub's (see [`crate::hub::pusher`]).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::hub::pusher::event_frame;

/// A message from a client: `{"event": …, "channel": …, "data": …}`.
#[derive(Debug, Deserialize)]
pub(super) struct ClientMessage {
    /// The event name.
    pub(super) event: String,
    /// The channel, for client events.
    #[serde(default)]
    pub(super) channel: Option<String>,
    /// The event's data: any JSON.
    #[serde(default)]
    pub(super) data: Value,
}

impl ClientMessage {
    /// Reads a text message.
    ///
    /// # Errors
    ///
    /// What is wrong with it, for a `pusher:error`.
    pub(super) fn parse(text: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(text).map_err(|e| format!("not a Pusher message ({{\"event\", \"data\"}} JSON): {e}"))
    }

    /// `data` as an object of the type `T`: given as an object, or as a
    /// string holding one (both are seen in the wild).
    ///
    /// # Errors
    ///
    /// What is wrong with it.
    pub(super) fn data_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        let parsed = match &self.data {
            Value::String(s) => serde_json::from_str(s),
            other => T::deserialize(other),
        };
        parsed.map_err(|e| format!("bad data for {}: {e}", self.event))
    }

    /// `data` as the text a Herald message stores: a string as itself,
    /// anything else as its JSON.
    pub(super) fn data_text(&self) -> String {
        match &self.data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// `pusher:subscribe`'s data.
#[derive(Debug, Deserialize)]
pub(super) struct SubscribeData {
    pub(super) channel: String,
    #[serde(default)]
    pub(super) auth: Option<String>,
    #[serde(default)]
    pub(super) channel_data: Option<String>,
}

/// `pusher:unsubscribe`'s data.
#[derive(Debug, Deserialize)]
pub(super) struct UnsubscribeData {
    pub(super) channel: String,
}

/// `pusher:signin`'s data.
#[derive(Debug, Deserialize)]
pub(super) struct SigninData {
    pub(super) auth: String,
    pub(super) user_data: String,
}

/// A frame of `event` whose data is the JSON `data`, sent as a string.
fn with_json_data(event: &str, channel: Option<&str>, data: &Value) -> Bytes {
    event_frame(event, channel, &data.to_string(), None)
}

/// `pusher:connection_established`: the socket id and the activity
/// timeout in seconds.
pub(super) fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> Bytes {
    let data = serde_json::json!({"socket_id": socket_id, "activity_timeout": activity_timeout_secs});
    with_json_data("pusher:connection_established", None, &data)
}

/// `pusher:ping`, sent after a client was silent for the activity timeout.
pub(super) fn ping() -> Bytes {
    event_frame("pusher:ping", None, "{}", None)
}

/// `pusher:pong`, the answer to a client's `pusher:ping`.
pub(super) fn pong() -> Bytes {
    event_frame("pusher:pong", None, "{}", None)
}

/// `pusher_internal:subscription_succeeded` with `data` (`{}` but for
/// presence channels).
pub(super) fn subscription_succeeded(channel: &str, data: &Value) -> Bytes {
    with_json_data("pusher_internal:subscription_succeeded", Some(channel), data)
}

/// `pusher:subscription_error`: `{"type", "error", "status"}`, as pusher-js
/// reads it.
pub(super) fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> Bytes {
    metrics::counter!("herald_pusher_subscription_errors_total", "type" => kind.to_owned()).increment(1);
    let data = serde_json::json!({"type": kind, "error": error, "status": status});
    with_json_data("pusher:subscription_error", Some(channel), &data)
}

/// `pusher:signin_success` with the signed `user_data`.
pub(super) fn signin_success(user_data: &str) -> Bytes {
    with_json_data("pusher:signin_success", None, &serde_json::json!({"user_data": user_data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_comes_as_an_object_or_a_string() {
        let m = ClientMessage::parse(br#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#).expect("parse");
        assert_eq!(m.data_as::<SubscribeData>().expect("data").channel, "a");
        let m = ClientMessage::parse(br#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#).expect("parse");
        assert_eq!(m.data_as::<SubscribeData>().expect("data").channel, "b");
        assert!(m.data_as::<SigninData>().is_err());
        assert!(ClientMessage::parse(b"{}").is_err(), "no event");
        assert!(ClientMessage::parse(b"[1]").is_err());
        assert!(ClientMessage::parse(b"\xff").is_err());
    }

    #[test]
    fn client_event_data_keeps_strings_as_they_are() {
        let m = ClientMessage::parse(br#"{"event":"client-a","channel":"private-x","data":"hi"}"#).expect("parse");
        assert_eq!(m.data_text(), "hi");
        let m = ClientMessage::parse(br#"{"event":"client-a","data":{"n": 1}}"#).expect("parse");
        assert_eq!(m.data_text(), r#"{"n":1}"#);
    }
}
