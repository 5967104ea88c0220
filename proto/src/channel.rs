//! Channel names: the one place that decides what a valid name is.
//!
//! A channel name travels from clients, API callers and tokens into NATS
//! subjects, so its alphabet excludes `*`, `>`, whitespace and everything
//! that is not printable ASCII; `.`, which separates NATS subject tokens, is
//! allowed (Pusher's channel names use it: `private-App.Models.User.1`) and
//! escaped where a name becomes a subject token (see [`crate::subject`]).
//! The rules:
//!
//! - 1 to [`MAX_CHANNEL_LEN`] bytes;
//! - only ASCII letters, digits and `_ - = @ , ; : ! # / + ~ .`;
//! - not starting with a reserved prefix ([`RESERVED_PREFIXES`]): those
//!   names belong to Herald itself;
//! - a `:` splits the namespace from the rest (`chat:room-1` is in the `chat`
//!   namespace); the namespace, when present, is not empty.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest channel name, in bytes.
pub const MAX_CHANNEL_LEN: usize = 255;

/// Prefixes reserved for Herald's own channels.
pub const RESERVED_PREFIXES: &[&str] = &["$", "herald:"];

/// Separates a channel's namespace from the rest of its name.
pub const NAMESPACE_SEPARATOR: char = ':';

/// Punctuation allowed in channel names besides ASCII letters and digits.
pub const CHANNEL_PUNCTUATION: &str = "_-=@,;:!#/+~.";

/// Why a string is not a valid channel name.
///
/// ```
/// use herald_proto::{ChannelName, ChannelNameError};
/// assert_eq!(ChannelName::new("chat lobby"), Err(ChannelNameError::InvalidChar { found: ' ', at: 4 }));
/// assert_eq!(ChannelName::new("$sys"), Err(ChannelNameError::Reserved { prefix: "$" }));
/// assert_eq!(ChannelName::new(":lobby"), Err(ChannelNameError::EmptyNamespace));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelNameError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than [`MAX_CHANNEL_LEN`] bytes.
    #[error("channel name is {len} bytes long; the limit is {MAX_CHANNEL_LEN}")]
    TooLong {
        /// Length of the rejected name, in bytes.
        len: usize,
    },
    /// The name holds a character outside the alphabet.
    #[error("channel name holds {found:?} at byte {at}; allowed are ASCII letters, digits and {CHANNEL_PUNCTUATION}")]
    InvalidChar {
        /// The first offending character.
        found: char,
        /// Its byte offset.
        at: usize,
    },
    /// The name starts with a prefix reserved for Herald.
    #[error("channel names starting with {prefix:?} are reserved")]
    Reserved {
        /// The reserved prefix the name starts with.
        prefix: &'static str,
    },
    /// The name starts with `:`, which would make an empty namespace.
    #[error("channel name has an empty namespace before ':'")]
    EmptyNamespace,
}

/// True for the bytes a channel name may hold.
#[inline]
pub(crate) fn is_channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || CHANNEL_PUNCTUATION.as_bytes().contains(&b)
}

/// A validated channel name.
///
/// ```
/// use herald_proto::ChannelName;
///
/// let name: ChannelName = "chat:room-1".parse()?;
/// assert_eq!((name.as_str(), name.namespace()), ("chat:room-1", Some("chat")));
/// assert_eq!(name.namespace_name().map(|ns| ns.to_string()), Some("chat".to_owned()));
/// // `a.b` is a valid channel prefix but no namespace name: the default namespace applies.
/// assert_eq!(ChannelName::new("a.b:c")?.namespace_name(), None);
/// assert!("a*b".parse::<ChannelName>().is_err());
/// # Ok::<(), herald_proto::ChannelNameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelName(Box<str>);

impl ChannelName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`ChannelNameError`] naming the first rule the name breaks. The length
    /// is checked before anything else, so a huge input costs nothing.
    pub fn new(name: &str) -> Result<Self, ChannelNameError> {
        validate(name)?;
        Ok(Self(name.into()))
    }

    /// The name as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The namespace: the part before the first `:`, if there is one.
    #[must_use]
    pub fn namespace(&self) -> Option<&str> {
        self.0.split_once(NAMESPACE_SEPARATOR).map(|(ns, _)| ns)
    }

    /// The namespace whose options apply to this channel: its
    /// [`Self::namespace`] when that is a valid [`crate::NamespaceName`],
    /// otherwise `None` (the app's default namespace).
    #[must_use]
    pub fn namespace_name(&self) -> Option<crate::NamespaceName> {
        self.namespace().and_then(|ns| crate::NamespaceName::new(ns).ok())
    }
}

/// Checks `name` against every rule without allocating.
///
/// ```
/// use herald_proto::{ChannelNameError, channel::validate};
/// assert_eq!(validate("chat:lobby"), Ok(()));
/// assert_eq!(validate(""), Err(ChannelNameError::Empty));
/// assert_eq!(validate(&"a".repeat(300)), Err(ChannelNameError::TooLong { len: 300 }));
/// ```
///
/// # Errors
///
/// The first rule `name` breaks.
pub fn validate(name: &str) -> Result<(), ChannelNameError> {
    if name.is_empty() {
        return Err(ChannelNameError::Empty);
    }
    if name.len() > MAX_CHANNEL_LEN {
        return Err(ChannelNameError::TooLong { len: name.len() });
    }
    for prefix in RESERVED_PREFIXES {
        if name.starts_with(prefix) {
            return Err(ChannelNameError::Reserved { prefix });
        }
    }
    if let Some(at) = name.bytes().position(|b| !is_channel_byte(b)) {
        let found = name[at..].chars().next().unwrap_or('\u{fffd}');
        return Err(ChannelNameError::InvalidChar { found, at });
    }
    if name.starts_with(NAMESPACE_SEPARATOR) {
        return Err(ChannelNameError::EmptyNamespace);
    }
    Ok(())
}

