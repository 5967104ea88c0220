//! A component's configuration as text: `--print-config` writes it as a
//! TOML file that `--config` reads back, and `herald config check` reads a
//! file and names the bad key with its line.
//!
//! Secrets never appear: a set secret, and a URL holding a password, are
//! written as comments saying so (the value comes from the environment
//! when the printed file is used), and unset optional keys as comments
//! too — TOML has no null.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::settings::{Settings, ValueKind, from_toml, paragraph, redact_url};

/// The configuration as a TOML file: every key in declaration order, each
/// under its documentation when `docs`.
pub fn to_toml<S: Settings>(config: &S, docs: bool) -> String {
    let json = serde_json::to_value(config).unwrap_or_default();
    let mut out = String::new();
    for (i, key) in S::fields().iter().enumerate() {
        let kind = ValueKind::of(key, S::types().get(i).copied().unwrap_or_default());
        if docs {
            let doc = paragraph(S::help().get(i).copied().unwrap_or_default());
            for line in wrap(&format!("{doc} {}", kind.hint()), 76) {
                let _ = writeln!(out, "# {line}");
            }
        }
        let env = format!("{}{}", S::ENV_PREFIX, key.to_ascii_uppercase());
        let _ = match &json[*key] {
            serde_json::Value::Null => writeln!(out, "# {key} = (unset)"),
            _ if kind == ValueKind::Secret => writeln!(out, "# {key} = (set; redacted: give it with {env})"),
            serde_json::Value::String(s) if redact_url(s) != *s => {
                let shown = toml::Value::String(redact_url(s));
                writeln!(out, "# {key} = {shown} (password redacted: give it with {env})")
            }
            value => match toml::Value::try_from(value) {
                Ok(v) => writeln!(out, "{key} = {v}"),
                Err(e) => writeln!(out, "# {key}: cannot be written as TOML ({e})"),
            },
        };
        if docs {
            out.push('\n');
        }
    }
    out
}

/// The configuration on one line (`key = value, …`), for a log line.
pub fn one_line<S: Settings>(config: &S) -> String {
    to_toml(config, false).lines().collect::<Vec<_>>().join(", ")
}

/// Words of `text` in lines of at most `width` characters (a longer word
/// stands alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The component a config file is for, when `herald config check` is not
/// told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Component {
    /// `herald edge`.
    Edge,
    /// `herald control-plane`.
    ControlPlane,
}

/// Reads and checks the config file `path` for `component` (or the
/// component whose keys it uses), as the component would at start: syntax,
/// unknown keys (with the closest known one), values, and the checks
/// across keys. Returns which component it is valid for.
///
/// # Errors
///
/// The first problem, naming the file, the key and its line.
pub fn check_file(path: &Path, component: Option<Component>) -> Result<Component> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let source = path.display().to_string();
    let component = match component {
        Some(c) => c,
        None => guess(&text, &source)?,
    };
    match component {
        Component::Edge => check_text::<herald_edge::EdgeConfig>(&text, &source)?,
        Component::ControlPlane => check_text::<herald_control_plane::Config>(&text, &source)?,
    }
    Ok(component)
}

/// The component whose keys the file's keys are (the edge when both know
/// them all, the one that knows more of them when neither does).
fn guess(text: &str, source: &str) -> Result<Component> {
    let table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    let known = |fields: &[&str], renamed: &[herald_control_plane::config::RenamedKey]| {
        table.keys().filter(|k| fields.contains(&k.as_str()) || renamed.iter().any(|r| r.old == k.as_str())).count()
    };
    let edge = known(herald_edge::EdgeConfig::FIELDS, &[]);
    let cp = known(herald_control_plane::Config::FIELDS, herald_control_plane::config::RENAMED_KEYS);
    Ok(if edge >= cp { Component::Edge } else { Component::ControlPlane })
}

