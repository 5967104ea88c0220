//! What the handles ([`Client`](crate::Client),
//! [`Subscription`](crate::Subscription)) ask of the client task, and what
//! it answers: one [`Command`] per call, each with the oneshot its answer
//! goes back on.

use std::time::Duration;

use herald_proto::{ChannelName, client};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::event::{Member, Position, SubscriptionEvent};
use crate::user_events::UserEvent;

/// What a handle asks of the client task.
pub(crate) enum Command {
    Subscribe { channel: ChannelName, reply: oneshot::Sender<Result<Subscribed, Error>> },
    Unsubscribe { channel: ChannelName, sub_id: Option<u64>, reply: Option<oneshot::Sender<Result<(), Error>>> },
    Publish { publish: client::Publish, reply: oneshot::Sender<Result<PublishAck, Error>> },
    Ping { reply: oneshot::Sender<Result<Duration, Error>> },
    Presence { channel: ChannelName, after: String, reply: oneshot::Sender<Result<MembersPage, Error>> },
    UserEvents { reply: oneshot::Sender<Result<mpsc::Receiver<UserEvent>, Error>> },
    Close { reply: oneshot::Sender<()> },
}

impl Command {
    /// Answers a command the client task will never carry out: the task
    /// stopped (or is stopping) with `error`. Unsubscribing and closing
    /// succeed then; a stopped client has nothing left to undo.
    pub(crate) fn fail(self, error: &Error) {
        match self {
            Self::Subscribe { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Self::Unsubscribe { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
            }
            Self::Publish { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Self::Ping { reply } => {
                let _ = reply.send(Err(error.clone()));
            }
            Self::Presence { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            Self::UserEvents { reply } => {
                let _ = reply.send(Err(error.clone()));
            }
            Self::Close { reply } => {
                let _ = reply.send(());
            }
        }
    }
}

/// A confirmed subscription, handed to the caller.
pub(crate) struct Subscribed {
    pub id: u64,
    pub rx: mpsc::Receiver<SubscriptionEvent>,
    pub history: bool,
}

/// One page of a presence channel's members.
pub(crate) struct MembersPage {
    pub(crate) members: Vec<Member>,
    /// Where the next page starts; `None` after the last.
    pub(crate) next: Option<String>,
}

/// The edge's acknowledgement of a publish.
///
/// ```no_run
/// # async fn demo(client: herald_sdk::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let ack = client.publish("chat:lobby", "hello").await?;
/// match ack.position {
///     Some(position) => println!("message {} stored at {} in epoch {}", ack.id, position.seq, position.epoch),
///     None => println!("message {} sent (the channel keeps no history)", ack.id),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishAck {
    /// The message id (the idempotency id when one was given).
    pub id: String,
    /// The message's place in the channel's history, when it keeps one.
    pub position: Option<Position>,
}
