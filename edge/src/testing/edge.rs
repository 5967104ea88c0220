//! An edge started on `127.0.0.1:0` for tests, and a minimal HTTP GET for
//! its routes.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::EdgeConfig;
use herald_bus::Bus;

/// An edge running on `127.0.0.1:0`.
pub struct TestEdge {
    /// Its address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), crate::EdgeError>>>,
}

impl TestEdge {
    /// Starts an edge with `config` on `bus` and waits until it is
    /// ready (keys loaded, bus connected).
    pub async fn start(config: EdgeConfig, bus: Bus) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind edge");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::run(listener, config, bus, async move {
            let _ = stopped.await;
        }));
        let edge = Self { addr, stop: Some(stop), task: Some(task) };
        edge.wait_ready().await;
        edge
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        for _ in 0..200 {
            if http_get(self.addr, "/readyz").await.is_some_and(|(status, _)| status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("edge at {} did not become ready", self.addr);
    }

    /// `ws://…/v1/connect`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, herald_proto::CONNECT_PATH)
    }

    /// Triggers the drain and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<(), crate::EdgeError> {
        self.begin_shutdown();
        self.join().await
    }

    /// Triggers the drain without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `run` to return.
    pub async fn join(&mut self) -> Result<(), crate::EdgeError> {
        match self.task.take() {
            Some(task) => task.await.expect("edge task"),
            None => Ok(()),
        }
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A minimal HTTP/1.1 GET; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}
