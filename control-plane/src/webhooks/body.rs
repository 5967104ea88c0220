//! What a webhook request carries: the body in either format and the
//! headers that sign it.
//!
//! **Herald format**: one event per request,
//! `{"id", "type", "app", "channel", "timestamp_ms", "data": {…}}`, with
//! `Herald-Webhook-Id`, `Herald-Webhook-Timestamp` (Unix seconds) and
//! `Herald-Webhook-Signature: v1=<hex>` — HMAC-SHA256 keyed with the
//! endpoint's secret over `"{timestamp}.{body}"`; during a secret rotation's
//! overlap a second `v1=` (from the previous secret) follows, space
//! separated. Receivers refuse timestamps outside their window (replays).
//!
//! **Pusher format**: exactly Pusher's, `{"time_ms", "events": [{"name",
//! "channel", …}]}`, with `X-Pusher-Key` (the app id, its Pusher key) and
//! `X-Pusher-Signature`, HMAC-SHA256 of the raw body keyed with the app's
//! Pusher secret — what Pusher's server libraries' webhook validation
//! checks.

use bytes::Bytes;
use herald_proto::webhook::EventKind;
use serde_json::{Map, Value};

use crate::store::Delivery;

/// The header naming the event (Herald format).
pub const ID_HEADER: &str = "herald-webhook-id";
/// The header with the signing time, Unix seconds (Herald format).
pub const TIMESTAMP_HEADER: &str = "herald-webhook-timestamp";
/// The header with the signatures (Herald format).
pub const SIGNATURE_HEADER: &str = "herald-webhook-signature";
/// The header with the attempt number, 1 for the first.
pub const ATTEMPT_HEADER: &str = "herald-webhook-attempt";

/// The kind name of a test send (Herald format).
pub const TEST_KIND: &str = "webhook_test";

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// The JSON body.
    pub body: Bytes,
    /// Headers besides `content-type` and `user-agent`.
    pub headers: Vec<(&'static str, String)>,
}

