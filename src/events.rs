//! What a socket tells its subscribers.

use actix::Message;
use bytes::Bytes;
use bytestring::ByteString;

use crate::{Error, SocketState};

/// Which socket an event comes from: its supervisor key, the name given with
/// [`SocketConfigBuilder::name`](crate::SocketConfigBuilder::name), or `socket-N` (unique in
/// the process) for a bare unnamed socket. One subscriber can serve many sockets and tell
/// them apart by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(std::sync::Arc<str>);

impl SocketId {
    /// An id with this text.
    pub fn new(id: impl Into<std::sync::Arc<str>>) -> Self {
        SocketId(id.into())
    }

    /// A fresh `socket-N` id.
    pub(crate) fn next() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SocketId::new(format!("socket-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SocketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Default for SocketId {
    fn default() -> Self {
        SocketId::next()
    }
}

/// The socket changed state. Sent to [`Subscribe::states`](crate::Subscribe::states)
/// subscribers, who also get the current state when they subscribe.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StateChanged {
    /// The new state, with its reason.
    pub state: SocketState,
    /// The socket.
    pub socket: SocketId,
}

/// A text message decoded into `T`. Sent to [`Subscribe::to`](crate::Subscribe::to)
/// subscribers. A message that decodes into none of the subscribed types is not sent here:
/// error subscribers get an [`Error::Decode`](crate::Error::Decode) with the serde error and
/// the start of the text, raw text subscribers still get the text, and the connection stays
/// up. To see every message whatever its shape, subscribe to `serde_json::Value` or to text.
#[derive(Debug, Clone)]
pub struct Inbound<T>(pub T, pub SocketId);

impl<T: 'static> Message for Inbound<T> {
    type Result = ();
}

/// A raw inbound text message (valid UTF-8). Sent to
/// [`Subscribe::text`](crate::Subscribe::text) subscribers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct InboundText(pub ByteString, pub SocketId);

/// A raw inbound binary message. Sent to [`Subscribe::binary`](crate::Subscribe::binary)
/// subscribers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct InboundBinary(pub Bytes, pub SocketId);

/// Something went wrong that did not change the state: a message that could not be decoded,
/// was too large or not UTF-8, messages dropped from the outbox, a failed connect attempt.
/// Sent to [`Subscribe::errors`](crate::Subscribe::errors) subscribers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ErrorOccurred(pub Error, pub SocketId);
