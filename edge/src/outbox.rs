//! A connection's bounded send queue.
//!
//! The hub and the connection's reader push encoded frames; the
//! connection's writer takes everything waiting at once and writes it in one
//! go. Bounded in frames and bytes: a push past either bound drops the
//! queued frames, marks the connection as a slow consumer and wakes the
//! writer to close it. A push never blocks and never waits on the writer, so
//! one stalled client cannot hold up the hub.
//!
//! An idle outbox owns no buffer: the queue is allocated on first use and
//! released when the writer drains it.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use herald_proto::CloseCode;
use tokio::sync::Notify;

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue passed a bound: the connection is now closing as a slow
    /// consumer.
    Overflow,
    /// The connection is already closing.
    Closed,
}

/// What the writer takes from the outbox.
#[derive(Debug, Default)]
pub struct Batch {
    /// Frames to write, in order.
    pub frames: VecDeque<Bytes>,
    /// Set when the connection must close after writing `frames`, with the
    /// code and reason.
    pub close: Option<(CloseCode, String)>,
}

/// A bounded queue of encoded frames for one connection.
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    /// Wakes everyone waiting in [`Outbox::closed`].
    closing: Notify,
    max_frames: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    bytes: usize,
    close: Option<(CloseCode, String)>,
    /// Set once the writer has taken the close: nothing more is accepted.
    closed: bool,
}

impl Outbox {
    /// An empty outbox with these bounds.
    #[must_use]
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closing: Notify::new(),
            max_frames,
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `frame`.
    ///
    /// # Errors
    ///
    /// [`PushError::Overflow`] when a bound was passed (the connection is
    /// closing with [`CloseCode::SlowConsumer`] from now on);
    /// [`PushError::Closed`] when it was closing already.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.close.is_some() || state.closed {
            return Err(PushError::Closed);
        }
        if state.frames.len() >= self.max_frames || state.bytes + frame.len() > self.max_bytes {
            state.frames = VecDeque::new();
            state.bytes = 0;
            state.close = Some((CloseCode::SlowConsumer, CloseCode::SlowConsumer.reason().to_owned()));
            drop(state);
            self.notify.notify_one();
            self.closing.notify_waiters();
            return Err(PushError::Overflow);
        }
        let was_empty = state.frames.is_empty();
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Asks the writer to flush what is queued, then close with `code`. The
    /// first close wins.
    pub fn close(&self, code: CloseCode, reason: &str) {
        let mut state = self.lock();
        if state.close.is_none() && !state.closed {
            state.close = Some((code, reason.to_owned()));
        }
        drop(state);
        self.notify.notify_one();
        self.closing.notify_waiters();
    }

    /// Resolves once a close was requested (by anyone).
    pub async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }

    /// Whether a close was requested.
    #[must_use]
    pub fn is_closing(&self) -> bool {
        let state = self.lock();
        state.close.is_some() || state.closed
    }

    /// Waits until something is queued or a close is requested, then takes
    /// it all.
    pub async fn take(&self) -> Batch {
        loop {
            {
                let mut state = self.lock();
                if !state.frames.is_empty() || state.close.is_some() {
                    let frames = std::mem::take(&mut state.frames);
                    state.bytes = 0;
                    let close = state.close.take();
                    if close.is_some() {
                        state.closed = true;
                    }
                    return Batch { frames, close };
                }
            }
            self.notify.notified().await;
        }
    }

    /// Frames waiting now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().frames.len()
    }

    /// Whether nothing is waiting.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_come_out_in_order_and_in_one_batch() {
        let outbox = Outbox::new(16, 1024);
        for i in 0..5u8 {
            outbox.push(Bytes::from(vec![i])).expect("push");
        }
        let batch = outbox.take().await;
        assert_eq!(batch.frames.iter().map(|b| b[0]).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
        assert!(batch.close.is_none());
        assert!(outbox.is_empty());
    }

    #[tokio::test]
    async fn overflow_by_count_or_bytes_closes_as_slow_consumer() {
        let outbox = Outbox::new(16, 1 << 20);
        for _ in 0..16 {
            outbox.push(Bytes::from_static(b"x")).expect("push");
        }
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Err(PushError::Overflow));
        assert_eq!(outbox.push(Bytes::from_static(b"x")), Err(PushError::Closed));
        let batch = outbox.take().await;
        assert!(batch.frames.is_empty(), "queued frames are dropped on overflow");
        assert_eq!(batch.close.map(|c| c.0), Some(CloseCode::SlowConsumer));

        let outbox = Outbox::new(16, 10);
        outbox.push(Bytes::from_static(b"12345")).expect("push");
        assert_eq!(outbox.push(Bytes::from_static(b"123456")), Err(PushError::Overflow));
    }

    #[tokio::test]
    async fn close_flushes_queued_frames_first() {
        let outbox = Outbox::new(16, 1024);
        outbox.push(Bytes::from_static(b"a")).expect("push");
        outbox.close(CloseCode::GoingAway, "bye");
        outbox.close(CloseCode::SlowConsumer, "ignored: first close wins");
        let batch = outbox.take().await;
        assert_eq!(batch.frames.len(), 1);
        assert_eq!(batch.close, Some((CloseCode::GoingAway, "bye".into())));
        assert_eq!(outbox.push(Bytes::from_static(b"b")), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn take_waits_for_a_push() {
        let outbox = std::sync::Arc::new(Outbox::new(16, 1024));
        let o = outbox.clone();
        let waiter = tokio::spawn(async move { o.take().await.frames.len() });
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"a")).expect("push");
        assert_eq!(waiter.await.expect("join"), 1);
    }
}
