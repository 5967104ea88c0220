//! A client that sends a message over the size limit and is still sending
//! when the edge closes reads the close code 1009, not a reset: after the
//! close frame the edge keeps reading and dropping the client's input
//! (bounded in time and bytes) until the client closes.

use std::time::Duration;

use herald_bus::{Bus, LocalBus};
use herald_edge::EdgeConfig;
use herald_edge::testing::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads frames (after those in `read`, already read) until a close
/// frame; returns its code (`None` when the connection ended without one,
/// e.g. by a reset).
async fn close_code<R: AsyncReadExt + Unpin>(rd: &mut R, read: &[u8]) -> Option<u16> {
    let mut buf = read.to_vec();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        // Parse the frames held so far.
        let mut at = 0;
        while buf.len() >= at + 2 {
            let opcode = buf[at] & 0x0f;
            let (len, header) = match buf[at + 1] & 0x7f {
                126 if buf.len() >= at + 4 => (usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])), 4),
                127 => return None,
                126 => break,
                n => (usize::from(n), 2),
            };
            if buf.len() < at + header + len {
                break;
            }
            if opcode == 0x8 {
                let payload = &buf[at + header..at + header + len];
                return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
            }
            at += header + len;
        }
        buf.drain(..at);
        match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_still_sending_an_oversized_message_reads_1009() {
    let auth = TestAuthority::start().await;
    let config = EdgeConfig { jwks_url: auth.jwks_url(), ..EdgeConfig::default() };
    let edge = TestEdge::start(config, Bus::local(&LocalBus::new())).await;
    let token = auth.token("app1", "alice", "{\"*\":[\"subscribe\",\"publish\"]}");
    // Several times: a reset overtaking the close frame is a race.
    for round in 0..10 {
        let bearer = format!("Bearer {token}");
        let client = RawClient::connect_with(edge.addr, &[("authorization", &bearer)]).await.expect("upgrade");
        let (tcp, read) = client.into_parts();
        let (mut rd, mut wr) = tcp.into_split();
        // A 2 MiB binary message, masked, written in 64 KiB pieces while the
        // edge has long decided to close.
        let writer = tokio::spawn(async move {
            let size: u64 = 2 * 1024 * 1024;
            let mask = [1u8, 2, 3, 4];
            let mut head = vec![0x82, 0x80 | 127];
            head.extend_from_slice(&size.to_be_bytes());
            head.extend_from_slice(&mask);
            if wr.write_all(&head).await.is_err() {
                return;
            }
            let piece: Vec<u8> = (0..64 * 1024).map(|i| mask[i % 4]).collect();
            for _ in 0..32 {
                if wr.write_all(&piece).await.is_err() {
                    return;
                }
            }
        });
        let code = within(Duration::from_secs(10), "the close frame", close_code(&mut rd, &read)).await;
        assert_eq!(code, Some(1009), "round {round}: the close frame, not a reset");
        writer.abort();
    }
}
