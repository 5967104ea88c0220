//! `herald console link`: a one-time sign-in link of the web console, for
//! operators of a running control plane (admin token).

use anyhow::Result;
use herald_proto::api;

use crate::cli::{ApiArgs, admin, authorized, status};

/// `herald console …`.
#[derive(Debug, clap::Subcommand)]
pub enum ConsoleCommand {
    /// Print a one-time login link of the web console (it signs in once,
    /// within console_link_ttl).
    Link {
        /// The console's base URL when it is not the API URL (console_addr).
        #[arg(long)]
        base_url: Option<String>,
    },
}

/// `herald console …`.
pub async fn console(api: ApiArgs, admin_token: String, command: ConsoleCommand) -> Result<()> {
    let mut client = admin(&api).await?;
    match command {
        ConsoleCommand::Link { base_url } => {
            let request = api::CreateConsoleLinkRequest {};
            let link = client.create_console_link(authorized(request, &admin_token)?).await.map_err(status)?;
            let base = base_url.unwrap_or_else(|| api.api_url.clone());
            println!("{}{}", base.trim_end_matches('/'), link.into_inner().path);
        }
    }
    Ok(())
}
