//! Spreading one message's fan-out to a large channel over several cores.
//!
//! Writing a frame to 10,000 sockets is 10,000 `send` calls, one after the
//! other on the thread that received the message. A [`FanoutPool`] owns a
//! few helper threads (by default one fewer than the cores the process may
//! run on). For a large channel, the thread holding the message posts it
//! to the helpers and then works through the subscribers itself, in chunks
//! claimed from a shared cursor; each helper that wakes in time claims
//! chunks too. The poster returns once every chunk is done, so the frames
//! of one channel still reach each subscriber in order, and nothing waits
//! for a helper that is late: unclaimed chunks are the poster's. Helpers
//! are plain threads (not runtime workers), so a poster waiting for a
//! chunk in progress never holds up the task that would finish it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;

use bytes::Bytes;

use crate::outbox::{Outbox, PushError};

/// Subscribers per claimed chunk.
const CHUNK: usize = 32;

/// What one fan-out did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Subscribers that took the frame.
    pub delivered: usize,
    /// Subscribers closed as slow consumers by it.
    pub slow: u64,
}

/// One message to write to a list of outboxes.
struct Job {
    outboxes: Arc<[Arc<Outbox>]>,
    frame: Bytes,
    next: AtomicUsize,
    done: AtomicUsize,
    delivered: AtomicUsize,
    slow: AtomicU64,
}

impl Job {
    /// Claims and writes chunks until none is left.
    fn work(&self) {
        let len = self.outboxes.len();
        loop {
            let start = self.next.fetch_add(CHUNK, Ordering::Relaxed);
            if start >= len {
                return;
            }
            let end = (start + CHUNK).min(len);
            let (mut delivered, mut slow) = (0, 0);
            for outbox in &self.outboxes[start..end] {
                match outbox.push_or_write(self.frame.clone()) {
                    Ok(()) => delivered += 1,
                    Err(PushError::Overflow) => slow += 1,
                    Err(PushError::Closed) => {}
                }
            }
            self.delivered.fetch_add(delivered, Ordering::Relaxed);
            self.slow.fetch_add(slow, Ordering::Relaxed);
            self.done.fetch_add(end - start, Ordering::Release);
        }
    }
}

/// Helper threads for the fan-out of large channels. Dropping the pool
/// ends them.
pub struct FanoutPool {
    helpers: Vec<mpsc::SyncSender<Arc<Job>>>,
}

impl FanoutPool {
    /// A pool of `threads` helpers; 0 makes every fan-out run on its
    /// caller alone.
    #[must_use]
    pub fn new(threads: usize) -> Self {
        let helpers = (0..threads)
            .filter_map(|i| {
                // A helper lags at most a few messages: each post waits
                // for its job to finish before the next can be posted.
                let (tx, rx) = mpsc::sync_channel::<Arc<Job>>(64);
                let spawned = std::thread::Builder::new().name(format!("herald-fanout-{i}")).spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job.work();
                    }
                });
                match spawned {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        tracing::warn!(error = %e, "fan-out helper thread not started");
                        None
                    }
                }
            })
            .collect();
        Self { helpers }
    }

    /// How many helper threads run.
    #[must_use]
    pub fn threads(&self) -> usize {
        self.helpers.len()
    }

    /// Writes (or queues) `frame` to every outbox, with the helpers, and
    /// returns once all of them have it. Outboxes take it through
    /// [`Outbox::push_or_write`].
    pub fn run(&self, outboxes: &Arc<[Arc<Outbox>]>, frame: &Bytes) -> Outcome {
        let job = Arc::new(Job {
            outboxes: outboxes.clone(),
            frame: frame.clone(),
            next: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            delivered: AtomicUsize::new(0),
            slow: AtomicU64::new(0),
        });
        for helper in &self.helpers {
            // A full or closed helper just does not take part.
            let _ = helper.try_send(job.clone());
        }
        job.work();
        // Only chunks a helper claimed and is still writing are left.
        let mut spins = 0u32;
        while job.done.load(Ordering::Acquire) < outboxes.len() {
            if spins < 256 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
        Outcome { delivered: job.delivered.load(Ordering::Relaxed), slow: job.slow.load(Ordering::Relaxed) }
    }
}

/// One fewer than the cores this process may run on (its CPU affinity
/// counts): the default number of fan-out helpers.
#[must_use]
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outbox_gets_the_frame_once_whatever_the_helpers_do() {
        for threads in [0, 1, 3] {
            let pool = FanoutPool::new(threads);
            assert_eq!(pool.threads(), threads);
            let outboxes: Arc<[Arc<Outbox>]> = (0..1000).map(|_| Arc::new(Outbox::new(4, 1 << 20))).collect();
            for n in 0..3u8 {
                let outcome = pool.run(&outboxes, &Bytes::from(vec![n; 10]));
                assert_eq!(outcome, Outcome { delivered: 1000, slow: 0 });
            }
            // A fourth frame is within the bound, a fifth passes it.
            assert_eq!(pool.run(&outboxes, &Bytes::from_static(b"3")).delivered, 1000);
            assert_eq!(pool.run(&outboxes, &Bytes::from_static(b"4")), Outcome { delivered: 0, slow: 1000 });
            assert!(outboxes.iter().all(|o| o.is_closing()));
        }
    }
}
