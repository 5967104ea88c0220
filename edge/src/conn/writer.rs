//! The writer: owns the socket's write half and drains the connection's
//! [`Outbox`]: everything waiting goes out in one write (pings too: the hub
//! queues them, see [`Hub::ping_loop`](crate::hub::Hub::ping_loop)), and a
//! requested close is written as the outbox's closer builds it (for
//! Herald's protocol a `Disconnect` frame plus a close frame) before the
//! socket is shut.
//!
//! The writer is not a task of its own: [`Writing`] polls it inside the
//! connection's task, beside whatever the connection awaits (reading,
//! handling a request), so an idle connection is one task. It is a future
//! written by hand ([`WriteLoop`]); what it awaits only when the socket does
//! not take a write at once (the rest of a write or a flush, within the
//! write timeout, and the close) is boxed: an idle writer holds its socket
//! half, its outbox and an empty batch.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use herald_proto::CloseCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::outbox::{Batch, Outbox};

/// A connection's writer, polled by the connection's own task: beside the
/// work the connection awaits ([`Writing::beside`]), then to its end
/// ([`Writing::finish`]) or not any more ([`Writing::abort`]).
pub(crate) struct Writing<'a> {
    /// `None` once the writer ended (or was let go of).
    writer: Option<Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>>,
}

impl<'a> Writing<'a> {
    /// Runs `writer` (a [`write_loop`]) beside the connection's work.
    pub(crate) fn new(writer: Pin<&'a mut (dyn Future<Output = ()> + Send + 'a)>) -> Self {
        Self { writer: Some(writer) }
    }

    fn poll_writer(&mut self, cx: &mut Context<'_>) {
        if let Some(writer) = &mut self.writer
            && writer.as_mut().poll(cx).is_ready()
        {
            self.writer = None;
        }
    }

    /// Runs `work` to its end, the writer polled beside it (first, on every
    /// wake-up of the task: what `work` queued goes out before it goes on).
    /// `work` is pinned by the caller: its state is kept once, in the
    /// caller's future, not moved into this one too.
    pub(crate) async fn beside<F: Future>(&mut self, mut work: Pin<&mut F>) -> F::Output {
        std::future::poll_fn(|cx| {
            self.poll_writer(cx);
            work.as_mut().poll(cx)
        })
        .await
    }

    /// Runs the writer to its end: after the close it was asked for, or at
    /// once when the socket is gone; within the write timeout either way.
    pub(crate) async fn finish(&mut self) {
        std::future::poll_fn(|cx| {
            self.poll_writer(cx);
            if self.writer.is_none() { Poll::Ready(()) } else { Poll::Pending }
        })
        .await;
    }

    /// Stops the writer where it is: it is never polled again.
    pub(crate) fn abort(&mut self) {
        self.writer = None;
    }
}

/// The writer: drains the outbox into the socket and writes the close
/// (pings are queued by the hub like any frame).
///
/// A future written by hand rather than an `async fn`: it holds the socket
/// half, the outbox, the batch it takes into and, only while the socket
/// does not take a write at once or the close is being written, a boxed
/// wait; an `async fn` would keep room for the locals of every await
/// point in every idle connection.
pub(crate) struct WriteLoop<W> {
    /// The socket's write half; `None` while the boxed wait holds it, and
    /// once the writer ended.
    wr: Option<W>,
    outbox: Arc<Outbox>,
    write_timeout: Duration,
    /// Counted locally and added to the shared counter in steps: an atomic
    /// add per write costs more than the rest of the bookkeeping. The rest
    /// is added when the writer ends, also when it is let go of midway.
    uncounted: FramesOut,
    /// Taken into again and again: its queue's room is reused from one
    /// batch to the next while frames keep coming (see `Outbox::take_into`).
    batch: Batch,
    /// The rest of a write, or the close, awaited within the write timeout.
    waiting: Option<Waiting<W>>,
}

/// A boxed wait of the writer: it gives the socket half back when done.
type Waiting<W> = Pin<Box<dyn Future<Output = (W, Waited)> + Send>>;

/// How a boxed wait ended.
enum Waited {
    /// The rest of a batch was written: the writer goes on.
    Written,
    /// The socket failed or timed out, or the close was written: the
    /// writer ends.
    Done,
}

