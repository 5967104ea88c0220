//! Pusher channel names: the one place that decides what a valid Pusher
//! channel name is and which kind of channel it names.
//!
//! Pusher allows 1-200 characters of ASCII letters, digits and
//! `_ - = @ , . ;`. The kind follows from the prefix: `private-encrypted-`
//! (checked before `private-`), `private-`, `presence-`, anything else is
//! public. The `cache-` variants (`cache-`, `private-cache-`,
//! `private-encrypted-cache-`, `presence-cache-`) keep their kind and are
//! flagged as cache channels.

use std::fmt;
use std::str::FromStr;

/// Longest Pusher channel name, in characters (all of them ASCII).
pub const MAX_LEN: usize = 200;

/// Why a string is not a valid Pusher channel name.
///
/// ```
/// use herald_proto::pusher::PusherChannel;
/// let err = PusherChannel::new("chat:lobby").unwrap_err();
/// assert_eq!(err.name, "chat:lobby", "':' is Herald's, not Pusher's");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid Pusher channel name {name:?}: it must be 1-{MAX_LEN} characters of ASCII letters, digits, '_', '-', '=', '@', ',', '.' and ';'"
)]
pub struct PusherChannelError {
    /// The rejected name.
    pub name: String,
}

/// What a Pusher channel is, by its prefix.
///
/// ```
/// use herald_proto::pusher::{PusherChannel, PusherChannelKind};
/// let kind = PusherChannel::new("presence-room-1")?.kind();
/// assert_eq!(kind, PusherChannelKind::Presence);
/// assert!(kind.needs_auth() && !PusherChannelKind::Public.needs_auth());
/// # Ok::<(), herald_proto::pusher::PusherChannelError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PusherChannelKind {
    /// No prefix: anyone may subscribe.
    Public,
    /// `private-`: subscriptions need a signed `auth`.
    Private,
    /// `private-encrypted-`: like private, payloads are end-to-end encrypted
    /// and passed through untouched.
    PrivateEncrypted,
    /// `presence-`: like private, with members.
    Presence,
}

impl PusherChannelKind {
    /// Whether subscribing needs a signed `auth` string.
    #[must_use]
    pub fn needs_auth(self) -> bool {
        self != Self::Public
    }
}

/// A valid Pusher channel name.
///
/// ```
/// use herald_proto::ChannelName;
/// use herald_proto::pusher::{PusherChannel, PusherChannelKind};
/// let channel: PusherChannel = "private-encrypted-cache-inbox".parse()?;
/// assert_eq!(channel.as_str(), "private-encrypted-cache-inbox");
/// assert_eq!(channel.kind(), PusherChannelKind::PrivateEncrypted);
/// assert!(channel.is_cache());
/// // Both protocols meet on the Herald channel of the same name.
/// assert_eq!(channel.channel_name().as_str(), "private-encrypted-cache-inbox");
/// let herald_only = ChannelName::new("chat:lobby").expect("a Herald channel");
/// assert_eq!(PusherChannel::from_channel_name(&herald_only), None);
/// # Ok::<(), herald_proto::pusher::PusherChannelError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PusherChannel(Box<str>);

/// Whether `b` may appear in a Pusher channel name.
///
/// ```
/// use herald_proto::pusher::channel::is_name_byte;
/// assert!(is_name_byte(b'@') && is_name_byte(b'.'));
/// assert!(!is_name_byte(b':') && !is_name_byte(b' '));
/// ```
#[must_use]
pub fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'=' | b'@' | b',' | b'.' | b';')
}

