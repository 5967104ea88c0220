//! Herald's end-to-end harness: starts the real `herald` binary as processes
//! (control plane on PostgreSQL, edges over NATS, or `herald dev`), drives
//! them through their real surfaces (the CLI, REST, WebSocket via the SDK),
//! and kills or terminates them like an operator or a crash would.
//!
//! Every test gets its own PostgreSQL database, its own NATS subject prefix
//! (or its own nats-server when it restarts NATS) and ports chosen by the OS.

pub mod chart;
pub mod dev;
pub mod pusher;
pub mod webhooks;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::Connection as _;

/// The `herald` binary, built once per test process.
pub fn herald_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--bin", "herald"]).current_dir(&root);
        // What cargo sets for this test process (its package's name, paths…)
        // is not the environment of a plain build: inherited, it makes
        // cargo rebuild a share of the workspace, twice per run.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_for_tests = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_BIN_",
                "CARGO_CRATE_",
                "CARGO_PRIMARY_",
                "CARGO_TARGET_TMPDIR",
            ]
            .iter()
            .any(|prefix| key.starts_with(prefix));
            if set_for_tests {
                build.env_remove(key.as_ref());
            }
        }
        let status = build.status().map_err(|e| format!("running cargo build: {e}"))?;
        if !status.success() {
            return Err("cargo build --bin herald failed".into());
        }
        let bin = target.join("debug").join("herald");
        if bin.exists() { Ok(bin) } else { Err(format!("{} missing after the build", bin.display())) }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// The arguments of `herald dev` in `data_dir` with every address on a
