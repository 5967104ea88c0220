//! The mapping from Herald's names to NATS subjects.
//!
//! Every subject Herald uses is built here and nowhere else. A deployment (or
//! a test) picks a prefix; below it:
//!
//! | subject | carries |
//! |---|---|
//! | `<prefix>.ch.<app>.<bucket>.<channel>` | [`crate::bus::ChannelMessage`] for one channel; `<bucket>` is the channel's [`channel_bucket`], so that an edge follows many channels with one subscription per bucket (`<prefix>.ch.<app>.<bucket>.*`) |
//! | `<prefix>.presence.<app>.<channel>` | [`crate::bus::PresenceReport`] from edges |
//! | `<prefix>.occupancy.<app>` | [`crate::bus::OccupancyReport`] from edges |
//! | `<prefix>.ns.<app>` | requests for the app's [`crate::bus::NamespaceList`], answered by the control plane |
//! | `<prefix>.wh.<app>` | [`crate::bus::WebhookEvent`] requests from edges (client events, cache misses), stored by the control plane, which answers [`crate::bus::WebhookEventReply`] |
//! | `<prefix>.hs.<app>.<ns>.<channel>` | channel messages of history namespaces, captured by the namespace's JetStream stream, which republishes them on the channel subject |
//! | `<prefix>.cache.<app>.<channel>` | the last message of a cache channel, kept by the subject space's cache stream |
//! | `<prefix>.usage` | [`crate::bus::UsageReport`] requests from nodes, stored by the control plane, which answers [`crate::bus::UsageReportReply`] |
//! | `<prefix>.tap.<app>` | [`crate::bus::DebugEvent`] from every node, only while a watcher of the app holds a [`crate::bus::DebugTapOn`] lease |
//! | `<prefix>.control` | [`crate::bus::ControlEvent`] from the control plane |
//! | `<prefix>.sync` | nothing: requests on it prove earlier commands were processed |
//!
//! App ids and channel names cannot hold `*`, `>` or whitespace, and the
//! one character a channel name may hold that separates NATS tokens, `.`,
//! is written `^` in its subject token ([`channel_token`]; `^` is never part
//! of a channel name, so the mapping stays one-to-one). A channel subject
//! thus always has exactly `prefix tokens + 4` tokens, never a wildcard, and
//! maps back to the one (app, channel) pair it came from: a message can
//! never leave its app's subject space.

use std::borrow::Cow;
use std::fmt;

use crate::channel::ChannelName;
use crate::ids::{AppId, NamespaceName};

/// Longest subject prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 64;

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "herald";

/// Why a string is not a valid subject prefix.
///
/// ```
/// use herald_proto::SubjectSpace;
/// let err = SubjectSpace::new("herald..test").unwrap_err();
/// assert_eq!(err.prefix, "herald..test");
/// assert!(SubjectSpace::new("herald.*").is_err() && SubjectSpace::new("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid subject prefix {prefix:?}: it must be 1-{MAX_PREFIX_LEN} bytes of dot-separated, non-empty tokens of ASCII letters, digits, '_' and '-'"
)]
pub struct PrefixError {
    /// The rejected prefix.
    pub prefix: String,
}

/// What a channel name's `.` is written as in its subject token.
pub const DOT_ESCAPE: char = '^';

/// How many buckets an app's channel subjects are spread over.
///
/// An edge subscribes to a bucket (`<prefix>.ch.<app>.<bucket>.*`) while it
/// has local subscribers to any channel in it, and hands each message to
/// the channel's subscribers itself: an edge holding many channels of an
/// app needs at most this many NATS subscriptions for them, at the price of
/// receiving the messages of the other channels of its buckets.
pub const CHANNEL_BUCKETS: u16 = 256;

/// The bucket of a channel: the FNV-1a (32-bit) hash of its subject token
/// ([`channel_token`]) modulo [`CHANNEL_BUCKETS`].
///
/// It is the same figure NATS computes for the subject transform
/// `{{partition(256,1)}}` of that token, which is how a history stream
/// republishes a stored message on its channel's subject
/// ([`SubjectSpace::history_republish`]).
///
/// ```
/// use herald_proto::ChannelName;
/// use herald_proto::subject::channel_bucket;
/// assert_eq!(channel_bucket(&ChannelName::new("chat")?), 171);
/// assert_eq!(channel_bucket(&ChannelName::new("private-App.Models.User.1")?), 222);
/// # Ok::<(), herald_proto::ChannelNameError>(())
/// ```
#[must_use]
pub fn channel_bucket(channel: &ChannelName) -> u16 {
    token_bucket(&channel_token(channel))
}

