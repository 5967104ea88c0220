//! Reconnect delays: exponential backoff with jitter, as plain functions of
//! the attempt number so the schedule can be checked without a clock.
//!
//! The defaults follow `docs/protocol.md`: 1 s, 2 s, 4 s … capped at 30 s,
//! each ±10%, and a drain close (1001) reconnects at once, spread over a
//! short random delay so a draining edge's clients do not all arrive on the
//! next edge in the same millisecond.

use std::time::Duration;

/// How the client waits between reconnect attempts.
///
/// Attempt `n` (1-based) waits `min(initial × multiplierⁿ⁻¹, max)`, then
/// jitter moves that by up to `±jitter` of itself. A connection that stayed
/// up for `stable_after` resets the count, so the next drop starts again at
/// `initial`; a connection that drops sooner keeps counting, so a flapping
/// edge is not hammered.
///
/// ```
/// use std::time::Duration;
/// use herald_sdk::Backoff;
///
/// let backoff = Backoff::default();
/// assert_eq!(backoff.base_delay(1), Duration::from_secs(1));
/// assert_eq!(backoff.base_delay(3), Duration::from_secs(4));
/// assert_eq!(backoff.base_delay(20), Duration::from_secs(30));
/// // `unit` is a random number in [0, 1): 0.5 means no jitter.
/// assert_eq!(backoff.delay(2, 0.5), Duration::from_secs(2));
/// assert_eq!(backoff.delay(2, 0.0), Duration::from_millis(1800));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The delay before the first reconnect attempt.
    pub initial: Duration,
    /// Each further attempt waits this many times longer.
    pub multiplier: f64,
    /// The longest delay before jitter.
    pub max: Duration,
    /// Relative jitter: 0.1 spreads each delay over ±10% of itself.
    pub jitter: f64,
    /// A connection that stayed up this long resets the attempt count.
    pub stable_after: Duration,
    /// After a drain close (1001) the client reconnects after a random delay
    /// in `[0, drain_jitter]`, without counting an attempt.
    pub drain_jitter: Duration,
    /// Give up after this many consecutive failed attempts (`None`: never).
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(30),
            jitter: 0.1,
            stable_after: Duration::from_secs(10),
            drain_jitter: Duration::from_millis(500),
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// With [`Self::initial`] set to `delay`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default().with_initial(Duration::from_millis(500));
    /// assert_eq!(backoff.initial, Duration::from_millis(500));
    /// ```
    #[must_use]
    pub fn with_initial(mut self, delay: Duration) -> Self {
        self.initial = delay;
        self
    }

    /// With [`Self::multiplier`] set to `multiplier`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default().with_multiplier(1.5);
    /// assert_eq!(backoff.multiplier, 1.5);
    /// ```
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// With [`Self::max`] set to `delay`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default().with_max(Duration::from_secs(10));
    /// assert_eq!(backoff.max, Duration::from_secs(10));
    /// ```
    #[must_use]
    pub fn with_max(mut self, delay: Duration) -> Self {
        self.max = delay;
        self
    }

    /// With [`Self::jitter`] set to `jitter`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default().with_jitter(0.2);
    /// assert_eq!(backoff.jitter, 0.2);
    /// ```
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// With [`Self::stable_after`] set to `after`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default().with_stable_after(Duration::from_secs(30));
    /// assert_eq!(backoff.stable_after, Duration::from_secs(30));
    /// ```
    #[must_use]
    pub fn with_stable_after(mut self, after: Duration) -> Self {
        self.stable_after = after;
        self
    }

    /// With [`Self::drain_jitter`] set to `jitter`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default().with_drain_jitter(Duration::from_secs(1));
    /// assert_eq!(backoff.drain_jitter, Duration::from_secs(1));
    /// ```
    #[must_use]
    pub fn with_drain_jitter(mut self, jitter: Duration) -> Self {
        self.drain_jitter = jitter;
        self
    }

    /// With [`Self::max_attempts`] set to `attempts`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default().with_max_attempts(Some(20));
    /// assert_eq!(backoff.max_attempts, Some(20));
    /// ```
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The delay before attempt `attempt` (1-based), without jitter.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default();
    /// assert_eq!(backoff.base_delay(1), Duration::from_secs(1));
    /// assert_eq!(backoff.base_delay(2), Duration::from_secs(2));
    /// ```
    #[must_use]
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let max = self.max.as_secs_f64();
        if !secs.is_finite() || secs >= max { self.max } else { Duration::from_secs_f64(secs.max(0.0)) }
    }

    /// The delay before attempt `attempt` with jitter; `unit` is a uniform
    /// random number in `[0, 1)` (0.5 is the middle of the range).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// // 0.5 is the middle of the jitter range: no jitter.
    /// assert_eq!(Backoff::default().delay(3, 0.5), Duration::from_secs(4));
    /// ```
    #[must_use]
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let factor = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64((base * factor).max(0.0))
    }

    /// The delay before reconnecting after a drain close; `unit` as in
    /// [`Self::delay`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// let backoff = Backoff::default();
    /// assert!(backoff.drain_delay(0.99) <= backoff.drain_jitter);
    /// ```
    #[must_use]
    pub fn drain_delay(&self, unit: f64) -> Duration {
        self.drain_jitter.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Checks that the values make a sensible schedule.
    ///
    /// # Errors
    ///
    /// A message naming the field that is out of range.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use herald_sdk::Backoff;
    ///
    /// assert!(Backoff::default().validate().is_ok());
    /// assert!(Backoff::default().with_multiplier(0.5).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        if self.initial.is_zero() {
            return Err("backoff.initial must be above zero".into());
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err("backoff.multiplier must be at least 1".into());
        }
        if self.max < self.initial {
            return Err("backoff.max must be at least backoff.initial".into());
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err("backoff.jitter must be in [0, 1)".into());
        }
        if self.max_attempts == Some(0) {
            return Err("backoff.max_attempts must be above zero when set".into());
        }
        Ok(())
    }
}

