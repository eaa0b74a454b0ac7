//! A guard around awc's WebSocket codec on the read side: a frame whose header announces more
//! than the size limit is refused as soon as the header is read, and its payload is skipped as
//! it streams in (awc's codec would buffer the whole frame first, however large, before
//! refusing it). The guard also notes when bytes last arrived, so that a peer slowly sending one
//! large allowed message is not taken for dead.
//!
//! The codec tracks whether a fragmented message is open; a skipped fragment is replayed to it
//! with an empty payload so that that state stays right, and the next message is read normally.

use std::io;
use std::time::Instant;

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use bytes::{Buf, BytesMut};

/// Where a refused frame stood in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// An unfragmented message.
    Whole,
    /// The first fragment of a message: the rest of it is to be discarded.
    First,
    /// A fragment in the middle.
    Middle,
    /// The last fragment: the message ends here.
    Last,
}

/// What the read side can fail with.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// A data frame announced more than the limit; its payload is being skipped and the
    /// connection goes on.
    Oversized(Position),
    /// Anything else the codec refused: the connection cannot go on.
    Protocol(ProtocolError),
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        FrameError::Protocol(ProtocolError::Io(e))
    }
}

impl From<ProtocolError> for FrameError {
    fn from(e: ProtocolError) -> Self {
        FrameError::Protocol(e)
    }
}

const FIN: u8 = 0x80;
const OPCODE: u8 = 0x0f;
const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
/// The largest control frame payload (RFC 6455 5.5).
const MAX_CONTROL: u64 = 125;

/// awc's codec with the size limit applied at the frame header.
pub(crate) struct FrameGuard {
    inner: Codec,
    max: usize,
    /// Payload bytes of a refused frame still to skip.
    skip: u64,
    /// When bytes last arrived from the peer.
    last_read: Instant,
}

impl FrameGuard {
    /// Guards `inner` (a client-mode codec) with the limit `max`.
    pub(crate) fn new(inner: Codec, max: usize) -> Self {
        FrameGuard {
            inner,
            max,
            skip: 0,
            last_read: Instant::now(),
        }
    }

    /// When bytes last arrived from the peer (a frame, or part of one).
    pub(crate) fn last_read(&self) -> Instant {
        self.last_read
    }
}

/// The first byte and payload length of the frame at the start of `src`, and its header's
/// length; None while the header is incomplete. Server frames are not masked.
fn header(src: &[u8]) -> Option<(u8, u64, usize)> {
    let (&first, &second) = (src.first()?, src.get(1)?);
    let masked = second & 0x80 != 0;
    let mask = if masked { 4 } else { 0 };
    let (length, len_bytes) = match second & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*src.get(2)?, *src.get(3)?])),
            2,
        ),
        127 => {
            let bytes: [u8; 8] = src.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 8)
        }
        n => (u64::from(n), 0),
    };
    Some((first, length, 2 + len_bytes + mask))
}

impl Decoder for FrameGuard {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if !src.is_empty() {
            self.last_read = Instant::now();
        }
        if self.skip > 0 {
            let n = self.skip.min(src.len() as u64);
            src.advance(n as usize);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let Some((first, length, header_len)) = header(src) else {
            return Ok(None);
        };
        if length > i64::MAX as u64 {
            // RFC 6455 5.2: the most significant bit must be 0.
            return Err(FrameError::Protocol(ProtocolError::Overflow));
        }
        let opcode = first & OPCODE;
        let is_data = matches!(opcode, CONTINUATION | TEXT | BINARY);
        if !is_data && length > MAX_CONTROL {
            // RFC 6455 5.5: a control frame's payload is at most 125 bytes. Refused at the
            // header, not after buffering what it announces.
            return Err(FrameError::Protocol(ProtocolError::InvalidLength(
                usize::try_from(length).unwrap_or(usize::MAX),
            )));
        }
        if !is_data || length <= self.max as u64 {
            return Ok(self.inner.decode(src)?);
        }
        // Too large: replay the header with an empty payload to the codec (which keeps the
        // fragmentation state and refuses what it would have refused: reserved bits, a mask,
        // a continuation out of place), skip the payload.
        let fin = first & FIN != 0;
        let mut empty = BytesMut::from(&[first, src[1] & 0x80][..]);
        self.inner.decode(&mut empty)?;
        src.advance(header_len);
        self.skip = length;
        let position = match (opcode, fin) {
            (CONTINUATION, true) => Position::Last,
            (CONTINUATION, false) => Position::Middle,
            (_, true) => Position::Whole,
            (_, false) => Position::First,
        };
        // The rest of the payload may already be here.
        let n = self.skip.min(src.len() as u64);
        src.advance(n as usize);
        self.skip -= n;
        Err(FrameError::Oversized(position))
    }
}