/// Whether `name` is a valid Pusher channel name of a cache channel,
/// without allocating (it is asked on every publish).
///
/// ```
/// use herald_proto::pusher::channel::is_cache_name;
/// assert!(is_cache_name("cache-prices") && is_cache_name("presence-cache-room"));
/// assert!(!is_cache_name("prices-cache") && !is_cache_name("cache prices"));
/// ```
#[must_use]
pub fn is_cache_name(name: &str) -> bool {
    if name.is_empty() || name.len() > MAX_LEN || !name.bytes().all(is_name_byte) {
        return false;
    }
    let rest = ["private-encrypted-", "private-", "presence-"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    rest.starts_with("cache-")
}

impl PusherChannel {
    /// Validates a Pusher channel name.
    ///
    /// # Errors
    ///
    /// [`PusherChannelError`] when the name is empty, longer than
    /// [`MAX_LEN`] or holds a character outside Pusher's set.
    pub fn new(name: &str) -> Result<Self, PusherChannelError> {
        if name.is_empty() || name.len() > MAX_LEN || !name.bytes().all(is_name_byte) {
            return Err(PusherChannelError { name: name.to_owned() });
        }
        Ok(Self(name.into()))
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Herald channel this Pusher channel is: the same name (Pusher's
    /// alphabet and length are within Herald's), so subscribers of both
    /// protocols meet on it.
    #[must_use]
    pub fn channel_name(&self) -> crate::ChannelName {
        crate::ChannelName::new(&self.0).unwrap_or_else(|_| unreachable!("Pusher names are Herald channel names"))
    }

    /// The Pusher channel a Herald channel is, when its name is one Pusher
    /// allows (channels with `:`, `!`, `#`, `/`, `+` or `~`, or longer than
    /// [`MAX_LEN`], are Herald-only).
    #[must_use]
    pub fn from_channel_name(channel: &crate::ChannelName) -> Option<Self> {
        Self::new(channel.as_str()).ok()
    }

    /// The kind of channel, by prefix.
    #[must_use]
    pub fn kind(&self) -> PusherChannelKind {
        if self.0.starts_with("private-encrypted-") {
            PusherChannelKind::PrivateEncrypted
        } else if self.0.starts_with("private-") {
            PusherChannelKind::Private
        } else if self.0.starts_with("presence-") {
            PusherChannelKind::Presence
        } else {
            PusherChannelKind::Public
        }
    }

    /// Whether this is a cache channel (the last event is kept).
    #[must_use]
    pub fn is_cache(&self) -> bool {
        is_cache_name(&self.0)
    }
}

impl fmt::Debug for PusherChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PusherChannel({:?})", self.0)
    }
}

impl fmt::Display for PusherChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PusherChannel {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for PusherChannel {
    type Err = PusherChannelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ch(name: &str) -> PusherChannel {
        PusherChannel::new(name).expect("valid channel")
    }

    #[test]
    fn accepts_pusher_names() {
        for name in [
            "a",
            "private-App.Models.User.1",
            "presence-chat=room@team,1;x",
            "my_channel-1",
            "private-encrypted-x",
            &"z".repeat(MAX_LEN),
        ] {
            assert_eq!(ch(name).as_str(), name);
            assert_eq!(name.parse::<PusherChannel>().expect("parses").to_string(), name);
        }
    }

    #[test]
    fn rejects_names_outside_the_rule() {
        for bad in ["", "a b", "a*", "a>", "a:b", "a/b", "#server-to-user-1", "é", "a\n", &"z".repeat(MAX_LEN + 1)] {
            let err = PusherChannel::new(bad).expect_err(bad);
            assert_eq!(err.name, bad);
            assert!(err.to_string().contains("1-200 characters"), "{err}");
        }
    }

    #[test]
    fn kinds_by_prefix() {
        use PusherChannelKind::*;
        for (name, kind, cache) in [
            ("chat", Public, false),
            ("private-chat", Private, false),
            ("private-App.Models.User.1", Private, false),
            ("private-encrypted-chat", PrivateEncrypted, false),
            ("presence-chat", Presence, false),
            ("cache-chat", Public, true),
            ("private-cache-chat", Private, true),
            ("private-encrypted-cache-chat", PrivateEncrypted, true),
            ("presence-cache-chat", Presence, true),
            ("private", Public, false),
            ("privatechat", Public, false),
            ("presence-private-chat", Presence, false),
            ("cache", Public, false),
            ("public-cache-chat", Public, false),
        ] {
            let c = ch(name);
            assert_eq!(c.kind(), kind, "{name}");
            assert_eq!(c.is_cache(), cache, "{name}");
            assert_eq!(c.kind().needs_auth(), kind != Public, "{name}");
        }
    }

    #[test]
    fn pusher_names_are_herald_channel_names() {
        let c = ch("private-App.Models.User.1");
        assert_eq!(c.channel_name().as_str(), "private-App.Models.User.1");
        assert_eq!(PusherChannel::from_channel_name(&c.channel_name()), Some(c));
        let herald_only = crate::ChannelName::new("chat:room").expect("channel");
        assert_eq!(PusherChannel::from_channel_name(&herald_only), None);
    }

    proptest! {
        #[test]
        fn every_pusher_name_is_a_herald_name(s in "[A-Za-z0-9_=@,.;-]{1,200}") {
            let c = PusherChannel::new(&s).expect("generated name is valid");
            let name = c.channel_name();
            prop_assert_eq!(name.as_str(), s.as_str());
        }

        #[test]
        fn new_never_panics_and_accepts_exactly_the_rule(s in any::<String>()) {
            let ok = !s.is_empty() && s.len() <= MAX_LEN && s.bytes().all(is_name_byte);
            prop_assert_eq!(PusherChannel::new(&s).is_ok(), ok);
        }
    }
}
