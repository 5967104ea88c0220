//! [`RenamedKey`]: reading a config key under its old name, the one that
//! carried its unit (`cache_ttl_ms = 5000` is `cache_ttl = "5000ms"`). It
//! knows nothing of one component's keys: a table of them drives it.

use super::ConfigError;

/// A config key renamed when its unit moved from the name into the value:
/// `cache_ttl_ms = 5000` became `cache_ttl = "5s"`.
///
/// A table of them drives the whole mechanism, for any component: the old
/// key is read wherever the new one is (file, flag, environment), its bare
/// number taken in `old_unit`, with a warning naming both keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenamedKey {
    /// The key as it was, e.g. `cache_ttl_ms`.
    pub old: &'static str,
    /// The key as it is, e.g. `cache_ttl`.
    pub new: &'static str,
    /// The unit of the old key's numbers, written as the new key's value
    /// type writes it: `ms` or `s` ([`HumanDuration`](herald_proto::units::HumanDuration)),
    /// `B` ([`ByteSize`](herald_proto::units::ByteSize)).
    pub old_unit: &'static str,
}

impl RenamedKey {
    /// The entry of `table` whose old key is `key`.
    #[must_use]
    pub fn find(table: &[Self], key: &str) -> Option<Self> {
        table.iter().copied().find(|r| r.old == key)
    }

    /// The old key's value in the new key's notation: `5000` in `ms` is
    /// `5000ms`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the old key when the value is not a whole
    /// number (the old keys never took units).
    pub fn convert(&self, value: &str) -> Result<String, ConfigError> {
        let n: u64 = value.trim().parse().map_err(|_| {
            ConfigError::new(
                self.old,
                format!(
                    "invalid value {value:?}: a whole number (in {}) expected; or set `{}` with its unit",
                    self.old_unit, self.new
                ),
            )
        })?;
        Ok(format!("{n}{}", self.old_unit))
    }

    /// The key and value to set for `key = value`: an old key becomes its
    /// new one, its number written in the old unit, with a warning naming
    /// `source` (e.g. "environment variable HERALD_CP_CACHE_TTL_MS"); any
    /// other key is returned as it is.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the old key when its value is not a whole
    /// number.
    pub fn resolve<'a>(
        table: &[Self],
        key: &'a str,
        value: &'a str,
        source: impl FnOnce() -> String,
    ) -> Result<(&'a str, std::borrow::Cow<'a, str>), ConfigError> {
        let Some(renamed) = Self::find(table, key) else { return Ok((key, value.into())) };
        let converted = renamed.convert(value)?;
        renamed.warn(&source(), value, &converted);
        Ok((renamed.new, converted.into()))
    }

    /// Logs that the old key was read from `source` (e.g. "environment
    /// variable HERALD_CP_CACHE_TTL_MS").
    pub fn warn(&self, source: &str, value: &str, converted: &str) {
        tracing::warn!(
            old_key = self.old,
            new_key = self.new,
            source,
            "config key `{}` is deprecated, use `{}`: {value} read as {converted}",
            self.old,
            self.new
        );
    }

    /// Checks the keys given in one source: an old key together with its
    /// new one is an error naming both.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for the first such pair.
    pub fn check_exclusive<'a>(table: &[Self], keys: impl IntoIterator<Item = &'a str>) -> Result<(), ConfigError> {
        let keys: Vec<&str> = keys.into_iter().collect();
        for r in table {
            if keys.contains(&r.old) && keys.contains(&r.new) {
                return Err(ConfigError::new(
                    r.new,
                    format!("given together with its old name `{}`; keep only `{}`", r.old, r.new),
                ));
            }
        }
        Ok(())
    }
}
