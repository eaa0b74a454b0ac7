//! The socket's state transitions as one pure function: given where the socket is, what
//! happened, and the facts the actor gathered, the next state. No sockets, no timers, no
//! clock: the actor carries out what [`transition`] returns (start a connect, arm the backoff
//! timer, enter Open or Closed) and each state it enters owns its timers.

use std::time::Duration;

use crate::backoff::SplitMix64;
use crate::{Backoff, CloseReason, Disconnect, Error};

/// Where the socket is (the part of its state that transitions depend on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum At {
    /// Not started yet, or the actor stopped: only a close changes anything.
    Inactive,
    /// Connect attempt `attempt` (1 after a stable connection) is under way.
    Connecting {
        attempt: u32,
    },
    /// Connected by attempt `attempt`.
    Open {
        attempt: u32,
    },
    /// Waiting before attempt `attempt + 1`.
    Backoff {
        attempt: u32,
    },
    Closed,
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The handshake succeeded.
    Connected,
    /// The attempt failed; `retryable` as classified by the configuration.
    ConnectFailed { error: Error, retryable: bool },
    /// The Open connection ended.
    ConnectionEnded {
        cause: Disconnect,
        /// The application had asked to close.
        by_user: bool,
        /// The connection proved itself (welcomed, identified, the peer talked for the
        /// minimum uptime): the attempt count starts afresh.
        stable: bool,
    },
    /// The backoff timer fired.
    BackoffElapsed,
    /// The application asked to close while not Open, without waiting (or its graceful close
    /// waited for an Open in vain).
    CloseNow,
}

/// The next state, for the actor to enter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Nothing changes.
    Stay,
    Open {
        attempt: u32,
    },
    Connect {
        attempt: u32,
    },
    Backoff {
        attempt: u32,
        delay: Duration,
        cause: Disconnect,
    },
    Closed(CloseReason),
}

/// The settings transitions depend on.
#[derive(Debug, Clone)]
pub(crate) struct Rules<'a> {
    pub(crate) backoff: &'a Backoff,
    pub(crate) fatal_close_codes: &'a [u16],
    /// The first reconnect after a stable connection waits the minimum backoff plus a random
    /// share of this spread.
    pub(crate) reconnect_spread: Duration,
}

/// The one place that decides a transition.
pub(crate) fn transition(at: At, event: Event, rules: &Rules, rng: &mut SplitMix64) -> Next {
    match (at, event) {
        (At::Closed, _) => Next::Stay,
        (_, Event::CloseNow) => Next::Closed(CloseReason::ByUser),
        (At::Connecting { attempt }, Event::Connected) => Next::Open { attempt },
        (At::Connecting { attempt }, Event::ConnectFailed { error, retryable }) => {
            if retryable {
                failed(attempt, Disconnect::ConnectFailed(error), rules, rng)
            } else {
                Next::Closed(CloseReason::Fatal(error))
            }
        }
        (
            At::Open { attempt },
            Event::ConnectionEnded {
                cause,
                by_user,
                stable,
            },
        ) => {
            if by_user {
                return Next::Closed(CloseReason::ByUser);
            }
            if let Disconnect::PeerClosed {
                code: Some(code),
                description,
            } = &cause
            {
                if rules.fatal_close_codes.contains(code) {
                    return Next::Closed(CloseReason::PeerClosed {
                        code: *code,
                        description: description.clone(),
                    });
                }
            }
            if stable {
                // The thousands of sockets a server restart drops come back spread out, and
                // not while the server is still restarting.
                let delay = rules.backoff.min() + Backoff::spread(rules.reconnect_spread, rng);
                Next::Backoff {
                    attempt: 1,
                    delay,
                    cause,
                }
            } else {
                failed(attempt, cause, rules, rng)
            }
        }
        (At::Backoff { attempt }, Event::BackoffElapsed) => Next::Connect {
            attempt: attempt.saturating_add(1),
        },
        // Anything else cannot happen in that state (a late callback of a state already left).
        _ => Next::Stay,
    }
}

