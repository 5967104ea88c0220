//! Loading a component's configuration: defaults < TOML file < environment
//! < flags.
//!
//! Every config key `foo_bar` of a component is a flag `--foo-bar` with an
//! environment variable `HERALD_<COMPONENT>_FOO_BAR`; clap gives flags
//! precedence over the environment. The TOML file (`--config`) holds the
//! component's keys at top level; an unknown key is an error that names it.

use std::marker::PhantomData;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use serde::de::DeserializeOwned;

/// A component configuration the command line can fill.
pub trait Settings: DeserializeOwned + Default {
    /// The environment variable prefix, e.g. `HERALD_EDGE_`.
    const ENV_PREFIX: &'static str;
    /// Variables with the prefix that are not settings.
    const ENV_NOT_SETTINGS: &'static [&'static str] = &[];
    /// Every key.
    fn fields() -> &'static [&'static str];
    /// Sets one key from its text form; false for an unknown key.
    fn set_key(&mut self, key: &str, value: &str) -> Result<bool>;
}

impl Settings for herald_edge::EdgeConfig {
    const ENV_PREFIX: &'static str = herald_edge::config::ENV_PREFIX;
    const ENV_NOT_SETTINGS: &'static [&'static str] = herald_edge::config::ENV_NOT_SETTINGS;

    fn fields() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn set_key(&mut self, key: &str, value: &str) -> Result<bool> {
        Ok(self.set(key, value)?)
    }
}

impl Settings for herald_control_plane::Config {
    const ENV_PREFIX: &'static str = herald_control_plane::config::ENV_PREFIX;

    fn fields() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn set_key(&mut self, key: &str, value: &str) -> Result<bool> {
        Ok(self.set(key, value)?)
    }
}

/// The flags of a component: `--config FILE` plus one flag per key.
#[derive(Debug, Clone)]
pub struct Overrides<S> {
    config_file: Option<PathBuf>,
    values: Vec<(&'static str, String)>,
    _settings: PhantomData<S>,
}

fn flag_name(key: &str) -> &'static str {
    // Built once per key at start-up; clap wants 'static names.
    Box::leak(key.replace('_', "-").into_boxed_str())
}

fn env_name(prefix: &str, key: &str) -> &'static str {
    Box::leak(format!("{prefix}{}", key.to_ascii_uppercase()).into_boxed_str())
}

impl<S: Settings> Args for Overrides<S> {
    fn augment_args(cmd: Command) -> Command {
        let mut cmd = cmd.arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .env(env_name(S::ENV_PREFIX, "config"))
                .value_parser(clap::value_parser!(PathBuf))
                .help("TOML file with settings (flags and environment variables override it)"),
        );
        for key in S::fields() {
            cmd = cmd.arg(
                Arg::new(*key)
                    .long(flag_name(key))
                    .value_name("VALUE")
                    .env(env_name(S::ENV_PREFIX, key))
                    .help(format!("config key `{key}` (see the README's config reference)")),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl<S: Settings> FromArgMatches for Overrides<S> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let values =
            S::fields().iter().filter_map(|key| matches.get_one::<String>(key).map(|v| (*key, v.clone()))).collect();
        Ok(Self { config_file: matches.get_one::<PathBuf>("config").cloned(), values, _settings: PhantomData })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl<S: Settings> Overrides<S> {
    /// Builds the configuration: defaults, then the file, then environment
    /// variables and flags.
    ///
    /// # Errors
    ///
    /// An unreadable file, an unknown key (in the file or as a
    /// `HERALD_…` variable), or an invalid value — each naming the key.
    pub fn load(&self) -> Result<S> {
        let mut settings = match &self.config_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<S>(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?
            }
            None => S::default(),
        };
        // Variables with the prefix that name no key are typos: refuse them.
        for (name, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
            if let Some(key) = name.strip_prefix(S::ENV_PREFIX) {
                if S::ENV_NOT_SETTINGS.contains(&name.as_str()) {
                    continue;
                }
                let key = key.to_ascii_lowercase();
                if key != "config" && !S::fields().contains(&key.as_str()) {
                    bail!("unknown setting in the environment: {name}");
                }
            }
        }
        for (key, value) in &self.values {
            if !settings.set_key(key, value)? {
                bail!("unknown setting {key}");
            }
        }
        Ok(settings)
    }
}

/// Keys whose values are never printed.
const SECRET_KEYS: &[&str] = &["admin_token", "database_url", "password", "secret", "api_key", "token"];

/// The configuration as TOML with secrets replaced by `***`.
pub fn redacted_toml(value: &impl serde::Serialize) -> String {
    let mut json = serde_json::to_value(value).unwrap_or_default();
    if let Some(map) = json.as_object_mut() {
        map.retain(|_, v| !v.is_null());
        for (k, v) in map.iter_mut() {
            if SECRET_KEYS.iter().any(|s| k == s || k.ends_with(&format!("_{s}"))) {
                *v = serde_json::Value::String("***".into());
            }
        }
    }
    toml::to_string(&json).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
}

/// A URL with the password of its user info replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_owned() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(redact_url("postgres://u:secret@db:5432/h"), "postgres://u:***@db:5432/h");
        assert_eq!(redact_url("postgres://u@db/h"), "postgres://u@db/h");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn secrets_are_redacted_in_printed_config() {
        let text =
            redacted_toml(&serde_json::json!({"admin_token": "s3cret", "jwks_url": "http://x", "tls_key": null}));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("jwks_url"));
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
        for key in herald_edge::EdgeConfig::FIELDS.iter().chain(herald_control_plane::Config::FIELDS) {
            assert!(readme.contains(&format!("`{key}`")), "README.md's config reference lacks `{key}`");
        }
    }
}
