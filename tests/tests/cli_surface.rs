//! End to end through the `herald` binary: what an operator meets before
//! anything runs — flag help, `--print-config` read back by `--config`,
//! `herald config check` naming the bad key and line, and the exit codes
//! and messages of commands that cannot reach what they talk to or are
//! refused.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use herald_tests::*;

/// `herald ARGS`: exit code, stdout, stderr.
fn run(args: &[&str], env: &[(&str, &str)]) -> Result<(i32, String, String)> {
    let mut cmd = Command::new(herald_bin()?);
    cmd.args(args).stdin(Stdio::null());
    // Nothing from the caller's environment may change the answers.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HERALD_") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().with_context(|| format!("running herald {args:?}"))?;
    let code = out.status.code().context("herald was killed by a signal")?;
    Ok((code, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[test]
fn every_flag_says_what_it_does_its_kind_and_its_default() -> Result<()> {
    for component in ["edge", "control-plane"] {
        let (code, help, _) = run(&[component, "--help"], &[])?;
        assert_eq!(code, 0);
        assert!(!help.contains("config key"), "placeholder help left in {component} --help");
        assert!(help.contains("--listen-backlog <N>"), "{help}");
        assert!(help.contains("Default: 4096."), "{help}");
        let (_, short, _) = run(&[component, "-h"], &[])?;
        assert!(short.contains("[default: 4096]"), "{short}");
    }
    let (_, help, _) = run(&["edge", "--help"], &[])?;
    assert!(help.contains("--heartbeat-interval <DURATION>"), "{help}");
    assert!(help.contains("--max-frame-size <SIZE>"), "{help}");
    let (_, help, _) = run(&["control-plane", "--help"], &[])?;
    assert!(help.contains("--admin-token <SECRET>") && help.contains("Default: unset."), "{help}");
    Ok(())
}

#[test]
fn a_printed_configuration_is_read_back_unchanged_without_its_secrets() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("herald-cli-{}", random_suffix()));
    std::fs::create_dir_all(&dir)?;
    let secret_env = [
        ("HERALD_CP_ADMIN_TOKEN", "s3cret-admin"),
        ("HERALD_CP_DATABASE_URL", "postgres://herald:hunter2@db:5432/herald"),
    ];
    let (code, printed, stderr) = run(&["control-plane", "--print-config", "--max-batch-messages", "7"], &secret_env)?;
    assert_eq!(code, 0, "{stderr}");
    assert!(!printed.contains("s3cret-admin") && !printed.contains("hunter2"), "{printed}");
    assert!(printed.contains("max_batch_messages = 7"), "{printed}");
    let file = dir.join("cp.toml");
    std::fs::write(&file, &printed)?;
    let file = file.to_string_lossy().into_owned();
    let (code, again, stderr) = run(&["control-plane", "--config", &file, "--print-config"], &secret_env)?;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(again, printed, "--config reads --print-config back unchanged");
    let (code, out, stderr) = run(&["config", "check", &file], &[])?;
    assert_eq!(
        (code, out.trim()),
        (0, format!("{file}: valid configuration for `herald control-plane`").as_str()),
        "{stderr}"
    );

    let (code, printed, _) = run(&["edge", "--print-config"], &[])?;
    assert_eq!(code, 0);
    let edge = dir.join("edge.toml");
    std::fs::write(&edge, &printed)?;
    let (code, out, _) = run(&["config", "check", &edge.to_string_lossy()], &[])?;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("valid configuration for `herald edge`"), "{out}");

    // A typo and a value of the wrong kind: exit code 3, the key and line.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "listen = \"0.0.0.0:9000\"\n\nmax_conections = 10\n")?;
    let (code, _, stderr) = run(&["config", "check", &bad.to_string_lossy()], &[])?;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("line 3: unknown key `max_conections` (did you mean `max_connections`?)"), "{stderr}");
    std::fs::write(&bad, "max_subscriptions = 3\nheartbeat_interval = 30\n")?;
    let (code, _, stderr) = run(&["config", "check", &bad.to_string_lossy()], &[])?;
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("line 2") && stderr.contains("heartbeat_interval"), "{stderr}");
    let (code, _, stderr) = run(&["edge", "--config", &bad.to_string_lossy(), "--print-config"], &[])?;
    assert_eq!(code, 3, "{stderr}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn commands_that_cannot_reach_the_server_say_where_they_looked_and_exit_4() -> Result<()> {
    let closed = format!("http://{}", free_addr());
    let env = [("HERALD_API_URL", closed.as_str()), ("HERALD_APP_ID", "app"), ("HERALD_API_KEY", "hk_x_y")];
    let (code, _, stderr) = run(&["publish", "chat", "hi"], &env)?;
    assert_eq!(code, 4, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the control plane at {closed} (connection refused)"))
            && stderr.contains("--api-url"),
        "{stderr}"
    );
    let (code, _, stderr) =
        run(&["apps", "list"], &[("HERALD_API_URL", closed.as_str()), ("HERALD_ADMIN_TOKEN", "t")])?;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains(&format!("cannot reach the control plane at {closed}")), "{stderr}");

    let edge = format!("ws://{}/v1/connect", free_addr());
    let (code, _, stderr) =
        run(&["subscribe", "chat", "--edge-url", &edge, "--token", "not-a-token", "--give-up-after", "2s"], &[])?;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains(&format!("connecting to {edge}")), "{stderr}");
    assert!(stderr.contains("retrying in"), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the edge at {edge} (connection refused; gave up after 2s)")),
        "{stderr}"
    );

    let (code, _, _) = run(&["edge", "--no-such-flag"], &[])?;
    assert_eq!(code, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_exit_5() -> Result<()> {
    let db = TestDb::create().await?;
    let cp = ControlPlaneProc::start(&db, &nats_url(), &unique_prefix()).await?;
    let url = cp.url();
    let (code, _, stderr) = run(&["apps", "list"], &[("HERALD_API_URL", &url), ("HERALD_ADMIN_TOKEN", "wrong")])?;
    assert_eq!(code, 5, "{stderr}");
    let env = [("HERALD_API_URL", url.as_str()), ("HERALD_APP_ID", "app_x"), ("HERALD_API_KEY", "hk_nope_nope")];
    let (code, _, stderr) = run(&["publish", "chat", "hi"], &env)?;
    assert_eq!(code, 5, "{stderr}");
    Ok(())
}