/// The bucket of a channel's subject token (see [`channel_bucket`]).
#[must_use]
pub fn token_bucket(token: &str) -> u16 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in token.bytes() {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    // The remainder is below CHANNEL_BUCKETS, which is a u16.
    u16::try_from(hash % u32::from(CHANNEL_BUCKETS)).unwrap_or(0)
}

/// The subject token of a channel: its name, with `.` written `^`.
///
/// ```
/// use herald_proto::ChannelName;
/// use herald_proto::subject::channel_token;
/// let channel = ChannelName::new("private-App.Models.User.1")?;
/// assert_eq!(channel_token(&channel), "private-App^Models^User^1");
/// # Ok::<(), herald_proto::ChannelNameError>(())
/// ```
#[must_use]
pub fn channel_token(channel: &ChannelName) -> Cow<'_, str> {
    let name = channel.as_str();
    if name.contains('.') { Cow::Owned(name.replace('.', "^")) } else { Cow::Borrowed(name) }
}

/// The channel a subject token names; `None` for a token
/// [`channel_token`] cannot produce.
///
/// ```
/// use herald_proto::subject::parse_channel_token;
/// let channel = parse_channel_token("private-App^Models^User^1").expect("a channel token");
/// assert_eq!(channel.as_str(), "private-App.Models.User.1");
/// assert_eq!(parse_channel_token("a.b"), None, "a token never holds a dot");
/// ```
#[must_use]
pub fn parse_channel_token(token: &str) -> Option<ChannelName> {
    if token.contains('.') {
        return None;
    }
    ChannelName::new(&token.replace(DOT_ESCAPE, ".")).ok()
}

/// The subject space of one Herald deployment.
///
/// ```
/// use herald_proto::{AppId, ChannelName, SubjectSpace};
/// let space = SubjectSpace::new("herald")?;
/// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat:lobby")?);
/// let subject = space.channel(&app, &channel);
/// assert_eq!(space.parse_channel(&subject), Some((app, channel)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Every subject and stream name of the module's table:
///
/// ```
/// use herald_proto::{AppId, ChannelName, NamespaceName, SubjectSpace};
/// let space = SubjectSpace::new("prod.eu")?;
/// let (app, ns) = (AppId::new("app1")?, NamespaceName::new("chat")?);
/// let channel = ChannelName::new("chat:lobby")?;
/// assert_eq!((space.prefix(), space.channel_subject_tokens()), ("prod.eu", 6));
/// assert_eq!(space.channel(&app, &channel), "prod.eu.ch.app1.89.chat:lobby");
/// assert_eq!(space.channel_bucket(&app, 89), "prod.eu.ch.app1.89.*");
/// assert_eq!(space.channel_bucket_prefix(&app, 89), "prod.eu.ch.app1.89.");
///
/// assert_eq!(space.presence(&app, &channel), "prod.eu.presence.app1.chat:lobby");
/// assert_eq!(space.all_presence(), "prod.eu.presence.*.*");
/// assert_eq!(space.parse_presence("prod.eu.presence.app1.chat:lobby"), Some((app.clone(), channel.clone())));
/// assert_eq!(space.occupancy(&app), "prod.eu.occupancy.app1");
/// assert_eq!(space.all_occupancy(), "prod.eu.occupancy.*");
///
/// assert_eq!(space.namespaces(&app), "prod.eu.ns.app1");
/// assert_eq!(space.all_namespaces(), "prod.eu.ns.*");
/// assert_eq!(space.parse_namespaces("prod.eu.ns.app1"), Some(app.clone()));
/// assert_eq!(space.webhook_events(&app), "prod.eu.wh.app1");
/// assert_eq!(space.all_webhook_events(), "prod.eu.wh.*");
/// assert_eq!(space.parse_webhook_events("prod.eu.wh.app1"), Some(app.clone()));
/// assert_eq!(space.usage(), "prod.eu.usage");
///
/// assert_eq!(space.history(&app, &ns, &channel), "prod.eu.hs.app1.chat.chat:lobby");
/// assert_eq!(space.history_stream_subjects(&app, &ns), "prod.eu.hs.app1.chat.*");
/// assert_eq!(space.history_republish(&app), "prod.eu.ch.app1.{{partition(256,1)}}.{{wildcard(1)}}");
/// assert_eq!(space.history_stream(&app, &ns), "herald!prod~eu!app1!chat");
/// assert!(space.history_stream(&app, &ns).starts_with(&space.history_stream_prefix()));
///
/// assert_eq!(space.cache(&app, &channel), "prod.eu.cache.app1.chat:lobby");
/// assert_eq!(space.all_cache(), "prod.eu.cache.*.*");
/// assert_eq!(space.cache_stream(), "herald-cache!prod~eu");
/// assert_eq!(space.tap(&app), "prod.eu.tap.app1");
/// assert_eq!(space.control(), "prod.eu.control");
/// assert_eq!(space.sync(), "prod.eu.sync");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SubjectSpace {
    prefix: Box<str>,
    prefix_tokens: usize,
}