/// A small, fast pseudo-random source for jitter (SplitMix64). Not for
/// secrets; seeded from the process's hasher randomness and the clock.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        h.write_u128(nanos);
        Self(h.finish())
    }

    #[cfg(test)]
    pub(crate) fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_up_to_thirty() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=8).map(|n| b.base_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.base_delay(0), Duration::from_secs(1));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let b = Backoff::default();
        let mut rng = Jitter::seeded(7);
        let (mut low, mut high) = (false, false);
        for attempt in 1..=10 {
            let base = b.base_delay(attempt).as_secs_f64();
            for _ in 0..500 {
                let d = b.delay(attempt, rng.unit()).as_secs_f64();
                assert!(d >= base * 0.9 - 1e-9 && d <= base * 1.1 + 1e-9, "attempt {attempt}: {d}");
                low |= d < base * 0.95;
                high |= d > base * 1.05;
            }
        }
        assert!(low && high, "jitter spreads both ways");
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(900));
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(1100));
    }

    #[test]
    fn drain_delay_is_short_and_random() {
        let b = Backoff::default();
        assert_eq!(b.drain_delay(0.0), Duration::ZERO);
        assert_eq!(b.drain_delay(1.0), Duration::from_millis(500));
        assert!(b.drain_delay(0.5) <= Duration::from_millis(250));
    }

    #[test]
    fn unit_is_in_range_and_varies() {
        let mut rng = Jitter::new();
        let values: Vec<f64> = (0..1000).map(|_| rng.unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }

    #[test]
    fn validation_names_the_field() {
        assert!(Backoff::default().validate().is_ok());
        let bad = Backoff { jitter: 1.5, ..Backoff::default() };
        assert!(bad.validate().unwrap_err().contains("jitter"));
        let bad = Backoff { max: Duration::from_millis(1), ..Backoff::default() };
        assert!(bad.validate().unwrap_err().contains("max"));
        let bad = Backoff { multiplier: 0.5, ..Backoff::default() };
        assert!(bad.validate().unwrap_err().contains("multiplier"));
    }
}
