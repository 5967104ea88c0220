//! Raw HTTP/1.1 over TCP: a request head written by hand (its body to
//! follow, or never), the status line read back, a close waited for.

use std::time::Duration;

use anyhow::Result;
use tokio::io::AsyncReadExt as _;
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
