//! `herald`: the one binary. It only parses the command line and calls into
//! the crates; every behaviour lives in a library crate and is tested there.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Herald: real-time pub/sub over WebSockets.
#[derive(Debug, Parser)]
#[command(name = "herald", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the close-code and error-code tables of the client protocol (Markdown).
    Codes,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Codes => {
            print!("{}", herald_proto::codes::markdown_tables());
            Ok(())
        }
    }
}
