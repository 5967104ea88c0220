//! Capabilities: which operations a token or API key allows on which
//! channels.
//!
//! A capability set maps channel patterns to operations, in JSON:
//!
//! ```json
//! {"chat:*": ["subscribe", "publish"], "presence:lobby": ["presence"], "*": ["history"]}
//! ```
//!
//! A pattern is a channel name in which `*` matches any run of characters,
//! including none (`*` alone matches every channel; `chat:*` every channel of
//! the `chat` namespace; `user-*-inbox` a family). Patterns use the channel
//! alphabet plus `*`, at most [`MAX_PATTERN_LEN`] bytes; a set holds at most
//! [`MAX_PATTERNS`] patterns. An operation is allowed on a channel when any
//! pattern that matches the channel lists it.
//!
//! [`Capabilities::is_subset_of`] decides whether one set grants nothing the
//! other does not: a token minted from an API key must be a subset of the
//! key's set.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::{MAX_CHANNEL_LEN, is_channel_byte};

/// Most patterns one capability set may hold.
pub const MAX_PATTERNS: usize = 64;

/// Longest pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = MAX_CHANNEL_LEN;

/// One operation on a channel.
///
/// ```
/// use herald_proto::Operation;
/// let op: Operation = "publish".parse()?;
/// assert_eq!(op.as_str(), "publish");
/// assert!("fly".parse::<Operation>().is_err());
/// # Ok::<(), herald_proto::caps::CapabilityError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Receive the channel's messages.
    Subscribe,
    /// Publish to the channel.
    Publish,
    /// Appear in and read the channel's presence.
    Presence,
    /// Read the channel's history and recover after a reconnect.
    History,
}

impl Operation {
    /// Every operation, in a fixed order.
    pub const ALL: [Operation; 4] = [Self::Subscribe, Self::Publish, Self::Presence, Self::History];

    /// The operation's name in JSON and docs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
            Self::Presence => "presence",
            Self::History => "history",
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Subscribe => 1,
            Self::Publish => 2,
            Self::Presence => 4,
            Self::History => 8,
        }
    }
}

impl std::str::FromStr for Operation {
    type Err = CapabilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|op| op.as_str() == s)
            .ok_or_else(|| CapabilityError::UnknownOperation(s.chars().take(32).collect()))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of operations.
///
/// ```
/// use herald_proto::{Operation, Operations};
/// let ops = Operations::default().with(Operation::Subscribe).with(Operation::Presence);
/// assert!(ops.contains(Operation::Subscribe) && !ops.contains(Operation::Publish));
/// assert_eq!(ops.iter().count(), 2);
/// assert!(ops.is_subset_of(Operations::ALL) && !Operations::ALL.is_subset_of(ops));
/// assert!(Operations::NONE.is_empty() && !ops.is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Operations(u8);

impl Operations {
    /// No operation.
    pub const NONE: Self = Self(0);
    /// Every operation.
    pub const ALL: Self = Self(15);

    /// Whether `op` is in the set.
    #[must_use]
    pub const fn contains(self, op: Operation) -> bool {
        self.0 & op.bit() != 0
    }

    /// The set with `op` added.
    #[must_use]
    pub const fn with(self, op: Operation) -> Self {
        Self(self.0 | op.bit())
    }

    /// Whether every operation of `self` is in `other`.
    #[must_use]
    pub const fn is_subset_of(self, other: Self) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The operations in the set.
    pub fn iter(self) -> impl Iterator<Item = Operation> {
        Operation::ALL.into_iter().filter(move |op| self.contains(*op))
    }
}

impl FromIterator<Operation> for Operations {
    fn from_iter<I: IntoIterator<Item = Operation>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

/// Why a capability set or pattern is invalid.
///
/// ```
/// use herald_proto::caps::CapabilityError;
/// use herald_proto::{Capabilities, ChannelPattern};
/// assert_eq!(ChannelPattern::new("chat lobby"), Err(CapabilityError::InvalidPatternChar(' ')));
/// let err = Capabilities::from_pairs([("chat:*", vec!["fly"])]).unwrap_err();
/// assert_eq!(err, CapabilityError::UnknownOperation("fly".into()));
/// assert!(err.to_string().contains("unknown operation"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// A pattern is empty.
    #[error("capability pattern is empty")]
    EmptyPattern,
    /// A pattern is too long.
    #[error("capability pattern is {0} bytes long; the limit is {MAX_PATTERN_LEN}")]
    PatternTooLong(usize),
    /// A pattern holds a character that is neither in the channel alphabet
    /// nor `*`.
    #[error("capability pattern holds {0:?}; allowed are channel-name characters and '*'")]
    InvalidPatternChar(char),
    /// An operation name is unknown.
    #[error("unknown operation {0:?}; known are subscribe, publish, presence, history")]
    UnknownOperation(String),
    /// A pattern lists no operation.
    #[error("capability pattern {0:?} lists no operation")]
    NoOperations(String),
    /// Too many patterns.
    #[error("{0} capability patterns; the limit is {MAX_PATTERNS}")]
    TooManyPatterns(usize),
}

