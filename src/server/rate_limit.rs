//! A token bucket, for the server side's per-session and per-client limits. Pure: it is fed
//! the clock.

use std::time::Instant;

/// A token bucket: `per_second` tokens a second, at most `per_second` saved up.
pub(crate) struct RateLimit {
    pub(crate) per_second: u32,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub(crate) fn new(per_second: u32) -> Self {
        RateLimit {
            per_second,
            tokens: f64::from(per_second),
            last: Instant::now(),
        }
    }

    /// Takes one token; false when none is left.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(self.per_second);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_up_to_the_rate_then_refills_with_time() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(3);
        r.last = t0;
        assert!((0..3).all(|_| r.take(t0)));
        assert!(!r.take(t0));
        assert!(r.take(t0 + Duration::from_millis(340)));
        assert!(!r.take(t0 + Duration::from_millis(340)));
        // Idle for a minute saves up no more than one second's worth.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| r.take(later)));
        assert!(!r.take(later));
    }
}
