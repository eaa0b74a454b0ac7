//! The one error type of the crate.

mod cause;

use std::fmt;
use std::time::Duration;

pub use self::cause::Cause;

/// Everything that can go wrong with a socket, each variant saying what the caller should do.
///
/// Errors are plain data (`Clone + Send + Sync`): they travel inside state changes and events to
/// subscribers on other threads. Errors from awc, rustls and serde_json are kept as a
/// [`Cause`]: their message, and the error itself as [`source`](std::error::Error::source).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid; `field` names the builder method. Fix the configuration:
    /// retrying cannot help.
    InvalidConfig {
        /// The builder method whose value is wrong, e.g. `"heartbeat"`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The TCP connection (or DNS lookup) failed: refused, unreachable, reset, too many open
    /// files. Retried with backoff.
    Connect(Cause),
    /// Connecting (TCP and handshake) took longer than the configured connect timeout. Retried.
    ConnectTimeout(Duration),
    /// The server answered the upgrade request with this HTTP status instead of 101.
    /// 5xx, 408 and 429 are retried; other statuses are fatal unless
    /// [`SocketConfigBuilder::retry_client_errors`](crate::SocketConfigBuilder::retry_client_errors)
    /// is set.
    HandshakeStatus(u16),
    /// The server's handshake response is not a WebSocket upgrade (bad or missing headers).
    /// Fatal: the URL does not point at a WebSocket endpoint.
    Handshake(String),
    /// The TLS handshake failed (a certificate that does not verify, a protocol mismatch).
    /// Fatal: retrying cannot fix a certificate; fix the trust store or the server.
    Tls(Cause),
    /// The server chose a subprotocol that was not offered. Fatal.
    Subprotocol {
        /// What the client offered.
        offered: Vec<String>,
        /// What the server chose.
        chosen: String,
    },
    /// The open connection failed (I/O or protocol error). The socket reconnects.
    Connection(Cause),
    /// No frame arrived from the peer for this long: the peer is dead or the path half-open.
    /// The socket reconnects.
    HeartbeatTimeout(Duration),
    /// An inbound message was larger than the configured maximum. It was discarded; the
    /// connection stays up.
    MessageTooLarge {
        /// The configured maximum in bytes.
        limit: usize,
    },
    /// An inbound text message was not valid UTF-8. It was discarded; the connection stays up.
    InvalidUtf8,
    /// An inbound text message could not be decoded into any subscribed type. It was
    /// discarded (raw text subscribers still got it); the connection stays up.
    Decode {
        /// The serde_json error (of the last subscriber type tried).
        error: Cause,
        /// The start of the offending message (at most 120 bytes).
        text: String,
    },
    /// A message could not be serialized to JSON. Nothing was sent.
    Encode(Cause),
    /// The outbox is full (policy `Reject`): the message is handed back with this error. Wait for
    /// the socket to drain (state Open) or raise the limits.
    OutboxFull {
        /// Messages the outbox holds at most.
        max_messages: usize,
        /// Bytes the outbox holds at most.
        max_bytes: usize,
    },
    /// A message would be written larger than the peer accepts
    /// ([`peer_max_message`](crate::SocketConfigBuilder::peer_max_message)); it is handed back.
    MessageTooLargeForPeer {
        /// The message's size as it would be written, in bytes.
        size: usize,
        /// The peer's limit.
        limit: usize,
    },
    /// In acked mode, the peer ended the connection over this message `attempts` times in a
    /// row (close `code`: 1003, 1007 or 1009); it was given up so the messages behind it flow.
    /// Reported as an event; the message is here, to log or to fix and send again.
    MessageRefused {
        /// The peer's last close code.
        code: u16,
        /// Connections it ended in a row.
        attempts: u32,
        /// The message.
        message: crate::Outgoing,
    },
    /// A message's time to live ([`Delivery::ttl`](crate::Delivery::ttl)) passed before it
    /// could be written: it was dropped. Reported as an event; the message is here.
    Expired {
        /// The message's time to live.
        ttl: Duration,
        /// The message.
        message: crate::Outgoing,
    },
    /// A [`Request`](crate::Request) got no reply within its timeout. A request not yet
    /// written is taken out of the outbox; one already written may still reach the peer.
    RequestTimeout(Duration),
    /// A [`Request`](crate::Request) was written and then the connection ended before its
    /// reply came: in the default mode it is not sent again (the peer may have acted on it).
    RequestLost,
    /// A [`Request`](crate::Request) that cannot be sent: requests are not enabled
    /// ([`requests`](crate::SocketConfigBuilder::requests)), the message is not JSON text, it
    /// has no id at the configured pointer, or a pending request has the same id.
    InvalidRequest(String),
    /// `max` requests already wait for their reply
    /// ([`max_pending_requests`](crate::SocketConfigBuilder::max_pending_requests)).
    TooManyRequests {
        /// The bound.
        max: usize,
    },
    /// More messages expired during an outage than are kept to be handed back in
    /// [`Error::Expired`] events (1,024): `count` more were dropped without theirs.
    /// [`Counters::expired`](crate::Counters::expired) counts them all.
    ExpiredUnreported {
        /// How many.
        count: usize,
    },
    /// A single message is larger than the whole outbox byte limit; it can never be queued.
    MessageTooLargeForOutbox {
        /// The message size in bytes.
        size: usize,
        /// The outbox byte limit.
        max_bytes: usize,
    },
    /// Messages were dropped from the outbox by the `DropOldest` or `DropNewest` policy.
    /// Reported as an event; `count` messages are gone. (A [`Request`](crate::Request) whose
    /// message is dropped, or taken by [`TakeOutbox`](crate::TakeOutbox), fails with it.)
    Dropped {
        /// How many messages were dropped by this event.
        count: usize,
    },
    /// In acked mode, the server's history no longer reached back far enough: its messages
    /// `from..=to` are lost. Reported as an event; the connection goes on.
    ResumeGap {
        /// The first lost server sequence number.
        from: u64,
        /// The last lost server sequence number.
        to: u64,
    },
    /// A [`credentials`](crate::SocketConfigBuilder::credentials) provider failed, or returned
    /// what cannot be used. Retried with backoff when `retryable`, fatal otherwise. The
    /// message never contains the credentials.
    Credentials {
        /// What went wrong.
        message: String,
        /// Whether another attempt may succeed.
        retryable: bool,
    },
    /// In acked mode, the server sent what it could not honestly have sent: a sequence jump
    /// (messages skipped without a reported gap), an ack or welcome for a message this client
    /// never sent, a number above [`MAX_SEQ`](crate::MAX_SEQ). Reported as an event; the
    /// connection is ended and resumed (the hello tells the server what arrived), so nothing
    /// is taken as delivered on the server's word alone.
    Protocol(String),
    /// A subscriber's mailbox was full and policy [`SlowSubscriber::Drop`](crate::SlowSubscriber)
    /// dropped messages for it (reported once per episode; [`Counters::lagged`](crate::Counters)
    /// counts them all). Make the subscriber faster, raise its mailbox capacity, or use
    /// `SlowSubscriber::Wait`.
    SubscriberLagging {
        /// Messages dropped when this was reported.
        dropped: usize,
    },
    /// A supervisor already has a socket with this key. Choose another key.
    DuplicateKey(String),
    /// A supervisor has no socket with this key.
    UnknownKey(String),
    /// (Feature `fleet`) Redis could not be reached, or refused the command.
    Redis(Cause),
    /// The socket is closing or closed: it accepts no more messages. The message is handed back.
    /// Not a fault as such; start a new socket to send again.
    Closed,
}

