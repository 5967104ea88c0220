//! Publishes handed to the bus whose arrival is confirmed later: what lets
//! one publisher keep several messages in flight. [`Bus::send_encoded`]
//! hands a message over in call order and returns a [`PublishReceipt`];
//! awaiting it says whether the backplane has the message, as awaiting
//! [`Bus::publish_encoded`] would have.
//!
//! Over NATS every publish of a process joins one queue, which is handed to
//! the client a batch at a time, each batch confirmed by one round trip to
//! the server (the `nats::outgoing` module): receipts are confirmed in the
//! order their messages were handed over, so a caller that keeps its
//! receipts in a queue and awaits the oldest learns about each in order. On the
//! in-process bus and for cache channels (whose last message is stored
//! first) the message is published before `send_encoded` returns, and the
//! receipt is ready.

use std::sync::Arc;

use bytes::Bytes;
use herald_proto::{AppId, ChannelName};
use tokio::time::Instant;

use crate::handle::Inner;
use crate::nats::NatsBus;
use crate::{Bus, BusError};

/// The pending confirmation of one message [`Bus::send_encoded`] handed
/// over.
///
/// ```
/// use bytes::Bytes;
/// use herald_bus::{Bus, LocalBus};
/// use herald_proto::{AppId, ChannelName};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::local(&LocalBus::default());
/// let (app, channel) = (AppId::new("app1")?, ChannelName::new("chat")?);
/// let first = bus.send_encoded(&app, &channel, Bytes::from_static(b"one")).await?;
/// let second = bus.send_encoded(&app, &channel, Bytes::from_static(b"two")).await?;
/// // Confirmed oldest first; the in-process bus has both already.
/// first.confirmed().await?;
/// second.confirmed().await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a receipt says whether the message was published"]
pub struct PublishReceipt(Pending);

enum Pending {
    /// Published already.
    Done,
    /// The `ticket`-th publish of this NATS client, to be confirmed by
    /// `deadline`.
    Nats { bus: Arc<NatsBus>, ticket: u64, deadline: Instant },
}

impl std::fmt::Debug for PublishReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Pending::Done => f.write_str("PublishReceipt(done)"),
            Pending::Nats { ticket, .. } => write!(f, "PublishReceipt(#{ticket})"),
        }
    }
}

impl PublishReceipt {
    /// Resolves when the backplane has the message.
    ///
    /// # Errors
    ///
    /// [`BusError::Timeout`] when the server did not confirm it within the
    /// publish timeout (counted from the hand-over), and what the round
    /// trip to the server met ([`BusError::Unavailable`]).
    pub async fn confirmed(self) -> Result<(), BusError> {
        match self.0 {
            Pending::Done => Ok(()),
            Pending::Nats { bus, ticket, deadline } => {
                match tokio::time::timeout_at(deadline, bus.receipt(ticket)).await {
                    Ok(result) => result,
                    Err(_) => Err(BusError::Timeout { what: "publish" }),
                }
            }
        }
    }
}

impl Bus {
    /// Hands a [`herald_proto::bus::ChannelMessage`], encoded, to the bus
    /// without waiting for the server to confirm it: messages a caller
    /// hands over one after the other are published in that order, and
    /// the returned [`PublishReceipt`] confirms each (see the module docs).
    /// Cache channels and the in-process bus publish at once.
    ///
    /// # Errors
    ///
    /// As [`Self::publish_encoded`], for what fails before the message is
    /// handed over (not connected, the client's queue full past the publish
    /// timeout, a cache channel's store).
    pub async fn send_encoded(
        &self,
        app: &AppId,
        channel: &ChannelName,
        payload: Bytes,
    ) -> Result<PublishReceipt, BusError> {
        match &*self.inner {
            Inner::Nats(n) if !crate::cache::is_cache_channel(channel) => {
                let deadline = Instant::now() + n.options.publish_timeout;
                let ticket = tokio::time::timeout_at(deadline, n.send(n.subjects.channel(app, channel), payload))
                    .await
                    .map_err(|_| BusError::Timeout { what: "publish" })??;
                Ok(PublishReceipt(Pending::Nats { bus: n.clone(), ticket, deadline }))
            }
            _ => {
                self.publish_encoded(app, channel, payload).await?;
                Ok(PublishReceipt(Pending::Done))
            }
        }
    }
}

impl NatsBus {
    /// Hands a message to the client; its ticket for [`Self::receipt`].
    pub(crate) async fn send(&self, subject: String, payload: Bytes) -> Result<u64, BusError> {
        self.check_connected()?;
        self.outgoing.send(subject, payload).await
    }
}