/// `failures` attempts in a row have failed, the last for `cause`: back off or give up.
fn failed(failures: u32, cause: Disconnect, rules: &Rules, rng: &mut SplitMix64) -> Next {
    if rules.backoff.gives_up_after(failures) {
        Next::Closed(CloseReason::GaveUp {
            attempts: failures,
            last: cause,
        })
    } else {
        Next::Backoff {
            attempt: failures,
            delay: rules.backoff.delay(failures, rng),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)).max_attempts(3)
    }

    fn run(at: At, event: Event) -> Next {
        let backoff = backoff();
        let rules = Rules {
            backoff: &backoff,
            fatal_close_codes: &[4000],
            reconnect_spread: Duration::from_secs(2),
        };
        transition(at, event, &rules, &mut SplitMix64::new(7))
    }

    fn lost() -> Disconnect {
        Disconnect::ConnectionLost(None)
    }

    fn ended(by_user: bool, stable: bool) -> Event {
        Event::ConnectionEnded {
            cause: lost(),
            by_user,
            stable,
        }
    }

    fn refused() -> Error {
        Error::Connect("refused".into())
    }

    // One test per row of the README's state table.

    #[test]
    fn connecting_and_connected_is_open() {
        assert_eq!(
            run(At::Connecting { attempt: 2 }, Event::Connected),
            Next::Open { attempt: 2 }
        );
    }

    #[test]
    fn connecting_and_a_retryable_failure_backs_off_or_gives_up_at_the_limit() {
        let failed = |attempt| {
            run(
                At::Connecting { attempt },
                Event::ConnectFailed {
                    error: refused(),
                    retryable: true,
                },
            )
        };
        assert!(
            matches!(failed(1), Next::Backoff { attempt: 1, delay, .. } if delay <= Duration::from_millis(200))
        );
        assert!(matches!(failed(2), Next::Backoff { attempt: 2, .. }));
        assert_eq!(
            failed(3),
            Next::Closed(CloseReason::GaveUp {
                attempts: 3,
                last: Disconnect::ConnectFailed(refused())
            })
        );
    }

    #[test]
    fn connecting_and_a_fatal_failure_is_closed() {
        let error = Error::HandshakeStatus(401);
        assert_eq!(
            run(
                At::Connecting { attempt: 1 },
                Event::ConnectFailed {
                    error: error.clone(),
                    retryable: false
                }
            ),
            Next::Closed(CloseReason::Fatal(error))
        );
    }

    #[test]
    fn open_and_a_stable_connection_lost_starts_counting_afresh_after_the_spread() {
        let next = run(At::Open { attempt: 2 }, ended(false, true));
        match next {
            Next::Backoff {
                attempt: 1, delay, ..
            } => {
                assert!(delay >= Duration::from_millis(100));
                assert!(delay <= Duration::from_millis(2100));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn open_and_an_unstable_connection_lost_counts_as_a_failed_attempt() {
        assert!(matches!(
            run(At::Open { attempt: 2 }, ended(false, false)),
            Next::Backoff { attempt: 2, .. }
        ));
        assert!(matches!(
            run(At::Open { attempt: 3 }, ended(false, false)),
            Next::Closed(CloseReason::GaveUp { attempts: 3, .. })
        ));
    }

    #[test]
    fn open_and_a_fatal_close_code_is_closed() {
        let event = Event::ConnectionEnded {
            cause: Disconnect::PeerClosed {
                code: Some(4000),
                description: Some("banned".into()),
            },
            by_user: false,
            stable: true,
        };
        assert_eq!(
            run(At::Open { attempt: 1 }, event),
            Next::Closed(CloseReason::PeerClosed {
                code: 4000,
                description: Some("banned".into())
            })
        );
    }

    #[test]
    fn open_and_a_user_close_ends_closed_by_user() {
        assert_eq!(
            run(At::Open { attempt: 1 }, ended(true, false)),
            Next::Closed(CloseReason::ByUser)
        );
    }

    #[test]
    fn backoff_and_the_timer_is_the_next_attempt() {
        assert_eq!(
            run(At::Backoff { attempt: 2 }, Event::BackoffElapsed),
            Next::Connect { attempt: 3 }
        );
    }

    #[test]
    fn close_now_from_any_live_state_is_closed_by_user_and_closed_is_final() {
        for at in [
            At::Inactive,
            At::Connecting { attempt: 1 },
            At::Open { attempt: 1 },
            At::Backoff { attempt: 1 },
        ] {
            assert_eq!(run(at, Event::CloseNow), Next::Closed(CloseReason::ByUser));
        }
        for event in [
            Event::Connected,
            Event::BackoffElapsed,
            Event::CloseNow,
            ended(false, true),
        ] {
            assert_eq!(run(At::Closed, event), Next::Stay);
        }
    }

    #[test]
    fn late_events_of_a_state_already_left_change_nothing() {
        assert_eq!(run(At::Inactive, Event::Connected), Next::Stay);
        assert_eq!(run(At::Inactive, Event::BackoffElapsed), Next::Stay);
        assert_eq!(run(At::Open { attempt: 1 }, Event::Connected), Next::Stay);
        assert_eq!(
            run(At::Backoff { attempt: 1 }, ended(false, true)),
            Next::Stay
        );
        assert_eq!(
            run(At::Connecting { attempt: 1 }, Event::BackoffElapsed),
            Next::Stay
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            5 => Just(Event::Connected),
            5 => any::<bool>().prop_map(|retryable| Event::ConnectFailed {
                error: Error::Connect("x".into()),
                retryable
            }),
            5 => (any::<bool>(), any::<bool>(), prop::option::of(4000u16..4003)).prop_map(
                |(by_user, stable, code)| Event::ConnectionEnded {
                    cause: match code {
                        Some(code) => Disconnect::PeerClosed {
                            code: Some(code),
                            description: None
                        },
                        None => Disconnect::ConnectionLost(None),
                    },
                    by_user,
                    stable
                }
            ),
            5 => Just(Event::BackoffElapsed),
            1 => Just(Event::CloseNow),
        ]
    }

    /// Where `next` leaves a socket at `at`.
    fn apply(at: At, next: &Next) -> At {
        match next {
            Next::Stay => at,
            Next::Open { attempt } => At::Open { attempt: *attempt },
            Next::Connect { attempt } => At::Connecting { attempt: *attempt },
            Next::Backoff { attempt, .. } => At::Backoff { attempt: *attempt },
            Next::Closed(_) => At::Closed,
        }
    }

    proptest! {
        /// Whatever happens, in any order: Closed is final; the attempt count climbs by one
        /// per backoff, starts afresh only after a stable connection, and gives up at the
        /// limit; every delay is within the backoff's bounds (or the spread after a stable
        /// connection).
        #[test]
        fn invariants_hold_for_any_sequence_of_events(
            events in proptest::collection::vec(event(), 0..200),
            seed in any::<u64>(),
            limit in 1u32..6,
        ) {
            let backoff = Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))
                .max_attempts(limit);
            let spread = Duration::from_millis(500);
            let rules = Rules { backoff: &backoff, fatal_close_codes: &[4001], reconnect_spread: spread };
            let mut rng = SplitMix64::new(seed);
            let mut at = At::Connecting { attempt: 1 };
            for event in events {
                let stable_end = matches!(event, Event::ConnectionEnded { stable: true, .. });
                let next = transition(at, event, &rules, &mut rng);
                if at == At::Closed {
                    prop_assert_eq!(&next, &Next::Stay, "Closed is final");
                }
                match (&at, &next) {
                    (At::Backoff { attempt }, Next::Connect { attempt: n }) => prop_assert_eq!(*n, attempt + 1),
                    (At::Open { attempt }, Next::Backoff { attempt: n, delay, .. }) => {
                        if stable_end {
                            prop_assert_eq!(*n, 1);
                            prop_assert!(*delay <= Duration::from_millis(10) + spread);
                        } else {
                            prop_assert_eq!(n, attempt, "only a stable connection resets the count");
                            prop_assert!(*delay <= Duration::from_secs(1));
                        }
                    }
                    (At::Connecting { attempt }, Next::Backoff { attempt: n, delay, .. }) => {
                        prop_assert_eq!(n, attempt);
                        prop_assert!(*delay <= Duration::from_secs(1));
                    }
                    (_, Next::Backoff { .. }) => prop_assert!(false, "backoff from {:?}", at),
                    // (A lost stable connection counts as failure 1, so the attempt after it is
                    // number 2: the count can reach the limit + 1 once.)
                    (_, Next::Closed(CloseReason::GaveUp { attempts, .. })) => {
                        prop_assert!(*attempts == limit || *attempts == limit + 1)
                    }
                    _ => {}
                }
                if let At::Connecting { attempt } | At::Open { attempt } | At::Backoff { attempt } = at {
                    prop_assert!(attempt <= limit + 1, "attempt {} past the limit {}", attempt, limit);
                }
                at = apply(at, &next);
            }
        }
    }
}
