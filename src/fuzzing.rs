//! Fuzzing entry points (feature `fuzzing`, used by `fuzz/`). Not part of the supported API.

use actix_codec::Decoder;
use actix_http::ws::Codec;
use bytes::BytesMut;

use crate::acked::{wire, AckedLink};
use crate::frame_guard::{FrameError, FrameGuard};
use crate::outbox::OutboxQueue;
use crate::reassembly::{Reassembler, Received};

/// The inbound path on arbitrary bytes from a peer: frame decoding (client side, as awc does),
/// the frame guard, reassembly under a size cap, UTF-8 validation, the acked protocol's frame decoding and
/// dedup, and payload decoding. Must never panic, whatever the bytes.
pub fn inbound(data: &[u8]) {
    const MAX: usize = 4096;
    let mut codec = FrameGuard::new(Codec::new().max_size(MAX).client_mode(), MAX);
    let mut buffer = BytesMut::from(data);
    let mut reassembler = Reassembler::new(MAX);
    let mut link = AckedLink::new("fuzz".into(), 16);
    let mut outbox = OutboxQueue::new(crate::Outbox::default());
    // Bounded: every round consumes input or ends.
    for _ in 0..data.len() + 1 {
        let frame = match codec.decode(&mut buffer) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Oversized(position)) => {
                let _ = reassembler.oversized_frame(position);
                continue;
            }
            Err(_) => break,
        };
        if let Ok(Some(Received::Text(text))) = reassembler.frame(frame) {
            route(&text, &mut link, &mut outbox);
        }
        let _ = link.take_ack();
    }
}

fn route(text: &str, link: &mut AckedLink, outbox: &mut OutboxQueue) {
    match wire::decode(text) {
        Some(wire::Frame::Msg { seq, body }) => {
            if let Some(seq) = seq {
                let _ = link.inbound(seq);
            }
            let _ = serde_json::from_str::<serde_json::Value>(body.as_str());
        }
        Some(wire::Frame::Welcome { acked, gap, yours }) => {
            let _ = link.welcome(acked, gap, yours, outbox);
        }
        Some(wire::Frame::Ack { seq }) => {
            let _ = link.ack(seq, outbox);
        }
        Some(wire::Frame::Hello { .. }) => {}
        None => {
            let _ = serde_json::from_str::<serde_json::Value>(text);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn survives_samples() {
        // A server text frame "hi", a fragmented message, garbage.
        super::inbound(&[0x81, 0x02, b'h', b'i']);
        super::inbound(&[0x01, 0x01, b'{', 0x80, 0x01, b'}']);
        super::inbound(&[0xff; 64]);
        super::inbound(b"");
    }
}
