//! Publishes on their way to NATS, and their confirmations.
//!
//! Every publish of a process (channel messages, control events, reports)
//! joins one bounded queue and gets a ticket, its place in the queue. One
//! task, the flusher, takes everything queued at once, hands it to the NATS
//! client back to back — which writes it to the socket in one go — and
//! then makes a round trip to the server that confirms the whole batch
//! (the server answers a request only after it handled the commands sent
//! before it). While the round trip is under way, new publishes gather in
//! the queue for the next batch: under load one socket write and one round
//! trip serve many publishes, where each publish paid both of its own, and
//! with a single publisher a batch is that one message.
//!
//! Tickets are handed out in queue order and batches are confirmed oldest
//! first, so "confirmed through ticket n" covers every ticket up to n: a
//! caller keeping several messages in flight learns about each in order.
//! A round trip that fails (NATS unreachable) is tried again, with the
//! same batch still unconfirmed; the callers' publish timeouts bound how
//! long they wait. The queue holds at most `NatsOptions::publish_queue`
//! messages: past that a publish waits for room, within its timeout.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Subject};
use bytes::Bytes;
use tokio::sync::{Notify, Semaphore, watch};

use crate::{BusError, lock};

/// The first wait before a failed confirmation round trip is tried again;
/// it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(20);
const MAX_RETRY: Duration = Duration::from_millis(500);

/// The queue of publishes shared by the callers and the flusher.
pub(crate) struct Outgoing {
    queue: std::sync::Mutex<Queue>,
    /// One permit per free place in the queue.
    room: Semaphore,
    /// Wakes the flusher when a publish joins an empty queue.
    pending: Notify,
    /// The last ticket the server is known to have: every ticket up to it.
    confirmed: watch::Sender<u64>,
}

#[derive(Default)]
struct Queue {
    messages: Vec<(Subject, Bytes)>,
    /// Tickets handed out so far (the last one's number).
    tickets: u64,
}

impl Outgoing {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            queue: std::sync::Mutex::default(),
            room: Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS)),
            pending: Notify::new(),
            confirmed: watch::Sender::new(0),
        }
    }

    /// Queues a message for `subject`; its ticket for [`Self::confirmed`].
    /// Waits while the queue is full.
    pub(crate) async fn send(&self, subject: impl Into<Subject>, payload: Bytes) -> Result<u64, BusError> {
        let permit = self.room.acquire().await.map_err(|_| BusError::Unavailable("the bus is closed".into()))?;
        permit.forget();
        let (ticket, first) = {
            let mut queue = lock(&self.queue);
            queue.messages.push((subject.into(), payload));
            queue.tickets += 1;
            (queue.tickets, queue.messages.len() == 1)
        };
        if first {
            self.pending.notify_one();
        }
        Ok(ticket)
    }

    /// Resolves once the server has the message of `ticket`.
    pub(crate) async fn confirmed(&self, ticket: u64) -> Result<(), BusError> {
        let mut confirmed = self.confirmed.subscribe();
        confirmed
            .wait_for(|&n| n >= ticket)
            .await
            .map(|_| ())
            .map_err(|_| BusError::Unavailable("the bus is closed".into()))
    }

    /// Runs the flusher: hands each batch to `client`, then confirms it
    /// with a round trip on `sync` (a subject nobody answers).
    pub(crate) async fn flush(self: Arc<Self>, client: Client, sync: Subject) {
        let mut batch = Vec::new();
        loop {
            let through = {
                let mut queue = lock(&self.queue);
                std::mem::swap(&mut batch, &mut queue.messages);
                queue.tickets
            };
            if batch.is_empty() {
                self.pending.notified().await;
                // Lets the publishes already woken join this batch.
                tokio::task::yield_now().await;
                continue;
            }
            self.room.add_permits(batch.len());
            for (subject, payload) in batch.drain(..) {
                if let Err(e) = client.publish(subject, payload).await {
                    // Only a closed client refuses: nothing will be sent.
                    tracing::debug!(error = %e, "bus publish queue closed");
                    return;
                }
            }
            let mut wait = FIRST_RETRY;
            while let Err(e) = round_trip(&client, sync.clone()).await {
                tracing::debug!(error = %e, "publish confirmation round trip failed; trying again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY);
            }
            self.confirmed.send_replace(through);
        }
    }
}

/// Waits until the server processed everything `client` sent so far: a
/// request nobody answers comes back as "no responders" only after the
/// server handled the commands before it.
pub(crate) async fn round_trip(client: &Client, sync: Subject) -> Result<(), async_nats::RequestError> {
    match client.request(sync, Bytes::new()).await {
        Err(e) if e.kind() != async_nats::RequestErrorKind::NoResponders => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue holds at most its limit: past it a publish waits (here
    /// without a flusher, for ever), and tickets follow queue order.
    #[tokio::test]
    async fn a_full_queue_makes_the_next_publish_wait_for_room() {
        let outgoing = Outgoing::new(2);
        assert_eq!(outgoing.send("a", Bytes::from_static(b"1")).await.expect("room"), 1);
        assert_eq!(outgoing.send("a", Bytes::from_static(b"2")).await.expect("room"), 2);
        let third = tokio::time::timeout(Duration::from_millis(50), outgoing.send("a", Bytes::new())).await;
        assert!(third.is_err(), "the third waits for room");
        // Unconfirmed until the flusher says so.
        let first = tokio::time::timeout(Duration::from_millis(20), outgoing.confirmed(1)).await;
        assert!(first.is_err());
        outgoing.confirmed.send_replace(2);
        outgoing.confirmed(1).await.expect("confirmed");
        outgoing.confirmed(2).await.expect("confirmed");
    }

    /// The flusher hands queued messages to a real server and confirms
    /// them, oldest first; a subscriber sees them in queue order.
    #[tokio::test]
    async fn the_flusher_publishes_in_order_and_confirms() {
        use futures_util::StreamExt as _;
        let url = std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let client = async_nats::connect(&url).await.expect("nats is up");
        let subject = format!("herald-test.outgoing.{}", std::process::id());
        let mut sub = client.subscribe(subject.clone()).await.expect("subscribe");
        client.flush().await.expect("flush");
        let outgoing = Arc::new(Outgoing::new(8));
        let flusher = tokio::spawn(outgoing.clone().flush(client.clone(), format!("{subject}.sync").into()));
        let mut tickets = Vec::new();
        for i in 0..20u8 {
            tickets.push(outgoing.send(subject.clone(), Bytes::from(vec![i])).await.expect("queued"));
        }
        assert_eq!(tickets, (1..=20).collect::<Vec<u64>>());
        tokio::time::timeout(Duration::from_secs(5), outgoing.confirmed(20))
            .await
            .expect("in time")
            .expect("confirmed");
        for i in 0..20u8 {
            let msg =
                tokio::time::timeout(Duration::from_secs(5), sub.next()).await.expect("in time").expect("a message");
            assert_eq!(&msg.payload[..], &[i]);
        }
        flusher.abort();
    }
}
