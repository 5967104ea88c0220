//! A connection's bounded send queue.
//!
//! The hub and the connection's reader push encoded frames; the
//! connection's writer takes everything waiting at once and writes it in one
//! go. Bounded in frames and bytes: a push past either bound drops the
//! queued frames, marks the connection as a slow consumer and wakes the
//! writer to close it. A push never blocks and never waits on the writer, so
//! one stalled client cannot hold up the hub.
//!
//! On plain TCP, a frame for an idle outbox (nothing queued, the writer
//! not in the middle of a write) can be written to the socket by the pusher
//! itself, without waiting: one task wake-up and one trip through the
//! writer less per delivery. What the socket does not take at once is
//! queued for the writer, in order. [`Outbox::push_or_write`] does it in
//! one step; the hub, which must not write to a socket under its shard
//! lock, queues with [`Outbox::push_deferred`] under the lock and calls
//! [`Outbox::write_deferred`] after releasing it. The hub does so for
//! messages on a channel that is not busy; under a steady stream it queues,
//! so that writers coalesce.
//!
//! An idle outbox owns no buffer, and a lone frame needs none: the first
//! frame waiting sits in place, and a queue is allocated only behind it (and
//! released when the writer drains it). The writer is woken through an
//! atomic waker, without a lock.

use std::cell::Cell;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::task::Poll;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use herald_proto::CloseCode;
use tokio::net::TcpStream;
use tokio::sync::Notify;

thread_local! {
    /// Frames this thread wrote straight to sockets, not yet added to the
    /// shared counter.
    static WRITTEN: Cell<u64> = const { Cell::new(0) };
}

/// Counts a frame written by a push (the writer counts its own): added to
/// `herald_frames_out_total` in steps of 64 per thread, as an atomic add per
/// frame would cost more than the write's bookkeeping; the rest at
/// [`flush_written`].
fn count_written() {
    WRITTEN.with(|n| {
        let v = n.get() + 1;
        if v >= 64 {
            metrics::counter!("herald_frames_out_total").increment(v);
            n.set(0);
        } else {
            n.set(v);
        }
    });
}

/// Adds the frames this thread's pushes wrote and did not count yet: the
/// hub calls it once per fan-out, so the counter is exact after each.
pub fn flush_written() {
    WRITTEN.with(|n| {
        let v = n.replace(0);
        if v > 0 {
            metrics::counter!("herald_frames_out_total").increment(v);
        }
    });
}

/// The most queue room (frames) an outbox keeps for the next batch while
/// frames keep coming; a larger queue is let go of once written.
const MAX_KEPT_ROOM: usize = 512;

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
    /// The first frame to write, if any.
    pub first: Option<Bytes>,
    /// The frames after it, in order.
    pub rest: VecDeque<Bytes>,
    /// Set when the connection must close after writing the frames, with
    /// the code and reason.
    pub close: Option<(CloseCode, String)>,
}

impl Batch {
    /// How many frames.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// Whether there is no frame.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// The frames, in order.
    pub fn frames(&self) -> impl Iterator<Item = &Bytes> {
        self.first.iter().chain(self.rest.iter())
    }
}

/// A bounded queue of encoded frames for one connection.
pub struct Outbox {
    state: Mutex<State>,
    /// The writer, waiting in [`Outbox::take`].
    writer: AtomicWaker,
    /// Wakes everyone waiting in [`Outbox::closed`] (on a close) and in
    /// [`Outbox::push_paced`] (on a close, or when the writer took what
    /// was queued); both look again at the state when woken.
    signal: Notify,
    /// The bounds, in `u32`: every connection holds them.
    max_frames: u32,
    max_bytes: u32,
    /// Writes the end of the connection in its protocol's words.
    closer: Closer,
}

/// Builds what the writer sends last when a connection closes with a code
/// and reason: the close frame, after whatever notice the connection's
/// protocol gives first.
pub type Closer = fn(CloseCode, &str) -> Bytes;

/// The close frame alone.
fn plain_close(code: CloseCode, reason: &str) -> Bytes {
    crate::ws::close_frame(code.number(), reason)
}

