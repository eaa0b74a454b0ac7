//! The socket's states as subscribers see them, with the reason for each.

use std::fmt;
use std::time::{Duration, Instant};

use crate::Error;

/// The state of a socket. Every change is published to state subscribers as a
/// [`StateChanged`](crate::StateChanged) event.
///
/// ```text
///            connect ok                    dropped / timed out / peer closed
/// Connecting ─────────────▶ Open ─────────────────────────────────▶ Backoff
///     ▲  │ failed (retryable)                                          │
///     │  └────────────────────────────────────────────────────────────▶│
///     └──────────────────────────── timer fired ───────────────────────┘
/// any state ── Close / fatal error / gave up ──▶ Closed (final)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketState {
    /// A connect attempt is under way; `attempt` counts from 1 since the last stable connection.
    Connecting {
        /// Which attempt this is.
        attempt: u32,
    },
    /// Connected and identify messages sent, waiting for the server to accept them before
    /// anything else is written (only with
    /// [`identify_until`](crate::SocketConfigBuilder::identify_until)); heartbeat running.
    Identifying {
        /// When the connection opened.
        since: Instant,
    },
    /// Connected: identify messages sent, outbox flowing, heartbeat running.
    Open {
        /// When the connection opened.
        since: Instant,
    },
    /// Waiting before the next attempt.
    Backoff {
        /// Consecutive failures so far (a connection lost after a stable uptime counts as 1).
        attempt: u32,
        /// When the next attempt starts.
        until: Instant,
        /// Why the last connection or attempt ended.
        cause: Disconnect,
    },
    /// Final: the socket will not connect again.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

impl SocketState {
    /// The state's name: `"connecting"`, `"identifying"`, `"open"`, `"backoff"` or `"closed"`.
    pub fn name(&self) -> &'static str {
        match self {
            SocketState::Connecting { .. } => "connecting",
            SocketState::Identifying { .. } => "identifying",
            SocketState::Open { .. } => "open",
            SocketState::Backoff { .. } => "backoff",
            SocketState::Closed { .. } => "closed",
        }
    }

    /// Whether this is `Open`.
    pub fn is_open(&self) -> bool {
        matches!(self, SocketState::Open { .. })
    }

    /// Whether this is `Closed`.
    pub fn is_closed(&self) -> bool {
        matches!(self, SocketState::Closed { .. })
    }
}

impl fmt::Display for SocketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketState::Connecting { attempt } => write!(f, "Connecting (attempt {attempt})"),
            SocketState::Identifying { .. } => write!(f, "Identifying"),
            SocketState::Open { .. } => write!(f, "Open"),
            SocketState::Backoff {
                attempt,
                until,
                cause,
            } => {
                let wait = until.saturating_duration_since(Instant::now());
                write!(
                    f,
                    "Backoff (failures {attempt}, retry in {wait:.1?}): {cause}"
                )
            }
            SocketState::Closed { reason } => write!(f, "Closed: {reason}"),
        }
    }
}

/// Why a connection (or a connect attempt) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// The connect attempt failed with this (retryable) error.
    ConnectFailed(Error),
    /// The peer sent nothing for this long.
    HeartbeatTimeout(Duration),
    /// The peer sent a Close frame.
    PeerClosed {
        /// The close code, if the peer gave one.
        code: Option<u16>,
        /// The close description, if any.
        description: Option<String>,
    },
    /// The connection ended without a Close frame (TCP FIN), or with an I/O or protocol error.
    ConnectionLost(Option<Error>),
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Disconnect::ConnectFailed(e) => write!(f, "{e}"),
            Disconnect::HeartbeatTimeout(d) => {
                write!(f, "heartbeat timeout: peer silent for {d:.1?}")
            }
            Disconnect::PeerClosed { code, description } => {
                write!(f, "peer closed")?;
                if let Some(code) = code {
                    write!(f, " with code {code}")?;
                }
                if let Some(d) = description {
                    write!(f, " ({d})")?;
                }
                Ok(())
            }
            Disconnect::ConnectionLost(None) => write!(f, "connection ended without a Close frame"),
            Disconnect::ConnectionLost(Some(e)) => write!(f, "connection lost: {e}"),
        }
    }
}

/// Why a socket closed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The application asked for it with [`Close`](crate::Close).
    ByUser,
    /// The backoff policy's attempt limit was reached.
    GaveUp {
        /// Consecutive failed attempts.
        attempts: u32,
        /// The last failure.
        last: Disconnect,
    },
    /// A failure that retrying cannot fix (bad handshake status, not a WebSocket endpoint,
    /// wrong subprotocol).
    Fatal(Error),
    /// The peer closed with a code configured as fatal
    /// ([`fatal_close_code`](crate::SocketConfigBuilder::fatal_close_code)).
    /// The same shape as [`Disconnect::PeerClosed`]; `code` is always set here (only a code
    /// closes for good).
    PeerClosed {
        /// The close code.
        code: Option<u16>,
        /// The close description, if any.
        description: Option<String>,
    },
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ByUser => write!(f, "closed by the application"),
            CloseReason::GaveUp { attempts, last } => {
                write!(f, "gave up after {attempts} attempts; last: {last}")
            }
            CloseReason::Fatal(e) => write!(f, "fatal: {e}"),
            CloseReason::PeerClosed { code, description } => {
                write!(f, "peer closed with fatal code")?;
                if let Some(code) = code {
                    write!(f, " {code}")?;
                }
                if let Some(d) = description {
                    write!(f, " ({d})")?;
                }
                Ok(())
            }
        }
    }
}