/// A validated channel pattern (see the module docs).
///
/// ```
/// use herald_proto::ChannelPattern;
/// let pattern = ChannelPattern::new("chat:**")?;
/// assert_eq!(pattern.as_str(), "chat:*", "runs of `*` are folded");
/// assert!(pattern.matches("chat:lobby") && !pattern.matches("news:today"));
/// assert!(pattern.is_covered_by(&ChannelPattern::new("*")?));
/// # Ok::<(), herald_proto::caps::CapabilityError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelPattern(Box<str>);

impl ChannelPattern {
    /// Validates `pattern`. Runs of `*` are folded into one.
    ///
    /// # Errors
    ///
    /// [`CapabilityError`] for an empty or too long pattern or a character
    /// outside the channel alphabet and `*`.
    pub fn new(pattern: &str) -> Result<Self, CapabilityError> {
        if pattern.is_empty() {
            return Err(CapabilityError::EmptyPattern);
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(CapabilityError::PatternTooLong(pattern.len()));
        }
        if let Some(c) = pattern.chars().find(|&c| c != '*' && !(c.is_ascii() && is_channel_byte(c as u8))) {
            return Err(CapabilityError::InvalidPatternChar(c));
        }
        let mut folded = String::with_capacity(pattern.len());
        for c in pattern.chars() {
            if !(c == '*' && folded.ends_with('*')) {
                folded.push(c);
            }
        }
        Ok(Self(folded.into()))
    }

    /// The pattern as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern matches `channel`.
    #[must_use]
    pub fn matches(&self, channel: &str) -> bool {
        glob_match(self.0.as_bytes(), channel.as_bytes(), false)
    }

    /// Whether every channel this pattern matches is matched by `other`.
    ///
    /// Sound: `true` is only returned when it holds. The check treats each
    /// `*` of `self` as a symbol that only a `*` of `other` can cover.
    #[must_use]
    pub fn is_covered_by(&self, other: &ChannelPattern) -> bool {
        glob_match(other.0.as_bytes(), self.0.as_bytes(), true)
    }
}

/// Glob matching where `*` in `pattern` matches any run of bytes. With
/// `text_stars`, a `*` in `text` can only be consumed by a `*` of `pattern`.
/// Linear in practice: greedy with backtracking to the last star only.
fn glob_match(pattern: &[u8], text: &[u8], text_stars: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] && !(text_stars && text[t] == b'*') {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

impl fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A validated capability set: channel patterns to operations.
///
/// ```
/// use herald_proto::{Capabilities, Operation};
/// let caps = Capabilities::from_pairs([("chat:*", vec!["subscribe", "publish"]), ("news", vec!["subscribe"])])?;
/// assert!(caps.allows("chat:lobby", Operation::Publish));
/// assert!(!caps.allows("news", Operation::Publish));
/// assert!(caps.is_subset_of(&Capabilities::all()));
/// assert_eq!(caps.operations_on("chat:lobby").iter().count(), 2);
/// let patterns: Vec<&str> = caps.iter().map(|(pattern, _)| pattern.as_str()).collect();
/// assert_eq!(patterns, ["chat:*", "news"]);
/// assert!(!caps.is_empty() && Capabilities::default().is_empty());
/// # Ok::<(), herald_proto::caps::CapabilityError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    rules: BTreeMap<ChannelPattern, Operations>,
}

impl Capabilities {
    /// A set allowing every operation on every channel.
    #[must_use]
    pub fn all() -> Self {
        let mut rules = BTreeMap::new();
        rules.insert(ChannelPattern("*".into()), Operations::ALL);
        Self { rules }
    }

