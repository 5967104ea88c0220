//! Shared history reads: recoveries that ask a channel for the same page at
//! the same moment — the clients of a dead edge arriving on another, each
//! resuming from the last message it got, which is the same for all the
//! subscribers of a channel — are served by one read rather than one each.
//!
//! A read may only serve a caller that asked before it started: a message
//! stored after the read began would otherwise be missing from the page,
//! and a caller that registered its live subscriber after that message was
//! delivered would not hold it either — a gap. So at most one read per key
//! is in flight; callers arriving meanwhile wait together, and when it
//! ends the first of them reads once for all of them. A caller whose
//! leader went away (its client disconnected mid-read) reads alone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::history::HistoryPage;
use crate::{BusError, lock};

/// A page asked for: stream, subject, after which sequence, how many.
pub(crate) type ReadKey = (String, String, u64, usize);

type Page = Result<HistoryPage, BusError>;

/// What a waiting caller is told.
enum Turn {
    /// The read it waited for, done.
    Done(Page),
    /// It reads next, for itself and these.
    Lead(Vec<oneshot::Sender<Turn>>),
}

/// The callers waiting behind the read in flight, per key (a key is present
/// while a read of it is in flight).
#[derive(Default)]
pub(crate) struct SharedReads {
    waiting: Mutex<HashMap<ReadKey, Vec<oneshot::Sender<Turn>>>>,
}

impl SharedReads {
    /// Runs `read`, or waits for the read of another caller that starts
    /// after this call, and returns its page.
    pub(crate) async fn read<F: Future<Output = Page>>(&self, key: ReadKey, read: impl Fn() -> F) -> Page {
        let behind = {
            let mut waiting = lock(&self.waiting);
            match waiting.get_mut(&key) {
                Some(queue) => {
                    let (tx, rx) = oneshot::channel();
                    queue.push(tx);
                    Some(rx)
                }
                None => {
                    waiting.insert(key.clone(), Vec::new());
                    None
                }
            }
        };
        let batch = match behind {
            None => Vec::new(),
            Some(rx) => match rx.await {
                Ok(Turn::Done(page)) => return page,
                Ok(Turn::Lead(batch)) => batch,
                // The leader went away with this caller in its batch.
                Err(_) => return read().await,
            },
        };
        let guard = Leading { reads: self, key: &key };
        let page = read().await;
        for caller in batch {
            let _ = caller.send(Turn::Done(page.clone()));
        }
        drop(guard);
        page
    }

    /// Hands the next read of `key` to the first caller still waiting, or
    /// forgets the key when nobody waits.
    fn hand_over(&self, key: &ReadKey) {
        let mut waiting = lock(&self.waiting);
        let Some(queue) = waiting.get_mut(key) else { return };
        let mut rest = std::mem::take(queue);
        while !rest.is_empty() {
            let first = rest.remove(0);
            match first.send(Turn::Lead(rest)) {
                Ok(()) => return,
                // That caller gave up: the next one leads.
                Err(Turn::Lead(back)) => rest = back,
                Err(Turn::Done(_)) => return,
            }
        }
        waiting.remove(key);
    }
}

/// Hands the key over when its read ends, or when the leader is dropped
/// before.
struct Leading<'a> {
    reads: &'a SharedReads,
    key: &'a ReadKey,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.reads.hand_over(self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    fn key(after: u64) -> ReadKey {
        ("stream".into(), "subject".into(), after, 256)
    }

    /// A read that waits for a permit of `gate`, then counts itself and
    /// returns the count as its page's last sequence.
    fn counted(
        gate: Arc<Semaphore>,
        reads: Arc<AtomicU64>,
    ) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Page> + Send>> {
        move || {
            let (gate, reads) = (gate.clone(), reads.clone());
            Box::pin(async move {
                gate.acquire().await.expect("gate").forget();
                let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(HistoryPage { epoch: "e".into(), messages: vec![], complete: true, last_seq: n })
            })
        }
    }

    #[tokio::test]
    async fn callers_arriving_during_a_read_share_the_next_one_never_the_one_in_flight() {
        let shared = Arc::new(SharedReads::default());
        let (gate, reads) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU64::new(0)));
        let first = {
            let (shared, read) = (shared.clone(), counted(gate.clone(), reads.clone()));
            tokio::spawn(async move { shared.read(key(7), read).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let later: Vec<_> = (0..10)
            .map(|_| {
                let (shared, read) = (shared.clone(), counted(gate.clone(), reads.clone()));
                tokio::spawn(async move { shared.read(key(7), read).await })
            })
            .collect();
        // Another page is read on its own.
        let other = {
            let (shared, read) = (shared.clone(), counted(gate.clone(), reads.clone()));
            tokio::spawn(async move { shared.read(key(8), read).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.add_permits(3);
        let first = first.await.expect("first").expect("page").last_seq;
        let other = other.await.expect("other").expect("page").last_seq;
        let mut seen = vec![];
        for later in later {
            seen.push(later.await.expect("later").expect("page").last_seq);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3, "one read in flight, one for the ten behind it, one other");
        assert!(seen.iter().all(|n| *n == seen[0]), "{seen:?}");
        assert_ne!(seen[0], first, "the callers behind the first read got a later one");
        assert_ne!(other, first);
        assert!(lock(&shared.waiting).is_empty());
    }

    #[tokio::test]
    async fn a_leader_that_goes_away_hands_the_read_on() {
        let shared = Arc::new(SharedReads::default());
        let (gate, reads) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU64::new(0)));
        let first = {
            let (shared, read) = (shared.clone(), counted(gate.clone(), reads.clone()));
            tokio::spawn(async move { shared.read(key(1), read).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let behind = {
            let (shared, read) = (shared.clone(), counted(gate.clone(), reads.clone()));
            tokio::spawn(async move { shared.read(key(1), read).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        first.abort();
        let _ = first.await;
        gate.add_permits(1);
        let page = tokio::time::timeout(Duration::from_secs(5), behind).await.expect("not stuck").expect("task");
        assert_eq!(page.expect("page").last_seq, 1);
        assert!(lock(&shared.waiting).is_empty());
    }
}