/// The writer of a connection whose socket's write half is `wr`.
pub(crate) fn write_loop<W: AsyncWrite + Unpin + Send + 'static>(
    wr: W,
    outbox: Arc<Outbox>,
    write_timeout: Duration,
) -> WriteLoop<W> {
    WriteLoop { wr: Some(wr), outbox, write_timeout, uncounted: FramesOut(0), batch: Batch::default(), waiting: None }
}

impl<W: AsyncWrite + Unpin + Send + 'static> WriteLoop<W> {
    /// After a batch was written: the close, when the batch carried it.
    fn close_if_asked(&mut self, mut wr: W) {
        match self.batch.close.take() {
            Some((code, reason)) => {
                let (outbox, limit) = (self.outbox.clone(), self.write_timeout);
                self.waiting = Some(Box::pin(async move {
                    write_close(&mut wr, &outbox, code, &reason, limit).await;
                    (wr, Waited::Done)
                }));
            }
            None => self.wr = Some(wr),
        }
    }

    /// Ends the writer: whatever happened, nothing more is accepted for
    /// this connection.
    fn end(&mut self) -> Poll<()> {
        self.wr = None;
        self.uncounted.add();
        self.outbox.close(CloseCode::Normal, "closed");
        Poll::Ready(())
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> Future for WriteLoop<W> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if let Some(waiting) = &mut this.waiting {
                let (wr, waited) = std::task::ready!(waiting.as_mut().poll(cx));
                this.waiting = None;
                match waited {
                    Waited::Written => this.close_if_asked(wr),
                    Waited::Done => return this.end(),
                }
                continue;
            }
            let Some(wr) = this.wr.as_mut() else { return Poll::Ready(()) };
            std::task::ready!(this.outbox.poll_take_into(cx, &mut this.batch));
            let n = this.batch.len();
            // One attempt without waiting first: the socket almost always
            // takes it all at once; only what it does not take waits (boxed).
            let written = try_write_batch(cx, wr, &this.batch);
            this.batch.first = None;
            this.batch.rest.clear();
            this.uncounted.0 += n as u64;
            if this.uncounted.0 >= 64 {
                this.uncounted.add();
            }
            match written {
                Written::Failed => return this.end(),
                Written::All => {
                    if let Some(wr) = this.wr.take() {
                        this.close_if_asked(wr);
                    }
                }
                Written::Partly(rest) => {
                    if let Some(mut wr) = this.wr.take() {
                        let limit = this.write_timeout;
                        this.waiting = Some(Box::pin(async move {
                            let waited = match write_rest(&mut wr, rest, limit).await {
                                Ok(()) => Waited::Written,
                                Err(()) => Waited::Done,
                            };
                            (wr, waited)
                        }));
                    }
                }
            }
        }
    }
}

/// Writes the close the outbox's closer builds, then shuts the socket;
/// within `limit` each.
async fn write_close<W: AsyncWrite + Unpin>(
    wr: &mut W,
    outbox: &Outbox,
    code: CloseCode,
    reason: &str,
    limit: Duration,
) {
    let tail = outbox.close_tail(code, reason);
    let _ = write_all(wr, &tail, limit).await;
    let _ = tokio::time::timeout(limit, wr.shutdown()).await;
}

