//! What the socket writes: one outbound WebSocket message.

use bytes::Bytes;
use bytestring::ByteString;
use serde::Serialize;

use crate::Error;

/// One outbound message: a text or a binary WebSocket message.
///
/// ```
/// use resocket::Outgoing;
///
/// let text = Outgoing::from("hello");
/// let json = Outgoing::json(&serde_json::json!({"op": "subscribe"})).unwrap();
/// assert_eq!(json.as_text(), Some(r#"{"op":"subscribe"}"#));
/// assert_eq!(text.len(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// A text message.
    Text(ByteString),
    /// A binary message.
    Binary(Bytes),
}

impl Outgoing {
    /// A text message holding `value` serialized with serde_json.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::to_string(value)
            .map(|s| Outgoing::Text(s.into()))
            .map_err(|e| Error::Encode(crate::Cause::from_error(e)))
    }

    /// The payload size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Outgoing::Text(t) => t.len(),
            Outgoing::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Outgoing::Text(t) => Some(t),
            Outgoing::Binary(_) => None,
        }
    }

    pub(crate) fn into_frame(self) -> awc::ws::Message {
        match self {
            Outgoing::Text(t) => awc::ws::Message::Text(t),
            Outgoing::Binary(b) => awc::ws::Message::Binary(b),
        }
    }
}

impl From<&str> for Outgoing {
    fn from(s: &str) -> Self {
        Outgoing::Text(ByteString::from(s))
    }
}

impl From<String> for Outgoing {
    fn from(s: String) -> Self {
        Outgoing::Text(ByteString::from(s))
    }
}

impl From<ByteString> for Outgoing {
    fn from(s: ByteString) -> Self {
        Outgoing::Text(s)
    }
}

impl From<serde_json::Value> for Outgoing {
    fn from(v: serde_json::Value) -> Self {
        Outgoing::Text(ByteString::from(v.to_string()))
    }
}

impl From<Bytes> for Outgoing {
    fn from(b: Bytes) -> Self {
        Outgoing::Binary(b)
    }
}

impl From<Vec<u8>> for Outgoing {
    fn from(b: Vec<u8>) -> Self {
        Outgoing::Binary(Bytes::from(b))
    }
}
