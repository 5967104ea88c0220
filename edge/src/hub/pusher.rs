//! Pusher's JSON event frames, as the hub builds them: once per channel
//! message, member change or user event, and only when a Pusher connection
//! is to receive it (see the fan-out). Every Pusher frame is
//! `{"event": …, "channel": …, "data": "…"}`, `data` a JSON string, as
//! protocol 7 has it.

use bytes::Bytes;
use serde::Serialize;

use crate::ws;
use herald_bus::presence::Member;

/// The channel name prefix of a user's server-to-user events, followed by
/// the user id (`#server-to-user-<id>`), as pusher-js binds them.
pub const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// The event name a message without one goes out with.
pub const DEFAULT_EVENT: &str = "message";

#[derive(Serialize)]
struct Event<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// A Pusher event frame: `data` goes out as a JSON string.
#[must_use]
pub fn event_frame(event: &str, channel: Option<&str>, data: &str, user_id: Option<&str>) -> Bytes {
    // Serializing strings into a Vec cannot fail.
    let json = serde_json::to_vec(&Event { event, channel, data, user_id }).unwrap_or_default();
    ws::text_frame(&json)
}

/// The frame of a channel message: its event (or [`DEFAULT_EVENT`]), its
/// data as text (lossy UTF-8 for binary data a Herald client published),
/// and `user_id` when one is given.
#[must_use]
pub fn message_frame(channel: &str, event: Option<&str>, data: &[u8], user_id: Option<&str>) -> Bytes {
    let data = String::from_utf8_lossy(data);
    event_frame(event.unwrap_or(DEFAULT_EVENT), Some(channel), &data, user_id)
}

/// The `user_id` a message of `channel` published by `publisher` carries
/// to Pusher subscribers: the publisher's, on presence channels only.
#[must_use]
pub fn user_id_of<'a>(channel: &str, publisher: &'a str) -> Option<&'a str> {
    (!publisher.is_empty() && channel.starts_with(herald_bus::namespaces::PRESENCE_PREFIX)).then_some(publisher)
}

/// The frame of a whole bus message (a cache channel's kept one).
#[must_use]
pub fn channel_message_frame(channel: &str, msg: &herald_proto::bus::ChannelMessage) -> Bytes {
    message_frame(channel, msg.event.as_deref(), &msg.data, user_id_of(channel, &msg.publisher))
}

/// `pusher:cache_miss`: a cache channel has no event kept.
#[must_use]
pub fn cache_miss_frame(channel: &str) -> Bytes {
    event_frame("pusher:cache_miss", Some(channel), "{}", None)
}

/// A member's `user_info` as JSON: the presence entry's info when it is
/// JSON, else none.
fn user_info(info: &[u8]) -> Option<serde_json::Value> {
    if info.is_empty() {
        return None;
    }
    serde_json::from_slice(info).ok()
}

#[derive(Serialize)]
struct MemberData<'a> {
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_info: Option<serde_json::Value>,
}

/// `pusher_internal:member_added` for `member`.
#[must_use]
pub fn member_added_frame(channel: &str, member: &Member) -> Bytes {
    let data = MemberData { user_id: &member.client_id, user_info: user_info(&member.info) };
    let data = serde_json::to_string(&data).unwrap_or_default();
    event_frame("pusher_internal:member_added", Some(channel), &data, None)
}

/// `pusher_internal:member_removed` for `member`.
#[must_use]
pub fn member_removed_frame(channel: &str, member: &Member) -> Bytes {
    let data = MemberData { user_id: &member.client_id, user_info: None };
    let data = serde_json::to_string(&data).unwrap_or_default();
    event_frame("pusher_internal:member_removed", Some(channel), &data, None)
}

/// A server-to-user event for `user_id`, on its `#server-to-user-<id>`
/// channel.
#[must_use]
pub fn user_event_frame(user_id: &str, event: &str, data: &[u8]) -> Bytes {
    let channel = format!("{USER_CHANNEL_PREFIX}{user_id}");
    event_frame(event, Some(&channel), &String::from_utf8_lossy(data), None)
}

/// `pusher_internal:subscription_count` with the channel's subscribers.
#[must_use]
pub fn subscription_count_frame(channel: &str, count: u64) -> Bytes {
    let data = format!("{{\"subscription_count\":{count}}}");
    event_frame("pusher_internal:subscription_count", Some(channel), &data, None)
}

/// The parts of a message Pusher's frame is built from, kept while the edge
/// has Pusher subscribers (the frame is built once, for the first).
pub(super) struct PusherParts {
    pub(super) event: Option<String>,
    pub(super) data: Bytes,
    /// The publisher's user id, sent as `user_id` (presence channels only).
    pub(super) user_id: Option<String>,
}

impl PusherParts {
    /// The message's Pusher frame on `channel`.
    pub(super) fn frame(&self, channel: &herald_proto::ChannelName) -> Bytes {
        message_frame(channel.as_str(), self.event.as_deref(), &self.data, self.user_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(frame: &Bytes) -> serde_json::Value {
        // Short frames: a 2-byte header.
        assert_eq!(frame[0], 0x81, "a final text frame");
        let start = if frame[1] == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[start..]).expect("json")
    }

    #[test]
    fn messages_carry_data_as_a_string() {
        let f = message_frame("private-a", Some("client-x"), br#"{"n":1}"#, Some("u1"));
        assert_eq!(
            json(&f),
            serde_json::json!({"event": "client-x", "channel": "private-a", "data": "{\"n\":1}", "user_id": "u1"})
        );
        let f = message_frame("a", None, &[0xff, b'h'], None);
        assert_eq!(json(&f), serde_json::json!({"event": "message", "channel": "a", "data": "\u{fffd}h"}));
    }

    #[test]
    fn member_events() {
        let m = Member { client_id: "7".into(), info: Bytes::from_static(br#"{"name":"A"}"#), connections: 1 };
        let added = json(&member_added_frame("presence-r", &m));
        assert_eq!(added["event"], "pusher_internal:member_added");
        let data: serde_json::Value = serde_json::from_str(added["data"].as_str().expect("string")).expect("json");
        assert_eq!(data, serde_json::json!({"user_id": "7", "user_info": {"name": "A"}}));
        let removed = json(&member_removed_frame("presence-r", &m));
        assert_eq!(removed["data"], "{\"user_id\":\"7\"}");
        let user = json(&user_event_frame("7", "hello", b"hi"));
        assert_eq!(user, serde_json::json!({"event": "hello", "channel": "#server-to-user-7", "data": "hi"}));
    }
}
