//! Loading a component's configuration: defaults < TOML file < environment
//! < flags.
//!
//! Every config key `foo_bar` of a component is a flag `--foo-bar` with an
//! environment variable `HERALD_<COMPONENT>_FOO_BAR`; clap gives flags
//! precedence over the environment. The TOML file (`--config`) holds the
//! component's keys at top level; an unknown key is an error that names it.
//!
//! A component's renamed keys ([`Settings::RENAMED`]) keep working in all
//! three forms — old TOML key, old `--flag` (hidden from `--help`), old
//! environment variable — with their number taken in the old unit and a
//! warning naming the old and the new key. An old key given together with
//! its new one in the same source is an error naming both.

use std::marker::PhantomData;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use herald_control_plane::config::RenamedKey;
use serde::de::DeserializeOwned;

/// A component configuration the command line can fill.
pub trait Settings: DeserializeOwned + serde::Serialize + Default {
    /// The environment variable prefix, e.g. `HERALD_EDGE_`.
    const ENV_PREFIX: &'static str;
    /// Variables with the prefix that are not settings.
    const ENV_NOT_SETTINGS: &'static [&'static str] = &[];
    /// Keys renamed (their old names still read, with a warning).
    const RENAMED: &'static [RenamedKey] = &[];
    /// Every key.
    fn fields() -> &'static [&'static str];
    /// Every key's documentation, in [`Settings::fields`]' order.
    fn help() -> &'static [&'static str];
    /// Every key's Rust type, in [`Settings::fields`]' order.
    fn types() -> &'static [&'static str];
    /// Checks the values together (ranges, keys that need each other).
    fn validate(&self) -> Result<()>;
    /// Sets one key from its text form; false for an unknown key.
    fn set_key(&mut self, key: &str, value: &str) -> Result<bool>;
}

impl Settings for herald_edge::EdgeConfig {
    const ENV_PREFIX: &'static str = herald_edge::config::ENV_PREFIX;
    const ENV_NOT_SETTINGS: &'static [&'static str] = herald_edge::config::ENV_NOT_SETTINGS;

    fn fields() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn help() -> &'static [&'static str] {
        Self::HELP
    }

    fn types() -> &'static [&'static str] {
        Self::TYPES
    }

    fn validate(&self) -> Result<()> {
        Ok(Self::validate(self)?)
    }

    fn set_key(&mut self, key: &str, value: &str) -> Result<bool> {
        Ok(self.set(key, value)?)
    }
}

impl Settings for herald_control_plane::Config {
    const ENV_PREFIX: &'static str = herald_control_plane::config::ENV_PREFIX;
    const RENAMED: &'static [RenamedKey] = herald_control_plane::config::RENAMED_KEYS;

    fn fields() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn help() -> &'static [&'static str] {
        Self::HELP
    }

    fn types() -> &'static [&'static str] {
        Self::TYPES
    }

    fn validate(&self) -> Result<()> {
        Ok(Self::validate(self)?)
    }

    fn set_key(&mut self, key: &str, value: &str) -> Result<bool> {
        Ok(self.set(key, value)?)
    }
}

/// What kind of value a key takes, from its Rust type: the flag's value
/// name and a line on how to write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Duration,
    Size,
    Number,
    Bool,
    Address,
    File,
    Url,
    Secret,
    Text,
}

impl ValueKind {
    /// The kind of key `key` of Rust type `ty` (as written in the struct).
    #[must_use]
    pub fn of(key: &str, ty: &str) -> Self {
        let ty = ty.replace(' ', "");
        let inner = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')).unwrap_or(&ty);
        let last = inner.rsplit("::").next().unwrap_or(inner);
        match last {
            "HumanDuration" => Self::Duration,
            "ByteSize" => Self::Size,
            "u8" | "u16" | "u32" | "u64" | "usize" | "i64" | "f64" => Self::Number,
            "bool" => Self::Bool,
            "SocketAddr" => Self::Address,
            "PathBuf" => Self::File,
            "Secret" => Self::Secret,
            _ if key.ends_with("_url") => Self::Url,
            _ => Self::Text,
        }
    }