    /// Builds a set from `(pattern, operations)` pairs; operations of equal
    /// patterns are merged.
    ///
    /// # Errors
    ///
    /// [`CapabilityError`] for an invalid pattern or operation, a pattern
    /// without operations, or more than [`MAX_PATTERNS`] patterns.
    pub fn from_pairs<'a, I, O>(pairs: I) -> Result<Self, CapabilityError>
    where
        I: IntoIterator<Item = (&'a str, O)>,
        O: IntoIterator<Item = &'a str>,
    {
        let mut rules = BTreeMap::new();
        let mut count = 0;
        for (pattern, ops) in pairs {
            count += 1;
            if count > MAX_PATTERNS {
                return Err(CapabilityError::TooManyPatterns(count));
            }
            let pattern = ChannelPattern::new(pattern)?;
            let ops = ops.into_iter().map(str::parse).collect::<Result<Operations, _>>()?;
            if ops.is_empty() {
                return Err(CapabilityError::NoOperations(pattern.as_str().to_owned()));
            }
            let entry: &mut Operations = rules.entry(pattern).or_default();
            *entry = Operations(entry.0 | ops.0);
        }
        Ok(Self { rules })
    }

    /// Whether `op` is allowed on `channel`.
    #[must_use]
    pub fn allows(&self, channel: &str, op: Operation) -> bool {
        self.rules.iter().any(|(pattern, ops)| ops.contains(op) && pattern.matches(channel))
    }

    /// The operations allowed on `channel`.
    #[must_use]
    pub fn operations_on(&self, channel: &str) -> Operations {
        self.rules
            .iter()
            .filter(|(pattern, _)| pattern.matches(channel))
            .fold(Operations::NONE, |acc, (_, ops)| Operations(acc.0 | ops.0))
    }

    /// Whether `self` grants nothing that `other` does not. Each pattern of
    /// `self`, for each of its operations, must be covered by one pattern of
    /// `other` that allows that operation.
    #[must_use]
    pub fn is_subset_of(&self, other: &Capabilities) -> bool {
        self.rules.iter().all(|(pattern, ops)| {
            ops.iter().all(|op| {
                other.rules.iter().any(|(theirs, their_ops)| their_ops.contains(op) && pattern.is_covered_by(theirs))
            })
        })
    }

    /// The rules, in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&ChannelPattern, Operations)> {
        self.rules.iter().map(|(p, o)| (p, *o))
    }

