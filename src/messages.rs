//! What an application tells a socket: send, subscribe, close, query.

use std::fmt;
use std::time::Duration;

use actix::{Message, Recipient};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::subscribers::{Subscription, TypedRecipient};
use crate::{
    Delivery, Error, ErrorOccurred, Inbound, InboundBinary, InboundText, Outgoing, SocketState,
    StateChanged,
};

/// Send one message. While the socket is Open it is written at once (behind the identify
/// messages and anything queued earlier); otherwise it waits in the outbox, in order, for the
/// next Open. A refusal hands the message back inside [`SendError`].
///
/// ```
/// # fn demo(socket: actix::Addr<resocket::SocketActor>) -> Result<(), resocket::Error> {
/// use resocket::SendMessage;
/// socket.do_send(SendMessage::text("hello"));
/// socket.do_send(SendMessage::json(&serde_json::json!({"op": "ping"}))?);
/// # Ok(()) }
/// ```
///
/// [`with`](SendMessage::with) adds delivery options: a time to live and a collapse key
/// ([`Delivery`]).
#[derive(Debug, Clone)]
pub struct SendMessage {
    /// The message.
    pub message: Outgoing,
    /// Its delivery options (none by default).
    pub delivery: Delivery,
}

impl SendMessage {
    /// `message`, with no delivery options.
    pub fn new(message: impl Into<Outgoing>) -> Self {
        SendMessage {
            message: message.into(),
            delivery: Delivery::default(),
        }
    }

    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        SendMessage::new(Outgoing::from(text.into()))
    }

    /// A binary message.
    pub fn binary(data: impl Into<bytes::Bytes>) -> Self {
        SendMessage::new(Outgoing::Binary(data.into()))
    }

    /// `value` serialized with serde_json, as a text message.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        Outgoing::json(value).map(SendMessage::new)
    }

    /// The same message with these delivery options.
    pub fn with(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }
}

impl Message for SendMessage {
    type Result = Result<(), SendError>;
}

/// Send a request and wait for its reply, correlated by the id field named with
/// [`requests`](crate::SocketConfigBuilder::requests) (JSON-RPC style): the request carries its
/// id, and the first inbound message with the same id answers it, parsed. The reply is not
/// delivered to subscribers; a reply to an unknown (or timed-out) id is an ordinary message.
///
/// The request is queued like any [`SendMessage`], in order. Its outcomes, each handing the request
/// back inside [`SendError`]: the reply; [`Error::RequestTimeout`] (a request still queued is
/// taken out of the outbox, so it is never written after its caller gave up; one written may
/// still reach the peer); [`Error::RequestLost`] when, in the default mode, the connection
/// ended after it was written (it is not resent: the peer may have acted on it; in acked mode
/// it is resent and answered after the reconnect); [`Error::Closed`] when the socket closes
/// first; a refusal as for `SendMessage`, or [`Error::InvalidRequest`] / [`Error::TooManyRequests`].
///
/// ```
/// # use std::time::Duration;
/// # async fn demo(socket: actix::Addr<resocket::SocketActor>) -> Result<(), Box<dyn std::error::Error>> {
/// use resocket::Request;
/// let call = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "time"});
/// let reply = socket.send(Request::json(&call, Duration::from_secs(5))?).await??;
/// println!("{}", reply["result"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Request {
    /// The request, its id inside.
    pub message: Outgoing,
    /// How long to wait for the reply (counted from the request).
    pub timeout: Duration,
}

impl Request {
    /// A request of `message` (JSON text carrying its id).
    pub fn new(message: impl Into<Outgoing>, timeout: Duration) -> Self {
        Request {
            message: message.into(),
            timeout,
        }
    }

    /// `value` serialized with serde_json as the request.
    pub fn json<T: Serialize + ?Sized>(value: &T, timeout: Duration) -> Result<Self, Error> {
        Outgoing::json(value).map(|message| Request::new(message, timeout))
    }
}

impl Message for Request {
    type Result = Result<serde_json::Value, SendError>;
}

