//! `herald dev`'s Pusher address: one address for both halves of Pusher
//! mode, as Pusher's clients and server libraries expect one host.
//!
//! A connection is routed by the path of its first request: `/app/…`
//! (pusher-js's WebSocket) goes to the edge, anything else (`/apps/…`, the
//! Pusher HTTP API) to the control plane; from then on its bytes are relayed
//! both ways unchanged. In a deployment an Ingress does the same routing
//! (see the Helm chart); the edge and the control plane serve their halves
//! on their own addresses too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Longest first request line read before routing.
const MAX_REQUEST_LINE: usize = 8 * 1024;

/// How long a new connection may take to send its request line.
const REQUEST_LINE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most connections relayed at once (each holds two sockets); past it new
/// connections wait in the listen queue.
const MAX_RELAYED: usize = 4096;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Half {
    Edge,
    Api,
}

/// The half that serves a request whose head starts with `head`; `None`
/// while its request line is incomplete.
fn route(head: &[u8]) -> Option<Half> {
    let end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = &head[..end];
    let path = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
    Some(if path.starts_with(b"/app/") { Half::Edge } else { Half::Api })
}

/// Accepts on `listener` until `shutdown`, relaying each connection to the
/// edge at `edge` or the API at `api`.
pub async fn serve(
    listener: TcpListener,
    edge: SocketAddr,
    api: SocketAddr,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_RELAYED));
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    if let Err(e) = relay(stream, edge, api).await {
                        tracing::debug!(error = %e, "pusher address: connection ended");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "pusher address: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn relay(mut client: TcpStream, edge: SocketAddr, api: SocketAddr) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let mut head = Vec::with_capacity(1024);
    let half = tokio::time::timeout(REQUEST_LINE_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        loop {
            if let Some(half) = route(&head) {
                return Ok::<_, std::io::Error>(Some(half));
            }
            if head.len() >= MAX_REQUEST_LINE {
                return Ok(None);
            }
            let n = client.read(&mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            head.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request line"))??;
    let Some(half) = half else {
        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").await;
        return Ok(());
    };
    let mut upstream = TcpStream::connect(if half == Half::Edge { edge } else { api }).await?;
    let _ = upstream.set_nodelay(true);
    upstream.write_all(&head).await?;
    drop(head);
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_the_first_request_path() {
        assert_eq!(route(b"GET /app/demo?protocol=7 HTTP/1.1\r\nHost: x\r\n"), Some(Half::Edge));
        assert_eq!(route(b"POST /apps/demo/events HTTP/1.1\r\n"), Some(Half::Api));
        assert_eq!(route(b"GET /apps/demo/channels HTTP/1.1\r\n"), Some(Half::Api));
        assert_eq!(route(b"GET /healthz HTTP/1.1\r\n"), Some(Half::Api));
        assert_eq!(route(b"garbage\r\n"), Some(Half::Api));
        assert_eq!(route(b"GET /app/demo HTTP/1.1"), None, "incomplete line");
    }
}
