//! `herald dev` as a process: started on ports chosen by the OS in its own
//! data folder, and what its `dev.json` says (API and edge addresses, the
//! demo app, its key, the admin token). Removed with the process on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{Process, random_suffix, wait_ready};

/// Longest wait for `herald dev` to write `dev.json` and become ready.
const STARTUP: Duration = Duration::from_secs(60);

/// A running `herald dev`.
pub struct Dev {
    pub process: Process,
    pub data_dir: PathBuf,
    pub api_addr: SocketAddr,
    pub edge_addr: SocketAddr,
    pub edge_url: String,
    pub app_id: String,
    pub api_key: String,
    pub admin_token: String,
}

impl Dev {
    /// Starts `herald dev` with `env` and waits until its API is ready.
    pub async fn start(env: &[(&str, String)]) -> Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("herald-dev-{}", random_suffix()));
        let dir = data_dir.display().to_string();
        let args = crate::dev_args(&dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut process = Process::start("dev", &args, env)?;
        let path = data_dir.join("dev.json");
        let deadline = tokio::time::Instant::now() + STARTUP;
        let state: serde_json::Value = loop {
            if let Some(v) = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()) {
                break v;
            }
            if let Some(status) = process.exit_status()? {
                bail!("herald dev exited ({status}) before writing {}", path.display());
            }
            if tokio::time::Instant::now() > deadline {
                process.kill();
                bail!("herald dev wrote no {} within {STARTUP:?}", path.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let field = |k: &str| state[k].as_str().map(str::to_owned).with_context(|| format!("dev.json has no {k}"));
        let addr_of = |url: &str| -> Result<SocketAddr> {
            let rest = url.split_once("://").map_or(url, |(_, r)| r);
            rest.split('/').next().unwrap_or(rest).parse().with_context(|| format!("no address in {url}"))
        };
        let edge_url = field("edge_url")?;
        let dev = Self {
            api_addr: addr_of(&field("api_url")?)?,
            edge_addr: addr_of(&edge_url)?,
            edge_url,
            app_id: field("app_id")?,
            api_key: field("api_key")?,
            admin_token: field("admin_token")?,
            data_dir,
            process,
        };
        wait_ready(dev.api_addr, "herald dev's API").await?;
        wait_ready(dev.edge_addr, "herald dev's edge").await?;
        Ok(dev)
    }

    /// The environment the client commands need against this `herald dev`.
    #[must_use]
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HERALD_API_URL", format!("http://{}", self.api_addr)),
            ("HERALD_EDGE_URL", self.edge_url.clone()),
            ("HERALD_APP_ID", self.app_id.clone()),
            ("HERALD_API_KEY", self.api_key.clone()),
            ("HERALD_ADMIN_TOKEN", self.admin_token.clone()),
        ]
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
