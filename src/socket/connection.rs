//! The Open state's connection: the awc framed socket, what waits to be written with priority,
//! and the driver that reads frames and writes messages on the actor's own context.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use actix::{ActorFuture, Context, SpawnHandle};
use actix_http::ws::Message;
use bytes::Bytes;
use futures_util::{Sink, Stream};

use super::closing::Closing;
use super::connect::WsFramed;
use super::{Phase, SocketActor};
use crate::acked::AckedLink;
use crate::delivery::Receipted;
use crate::heartbeat::Liveness;
use crate::reassembly::Reassembler;

/// Frames read in one go before yielding to the rest of the actor (fairness).
const READ_BUDGET: usize = 64;

/// The connection of the Open state and the timers that belong to it.
pub(crate) struct OpenConnection {
    pub(crate) id: u64,
    pub(crate) since: Instant,
    /// The attempt that connected (for the backoff count if the connection proves unstable).
    pub(crate) attempt: u32,
    pub(crate) framed: WsFramed,
    pub(crate) liveness: Liveness,
    pub(crate) reassembler: Reassembler,
    /// Written before the outbox: identify messages, pings, keepalives, Close.
    pub(crate) priority: VecDeque<Message>,
    /// Only the latest Ping is answered (RFC 6455 5.5.3), so a ping flood costs nothing.
    pub(crate) pending_pong: Option<Bytes>,
    /// Acked mode: the identify messages produced for this connection by
    /// `identify_with_async`, written after the welcome.
    pub(crate) identify_async: Vec<crate::Outgoing>,
    /// Our latest Ping: its payload (a counter) and when it was queued, for the round trip.
    pub(crate) ping_sent: Option<(Bytes, Instant)>,
    pub(crate) closing: Option<Closing>,
    pub(crate) heartbeat: SpawnHandle,
    /// The recheck of a suspected peer, when one is armed.
    pub(crate) recheck: Option<SpawnHandle>,
    pub(crate) driver: SpawnHandle,
    /// Acked mode: the limit on waiting for the server's welcome.
    pub(crate) welcome_deadline: Option<SpawnHandle>,
    /// Identify-then-wait: the limit on waiting for the server's acceptance; while set, only
    /// the priority queue (identify messages, pings) is written.
    pub(crate) identifying: Option<SpawnHandle>,
    /// When the I/O buffers are given back (an idle connection).
    pub(crate) quiet: super::buffers::Quiet,
    /// Receipts of messages encoded but not yet flushed to the kernel.
    pub(crate) unflushed: Unflushed,
}

/// The receipts ([`Delivery::on_written`](crate::Delivery::on_written), the fleet's) of
/// messages encoded into the write buffer and not yet flushed: they fire once the flush has
/// handed the bytes to the kernel, so that a process that dies holding them in its buffer
/// has not reported them written (the fleet acknowledges an entry on its receipt). A
/// connection that ends with some here fires them as it goes: that is all the default mode
/// can tell of them, as before.
#[derive(Debug, Default)]
pub(crate) struct Unflushed(Vec<crate::delivery::Receipt>);

impl Unflushed {
    fn fire(&mut self) {
        for receipt in self.0.drain(..) {
            receipt.fire(Receipted::Written);
        }
    }
}

impl Drop for Unflushed {
    fn drop(&mut self) {
        self.fire();
    }
}

impl OpenConnection {
    pub(crate) fn new(id: u64, attempt: u32, framed: WsFramed, max_message: usize) -> Self {
        let now = Instant::now();
        OpenConnection {
            id,
            since: now,
            attempt,
            framed,
            liveness: Liveness::new(now),
            reassembler: Reassembler::new(max_message),
            priority: VecDeque::new(),
            pending_pong: None,
            ping_sent: None,
            identify_async: Vec::new(),
            closing: None,
            heartbeat: SpawnHandle::default(),
            recheck: None,
            driver: SpawnHandle::default(),
            welcome_deadline: None,
            identifying: None,
            quiet: super::buffers::Quiet::new(now),
            unflushed: Unflushed::default(),
        }
    }

    /// Cancels every timer and future of this state.
    pub(crate) fn cancel_timers(&self, ctx: &mut Context<SocketActor>) {
        use actix::AsyncContext;
        ctx.cancel_future(self.heartbeat);
        ctx.cancel_future(self.driver);
        if let Some(recheck) = self.recheck {
            ctx.cancel_future(recheck);
        }
        if let Some(closing) = &self.closing {
            ctx.cancel_future(closing.deadline);
        }
        if let Some(deadline) = self.welcome_deadline {
            ctx.cancel_future(deadline);
        }
        if let Some(deadline) = self.identifying {
            ctx.cancel_future(deadline);
        }
    }

    /// Queues `message` with priority unless an equal one is still waiting (pings and
    /// keepalives must not pile up behind a peer that does not read).
    pub(crate) fn queue_once(&mut self, message: Message) {
        if !self.priority.iter().any(|m| *m == message) {
            self.priority.push_back(message);
        }
    }

    /// Whether outbox data may still be written.
    fn data_allowed(&self) -> bool {
        if self.identifying.is_some() {
            return false; // identify, then wait for the server's acceptance
        }
        self.closing.as_ref().is_none_or(Closing::draining)
    }
}

/// Reads and writes one connection; finishes when the connection leaves the Open state.
pub(crate) struct Driver {
    pub(crate) id: u64,
}

