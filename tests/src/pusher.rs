//! The Pusher-compatibility harness: `herald dev` with its Pusher endpoint
//! on a port chosen by the OS, and the scripts of `tests/pusher/` — the
//! official, unmodified Pusher libraries (pusher-js, and the `pusher` server
//! library for Node and for Python) — run against it.
//!
//! This module owns starting that `herald dev`, reading its Pusher
//! credentials from `dev.json`, and running one script with them under a
//! deadline; the scripts own what they check. `bash tests/pusher/install.sh`
//! installs what they need, and a test fails (never skips) when it has not
//! been run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{Process, random_suffix};

/// How long `herald dev` may take to write its Pusher fields to `dev.json`
/// and to accept connections on its Pusher port.
const STARTUP: Duration = Duration::from_secs(60);

/// `tests/pusher`: the scripts, their package files and their installs.
#[must_use]
pub fn pusher_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pusher")
}

/// What to do when the scripts' libraries are missing.
const INSTALL_HINT: &str = "run `bash tests/pusher/install.sh` (from the repository's root) to install the \
     official Pusher libraries (npm, PyPI) and Chromium";

/// Fails unless `tests/pusher/node_modules` (and, for Python scripts,
/// `tests/pusher/.python`) is there.
pub fn require_installed(python: bool) -> Result<()> {
    let dir = pusher_dir();
    if !dir.join("node_modules").is_dir() {
        bail!("{} is missing: {INSTALL_HINT}", dir.join("node_modules").display());
    }
    if python && !dir.join(".python").is_dir() {
        bail!("{} is missing: {INSTALL_HINT}", dir.join(".python").display());
    }
    Ok(())
}

/// The Pusher endpoint of a running `herald dev`, as `dev.json` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherEndpoint {
    pub host: String,
    pub port: u16,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    /// `http://host:port`.
    pub url: String,
}

impl PusherEndpoint {
    /// The Pusher fields of `dev.json`'s text; `None` while they are not
    /// all there (or the file is half written).
    #[must_use]
    pub fn from_dev_json(text: &str) -> Option<Self> {
        let state: serde_json::Value = serde_json::from_str(text).ok()?;
        // A number or a string: the scripts take either as text.
        let text_of = |key: &str| match &state[key] {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let host = text_of("pusher_host")?;
        let port = text_of("pusher_port")?.parse().ok()?;
        let url = text_of("pusher_url").unwrap_or_else(|| format!("http://{host}:{port}"));
        Some(Self {
            app_id: text_of("pusher_app_id")?,
            key: text_of("pusher_key")?,
            secret: text_of("pusher_secret")?,
            host,
            port,
            url,
        })
    }

    /// The environment the scripts read.
    #[must_use]
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PUSHER_HOST", self.host.clone()),
            ("PUSHER_PORT", self.port.to_string()),
            ("PUSHER_APP_ID", self.app_id.clone()),
            ("PUSHER_KEY", self.key.clone()),
            ("PUSHER_SECRET", self.secret.clone()),
        ]
    }
}

/// A `herald dev` with its Pusher endpoint, in a data folder of its own;
/// killed, and its folder removed, on drop.
pub struct PusherDev {
    pub endpoint: PusherEndpoint,
    pub data_dir: PathBuf,
    process: Process,
}

impl PusherDev {
    /// Starts `herald dev` on ports chosen by the OS and waits until
    /// `dev.json` holds the Pusher fields and the Pusher port accepts
    /// connections.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`Self::start`], with more arguments to `herald dev`.
    pub async fn start_with(extra: &[&str]) -> Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("herald-pusher-{}", random_suffix()));
        let dir = data_dir.display().to_string();
        let owned = crate::dev_args(&dir);
        let mut args: Vec<&str> = owned.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        let mut process = Process::start("dev", &args, &[])?;
        match wait_for_endpoint(&mut process, &data_dir).await {
            Ok(endpoint) => Ok(Self { endpoint, data_dir, process }),
            Err(e) => {
                process.kill();
                let _ = std::fs::remove_dir_all(&data_dir);
                Err(e)
            }
        }
    }
}

