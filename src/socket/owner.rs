//! What a socket reports to the actor that owns it (a supervisor), through hooks the owner
//! provides: how it ended, what a replacement inherits, and its connection's ups and downs.
//! The socket depends on nothing of its owner; the owner depends on these types.

use actix::{Message, Recipient};

use super::Subscribers;
use crate::acked::AckedLink;
use crate::CloseReason;

/// How a socket's actor ended: what it reports to the actor that owns it (a supervisor
/// decides from it whether to restart the socket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketEnd {
    /// It reached Closed for this reason.
    Closed(CloseReason),
    /// One of its handlers panicked.
    Panicked,
    /// Its actor stopped without reaching Closed (e.g. its arbiter stopped).
    Stopped,
}

impl SocketEnd {
    /// Whether this end is abnormal (what `Transient` restarts after).
    pub fn is_abnormal(&self) -> bool {
        match self {
            SocketEnd::Closed(CloseReason::ByUser) => false,
            SocketEnd::Closed(CloseReason::PeerClosed { .. }) => false,
            SocketEnd::Closed(CloseReason::GaveUp { .. } | CloseReason::Fatal(_)) => true,
            SocketEnd::Panicked | SocketEnd::Stopped => true,
        }
    }
}

impl std::fmt::Display for SocketEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketEnd::Closed(reason) => write!(f, "closed: {reason}"),
            SocketEnd::Panicked => write!(f, "a handler panicked"),
            SocketEnd::Stopped => write!(f, "stopped"),
        }
    }
}

/// What a restarted socket takes over from the one that ended.
#[derive(Default)]
pub(crate) struct Inheritance {
    /// Messages not yet written, oldest first, with their delivery options.
    pub(crate) outbox: Vec<crate::outbox::Queued>,
    /// Requests waiting for their reply (their messages are in `outbox`, or in flight in
    /// acked mode): the new socket answers them.
    pub(crate) requests: Option<super::requests::Requests>,
    pub(crate) subscribers: Subscribers,
    /// Acked mode's sequence numbers and messages in flight.
    pub(crate) acked: Option<AckedLink>,
}

/// The hooks an owner (a supervisor) gives the socket it owns: the socket reports through
/// them and knows nothing else of its owner.
pub(crate) struct Owner {
    pub(crate) key: String,
    pub(crate) generation: u64,
    /// Told once, when the socket's actor stops (even after a panic).
    pub(crate) ended: Recipient<SocketEnded>,
    /// Told of every Open and every lost connection (the supervisor logs the summary).
    pub(crate) links: Recipient<LinkChanged>,
}

/// An owned socket has ended (sent by the socket's `stopped()`, even after a panic).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SocketEnded {
    pub(crate) key: String,
    pub(crate) generation: u64,
    pub(crate) end: SocketEnd,
    pub(crate) inheritance: Inheritance,
}

/// An owned socket's connection opened or was lost (sent on every change), so that the
/// supervisor can summarise an outage instead of every socket logging its own.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct LinkChanged {
    pub(crate) key: String,
    pub(crate) generation: u64,
    pub(crate) open: bool,
    /// Why it was lost.
    pub(crate) cause: Option<String>,
}
