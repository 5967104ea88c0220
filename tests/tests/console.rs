//! The web console end to end: `herald console link`, and in headless
//! Chromium: `herald dev`, its
//! one-time login link from `dev.json`, and `tests/console/console.mjs`
//! (playwright-core, from `tests/pusher`'s install) driving Debian's
//! Chromium through sign-in, apps, keys, the event creator, the channels
//! pages, the debug console, the overview and the usage page with hostile
//! text, failing on any dialog or script error. This file prepares what
//! the page must find (a namespace with presence and history, a member
//! whose info is hostile on an occupied channel) and does, when the script
//! asks on its standard output, what only a client of the edge can: a
//! member joining (`@@connect`) and leaving (`@@disconnect`), and a
//! connection refused for a forged token (`@@refuse`); it answers each on
//! the script's standard input. Screenshots go to `HERALD_SCREENSHOTS_DIR`
//! when it is set.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use herald_sdk::{Client, Publisher, Subscription, TokenRequest};
use herald_tests::dev::Dev;
use herald_tests::{cli, http_get, http_request, pusher};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

const XSS: &str = "<img src=x onerror=alert(1)>";
/// As hostile as the channel-name rules allow: URL and HTML punctuation.
const CHANNEL: &str = "room:a#b/c+d=e;f,g@h!i~j.k";
/// Where the member the script asks for joins and leaves (a namespace
/// with presence).
const LEAVER_CHANNEL: &str = "room:leaver";
const DEADLINE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_works_in_a_browser_and_keeps_hostile_text_inert() -> Result<()> {
    pusher::require_installed(false)?;
    let dev = Dev::start(&[]).await?;
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dev.data_dir.join("dev.json"))?)?;
    let console_url = state["console_url"].as_str().context("dev.json has no console_url")?.to_owned();
    assert!(console_url.starts_with(&format!("http://{}/console/login/", dev.api_addr)), "{console_url}");

    // A namespace with presence and history, and a member on CHANNEL whose
    // info is hostile.
    let body = r#"{"presence": true, "history_size": 10, "history_ttl": "10m"}"#;
    let path = format!("/v1/apps/{}/namespaces/room", dev.app_id);
    let (status, answer) = http_request(dev.api_addr, "PUT", &path, &dev.admin_token, Some(body)).await?;
    if !(200..300).contains(&status) {
        bail!("PUT {path}: {status} {answer}");
    }
    let publisher = Publisher::new(format!("http://{}", dev.api_addr), &dev.app_id, &dev.api_key)?;
    let request =
        TokenRequest::new("mallory").allow("*", ["subscribe", "presence"]).info(serde_json::json!({"name": XSS}));
    let client =
        Client::builder(dev.edge_url.clone()).token_provider(publisher.token_provider(request)).connect().await?;
    let _sub = client.subscribe(CHANNEL).await?;
    let listed = format!("/v1/apps/{}/channels", dev.app_id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_request(dev.api_addr, "GET", &listed, &dev.admin_token, None).await?;
        if body.contains(CHANNEL) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{CHANNEL} never listed as occupied: {body}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console").join("console.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .env("CONSOLE_URL", &console_url)
        .env("CONSOLE_APP", &dev.app_id)
        .env("CONSOLE_CHANNEL", CHANNEL)
        .env("CONSOLE_LEAVER_CHANNEL", LEAVER_CHANNEL)
        .env("XSS", XSS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting node (Node.js 18 or later)")?;
    let mut answers = child.stdin.take().context("the script's stdin")?;
    let mut lines = BufReader::new(child.stdout.take().context("the script's stdout")?).lines();
    let mut stderr = child.stderr.take().context("the script's stderr")?;
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut leaver: Option<(Client, Subscription)> = None;
    let mut stdout = String::new();
    let run = async {
        while let Some(line) = lines.next_line().await? {
            let answer = match line.as_str() {
                "@@connect" => {
                    // A member whose client id and info are hostile joins.
                    let request = TokenRequest::new(XSS)
                        .allow("*", ["subscribe", "presence"])
                        .info(serde_json::json!({"name": XSS}));
                    let client = Client::builder(dev.edge_url.clone())
                        .token_provider(publisher.token_provider(request))
                        .connect()
                        .await?;
                    let sub = client.subscribe(LEAVER_CHANNEL).await?;
                    leaver = Some((client, sub));
                    "connected"
                }
                "@@disconnect" => {
                    let (client, sub) = leaver.take().context("@@disconnect before @@connect")?;
                    drop(sub);
                    client.close().await;
                    "disconnected"
                }
                "@@refuse" => {
                    // A token of the app whose signature is broken.
                    let token =
                        publisher.mint_token(&TokenRequest::new("forger").allow("*", ["subscribe"])).await?.token;
                    let mut forged: Vec<char> = token.chars().collect();
                    let at = forged.len().checked_sub(10).context("a token")?;
                    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
                    let forged: String = forged.into_iter().collect();
                    herald_edge::testing::RawClient::refused(dev.edge_addr, &forged).await;
                    "refused"
                }
                _ => {
                    println!("{line}");
                    stdout.push_str(&line);
                    stdout.push('\n');
                    continue;
                }
            };
            answers.write_all(format!("{answer}\n").as_bytes()).await?;
            answers.flush().await?;
        }
        anyhow::Ok(child.wait().await?)
    };
    let status =
        tokio::time::timeout(DEADLINE, run).await.context("tests/console/console.mjs outlived its deadline")??;
    let stderr = errors.await.unwrap_or_default();
    eprint!("{stderr}");
    if !status.success() {
        bail!("tests/console/console.mjs failed ({status}):\n{stdout}{stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_console_link_prints_a_link_that_signs_in_once() -> Result<()> {
    let dev = Dev::start(&[]).await?;
    let link = cli(&["console", "link"], &dev.client_env())?;
    let prefix = format!("http://{}/console/login/", dev.api_addr);
    let path = link.strip_prefix(&format!("http://{}", dev.api_addr)).context(link.clone())?;
    assert!(link.starts_with(&prefix), "{link}");
    let first = http_get(dev.api_addr, path).await.context("no answer")?;
    assert_eq!(first.0, 303, "{first:?}");
    let second = http_get(dev.api_addr, path).await.context("no answer")?;
    assert_eq!(second.0, 403, "a link signs in once: {second:?}");
    let bad = cli(
        &["console", "link"],
        &[("HERALD_API_URL", format!("http://{}", dev.api_addr)), ("HERALD_ADMIN_TOKEN", "wrong".into())],
    );
    assert!(bad.is_err(), "a wrong admin token gets no link");
    Ok(())
}