impl FromStr for ChannelName {
    type Err = ChannelNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ChannelName {
    type Error = ChannelNameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        validate(&s)?;
        Ok(Self(s.into_boxed_str()))
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for ChannelName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::try_from(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(name: &str) -> ChannelNameError {
        ChannelName::new(name).expect_err(name)
    }

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "a",
            "chat",
            "chat:room-1",
            "user_42",
            "orders/eu/123",
            "a=b,c;d@e!f#g+h~i",
            "private-App.Models.User.1",
            "UPPER-lower-09",
            &"x".repeat(MAX_CHANNEL_LEN),
        ] {
            ChannelName::new(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
    }

    #[test]
    fn rejects_nats_metacharacters() {
        for (name, found) in [("a*", '*'), ("*", '*'), (">", '>'), ("a>b", '>')] {
            assert!(matches!(err(name), ChannelNameError::InvalidChar { found: f, .. } if f == found), "{name:?}");
        }
    }

    #[test]
    fn rejects_whitespace_and_control_characters() {
        for name in ["a b", " a", "a ", "a\tb", "a\nb", "a\rb", "a\u{0}b", "\u{0}", "a\u{7f}", "a\u{1b}[0m", "a\u{a0}b"]
        {
            assert!(matches!(err(name), ChannelNameError::InvalidChar { .. }), "{name:?}");
        }
    }

    #[test]
    fn reports_the_first_bad_character_and_its_offset() {
        assert_eq!(err("ab é"), ChannelNameError::InvalidChar { found: ' ', at: 2 });
        assert_eq!(err("abé"), ChannelNameError::InvalidChar { found: 'é', at: 2 });
    }

    #[test]
    fn rejects_non_ascii() {
        for name in ["café", "канал", "a\u{200b}b", "😀"] {
            assert!(matches!(err(name), ChannelNameError::InvalidChar { .. }), "{name:?}");
        }
    }

    #[test]
    fn rejects_reserved_prefixes() {
        assert_eq!(err("$sys"), ChannelNameError::Reserved { prefix: "$" });
        assert_eq!(err("$"), ChannelNameError::Reserved { prefix: "$" });
        assert_eq!(err("herald:internal"), ChannelNameError::Reserved { prefix: "herald:" });
        // Only the prefix is reserved.
        ChannelName::new("heraldic").expect("not reserved");
        assert!(matches!(err("a$b"), ChannelNameError::InvalidChar { found: '$', .. }));
    }

    #[test]
    fn rejects_empty_and_empty_namespace() {
        assert_eq!(err(""), ChannelNameError::Empty);
        assert_eq!(err(":x"), ChannelNameError::EmptyNamespace);
        assert_eq!(err(":"), ChannelNameError::EmptyNamespace);
    }

    #[test]
    fn rejects_long_names_before_scanning_them() {
        assert_eq!(err(&"x".repeat(MAX_CHANNEL_LEN + 1)), ChannelNameError::TooLong { len: MAX_CHANNEL_LEN + 1 });
        let huge = "x".repeat(1024 * 1024);
        assert_eq!(err(&huge), ChannelNameError::TooLong { len: 1024 * 1024 });
        // 1 MiB of garbage is refused for its length, not its content.
        let huge_bad = ".".repeat(1024 * 1024);
        assert_eq!(err(&huge_bad), ChannelNameError::TooLong { len: 1024 * 1024 });
    }

    #[test]
    fn namespace_is_the_part_before_the_first_colon() {
        assert_eq!(ChannelName::new("a:b:c").map(|c| c.namespace().map(str::to_owned)), Ok(Some("a".into())));
        assert_eq!(ChannelName::new("abc").map(|c| c.namespace().map(str::to_owned)), Ok(None));
    }

    #[test]
    fn serde_validates() {
        let ok: ChannelName = serde_json::from_str("\"a:b\"").expect("valid");
        assert_eq!(serde_json::to_string(&ok).expect("serialize"), "\"a:b\"");
        assert!(serde_json::from_str::<ChannelName>("\"a*b\"").is_err());
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            err("a*b").to_string(),
            "channel name holds '*' at byte 1; allowed are ASCII letters, digits and _-=@,;:!#/+~."
        );
    }

    proptest! {
        #[test]
        fn valid_iff_every_rule_holds(s in "\\PC{0,40}|[a-zA-Z0-9_=@,;:!#/+~.*> $-]{0,300}") {
            let ok = !s.is_empty()
                && s.len() <= MAX_CHANNEL_LEN
                && s.bytes().all(is_channel_byte)
                && !s.starts_with(':')
                && !s.starts_with("herald:");
            prop_assert_eq!(ChannelName::new(&s).is_ok(), ok);
        }

        #[test]
        fn never_panics_on_any_string(s in any::<String>()) {
            let _ = ChannelName::new(&s);
        }
    }
}
