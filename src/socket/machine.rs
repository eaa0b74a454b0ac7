//! The socket's state transitions as one pure function: given where the socket is, what
//! happened, and the facts the actor gathered, the next state. No sockets, no timers, no
//! clock: the actor carries out what [`transition`] returns (start a connect, arm the backoff
//! timer, enter Open or Closed) and each state it enters owns its timers.

use std::time::Duration;

use crate::backoff::SplitMix64;
use crate::heartbeat::Tick;
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
    /// The heartbeat's verdict on the peer (a tick, or the recheck of a suspect), and whether
    /// the connection is closing (a close has its own deadline; the heartbeat does not judge).
    Heartbeat { tick: Tick, closing: bool },
    /// A deadline of the Open state passed.
    Overdue(Overdue),
    /// The application asked to close while not Open, without waiting (or its graceful close
    /// waited for an Open in vain).
    CloseNow,
}

/// A deadline of the Open state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Overdue {
    /// Acked mode: no welcome within the connect timeout.
    Welcome(Duration),
    /// Identify-then-wait: the server did not accept the identity within its timeout.
    Identify(Duration),
    /// The close handshake outlasted its deadline. `peer`: how the peer's Close said the
    /// connection ends, when the peer closed first and the application did not ask to close.
    Close { peer: Option<Disconnect> },
}

/// The next state, or what to do in this one, for the actor to carry out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Next {
    /// Nothing changes.
    Stay,
    /// Open: ping the peer (and send the keepalive).
    Ping,
    /// Open: the peer is suspect; read what is waiting, then judge again.
    Recheck,
    /// Open: the connection is over for `cause`; `error` goes to the error subscribers. Its
    /// end is then decided as [`Event::ConnectionEnded`].
    End {
        cause: Disconnect,
        error: Option<Error>,
    },
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
                        code: Some(*code),
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
        (At::Open { .. }, Event::Heartbeat { closing: true, .. }) => Next::Stay,
        (At::Open { .. }, Event::Heartbeat { tick, .. }) => match tick {
            Tick::Ping => Next::Ping,
            Tick::Suspect => Next::Recheck,
            Tick::Alive => Next::Stay,
            Tick::Dead(silent) => Next::End {
                cause: Disconnect::HeartbeatTimeout(silent),
                error: Some(Error::HeartbeatTimeout(silent)),
            },
        },
        (At::Open { .. }, Event::Overdue(overdue)) => overdue_end(overdue),
        // Anything else cannot happen in that state (a late callback of a state already left).
        _ => Next::Stay,
    }
}