async fn wait_for_endpoint(process: &mut Process, data_dir: &Path) -> Result<PusherEndpoint> {
    let path = data_dir.join("dev.json");
    let deadline = tokio::time::Instant::now() + STARTUP;
    let endpoint = loop {
        if let Some(endpoint) = std::fs::read_to_string(&path).ok().as_deref().and_then(PusherEndpoint::from_dev_json) {
            break endpoint;
        }
        fail_if_exited(process, "before writing the Pusher fields to dev.json")?;
        if tokio::time::Instant::now() > deadline {
            let now = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("unreadable: {e}"));
            bail!(
                "herald dev did not write pusher_host, pusher_port, pusher_app_id, pusher_key and pusher_secret \
                 to {} within {STARTUP:?}; it holds: {now}",
                path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let addr = format!("{}:{}", endpoint.host, endpoint.port);
    loop {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            return Ok(endpoint);
        }
        fail_if_exited(process, "before accepting connections on its Pusher port")?;
        if tokio::time::Instant::now() > deadline {
            bail!("herald dev's Pusher endpoint {addr} (from dev.json) accepted no connection within {STARTUP:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fail_if_exited(process: &mut Process, when: &str) -> Result<()> {
    if let Some(status) = process.exit_status()? {
        bail!("herald dev exited ({status}) {when}; HERALD_E2E_LOGS=1 shows its log (does it take --pusher-addr?)");
    }
    Ok(())
}

impl Drop for PusherDev {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A script of `tests/pusher/`.
#[derive(Debug, Clone, Copy)]
pub enum Script<'a> {
    /// `js/NAME.mjs`, run with node.
    Node(&'a str),
    /// `py/NAME.py`, run with python3 and the libraries of `.python`.
    Python(&'a str),
}

impl Script<'_> {
    fn path(&self) -> PathBuf {
        match self {
            Script::Node(name) => pusher_dir().join("js").join(format!("{name}.mjs")),
            Script::Python(name) => pusher_dir().join("py").join(format!("{name}.py")),
        }
    }
}

/// Runs `script` against `endpoint` from `tests/pusher`; fails with the
/// script's output when it exits non-zero or outlives `deadline`.
pub async fn run_script(endpoint: &PusherEndpoint, script: Script<'_>, deadline: Duration) -> Result<()> {
    run_script_with(endpoint, script, deadline, &[]).await.map(|_| ())
}

/// Like [`run_script`], with more environment; returns what the script
/// printed on stdout.
pub async fn run_script_with(
    endpoint: &PusherEndpoint,
    script: Script<'_>,
    deadline: Duration,
    env: &[(&str, String)],
) -> Result<String> {
    let dir = pusher_dir();
    require_installed(matches!(script, Script::Python(_)))?;
    let path = script.path();
    if !path.is_file() {
        bail!("no such script: {}", path.display());
    }
    let (program, hint) = match script {
        Script::Node(_) => ("node", "Node.js 18 or later"),
        Script::Python(_) => ("python3", "Python 3"),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(&path)
        .current_dir(&dir)
        .envs(endpoint.env())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Script::Python(_) = script {
        cmd.env("PYTHONPATH", dir.join(".python"));
    }
    let child = cmd.spawn().with_context(|| format!("starting {program} (is {hint} installed?)"))?;
    let shown = relative(&path);
    let output = tokio::time::timeout(deadline, child.wait_with_output())
        .await
        .with_context(|| format!("{shown} did not finish within {deadline:?} (it was killed)"))?
        .with_context(|| format!("waiting for {shown}"))?;
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !output.status.success() {
        bail!("{shown} failed ({}):\n--- stdout\n{stdout}--- stderr\n{stderr}", output.status);
    }
    print!("{stdout}");
    eprint!("{stderr}");
    Ok(stdout.into_owned())
}

fn relative(path: &Path) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = root.parent().unwrap_or(&root);
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

/// Starts a `herald dev` of its own and runs `script` against it.
pub async fn run(script: Script<'_>, deadline: Duration) -> Result<()> {
    // Checked before building and starting herald: the likeliest failure
    // on a fresh machine, and the fastest to report.
    require_installed(matches!(script, Script::Python(_)))?;
    let dev = PusherDev::start().await?;
    run_script(&dev.endpoint, script, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_json_gives_the_endpoint_once_every_field_is_there() {
        assert_eq!(PusherEndpoint::from_dev_json(r#"{"api_url": "127.0.0.1:1"}"#), None);
        assert_eq!(PusherEndpoint::from_dev_json(r#"{"pusher_host": "127.0.0."#), None);
        let full = r#"{"pusher_host": "127.0.0.1", "pusher_port": 4567, "pusher_app_id": "1",
                       "pusher_key": "k", "pusher_secret": "s", "pusher_url": "http://127.0.0.1:4567"}"#;
        let endpoint = PusherEndpoint::from_dev_json(full).expect("every field is there");
        assert_eq!((endpoint.host.as_str(), endpoint.port, endpoint.app_id.as_str()), ("127.0.0.1", 4567, "1"));
        assert_eq!(endpoint.url, "http://127.0.0.1:4567");
        let port_as_text = full.replace("4567,", r#""4567","#);
        assert_eq!(PusherEndpoint::from_dev_json(&port_as_text).map(|e| e.port), Some(4567));
        let app_id_as_number = full.replace(r#""pusher_app_id": "1""#, r#""pusher_app_id": 1"#);
        assert_eq!(PusherEndpoint::from_dev_json(&app_id_as_number).map(|e| e.app_id), Some("1".to_owned()));
        assert_eq!(PusherEndpoint::from_dev_json(&full.replace(r#""s""#, r#""""#)), None);
    }
}
