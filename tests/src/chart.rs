//! The Helm chart run against the binary: `helm/herald/ci/pods.py` renders
//! the chart and says what the kubelet would run (command line, resolved
//! environment, mounted files, ports remapped to free ones, probes); this
//! module runs that with the `herald` under test — pre-install hook Jobs to
//! completion first, then every Deployment's and StatefulSet's containers —
//! checks each probe answers as the manifest expects within its own budget,
//! and stops everything with SIGTERM, expecting a clean exit within the
//! pod's grace period.
//!
//! Everything that differs comes back as one error naming the workload, the
//! container, what was expected and the process's last output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// Longest wait for anything, whatever a manifest allows: a Job to finish,
/// a probe to pass, a process to exit.
const CAP: Duration = Duration::from_secs(120);
/// How often probes are retried: faster than the kubelet, inside the same
/// budget.
const POLL: Duration = Duration::from_millis(250);
/// The environment every container starts from (the image's).
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What pods.py prints.
#[derive(Debug, Deserialize)]
pub struct Plan {
    pub variant: String,
    pub outside_secrets: Vec<String>,
    pub services: BTreeMap<String, BTreeMap<String, u16>>,
    pub workloads: Vec<Workload>,
}

#[derive(Debug, Deserialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
    pub pod: String,
    pub pre_install_hook: bool,
    pub deadline_seconds: Option<u64>,
    pub grace_seconds: u64,
    pub containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
pub struct Container {
    pub name: String,
    pub init: bool,
    pub argv: Vec<String>,
    pub command_line: String,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
    pub ports: Vec<Port>,
    pub mounts: BTreeMap<String, PathBuf>,
    pub read_only_root: bool,
    pub probes: Vec<Probe>,
}

impl Container {
    /// Files the process wrote in its root outside its volumes, which a
    /// read-only root filesystem would have refused.
    fn written_outside_volumes(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut stack = vec![self.cwd.clone()];
        while let Some(dir) = stack.pop() {
            if self.mounts.values().any(|m| dir.starts_with(m)) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if !self.mounts.values().any(|m| path.starts_with(m)) {
                    found.push(path);
                }
            }
        }
        found
    }
}

#[derive(Debug, Deserialize)]
pub struct Port {
    pub name: String,
    pub container_port: u16,
    pub host_port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(rename = "kind")]
    pub kind: String,
    #[serde(rename = "type")]
    pub probe_type: String,
    pub initial_delay_seconds: u64,
    pub period_seconds: u64,
    pub timeout_seconds: u64,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    pub port: Option<u16>,
    pub path: Option<String>,
    pub scheme: Option<String>,
    pub service: Option<String>,
    pub argv: Option<Vec<String>>,
}

impl Probe {
    /// How long the kubelet would give this probe before acting on it.
    fn budget(&self) -> Duration {
        let secs = self.initial_delay_seconds
            + self.period_seconds * u64::from(self.failure_threshold.max(1))
            + self.timeout_seconds;
        Duration::from_secs(secs).min(CAP)
    }

    fn describe(&self) -> String {
        match self.probe_type.as_str() {
            "http" => format!(
                "{} httpGet {} :{}{}",
                self.kind,
                self.scheme.as_deref().unwrap_or("HTTP"),
                self.port.unwrap_or(0),
                self.path.as_deref().unwrap_or("/")
            ),
            "grpc" => format!("{} grpc health :{} service {:?}", self.kind, self.port.unwrap_or(0), self.service),
            "tcp" => format!("{} tcpSocket :{}", self.kind, self.port.unwrap_or(0)),
            other => format!("{} {other} {:?}", self.kind, self.argv),
        }
    }
}

/// The inputs of one run.
pub struct Inputs<'a> {
    pub python: &'a Path,
    pub values: &'a str,
    pub database_url: &'a str,
    pub nats_url: &'a str,
    pub subject_prefix: &'a str,
    pub workdir: &'a Path,
}

