//! An idle connection gives back its I/O buffers. actix-codec's `Framed` allocates an 8 KiB
//! read buffer and an 8 KiB write buffer per connection and keeps their capacity for good:
//! most of an idle socket's memory. When a connection has nothing buffered and has been quiet,
//! both are swapped for empty ones; the next read or write allocates again, so a busy
//! connection is not touched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_codec::{AsyncRead, AsyncWrite, Framed, FramedParts, ReadBuf};
use bytes::BytesMut;

use super::connect::WsFramed;
use crate::frame_guard::FrameGuard;

/// A connection whose frames come at least this far apart counts as quiet.
pub(crate) const QUIET: Duration = Duration::from_millis(100);

/// Stands in for the connection for the instant its buffers are swapped.
struct Detached;

impl AsyncRead for Detached {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Detached {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(0))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Swaps `framed`'s buffers for empty ones if nothing is buffered in either.
pub(crate) fn release(framed: &mut WsFramed) {
    if !framed.is_read_buf_empty() || !framed.is_write_buf_empty() {
        return;
    }
    let codec = FrameGuard::new(actix_http::ws::Codec::new().client_mode(), 0);
    let placeholder = Framed::from_parts(FramedParts::new(
        Box::new(Detached) as awc::BoxedSocket,
        codec,
    ));
    let mut parts = std::mem::replace(framed, placeholder).into_parts();
    parts.read_buf = BytesMut::new();
    parts.write_buf = BytesMut::new();
    *framed = Framed::from_parts(parts);
}

/// When an Open connection's buffers are released: after a poll that read at most one frame,
/// the previous one having come at least [`QUIET`] before (pings, pongs, an occasional
/// message), and right after the handshake.
#[derive(Debug)]
pub(crate) struct Quiet {
    last_frame: Instant,
}

impl Quiet {
    pub(crate) fn new(now: Instant) -> Self {
        Quiet { last_frame: now }
    }

    /// A driver poll read `frames` frames at `now`: whether to release the buffers.
    pub(crate) fn after_poll(&mut self, frames: usize, now: Instant) -> bool {
        let quiet = now.saturating_duration_since(self.last_frame) >= QUIET;
        if frames > 0 {
            self.last_frame = now;
        }
        frames <= 1 && quiet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(read_buf: BytesMut) -> WsFramed {
        let codec = FrameGuard::new(actix_http::ws::Codec::new().client_mode(), 0);
        let io = Box::new(Detached) as awc::BoxedSocket;
        let mut parts = FramedParts::with_read_buf(io, codec, read_buf);
        parts.write_buf = BytesMut::with_capacity(8 * 1024);
        Framed::from_parts(parts)
    }

    #[test]
    fn an_empty_connection_gives_both_buffers_back_and_a_partial_frame_is_kept() {
        let mut idle = framed(BytesMut::with_capacity(8 * 1024));
        release(&mut idle);
        let parts = idle.into_parts();
        assert_eq!(
            (parts.read_buf.capacity(), parts.write_buf.capacity()),
            (0, 0)
        );

        let mut reading = framed(BytesMut::from(&b"\x81\x05hel"[..]));
        release(&mut reading);
        let parts = reading.into_parts();
        assert_eq!(&parts.read_buf[..], b"\x81\x05hel", "half a frame stays");
        assert_eq!(parts.write_buf.capacity(), 8 * 1024, "nothing swapped");
    }

    #[test]
    fn only_a_quiet_connection_gives_its_buffers_back() {
        let t0 = Instant::now();
        let mut quiet = Quiet::new(t0);
        assert!(!quiet.after_poll(1, t0 + Duration::from_millis(10)), "busy");
        assert!(
            quiet.after_poll(1, t0 + Duration::from_millis(500)),
            "a pong after a while"
        );
        assert!(!quiet.after_poll(5, t0 + Duration::from_secs(2)), "a burst");
        assert!(
            !quiet.after_poll(0, t0 + Duration::from_millis(2010)),
            "right after it"
        );
        assert!(
            quiet.after_poll(0, t0 + Duration::from_secs(3)),
            "then quiet"
        );
    }
}
