//! A debug event as a watcher sees it: one JSON object per event
//! ([`DebugItem`]), and the filter a watcher gives ([`DebugFilter`]).

use std::collections::BTreeSet;

use base64::Engine as _;
use herald_proto::bus::{self, debug_event::Kind};
use serde_json::{Value, json};

use crate::error::ApiError;

/// Every event type, as `type` says it and `types=` takes it.
pub const TYPES: [&str; 7] = ["publish", "connect", "disconnect", "subscribe", "unsubscribe", "refusal", "webhook"];

/// Longest channel prefix a filter takes, in bytes.
pub const MAX_CHANNEL_PREFIX: usize = 200;

/// What a watcher wants to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DebugFilter {
    /// Only events about a channel whose name starts with this (events
    /// about no channel — connects, disconnects, webhooks — are left out).
    pub channel: Option<String>,
    /// Only these types; empty: every type.
    pub types: BTreeSet<&'static str>,
}

impl DebugFilter {
    /// The filter of the query parameters `channel` (a prefix) and `types`
    /// (comma-separated names of [`TYPES`]).
    ///
    /// # Errors
    ///
    /// `bad_request` naming the parameter.
    pub fn parse(channel: Option<&str>, types: Option<&str>) -> Result<Self, ApiError> {
        let channel = match channel {
            Some(c) if c.len() > MAX_CHANNEL_PREFIX => {
                return Err(ApiError::bad_request(format!("`channel` is longer than {MAX_CHANNEL_PREFIX} bytes")));
            }
            Some(c) if c.chars().any(|ch| ch.is_whitespace() || ch.is_control()) => {
                return Err(ApiError::bad_request("`channel` holds whitespace or control characters"));
            }
            Some("") | None => None,
            Some(c) => Some(c.to_owned()),
        };
        let mut set = BTreeSet::new();
        for name in types.unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let Some(known) = TYPES.iter().find(|t| **t == name) else {
                return Err(ApiError::bad_request(format!(
                    "`types` names an unknown type {name:?}; known are {}",
                    TYPES.join(", ")
                )));
            };
            set.insert(*known);
        }
        Ok(Self { channel, types: set })
    }

    fn passes(&self, kind: &str, channel: Option<&str>) -> bool {
        (self.types.is_empty() || self.types.contains(kind))
            && self.channel.as_deref().is_none_or(|prefix| channel.is_some_and(|c| c.starts_with(prefix)))
    }
}

/// What a watcher receives.
#[derive(Debug, Clone, PartialEq)]
pub enum DebugItem {
    /// One event, as a JSON object with its `type`.
    Event(Value),
    /// This watcher fell behind and missed this many events.
    Missed(u64),
}

impl DebugItem {
    /// The JSON object of this item: an event, or
    /// `{"type": "missed", "missed": N}`.
    #[must_use]
    pub fn to_json(&self) -> Value {
        match self {
            Self::Event(v) => v.clone(),
            Self::Missed(n) => json!({"type": "missed", "missed": n}),
        }
    }

    /// The item of `event` when it passes `filter`.
    #[must_use]
    pub fn from_event(event: &bus::DebugEvent, filter: &DebugFilter) -> Option<Self> {
        let (kind, channel, detail) = detail(event.kind.as_ref()?);
        if !filter.passes(kind, channel) {
            return None;
        }
        let mut object = json!({
            "type": kind,
            "timestamp_ms": event.timestamp_ms,
            "node": event.node_id,
        });
        if !event.connection_id.is_empty() {
            object["connection_id"] = json!(event.connection_id);
        }
        if event.dropped > 0 {
            object["dropped"] = json!(event.dropped);
        }
        if let (Value::Object(o), Value::Object(d)) = (&mut object, detail) {
            o.extend(d);
        }
        Some(Self::Event(object))
    }
}

