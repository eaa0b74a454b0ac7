//! Turns inbound frames into whole messages: fragments joined under a size cap, text validated
//! as UTF-8. Pure logic.

use actix_http::ws::{CloseReason, Frame, Item};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use crate::frame_guard::Position;
use crate::Error;

/// A whole inbound message or control frame.
#[derive(Debug, PartialEq)]
pub(crate) enum Received {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<CloseReason>),
}

#[derive(Debug)]
enum Partial {
    None,
    Collecting {
        text: bool,
        buf: BytesMut,
    },
    /// An over-long message is being skipped until its last fragment.
    Discarding,
}

/// Joins fragments; one per connection.
#[derive(Debug)]
pub(crate) struct Reassembler {
    max: usize,
    partial: Partial,
}

impl Reassembler {
    pub(crate) fn new(max: usize) -> Self {
        Reassembler {
            max,
            partial: Partial::None,
        }
    }

    /// Feeds one frame. `Ok(None)` means a fragment was taken and the message is not complete.
    /// An error means one message was discarded; the connection can go on.
    pub(crate) fn frame(&mut self, frame: Frame) -> Result<Option<Received>, Error> {
        match frame {
            Frame::Text(bytes) => self.whole(true, bytes).map(Some),
            Frame::Binary(bytes) => self.whole(false, bytes).map(Some),
            Frame::Ping(bytes) => Ok(Some(Received::Ping(bytes))),
            Frame::Pong(bytes) => Ok(Some(Received::Pong(bytes))),
            Frame::Close(reason) => Ok(Some(Received::Close(reason))),
            Frame::Continuation(item) => self.fragment(item),
        }
    }

    /// A frame was refused as too large at its header (its payload skipped): the message it
    /// belongs to is discarded. The error is returned once per message (None for a later
    /// fragment of a message already refused).
    pub(crate) fn oversized_frame(&mut self, position: Position) -> Option<Error> {
        let already_reported =
            matches!(self.partial, Partial::Discarding) && position != Position::First;
        self.partial = match position {
            Position::Whole | Position::Last => Partial::None,
            Position::First | Position::Middle => Partial::Discarding,
        };
        (!already_reported).then_some(Error::MessageTooLarge { limit: self.max })
    }

    fn whole(&self, text: bool, bytes: Bytes) -> Result<Received, Error> {
        if bytes.len() > self.max {
            return Err(Error::MessageTooLarge { limit: self.max });
        }
        if text {
            ByteString::try_from(bytes)
                .map(Received::Text)
                .map_err(|_| Error::InvalidUtf8)
        } else {
            Ok(Received::Binary(bytes))
        }
    }

    fn fragment(&mut self, item: Item) -> Result<Option<Received>, Error> {
        match item {
            Item::FirstText(bytes) => self.start(true, bytes),
            Item::FirstBinary(bytes) => self.start(false, bytes),
            Item::Continue(bytes) => {
                self.append(bytes)?;
                Ok(None)
            }
            Item::Last(bytes) => {
                let discarding = matches!(self.partial, Partial::Discarding);
                self.append(bytes)?;
                match std::mem::replace(&mut self.partial, Partial::None) {
                    Partial::Collecting { text, buf } => self.whole(text, buf.freeze()).map(Some),
                    Partial::Discarding if discarding => Ok(None),
                    _ => Ok(None),
                }
            }
        }
    }

    fn start(&mut self, text: bool, bytes: Bytes) -> Result<Option<Received>, Error> {
        // The codec rejects a new first fragment while one is open, so any leftover here was
        // abandoned (by an oversized frame): start afresh.
        self.partial = Partial::Collecting {
            text,
            buf: BytesMut::new(),
        };
        self.append(bytes)?;
        Ok(None)
    }

