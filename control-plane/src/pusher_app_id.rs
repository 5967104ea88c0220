//! The Pusher app id of an app: the number Pusher's server libraries put in
//! `/apps/{app_id}/…` of the Pusher HTTP API.
//!
//! It is not the Herald app id. Pusher's own app ids are numbers, and
//! Pusher's Python library refuses any other (`\A[0-9]+\Z`), so an app in
//! Pusher mode has a decimal one of 1–[`MAX_DIGITS`] digits, unique across
//! apps: set by the operator (a team moving from Pusher or another Pusher
//! server keeps its id), or drawn at random (7 digits) when Pusher mode is
//! turned on without one. The Pusher `key` stays the Herald app id.
//!
//! [`PusherAppId`] keeps the exact text: a value and its digit count, so
//! `007` and `7` are different ids, as they are different paths.

use std::fmt;
use std::str::FromStr;

use rand::Rng as _;

/// Most digits of a Pusher app id (any such number fits in an `i64`).
pub const MAX_DIGITS: usize = 18;

/// Digits of a Pusher app id drawn at random.
pub const RANDOM_DIGITS: u8 = 7;

/// A Pusher app id: 1–[`MAX_DIGITS`] decimal digits, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PusherAppId {
    value: u64,
    digits: u8,
}

/// Why a text is not a Pusher app id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Pusher app id: expected 1-18 decimal digits, like \"1234567\"")]
pub struct InvalidPusherAppId(String);

impl PusherAppId {
    /// Parses 1–[`MAX_DIGITS`] ASCII digits.
    ///
    /// # Errors
    ///
    /// [`InvalidPusherAppId`] (quoting at most 64 characters of `s`).
    pub fn parse(s: &str) -> Result<Self, InvalidPusherAppId> {
        let bad = || InvalidPusherAppId(s.chars().take(64).collect());
        if s.is_empty() || s.len() > MAX_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let value = s.parse().map_err(|_| bad())?;
        let digits = u8::try_from(s.len()).map_err(|_| bad())?;
        Ok(Self { value, digits })
    }

    /// A random id of [`RANDOM_DIGITS`] digits, without a leading zero.
    #[must_use]
    pub fn random() -> Self {
        let low = 10u64.pow(u32::from(RANDOM_DIGITS) - 1);
        let value = rand::rng().random_range(low..low * 10);
        Self { value, digits: RANDOM_DIGITS }
    }
}

impl fmt::Display for PusherAppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:0width$}", self.value, width = usize::from(self.digits))
    }
}

impl FromStr for PusherAppId {
    type Err = InvalidPusherAppId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_the_exact_text() {
        for ok in ["1", "1234567", "007", "0", "999999999999999999"] {
            assert_eq!(PusherAppId::parse(ok).map(|id| id.to_string()).as_deref(), Ok(ok));
        }
        assert_ne!(PusherAppId::parse("007"), PusherAppId::parse("7"));
        for bad in ["", "1234567890123456789", "12a", "-1", "+1", " 1", "1.0", "١٢"] {
            assert!(PusherAppId::parse(bad).is_err(), "{bad:?}");
        }
        let e = PusherAppId::parse("app-1").expect_err("not digits");
        assert!(e.to_string().contains("\"app-1\""), "{e}");
    }

    #[test]
    fn random_ids_have_seven_digits() {
        for _ in 0..100 {
            let id = PusherAppId::random().to_string();
            assert_eq!(id.len(), 7, "{id}");
            assert!(!id.starts_with('0') && id.bytes().all(|b| b.is_ascii_digit()), "{id}");
        }
    }
}
