//! [`BusError`]: why a bus operation failed, by kind.
//!
//! Callers match the kind, not the text: [`BusError::is_transient`] tells
//! a failure worth retrying later (NATS away or slow, no control plane
//! answering) from one that will not heal by itself.

/// Why a bus operation failed.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use herald_bus::{Bus, BusError, LocalBus};
/// use herald_proto::{AppId, ChannelName};
///
/// let bus = Bus::local(&LocalBus::default());
/// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat:lobby")?);
/// // No sink attached: a mistake of the caller, retrying will not help.
/// let err = bus.subscribe(&app, &channel, 1).await.err().expect("no sink");
/// assert_eq!(err, BusError::NoSink);
/// assert!(!err.is_transient());
/// // NATS away or slow: worth retrying.
/// assert!(BusError::Timeout { what: "publish" }.is_transient());
/// assert!(BusError::NoControlPlane.is_transient());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The NATS connection is down; the client reconnects on its own.
    #[error("bus unavailable: not connected to nats")]
    Disconnected,
    /// NATS did not confirm the operation within the publish timeout.
    #[error("bus unavailable: nats did not confirm {what} in time")]
    Timeout {
        /// The operation that timed out (`publish`, `subscribe`, …).
        what: &'static str,
    },
    /// No control plane answered an edge's request (a namespace lookup, a
    /// webhook event).
    #[error("bus unavailable: no control plane answers the request")]
    NoControlPlane,
    /// Another failure that may heal: NATS or JetStream refused the call
    /// for now (connect refused, a request failed, a stream busy).
    #[error("bus unavailable: {0}")]
    Unavailable(String),
    /// The channel's namespace keeps no history (no stream exists for it).
    #[error("no history: {0}")]
    NoHistory(String),
    /// The handle was used before a sink was attached to it (a programming
    /// error of the caller).
    #[error("bus error: no sink attached to this handle")]
    NoSink,
    /// A reply or stream that cannot be used (undecodable, refused for
    /// good).
    #[error("bus error: {0}")]
    Failed(String),
}

impl BusError {
    /// Whether the same operation may succeed when retried later.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Disconnected | Self::Timeout { .. } | Self::NoControlPlane | Self::Unavailable(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_kinds_are_the_ones_that_heal() {
        assert!(BusError::Disconnected.is_transient());
        assert!(BusError::Timeout { what: "publish" }.is_transient());
        assert!(BusError::NoControlPlane.is_transient());
        assert!(BusError::Unavailable("x".into()).is_transient());
        assert!(!BusError::NoHistory("x".into()).is_transient());
        assert!(!BusError::NoSink.is_transient());
        assert!(!BusError::Failed("x".into()).is_transient());
        assert_eq!(
            BusError::Timeout { what: "publish" }.to_string(),
            "bus unavailable: nats did not confirm publish in time"
        );
    }
}
