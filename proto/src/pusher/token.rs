//! The escaping of a Pusher channel name into one NATS subject token.
//!
//! Pusher names may hold `.`, which NATS reads as a token separator, and
//! `= @ , ;`, which are safe but worth keeping out of subjects too. The
//! token keeps ASCII letters, digits, `_` and `-` as they are and writes every
//! other byte as `=` followed by two upper-case hex digits (`.` is `=2E`,
//! `=` itself is `=3D`). So:
//!
//! - a token never holds `.`, `*`, `>` or whitespace: it is always exactly one
//!   subject token, never a wildcard;
//! - the mapping is injective: `=` only ever starts an escape, so the token
//!   reads back in exactly one way, and [`from_subject_token`] accepts only
//!   tokens [`to_subject_token`] produces (canonical escapes, upper-case hex,
//!   a valid name);
//! - a token is at most three times as long as the name (600 bytes).
//!
//! Herald's own channel names map to subjects unescaped (see
//! [`crate::subject`]); this escaping is for Pusher-mode names only.

use super::channel::{PusherChannel, PusherChannelError};

/// Why a string is not a subject token produced by [`to_subject_token`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectTokenError {
    /// The token holds a byte the escaping never writes, or an escape that
    /// is not `=` with two upper-case hex digits of a byte that needs one.
    #[error("invalid Pusher subject token {token:?}: expected ASCII letters, digits, '_', '-' and '=XX' escapes")]
    Malformed {
        /// The rejected token.
        token: String,
    },
    /// The token decodes to something that is not a valid Pusher channel
    /// name.
    #[error(transparent)]
    Channel(#[from] PusherChannelError),
}

fn is_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The subject token of a Pusher channel name.
#[must_use]
pub fn to_subject_token(channel: &PusherChannel) -> String {
    let name = channel.as_str();
    let mut token = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if is_kept(b) {
            token.push(char::from(b));
        } else {
            token.push('=');
            token.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
            token.push(char::from(HEX_UPPER[usize::from(b & 0x0f)]));
        }
    }
    token
}

fn upper_hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Maps a subject token back to its Pusher channel name.
///
/// # Errors
///
/// [`SubjectTokenError`] for any string [`to_subject_token`] cannot produce.
pub fn from_subject_token(token: &str) -> Result<PusherChannel, SubjectTokenError> {
    let malformed = || SubjectTokenError::Malformed { token: token.to_owned() };
    let bytes = token.as_bytes();
    let mut name = String::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if is_kept(b) {
            name.push(char::from(b));
            i += 1;
        } else if b == b'=' {
            let hi = bytes.get(i + 1).copied().and_then(upper_hex_digit).ok_or_else(malformed)?;
            let lo = bytes.get(i + 2).copied().and_then(upper_hex_digit).ok_or_else(malformed)?;
            let decoded = (hi << 4) | lo;
            // A kept byte is never escaped, and a byte outside ASCII never
            // comes from a valid name: either would make the token one of
            // several for the same name.
            if is_kept(decoded) || !decoded.is_ascii() {
                return Err(malformed());
            }
            name.push(char::from(decoded));
            i += 3;
        } else {
            return Err(malformed());
        }
    }
    Ok(PusherChannel::new(&name)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ch(name: &str) -> PusherChannel {
        PusherChannel::new(name).expect("valid channel")
    }

    #[test]
    fn escapes_the_documented_way() {
        for (name, token) in [
            ("chat", "chat"),
            ("private-App.Models.User.1", "private-App=2EModels=2EUser=2E1"),
            ("a=b", "a=3Db"),
            ("=2E", "=3D2E"),
            ("x@y,z;w", "x=40y=2Cz=3Bw"),
            ("my_channel-1", "my_channel-1"),
        ] {
            assert_eq!(to_subject_token(&ch(name)), token, "{name}");
            assert_eq!(from_subject_token(token).expect("round trip"), ch(name), "{token}");
        }
    }

    #[test]
    fn refuses_tokens_it_does_not_produce() {
        for bad in
            ["", "a.b", "a*", ">", "a b", "=", "=2", "=2e", "=G0", "=41", "=5F", "=2D", "=C3=A9", "=2A", "a=", "é"]
        {
            assert!(from_subject_token(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(201);
        assert!(matches!(from_subject_token(&long), Err(SubjectTokenError::Channel(_))));
        // '*' is escaped canonically but is no Pusher character.
        assert!(matches!(from_subject_token("=2A"), Err(SubjectTokenError::Channel(_))));
    }

    fn channel() -> impl Strategy<Value = PusherChannel> {
        "[A-Za-z0-9_=@,.;-]{1,200}".prop_map(|s| PusherChannel::new(&s).expect("generated name is valid"))
    }

    proptest! {
        #[test]
        fn tokens_round_trip_and_are_one_plain_token(c in channel()) {
            let token = to_subject_token(&c);
            prop_assert!(!token.is_empty());
            prop_assert!(token.len() <= 3 * c.as_str().len());
            prop_assert!(!token.contains(|ch: char| ch.is_whitespace() || ch == '.' || ch == '*' || ch == '>'));
            prop_assert_eq!(from_subject_token(&token), Ok(c));
        }

        // Small alphabets, so that equal and near-equal names are common.
        #[test]
        fn mapping_is_injective(a in "[a=.2E]{1,4}", b in "[a=.2E]{1,4}") {
            let (a, b) = (ch(&a), ch(&b));
            prop_assert_eq!(to_subject_token(&a) == to_subject_token(&b), a == b);
        }

        #[test]
        fn parse_never_panics(token in any::<String>()) {
            if let Ok(c) = from_subject_token(&token) {
                prop_assert_eq!(to_subject_token(&c), token);
            }
        }
    }
}
