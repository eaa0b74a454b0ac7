//! Heartbeat settings and the dead-peer check. Pure logic: the actor feeds it the clock.

use std::time::{Duration, Instant};

use crate::Error;

/// How often the socket pings, and how long a silent peer is tolerated.
///
/// Any inbound frame (data, ping, pong) counts as a sign of life. At every tick the socket
/// either finds the peer silent for longer than `timeout` and drops the connection, or sends a
/// Ping (and the keepalive message, if configured). A dead or half-open peer is therefore
/// detected within `interval + timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Time between pings. Defaults to 5 s.
    pub interval: Duration,
    /// Silence after which the peer is presumed dead. Defaults to 10 s.
    pub timeout: Duration,
}

impl Heartbeat {
    /// Default ping interval: 5 s.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    /// Default dead-peer timeout: 10 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.interval.is_zero() {
            return Err(Error::config(
                "heartbeat",
                "interval must be greater than zero",
            ));
        }
        if self.timeout < self.interval {
            return Err(Error::config(
                "heartbeat",
                format!(
                    "timeout {:?} is shorter than the interval {:?}: every peer would look dead",
                    self.timeout, self.interval
                ),
            ));
        }
        Ok(())
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            interval: Self::DEFAULT_INTERVAL,
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// What a heartbeat tick decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// The peer spoke recently enough (or this tick cannot judge): send a Ping (and the
    /// keepalive).
    Ping,
    /// The peer looks silent past the timeout: read what is already waiting, then
    /// [`recheck`](Liveness::recheck) before deciding.
    Suspect,
    /// A suspect peer spoke after all (the answer of a [`recheck`](Liveness::recheck)).
    Alive,
    /// The peer has been silent for this long: drop the connection.
    Dead(Duration),
}

/// How long a suspected peer is given for data already waiting to be read.
pub(crate) const RECHECK_AFTER: Duration = Duration::from_millis(20);

/// When the peer was last heard from, and the rules that make silence a verdict.
///
/// Silence is judged only from what this side could have seen: a tick that fires late by more
/// than an interval means this thread was stalled (CPU starvation, a long handler), and what
/// looks like silence may be data not yet read, so that tick does not judge; a tick that finds
/// silence first lets the socket read what is waiting and judges on a recheck. Bytes of a frame
/// still arriving count as life, so one large message sent slowly is not taken for death.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    last_seen: Instant,
    last_tick: Instant,
    /// A tick was skipped as a local stall; the next one judges whatever its timing.
    skipped: bool,
}

impl Liveness {
    pub(crate) fn new(now: Instant) -> Self {
        Liveness {
            last_seen: now,
            last_tick: now,
            skipped: false,
        }
    }

    /// Record a frame from the peer.
    pub(crate) fn saw_frame(&mut self, now: Instant) {
        self.last_seen = self.last_seen.max(now);
    }

    /// Record that bytes arrived at `at` (part of a frame, perhaps).
    pub(crate) fn saw_bytes(&mut self, at: Instant) {
        self.last_seen = self.last_seen.max(at);
    }

    /// When the peer was last heard from.
    pub(crate) fn last_seen(&self) -> Instant {
        self.last_seen
    }

    /// Decide at a heartbeat tick.
    pub(crate) fn tick(&mut self, now: Instant, interval: Duration, timeout: Duration) -> Tick {
        let since_tick = now.saturating_duration_since(self.last_tick);
        self.last_tick = now;
        let stalled = since_tick > interval.saturating_mul(2);
        if stalled && !self.skipped {
            self.skipped = true;
            return Tick::Ping;
        }
        self.skipped = false;
        if self.silence(now) > timeout {
            Tick::Suspect
        } else {
            Tick::Ping
        }
    }

    /// Takes in what the socket knows before a verdict: the last byte read (`last_read`, a
    /// frame may still be arriving), and whether it has paused reading for a slow subscriber
    /// (then the silence is ours, not the peer's).
    pub(crate) fn observe(&mut self, now: Instant, last_read: Instant, reading_paused: bool) {
        if reading_paused {
            self.saw_frame(now);
        }
        self.saw_bytes(last_read);
    }

    /// Decide a suspected peer, once waiting data has had its chance to be read.
    pub(crate) fn recheck(&self, now: Instant, timeout: Duration) -> Tick {
        let silent = self.silence(now);
        if silent > timeout {
            Tick::Dead(silent)
        } else {
            Tick::Alive
        }
    }

    fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn silence_past_the_timeout_is_suspected_then_death_on_recheck() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        let (interval, timeout) = (S(5), S(10));
        assert_eq!(l.tick(t0 + S(5), interval, timeout), Tick::Ping);
        assert_eq!(l.tick(t0 + S(10), interval, timeout), Tick::Ping);
        assert_eq!(l.tick(t0 + S(15), interval, timeout), Tick::Suspect);
        assert_eq!(l.recheck(t0 + S(15), timeout), Tick::Dead(S(15)));
        // Data that was waiting, read before the recheck, clears the suspicion.
        l.saw_frame(t0 + S(15));
        assert_eq!(l.recheck(t0 + S(15), timeout), Tick::Alive);
        l.saw_frame(t0 + S(9));
        assert_eq!(l.tick(t0 + S(20), interval, timeout), Tick::Ping);
    }

    #[test]
    fn a_late_tick_is_a_local_stall_and_does_not_judge_but_the_next_one_does() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        let (interval, timeout) = (S(5), S(10));
        // The thread was stuck for 30 s: the first tick after it does not judge.
        assert_eq!(l.tick(t0 + S(30), interval, timeout), Tick::Ping);
        // A peer that is really dead is still found, one tick later, however late.
        assert_eq!(l.tick(t0 + S(60), interval, timeout), Tick::Suspect);
    }

    #[test]
    fn bytes_of_a_frame_still_arriving_count_as_life() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        let (interval, timeout) = (S(5), S(10));
        for t in (5..=60).step_by(5) {
            l.saw_bytes(t0 + S(t) - S(1));
            assert_eq!(l.tick(t0 + S(t), interval, timeout), Tick::Ping);
        }
    }

    #[test]
    fn validation() {
        let ms = Duration::from_millis;
        assert!(Heartbeat {
            interval: ms(0),
            timeout: ms(10)
        }
        .validate()
        .is_err());
        let err = Heartbeat {
            interval: ms(100),
            timeout: ms(50),
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("heartbeat"));
        assert!(Heartbeat::default().validate().is_ok());
    }
}