thread_local! {
    /// Where a writer on this thread lays a batch's frames end to end for
    /// one write: one buffer per worker thread, warm in its cache, instead
    /// of one per connection.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest scratch buffer kept between batches.
const SCRATCH_KEPT: usize = 1 << 20;

/// What one attempt to write a batch did.
enum Written {
    /// The socket took it all (and flushed).
    All,
    /// The socket took part of it: the rest (perhaps none, when only the
    /// flush is left) is to be written and flushed within the timeout.
    Partly(bytes::Bytes),
    /// The socket failed.
    Failed,
}

/// Writes a batch with one write call, without waiting: a lone frame as it
/// is; several frames copied end to end into this thread's scratch buffer
/// first (a few bytes each; the kernel then copies one piece, not one per
/// frame); then flushes once (TLS may keep records the socket did not take
/// yet; a no-op for plain TCP). What the socket did not take at once is
/// given back (a lone frame's rest is a slice of it, a batch's is copied
/// out): a connection keeps no buffer of its own between batches.
fn try_write_batch<W: AsyncWrite + Unpin>(cx: &mut Context<'_>, wr: &mut W, batch: &Batch) -> Written {
    let Some(first) = &batch.first else { return try_flush(cx, wr) };
    if batch.rest.is_empty() {
        return match Pin::new(&mut *wr).poll_write(cx, first) {
            Poll::Ready(Ok(0) | Err(_)) => Written::Failed,
            Poll::Ready(Ok(n)) if n == first.len() => try_flush(cx, wr),
            Poll::Ready(Ok(n)) => Written::Partly(first.slice(n..)),
            Poll::Pending => Written::Partly(first.clone()),
        };
    }
    let written = SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        for frame in batch.frames() {
            buf.extend_from_slice(frame);
        }
        let written = match Pin::new(&mut *wr).poll_write(cx, buf) {
            Poll::Ready(Ok(0) | Err(_)) => Written::Failed,
            Poll::Ready(Ok(n)) if n == buf.len() => Written::All,
            Poll::Ready(Ok(n)) => Written::Partly(bytes::Bytes::copy_from_slice(&buf[n..])),
            Poll::Pending => Written::Partly(bytes::Bytes::copy_from_slice(buf)),
        };
        if buf.capacity() > SCRATCH_KEPT {
            *buf = Vec::new();
        }
        written
    });
    match written {
        Written::All => try_flush(cx, wr),
        other => other,
    }
}

/// Flushes once, without waiting.
fn try_flush<W: AsyncWrite + Unpin>(cx: &mut Context<'_>, wr: &mut W) -> Written {
    match Pin::new(&mut *wr).poll_flush(cx) {
        Poll::Ready(Ok(())) => Written::All,
        Poll::Ready(Err(_)) => Written::Failed,
        Poll::Pending => Written::Partly(bytes::Bytes::new()),
    }
}

/// Writes `rest` within `limit`, then flushes within `limit`.
async fn write_rest<W: AsyncWrite + Unpin>(wr: &mut W, rest: bytes::Bytes, limit: Duration) -> Result<(), ()> {
    write_all(wr, &rest, limit).await?;
    match tokio::time::timeout(limit, wr.flush()).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Frames a writer wrote but did not add to `herald_frames_out_total` yet;
/// added when dropped. The counter is looked up when added to, not held:
/// every idle connection would hold its handle.
struct FramesOut(u64);

impl FramesOut {
    fn add(&mut self) {
        let n = std::mem::take(&mut self.0);
        if n > 0 {
            metrics::counter!("herald_frames_out_total").increment(n);
        }
    }
}

impl Drop for FramesOut {
    fn drop(&mut self) {
        self.add();
    }
}

async fn write_all<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], limit: Duration) -> Result<(), ()> {
    match tokio::time::timeout(limit, wr.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Pushes that write straight to the socket and the writer taking over
    /// what the socket could not take keep every byte in order, with a
    /// reader far slower than the pushes (so the socket fills up many times).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_through_and_the_writer_keep_frames_in_order() {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (sock, _) = listener.accept().await.expect("accept");
        let sock = Arc::new(sock);
        let outbox = Arc::new(Outbox::new(1 << 20, 1 << 30));
        outbox.write_through(sock.clone());
        let writer = tokio::spawn(write_loop(crate::tcp::SharedWrite(sock), outbox.clone(), Duration::from_secs(10)));
        // 4,000 frames of 1..=4 KiB, each filled with its own number.
        let frames: Vec<Bytes> =
            (0..4_000u32).map(|i| Bytes::from(vec![(i % 251) as u8; 1024 * (1 + (i as usize % 4))])).collect();
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let pusher = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut queued = false;
                for (i, frame) in frames.into_iter().enumerate() {
                    outbox.push_or_write(frame).expect("push");
                    queued |= !outbox.is_empty();
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                queued
            })
        };
        let mut got = Vec::with_capacity(expected.len());
        let mut chunk = vec![0u8; 3000];
        while got.len() < expected.len() {
            let n = peer.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed after {} bytes", got.len());
            got.extend_from_slice(&chunk[..n]);
            if got.len() % 7 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        assert!(pusher.await.expect("pusher"), "the socket filled up and frames were queued");
        assert!(got == expected, "bytes out of order");
        outbox.close(CloseCode::Normal, "done");
        writer.await.expect("writer");
    }
}