impl fmt::Debug for SubjectSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectSpace({:?})", self.prefix)
    }
}

impl Default for SubjectSpace {
    fn default() -> Self {
        Self { prefix: DEFAULT_PREFIX.into(), prefix_tokens: 1 }
    }
}

impl SubjectSpace {
    /// A subject space under `prefix`, e.g. `herald` or `test.3f2a`.
    ///
    /// # Errors
    ///
    /// [`PrefixError`] when the prefix is empty, too long, has an empty token
    /// or holds anything but ASCII letters, digits, `_`, `-` and the dots
    /// between tokens.
    pub fn new(prefix: &str) -> Result<Self, PrefixError> {
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .split('.')
                .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        if !valid {
            return Err(PrefixError { prefix: prefix.to_owned() });
        }
        Ok(Self { prefix: prefix.into(), prefix_tokens: prefix.split('.').count() })
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject of one channel.
    #[must_use]
    pub fn channel(&self, app: &AppId, channel: &ChannelName) -> String {
        use fmt::Write as _;
        let token = channel_token(channel);
        let mut s = String::with_capacity(self.prefix.len() + app.as_str().len() + token.len() + 9);
        s.push_str(&self.prefix);
        s.push_str(".ch.");
        s.push_str(app.as_str());
        // Writing to a String does not fail.
        let _ = write!(s, ".{}.", token_bucket(&token));
        s.push_str(&token);
        s
    }

    /// The wildcard subject of one bucket of an app's channels (what an edge
    /// subscribes to while it has local subscribers to a channel in it).
    #[must_use]
    pub fn channel_bucket(&self, app: &AppId, bucket: u16) -> String {
        format!("{}.ch.{}.{}.*", self.prefix, app, bucket)
    }

    /// What every channel subject of a bucket starts with: the rest is the
    /// channel's token.
    #[must_use]
    pub fn channel_bucket_prefix(&self, app: &AppId, bucket: u16) -> String {
        format!("{}.ch.{}.{}.", self.prefix, app, bucket)
    }

    /// Maps a channel subject back to its app and channel.
    ///
    /// Returns `None` for any subject [`Self::channel`] cannot produce
    /// (including one whose bucket is not its channel's).
    #[must_use]
    pub fn parse_channel(&self, subject: &str) -> Option<(AppId, ChannelName)> {
        let rest = subject.strip_prefix(&*self.prefix)?.strip_prefix(".ch.")?;
        let (app, rest) = rest.split_once('.')?;
        let (bucket, token) = rest.split_once('.')?;
        let canonical = bucket.bytes().all(|b| b.is_ascii_digit()) && (bucket == "0" || !bucket.starts_with('0'));
        if !canonical || bucket.parse::<u16>().ok()? != token_bucket(token) {
            return None;
        }
        Some((AppId::new(app).ok()?, parse_channel_token(token)?))
    }

    /// The subject on which edges report presence in one channel.
    #[must_use]
    pub fn presence(&self, app: &AppId, channel: &ChannelName) -> String {
        format!("{}.presence.{}.{}", self.prefix, app, channel_token(channel))
    }

    /// The wildcard subject of every presence report (what the control plane
    /// subscribes to).
    #[must_use]
    pub fn all_presence(&self) -> String {
        format!("{}.presence.*.*", self.prefix)
    }

    /// Maps a presence subject back to its app and channel.
    #[must_use]
    pub fn parse_presence(&self, subject: &str) -> Option<(AppId, ChannelName)> {
        let rest = subject.strip_prefix(&*self.prefix)?.strip_prefix(".presence.")?;
        let (app, channel) = rest.split_once('.')?;
        Some((AppId::new(app).ok()?, parse_channel_token(channel)?))
    }

    /// The subject on which edges report their subscriber counts for one app.
    #[must_use]
    pub fn occupancy(&self, app: &AppId) -> String {
        format!("{}.occupancy.{}", self.prefix, app)
    }

    /// The wildcard subject of every app's occupancy reports.
    #[must_use]
    pub fn all_occupancy(&self) -> String {
        format!("{}.occupancy.*", self.prefix)
    }

    /// The subject of requests for one app's namespaces.
    #[must_use]
    pub fn namespaces(&self, app: &AppId) -> String {
        format!("{}.ns.{}", self.prefix, app)
    }

    /// The wildcard subject of namespace requests (what the control plane
    /// answers).
    #[must_use]
    pub fn all_namespaces(&self) -> String {
        format!("{}.ns.*", self.prefix)
    }

    /// Maps a namespace-request subject back to its app.
    #[must_use]
    pub fn parse_namespaces(&self, subject: &str) -> Option<AppId> {
        let rest = subject.strip_prefix(&*self.prefix)?.strip_prefix(".ns.")?;
        AppId::new(rest).ok()
    }

    /// The subject on which edges report one app's edge-seen webhook events
    /// (requests the control plane answers once it stored them).
    #[must_use]
    pub fn webhook_events(&self, app: &AppId) -> String {
        format!("{}.wh.{}", self.prefix, app)
    }

    /// The wildcard subject of every app's webhook events (what the control
    /// plane answers).
    #[must_use]
    pub fn all_webhook_events(&self) -> String {
        format!("{}.wh.*", self.prefix)
    }

    /// Maps a webhook-event subject back to its app.
    #[must_use]
    pub fn parse_webhook_events(&self, subject: &str) -> Option<AppId> {
        let rest = subject.strip_prefix(&*self.prefix)?.strip_prefix(".wh.")?;
        AppId::new(rest).ok()
    }

    /// The subject on which nodes send their usage reports (requests the
    /// control plane answers once it stored them).
    #[must_use]
    pub fn usage(&self) -> String {
        format!("{}.usage", self.prefix)
    }

    /// The subject a message of a history channel is published on; the
    /// namespace's stream captures it.
    #[must_use]
    pub fn history(&self, app: &AppId, ns: &NamespaceName, channel: &ChannelName) -> String {
        format!("{}.hs.{}.{}.{}", self.prefix, app, ns, channel_token(channel))
    }

    /// The subjects of one namespace's stream.
    #[must_use]
    pub fn history_stream_subjects(&self, app: &AppId, ns: &NamespaceName) -> String {
        format!("{}.hs.{}.{}.*", self.prefix, app, ns)
    }

    /// Where the namespace's stream republishes what it stored: the
    /// channel subject, as a subject transform of
    /// [`Self::history_stream_subjects`] (NATS computes the channel's
    /// bucket as [`channel_bucket`] does).
    #[must_use]
    pub fn history_republish(&self, app: &AppId) -> String {
        format!("{}.ch.{}.{{{{partition({CHANNEL_BUCKETS},1)}}}}.{{{{wildcard(1)}}}}", self.prefix, app)
    }

    /// The JetStream stream name of one namespace: unique per (prefix, app,
    /// namespace), since none of them can hold `!` or `~`.
    #[must_use]
    pub fn history_stream(&self, app: &AppId, ns: &NamespaceName) -> String {
        format!("{}{}!{}", self.history_stream_prefix(), app, ns)
    }

    /// What the name of every stream of this subject space, and only
    /// theirs, starts with.
    #[must_use]
    pub fn history_stream_prefix(&self) -> String {
        format!("herald!{}!", self.prefix.replace('.', "~"))
    }

    /// The subject a cache channel's last message is kept under.
    #[must_use]
    pub fn cache(&self, app: &AppId, channel: &ChannelName) -> String {
        format!("{}.cache.{}.{}", self.prefix, app, channel_token(channel))
    }

    /// The subjects of the cache stream.
    #[must_use]
    pub fn all_cache(&self) -> String {
        format!("{}.cache.*.*", self.prefix)
    }

    /// The JetStream stream that keeps the last message of every cache
    /// channel of this subject space (unlike history streams' names, it
    /// does not start with [`Self::history_stream_prefix`]).
    #[must_use]
    pub fn cache_stream(&self) -> String {
        format!("herald-cache!{}", self.prefix.replace('.', "~"))
    }

    /// The subject of one app's debug events (the debug tap).
    #[must_use]
    pub fn tap(&self, app: &AppId) -> String {
        format!("{}.tap.{}", self.prefix, app)
    }

    /// The subject of control events.
    #[must_use]
    pub fn control(&self) -> String {
        format!("{}.control", self.prefix)
    }

    /// A subject nobody subscribes to: a request on it comes back as "no
    /// responders" once the server processed everything sent before it on
    /// the same connection (how the bus knows a subscription is live,
    /// and that the server has a publish).
    #[must_use]
    pub fn sync(&self) -> String {
        format!("{}.sync", self.prefix)
    }

    /// How many tokens every channel subject has.
    #[must_use]
    pub fn channel_subject_tokens(&self) -> usize {
        self.prefix_tokens + 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn space() -> SubjectSpace {
        SubjectSpace::new("t.x-1").expect("valid prefix")
    }

    #[test]
    fn builds_the_documented_subjects() {
        let s = space();
        let app = AppId::new("app1").expect("app");
        let ch = ChannelName::new("chat:room/1").expect("channel");
        let bucket = channel_bucket(&ch);
        assert_eq!(s.channel(&app, &ch), format!("t.x-1.ch.app1.{bucket}.chat:room/1"));
        assert_eq!(s.channel_bucket(&app, bucket), format!("t.x-1.ch.app1.{bucket}.*"));
        assert_eq!(s.presence(&app, &ch), "t.x-1.presence.app1.chat:room/1");
        assert_eq!(s.parse_presence("t.x-1.presence.app1.chat:room/1"), Some((app.clone(), ch.clone())));
        assert_eq!(s.all_presence(), "t.x-1.presence.*.*");
        assert_eq!(s.occupancy(&app), "t.x-1.occupancy.app1");
        assert_eq!(s.all_occupancy(), "t.x-1.occupancy.*");
        assert_eq!(s.namespaces(&app), "t.x-1.ns.app1");
        assert_eq!(s.parse_namespaces("t.x-1.ns.app1"), Some(app.clone()));
        assert_eq!(s.parse_namespaces("t.x-1.ns.a.b"), None);
        assert_eq!(s.webhook_events(&app), "t.x-1.wh.app1");
        assert_eq!(s.all_webhook_events(), "t.x-1.wh.*");
        assert_eq!(s.usage(), "t.x-1.usage");
        assert_eq!(s.parse_webhook_events("t.x-1.wh.app1"), Some(app.clone()));
        assert_eq!(s.parse_webhook_events(&s.webhook_events(&app)), Some(app.clone()));
        let ns = ch.namespace_name().expect("namespace");
        assert_eq!(s.history(&app, &ns, &ch), "t.x-1.hs.app1.chat.chat:room/1");
        assert_eq!(s.history_stream_subjects(&app, &ns), "t.x-1.hs.app1.chat.*");
        assert_eq!(s.history_republish(&app), "t.x-1.ch.app1.{{partition(256,1)}}.{{wildcard(1)}}");
        assert_eq!(s.history_stream(&app, &ns), "herald!t~x-1!app1!chat");
        assert_eq!(s.history_stream_prefix(), "herald!t~x-1!");
        assert_eq!(s.control(), "t.x-1.control");
        assert_eq!(s.cache(&app, &ch), "t.x-1.cache.app1.chat:room/1");
        assert_eq!(s.all_cache(), "t.x-1.cache.*.*");
        assert_eq!(s.cache_stream(), "herald-cache!t~x-1");
        assert!(!s.cache_stream().starts_with(&s.history_stream_prefix()));
        assert_eq!(SubjectSpace::default().prefix(), "herald");
    }

    #[test]
    fn dots_in_channel_names_are_escaped_in_every_subject() {
        let s = space();
        let app = AppId::new("app1").expect("app");
        let ch = ChannelName::new("private-App.Models.User.1").expect("channel");
        assert_eq!(s.channel(&app, &ch), "t.x-1.ch.app1.222.private-App^Models^User^1");
        assert_eq!(s.parse_channel("t.x-1.ch.app1.222.private-App^Models^User^1"), Some((app.clone(), ch.clone())));
        assert_eq!(s.presence(&app, &ch), "t.x-1.presence.app1.private-App^Models^User^1");
        assert_eq!(s.parse_presence(&s.presence(&app, &ch)), Some((app.clone(), ch.clone())));
        let ns_ch = ChannelName::new("chat:a.b").expect("channel");
        let ns = ns_ch.namespace_name().expect("namespace");
        assert_eq!(s.history(&app, &ns, &ns_ch), "t.x-1.hs.app1.chat.chat:a^b");
        // '^' is no channel character: no name is written like another's.
        assert!(ChannelName::new("a^b").is_err());
        assert_eq!(parse_channel_token("a^b"), ChannelName::new("a.b").ok());
        assert_eq!(channel_token(&ChannelName::new("plain").expect("channel")), Cow::Borrowed("plain"));
    }

    /// The buckets NATS computed with `{{partition(256,1)}}` for these
    /// tokens (nats-server 2.9): a history stream's republished message must
    /// land in the bucket its channel's subscribers follow.
    #[test]
    fn buckets_are_the_ones_nats_partitions_into() {
        for (token, bucket) in
            [("chat", 171), ("chat:lobby", 89), ("private-App^Models^User^1", 222), ("x", 135), ("user-123", 147)]
        {
            assert_eq!(token_bucket(token), bucket, "{token}");
        }
        let ch = ChannelName::new("private-App.Models.User.1").expect("channel");
        assert_eq!(channel_bucket(&ch), 222);
    }

    #[test]
    fn webhook_subjects_refuse_what_they_cannot_produce() {
        let s = space();
        for subject in [
            "t.x-1.wh.a.b",
            "t.x-1.wh.",
            "t.x-1.wh.*",
            "t.x-1.wh.>",
            "t.x-1.ns.app1",
            "other.wh.app1",
            "t.x-1.whapp1",
            "t.x-1.wh.app 1",
        ] {
            assert_eq!(s.parse_webhook_events(subject), None, "{subject}");
        }
    }

    #[test]
    fn rejects_bad_prefixes() {
        for bad in ["", ".", "a.", ".a", "a..b", "a*", "a.>", "a b", "a\tb", &"a".repeat(65)] {
            assert!(SubjectSpace::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_refuses_foreign_subjects() {
        let s = space();
        for subject in [
            "t.x-1.ch.app1",
            "t.x-1.ch.app1.room",
            "t.x-1.ch.app1.a.b",
            "t.x-1.ch.app1.135.x.y",
            "t.x-1.ch.app1.134.x",
            "t.x-1.ch.app1.0135.x",
            "t.x-1.ch.app1.+135.x",
            "t.x-1.ch.app1.*",
            "t.x-1.ch.app1.135.*",
            "t.x-1.ch.*.135.x",
            "t.x-1.ch.app1.>",
            "other.ch.app1.135.x",
            "t.x-1.presence.app1",
            "t.x-1.ch..room",
        ] {
            assert_eq!(s.parse_channel(subject), None, "{subject}");
        }
    }

    fn app_id() -> impl Strategy<Value = AppId> {
        "[A-Za-z0-9_-]{1,64}".prop_map(|s| AppId::new(&s).expect("generated app id is valid"))
    }

    fn channel() -> impl Strategy<Value = ChannelName> {
        "[A-Za-z0-9_=@,;!#/+~.-][A-Za-z0-9_=@,;:!#/+~.-]{0,254}"
            .prop_filter_map("valid channel", |s| ChannelName::new(&s).ok())
    }

    proptest! {
        #[test]
        fn channel_subjects_round_trip_and_have_fixed_shape(app in app_id(), ch in channel()) {
            let s = space();
            let subject = s.channel(&app, &ch);
            let tokens: Vec<&str> = subject.split('.').collect();
            prop_assert_eq!(tokens.len(), s.channel_subject_tokens());
            for t in &tokens {
                prop_assert!(!t.is_empty());
                prop_assert!(*t != "*" && *t != ">");
                prop_assert!(!t.contains(|c: char| c.is_whitespace() || c == '*' || c == '>'));
            }
            prop_assert_eq!(s.parse_channel(&subject), Some((app, ch)));
        }

        // Small alphabets, so that equal and near-equal inputs are common.
        #[test]
        fn mapping_is_injective(
            a1 in "[ab_]{1,3}", c1 in "[ab][ab:_.]{0,3}", a2 in "[ab_]{1,3}", c2 in "[ab][ab:_.]{0,3}",
        ) {
            let (a1, a2) = (AppId::new(&a1).expect("app"), AppId::new(&a2).expect("app"));
            let (c1, c2) = (ChannelName::new(&c1).expect("channel"), ChannelName::new(&c2).expect("channel"));
            let s = space();
            let same_input = a1 == a2 && c1 == c2;
            prop_assert_eq!(s.channel(&a1, &c1) == s.channel(&a2, &c2), same_input);
        }

        #[test]
        fn parse_never_panics(subject in any::<String>()) {
            let _ = space().parse_channel(&subject);
        }
    }
}