    /// The flag's value name in `--help`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Duration => "DURATION",
            Self::Size => "SIZE",
            Self::Number => "N",
            Self::Bool => "BOOL",
            Self::Address => "ADDR",
            Self::File => "FILE",
            Self::Url => "URL",
            Self::Secret => "SECRET",
            Self::Text => "TEXT",
        }
    }

    /// How to write a value of this kind.
    #[must_use]
    pub fn hint(self) -> &'static str {
        match self {
            Self::Duration => "A duration: a whole number and a unit (ms, s, m, h), e.g. 500ms, 30s, 5m.",
            Self::Size => "A size: bytes, or a number and a unit (B, KiB, MiB, GiB), e.g. 64KiB.",
            Self::Number => "A whole number.",
            Self::Bool => "true or false.",
            Self::Address => "An IP address and port, e.g. 0.0.0.0:8080.",
            Self::File => "A file path.",
            Self::Url => "A URL.",
            Self::Secret => "A secret: never printed nor logged.",
            Self::Text => "Text.",
        }
    }
}

/// A doc comment's lines (as the config macros give them) as one
/// paragraph.
#[must_use]
pub fn paragraph(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first sentence of a doc comment: what a flag's one line of help
/// says.
#[must_use]
pub fn first_sentence(doc: &str) -> String {
    let text = paragraph(doc);
    let mut from = 0;
    while let Some(at) = text[from..].find(". ") {
        let end = from + at + 1;
        // Abbreviations end no sentence.
        if !(text[..end].ends_with("e.g.") || text[..end].ends_with("i.e.")) {
            return text[..end].to_owned();
        }
        from = end;
    }
    text
}

/// A default value as `--help` shows it.
#[must_use]
pub fn default_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "unset".to_owned(),
        serde_json::Value::String(s) if s.is_empty() => "empty".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where a key's value came from; flags override the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Env,
    Flag,
}

/// The flags of a component: `--config FILE` plus one flag per key.
#[derive(Debug, Clone)]
pub struct Overrides<S> {
    config_file: Option<PathBuf>,
    values: Vec<(&'static str, String, Source)>,
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
        let defaults = serde_json::to_value(S::default()).unwrap_or_default();
        for (i, key) in S::fields().iter().enumerate() {
            let doc = S::help().get(i).copied().unwrap_or_default();
            let kind = ValueKind::of(key, S::types().get(i).copied().unwrap_or_default());
            let default = default_text(&defaults[*key]);
            cmd = cmd.arg(
                Arg::new(*key)
                    .long(flag_name(key))
                    .value_name(kind.name())
                    .env(env_name(S::ENV_PREFIX, key))
                    .help(format!("{} [default: {default}]", first_sentence(doc)))
                    .long_help(format!("{}\n{} Default: {default}.", paragraph(doc), kind.hint())),
            );
        }
        for renamed in S::RENAMED {
            cmd = cmd.arg(
                Arg::new(renamed.old)
                    .long(flag_name(renamed.old))
                    .value_name("VALUE")
                    .env(env_name(S::ENV_PREFIX, renamed.old))
                    .hide(true)
                    .help(format!("deprecated: `{}` in {}", renamed.new, renamed.old_unit)),
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
        let keys = S::fields().iter().copied().chain(S::RENAMED.iter().map(|r| r.old));
        let values = keys
            .filter_map(|key| {
                let value = matches.get_one::<String>(key)?.clone();
                let source = match matches.value_source(key) {
                    Some(ValueSource::EnvVariable) => Source::Env,
                    _ => Source::Flag,
                };
                Some((key, value, source))
            })
            .collect();
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
    /// `HERALD_…` variable), an invalid value, or an old key given with its
    /// new one in the same source — each naming the key.
    pub fn load(&self) -> Result<S> {
        self.load_with_env(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))
    }

    /// [`Overrides::load`] with the names of the environment's variables
    /// given (their values reached clap already).
    fn load_with_env(&self, env_names: impl IntoIterator<Item = String>) -> Result<S> {
        let mut settings = match &self.config_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                from_toml::<S>(&text, &format!("config file {}", path.display()))?
            }
            None => S::default(),
        };
        // Variables with the prefix that name no key are typos: refuse them.
        for name in env_names {
            if let Some(key) = name.strip_prefix(S::ENV_PREFIX) {
                if S::ENV_NOT_SETTINGS.contains(&name.as_str()) {
                    continue;
                }
                let key = key.to_ascii_lowercase();
                let renamed = RenamedKey::find(S::RENAMED, &key).is_some();
                if key != "config" && !renamed && !S::fields().contains(&key.as_str()) {
                    bail!("unknown setting in the environment: {name}");
                }
            }
        }
        for source in [Source::Env, Source::Flag] {
            let given = self.values.iter().filter(|(_, _, s)| *s == source);
            RenamedKey::check_exclusive(S::RENAMED, given.clone().map(|(key, _, _)| *key))?;
            for (key, value, _) in given {
                let from = || match source {
                    Source::Env => format!("environment variable {}{}", S::ENV_PREFIX, key.to_ascii_uppercase()),
                    Source::Flag => format!("flag --{}", key.replace('_', "-")),
                };
                let (new_key, value) = RenamedKey::resolve(S::RENAMED, key, value, from)?;
                if !settings.set_key(new_key, &value)? {
                    bail!("unknown setting {key}");
                }
            }
        }
        Ok(settings)
    }
}