impl ActorFuture<SocketActor> for Driver {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut SocketActor,
        ctx: &mut Context<SocketActor>,
        task: &mut std::task::Context<'_>,
    ) -> Poll<()> {
        let id = self.id;
        let mut budget = READ_BUDGET;
        let mut frames = 0;
        // While a slow subscriber holds a delivery, reading waits (TCP backpressure).
        while !act.deliveries.paused() {
            let polled = match &mut act.phase {
                Phase::Open(c) if c.id == id => Pin::new(&mut c.framed).poll_next(task),
                _ => return Poll::Ready(()),
            };
            match polled {
                Poll::Pending => break,
                Poll::Ready(None) => {
                    act.stream_ended(ctx);
                    return Poll::Ready(());
                }
                Poll::Ready(Some(item)) => {
                    frames += 1;
                    act.frame_received(item, ctx)
                }
            }
            budget -= 1;
            if budget == 0 {
                task.waker().wake_by_ref();
                break;
            }
        }
        let pumped = act.pump(id, task);
        if act.outbox.take_events_flag() {
            act.report_outbox_events(ctx);
        }
        match pumped {
            Ok(true) => {
                if let Phase::Open(c) = &mut act.phase {
                    let idle = act.outbox.lock().is_empty() && c.priority.is_empty();
                    if c.quiet.after_poll(frames, Instant::now()) && idle {
                        super::buffers::release(&mut c.framed);
                    }
                }
                Poll::Pending
            }
            Ok(false) => Poll::Ready(()),
            Err(e) => {
                act.write_failed(e, ctx);
                Poll::Ready(())
            }
        }
    }
}

impl SocketActor {
    /// Writes what may be written, in order: the latest pong, the priority queue, the outbox,
    /// then our Close frame when closing. Messages leave the outbox only when awc's framed sink
    /// takes them (it holds at most about 8 KiB before it must flush), so a peer that does not
    /// read fills the bounded outbox, not memory. Ok(false): the connection is gone.
    fn pump(&mut self, id: u64, task: &mut std::task::Context<'_>) -> Result<bool, String> {
        let Phase::Open(conn) = &mut self.phase else {
            return Ok(false);
        };
        if conn.id != id {
            return Ok(false);
        }
        // Whoever queues something (a Sender, a timer) wakes the driver through the outbox.
        self.outbox.waker.register(task.waker());
        let shared = Arc::clone(&self.outbox);
        let mut outbox = shared.lock();
        loop {
            if conn.closing.as_ref().is_some_and(Closing::sent) {
                break; // nothing may follow our Close frame (RFC 6455 5.5.1)
            }
            let nothing_left =
                outbox.is_empty() && self.acked.as_ref().is_none_or(|l| l.unacked() == 0);
            let source = if conn.pending_pong.is_some() {
                Source::Pong
            } else if !conn.priority.is_empty() {
                Source::Priority
            } else if self.acked.as_ref().is_some_and(AckedLink::ack_due) {
                Source::Ack
            } else if let Some(link) = &self.acked {
                if conn.data_allowed() && link.has_next(&outbox) {
                    Source::Acked
                } else if close_due(conn, nothing_left) {
                    Source::Close
                } else {
                    break;
                }
            } else if conn.data_allowed() && !outbox.is_empty() {
                Source::Outbox
            } else if close_due(conn, nothing_left) {
                Source::Close
            } else {
                break;
            };
            match Pin::new(&mut conn.framed).poll_ready(task) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(e.to_string()),
                Poll::Pending => break,
            }
            let mut written = None;
            let message = match source {
                Source::Pong => conn.pending_pong.take().map(Message::Pong),
                Source::Priority => conn.priority.pop_front(),
                Source::Outbox => outbox.pop_front_tagged().map(|taken| {
                    if let Some(request) = taken.request {
                        self.requests.written(request);
                    }
                    written = taken.receipt;
                    taken.message.into_frame()
                }),
                Source::Ack => self
                    .acked
                    .as_mut()
                    .and_then(AckedLink::take_ack)
                    .map(|a| Message::Text(a.into())),
                Source::Acked => self
                    .acked
                    .as_mut()
                    .and_then(|l| l.next_frame(&mut outbox))
                    .map(Message::Text),
                Source::Close => conn.closing.take().map(|closing| {
                    let (closing, frame) = closing.write();
                    conn.closing = Some(closing);
                    frame
                }),
            };
            let Some(message) = message else { break };
            if matches!(source, Source::Outbox | Source::Acked | Source::Priority)
                && matches!(message, Message::Text(_) | Message::Binary(_))
            {
                self.counters.messages_out += 1;
            }
            Pin::new(&mut conn.framed)
                .start_send(message)
                .map_err(|e| e.to_string())?;
            conn.unflushed.0.extend(written);
        }
        let flushed = match Pin::new(&mut conn.framed).poll_flush(task) {
            Poll::Ready(Err(e)) => Err(e.to_string()),
            Poll::Ready(Ok(())) => {
                conn.unflushed.fire();
                Ok(true)
            }
            Poll::Pending => Ok(true),
        };
        if outbox.has_events() {
            // Reported by the driver (it has the context request timers need).
            self.outbox.flag_events();
        }
        flushed
    }
}

/// Where the next message to write comes from.
enum Source {
    Pong,
    Priority,
    Outbox,
    /// Acked mode: the cumulative ack of what the server sent.
    Ack,
    /// Acked mode: an unacked message again, or the next one from the outbox.
    Acked,
    Close,
}

/// Whether it is time to write our Close frame: closing, not yet written, and (when draining)
/// nothing is left to deliver.
fn close_due(conn: &OpenConnection, nothing_left: bool) -> bool {
    conn.closing.as_ref().is_some_and(|c| c.due(nothing_left))
}