/// The interpreter with the chart tools installed (`.ci/helm-tools.sh`,
/// shared with `.ci/helm.sh`), or `None` when there is no python3 at all.
pub fn python_with_tools() -> Result<Option<PathBuf>> {
    if Command::new("python3").arg("--version").output().is_err() {
        return Ok(None);
    }
    let out = Command::new("bash")
        .arg(repo_root().join(".ci/helm-tools.sh"))
        .stdin(Stdio::null())
        .output()
        .context("running .ci/helm-tools.sh")?;
    if !out.status.success() {
        bail!("installing the chart tools failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
    if path.is_empty() {
        bail!(".ci/helm-tools.sh printed no interpreter");
    }
    Ok(Some(PathBuf::from(path)))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Renders the chart with `inputs` and returns what its pods would run.
/// Writes a self-signed certificate for the edge's TLS Secret into the
/// work directory first.
pub fn plan(inputs: &Inputs<'_>) -> Result<Plan> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    std::fs::create_dir_all(inputs.workdir)?;
    let (cert_path, key_path) = (inputs.workdir.join("tls.crt"), inputs.workdir.join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem())?;
    let herald = crate::herald_bin()?;
    let out = Command::new(inputs.python)
        .arg(repo_root().join("helm/herald/ci/pods.py"))
        .args(["--values", inputs.values, "--database-url", inputs.database_url])
        .args(["--nats-url", inputs.nats_url, "--subject-prefix", inputs.subject_prefix])
        .arg("--herald")
        .arg(&herald)
        .arg("--tls-cert")
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&key_path)
        .arg("--workdir")
        .arg(inputs.workdir)
        .stdin(Stdio::null())
        .output()
        .context("running pods.py")?;
    if !out.status.success() {
        bail!("pods.py {}: {}", inputs.values, String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("pods.py printed no plan")
}

/// A container's process; killed on drop.
struct Running {
    what: String,
    log: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Running {
    fn start(workload: &Workload, c: &Container, logs: &Path) -> Result<Self> {
        let what = format!("{} {}, container {}", workload.kind, workload.name, c.name);
        let log = logs.join(format!("{}-{}.log", workload.name, c.name));
        let out = std::fs::File::create(&log)?;
        let (program, args) = c.argv.split_first().with_context(|| format!("{what}: empty command line"))?;
        std::fs::create_dir_all(&c.cwd)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", BASE_PATH)
            .env("HOSTNAME", &workload.pod)
            .env("HOME", &c.cwd)
            .envs(&c.env)
            .current_dir(&c.cwd)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd.spawn().with_context(|| format!("{what}: starting {}", c.command_line))?;
        Ok(Self { what, log, child: Mutex::new(Some(child)) })
    }

    fn exited(&self) -> Result<Option<ExitStatus>> {
        let mut child = self.child.lock().map_err(|_| anyhow::anyhow!("{}: poisoned", self.what))?;
        match child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("{}: already reaped", self.what),
        }
    }

    async fn wait(&self, limit: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited()? {
                return Ok(Some(status));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn terminate(&self) -> Result<()> {
        let pid = self
            .child
            .lock()
            .map_err(|_| anyhow::anyhow!("{}: poisoned", self.what))?
            .as_ref()
            .map(Child::id)
            .context("no process")?;
        let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(())
    }

    /// The process's last lines of output, for failure messages.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(15);
        let mut out = String::new();
        for line in &lines[start..] {
            let _ = writeln!(out, "    | {line}");
        }
        if out.is_empty() { "    | (no output)\n".to_owned() } else { out }
    }

    fn fail(&self, what: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{}: {what}\n  its last output ({}):\n{}", self.what, self.log.display(), self.tail())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.get_mut().ok().and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs a container to completion, expecting exit 0 within `limit`.
async fn run_to_completion(workload: &Workload, c: &Container, logs: &Path, limit: Duration) -> Result<()> {
    let run = Running::start(workload, c, logs)?;
    match run.wait(limit).await? {
        Some(status) if status.success() => read_only_root_kept(c, &run),
        Some(status) => Err(run.fail(format!("`{}` exited with {status}, expected 0", c.command_line))),
        None => Err(run.fail(format!("`{}` did not finish within {limit:?}", c.command_line))),
    }
}

/// With `readOnlyRootFilesystem`, a container that wrote outside its
/// volumes would have failed in the cluster.
fn read_only_root_kept(c: &Container, run: &Running) -> Result<()> {
    let written = if c.read_only_root { c.written_outside_volumes() } else { Vec::new() };
    if written.is_empty() {
        return Ok(());
    }
    Err(run.fail(format!(
        "wrote {written:?} although its root filesystem is read-only (readOnlyRootFilesystem): in a cluster this fails"
    )))
}

/// What a run did, for the test's report.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: Vec<String>,
}

/// Runs `plan`: hook Jobs, then the workloads; probes; SIGTERM. Returns
/// what happened, or the first difference from what the manifests expect.
pub async fn run(plan: &Plan, logs: &Path, tls_root: &Path) -> Result<Report> {
    let mut report = Report::default();
    let prober = Prober::new(tls_root)?;
    let job_limit = |w: &Workload| w.deadline_seconds.map_or(CAP, |s| Duration::from_secs(s).min(CAP));

    // Helm: pre-install hooks by weight (pods.py sorted them), each to completion.
    for w in plan.workloads.iter().filter(|w| w.pre_install_hook) {
        if w.kind != "Job" {
            bail!("{} {}: a pre-install hook that is not a Job", w.kind, w.name);
        }
        for c in &w.containers {
            let started = Instant::now();
            run_to_completion(w, c, logs, job_limit(w)).await?;
            report.lines.push(format!(
                "hook {} {}: `{}` exited 0 in {:?}",
                w.kind,
                w.name,
                c.command_line,
                started.elapsed()
            ));
        }
    }

    // Then everything else at once, init containers first within a pod.
    let mut long_running = Vec::new();
    let mut jobs = Vec::new();
    for w in plan.workloads.iter().filter(|w| !w.pre_install_hook) {
        for c in w.containers.iter().filter(|c| c.init) {
            run_to_completion(w, c, logs, CAP).await?;
            report.lines.push(format!("init {} {}/{}: exited 0", w.kind, w.name, c.name));
        }
        for c in w.containers.iter().filter(|c| !c.init) {
            let running = Running::start(w, c, logs)?;
            if w.kind == "Job" { jobs.push((w, c, running)) } else { long_running.push((w, c, running)) }
        }
    }

    // Every probe answers within its budget: startup first, then the others.
    let checks = long_running.iter().map(|(w, c, running)| {
        let prober = &prober;
        async move {
            let started = Instant::now();
            let mut order: Vec<&Probe> = c.probes.iter().filter(|p| p.kind == "startupProbe").collect();
            order.extend(c.probes.iter().filter(|p| p.kind != "startupProbe"));
            let mut passed = Vec::new();
            for probe in order {
                prober.until_passes(probe, running, c).await?;
                passed.push(probe.kind.as_str());
            }
            let ports: Vec<String> =
                c.ports.iter().map(|p| format!("{}:{}→{}", p.name, p.container_port, p.host_port)).collect();
            Ok::<_, anyhow::Error>(format!(
                "{} {}/{} `{}` ports [{}]: {} passed in {:?}",
                w.kind,
                w.name,
                c.name,
                c.command_line,
                ports.join(", "),
                if passed.is_empty() { "no probes".to_owned() } else { passed.join(", ") },
                started.elapsed()
            ))
        }
    });
    for line in futures_util::future::try_join_all(checks).await? {
        report.lines.push(line);
    }
    for (w, c, running) in &jobs {
        let limit = job_limit(w);
        match running.wait(limit).await? {
            Some(status) if status.success() => {
                read_only_root_kept(c, running)?;
                report.lines.push(format!("Job {}/{}: exited 0", w.name, c.name));
            }
            Some(status) => return Err(running.fail(format!("exited with {status}, expected 0"))),
            None => return Err(running.fail(format!("did not finish within {limit:?}"))),
        }
    }

    // Stop: SIGTERM, and a clean exit within the pod's grace period.
    for (_, _, running) in &long_running {
        running.terminate()?;
    }
    for (w, c, running) in &long_running {
        let grace = Duration::from_secs(w.grace_seconds).min(CAP);
        match running.wait(grace).await? {
            Some(status) if status.success() => read_only_root_kept(c, running)?,
            Some(status) => return Err(running.fail(format!("exited with {status} after SIGTERM, expected 0"))),
            None => {
                return Err(running.fail(format!(
                    "still running {grace:?} after SIGTERM (terminationGracePeriodSeconds); the kubelet would kill it"
                )));
            }
        }
    }
    report.lines.push(format!("all {} long-running containers exited 0 on SIGTERM", long_running.len()));
    Ok(report)
}

/// Answers probes like the kubelet: HTTP(S) GET 200–399, gRPC health
/// SERVING, a TCP connect, or a command exiting 0.
struct Prober {
    tls: tokio_rustls::TlsConnector,
}

impl Prober {
    fn new(tls_root: &Path) -> Result<Self> {
        let pem = std::fs::read_to_string(tls_root)?;
        let der = pem_to_der(&pem)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(der))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { tls: tokio_rustls::TlsConnector::from(Arc::new(config)) })
    }

    /// Retries `probe` until it passes `successThreshold` times in a row,
    /// within the budget the manifest gives it.
    async fn until_passes(&self, probe: &Probe, running: &Running, c: &Container) -> Result<()> {
        let budget = probe.budget();
        let deadline = Instant::now() + budget;
        let mut successes = 0;
        let mut last = String::from("never tried");
        loop {
            let timeout = Duration::from_secs(probe.timeout_seconds.max(1));
            match tokio::time::timeout(timeout, self.once(probe, c)).await {
                Ok(Ok(())) => {
                    successes += 1;
                    if successes >= probe.success_threshold.max(1) {
                        return Ok(());
                    }
                }
                Ok(Err(e)) => {
                    successes = 0;
                    last = format!("{e:#}");
                }
                Err(_) => {
                    successes = 0;
                    last = format!("no answer within {timeout:?}");
                }
            }
            if let Some(status) = running.exited()? {
                return Err(running.fail(format!("exited with {status} before its {} passed", probe.describe())));
            }
            if Instant::now() > deadline {
                return Err(running.fail(format!(
                    "{} did not pass within {budget:?} (the manifest's budget); last answer: {last}",
                    probe.describe()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn once(&self, probe: &Probe, c: &Container) -> Result<()> {
        let port = probe.port.unwrap_or(0);
        match probe.probe_type.as_str() {
            "http" => {
                let path = probe.path.as_deref().unwrap_or("/");
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let status = if probe.scheme.as_deref() == Some("HTTPS") {
                    let name = rustls::pki_types::ServerName::try_from("localhost")?;
                    http_status(self.tls.connect(name, tcp).await?, path).await?
                } else {
                    http_status(tcp, path).await?
                };
                if (200..400).contains(&status) { Ok(()) } else { bail!("HTTP {status}") }
            }
            "grpc" => grpc_health(port, probe.service.as_deref().unwrap_or("")).await,
            "tcp" => {
                tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                Ok(())
            }
            "exec" => {
                let argv = probe.argv.as_deref().unwrap_or_default();
                let (program, args) = argv.split_first().context("empty exec probe")?;
                let status = tokio::process::Command::new(program)
                    .args(args)
                    .env_clear()
                    .env("PATH", BASE_PATH)
                    .envs(&c.env)
                    .current_dir(&c.cwd)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .status()
                    .await?;
                if status.success() { Ok(()) } else { bail!("exited with {status}") }
            }
            other => bail!("unknown probe type {other}"),
        }
    }
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(body)?)
}

/// `GET path` over `stream`; the status code.
async fn http_status<S>(mut stream: S, path: &str) -> Result<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kube-probe/1.33\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("no HTTP status in {text:?}"))
}

/// `grpc.health.v1.Health/Check` over h2c: passes on `SERVING`.
async fn grpc_health(port: u16, service: &str) -> Result<()> {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await?;
    let driver = tokio::spawn(conn);
    // HealthCheckRequest { service = 1 }, in a gRPC frame.
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        message.push(u8::try_from(service.len()).context("service name too long")?);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len())?.to_be_bytes());
    frame.extend_from_slice(&message);
    let request = hyper::Request::post(format!("http://127.0.0.1:{port}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(frame)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let collected = response.into_body().collect().await?;
    driver.abort();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body = collected.to_bytes();
    let grpc_status = trailers.get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("none");
    if status != 200 || grpc_status != "0" {
        bail!("HTTP {status}, grpc-status {grpc_status}");
    }
    // HealthCheckResponse { status = 1 (SERVING) } after the 5-byte header.
    match body.get(5..) {
        Some([0x08, 0x01]) => Ok(()),
        other => bail!("not SERVING: {other:?}"),
    }
}
