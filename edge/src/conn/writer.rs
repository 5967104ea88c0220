//! The writer: owns the socket's write half and drains the connection's
//! [`Outbox`]: everything waiting goes out in one write (pings too: the hub
//! queues them, see [`Hub::ping_loop`](crate::hub::Hub::ping_loop)), and a
//! requested close is written as the outbox's closer builds it (for
//! Herald's protocol a `Disconnect` frame plus a close frame) before the
//! socket is shut.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use herald_proto::CloseCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::outbox::{Batch, Outbox};

/// The writer task: drains the outbox into the socket, pings on the
/// heartbeat interval, and writes the close.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, outbox: Arc<Outbox>, write_timeout: Duration) {
    // Counted locally and added to the shared counter in steps: an atomic
    // add per write costs more than the rest of the bookkeeping. The rest
    // is added when the task ends, also when it is aborted.
    let mut uncounted = FramesOut { counter: metrics::counter!("herald_frames_out_total"), n: 0 };
    // Taken into again and again: its queue's room is reused from one
    // batch to the next while frames keep coming (see `Outbox::take_into`).
    let mut batch = Batch::default();
    loop {
        outbox.take_into(&mut batch).await;
        let n = batch.len();
        let ok = match (&batch.first, batch.rest.is_empty()) {
            (None, _) => true,
            (Some(frame), true) => write_fast(&mut wr, frame, write_timeout).await.is_ok(),
            _ => write_batch(&mut wr, &batch, write_timeout).await.is_ok(),
        };
        batch.first = None;
        batch.rest.clear();
        // TLS may keep records the socket did not take yet: push them out
        // (a no-op for plain TCP).
        let ok = ok && flush_fast(&mut wr, write_timeout).await.is_ok();
        uncounted.n += n as u64;
        if uncounted.n >= 64 {
            uncounted.counter.increment(uncounted.n);
            uncounted.n = 0;
        }
        if !ok {
            break;
        }
        if let Some((code, reason)) = batch.close.take() {
            let tail = outbox.close_tail(code, &reason);
            let _ = write_all(&mut wr, &tail, write_timeout).await;
            let _ = tokio::time::timeout(write_timeout, wr.shutdown()).await;
            break;
        }
    }
    // Whatever happened, nothing more is accepted for this connection.
    outbox.close(CloseCode::Normal, "closed");
}

thread_local! {
    /// Where a writer on this thread lays a batch's frames end to end for
    /// one write: one buffer per worker thread, warm in its cache, instead
    /// of one per connection.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest scratch buffer kept between batches.
const SCRATCH_KEPT: usize = 1 << 20;

/// Writes a batch of several frames with one write call: the frames are
/// copied end to end into this thread's scratch buffer (a few bytes each;
/// the kernel then copies one piece, not one per frame), and written
/// without waiting. Only what the socket does not take at once is copied
/// out, and written within `limit`: a connection keeps no buffer of its own
/// between batches.
async fn write_batch<W: AsyncWrite + Unpin>(wr: &mut W, batch: &Batch, limit: Duration) -> Result<(), ()> {
    use std::task::Poll;
    let rest = std::future::poll_fn(|cx| {
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            for frame in batch.frames() {
                buf.extend_from_slice(frame);
            }
            let rest = match std::pin::Pin::new(&mut *wr).poll_write(cx, buf) {
                Poll::Ready(Ok(0) | Err(_)) => Err(()),
                Poll::Ready(Ok(n)) if n == buf.len() => Ok(None),
                Poll::Ready(Ok(n)) => Ok(Some(buf[n..].to_vec())),
                Poll::Pending => Ok(Some(buf.clone())),
            };
            if buf.capacity() > SCRATCH_KEPT {
                *buf = Vec::new();
            }
            Poll::Ready(rest)
        })
    })
    .await?;
    match rest {
        None => Ok(()),
        Some(rest) => write_all(wr, &rest, limit).await,
    }
}

/// Frames a writer wrote but did not add to `herald_frames_out_total` yet;
/// added when dropped.
struct FramesOut {
    counter: metrics::Counter,
    n: u64,
}

impl Drop for FramesOut {
    fn drop(&mut self) {
        self.counter.increment(self.n);
    }
}

/// Flushes: one attempt without a timer first, then within `limit`.
async fn flush_fast<W: AsyncWrite + Unpin>(wr: &mut W, limit: Duration) -> Result<(), ()> {
    use std::task::Poll;
    let first = std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *wr).poll_flush(cx) {
        Poll::Pending => Poll::Ready(None),
        Poll::Ready(result) => Poll::Ready(Some(result)),
    })
    .await;
    match first {
        Some(Ok(())) => Ok(()),
        Some(Err(_)) => Err(()),
        None => match tokio::time::timeout(limit, wr.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(()),
        },
    }
}

/// Writes `bytes`: one attempt without a timer first (the socket almost
/// always takes it all at once), then the rest within `limit`.
async fn write_fast<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], limit: Duration) -> Result<(), ()> {
    use std::task::Poll;
    let first = std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *wr).poll_write(cx, bytes) {
        Poll::Pending => Poll::Ready(None),
        Poll::Ready(result) => Poll::Ready(Some(result)),
    })
    .await;
    let written = match first {
        Some(Ok(0) | Err(_)) => return Err(()),
        Some(Ok(n)) => n,
        None => 0,
    };
    if written == bytes.len() {
        return Ok(());
    }
    write_all(wr, &bytes[written..], limit).await
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
