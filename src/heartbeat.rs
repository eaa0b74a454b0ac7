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
    /// The peer spoke recently enough: send a Ping (and the keepalive).
    Ping,
    /// The peer has been silent for this long: drop the connection.
    Dead(Duration),
}

/// When the peer was last heard from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Liveness {
    last_seen: Instant,
}

impl Liveness {
    pub(crate) fn new(now: Instant) -> Self {
        Liveness { last_seen: now }
    }

    /// Record a frame from the peer.
    pub(crate) fn saw_frame(&mut self, now: Instant) {
        self.last_seen = now;
    }

    /// When the peer was last heard from.
    pub(crate) fn last_seen(&self) -> Instant {
        self.last_seen
    }

    /// Decide at a heartbeat tick.
    pub(crate) fn tick(&self, now: Instant, timeout: Duration) -> Tick {
        let silent = now.saturating_duration_since(self.last_seen);
        if silent > timeout {
            Tick::Dead(silent)
        } else {
            Tick::Ping
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_past_the_timeout_is_death() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        let timeout = Duration::from_secs(10);
        assert_eq!(l.tick(t0 + Duration::from_secs(5), timeout), Tick::Ping);
        assert_eq!(l.tick(t0 + Duration::from_secs(10), timeout), Tick::Ping);
        assert_eq!(
            l.tick(t0 + Duration::from_secs(11), timeout),
            Tick::Dead(Duration::from_secs(11))
        );
        l.saw_frame(t0 + Duration::from_secs(9));
        assert_eq!(l.tick(t0 + Duration::from_secs(15), timeout), Tick::Ping);
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