/// Hex HMAC-SHA256 of `parts` keyed with `secret`.
#[must_use]
pub fn hmac_hex(secret: &str, parts: &[&[u8]]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    for part in parts {
        ctx.update(part);
    }
    let tag = ctx.sign();
    let mut out = String::with_capacity(64);
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The `Herald-Webhook-Signature` value for `body` signed at `timestamp`
/// with every secret in `secrets`.
#[must_use]
pub fn herald_signature(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    secrets.iter().map(|s| format!("v1={}", hmac_hex(s, &[ts.as_bytes(), b".", body]))).collect::<Vec<_>>().join(" ")
}

fn data_object(data: &str) -> Map<String, Value> {
    match serde_json::from_str(data) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// A Herald-format request for `event` (of `kind`, with its fields in
/// `data`), signed at `now_s` with `secrets`.
#[must_use]
#[allow(clippy::too_many_arguments)]
pub fn herald(
    event_id: &str,
    kind: &str,
    app: &str,
    channel: &str,
    occurred_at_ms: i64,
    data: &str,
    attempt: i64,
    secrets: &[&str],
    now_s: i64,
) -> Request {
    let mut body = Map::new();
    body.insert("id".into(), event_id.into());
    body.insert("type".into(), kind.into());
    body.insert("app".into(), app.into());
    body.insert("channel".into(), channel.into());
    body.insert("timestamp_ms".into(), occurred_at_ms.into());
    body.insert("data".into(), Value::Object(data_object(data)));
    let body = Bytes::from(Value::Object(body).to_string());
    let signature = herald_signature(secrets, now_s, &body);
    Request {
        headers: vec![
            (ID_HEADER, event_id.to_owned()),
            (TIMESTAMP_HEADER, now_s.to_string()),
            (SIGNATURE_HEADER, signature),
            (ATTEMPT_HEADER, attempt.to_string()),
        ],
        body,
    }
}

/// The Herald-format request of a leased delivery.
#[must_use]
pub fn herald_delivery(d: &Delivery, secrets: &[&str], now_s: i64) -> Request {
    herald(
        &d.event_id,
        d.kind.as_str(),
        d.app_id.as_str(),
        &d.channel,
        d.occurred_at_ms,
        &d.data,
        d.attempts,
        secrets,
        now_s,
    )
}

/// One event as Pusher's webhooks write it: `name`, `channel` and the
/// kind's fields (`user_id`; `subscription_count`; `event`, `data`,
/// `socket_id`, `user_id` for client events).
#[must_use]
pub fn pusher_event(kind: EventKind, channel: &str, data: &str) -> Value {
    let mut event = Map::new();
    event.insert("name".into(), kind.as_str().into());
    event.insert("channel".into(), channel.into());
    for (k, v) in data_object(data) {
        let k = if k == "connection_id" { "socket_id".to_owned() } else { k };
        if !(v.is_null() || (k == "user_id" && v.as_str() == Some(""))) {
            event.insert(k, v);
        }
    }
    Value::Object(event)
}

/// A Pusher-format request with `events`, signed with the app's Pusher
/// `key` (its id) and `secret`.
#[must_use]
pub fn pusher(time_ms: i64, events: Vec<Value>, key: &str, secret: &str, attempt: i64, event_id: &str) -> Request {
    let mut body = Map::new();
    body.insert("time_ms".into(), time_ms.into());
    body.insert("events".into(), Value::Array(events));
    let body = Bytes::from(Value::Object(body).to_string());
    let signature = hmac_hex(secret, &[&body]);
    let mut headers = vec![("x-pusher-key", key.to_owned()), ("x-pusher-signature", signature)];
    if !event_id.is_empty() {
        headers.push((ID_HEADER, event_id.to_owned()));
        headers.push((ATTEMPT_HEADER, attempt.to_string()));
    }
    Request { body, headers }
}

/// The Pusher-format request of a leased delivery.
#[must_use]
pub fn pusher_delivery(d: &Delivery, secret: &str) -> Request {
    let event = pusher_event(d.kind, &d.channel, &d.data);
    pusher(d.occurred_at_ms, vec![event], d.app_id.as_str(), secret, d.attempts, &d.event_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn herald_signature_covers_timestamp_and_body() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), a published vector.
        assert_eq!(
            hmac_hex("key", &[b"The quick brown fox jumps over the lazy dog"]),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let one = herald_signature(&["s1"], 1_700_000_000, b"{}");
        assert_eq!(one, format!("v1={}", hmac_hex("s1", &[b"1700000000.{}"])));
        let two = herald_signature(&["s1", "s0"], 1_700_000_000, b"{}");
        assert_eq!(two.split(' ').count(), 2);
        assert!(two.starts_with(&one));
    }

    #[test]
    fn bodies_in_both_formats() {
        let r = herald("evt_1", "member_added", "app", "presence-x", 5, r#"{"user_id":"ada"}"#, 1, &["s"], 9);
        let v: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(v["type"], "member_added");
        assert_eq!(v["data"]["user_id"], "ada");
        assert_eq!(v["timestamp_ms"], 5);
        let e = pusher_event(
            EventKind::ClientEvent,
            "private-x",
            r#"{"event":"client-typing","data":"{}","connection_id":"1.2","user_id":""}"#,
        );
        assert_eq!(e["socket_id"], "1.2");
        assert_eq!(e["name"], "client_event");
        assert!(e.get("user_id").is_none(), "no empty user_id");
        let p = pusher(7, vec![e], "key", "secret", 1, "evt_2");
        assert_eq!(p.headers[1].1, hmac_hex("secret", &[&p.body]));
        let v: Value = serde_json::from_slice(&p.body).expect("json");
        assert_eq!(v["time_ms"], 7);
        assert_eq!(v["events"][0]["channel"], "private-x");
    }
}
