//! The reconnect policy: how long to wait before attempt n, and when to give up. Pure logic.

use std::time::Duration;

use crate::Error;

/// Exponential backoff with full jitter between reconnect attempts.
///
/// After the n-th consecutive failure the socket waits a delay drawn uniformly from
/// `[min, min(max, min * 2^n)]`: the window doubles with every failure, never leaves
/// `[min, max]`, and is never a single point, so many sockets that lost the same server spread
/// their reconnects instead of arriving together.
///
/// ```
/// use std::time::Duration;
/// use resocket::{Backoff, SplitMix64};
///
/// let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10))
///     .max_attempts(5);
/// let mut rng = SplitMix64::new(7);
/// let d = backoff.delay(3, &mut rng);
/// assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(800));
/// assert!(backoff.gives_up_after(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    max_attempts: Option<u32>,
}

impl Backoff {
    /// Default smallest delay: 500 ms.
    pub const DEFAULT_MIN: Duration = Duration::from_millis(500);
    /// Default largest delay: 30 s.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(30);

    /// Delays from `min` doubling up to `max`, retrying forever.
    pub fn exponential(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            max_attempts: None,
        }
    }

    /// Give up (state Closed{GaveUp}) after this many consecutive failed attempts.
    /// Defaults to unlimited.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Retry forever (the default).
    pub fn unlimited(mut self) -> Self {
        self.max_attempts = None;
        self
    }

    /// The smallest delay.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The largest delay.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The attempt limit, if any.
    pub fn attempt_limit(&self) -> Option<u32> {
        self.max_attempts
    }

    /// Checks the policy: `min > 0`, `min <= max`, `max_attempts >= 1`.
    pub fn validate(&self) -> Result<(), Error> {
        if self.min.is_zero() {
            return Err(Error::config(
                "backoff",
                "min delay must be greater than zero",
            ));
        }
        if self.min > self.max {
            return Err(Error::config(
                "backoff",
                format!(
                    "min delay {:?} is larger than max delay {:?}",
                    self.min, self.max
                ),
            ));
        }
        if self.max_attempts == Some(0) {
            return Err(Error::config("backoff", "max_attempts must be at least 1"));
        }
        Ok(())
    }

    /// The upper end of the jitter window after `failures` consecutive failures:
    /// `min(max, min * 2^failures)`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// The delay to wait after `failures` consecutive failures, drawn from `rng`.
    pub fn delay(&self, failures: u32, rng: &mut impl RandomSource) -> Duration {
        let ceiling = self.ceiling(failures);
        let span = ceiling.saturating_sub(self.min).as_nanos() as u64;
        if span == 0 {
            return self.min;
        }
        // Uniform in [0, span] (the bias of `%` is negligible for spans far below 2^64).
        let offset = rng.next_u64() % (span + 1);
        self.min + Duration::from_nanos(offset)
    }

    /// A delay drawn uniformly from `[0, spread]`: how long the first reconnect after a good
    /// connection waits (see `SocketConfigBuilder::reconnect_spread`).
    pub fn spread(spread: Duration, rng: &mut impl RandomSource) -> Duration {
        let span = spread.as_nanos().min(u128::from(u64::MAX - 1)) as u64;
        if span == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.next_u64() % (span + 1))
    }

    /// Whether the socket gives up after `failures` consecutive failed attempts.
    pub fn gives_up_after(&self, failures: u32) -> bool {
        matches!(self.max_attempts, Some(limit) if failures >= limit)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::exponential(Self::DEFAULT_MIN, Self::DEFAULT_MAX)
    }
}

/// A source of random numbers for [`Backoff::delay`] and [`Backoff::spread`], to compute
/// delays outside a socket (a simulation, a capacity plan, a test). A socket draws its own
/// from a [`SplitMix64`]; `SocketConfigBuilder::jitter_seed` seeds it for reproducible delays.
pub trait RandomSource {
    /// The next uniformly distributed 64-bit number.
    fn next_u64(&mut self) -> u64;
}

/// A small, fast, seedable generator (SplitMix64): good enough for jitter, not for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// A generator seeded from the clock and a process-wide counter, so that sockets started at
    /// the same instant still draw different delays.
    pub fn from_entropy() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut rng = SplitMix64::new(nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next_u64();
        rng
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    struct Fixed(u64);
    impl RandomSource for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::exponential(100 * MS, 1000 * MS);
        let ceilings: Vec<_> = (0..6).map(|n| b.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
    }

    #[test]
    fn jitter_spans_the_whole_window() {
        let b = Backoff::exponential(100 * MS, 10_000 * MS);
        assert_eq!(b.delay(3, &mut Fixed(0)), 100 * MS);
        let span = (800 - 100) * 1_000_000;
        assert_eq!(b.delay(3, &mut Fixed(span)), 800 * MS);
        // Many draws: both halves of the window are used (spread, not a single point).
        let mut rng = SplitMix64::new(42);
        let draws: Vec<_> = (0..1000).map(|_| b.delay(1, &mut rng)).collect();
        assert!(draws.iter().any(|d| *d < 150 * MS));
        assert!(draws.iter().any(|d| *d > 150 * MS));
    }

    #[test]
    fn same_seed_same_delays() {
        let b = Backoff::default();
        let a: Vec<_> = (1..10)
            .map(|n| b.delay(n, &mut SplitMix64::new(9)))
            .collect();
        let c: Vec<_> = (1..10)
            .map(|n| b.delay(n, &mut SplitMix64::new(9)))
            .collect();
        assert_eq!(a, c);
    }

    #[test]
    fn spread_covers_its_window_evenly() {
        let mut rng = SplitMix64::new(5);
        let spread = 1000 * MS;
        let mut windows = [0u32; 10];
        for _ in 0..10_000 {
            let d = Backoff::spread(spread, &mut rng);
            assert!(d <= spread);
            windows[(d.as_millis() as usize / 100).min(9)] += 1;
        }
        // Each 100 ms tenth holds about 10% of the draws.
        assert!(
            windows.iter().all(|&n| (800..1200).contains(&n)),
            "{windows:?}"
        );
        assert_eq!(Backoff::spread(Duration::ZERO, &mut rng), Duration::ZERO);
    }

    #[test]
    fn gives_up_only_at_the_limit() {
        let b = Backoff::default().max_attempts(3);
        assert!(!b.gives_up_after(2));
        assert!(b.gives_up_after(3));
        assert!(!Backoff::default().gives_up_after(u32::MAX));
    }

    #[test]
    fn validation_names_the_field() {
        let err = Backoff::exponential(2000 * MS, 1000 * MS)
            .validate()
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidConfig {
                field: "backoff",
                ..
            }
        ));
        assert!(err.to_string().contains("larger than max"));
        assert!(Backoff::exponential(Duration::ZERO, MS).validate().is_err());
        assert!(Backoff::default().max_attempts(0).validate().is_err());
        assert!(Backoff::default().validate().is_ok());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delay_stays_within_min_and_max(
            min_ms in 1u64..10_000,
            extra_ms in 0u64..600_000,
            failures in any::<u32>(),
            seed in any::<u64>(),
        ) {
            let min = Duration::from_millis(min_ms);
            let max = min + Duration::from_millis(extra_ms);
            let b = Backoff::exponential(min, max);
            let d = b.delay(failures, &mut SplitMix64::new(seed));
            prop_assert!(d >= min && d <= max);
            prop_assert!(b.ceiling(failures) <= max);
            prop_assert!(b.ceiling(failures) <= b.ceiling(failures.saturating_add(1)));
        }
    }
}