    fn append(&mut self, bytes: Bytes) -> Result<(), Error> {
        match &mut self.partial {
            Partial::Collecting { buf, .. } => {
                if buf.len() + bytes.len() > self.max {
                    self.partial = Partial::Discarding;
                    return Err(Error::MessageTooLarge { limit: self.max });
                }
                buf.extend_from_slice(&bytes);
                Ok(())
            }
            Partial::Discarding | Partial::None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &[u8]) -> Bytes {
        Bytes::copy_from_slice(s)
    }

    #[test]
    fn whole_text_is_validated() {
        let mut r = Reassembler::new(100);
        assert_eq!(
            r.frame(Frame::Text(b(b"hi"))).unwrap(),
            Some(Received::Text("hi".into()))
        );
        assert_eq!(
            r.frame(Frame::Text(b(&[0xff, 0xfe]))).unwrap_err(),
            Error::InvalidUtf8
        );
        assert_eq!(
            r.frame(Frame::Binary(b(&[0xff]))).unwrap(),
            Some(Received::Binary(b(&[0xff])))
        );
    }

    #[test]
    fn fragments_are_joined() {
        let mut r = Reassembler::new(100);
        assert_eq!(
            r.frame(Frame::Continuation(Item::FirstText(b(b"he"))))
                .unwrap(),
            None
        );
        // A control frame may arrive between fragments.
        assert_eq!(
            r.frame(Frame::Ping(b(b"p"))).unwrap(),
            Some(Received::Ping(b(b"p")))
        );
        assert_eq!(
            r.frame(Frame::Continuation(Item::Continue(b(b"ll"))))
                .unwrap(),
            None
        );
        assert_eq!(
            r.frame(Frame::Continuation(Item::Last(b(b"o")))).unwrap(),
            Some(Received::Text("hello".into()))
        );
    }

    #[test]
    fn fragmented_invalid_utf8_is_refused() {
        let mut r = Reassembler::new(100);
        r.frame(Frame::Continuation(Item::FirstText(b(&[0xe2, 0x82]))))
            .unwrap();
        assert_eq!(
            r.frame(Frame::Continuation(Item::Last(b(&[0xff]))))
                .unwrap_err(),
            Error::InvalidUtf8
        );
        // A UTF-8 character split across fragments is fine.
        r.frame(Frame::Continuation(Item::FirstText(b(&[0xe2, 0x82]))))
            .unwrap();
        assert_eq!(
            r.frame(Frame::Continuation(Item::Last(b(&[0xac]))))
                .unwrap(),
            Some(Received::Text("€".into()))
        );
    }

    #[test]
    fn oversized_fragmented_message_is_discarded_and_the_next_one_arrives() {
        let mut r = Reassembler::new(4);
        r.frame(Frame::Continuation(Item::FirstBinary(b(b"abc"))))
            .unwrap();
        assert_eq!(
            r.frame(Frame::Continuation(Item::Continue(b(b"de"))))
                .unwrap_err(),
            Error::MessageTooLarge { limit: 4 }
        );
        assert_eq!(
            r.frame(Frame::Continuation(Item::Continue(b(b"fg"))))
                .unwrap(),
            None
        );
        assert_eq!(
            r.frame(Frame::Continuation(Item::Last(b(b"h")))).unwrap(),
            None
        );
        assert_eq!(
            r.frame(Frame::Text(b(b"ok"))).unwrap(),
            Some(Received::Text("ok".into()))
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn frame() -> impl Strategy<Value = Frame> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..40).prop_map(Bytes::from);
        (0u8..8, bytes).prop_map(|(kind, b)| match kind {
            0 => Frame::Text(b),
            1 => Frame::Binary(b),
            2 => Frame::Ping(b),
            3 => Frame::Pong(b),
            4 => Frame::Continuation(Item::FirstText(b)),
            5 => Frame::Continuation(Item::FirstBinary(b)),
            6 => Frame::Continuation(Item::Continue(b)),
            _ => Frame::Continuation(Item::Last(b)),
        })
    }

    proptest! {
        /// Any frame sequence: no panic, nothing over the cap comes out, text is UTF-8, and an
        /// oversized frame never wedges what follows.
        #[test]
        fn never_panics_never_exceeds_the_cap(
            max in 1usize..100,
            frames in proptest::collection::vec(frame(), 0..60),
        ) {
            let mut r = Reassembler::new(max);
            for f in frames {
                match r.frame(f) {
                    Ok(Some(Received::Text(t))) => {
                        prop_assert!(t.len() <= max);
                        prop_assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                    }
                    Ok(Some(Received::Binary(b))) => prop_assert!(b.len() <= max),
                    Ok(_) => {}
                    Err(e) => {
                        let expected = matches!(e, Error::InvalidUtf8 | Error::MessageTooLarge { .. });
                        prop_assert!(expected, "unexpected error {:?}", e);
                    }
                }
            }
            let _ = r.oversized_frame(Position::Middle);
            prop_assert_eq!(
                r.frame(Frame::Text(Bytes::from_static(b"k"))).unwrap(),
                Some(Received::Text("k".into()))
            );
        }
    }
}