/// Checks one file's text as `S`'s configuration.
fn check_text<S: Settings>(text: &str, source: &str) -> Result<()> {
    let table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    for key in table.keys() {
        let renamed = S::RENAMED.iter().any(|r| r.old == key.as_str());
        if !renamed && !S::fields().contains(&key.as_str()) {
            let hint = closest(key, S::fields()).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
            bail!("{source}{}: unknown key `{key}`{hint}", at_line(text, key));
        }
    }
    let config: S = from_toml(text, source)?;
    if let Err(e) = config.validate() {
        // The line of the first key the message names that the file sets.
        let message = format!("{e:#}");
        let line = S::fields()
            .iter()
            .filter_map(|k| Some((word_at(&message, k)?, at_line(text, k))))
            .filter(|(_, line)| !line.is_empty())
            .min()
            .map(|(_, line)| line)
            .unwrap_or_default();
        bail!("{source}{line}: {message}");
    }
    Ok(())
}

/// Where `word` first stands as a whole word (not part of a longer key)
/// in `text`.
fn word_at(text: &str, word: &str) -> Option<usize> {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back().is_none_or(|c| !is_key_char(c));
        let after = text[at + word.len()..].chars().next().is_none_or(|c| !is_key_char(c));
        before && after
    })
}

/// `, line N` of the line that sets `key` in a TOML text, or nothing.
fn at_line(text: &str, key: &str) -> String {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|n| format!(", line {}", n + 1))
        .unwrap_or_default()
}

/// The known key nearest `key` by edit distance, when near enough to be a
/// typo of it.
fn closest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known.iter().map(|k| (distance(key, k), *k)).filter(|(d, _)| *d <= 3.max(key.len() / 4)).min().map(|(_, k)| k)
}

/// Levenshtein distance between two short strings.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb { previous } else { 1 + previous.min(row[j]).min(current) };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_control_plane::Config;
    use herald_edge::EdgeConfig;

    #[test]
    fn printed_configs_read_back_as_the_same_configuration() {
        let edge = EdgeConfig { max_connections: 1234, ..EdgeConfig::default() };
        for docs in [true, false] {
            let text = to_toml(&edge, docs);
            let back: EdgeConfig = from_toml(&text, "printed").expect("edge config reads back");
            assert_eq!(back, edge, "{text}");
        }
        let cp = Config {
            admin_token: Some(herald_control_plane::Secret::new("s3cret-token")),
            database_url: "postgres://herald:hunter2@db:5432/herald".to_owned(),
            max_http_connections: 77,
            ..Config::default()
        };
        let text = to_toml(&cp, true);
        assert!(!text.contains("s3cret-token") && !text.contains("hunter2"), "{text}");
        assert!(text.contains("# admin_token = (set; redacted: give it with HERALD_CP_ADMIN_TOKEN)"), "{text}");
        let back: Config = from_toml(&text, "printed").expect("control-plane config reads back");
        assert_eq!(back.max_http_connections, 77);
        let secretless = |text: String| -> Vec<String> {
            text.lines()
                .filter(|l| !l.contains("admin_token") && !l.contains("database_url"))
                .map(String::from)
                .collect()
        };
        assert_eq!(secretless(to_toml(&back, false)), secretless(to_toml(&cp, false)));
    }

    #[test]
    fn checks_name_the_key_and_its_line() {
        let err = |text: &str| format!("{:#}", check_text::<EdgeConfig>(text, "edge.toml").expect_err(text));
        let e = err("listen = \"0.0.0.0:1\"\nmax_conections = 5\n");
        assert!(e.contains("edge.toml, line 2: unknown key `max_conections` (did you mean `max_connections`?)"), "{e}");
        let e = err("\nheartbeat_interval = 30\n");
        assert!(e.contains("line 2") && e.contains("heartbeat_interval"), "{e}");
        let e = err("tls_cert = \"a.pem\"\n");
        assert!(e.contains("line 1") && e.contains("tls_key"), "{e}");
        let e = err("listen = \n");
        assert!(e.contains("line 1"), "{e}");
        check_text::<EdgeConfig>("max_connections = 5\n", "edge.toml").expect("valid");
    }

    #[test]
    fn the_component_is_told_from_the_keys() {
        assert_eq!(guess("max_subscriptions = 3\n", "x").expect("toml"), Component::Edge);
        assert_eq!(guess("database_url = \"sqlite::memory:\"\n", "x").expect("toml"), Component::ControlPlane);
    }
}
