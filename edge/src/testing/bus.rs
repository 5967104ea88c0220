//! Buses for tests: NATS connections in a subject space of their own, a
//! namespace source standing in for the control plane, and a
//! `nats-server` process a test can stop, pause and restart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_proto::{AppId, SubjectSpace};
use tokio::net::TcpStream;

use super::http_get;
use herald_bus::{Bus, NamespaceSource, NatsOptions, Sink};

/// A random NATS subject space, so tests never see each other's messages.
#[must_use]
pub fn unique_subjects() -> SubjectSpace {
    let n: u64 = rand_u64();
    SubjectSpace::new(&format!("t{n:016x}")).expect("subject space")
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    u64::from_le_bytes(bytes)
}

/// The NATS URL for tests: `HERALD_TEST_NATS_URL` or `nats://127.0.0.1:4222`.
#[must_use]
pub fn nats_url() -> String {
    std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A NATS bus on `subjects`.
pub async fn nats_bus(url: &str, subjects: SubjectSpace) -> Bus {
    Bus::connect_nats(url, subjects, NatsOptions::default()).await.expect("connect to nats")
}

/// Answers namespace requests with the same list for every app, as a
/// control plane would.
pub struct StaticNamespaces(pub Vec<herald_proto::bus::Namespace>);

impl NamespaceSource for StaticNamespaces {
    fn namespaces(
        &self,
        _app: AppId,
    ) -> futures_util::future::BoxFuture<'static, Result<Option<Vec<herald_proto::bus::Namespace>>, String>> {
        let list = self.0.clone();
        Box::pin(async move { Ok(Some(list)) })
    }
}

/// A sink that ignores everything (for a bus handle that only serves).
struct NullSink;

impl Sink for NullSink {
    fn deliver(&self, _: &AppId, _: &herald_proto::ChannelName, _: u64, _: Bytes, _: Option<&herald_bus::Position>) {}
    fn control(&self, _: herald_proto::bus::ControlEvent) {}
}

/// Serves `namespaces` to the edges of `subjects` on NATS at `url`, in
/// place of a control plane; keep the returned handle alive.
pub async fn serve_namespaces(url: &str, subjects: SubjectSpace, namespaces: Vec<herald_proto::bus::Namespace>) -> Bus {
    serve_source(url, subjects, Arc::new(StaticNamespaces(namespaces))).await
}

/// Answers the namespace requests of the edges of `subjects` on NATS at
/// `url` from `source` (apps' namespaces and Pusher settings), in place of
/// a control plane; keep the returned handle alive.
pub async fn serve_source(url: &str, subjects: SubjectSpace, source: Arc<dyn NamespaceSource>) -> Bus {
    let bus = nats_bus(url, subjects).await;
    bus.attach(Arc::new(NullSink)).await.expect("attach");
    bus.serve_namespaces(source).await.expect("serve namespaces");
    bus
}

/// A namespace with the given options.
#[must_use]
pub fn namespace(name: &str, options: herald_proto::bus::NamespaceOptions) -> herald_proto::bus::Namespace {
    herald_proto::bus::Namespace { name: name.to_owned(), options: Some(options) }
}

/// A `nats-server` process of the test's own, for tests that restart or
/// inspect NATS. The binary comes from `HERALD_NATS_SERVER`, `PATH` or
/// `/usr/sbin/nats-server`.
pub struct NatsServer {
    /// Client port.
    pub port: u16,
    /// Monitoring port.
    pub monitor_port: u16,
    store: std::path::PathBuf,
    /// The server's name, to tell it from another server on the port.
    name: String,
    child: Option<std::process::Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn nats_binary() -> String {
    if let Ok(bin) = std::env::var("HERALD_NATS_SERVER") {
        return bin;
    }
    let in_path =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join("nats-server")).find(|p| p.exists()));
    match in_path.flatten() {
        Some(p) => p.display().to_string(),
        None => "/usr/sbin/nats-server".to_owned(),
    }
}

impl NatsServer {
    /// Starts a server with JetStream on free ports and waits until it
    /// accepts connections. A port taken meanwhile by another process (tests
    /// run side by side) is noticed, and the server started again on new
    /// ones: the server that answers must be this one.
    pub async fn start() -> Self {
        let id = rand_u64();
        let store = std::env::temp_dir().join(format!("herald-nats-{id:016x}"));
        let name = format!("herald-test-{id:016x}");
        let mut server = Self { port: 0, monitor_port: 0, store, name, child: None };
        for _ in 0..10 {
            (server.port, server.monitor_port) = (free_port(), free_port());
            if server.port != server.monitor_port && server.spawn().await {
                return server;
            }
            server.kill();
        }
        panic!("nats-server did not start on free ports");
    }

    /// Starts the process; true once this server (known by its name in the
    /// INFO line NATS greets with) answers on `port`, false when it exited
    /// (its ports were taken).
    async fn spawn(&mut self) -> bool {
        use tokio::io::AsyncReadExt as _;
        let child = std::process::Command::new(nats_binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-m", &self.monitor_port.to_string()])
            .args(["-n", &self.name, "-js", "-sd"])
            .arg(&self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server (install it with `apt-get install nats-server`)");
        self.child = Some(child);
        let ours = format!("\"server_name\":\"{}\"", self.name);
        for _ in 0..400 {
            if self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some()) {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await {
                let mut info = vec![0; 4096];
                let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut info)).await;
                if let Ok(Ok(n)) = read
                    && String::from_utf8_lossy(&info[..n]).contains(&ours)
                {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGSTOP): its sockets stay open and take bytes,
    /// but nothing is answered until [`Self::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        let pid = self.child.as_ref().expect("nats is running").id().to_string();
        let status = std::process::Command::new("kill").args([which, &pid]).status().expect("kill");
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Starts the server again on the same ports and store.
    pub async fn restart(&mut self) {
        self.kill();
        assert!(self.spawn().await, "nats-server did not start again on port {}", self.port);
    }

    /// Subscriptions the server holds on subjects under `prefix`, from its
    /// monitoring endpoint.
    pub async fn subscriptions_under(&self, prefix: &str) -> Vec<String> {
        let addr: SocketAddr = ([127, 0, 0, 1], self.monitor_port).into();
        let Some((_, body)) = http_get(addr, "/connz?subs=1").await else { return vec![] };
        let body = body.trim_start_matches(|c: char| c != '{');
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let mut subs = vec![];
        for conn in json["connections"].as_array().into_iter().flatten() {
            for s in conn["subscriptions_list"].as_array().into_iter().flatten() {
                if let Some(s) = s.as_str().filter(|s| s.starts_with(prefix)) {
                    subs.push(s.to_owned());
                }
            }
        }
        subs
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
