//! A terminal chat room.
//!
//! Start a local Herald with `herald dev`, export the variables it prints
//! (`HERALD_EDGE_URL`, `HERALD_API_URL`, `HERALD_APP_ID`, `HERALD_API_KEY`),
//! then in two terminals:
//!
//! ```sh
//! cargo run -p herald-sdk --example chat -- ada lobby
//! cargo run -p herald-sdk --example chat -- grace lobby
//! ```
//!
//! Type a line and press enter to send it; Ctrl-D leaves. The example plays
//! both sides: it mints its own end-user token through the publisher (a
//! real app would ask its backend), then connects like an app does. Stop
//! the edge and start it again: the room reconnects on its own, and lines
//! typed meanwhile go out after the reconnect.

use std::time::Duration;

use herald_sdk::{Client, ConnectionState, Publisher, SubscriptionEvent, TokenRequest};
use tokio::io::{AsyncBufReadExt, BufReader};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("{name} is not set; run `herald dev` and export what it prints").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "guest".to_owned());
    let room = format!("chat:{}", args.next().unwrap_or_else(|| "lobby".to_owned()));

    let publisher = Publisher::new(env("HERALD_API_URL")?, env("HERALD_APP_ID")?, env("HERALD_API_KEY")?)?;
    let tokens = publisher.token_provider(
        TokenRequest::new(name.clone())
            .allow("chat:*", ["subscribe", "publish"])
            .ttl(Duration::from_secs(600))
            .info(serde_json::json!({ "name": name })),
    );
    let client = Client::builder(env("HERALD_EDGE_URL")?).token_provider(tokens).connect().await?;
    println!("joined {room} as {name}; type to talk, Ctrl-D to leave");

    // Show the connection's ups and downs.
    let mut states = client.state_events();
    tokio::spawn(async move {
        while let Some(state) = states.next().await {
            match state {
                ConnectionState::Disconnected { reason } => eprintln!("* disconnected: {reason}"),
                ConnectionState::Reconnecting { attempt, delay } => {
                    eprintln!("* reconnecting (attempt {attempt}) in {:.1}s", delay.as_secs_f64());
                }
                ConnectionState::Connected(info) => eprintln!("* connected to {}", info.edge_id),
                ConnectionState::Closed { error: Some(e) } => eprintln!("* stopped: {e}"),
                _ => {}
            }
        }
    });

    let mut messages = client.subscribe(&room).await?;
    let printer = tokio::spawn(async move {
        while let Some(event) = messages.next_event().await {
            match event {
                SubscriptionEvent::Message(m) => {
                    let who = m.publisher.as_deref().unwrap_or("server");
                    println!("<{who}> {}", m.text().unwrap_or("<binary>"));
                }
                SubscriptionEvent::Resubscribed { recovered: false } => {
                    println!("* back in the room; lines sent while you were away are not shown");
                }
                SubscriptionEvent::Ended(e) => println!("* left the room: {e}"),
                _ => {}
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // Publishes wait for the acknowledgement; while disconnected they
        // queue and go out after the reconnect.
        let client = client.clone();
        let line = line.to_owned();
        let room = room.clone();
        tokio::spawn(async move {
            if let Err(e) = client.publish(&room, line).await {
                eprintln!("* not sent: {e}");
            }
        });
    }
    client.close().await;
    let _ = printer.await;
    Ok(())
}
