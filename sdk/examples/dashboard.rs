//! A live dashboard feed: a backend publishes metrics through the REST API
//! once a second; a dashboard subscribes over WebSocket and renders them.
//!
//! Start a local Herald with `herald dev`, export the variables it prints
//! (`HERALD_EDGE_URL`, `HERALD_API_URL`, `HERALD_APP_ID`, `HERALD_API_KEY`),
//! then:
//!
//! ```sh
//! cargo run -p herald-sdk --example dashboard           # 30 ticks
//! cargo run -p herald-sdk --example dashboard -- 300    # 300 ticks
//! ```
//!
//! It shows the pattern for state that must not silently go stale: when a
//! reconnect could not recover the messages missed meanwhile
//! (`Resubscribed { recovered: false }`), the dashboard refetches a
//! snapshot from the backend instead of trusting its last frame.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_sdk::{BatchMessage, Client, Publisher, SubscriptionEvent, TokenRequest};
use serde_json::{Value, json};

fn env(name: &str) -> Result<String, Box<dyn std::error::Error>> {
    std::env::var(name).map_err(|_| format!("{name} is not set; run `herald dev` and export what it prints").into())
}

/// The backend's view: the latest metrics, which it can also serve as a
/// snapshot (here in-process; in a real app, an HTTP endpoint).
#[derive(Default)]
struct Backend {
    latest: Mutex<Value>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ticks: u64 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(30);
    let publisher = Publisher::new(env("HERALD_API_URL")?, env("HERALD_APP_ID")?, env("HERALD_API_KEY")?)?;
    let backend = Arc::new(Backend::default());

    // The dashboard: a read-only token for the `dashboard` namespace.
    let tokens =
        publisher.token_provider(TokenRequest::new("dashboard-1").allow("dashboard:*", ["subscribe", "history"]));
    let client = Client::builder(env("HERALD_EDGE_URL")?).token_provider(tokens).connect().await?;
    let mut feed = client.subscribe("dashboard:metrics").await?;
    let mut alerts = client.subscribe("dashboard:alerts").await?;

    // The backend: one metrics message a second, and an alert when the
    // load is high, both in one batch request.
    let producer = {
        let (publisher, backend) = (publisher.clone(), backend.clone());
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            for tick in 0..ticks {
                interval.tick().await;
                let load = 0.5 + 0.45 * ((tick as f64) / 5.0).sin();
                let metrics = json!({"tick": tick, "load": (load * 100.0).round() / 100.0, "rps": 1000 + tick * 7});
                *backend.latest.lock().unwrap_or_else(|e| e.into_inner()) = metrics.clone();
                let mut batch = vec![BatchMessage::new("dashboard:metrics", metrics).name("metrics")];
                if load > 0.9 {
                    batch.push(BatchMessage::new("dashboard:alerts", json!({"tick": tick, "alert": "load above 90%"})));
                }
                match publisher.publish_batch(batch).await {
                    Ok(results) => {
                        for r in results.into_iter().filter_map(Result::err) {
                            eprintln!("backend: a message was refused: {r}");
                        }
                    }
                    Err(e) => eprintln!("backend: publish failed: {e}"),
                }
            }
        })
    };

    let mut shown = 0;
    while shown < ticks {
        tokio::select! {
            event = feed.next_event() => match event {
                Some(SubscriptionEvent::Message(m)) => {
                    let metrics: Value = serde_json::from_slice(&m.data).unwrap_or(Value::Null);
                    let load = metrics["load"].as_f64().unwrap_or(0.0);
                    let bar = "#".repeat((load * 40.0) as usize);
                    let tick = metrics["tick"].as_u64().unwrap_or(0);
                    println!("tick {tick:>4}  load {load:>4.2} {bar:<40}  rps {}", metrics["rps"]);
                    shown += 1;
                }
                Some(SubscriptionEvent::Resubscribed { recovered: false }) => {
                    let snapshot = backend.latest.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    println!("(reconnected without the missed updates; snapshot: {snapshot})");
                }
                Some(SubscriptionEvent::Lagged { dropped }) => println!("(skipped {dropped} updates: rendering too slowly)"),
                Some(SubscriptionEvent::Ended(e)) => return Err(e.into()),
                Some(_) => {}
                None => break,
            },
            Some(alert) = alerts.next_message() => {
                println!("ALERT {}", alert.text().unwrap_or("<binary>"));
            }
        }
    }
    producer.abort();
    client.close().await;
    Ok(())
}