/// port chosen by the OS (API, edge, Pusher).
#[must_use]
pub fn dev_args(data_dir: &str) -> Vec<String> {
    [
        "dev",
        "--data-dir",
        data_dir,
        "--api-addr",
        "127.0.0.1:0",
        "--edge-addr",
        "127.0.0.1:0",
        "--pusher-addr",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A free port on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr")
}

/// A random lowercase alphanumeric string.
pub fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A running `herald` process; killed on drop.
pub struct Process {
    pub name: String,
    child: Option<Child>,
}

impl Process {
    /// Starts `herald ARGS` with `env`.
    pub fn start(name: &str, args: &[&str], env: &[(&str, String)]) -> Result<Self> {
        let mut cmd = Command::new(herald_bin()?);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null());
        if std::env::var_os("HERALD_E2E_LOGS").is_none() {
            cmd.stderr(Stdio::null());
        }
        // Nothing from the test's own environment leaks into the process's
        // configuration.
        for (k, _) in std::env::vars() {
            if k.starts_with("HERALD_EDGE_") || k.starts_with("HERALD_CP_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HERALD_LOG", std::env::var("HERALD_LOG").unwrap_or_else(|_| "info".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Self { name: name.to_owned(), child: Some(child) })
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited, without waiting.
    pub fn exit_status(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("{} was already killed or waited for", self.name),
        }
    }

    /// SIGKILL, and wait for the exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (the drain).
    pub fn terminate(&self) -> Result<()> {
        let pid = self.pid().context("process already gone")?;
        let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(())
    }

    /// Waits up to `limit` for the process to exit; returns whether it
    /// exited successfully.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<bool> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let Some(child) = self.child.as_mut() else { return Ok(true) };
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status.success());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not exit within {limit:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.0 GET: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// A minimal HTTP/1.0 request with a bearer credential and an optional JSON
/// body: status and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no HTTP status")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Waits until `GET addr/readyz` answers 200.
pub async fn wait_ready(addr: SocketAddr, what: &str) -> Result<()> {
    for _ in 0..600 {
        if http_get(addr, "/readyz").await.is_some_and(|(s, _)| s == 200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} at {addr} did not become ready within 30s")
}

/// The PostgreSQL URL tests create their databases from.
#[must_use]
pub fn pg_admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A PostgreSQL database that lives for one test.
pub struct TestDb {
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates `herald_e2e_<random>`.
    pub async fn create() -> Result<Self> {
        let admin = pg_admin_url();
        let name = format!("herald_e2e_{}", random_suffix());
        let mut conn = sqlx::PgConnection::connect(&admin).await.context("connecting to PostgreSQL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await?;
        conn.close().await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b).to_owned();
        Ok(Self { url: format!("{base}/{name}"), name })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (pg_admin_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// A control plane process with its admin token.
pub struct ControlPlaneProc {
    pub addr: SocketAddr,
    pub admin_token: String,
    pub process: Process,
}

impl ControlPlaneProc {
    /// Starts `herald control-plane` on `db`, over NATS at `nats_url` with
    /// `prefix`.
    pub async fn start(db: &TestDb, nats_url: &str, prefix: &str) -> Result<Self> {
        Self::start_with(db, nats_url, prefix, &[]).await
    }

    /// Like [`Self::start`], with more `HERALD_CP_*` settings.
    pub async fn start_with(db: &TestDb, nats_url: &str, prefix: &str, extra: &[(&str, String)]) -> Result<Self> {
        let addr = free_addr();
        let admin_token = format!("adm-{}", random_suffix());
        let mut env = vec![
            ("HERALD_CP_LISTEN", addr.to_string()),
            ("HERALD_CP_DATABASE_URL", db.url.clone()),
            ("HERALD_CP_ADMIN_TOKEN", admin_token.clone()),
            ("HERALD_CP_NATS_URL", nats_url.to_owned()),
            ("HERALD_CP_SUBJECT_PREFIX", prefix.to_owned()),
        ];
        env.extend(extra.iter().cloned());
        let process = Process::start("control-plane", &["control-plane"], &env)?;
        wait_ready(addr, "control plane").await?;
        Ok(Self { addr, admin_token, process })
    }

    /// `http://addr`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates an app and an API key with the CLI; returns (app id, key).
    pub fn create_app_and_key(&self) -> Result<(String, String)> {
        let env = [("HERALD_API_URL", self.url()), ("HERALD_ADMIN_TOKEN", self.admin_token.clone())];
        let app = cli(&["apps", "create", "e2e"], &env)?;
        let mut env = env.to_vec();
        env.push(("HERALD_APP_ID", app.clone()));
        let key = cli(&["keys", "create", "e2e-key"], &env)?;
        Ok((app, key))
    }
}

/// Runs `herald ARGS` to completion; returns its trimmed stdout.
pub fn cli(args: &[&str], env: &[(&str, String)]) -> Result<String> {
    let mut cmd = Command::new(herald_bin()?);
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().with_context(|| format!("running herald {args:?}"))?;
    if !out.status.success() {
        bail!("herald {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// An edge process.
pub struct EdgeProc {
    pub addr: SocketAddr,
    pub process: Process,
}

impl EdgeProc {
    /// Starts `herald edge` over NATS, verifying tokens with `cp`'s JWKS.
    pub async fn start(name: &str, cp: &ControlPlaneProc, nats_url: &str, prefix: &str) -> Result<Self> {
        Self::start_on(name, free_addr(), cp, nats_url, prefix).await
    }

    /// Like [`Self::start`], on a given address (to restart an edge where
    /// it was).
    pub async fn start_on(
        name: &str,
        addr: SocketAddr,
        cp: &ControlPlaneProc,
        nats_url: &str,
        prefix: &str,
    ) -> Result<Self> {
        Self::start_with(name, addr, cp, nats_url, prefix, &[]).await
    }

    /// Like [`Self::start_on`], with more `HERALD_EDGE_*` settings.
    pub async fn start_with(
        name: &str,
        addr: SocketAddr,
        cp: &ControlPlaneProc,
        nats_url: &str,
        prefix: &str,
        extra: &[(&str, String)],
    ) -> Result<Self> {
        let mut env = vec![
            ("HERALD_EDGE_LISTEN", addr.to_string()),
            ("HERALD_EDGE_EDGE_ID", name.to_owned()),
            ("HERALD_EDGE_NATS_URL", nats_url.to_owned()),
            ("HERALD_EDGE_SUBJECT_PREFIX", prefix.to_owned()),
            ("HERALD_EDGE_JWKS_URL", format!("{}/.well-known/jwks.json", cp.url())),
            ("HERALD_EDGE_DRAIN_TIMEOUT", "10s".to_owned()),
            ("HERALD_EDGE_PUBLISH_RATE", "0".to_owned()),
        ];
        env.extend(extra.iter().cloned());
        let process = Process::start(name, &["edge"], &env)?;
        wait_ready(addr, name).await?;
        Ok(Self { addr, process })
    }

    /// `ws://addr/v1/connect`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}{}", self.addr, herald_proto::CONNECT_PATH)
    }
}

/// The NATS URL of the machine's server.
#[must_use]
pub fn nats_url() -> String {
    std::env::var("HERALD_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A fresh subject prefix.
#[must_use]
pub fn unique_prefix() -> String {
    format!("e2e{}", random_suffix())
}
