//! How a benchmark payload carries its send time, and reading it back from
//! a delivery: the first 8 bytes (little-endian Unix nanoseconds) for
//! `herald.v1` subscribers, which get bytes; the first [`STAMP_DIGITS`]
//! bytes in decimal for Pusher subscribers, which get text.

/// Digits of a decimal send time (Unix nanoseconds, zero-padded).
pub(crate) const STAMP_DIGITS: usize = 20;

/// How a payload carries its send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stamp {
    /// The first 8 bytes, little-endian (`herald.v1` subscribers).
    Binary,
    /// The first [`STAMP_DIGITS`] bytes in decimal, the rest `x` (Pusher
    /// subscribers get text).
    Decimal,
}

impl Stamp {
    pub(crate) fn write(self, payload: &mut [u8], now: u64) {
        match self {
            Self::Binary => payload[..8].copy_from_slice(&now.to_le_bytes()),
            Self::Decimal => {
                let digits = format!("{now:0STAMP_DIGITS$}");
                payload[..STAMP_DIGITS].copy_from_slice(digits.as_bytes());
                payload[STAMP_DIGITS..].fill(b'x');
            }
        }
    }
}

/// The send time of a Pusher delivery: its `data` starts with it.
pub(crate) fn pusher_sent_at(frame: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(frame).ok()?;
    value["data"].as_str()?.get(..STAMP_DIGITS)?.parse().ok()
}

/// Whether a Pusher text frame is a delivery rather than a protocol event
/// (`pusher:…`, `pusher_internal:…`), without decoding it: the event name
/// comes first.
pub(crate) fn is_pusher_delivery(frame: &[u8]) -> bool {
    !frame.starts_with(br#"{"event":"pusher"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_stamps_read_back_from_pusher_deliveries() {
        let mut payload = vec![0u8; 64];
        Stamp::Decimal.write(&mut payload, 1_765_000_000_123_456_789);
        let data = String::from_utf8(payload).expect("text");
        let frame = serde_json::json!({"event": "message", "channel": "bench", "data": data}).to_string();
        assert!(is_pusher_delivery(frame.as_bytes()));
        assert_eq!(pusher_sent_at(frame.as_bytes()), Some(1_765_000_000_123_456_789));
        assert!(!is_pusher_delivery(br#"{"event":"pusher:pong","data":{}}"#));
        assert!(!is_pusher_delivery(br#"{"event":"pusher_internal:subscription_count","data":"{}"}"#));
    }
}