/// The type name, channel and fields of one event kind.
fn detail(kind: &Kind) -> (&'static str, Option<&str>, Value) {
    match kind {
        Kind::Publish(p) => {
            let mut v = json!({"source": p.source, "channel": p.channel, "size": p.size, "truncated": p.truncated});
            match std::str::from_utf8(&p.preview) {
                Ok(text) => v["preview"] = json!(text),
                // A cut may split a character: keep the valid part as text.
                Err(e) if e.error_len().is_none() => {
                    v["preview"] = json!(String::from_utf8_lossy(&p.preview[..e.valid_up_to()]));
                }
                Err(_) => {
                    v["preview"] = json!(base64::engine::general_purpose::STANDARD.encode(&p.preview));
                    v["preview_encoding"] = json!("base64");
                }
            }
            if !p.event.is_empty() {
                v["event"] = json!(p.event);
            }
            ("publish", Some(&p.channel), v)
        }
        Kind::Connect(c) => {
            let mut v = json!({"protocol": c.protocol});
            if !c.remote_ip.is_empty() {
                v["remote_ip"] = json!(c.remote_ip);
            }
            if !c.user_id.is_empty() {
                v["user_id"] = json!(c.user_id);
            }
            ("connect", None, v)
        }
        Kind::Disconnect(d) => {
            let name = u16::try_from(d.code).ok().and_then(herald_proto::CloseCode::from_number).map(|c| c.name());
            ("disconnect", None, json!({"code": d.code, "code_name": name, "reason": d.reason}))
        }
        Kind::Subscribe(s) => ("subscribe", Some(&s.channel), json!({"channel": s.channel})),
        Kind::Unsubscribe(s) => ("unsubscribe", Some(&s.channel), json!({"channel": s.channel})),
        Kind::Refusal(r) => {
            let mut v = json!({"code": r.code, "number": r.number, "reason": r.reason});
            let channel = (!r.channel.is_empty()).then_some(r.channel.as_str());
            if let Some(c) = channel {
                v["channel"] = json!(c);
            }
            ("refusal", channel, v)
        }
        Kind::Webhook(w) => {
            let mut v = json!({
                "endpoint_id": w.endpoint_id,
                "event_type": w.event_type,
                "ok": w.ok,
                "status": w.status,
                "latency_ms": w.latency_ms,
            });
            if !w.error.is_empty() {
                v["error"] = json!(w.error);
            }
            ("webhook", None, v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(channel: &str, preview: &[u8]) -> bus::DebugEvent {
        bus::DebugEvent {
            timestamp_ms: 1,
            node_id: "edge-1".into(),
            app_id: "a".into(),
            connection_id: String::new(),
            dropped: 3,
            kind: Some(Kind::Publish(bus::DebugPublish {
                source: "rest".into(),
                channel: channel.into(),
                size: 9,
                preview: bytes::Bytes::copy_from_slice(preview),
                truncated: false,
                event: String::new(),
            })),
        }
    }

    #[test]
    fn filters_name_the_bad_parameter() {
        assert!(DebugFilter::parse(None, Some("publish,bogus")).is_err_and(|e| e.message.contains("`types`")));
        assert!(DebugFilter::parse(Some("a b"), None).is_err_and(|e| e.message.contains("`channel`")));
        let f = DebugFilter::parse(Some("chat"), Some("publish, connect")).expect("valid");
        assert_eq!(f.types.len(), 2);
    }

    #[test]
    fn an_event_is_one_json_object() {
        let item = DebugItem::from_event(&publish("chat:1", b"{\"a\":1}"), &DebugFilter::default()).expect("passes");
        let v = item.to_json();
        assert_eq!(v["type"], "publish");
        assert_eq!(v["preview"], "{\"a\":1}");
        assert_eq!(v["dropped"], 3);
        let f = DebugFilter::parse(Some("news"), None).expect("valid");
        assert_eq!(DebugItem::from_event(&publish("chat:1", b""), &f), None);
        let binary = DebugItem::from_event(&publish("c", &[0xff, 0xfe]), &DebugFilter::default()).expect("passes");
        assert_eq!(binary.to_json()["preview_encoding"], "base64");
    }
}