/// Send one message, waiting while the outbox is full (policy `Reject`) until there is room:
/// the actor-message form of [`Sender::send_wait`](crate::Sender::send_wait). Other refusals
/// come back at once. Messages waiting for room are not ordered among themselves or against
/// later [`SendMessage`]s; await each before the next when order matters.
#[derive(Debug, Clone)]
pub struct SendWhenRoom(pub Outgoing);

impl SendWhenRoom {
    /// A text message.
    pub fn text(text: impl Into<String>) -> Self {
        SendWhenRoom(Outgoing::Text(text.into().into()))
    }
}

impl Message for SendWhenRoom {
    type Result = Result<(), SendError>;
}

/// Queue several messages in order, taking the outbox's lock once: the actor-message form of
/// [`Sender::send_batch`](crate::Sender::send_batch), and what a producer holding many
/// messages sends instead of one [`SendMessage`] each (one trip through the mailbox for all).
/// Refused part-way, the messages not queued come back in a [`BatchError`].
///
/// ```no_run
/// # async fn demo(socket: actix::Addr<resocket::SocketActor>) -> Result<(), Box<dyn std::error::Error>> {
/// use resocket::{Outgoing, SendBatch};
/// let batch = vec![Outgoing::from("a"), Outgoing::from("b"), Outgoing::from("c")];
/// socket.send(SendBatch(batch)).await??;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SendBatch(pub Vec<Outgoing>);

impl Message for SendBatch {
    type Result = Result<(), BatchError>;
}

/// A batch the socket took only part of ([`SendBatch`], [`Sender::send_batch`](crate::Sender::send_batch)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// Why the first of [`unsent`](Self::unsent) was refused.
    pub error: Error,
    /// How many messages, from the start of the batch, were queued.
    pub queued: usize,
    /// The messages not queued, in order: the one refused first, then every later one.
    pub unsent: Vec<Outgoing>,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of a batch of {} messages not sent: {}",
            self.unsent.len(),
            self.queued + self.unsent.len(),
            self.error
        )
    }
}

impl std::error::Error for BatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// A message the socket would not take, handed back with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Why: [`Error::OutboxFull`], [`Error::MessageTooLargeForOutbox`] or [`Error::Closed`].
    pub error: Error,
    /// The message, untouched.
    pub message: Outgoing,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "message of {} bytes not sent: {}",
            self.message.len(),
            self.error
        )
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// Subscribe an actor to what the socket receives or reports. Recipients that have stopped
/// are pruned.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub(crate) Subscription);

impl Subscribe {
    /// Text messages decoded into `T` with serde_json. A message that no typed subscriber can
    /// decode is reported to the error subscribers as [`Error::Decode`].
    pub fn to<T>(recipient: Recipient<Inbound<T>>) -> Self
    where
        T: DeserializeOwned + std::marker::Send + 'static,
    {
        Subscribe(Subscription::Typed(Box::new(TypedRecipient::new(
            recipient,
        ))))
    }

    /// Raw text messages.
    pub fn text(recipient: Recipient<InboundText>) -> Self {
        Subscribe(Subscription::Text(recipient))
    }

    /// Raw binary messages.
    pub fn binary(recipient: Recipient<InboundBinary>) -> Self {
        Subscribe(Subscription::Binary(recipient))
    }

    /// State changes; the current state is sent at once.
    pub fn states(recipient: Recipient<StateChanged>) -> Self {
        Subscribe(Subscription::States(recipient))
    }

    /// Errors that do not change the state (decode failures, oversized or invalid messages,
    /// dropped messages, failed connect attempts).
    pub fn errors(recipient: Recipient<ErrorOccurred>) -> Self {
        Subscribe(Subscription::Errors(recipient))
    }
}

impl fmt::Debug for Subscribe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Subscribe").field(&self.0.kind()).finish()
    }
}

/// Close the socket for good: state Closed{ByUser}, no reconnect.
///
/// While Open it sends a Close frame (code 1000) and waits, up to the timeout, for the peer's
/// Close or FIN so that the frame really leaves (awc loses it otherwise). With
/// [`Close::graceful`] the outbox is written first. Messages still in the outbox afterwards stay
/// there: [`CloseReport::unsent`] counts them and [`TakeOutbox`] returns them.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "CloseReport")]
pub struct Close {
    pub(crate) drain: bool,
    pub(crate) timeout: Option<Duration>,
}

