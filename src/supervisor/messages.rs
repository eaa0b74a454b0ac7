//! What an application sends a supervisor, and what a supervisor reports.

use std::time::Duration;

use actix::{Addr, Message, Recipient};

use crate::{
    CloseReport, Error, Outgoing, RestartPolicy, SendError, SocketActor, SocketConfig, SocketEnd,
    Subscribe,
};

/// Start a socket under the supervisor, on one of its arbiters. Fails with
/// [`Error::DuplicateKey`] if the key is taken.
///
/// ```
/// use resocket::{RestartPolicy, SocketConfig, StartSocket};
/// let config = SocketConfig::builder("ws://127.0.0.1:9000/feed").build().unwrap();
/// let start = StartSocket::new("feed", config).policy(RestartPolicy::Transient);
/// ```
#[derive(Message)]
#[rtype(result = "Result<Addr<SocketActor>, Error>")]
pub struct StartSocket {
    pub(crate) key: String,
    pub(crate) config: SocketConfig,
    pub(crate) policy: RestartPolicy,
    pub(crate) subscriptions: Vec<Subscribe>,
}

impl StartSocket {
    /// A socket named `key` for `config`, policy Permanent, no subscribers.
    pub fn new(key: impl Into<String>, config: SocketConfig) -> Self {
        StartSocket {
            key: key.into(),
            config,
            policy: RestartPolicy::default(),
            subscriptions: Vec::new(),
        }
    }

    /// The restart policy. Defaults to [`RestartPolicy::Permanent`].
    pub fn policy(mut self, policy: RestartPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A subscription made before the socket starts (so no event is missed); kept across
    /// restarts (repeatable).
    pub fn subscribe(mut self, subscription: Subscribe) -> Self {
        self.subscriptions.push(subscription);
        self
    }
}

impl std::fmt::Debug for StartSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartSocket")
            .field("key", &self.key)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Subscribe once to every socket of the supervisor: those it owns now and every one started
/// later (restarts keep their subscribers anyway). Each event names its socket by key
/// ([`SocketId`](crate::SocketId)), so one actor can serve them all.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubscribeAll(pub Subscribe);

impl std::fmt::Debug for SubscribeAll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SubscribeAll").field(&self.0).finish()
    }
}

/// Close a socket (Close frame, bounded wait) and forget it; no restart. `None` if the key is
/// unknown.
///
/// ```
/// use std::time::Duration;
/// let stop = resocket::StopSocket::new("feed").within(Duration::from_millis(200));
/// assert_eq!(stop.key(), "feed");
/// ```
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<CloseReport>")]
pub struct StopSocket {
    pub(crate) key: String,
    pub(crate) within: Option<Duration>,
}

impl StopSocket {
    /// Stop the socket named `key`, waiting for the peer's answer up to the socket's close
    /// timeout.
    pub fn new(key: impl Into<String>) -> Self {
        StopSocket {
            key: key.into(),
            within: None,
        }
    }

    /// Wait at most `timeout` for the peer's answer ([`Close::now_within`](crate::Close::now_within)).
    pub fn within(mut self, timeout: Duration) -> Self {
        self.within = Some(timeout);
        self
    }

    /// The socket's key.
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The current address of a socket (it changes when the socket is restarted).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Option<Addr<SocketActor>>")]
pub struct GetSocket(pub String);

/// The keys of every socket, sorted.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<String>")]
pub struct ListSockets;

/// Send a message to the socket with this key. A message that meets a socket between its end
/// and its restart is kept and handed to the restarted socket, after the outbox it inherits.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<(), SendError>")]
pub struct SendTo {
    /// The socket's key.
    pub key: String,
    /// The message.
    pub message: Outgoing,
}

/// Ask for the aggregate [`SupervisorStats`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "SupervisorStats")]
pub struct GetSupervisorStats;

/// Totals over every socket of a supervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    /// Sockets supervised.
    pub sockets: usize,
    /// Sockets in Connecting.
    pub connecting: usize,
    /// Sockets in Identifying.
    pub identifying: usize,
    /// Sockets in Open.
    pub open: usize,
    /// Sockets in Backoff.
    pub backoff: usize,
    /// Sockets in Closed (about to end) or not answering.
    pub closed: usize,
    /// Connections opened (by current socket instances).
    pub connects: u64,
    /// Reconnects (by current socket instances).
    pub reconnects: u64,
    /// Inbound messages (by current socket instances).
    pub messages_in: u64,
    /// Outbound messages (by current socket instances).
    pub messages_out: u64,
    /// Messages waiting in outboxes.
    pub outbox: usize,
    /// Messages dropped by outbox policies (by current socket instances).
    pub dropped: u64,
    /// Restarts since the supervisor started.
    pub restarts: u64,
}

/// Subscribe to [`SupervisionEvent`]s.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SubscribeSupervision(pub Recipient<SupervisionEvent>);

/// Close every socket gracefully ([`Close::graceful`](crate::Close::graceful): each writes
/// what it holds, then its Close frame, all within `timeout`), then stop the supervisor and
/// its arbiters. What a socket could not write in time is lost with it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// How long to wait for the sockets to close.
    pub timeout: Duration,
}

/// What a supervisor reports to its subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum SupervisionEvent {
    /// A socket was started by [`StartSocket`].
    ChildStarted {
        /// Its key.
        key: String,
    },
    /// A socket ended.
    SocketEnded {
        /// Its key.
        key: String,
        /// How.
        end: SocketEnd,
        /// Whether it will be restarted.
        restarting: bool,
        /// Messages that were waiting in its outbox (handed to the restarted socket, or lost
        /// when it is not restarted).
        unsent: usize,
    },
    /// A socket was restarted with the outbox and subscribers of the one that ended.
    ChildRestarted {
        /// Its key.
        key: String,
        /// How often this key has been restarted.
        restarts: u32,
    },
    /// A socket was stopped by [`StopSocket`].
    ChildStopped {
        /// Its key.
        key: String,
    },
    /// More restarts than the intensity allows: the supervisor stopped every socket and itself.
    IntensityExceeded {
        /// The restarts allowed…
        max_restarts: u32,
        /// …within this window.
        within: Duration,
        /// The socket whose end broke the limit.
        key: String,
    },
}
