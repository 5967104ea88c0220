//! End to end: `herald webhooks …` against the real `herald` binary as a
//! control plane on PostgreSQL — an endpoint's life from the command line,
//! its secret printed only on creation and rotation, and the server's
//! refusals passed on.

use anyhow::{Context, Result};
use herald_tests::*;

const ALL_EVENTS: &str =
    "events=channel_occupied,channel_vacated,member_added,member_removed,client_event,subscription_count,cache_miss";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_managed_with_the_cli() -> Result<()> {
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start(&db, &nats_url(), &unique_prefix()).await?;
    let env = [("HERALD_API_URL", cp.url()), ("HERALD_ADMIN_TOKEN", cp.admin_token.clone())];
    let app = cli(&["apps", "create", "hooks"], &env)?;

    // Created with every event type by default; the id, then the secret.
    let out = cli(&["webhooks", "create", &app, "--url", "https://8.8.8.8/hook", "--prefix", "presence-"], &env)?;
    let mut lines = out.lines();
    let id = lines.next().context("id line")?.to_owned();
    let secret = lines.next().context("secret line")?.to_owned();
    assert!(id.starts_with("wh_"), "{out}");
    assert!(secret.starts_with("whsec_"), "{out}");

    let listed = cli(&["webhooks", "list", &app], &env)?;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let fields: Vec<&str> = listed.split('\t').collect();
    assert_eq!(&fields[..4], [id.as_str(), "active", "herald", "https://8.8.8.8/hook"], "{listed}");
    assert_eq!(&fields[4..], [ALL_EVENTS, "prefix=presence-", "dropped=0"], "{listed}");
    assert!(!listed.contains(&secret), "the secret is shown once");
    assert_eq!(cli(&["webhooks", "get", &app, &id], &env)?, listed);

    let out = cli(
        &["webhooks", "update", &app, &id, "--events", "member_added,member_removed", "--no-filter", "--disable"],
        &env,
    )?;
    assert!(out.starts_with(&id), "{out}");
    for part in ["\tdisabled\t", "events=member_added,member_removed", "all-channels", "reason=disabled by an operator"]
    {
        assert!(out.contains(part), "{part} missing from {out}");
    }
    let out = cli(&["webhooks", "update", &app, &id, "--enable", "--namespace", "chat"], &env)?;
    assert!(out.contains("\tactive\t") && out.contains("namespace=chat"), "{out}");

    let rotated = cli(&["webhooks", "rotate-secret", &app, &id, "--overlap", "1h"], &env)?;
    assert!(rotated.starts_with("whsec_") && rotated != secret, "{rotated}");
    assert!(!cli(&["webhooks", "list", &app], &env)?.contains(&rotated));

    // The server's refusals reach the operator, naming the field.
    let refused = cli(&["webhooks", "create", &app, "--url", "http://127.0.0.1:8080/x"], &env)
        .expect_err("a loopback URL")
        .to_string();
    assert!(refused.contains("`url`"), "{refused}");
    let refused = cli(&["webhooks", "create", &app, "--url", "https://8.8.8.8/", "--events", "nope"], &env)
        .expect_err("an unknown event type")
        .to_string();
    assert!(refused.contains("`events`"), "{refused}");
    let refused = cli(&["webhooks", "create", &app, "--url", "https://8.8.8.8/", "--format", "pusher"], &env)
        .expect_err("Pusher format without Pusher mode")
        .to_string();
    assert!(refused.contains("Pusher mode"), "{refused}");
    cli(&["webhooks", "create", &app, "--url", "https://8.8.8.8/", "--prefix", "a", "--namespace", "b"], &env)
        .expect_err("two filters");
    assert_eq!(cli(&["webhooks", "list", &app], &env)?.lines().count(), 1, "nothing refused was stored");

    cli(&["webhooks", "delete", &app, &id], &env)?;
    assert_eq!(cli(&["webhooks", "list", &app], &env)?, "");
    let refused = cli(&["webhooks", "get", &app, &id], &env).expect_err("deleted").to_string();
    assert!(refused.contains("no webhook endpoint"), "{refused}");
    Ok(())
}
