//! Restart policies and the restart-intensity window of a supervisor. Pure logic.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::SocketEnd;

/// Whether a supervised socket is restarted when it ends (OTP's child restart types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Always restarted, whatever the end (the default).
    #[default]
    Permanent,
    /// Restarted only after an abnormal end: a panic, a fatal error, giving up, or stopping for
    /// no stated reason. Not after a close by the application or a fatal close code.
    Transient,
    /// Never restarted.
    Temporary,
}

impl RestartPolicy {
    /// Whether a child with this policy is restarted after `end`.
    pub fn restarts_after(&self, end: &SocketEnd) -> bool {
        match self {
            RestartPolicy::Permanent => true,
            RestartPolicy::Transient => end.is_abnormal(),
            RestartPolicy::Temporary => false,
        }
    }
}

/// At most `max_restarts` restarts within `within`; past that the supervisor gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartIntensity {
    /// Restarts allowed in the window. Defaults to 3.
    pub max_restarts: u32,
    /// The window. Defaults to 5 s.
    pub within: Duration,
}

impl Default for RestartIntensity {
    fn default() -> Self {
        RestartIntensity {
            max_restarts: 3,
            within: Duration::from_secs(5),
        }
    }
}

/// The restarts of the recent past.
#[derive(Debug)]
pub(crate) struct RestartWindow {
    intensity: RestartIntensity,
    times: VecDeque<Instant>,
}

impl RestartWindow {
    pub(crate) fn new(intensity: RestartIntensity) -> Self {
        RestartWindow {
            intensity,
            times: VecDeque::new(),
        }
    }

    /// Records a restart at `now` if the intensity allows it; false when it would exceed it.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        while let Some(first) = self.times.front() {
            if now.saturating_duration_since(*first) >= self.intensity.within {
                self.times.pop_front();
            } else {
                break;
            }
        }
        if self.times.len() as u32 >= self.intensity.max_restarts {
            return false;
        }
        self.times.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CloseReason, Disconnect, Error};

    #[test]
    fn policies() {
        let gave_up = SocketEnd::Closed(CloseReason::GaveUp {
            attempts: 3,
            last: Disconnect::ConnectionLost(None),
        });
        let fatal = SocketEnd::Closed(CloseReason::Fatal(Error::HandshakeStatus(401)));
        let by_user = SocketEnd::Closed(CloseReason::ByUser);
        for end in [&gave_up, &fatal, &SocketEnd::Panicked, &by_user] {
            assert!(RestartPolicy::Permanent.restarts_after(end));
            assert!(!RestartPolicy::Temporary.restarts_after(end));
        }
        assert!(RestartPolicy::Transient.restarts_after(&gave_up));
        assert!(RestartPolicy::Transient.restarts_after(&fatal));
        assert!(RestartPolicy::Transient.restarts_after(&SocketEnd::Panicked));
        assert!(!RestartPolicy::Transient.restarts_after(&by_user));
    }

    #[test]
    fn intensity_window_slides() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut w = RestartWindow::new(RestartIntensity {
            max_restarts: 3,
            within: 5 * s,
        });
        assert!(w.allow(t0));
        assert!(w.allow(t0 + s));
        assert!(w.allow(t0 + 2 * s));
        assert!(
            !w.allow(t0 + 3 * s),
            "a 4th restart within 5 s exceeds the intensity"
        );
        // Once the first restart is 5 s old, there is room again.
        assert!(w.allow(t0 + 5 * s));
    }
}
