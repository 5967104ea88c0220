//! Webhooks' shared vocabulary: the kinds of events an endpoint can ask for
//! and the two body formats, with the names the APIs, the CLI, the stored
//! rows and the bus use for them.
//!
//! Most kinds are computed by the control plane from what edges report
//! (occupancy and presence); the others ([`EventKind::is_edge_event`]) happen
//! on an edge, which reports each one to the control plane over the bus
//! ([`crate::bus::WebhookEvent`]) only when some endpoint of the app wants
//! its kind ([`crate::bus::NamespaceList::webhook_events`]).

use std::fmt;
use std::str::FromStr;

/// What happened, as an endpoint subscribes to it.
///
/// ```
/// use herald_proto::webhook::EventKind;
/// let kind: EventKind = "member_added".parse()?;
/// assert_eq!((kind, kind.as_str()), (EventKind::MemberAdded, "member_added"));
/// assert!(!kind.is_edge_event(), "computed by the control plane from presence reports");
/// assert!(EventKind::ClientEvent.is_edge_event());
/// # Ok::<(), herald_proto::webhook::UnknownEventKind>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// A channel got its first subscriber, over every edge.
    ChannelOccupied,
    /// A channel lost its last subscriber (after the debounce).
    ChannelVacated,
    /// A user got their first connection in a presence channel.
    MemberAdded,
    /// A user lost their last connection in a presence channel (after the
    /// debounce).
    MemberRemoved,
    /// A client sent an event or message on a channel (Pusher `client-`
    /// events, Herald client publishes).
    ClientEvent,
    /// A channel's subscriber count changed (at most one per channel per
    /// debounce period, with the latest count).
    SubscriptionCount,
    /// A client subscribed to a cache channel that had no cached event.
    CacheMiss,
}

impl EventKind {
    /// Every kind, in a stable order.
    pub const ALL: [Self; 7] = [
        Self::ChannelOccupied,
        Self::ChannelVacated,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::ClientEvent,
        Self::SubscriptionCount,
        Self::CacheMiss,
    ];

    /// The kind's name (Pusher's event name where Pusher has the event).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ChannelOccupied => "channel_occupied",
            Self::ChannelVacated => "channel_vacated",
            Self::MemberAdded => "member_added",
            Self::MemberRemoved => "member_removed",
            Self::ClientEvent => "client_event",
            Self::SubscriptionCount => "subscription_count",
            Self::CacheMiss => "cache_miss",
        }
    }

    /// Whether an edge sees it happen (and reports it) rather than the
    /// control plane computing it from reports.
    #[must_use]
    pub const fn is_edge_event(self) -> bool {
        matches!(self, Self::ClientEvent | Self::CacheMiss)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event kind name that is not one of [`EventKind::ALL`].
///
/// ```
/// use herald_proto::webhook::{EventKind, UnknownEventKind};
/// assert_eq!("channel_closed".parse::<EventKind>(), Err(UnknownEventKind("channel_closed".into())));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown webhook event type {0:?} (known: channel_occupied, channel_vacated, member_added, member_removed, client_event, subscription_count, cache_miss)"
)]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| UnknownEventKind(s.chars().take(64).collect()))
    }
}

/// How a webhook's body looks and is signed.
///
/// ```
/// use herald_proto::webhook::Format;
/// assert_eq!("pusher".parse::<Format>()?, Format::Pusher);
/// assert_eq!(Format::default().as_str(), "herald");
/// # Ok::<(), herald_proto::webhook::UnknownFormat>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Herald's: one event per request, with an id stable across retries,
    /// signed with the endpoint's own secret over timestamp and body.
    #[default]
    Herald,
    /// Pusher's: `{"time_ms", "events": [...]}`, `X-Pusher-Key` and
    /// `X-Pusher-Signature` (HMAC-SHA256 of the body with the app's Pusher
    /// secret).
    Pusher,
}

impl Format {
    /// The format's name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Herald => "herald",
            Self::Pusher => "pusher",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A format name other than `herald` and `pusher`.
///
/// ```
/// use herald_proto::webhook::{Format, UnknownFormat};
/// let err = "slack".parse::<Format>().unwrap_err();
/// assert_eq!(err, UnknownFormat("slack".into()));
/// assert_eq!(err.to_string(), r#"unknown webhook format "slack" (known: herald, pusher)"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown webhook format {0:?} (known: herald, pusher)")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "herald" => Ok(Self::Herald),
            "pusher" => Ok(Self::Pusher),
            other => Err(UnknownFormat(other.chars().take(64).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
        }
        assert!("channel_exploded".parse::<EventKind>().is_err());
        assert_eq!("pusher".parse::<Format>(), Ok(Format::Pusher));
        assert!("xml".parse::<Format>().is_err());
        assert_eq!(EventKind::ALL.iter().filter(|k| k.is_edge_event()).count(), 2);
    }
}
