//! A guard on a server session's inbound bytes: a frame whose header announces more than the
//! size limit is caught as soon as the header has arrived, its payload is skipped as it streams
//! in, and the session is told which frame it was (actix-web-actors' codec would buffer the
//! whole frame first, however large, before refusing it). Every other byte passes unchanged.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// Where the guard is in the byte stream.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Collecting a frame header.
    Header,
    /// Passing on this many payload bytes.
    Payload(u64),
    /// Dropping this many payload bytes of a refused frame.
    Skip(u64),
}

/// Wraps the request payload of a WebSocket session.
pub(crate) struct PayloadGuard<S> {
    inner: S,
    max: u64,
    state: State,
    header: Vec<u8>,
    /// Frames whose header has been read.
    frames: u64,
    /// The first refused frame: its number (1-based) << 16 | the close code; 0 while none.
    refused: Arc<AtomicU64>,
}

impl<S> PayloadGuard<S> {
    /// Guards `inner` with the limit `max`; `refused` is set (see [`refused_frame`]) for the
    /// first frame that announced more (close code 1009), or a control frame announcing more
    /// than 125 bytes (1002).
    pub(crate) fn new(inner: S, max: usize, refused: Arc<AtomicU64>) -> Self {
        PayloadGuard {
            inner,
            max: max as u64,
            state: State::Header,
            header: Vec::with_capacity(14),
            frames: 0,
            refused,
        }
    }

    /// Passes `chunk` on into `out`, minus the payloads of refused frames. A refused frame is
    /// passed on as its header with an empty payload, so the codec's framing stays right.
    fn feed(&mut self, mut chunk: &[u8], out: &mut BytesMut) {
        while !chunk.is_empty() {
            match self.state {
                State::Payload(n) | State::Skip(n) => {
                    let take = n.min(chunk.len() as u64) as usize;
                    if matches!(self.state, State::Payload(_)) {
                        out.extend_from_slice(&chunk[..take]);
                    }
                    chunk = &chunk[take..];
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (_, 0) => State::Header,
                        (State::Skip(_), left) => State::Skip(left),
                        (_, left) => State::Payload(left),
                    };
                }
                State::Header => {
                    self.header.push(chunk[0]);
                    chunk = &chunk[1..];
                    if let Some((length, header_len)) = header(&self.header) {
                        debug_assert_eq!(header_len, self.header.len());
                        self.frame_header(length, out);
                    }
                }
            }
        }
    }

    fn frame_header(&mut self, length: u64, out: &mut BytesMut) {
        self.frames += 1;
        let opcode = self.header[0] & 0x0f;
        let is_data = matches!(opcode, 0x0..=0x2);
        let code = match (is_data, length) {
            (true, n) if n > self.max => Some(1009),
            (false, n) if n > 125 => Some(1002),
            _ => None,
        };
        if let Some(code) = code {
            let _ = self.refused.compare_exchange(
                0,
                (self.frames << 16) | code,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            // The same frame, announcing no payload; the mask (if any) kept.
            let masked = self.header[1] & 0x80;
            out.extend_from_slice(&[self.header[0], masked]);
            if masked != 0 {
                let mask_at = self.header.len() - 4;
                out.extend_from_slice(&self.header[mask_at..]);
            }
            self.state = State::Skip(length);
        } else {
            out.extend_from_slice(&self.header);
            self.state = if length == 0 {
                State::Header
            } else {
                State::Payload(length)
            };
        }
        self.header.clear();
    }
}

/// The frame number and close code a guard's `refused` holds, if any.
pub(crate) fn refused_frame(refused: &AtomicU64) -> Option<(u64, u16)> {
    let v = refused.load(Ordering::Acquire);
    (v != 0).then_some((v >> 16, (v & 0xffff) as u16))
}

/// The payload length and header length of a complete header; None while incomplete.
fn header(h: &[u8]) -> Option<(u64, usize)> {
    let second = *h.get(1)?;
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    let (length, ext) = match second & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*h.get(2)?, *h.get(3)?])), 2),
        127 => (u64::from_be_bytes(h.get(2..10)?.try_into().ok()?), 8),
        n => (u64::from(n), 0),
    };
    let len = 2 + ext + mask;
    (h.len() >= len).then_some((length, len))
}

impl<S> Stream for PayloadGuard<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    let mut out = BytesMut::with_capacity(chunk.len().min(64 * 1024));
                    self.feed(&chunk, &mut out);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out.freeze())));
                    }
                    // All of it skipped: read on.
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0, 0, 0]); // a zero mask: the payload reads as is
        out.extend_from_slice(payload);
        out
    }

    fn run(max: usize, input: &[u8], chunk: usize) -> (Vec<u8>, u64) {
        let refused = Arc::new(AtomicU64::new(0));
        let mut g = PayloadGuard::new(
            futures_util::stream::empty::<Result<Bytes, PayloadError>>(),
            max,
            refused.clone(),
        );
        let mut out = BytesMut::new();
        for c in input.chunks(chunk) {
            g.feed(c, &mut out);
        }
        (out.to_vec(), refused.load(Ordering::Acquire))
    }

    #[test]
    fn small_frames_pass_unchanged_whatever_the_chunking() {
        let mut input = masked(0x81, b"hello");
        input.extend(masked(0x89, b"p"));
        input.extend(masked(0x81, &[b'z'; 300]));
        for chunk in [1, 2, 3, 7, 1000] {
            assert_eq!(run(1024, &input, chunk), (input.clone(), 0));
        }
    }

    #[test]
    fn an_oversized_frame_becomes_an_empty_one_and_its_payload_is_skipped() {
        let mut input = masked(0x81, b"one");
        input.extend(masked(0x81, &[b'x'; 5000]));
        input.extend(masked(0x81, b"two"));
        let mut expected = masked(0x81, b"one");
        expected.extend(masked(0x81, b""));
        expected.extend(masked(0x81, b"two"));
        for chunk in [1, 5, 100, 10_000] {
            assert_eq!(run(1024, &input, chunk), (expected.clone(), 2 << 16 | 1009));
        }
    }

    #[test]
    fn a_header_announcing_a_gigabyte_is_caught_before_any_payload() {
        let mut input = vec![0x82, 0x80 | 127];
        input.extend_from_slice(&(1u64 << 30).to_be_bytes());
        input.extend_from_slice(&[1, 2, 3, 4]);
        let (out, refused) = run(1024, &input, 3);
        assert_eq!(refused, 1 << 16 | 1009);
        assert_eq!(out, [0x82, 0x80, 1, 2, 3, 4]);
        // A ping announcing 1 GiB: a protocol error, caught at the header too.
        let mut ping = vec![0x89, 0x80 | 127];
        ping.extend_from_slice(&(1u64 << 30).to_be_bytes());
        ping.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(run(1024, &ping, 1).1, 1 << 16 | 1002);
    }
}
