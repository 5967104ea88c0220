//! Raw HTTP/1.1 over TCP: a request head written by hand (its body to
//! follow, or never, or a byte a second), the status line or the whole
//! answer read back, a close waited for.

use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The status line of what `conn` answers, or `None` when it closes
/// without answering; waits at most `deadline`.
pub async fn read_status(conn: &mut TcpStream, deadline: Duration) -> Result<Option<String>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if got.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer and no close within {deadline:?}"))?;
    let text = String::from_utf8_lossy(&got);
    Ok(text.lines().next().filter(|l| !l.is_empty()).map(str::to_owned))
}

/// Everything `conn` answers until the server closes it (at most
/// `deadline`), as text.
pub async fn read_to_close(conn: &mut TcpStream, deadline: Duration) -> Result<String> {
    let mut got = Vec::new();
    tokio::time::timeout(deadline, conn.read_to_end(&mut got))
        .await
        .map_err(|_| anyhow::anyhow!("not closed within {deadline:?}"))??;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// Writes `bytes` to `conn` one a second until they are all sent or the
/// server closes the connection; how long the server took to close it
/// from `since` (at most `deadline` after it), or `None`.
pub async fn dribble(conn: TcpStream, bytes: &[u8], since: std::time::Instant, deadline: Duration) -> Option<Duration> {
    let (mut rd, mut wr) = conn.into_split();
    let bytes = bytes.to_vec();
    let writer = tokio::spawn(async move {
        for b in bytes {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(deadline, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok();
    writer.abort();
    closed
}

/// Waits (at most `deadline`) until the server closes `conn`, reading and
/// dropping whatever it sends first.
pub async fn closed(conn: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(deadline, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

pub fn head(path: &str, key: &str, content_length: u64) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: herald\r\nauthorization: Bearer {key}\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n\r\n"
    )
}
