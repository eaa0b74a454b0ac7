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

/// The largest scratch buffer [`Outgoing::json`] keeps between messages.
const SCRATCH_KEPT: usize = 64 * 1024;

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Outgoing {
    /// A text message holding `value` serialized with serde_json.
    ///
    /// The text is written into a per-thread scratch buffer and copied out at its exact size:
    /// one small allocation per message instead of serde_json's 128-byte start plus the
    /// `Bytes` header a partly filled `String` needs. Messages waiting in an outbox hold no
    /// slack, and the allocator serves them from its fast size classes.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        let encode = |e: serde_json::Error| Error::Encode(crate::Cause::from_error(e));
        SCRATCH.with(|scratch| {
            // A `Serialize` impl that itself calls `json` finds the buffer taken.
            let Ok(mut buf) = scratch.try_borrow_mut() else {
                return serde_json::to_string(value)
                    .map(|s| Outgoing::Text(s.into()))
                    .map_err(encode);
            };
            buf.clear();
            let written = serde_json::to_writer(&mut *buf, value).map_err(encode);
            let text = written.and_then(|()| {
                std::str::from_utf8(&buf)
                    .map(|text| Outgoing::Text(ByteString::from(text)))
                    .map_err(|e| Error::Encode(crate::Cause::from_error(e)))
            });
            if buf.capacity() > SCRATCH_KEPT {
                *buf = Vec::new(); // one huge message does not pin its buffer for ever
            }
            text
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Serializes an inner value with `Outgoing::json` while the outer one is being written:
    /// the scratch buffer is taken, so the inner call takes the fallback.
    struct Nested(u32);

    impl Serialize for Nested {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let inner = Outgoing::json(&self.0).map_err(serde::ser::Error::custom)?;
            s.serialize_str(inner.as_text().unwrap_or_default())
        }
    }

    #[test]
    fn json_is_exact_reentrant_and_keeps_no_huge_buffer() {
        let text = Outgoing::json(&serde_json::json!({"a": [1, 2], "b": "é"})).unwrap();
        assert_eq!(text.as_text(), Some(r#"{"a":[1,2],"b":"é"}"#));
        let nested = Outgoing::json(&vec![Nested(7), Nested(8)]).unwrap();
        assert_eq!(nested.as_text(), Some(r#"["7","8"]"#));
        let huge = "x".repeat(SCRATCH_KEPT * 2);
        assert_eq!(Outgoing::json(&huge).unwrap().len(), huge.len() + 2);
        SCRATCH.with(|s| assert!(s.borrow().capacity() <= SCRATCH_KEPT));
        // A value that cannot be serialized is an Encode error, and the buffer is still usable.
        let bad: std::collections::HashMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(matches!(Outgoing::json(&bad), Err(Error::Encode(_))));
        assert_eq!(Outgoing::json(&1).unwrap().as_text(), Some("1"));
    }
}
