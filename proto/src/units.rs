//! Units for configuration: byte sizes and durations with their unit in the
//! value, so a config file says `max_message_size = "64KiB"` and
//! `heartbeat_interval = "25s"` instead of bare numbers.
//!
//! Sizes parse from strings (`"64KiB"`, `"1MiB"`, `"512"`) or plain integers
//! (bytes). Durations always need their unit (`"250ms"`, `"10s"`, `"5m"`,
//! `"1h"`): a bare `30` could mean seconds or milliseconds, so it is refused.
//! Both print back in the same notation.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a size or duration did not parse.
///
/// ```
/// use herald_proto::units::{ByteSize, HumanDuration};
/// let err = "30".parse::<HumanDuration>().unwrap_err();
/// assert!(err.to_string().contains("30"), "{err}");
/// assert!("12 parsecs".parse::<ByteSize>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(String);

/// A size in bytes.
///
/// ```
/// use herald_proto::units::ByteSize;
/// let size: ByteSize = "64KiB".parse()?;
/// assert_eq!((size, size.to_string()), (ByteSize::kib(64), "64KiB".to_owned()));
/// assert!("64 parsecs".parse::<ByteSize>().is_err());
/// assert_eq!("2MiB".parse::<ByteSize>()?, ByteSize::mib(2));
/// assert_eq!(ByteSize::kib(1).as_usize(), 1024);
/// # Ok::<(), herald_proto::units::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` KiB.
    #[must_use]
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    /// `n` MiB.
    #[must_use]
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    /// The size in bytes, saturated to `usize`.
    #[must_use]
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 =
            num.parse().map_err(|_| UnitError(format!("invalid size {s:?}: expected e.g. 512, 64KiB, 4MiB")))?;
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" | "K" | "KB" | "kB" | "k" => 1024,
            "MiB" | "M" | "MB" => 1024 * 1024,
            "GiB" | "G" | "GB" => 1024 * 1024 * 1024,
            other => return Err(UnitError(format!("invalid size unit {other:?} in {s:?}: use B, KiB, MiB or GiB"))),
        };
        n.checked_mul(mult).map(Self).ok_or_else(|| UnitError(format!("size {s:?} is too large")))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n != 0 && n.is_multiple_of(1024 * 1024 * 1024) {
            write!(f, "{}GiB", n / (1024 * 1024 * 1024))
        } else if n != 0 && n.is_multiple_of(1024 * 1024) {
            write!(f, "{}MiB", n / (1024 * 1024))
        } else if n != 0 && n.is_multiple_of(1024) {
            write!(f, "{}KiB", n / 1024)
        } else {
            write!(f, "{n}B")
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written with its unit.
///
/// ```
/// use std::time::Duration;
/// use herald_proto::units::HumanDuration;
/// let d: HumanDuration = "1500ms".parse()?;
/// assert_eq!(Duration::from(d), Duration::from_millis(1500));
/// assert_eq!(HumanDuration::secs(30).to_string(), "30s");
/// assert_eq!(HumanDuration::millis(250).to_string(), "250ms");
/// # Ok::<(), herald_proto::units::UnitError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `n` seconds.
    #[must_use]
    pub const fn secs(n: u64) -> Self {
        Self(Duration::from_secs(n))
    }

    /// `n` milliseconds.
    #[must_use]
    pub const fn millis(n: u64) -> Self {
        Self(Duration::from_millis(n))
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl FromStr for HumanDuration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, UnitError> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 =
            num.parse().map_err(|_| UnitError(format!("invalid duration {s:?}: expected e.g. 250ms, 10s, 5m, 1h")))?;
        let d = match unit.trim() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "" => return Err(UnitError(format!("duration {s:?} needs a unit: ms, s, m or h"))),
            "m" | "min" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            other => return Err(UnitError(format!("invalid duration unit {other:?} in {s:?}: use ms, s, m or h"))),
        };
        Ok(Self(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms != 0 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Err(serde::de::Error::custom(format!("duration {n} needs a unit: \"{n}ms\" or \"{n}s\""))),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("64KiB".parse::<ByteSize>(), Ok(ByteSize::kib(64)));
        assert_eq!("4MiB".parse::<ByteSize>(), Ok(ByteSize::mib(4)));
        assert_eq!("512".parse::<ByteSize>(), Ok(ByteSize(512)));
        assert_eq!(" 1 GiB ".parse::<ByteSize>(), Ok(ByteSize(1 << 30)));
        for bad in ["", "KiB", "-1", "1.5MiB", "1TB", "99999999999999999999", "18446744073709551615GiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        assert_eq!(ByteSize::kib(64).to_string(), "64KiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn durations() {
        assert_eq!("250ms".parse::<HumanDuration>(), Ok(HumanDuration::millis(250)));
        assert_eq!("10s".parse::<HumanDuration>(), Ok(HumanDuration::secs(10)));
        assert_eq!("5m".parse::<HumanDuration>(), Ok(HumanDuration::secs(300)));
        assert_eq!("1h".parse::<HumanDuration>(), Ok(HumanDuration::secs(3600)));
        for bad in ["", "s", "1.5s", "10 parsecs", "-3s", "30"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
        assert_eq!(HumanDuration::secs(90).to_string(), "90s");
        assert_eq!(HumanDuration::millis(1500).to_string(), "1500ms");
    }

    #[test]
    fn serde_accepts_strings_and_numbers() {
        let d: HumanDuration = serde_json::from_str("\"25s\"").expect("duration");
        assert_eq!(d, HumanDuration::secs(25));
        assert!(serde_json::from_str::<HumanDuration>("1500").is_err(), "a bare number is ambiguous");
        let b: ByteSize = serde_json::from_str("\"1MiB\"").expect("size");
        assert_eq!(b, ByteSize::mib(1));
        assert!(serde_json::from_str::<ByteSize>("\"1 XB\"").is_err());
    }
}