impl Encoder<Message> for FrameGuard {
    type Error = ProtocolError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.inner.encode(item, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_http::ws::Item;

    fn guard(max: usize) -> FrameGuard {
        FrameGuard::new(Codec::new().max_size(max).client_mode(), max)
    }

    /// An unmasked server frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n if n <= 0xffff => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_huge_announced_frame_is_refused_at_its_header_and_skipped_as_it_arrives() {
        let mut g = guard(1024);
        // A header announcing 1 GiB, and the first 10 bytes of it.
        let mut src = BytesMut::new();
        src.extend_from_slice(&[FIN | BINARY, 127]);
        src.extend_from_slice(&(1u64 << 30).to_be_bytes());
        src.extend_from_slice(&[0; 10]);
        assert!(matches!(
            g.decode(&mut src),
            Err(FrameError::Oversized(Position::Whole))
        ));
        assert!(src.is_empty(), "nothing of it is kept");
        // The rest streams in and is dropped chunk by chunk.
        let mut left = (1u64 << 30) - 10;
        while left > 0 {
            let n = left.min(1 << 20) as usize;
            src.extend_from_slice(&vec![0; n]);
            assert!(g.decode(&mut src).unwrap().is_none());
            assert!(src.is_empty());
            left -= n as u64;
        }
        src.extend_from_slice(&frame(FIN | TEXT, b"next"));
        assert_eq!(
            g.decode(&mut src).unwrap(),
            Some(Frame::Text("next".into()))
        );
    }

    #[test]
    fn an_oversized_first_or_last_fragment_leaves_the_codec_ready_for_the_next_message() {
        let big = vec![b'x'; 2000];
        let mut g = guard(1024);
        let mut src = BytesMut::new();
        src.extend_from_slice(&frame(TEXT, &big)); // first fragment, too big
        src.extend_from_slice(&frame(CONTINUATION, b"b"));
        src.extend_from_slice(&frame(FIN | CONTINUATION, &big)); // last, too big
        src.extend_from_slice(&frame(FIN | TEXT, b"after"));
        assert!(matches!(
            g.decode(&mut src),
            Err(FrameError::Oversized(Position::First))
        ));
        assert_eq!(
            g.decode(&mut src).unwrap(),
            Some(Frame::Continuation(Item::Continue("b".into())))
        );
        assert!(matches!(
            g.decode(&mut src),
            Err(FrameError::Oversized(Position::Last))
        ));
        assert_eq!(
            g.decode(&mut src).unwrap(),
            Some(Frame::Text("after".into()))
        );
    }

    #[test]
    fn control_frames_and_small_frames_pass_through() {
        let mut g = guard(16);
        let mut src = BytesMut::from(&frame(FIN | 0x9, b"ping")[..]);
        assert_eq!(
            g.decode(&mut src).unwrap(),
            Some(Frame::Ping("ping".into()))
        );
        let mut src = BytesMut::from(&frame(FIN | TEXT, b"0123456789abcdef")[..]);
        assert_eq!(
            g.decode(&mut src).unwrap(),
            Some(Frame::Text("0123456789abcdef".into()))
        );
        let mut partial = BytesMut::from(&[FIN | TEXT][..]);
        assert!(g.decode(&mut partial).unwrap().is_none());
    }
}