impl Close {
    /// Write the outbox, then the Close frame; give up on both after `timeout`. From
    /// Connecting or Backoff it first waits, within the same timeout, for the connection to
    /// open, so that what was sent before it still leaves; if it never opens, the socket
    /// closes at the timeout with the outbox kept (`clean: false`). New messages are refused
    /// from the moment it is asked.
    pub fn graceful(timeout: Duration) -> Self {
        Close {
            drain: true,
            timeout: Some(timeout),
        }
    }

    /// Send the Close frame at once (waiting up to the configured close timeout for the peer);
    /// the outbox is kept, not written.
    pub fn now() -> Self {
        Close {
            drain: false,
            timeout: None,
        }
    }

    /// As [`now`](Close::now), but waiting at most `timeout` for the peer's answer: the
    /// connection is gone by then, whatever the peer does (a fleet giving up a key's lease
    /// needs that bound).
    pub fn now_within(timeout: Duration) -> Self {
        Close {
            drain: false,
            timeout: Some(timeout),
        }
    }
}

/// How a [`Close`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReport {
    /// Whether the peer answered our Close (or closed the TCP connection) before the deadline.
    /// False when the socket was not Open.
    pub clean: bool,
    /// Messages left in the outbox (in acked mode, with those not yet acknowledged).
    pub unsent: usize,
}

/// Ask for the socket's [`Status`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Status")]
pub struct GetStatus;

/// A snapshot of a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The current state.
    pub state: SocketState,
    /// Messages waiting in the outbox.
    pub outbox_len: usize,
    /// Payload bytes waiting in the outbox.
    pub outbox_bytes: usize,
    /// In acked mode, messages written and not yet acknowledged (0 otherwise).
    pub unacked: usize,
    /// Subscriptions held (those of stopped actors are pruned at every delivery and heartbeat).
    pub subscribers: usize,
    /// [`Request`]s waiting for their reply.
    pub pending_requests: usize,
    /// The latest heartbeat Ping's round trip (Ping written to Pong read), once measured.
    pub ping_rtt: Option<Duration>,
    /// Lifetime counters.
    pub counters: Counters,
}

/// A socket's lifetime counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections opened.
    pub connects: u64,
    /// Connections opened after the first one.
    pub reconnects: u64,
    /// Connect attempts that failed.
    pub connect_failures: u64,
    /// Whole inbound data messages received.
    pub messages_in: u64,
    /// Data messages written to a connection (identify and keepalive messages included).
    pub messages_out: u64,
    /// Messages dropped by the outbox overflow policy.
    pub dropped: u64,
    /// Inbound messages discarded (too large, invalid UTF-8, undecodable).
    pub discarded: u64,
    /// In acked mode, inbound duplicates dropped (resent by the server after a reconnect).
    pub duplicates: u64,
    /// Deliveries dropped because a subscriber's mailbox was full (policy `Drop`).
    pub lagged: u64,
    /// Times reading paused because a subscriber's mailbox was full (policy `Wait`).
    pub waited: u64,
    /// Sends refused, by [`SendMessage`] or a [`Sender`](crate::Sender) (each message a batch
    /// handed back counts): outbox full, socket
    /// closed, message too large, binary in acked mode. (Each refusal also hands the message
    /// back to its sender; `do_send(SendMessage…)` discards that answer, so count on this.)
    pub refused: u64,
    /// Error events an error subscriber missed because its mailbox was full.
    pub errors_lost: u64,
    /// Messages dropped because their time to live passed before they could be written
    /// ([`Delivery::ttl`](crate::Delivery::ttl)).
    pub expired: u64,
    /// Queued messages replaced by a newer one with the same collapse key
    /// ([`Delivery::collapse_key`](crate::Delivery::collapse_key)).
    pub collapsed: u64,
}

/// Ask for a [`Sender`](crate::Sender): a handle that queues messages into this socket's
/// outbox directly, without a trip through the mailbox.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "crate::Sender")]
pub struct GetSender;

/// Take every message left in the outbox (oldest first), e.g. after Closed, to send them
/// elsewhere.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Vec<Outgoing>")]
pub struct TakeOutbox;