impl Error {
    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    /// Whether a connect attempt that failed with this error is worth retrying by default.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Credentials { retryable, .. } => *retryable,
            Error::Connect(_)
            | Error::ConnectTimeout(_)
            | Error::Connection(_)
            | Error::HeartbeatTimeout(_) => true,
            Error::HandshakeStatus(status) => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidConfig { field, reason } => {
                write!(f, "invalid configuration `{field}`: {reason}")
            }
            Error::Connect(msg) => write!(f, "connect failed: {msg}"),
            Error::ConnectTimeout(d) => write!(f, "connect timed out after {d:?}"),
            Error::HandshakeStatus(status) => {
                write!(
                    f,
                    "handshake refused: server answered HTTP {status} instead of 101"
                )
            }
            Error::Handshake(msg) => write!(f, "handshake failed: {msg}"),
            Error::Tls(msg) => write!(f, "TLS handshake failed: {msg}"),
            Error::Subprotocol { offered, chosen } => write!(
                f,
                "server chose subprotocol {chosen:?}, which was not offered (offered {offered:?})"
            ),
            Error::Connection(msg) => write!(f, "connection failed: {msg}"),
            Error::HeartbeatTimeout(d) => {
                write!(
                    f,
                    "no frame from the peer for {d:?}: connection presumed dead"
                )
            }
            Error::MessageTooLarge { limit } => {
                write!(f, "inbound message larger than {limit} bytes discarded")
            }
            Error::InvalidUtf8 => write!(f, "inbound text message is not valid UTF-8; discarded"),
            Error::Decode { error, text } => {
                write!(
                    f,
                    "inbound message could not be decoded ({error}): {text:?}"
                )
            }
            Error::Encode(msg) => write!(f, "message could not be serialized: {msg}"),
            Error::OutboxFull {
                max_messages,
                max_bytes,
            } => write!(
                f,
                "outbox full ({max_messages} messages / {max_bytes} bytes): message refused"
            ),
            Error::MessageTooLargeForOutbox { size, max_bytes } => write!(
                f,
                "message of {size} bytes exceeds the outbox byte limit of {max_bytes}"
            ),
            Error::Dropped { count } => {
                write!(f, "{count} message(s) dropped from the full outbox")
            }
            Error::Protocol(msg) => write!(f, "acked protocol violated by the server: {msg}"),
            Error::Credentials { message, retryable } => write!(
                f,
                "credentials provider: {message}{}",
                if *retryable { " (retrying)" } else { "" }
            ),
            Error::MessageTooLargeForPeer { size, limit } => write!(
                f,
                "message of {size} bytes (as written) is larger than the peer accepts ({limit} bytes)"
            ),
            Error::RequestTimeout(d) => write!(f, "no reply to the request within {d:?}"),
            Error::RequestLost => write!(
                f,
                "the connection ended after the request was written and before its reply; it was not sent again"
            ),
            Error::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            Error::TooManyRequests { max } => {
                write!(f, "{max} requests already wait for their reply")
            }
            Error::ExpiredUnreported { count } => write!(
                f,
                "{count} more messages expired before they could be written and were dropped"
            ),
            Error::Expired { ttl, message } => write!(
                f,
                "a message of {} bytes was not written within its time to live of {ttl:?}; it was dropped",
                message.len()
            ),
            Error::MessageRefused {
                code,
                attempts,
                message,
            } => write!(
                f,
                "the peer closed the connection ({code}) over a message of {} bytes {attempts} times in a row; it was given up",
                message.len()
            ),
            Error::ResumeGap { from, to } => write!(
                f,
                "server messages {from}..={to} are lost: its history no longer reaches back"
            ),
            Error::SubscriberLagging { dropped } => write!(
                f,
                "a subscriber cannot keep up: {dropped} message(s) dropped for it"
            ),
            Error::DuplicateKey(key) => write!(f, "a socket with key {key:?} already exists"),
            Error::UnknownKey(key) => write!(f, "no socket with key {key:?}"),
            Error::Redis(cause) => write!(f, "Redis: {cause}"),
            Error::Closed => write!(f, "socket is closing or closed"),
        }
    }
}

impl std::error::Error for Error {
    /// The underlying error of a [`Cause`], where there is one.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(cause)
            | Error::Tls(cause)
            | Error::Connection(cause)
            | Error::Encode(cause)
            | Error::Redis(cause)
            | Error::Decode { error: cause, .. } => cause.source(),
            _ => None,
        }
    }
}