    /// Whether the set allows nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

impl Serialize for Capabilities {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.rules.len()))?;
        for (pattern, ops) in &self.rules {
            let names: Vec<&str> = ops.iter().map(Operation::as_str).collect();
            map.serialize_entry(pattern.as_str(), &names)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Capabilities {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Capabilities;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object mapping channel patterns to lists of operations")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Capabilities, A::Error> {
                let mut pairs: Vec<(String, Vec<String>)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Vec<String>>()? {
                    if pairs.len() >= MAX_PATTERNS {
                        return Err(serde::de::Error::custom(CapabilityError::TooManyPatterns(pairs.len() + 1)));
                    }
                    pairs.push((k, v));
                }
                Capabilities::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.iter().map(String::as_str))))
                    .map_err(serde::de::Error::custom)
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn caps(json: &str) -> Capabilities {
        serde_json::from_str(json).expect(json)
    }

    fn pat(s: &str) -> ChannelPattern {
        ChannelPattern::new(s).expect(s)
    }

    #[test]
    fn patterns_match() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("chat:*", "chat:room", true),
            ("chat:*", "chat:", true),
            ("chat:*", "chatroom", false),
            ("chat:*", "xchat:room", false),
            ("chat", "chat", true),
            ("chat", "chat2", false),
            ("chat", "cha", false),
            ("user-*-inbox", "user-42-inbox", true),
            ("user-*-inbox", "user--inbox", true),
            ("user-*-inbox", "user-42-inbox2", false),
            ("user-*-inbox", "user-42", false),
            ("*-inbox", "a-inbox-inbox", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
        ];
        for (p, ch, want) in cases {
            assert_eq!(pat(p).matches(ch), *want, "{p} vs {ch}");
        }
    }

    #[test]
    fn pattern_validation() {
        assert_eq!(ChannelPattern::new(""), Err(CapabilityError::EmptyPattern));
        assert_eq!(ChannelPattern::new("a>b"), Err(CapabilityError::InvalidPatternChar('>')));
        assert_eq!(ChannelPattern::new("private-App.*").map(|p| p.matches("private-App.Models.User.1")), Ok(true));
        assert_eq!(ChannelPattern::new(">"), Err(CapabilityError::InvalidPatternChar('>')));
        assert_eq!(ChannelPattern::new("a b"), Err(CapabilityError::InvalidPatternChar(' ')));
        assert_eq!(ChannelPattern::new("é"), Err(CapabilityError::InvalidPatternChar('é')));
        assert!(matches!(ChannelPattern::new(&"a".repeat(256)), Err(CapabilityError::PatternTooLong(256))));
        assert_eq!(pat("a***b").as_str(), "a*b");
    }

    #[test]
    fn allows_per_operation() {
        let c = caps(r#"{"chat:*": ["subscribe", "publish"], "news": ["subscribe"], "*": ["history"]}"#);
        assert!(c.allows("chat:x", Operation::Subscribe));
        assert!(c.allows("chat:x", Operation::Publish));
        assert!(!c.allows("chat:x", Operation::Presence));
        assert!(c.allows("chat:x", Operation::History));
        assert!(c.allows("news", Operation::Subscribe));
        assert!(!c.allows("news", Operation::Publish));
        assert!(!c.allows("newsroom", Operation::Subscribe));
        assert!(!c.allows("other", Operation::Subscribe));
        assert_eq!(
            c.operations_on("chat:x"),
            Operations::NONE.with(Operation::Subscribe).with(Operation::Publish).with(Operation::History)
        );
    }

    #[test]
    fn json_round_trip_and_errors() {
        let c = caps(r#"{"a:*": ["publish", "subscribe"], "a:*": ["presence"]}"#);
        assert_eq!(serde_json::to_string(&c).expect("ser"), r#"{"a:*":["subscribe","publish","presence"]}"#);
        for bad in [
            r#"{"a": ["fly"]}"#,
            r#"{"a": []}"#,
            r#"{"a>b": ["subscribe"]}"#,
            r#"{"": ["subscribe"]}"#,
            r#"{"a": "subscribe"}"#,
            r#"["a"]"#,
        ] {
            assert!(serde_json::from_str::<Capabilities>(bad).is_err(), "{bad}");
        }
        let many: String = format!(
            "{{{}}}",
            (0..=MAX_PATTERNS).map(|i| format!("\"c{i}\": [\"subscribe\"]")).collect::<Vec<_>>().join(",")
        );
        assert!(serde_json::from_str::<Capabilities>(&many).is_err());
    }

    #[test]
    fn subset_checks() {
        let key = caps(r#"{"chat:*": ["subscribe", "publish"], "news": ["subscribe"]}"#);
        assert!(caps(r#"{"chat:room": ["subscribe"]}"#).is_subset_of(&key));
        assert!(caps(r#"{"chat:room-*": ["publish"]}"#).is_subset_of(&key));
        assert!(caps(r#"{"chat:*": ["subscribe", "publish"]}"#).is_subset_of(&key));
        assert!(caps(r#"{}"#).is_subset_of(&key));
        // Escalations.
        assert!(!caps(r#"{"*": ["subscribe"]}"#).is_subset_of(&key));
        assert!(!caps(r#"{"chat*": ["subscribe"]}"#).is_subset_of(&key));
        assert!(!caps(r#"{"news*": ["subscribe"]}"#).is_subset_of(&key));
        assert!(!caps(r#"{"news": ["publish"]}"#).is_subset_of(&key));
        assert!(!caps(r#"{"chat:room": ["presence"]}"#).is_subset_of(&key));
        assert!(!caps(r#"{"*chat:x": ["subscribe"]}"#).is_subset_of(&key));
        assert!(Capabilities::all().is_subset_of(&Capabilities::all()));
        assert!(!Capabilities::all().is_subset_of(&key));
        // Operations may come from different patterns.
        let split = caps(r#"{"a*": ["subscribe"], "*": ["publish"]}"#);
        assert!(caps(r#"{"ab": ["subscribe", "publish"]}"#).is_subset_of(&split));
    }

    fn small_pattern() -> impl Strategy<Value = ChannelPattern> {
        "[ab*]{1,5}".prop_map(|s| pat(&s))
    }

    proptest! {
        /// Soundness: when `a` is covered by `b`, every channel `a` matches is
        /// matched by `b`.
        #[test]
        fn coverage_is_sound(a in small_pattern(), b in small_pattern(), ch in "[ab]{0,7}") {
            if a.is_covered_by(&b) && a.matches(&ch) {
                prop_assert!(b.matches(&ch), "{a} covered by {b} but {ch} escapes");
            }
        }

        /// Every pattern is covered by itself and by `*`.
        #[test]
        fn coverage_is_reflexive(a in small_pattern()) {
            prop_assert!(a.is_covered_by(&a));
            prop_assert!(a.is_covered_by(&pat("*")));
        }

        /// A literal pattern is covered exactly when the other matches it.
        #[test]
        fn literal_coverage_is_matching(lit in "[ab]{1,6}", b in small_pattern()) {
            prop_assert_eq!(pat(&lit).is_covered_by(&b), b.matches(&lit));
        }

        #[test]
        fn matching_never_panics(p in "[a*]{1,40}", ch in "[ab]{0,60}") {
            let _ = pat(&p).matches(&ch);
        }
    }
}
