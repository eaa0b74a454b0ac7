//! What a socket tells its subscribers.

use actix::Message;
use bytes::Bytes;
use bytestring::ByteString;

use crate::{Error, SocketState};

/// The socket changed state. Sent to [`Subscribe::states`](crate::Subscribe::states)
/// subscribers, who also get the current state when they subscribe.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct StateChanged {
    /// The new state, with its reason.
    pub state: SocketState,
}

/// A text message decoded into `T`. Sent to [`Subscribe::to`](crate::Subscribe::to)
/// subscribers. A message that decodes into none of the subscribed types is not sent here:
/// error subscribers get an [`Error::Decode`](crate::Error::Decode) with the serde error and
/// the start of the text, raw text subscribers still get the text, and the connection stays
/// up. To see every message whatever its shape, subscribe to `serde_json::Value` or to text.
#[derive(Debug, Clone)]
pub struct Inbound<T>(pub T);

impl<T: 'static> Message for Inbound<T> {
    type Result = ();
}

/// A raw inbound text message (valid UTF-8). Sent to
/// [`Subscribe::text`](crate::Subscribe::text) subscribers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct InboundText(pub ByteString);

/// A raw inbound binary message. Sent to [`Subscribe::binary`](crate::Subscribe::binary)
/// subscribers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct InboundBinary(pub Bytes);

/// Something went wrong that did not change the state: a message that could not be decoded,
/// was too large or not UTF-8, messages dropped from the outbox, a failed connect attempt.
/// Sent to [`Subscribe::errors`](crate::Subscribe::errors) subscribers.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ErrorOccurred(pub Error);