/// Parses a TOML config file; `source` names it in warnings. Renamed keys
/// are read under their new names, their numbers in the old unit.
pub fn from_toml<S: Settings>(text: &str, source: &str) -> Result<S> {
    let parse_error = |e: toml::de::Error| anyhow::anyhow!("{source}: {e}");
    let mut table: toml::Table = toml::from_str(text).map_err(parse_error)?;
    RenamedKey::check_exclusive(S::RENAMED, table.keys().map(String::as_str))
        .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
    let mut renamed_any = false;
    for renamed in S::RENAMED {
        let Some(value) = table.remove(renamed.old) else { continue };
        let value = match value {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        let converted = renamed.convert(&value).map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        renamed.warn(source, &value, &converted);
        table.insert(renamed.new.to_owned(), toml::Value::String(converted));
        renamed_any = true;
    }
    if !renamed_any {
        // Parsed from the text itself, errors point at the file's lines.
        return toml::from_str::<S>(text).map_err(parse_error);
    }
    let rewritten = toml::to_string(&table).context("rewriting renamed config keys")?;
    toml::from_str::<S>(&rewritten).map_err(|e| anyhow::anyhow!("{source} (renamed keys read as their new names): {e}"))
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

    use herald_control_plane::Config;
    use herald_proto::units::{ByteSize, HumanDuration};

    /// Runs `f` with the warnings it logs captured.
    fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let logged = String::from_utf8(sink.0.lock().expect("lock").clone()).expect("utf-8");
        (out, logged)
    }

    fn cp_toml(text: &str) -> (Result<Config>, String) {
        warnings_of(|| from_toml::<Config>(text, "config file test.toml"))
    }

    /// The control plane's flags as `herald control-plane` parses them.
    fn cp_flags(args: &[&str]) -> (Result<Config>, String) {
        let cmd = Overrides::<Config>::augment_args(Command::new("control-plane"));
        let matches = cmd.try_get_matches_from(std::iter::once("control-plane").chain(args.iter().copied()));
        let overrides = Overrides::<Config>::from_arg_matches(&matches.expect("flags parse")).expect("matches");
        warnings_of(|| overrides.load_with_env([]))
    }

    /// The control plane's settings as if given by environment variables.
    fn cp_env(vars: &[(&'static str, &str)]) -> (Result<Config>, String) {
        let values = vars.iter().map(|(key, value)| (*key, (*value).to_owned(), Source::Env)).collect();
        let overrides = Overrides::<Config> { config_file: None, values, _settings: PhantomData };
        let names = vars.iter().map(|(key, _)| format!("HERALD_CP_{}", key.to_ascii_uppercase()));
        warnings_of(|| overrides.load_with_env(names))
    }

    #[test]
    fn new_keys_take_units_in_every_form() {
        let (c, warned) = cp_toml("cache_ttl = \"250ms\"\nmax_body_size = \"2MiB\"\n");
        let c = c.expect("toml");
        assert_eq!((c.cache_ttl, c.max_body_size), (HumanDuration::millis(250), ByteSize::mib(2)));
        assert!(warned.is_empty(), "{warned}");
        let (c, warned) = cp_flags(&["--cache-ttl", "250ms", "--max-body-size", "2MiB"]);
        let c = c.expect("flags");
        assert_eq!((c.cache_ttl, c.max_body_size), (HumanDuration::millis(250), ByteSize::mib(2)));
        assert!(warned.is_empty(), "{warned}");
        let (c, warned) = cp_env(&[("cache_ttl", "250ms"), ("max_body_size", "2MiB")]);
        let c = c.expect("env");
        assert_eq!((c.cache_ttl, c.max_body_size), (HumanDuration::millis(250), ByteSize::mib(2)));
        assert!(warned.is_empty(), "{warned}");
    }

    #[test]
    fn old_keys_keep_their_unit_and_warn_in_every_form() {
        let check = |(c, warned): (Result<Config>, String), form: &str| {
            let c = c.unwrap_or_else(|e| panic!("{form}: {e:#}"));
            assert_eq!(c.database_acquire_timeout, HumanDuration::secs(5), "{form}");
            assert_eq!(c.max_body_size, ByteSize::mib(1), "{form}");
            assert_eq!(c.token_max_ttl, HumanDuration::secs(7200), "{form}");
            for (old, new) in
                [("database_acquire_timeout_ms", "database_acquire_timeout"), ("max_body_bytes", "max_body_size")]
            {
                assert!(
                    warned.contains(&format!("`{old}`")) && warned.contains(&format!("`{new}`")),
                    "{form}: {warned}"
                );
            }
        };
        check(
            cp_toml("database_acquire_timeout_ms = 5000\nmax_body_bytes = 1048576\ntoken_max_ttl_secs = 7200\n"),
            "toml",
        );
        check(
            cp_flags(&[
                "--database-acquire-timeout-ms",
                "5000",
                "--max-body-bytes",
                "1048576",
                "--token-max-ttl-secs",
                "7200",
            ]),
            "flags",
        );
        let (c, warned) = cp_env(&[
            ("database_acquire_timeout_ms", "5000"),
            ("max_body_bytes", "1048576"),
            ("token_max_ttl_secs", "7200"),
        ]);
        assert!(warned.contains("HERALD_CP_MAX_BODY_BYTES"), "{warned}");
        check((c, warned), "env");
    }

    #[test]
    fn old_and_new_in_one_source_are_an_error_naming_both() {
        let both = |r: Result<Config>, form: &str| {
            let e = format!("{:#}", r.expect_err(form));
            assert!(e.contains("`cache_ttl_ms`") && e.contains("`cache_ttl`"), "{form}: {e}");
        };
        both(cp_toml("cache_ttl_ms = 5000\ncache_ttl = \"5s\"\n").0, "toml");
        both(cp_flags(&["--cache-ttl-ms", "5000", "--cache-ttl", "5s"]).0, "flags");
        both(cp_env(&[("cache_ttl_ms", "5000"), ("cache_ttl", "5s")]).0, "env");

        // In different sources, the stronger one wins: flags over the environment.
        let values =
            vec![("cache_ttl_ms", "5000".to_owned(), Source::Env), ("cache_ttl", "1s".to_owned(), Source::Flag)];
        let overrides = Overrides::<Config> { config_file: None, values, _settings: PhantomData };
        let c = warnings_of(|| overrides.load_with_env([])).0.expect("env and flag");
        assert_eq!(c.cache_ttl, HumanDuration::secs(1));
    }

    #[test]
    fn bad_units_are_errors_naming_the_key() {
        let names = |r: Result<Config>, key: &str, form: &str| {
            let e = format!("{:#}", r.expect_err(form));
            assert!(e.contains(key), "{form}: {e}");
        };
        names(cp_toml("cache_ttl = 5000\n").0, "cache_ttl", "toml, no unit");
        names(cp_toml("max_body_size = \"1XB\"\n").0, "max_body_size", "toml, bad unit");
        names(cp_toml("cache_ttl_ms = \"5s\"\n").0, "cache_ttl_ms", "toml, unit on an old key");
        names(cp_flags(&["--shutdown-timeout", "10 parsecs"]).0, "shutdown_timeout", "flags");
        names(cp_flags(&["--presence-ttl-ms", "1.5"]).0, "presence_ttl_ms", "flags, old key");
        names(cp_env(&[("max_body_size", "lots")]).0, "max_body_size", "env");
        names(cp_env(&[("readiness_timeout_ms", "2s")]).0, "readiness_timeout_ms", "env, old key");
    }

    #[test]
    fn help_shows_the_new_flags_and_hides_the_old() {
        let help = Overrides::<Config>::augment_args(Command::new("control-plane")).render_long_help().to_string();
        for flag in ["--cache-ttl ", "--max-body-size", "--token-max-ttl ", "--signing-key-refresh-interval"] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
        for old in ["--cache-ttl-ms", "--max-body-bytes", "--token-max-ttl-secs"] {
            assert!(!help.contains(old), "{old} shown in --help");
        }
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
        for key in herald_edge::EdgeConfig::FIELDS.iter().chain(herald_control_plane::Config::FIELDS) {
            assert!(readme.contains(&format!("`{key}`")), "README.md's config reference lacks `{key}`");
        }
        for renamed in herald_control_plane::config::RENAMED_KEYS {
            let row = format!("| `{}` | {} | `{}` |", renamed.old, renamed.old_unit.replace('B', "bytes"), renamed.new);
            assert!(readme.contains(&row), "README.md's renamed keys lack {row}");
        }
    }
}
