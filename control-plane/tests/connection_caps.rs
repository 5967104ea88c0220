//! The per-IP connection cap (`max_connections_per_ip`): past it, a new
//! connection from that address is closed at once, and counted; a closed
//! connection frees its place; loopback clients are exempt. The server
//! listens on every interface and is reached through this host's own
//! outward address, so the connections come from a non-loopback IP.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use common::http1::read_status;
use common::{Http, NATS_URL, Server, TestDb};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

/// The address this host sends from to the outside (no packet is sent).
fn outward_ip() -> Result<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    socket.connect("198.51.100.1:9").context("this test needs a route off the host")?;
    let ip = socket.local_addr()?.ip();
    anyhow::ensure!(!ip.is_loopback() && !ip.is_unspecified(), "no outward address: {ip}");
    Ok(ip)
}

/// A connection to `at` that got an answer to `GET /healthz` and stays
/// open (keep-alive); `None` when it was closed without one.
async fn served(at: SocketAddr) -> Result<Option<TcpStream>> {
    let mut conn = TcpStream::connect(at).await?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n").await?;
    let status = read_status(&mut conn, Duration::from_secs(10)).await?;
    match status {
        Some(s) if s.starts_with("HTTP/1.1 200") => Ok(Some(conn)),
        None => Ok(None),
        Some(other) => anyhow::bail!("unexpected answer {other}"),
    }
}

#[tokio::test]
async fn connections_past_the_per_ip_cap_are_closed_and_loopback_is_exempt() -> Result<()> {
    let outward = outward_ip()?;
    let subjects = common::subjects();
    let bus = common::nats_backplane_at(NATS_URL, subjects.clone()).await?;
    let server =
        Server::start_on("0.0.0.0:0".parse()?, TestDb::sqlite(), bus, subjects, |c| c.max_connections_per_ip = 2)
            .await?;
    let port = server.addr.port();
    let far = SocketAddr::new(outward, port);
    let local = SocketAddr::from(([127, 0, 0, 1], port));

    // Two connections from the outward address are served and stay open;
    // the third is closed without an answer.
    let mut held = Vec::new();
    for i in 0..2 {
        held.push(served(far).await?.with_context(|| format!("connection {i} within the cap"))?);
    }
    assert!(served(far).await?.is_none(), "the third connection from one IP is closed");

    // Loopback is exempt.
    let mut local_held = Vec::new();
    for i in 0..5 {
        local_held.push(served(local).await?.with_context(|| format!("loopback connection {i}"))?);
    }

    // A closed connection frees its place (once the server sees it gone).
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        if let Some(conn) = served(far).await? {
            break Some(conn);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(again.is_some(), "a place freed by a closed connection is taken again");

    let metrics = Http::default().get(&format!("http://{local}/metrics"), None).await?;
    let page = String::from_utf8_lossy(&metrics.body);
    assert!(page.contains(r#"herald_cp_connections_closed_total{limit="max_connections_per_ip"}"#), "{page}");
    server.stop().await;
    Ok(())
}