/// How an Open connection whose deadline passed ends.
fn overdue_end(overdue: Overdue) -> Next {
    let lost = |error: Error| Next::End {
        cause: Disconnect::ConnectionLost(Some(error.clone())),
        error: Some(error),
    };
    match overdue {
        Overdue::Welcome(timeout) => lost(Error::Handshake(format!(
            "no welcome from the server within {timeout:?}: it does not speak the acked protocol, or its application is still taking this client's earlier messages"
        ))),
        Overdue::Identify(timeout) => lost(Error::Handshake(format!(
            "the server did not accept the identify messages within {timeout:?}"
        ))),
        // A peer's close just ends as the peer said; a user's close that timed out is not
        // clean.
        Overdue::Close { peer } => Next::End {
            cause: peer.unwrap_or_else(|| {
                Disconnect::ConnectionLost(Some(Error::Connection("close timed out".into())))
            }),
            error: None,
        },
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
                code: Some(4000),
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
mod open_rows {
    use super::*;

    fn open(event: Event) -> Next {
        let backoff = Backoff::default();
        let rules = Rules {
            backoff: &backoff,
            fatal_close_codes: &[],
            reconnect_spread: Duration::ZERO,
        };
        transition(
            At::Open { attempt: 1 },
            event,
            &rules,
            &mut SplitMix64::new(1),
        )
    }

    fn tick(tick: Tick) -> Event {
        Event::Heartbeat {
            tick,
            closing: false,
        }
    }

    // The README's "heartbeat tick" row: silent past the timeout → the connection ends (and
    // backs off); else Ping (+ keepalive).

    #[test]
    fn open_and_a_heartbeat_tick_pings() {
        assert_eq!(open(tick(Tick::Ping)), Next::Ping);
    }

    #[test]
    fn open_and_a_suspect_peer_is_rechecked_before_it_is_judged() {
        assert_eq!(open(tick(Tick::Suspect)), Next::Recheck);
        assert_eq!(open(tick(Tick::Alive)), Next::Stay);
    }

    #[test]
    fn open_and_a_dead_peer_ends_the_connection_with_a_heartbeat_timeout() {
        let silent = Duration::from_secs(12);
        assert_eq!(
            open(tick(Tick::Dead(silent))),
            Next::End {
                cause: Disconnect::HeartbeatTimeout(silent),
                error: Some(Error::HeartbeatTimeout(silent)),
            }
        );
    }

    #[test]
    fn open_and_closing_the_heartbeat_does_not_judge() {
        for tick in [
            Tick::Ping,
            Tick::Suspect,
            Tick::Dead(Duration::from_secs(60)),
        ] {
            let event = Event::Heartbeat {
                tick,
                closing: true,
            };
            assert_eq!(open(event), Next::Stay, "{tick:?}");
        }
    }

    #[test]
    fn open_and_no_welcome_or_no_acceptance_in_time_ends_with_a_handshake_error() {
        for (overdue, says) in [
            (
                Overdue::Welcome(Duration::from_secs(5)),
                "no welcome from the server within 5s",
            ),
            (
                Overdue::Identify(Duration::from_secs(2)),
                "did not accept the identify messages within 2s",
            ),
        ] {
            let Next::End {
                cause: Disconnect::ConnectionLost(Some(Error::Handshake(cause))),
                error: Some(Error::Handshake(error)),
            } = open(Event::Overdue(overdue))
            else {
                panic!("not a handshake error");
            };
            assert!(cause.contains(says) && error == cause, "{cause}");
        }
    }

    #[test]
    fn open_and_a_close_past_its_deadline_ends_as_the_peer_said_or_as_timed_out() {
        let peer = Disconnect::PeerClosed {
            code: Some(1001),
            description: None,
        };
        assert_eq!(
            open(Event::Overdue(Overdue::Close {
                peer: Some(peer.clone())
            })),
            Next::End {
                cause: peer,
                error: None
            }
        );
        assert!(matches!(
            open(Event::Overdue(Overdue::Close { peer: None })),
            Next::End {
                cause: Disconnect::ConnectionLost(Some(Error::Connection(e))),
                error: None,
            } if e == "close timed out"
        ));
    }

    #[test]
    fn heartbeats_and_deadlines_outside_open_change_nothing() {
        let backoff = Backoff::default();
        let rules = Rules {
            backoff: &backoff,
            fatal_close_codes: &[],
            reconnect_spread: Duration::ZERO,
        };
        for at in [
            At::Inactive,
            At::Connecting { attempt: 1 },
            At::Backoff { attempt: 1 },
            At::Closed,
        ] {
            for event in [
                tick(Tick::Dead(Duration::from_secs(60))),
                tick(Tick::Ping),
                Event::Overdue(Overdue::Close { peer: None }),
            ] {
                let next = transition(at, event, &rules, &mut SplitMix64::new(1));
                assert_eq!(next, Next::Stay, "{at:?}");
            }
        }
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
            5 => (0usize..4, any::<bool>()).prop_map(|(tick, closing)| Event::Heartbeat {
                tick: [Tick::Ping, Tick::Suspect, Tick::Alive, Tick::Dead(Duration::from_secs(3))][tick],
                closing,
            }),
            2 => (0usize..3).prop_map(|which| Event::Overdue(match which {
                0 => Overdue::Welcome(Duration::from_secs(1)),
                1 => Overdue::Identify(Duration::from_secs(1)),
                _ => Overdue::Close { peer: None },
            })),
        ]
    }

    /// Where `next` leaves a socket at `at`.
    fn apply(at: At, next: &Next) -> At {
        match next {
            // (An End is followed by the ConnectionEnded the actor then decides.)
            Next::Stay | Next::Ping | Next::Recheck | Next::End { .. } => at,
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
                let closing_tick = matches!(event, Event::Heartbeat { closing: true, .. });
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
                    (At::Open { .. }, Next::Ping | Next::Recheck | Next::End { .. }) => {
                        prop_assert!(!closing_tick, "the heartbeat does not judge a close")
                    }
                    (_, Next::Ping | Next::Recheck | Next::End { .. }) => {
                        prop_assert!(false, "{:?} outside Open (at {:?})", next, at)
                    }
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