#[derive(Default)]
struct State {
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
    /// Bytes queued: at most `max_bytes`, so a `u32`.
    bytes: u32,
    /// The close requested, kept once the writer took it (for who reports
    /// it afterwards). Boxed: rare, and every connection holds the state.
    close: Option<Box<(CloseCode, String)>>,
    /// Set once the writer has taken the close: nothing more is accepted.
    closed: bool,
    /// The writer holds frames it is writing.
    busy: bool,
    /// A paced push waits for the writer to take the queue.
    pacing: bool,
    /// The socket, when frames may be written straight to it.
    direct: Option<Arc<TcpStream>>,
}

impl State {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }
}

impl Outbox {
    /// An empty outbox with these bounds.
    #[must_use]
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            writer: AtomicWaker::new(),
            signal: Notify::new(),
            max_frames: u32::try_from(max_frames).unwrap_or(u32::MAX),
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
            closer: plain_close,
        }
    }

    /// The same outbox, closing with what `closer` builds (a protocol's
    /// notice, then the close frame) instead of the close frame alone.
    #[must_use]
    pub fn with_closer(mut self, closer: Closer) -> Self {
        self.closer = closer;
        self
    }

    /// What the writer sends last when the connection closes with `code`.
    #[must_use]
    pub fn close_tail(&self, code: CloseCode, reason: &str) -> Bytes {
        (self.closer)(code, reason)
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
        self.push_inner(frame, false)
    }

    /// As [`Self::push`], but when nothing is queued and the writer is idle
    /// (and the connection is plain TCP), writes the frame to the socket at
    /// once; only what the socket does not take is queued.
    ///
    /// # Errors
    ///
    /// As [`Self::push`].
    pub fn push_or_write(&self, frame: Bytes) -> Result<(), PushError> {
        self.push_inner(frame, true)
    }

    fn push_inner(&self, mut frame: Bytes, write: bool) -> Result<(), PushError> {
        let mut state = self.lock();
        if state.close.is_some() || state.closed {
            return Err(PushError::Closed);
        }
        if write
            && state.first.is_none()
            && !state.busy
            && let Some(sock) = &state.direct
        {
            match sock.try_write(&frame) {
                Ok(n) if n == frame.len() => {
                    count_written();
                    return Ok(());
                }
                Ok(n) => frame = frame.slice(n..),
                Err(_) => {}
            }
        }
        let was_empty = state.first.is_none();
        if !self.enqueue(&mut state, frame) {
            return Err(self.overflow(state));
        }
        drop(state);
        if was_empty {
            self.writer.wake();
        }
        Ok(())
    }

    /// Queues `frame` after what waits, unless that would pass a bound:
    /// `false` then, and nothing is queued.
    fn enqueue(&self, state: &mut State, frame: Bytes) -> bool {
        let bytes = state.bytes as usize + frame.len();
        if state.len() >= self.max_frames as usize || bytes > self.max_bytes as usize {
            return false;
        }
        // At most `max_bytes`: checked above.
        state.bytes = bytes as u32;
        if state.first.is_none() {
            state.first = Some(frame);
        } else {
            state.rest.push_back(frame);
        }
        true
    }

    /// Drops what is queued and closes the connection as a slow consumer.
    fn overflow(&self, mut state: std::sync::MutexGuard<'_, State>) -> PushError {
        state.first = None;
        state.rest = VecDeque::new();
        state.bytes = 0;
        state.close = Some(Box::new((CloseCode::SlowConsumer, CloseCode::SlowConsumer.reason().to_owned())));
        drop(state);
        self.writer.wake();
        self.signal.notify_waiters();
        PushError::Overflow
    }

    /// Queues `frames` in order, as many [`Self::push`]es would, under one
    /// lock and with one wake-up of the writer: the hub's burst of a busy
    /// channel. Returns how many frames and bytes were queued.
    ///
    /// # Errors
    ///
    /// As [`Self::push`]: on [`PushError::Overflow`] nothing of what was
    /// queued stays (the connection is closing).
    pub fn push_many<'a>(&self, frames: impl Iterator<Item = &'a Bytes>) -> Result<(usize, usize), PushError> {
        let mut state = self.lock();
        if state.close.is_some() || state.closed {
            return Err(PushError::Closed);
        }
        let was_empty = state.first.is_none();
        let (mut n, mut queued) = (0, 0);
        for frame in frames {
            if !self.enqueue(&mut state, frame.clone()) {
                return Err(self.overflow(state));
            }
            n += 1;
            queued += frame.len();
        }
        drop(state);
        if was_empty && n > 0 {
            self.writer.wake();
        }
        Ok((n, queued))
    }

    /// As [`Self::push`], but for a frame that may be written straight to
    /// the socket without the caller holding a lock of its own meanwhile:
    /// when nothing is queued, the writer is idle and the connection is
    /// plain TCP, the frame is queued *without waking the writer* and
    /// `Ok(true)` says the caller owes a [`Self::write_deferred`] call, soon
    /// and outside its own locks. Otherwise the frame is queued as by
    /// [`Self::push`] and the answer is `Ok(false)`.
    ///
    /// # Errors
    ///
    /// As [`Self::push`].
    pub fn push_deferred(&self, frame: Bytes) -> Result<bool, PushError> {
        let mut state = self.lock();
        if state.close.is_some() || state.closed {
            return Err(PushError::Closed);
        }
        let bytes = state.bytes as usize + frame.len();
        if state.first.is_none() && !state.busy && state.direct.is_some() && bytes <= self.max_bytes as usize {
            // At most `max_bytes`: checked just now.
            state.bytes = bytes as u32;
            state.first = Some(frame);
            return Ok(true);
        }
        drop(state);
        self.push(frame).map(|()| false)
    }

    /// Writes what a [`Self::push_deferred`] queued straight to the socket
    /// when the writer is still idle (what the socket does not take stays
    /// queued), and wakes the writer when anything is left for it.
    pub fn write_deferred(&self) {
        let mut state = self.lock();
        let written = match (&state.direct, &state.first) {
            (Some(sock), Some(first)) if !state.busy && state.close.is_none() && !state.closed => {
                sock.try_write(first).ok().map(|n| (n, first.len()))
            }
            _ => None,
        };
        match written {
            Some((n, len)) if n == len => {
                state.bytes = state.bytes.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
                state.first = state.rest.pop_front();
                count_written();
            }
            Some((n, _)) => {
                state.bytes = state.bytes.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
                state.first = state.first.take().map(|f| f.slice(n..));
            }
            None => {}
        }
        let wake = state.first.is_some() || (state.close.is_some() && !state.closed);
        let room = std::mem::take(&mut state.pacing);
        drop(state);
        if wake {
            self.writer.wake();
        }
        if room {
            self.signal.notify_waiters();
        }
    }

    /// Lets pushes write straight to `sock` while nothing is queued.
    pub fn write_through(&self, sock: Arc<TcpStream>) {
        self.lock().direct = Some(sock);
    }

    /// Asks the writer to flush what is queued, then close with `code`. The
    /// first close wins.
    pub fn close(&self, code: CloseCode, reason: &str) {
        let mut state = self.lock();
        if state.close.is_none() && !state.closed {
            state.close = Some(Box::new((code, reason.to_owned())));
        }
        state.direct = None;
        drop(state);
        self.writer.wake();
        self.signal.notify_waiters();
    }

    /// The close requested (by anyone), with its code and reason; `None`
    /// while none was.
    pub fn close_code(&self) -> Option<(CloseCode, String)> {
        let state = self.lock();
        state.close.as_deref().cloned()
    }

    /// Resolves once a close was requested (by anyone).
    pub async fn closed(&self) {
        loop {
            let notified = self.signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }

    /// As [`Self::closed`], for the connection's own task, which runs the
    /// writer too (see the connection's `Writing`): it waits in no list.
    /// A close wakes the writer, so the task, which then looks again; while
    /// the writer waits on a full socket, the close is seen once the writer
    /// gets on (it writes the close next), within the write timeout.
    pub fn closing(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |_| if self.is_closing() { Poll::Ready(()) } else { Poll::Pending })
    }

    /// As [`Self::push`], once at most half of each bound is taken: a
    /// sender of many frames (a history replay) paces itself to the reader
    /// instead of overflowing the queue. While the queue is fuller it waits
    /// for the writer to take it (a flag the writer reads under the lock it
    /// holds anyway: nothing is added to its path otherwise).
    ///
    /// # Errors
    ///
    /// As [`Self::push`]; [`PushError::Closed`] as soon as the connection
    /// is closing.
    pub async fn push_paced(&self, frame: Bytes) -> Result<(), PushError> {
        loop {
            let notified = self.signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if state.close.is_some() || state.closed {
                    return Err(PushError::Closed);
                }
                if state.len() * 2 <= self.max_frames as usize && state.bytes as usize * 2 <= self.max_bytes as usize {
                    drop(state);
                    return self.push(frame);
                }
                state.pacing = true;
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

    /// Takes everything waiting into `batch` (whose frames were written:
    /// it must hold none), if anything is waiting (or a close). The queues
    /// trade places, so the room `batch` had is where the next frames
    /// queue: under a steady stream no queue is allocated again and again.
    /// When nothing is waiting, both give their room back: an idle
    /// connection holds no queue.
    fn try_take(&self, batch: &mut Batch) -> bool {
        debug_assert!(batch.is_empty() && batch.rest.is_empty());
        let mut state = self.lock();
        if state.first.is_none() && (state.close.is_none() || state.closed) {
            state.busy = false;
            if state.rest.capacity() > 0 {
                state.rest = VecDeque::new();
            }
            drop(state);
            if batch.rest.capacity() > 0 {
                batch.rest = VecDeque::new();
            }
            return false;
        }
        state.busy = true;
        batch.first = state.first.take();
        std::mem::swap(&mut state.rest, &mut batch.rest);
        if state.rest.capacity() > MAX_KEPT_ROOM {
            state.rest = VecDeque::new();
        }
        state.bytes = 0;
        if !state.closed {
            batch.close = state.close.as_deref().cloned();
            state.closed = state.close.is_some();
        }
        let room = std::mem::take(&mut state.pacing);
        drop(state);
        if room {
            self.signal.notify_waiters();
        }
        true
    }

    /// Waits until something is queued or a close is requested, then takes
    /// it all. For the connection's one writer.
    pub async fn take(&self) -> Batch {
        let mut batch = Batch::default();
        self.take_into(&mut batch).await;
        batch
    }

    /// As [`Self::take`], into `batch`, whose frames the writer wrote (it
    /// must hold none): the writer keeps one batch and the queue's room
    /// goes back and forth between it and the outbox.
    pub async fn take_into(&self, batch: &mut Batch) {
        std::future::poll_fn(|cx| self.poll_take_into(cx, batch)).await;
    }

    /// As [`Self::take_into`], polled: for a writer written by hand.
    pub fn poll_take_into(&self, cx: &mut std::task::Context<'_>, batch: &mut Batch) -> Poll<()> {
        if self.try_take(batch) {
            return Poll::Ready(());
        }
        self.writer.register(cx.waker());
        // A push between the first look and the registration woke no one.
        if self.try_take(batch) { Poll::Ready(()) } else { Poll::Pending }
    }

    /// Frames waiting now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().len()
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
        assert_eq!(batch.frames().map(|b| b[0]).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4]);
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
        assert!(batch.is_empty(), "queued frames are dropped on overflow");
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
        assert_eq!(batch.len(), 1);
        assert_eq!(batch.close, Some((CloseCode::GoingAway, "bye".into())));
        assert_eq!(outbox.push(Bytes::from_static(b"b")), Err(PushError::Closed));
    }

    #[tokio::test]
    async fn take_waits_for_a_push() {
        let outbox = std::sync::Arc::new(Outbox::new(16, 1024));
        let o = outbox.clone();
        let waiter = tokio::spawn(async move { o.take().await.len() });
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"a")).expect("push");
        assert_eq!(waiter.await.expect("join"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paced_push_is_woken_by_the_writer_taking_the_queue_not_by_a_timer() {
        let outbox = Arc::new(Outbox::new(4, 1024));
        for i in 0..3u8 {
            outbox.push(Bytes::from(vec![i])).expect("push");
        }
        let start = tokio::time::Instant::now();
        let paced = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.push_paced(Bytes::from_static(&[9])).await }
        });
        tokio::task::yield_now().await;
        assert!(!paced.is_finished(), "three of four frames queued: more than half");
        let batch = outbox.take().await;
        assert_eq!(batch.len(), 3);
        paced.await.expect("task").expect("pushed");
        assert_eq!(tokio::time::Instant::now(), start, "no timer was needed");
        assert_eq!(outbox.take().await.frames().map(|b| b[0]).collect::<Vec<_>>(), vec![9]);
        // A close wakes a paced push too.
        for i in 0..3u8 {
            outbox.push(Bytes::from(vec![i])).expect("push");
        }
        let paced = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.push_paced(Bytes::from_static(&[9])).await }
        });
        tokio::task::yield_now().await;
        outbox.close(CloseCode::Normal, "bye");
        assert_eq!(paced.await.expect("task"), Err(PushError::Closed));
        assert_eq!(tokio::time::Instant::now(), start);
    }
}
