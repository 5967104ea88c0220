//! The readers of user events: every open [`crate::UserEvents`], each a
//! bounded buffer the client task offers events to without ever waiting.
//! A full buffer drops the newest events and counts them; the reader is
//! told how many ([`UserEvent::Lagged`]) before the next event that fits.
//! Readers that went away are forgotten on the next delivery.

use herald_proto::client;
use tokio::sync::mpsc;

use crate::error::Error;
use crate::user_events::{UserEvent, UserMessage};

/// One open [`crate::UserEvents`].
struct Reader {
    tx: mpsc::Sender<UserEvent>,
    dropped: u64,
}

/// Every open reader of user events.
pub(super) struct UserEventReaders {
    readers: Vec<Reader>,
    /// Events buffered per reader.
    buffer: usize,
    /// Whether the client was connected before (so the next connection is
    /// a reconnect).
    connected_before: bool,
}

impl UserEventReaders {
    pub(super) fn new(buffer: usize) -> Self {
        Self { readers: Vec::new(), buffer, connected_before: false }
    }

    /// A new reader.
    pub(super) fn open(&mut self) -> mpsc::Receiver<UserEvent> {
        let (tx, rx) = mpsc::channel(self.buffer);
        self.readers.push(Reader { tx, dropped: 0 });
        rx
    }

    /// Hands a user event (a `Message` with no channel) to every reader.
    pub(super) fn deliver(&mut self, m: client::Message) {
        if self.readers.is_empty() {
            tracing::debug!(id = %m.id, "user event with no reader; dropped");
            return;
        }
        let message = UserMessage { event: m.event, data: m.data, id: m.id, timestamp_ms: m.timestamp_ms };
        self.broadcast(&UserEvent::Message(message));
    }

    /// A connection was established: readers learn of a reconnect (user
    /// events sent meanwhile are lost).
    pub(super) fn connected(&mut self) {
        if std::mem::replace(&mut self.connected_before, true) {
            self.broadcast(&UserEvent::Reconnected);
        }
    }

    /// The client stopped: every reader ends with `error`.
    pub(super) fn end_all(&mut self, error: &Error) {
        for reader in self.readers.drain(..) {
            let _ = reader.tx.try_send(UserEvent::Ended(error.clone()));
        }
    }

    fn broadcast(&mut self, event: &UserEvent) {
        self.readers.retain_mut(|reader| push(reader, event.clone()));
    }
}

/// Offers `event` to a reader without waiting; false when the reader is
/// gone.
fn push(reader: &mut Reader, event: UserEvent) -> bool {
    use mpsc::error::TrySendError;
    if reader.dropped > 0 {
        match reader.tx.try_send(UserEvent::Lagged { dropped: reader.dropped }) {
            Ok(()) => reader.dropped = 0,
            Err(TrySendError::Full(_)) => {
                reader.dropped += 1;
                return true;
            }
            Err(TrySendError::Closed(_)) => return false,
        }
    }
    match reader.tx.try_send(event) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            if reader.dropped == 0 {
                tracing::warn!("user event buffer full; dropping events until it is read");
            }
            reader.dropped += 1;
            true
        }
        Err(TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> client::Message {
        client::Message { id: id.into(), data: id.as_bytes().to_vec().into(), ..Default::default() }
    }

    #[test]
    fn a_full_reader_loses_the_newest_and_is_told_and_gone_readers_are_forgotten() {
        let mut readers = UserEventReaders::new(2);
        let mut slow = readers.open();
        let gone = readers.open();
        drop(gone);
        for id in ["a", "b", "c", "d"] {
            readers.deliver(message(id));
        }
        assert_eq!(readers.readers.len(), 1);
        let ids: Vec<String> = (0..2)
            .filter_map(|_| match slow.try_recv() {
                Ok(UserEvent::Message(m)) => Some(m.id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["a", "b"]);
        readers.deliver(message("e"));
        assert_eq!(slow.try_recv().ok(), Some(UserEvent::Lagged { dropped: 2 }));
        assert!(matches!(slow.try_recv(), Ok(UserEvent::Message(m)) if m.id == "e"));

        // The first connection is no reconnect; the next ones are.
        readers.connected();
        assert!(slow.try_recv().is_err());
        readers.connected();
        assert_eq!(slow.try_recv().ok(), Some(UserEvent::Reconnected));
        readers.end_all(&Error::Closed);
        assert_eq!(slow.try_recv().ok(), Some(UserEvent::Ended(Error::Closed)));
        assert!(slow.try_recv().is_err());
    }
}
