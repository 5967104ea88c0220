//! Identifiers that cross component boundaries: app ids, API key ids and
//! client ids.
//!
//! App ids and key ids appear in NATS subjects and JetStream stream names, so
//! they use a small alphabet (`A-Z a-z 0-9 _ -`). Client ids are chosen by
//! customers and only ever travel as data, so they may hold any printable
//! text.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest app id or key id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_LEN: usize = 255;

/// Why a string is not a valid identifier.
///
/// ```
/// use herald_proto::{AppId, IdError};
/// assert_eq!(AppId::new(""), Err(IdError::Empty { kind: "app id" }));
/// let err = AppId::new("a/b").unwrap_err();
/// assert!(matches!(err, IdError::InvalidChar { found: '/', .. }));
/// assert!(err.to_string().starts_with("app id holds '/'"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("{kind} is empty")]
    Empty {
        /// Which kind of id.
        kind: &'static str,
    },
    /// The id is too long.
    #[error("{kind} is {len} bytes long; the limit is {max}")]
    TooLong {
        /// Which kind of id.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The id holds a character outside its alphabet.
    #[error("{kind} holds {found:?}; allowed are {allowed}")]
    InvalidChar {
        /// Which kind of id.
        kind: &'static str,
        /// The first offending character.
        found: char,
        /// What is allowed, for the message.
        allowed: &'static str,
    },
}

fn check(
    kind: &'static str,
    s: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong { kind, len: s.len(), max });
    }
    if let Some(found) = s.chars().find(|c| !ok(*c)) {
        return Err(IdError::InvalidChar { kind, found, allowed });
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Box<str>);

        impl $name {
            /// Validates `s`.
            ///
            /// # Errors
            ///
            /// [`IdError`] naming the broken rule.
            pub fn new(s: &str) -> Result<Self, IdError> {
                check($kind, s, $max, $allowed, $ok)?;
                Ok(Self(s.into()))
            }

            /// The id as a string.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_id!(
    /// An app (tenant) id: 1–64 of `A-Z a-z 0-9 _ -`. Safe as a NATS subject
    /// token and inside a JetStream stream name.
    ///
    /// ```
    /// use herald_proto::AppId;
    /// let app = AppId::new("chat-app")?;
    /// assert_eq!(app.as_str(), "chat-app");
    /// assert!(AppId::new("chat.app").is_err(), "a dot would split a NATS subject");
    /// # Ok::<(), herald_proto::IdError>(())
    /// ```
    AppId, "app id", MAX_ID_LEN, "ASCII letters, digits, '_' and '-'", is_token_char
);

string_id!(
    /// An API key id: 1–64 of `A-Z a-z 0-9 _ -`.
    ///
    /// ```
    /// use herald_proto::KeyId;
    /// assert_eq!(KeyId::new("k_42")?.to_string(), "k_42");
    /// assert!(KeyId::new("").is_err());
    /// # Ok::<(), herald_proto::IdError>(())
    /// ```
    KeyId, "key id", MAX_ID_LEN, "ASCII letters, digits, '_' and '-'", is_token_char
);

string_id!(
    /// A channel namespace: the part of a channel name before its first `:`
    /// (`chat` in `chat:lobby`). 1–64 of `A-Z a-z 0-9 _ -`, so it is safe as a
    /// NATS subject token and inside a JetStream stream name. A channel whose
    /// prefix is not a valid namespace name belongs to the default namespace.
    ///
    /// ```
    /// use herald_proto::NamespaceName;
    /// assert_eq!(NamespaceName::new("chat")?.as_str(), "chat");
    /// assert!(NamespaceName::new("chat:lobby").is_err());
    /// # Ok::<(), herald_proto::IdError>(())
    /// ```
    NamespaceName, "namespace name", MAX_ID_LEN, "ASCII letters, digits, '_' and '-'", is_token_char
);

string_id!(
    /// The end user a token was minted for: 1–255 bytes of printable text
    /// (no control characters).
    ///
    /// ```
    /// use herald_proto::ClientId;
    /// assert_eq!(ClientId::new("Ada Lovelace <ada@example.com>")?.as_str(), "Ada Lovelace <ada@example.com>");
    /// assert!(ClientId::new("two\nlines").is_err());
    /// # Ok::<(), herald_proto::IdError>(())
    /// ```
    ClientId, "client id", MAX_CLIENT_ID_LEN, "printable characters", |c: char| !c.is_control()
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_ids() {
        AppId::new("app_1-X").expect("valid");
        for bad in ["", "a.b", "a*", ">", "a b", "a/b", "a\u{0}", "é"] {
            assert!(AppId::new(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(AppId::new(&"a".repeat(65)), Err(IdError::TooLong { .. })));
    }

    #[test]
    fn client_ids_allow_text_but_not_control_characters() {
        ClientId::new("user@example.com").expect("valid");
        ClientId::new("Zoë 42").expect("valid");
        assert!(ClientId::new("a\nb").is_err());
        assert!(ClientId::new("").is_err());
        assert!(ClientId::new(&"a".repeat(256)).is_err());
    }

    #[test]
    fn serde_validates() {
        assert!(serde_json::from_str::<AppId>("\"a.b\"").is_err());
        let id: AppId = serde_json::from_str("\"abc\"").expect("valid");
        assert_eq!(id.as_str(), "abc");
    }
}
