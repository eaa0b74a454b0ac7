//! `Sender`: a cloneable, thread-safe handle that puts messages straight into a socket's
//! outbox, without a trip through the actor's mailbox (the fast path for hot senders).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use futures_util::task::AtomicWaker;
use serde::Serialize;

use crate::acked::AckedLink;
use crate::outbox::{OutboxQueue, Pushed, Queued};
use crate::{BatchError, Delivery, Error, Outbox, Outgoing, SendError};

/// The outbox a socket shares with its [`Sender`]s.
#[derive(Debug)]
pub(crate) struct SharedOutbox {
    queue: Mutex<OutboxQueue>,
    /// Wakes the socket's connection driver: when a message arrives in an empty outbox, or a
    /// timer of the socket has queued something (the driver registers it on every poll).
    pub(crate) waker: AtomicWaker,
    /// Set when the socket accepts no more messages (closing, closed, stopped).
    closed: AtomicBool,
    /// Acked mode carries text only.
    acked: bool,
    /// The largest message the peer takes, as written.
    peer_max: Option<usize>,
    /// Set when the queue holds expired or replaced messages not yet reported.
    events: AtomicBool,
    /// Sends refused on the Sender path.
    refused: std::sync::atomic::AtomicU64,
    /// Senders waiting for room ([`Sender::send_wait`]), woken when messages leave.
    room: Mutex<Vec<Waker>>,
    /// How many wakers `room` holds (read without its lock on every unlock of the queue).
    waiting: AtomicUsize,
}

/// The locked queue. When it is unlocked having lost messages or bytes, senders waiting for
/// room are woken.
pub(crate) struct OutboxGuard<'a> {
    queue: MutexGuard<'a, OutboxQueue>,
    load: (usize, usize),
    shared: &'a SharedOutbox,
}

impl std::ops::Deref for OutboxGuard<'_> {
    type Target = OutboxQueue;
    fn deref(&self) -> &OutboxQueue {
        &self.queue
    }
}

impl std::ops::DerefMut for OutboxGuard<'_> {
    fn deref_mut(&mut self) -> &mut OutboxQueue {
        &mut self.queue
    }
}

impl Drop for OutboxGuard<'_> {
    fn drop(&mut self) {
        if self.shared.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let (len, bytes) = self.queue.load();
        if len < self.load.0 || bytes < self.load.1 {
            self.shared.wake_room();
        }
    }
}

/// What a push did, for the socket to report.
pub(crate) enum Pushing {
    /// Queued (the policy may have dropped older messages: the queue counts them).
    Ok,
    /// Not queued: the message comes back in `refused`; `dropped` when the policy counts it
    /// as a drop (DropNewest, or DropOldest with no room) rather than a refusal.
    Refused { refused: SendError, dropped: bool },
}

impl Pushing {
    /// Refused, not counted as a drop: the message handed back with `error`.
    fn refused(error: Error, message: Outgoing) -> Self {
        Pushing::Refused {
            refused: SendError { error, message },
            dropped: false,
        }
    }
}

impl SharedOutbox {
    pub(crate) fn new(limits: Outbox, acked: bool, peer_max: Option<usize>) -> Self {
        SharedOutbox {
            queue: Mutex::new(OutboxQueue::new(limits)),
            waker: AtomicWaker::new(),
            closed: AtomicBool::new(false),
            acked,
            peer_max,
            events: AtomicBool::new(false),
            refused: std::sync::atomic::AtomicU64::new(0),
            room: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
        }
    }

    fn wake_room(&self) {
        let wakers = {
            let mut room = self.room.lock().unwrap_or_else(|p| p.into_inner());
            // Reset under the lock, so a waiter registering meanwhile is not left uncounted.
            self.waiting.store(0, Ordering::Release);
            std::mem::take(&mut *room)
        };
        for w in wakers {
            w.wake();
        }
    }

    fn wait_for_room(&self, waker: &Waker) {
        let mut room = self.room.lock().unwrap_or_else(|p| p.into_inner());
        if !room.iter().any(|w| w.will_wake(waker)) {
            room.push(waker.clone());
        }
        self.waiting.store(room.len(), Ordering::Release);
    }

    /// The queue. A panic while it was held (a bug) leaves it consistent: every operation on
    /// it completes or does nothing, so the poison is ignored.
    pub(crate) fn lock(&self) -> OutboxGuard<'_> {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let load = queue.load();
        OutboxGuard {
            queue,
            load,
            shared: self,
        }
    }

    /// Refuses every later push. Taken under the queue's lock, as `push` checks it, so that
    /// a push either lands before the close (and is in whatever is drained after it) or is
    /// refused: never queued into an outbox nobody will drain.
    pub(crate) fn close(&self) {
        {
            let _queue = self.lock();
            self.closed.store(true, Ordering::Release);
        }
        // Senders waiting for room must learn at once that none will come.
        self.wake_room();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends refused on the Sender path so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    /// Notes that expired, replaced or dropped messages wait to be reported.
    pub(crate) fn flag_events(&self) {
        self.events.store(true, Ordering::Release);
    }

    /// Whether expired or replaced messages may wait to be reported; clears the flag.
    pub(crate) fn take_events_flag(&self) -> bool {
        self.events.swap(false, Ordering::AcqRel)
    }

    /// Queues `message` under the outbox policy; wakes the driver if the outbox was empty.
    #[cfg(test)]
    pub(crate) fn push(&self, message: Outgoing) -> Pushing {
        self.push_with(message, &Delivery::default())
    }

    /// [`push`](Self::push) with delivery options.
    pub(crate) fn push_with(&self, message: Outgoing, delivery: &Delivery) -> Pushing {
        if let Err(error) = delivery.validate() {
            return Pushing::refused(error, message);
        }
        self.push_checked(message, |queue, message| queue.push_with(message, delivery))
    }

    /// Queues a message inherited with its options from a socket that ended.
    pub(crate) fn push_queued(&self, queued: Queued) -> Pushing {
        let Queued { message, options } = queued;
        self.push_checked(message, move |queue, message| {
            queue.push_queued(Queued { message, options })
        })
    }

    /// The checks every message passes before the lock: acked mode's text only, the peer's
    /// size limit.
    fn check(&self, message: &Outgoing) -> Result<(), Error> {
        if self.acked {
            AckedLink::accepts(message)?;
        }
        if let Some(limit) = self.peer_max {
            let over = if self.acked {
                AckedLink::written_size_over(message, limit)
            } else {
                Some(message.len()).filter(|&size| size > limit)
            };
            if let Some(size) = over {
                return Err(Error::MessageTooLargeForPeer { size, limit });
            }
        }
        Ok(())
    }

    /// Queues `messages` in order under one lock of the queue, stopping at the first one
    /// refused: that one and every later one come back in [`BatchError::unsent`]. The bool
    /// says whether the refusal counts as a policy drop (see [`Pushing::Refused`]).
    pub(crate) fn push_batch(&self, messages: Vec<Outgoing>) -> Result<(), (BatchError, bool)> {
        let total = messages.len();
        let mut messages = messages.into_iter();
        let refusal = {
            let mut queue = self.lock();
            let was_empty = queue.is_empty();
            let mut refusal = None;
            for (queued, message) in messages.by_ref().enumerate() {
                // Checked under the lock `close` takes: see there.
                let refused = match self.check(&message) {
                    Err(error) => Some((error, message, false)),
                    Ok(()) if self.is_closed() => Some((Error::Closed, message, false)),
                    Ok(()) => match queue.push_with(message, &Delivery::default()) {
                        Pushed::Queued | Pushed::QueuedDroppingOldest(_) => None,
                        Pushed::Refused {
                            message,
                            error,
                            dropped,
                        } => Some((error, message, dropped)),
                    },
                };
                if let Some(refused) = refused {
                    refusal = Some((queued, refused));
                    break;
                }
            }
            if queue.has_events() {
                self.events.store(true, Ordering::Release);
            }
            if was_empty && !queue.is_empty() {
                self.waker.wake();
            }
            refusal
        };
        let Some((queued, (error, first, dropped))) = refusal else {
            return Ok(());
        };
        let mut unsent = Vec::with_capacity(total - queued);
        unsent.push(first);
        unsent.extend(messages);
        let error = BatchError {
            error,
            queued,
            unsent,
        };
        Err((error, dropped))
    }

    /// The checks every message passes (acked mode's text only, the peer's size limit, a
    /// closed socket), then `push` under the queue's lock.
    fn push_checked(
        &self,
        message: Outgoing,
        push: impl FnOnce(&mut OutboxQueue, Outgoing) -> Pushed,
    ) -> Pushing {
        if let Err(error) = self.check(&message) {
            return Pushing::refused(error, message);
        }
        let (outcome, was_empty) = {
            let mut queue = self.lock();
            // Checked under the lock `close` takes: see there.
            if self.is_closed() {
                let error = Error::Closed;
                return Pushing::refused(error, message);
            }
            let was_empty = queue.is_empty();
            let pushed = push(&mut queue, message);
            if queue.has_events() {
                self.events.store(true, Ordering::Release);
            }
            (pushed, was_empty)
        };
        let result = match outcome {
            Pushed::Queued | Pushed::QueuedDroppingOldest(_) => Pushing::Ok,
            Pushed::Refused {
                message,
                error,
                dropped,
            } => {
                return Pushing::Refused {
                    refused: SendError { error, message },
                    dropped,
                }
            }
        };
        if was_empty {
            self.waker.wake();
        }
        result
    }
}

/// A cloneable, thread-safe handle to one socket's outbox: [`Sender::send`] queues a message
/// at once (same ordering, limits and overflow policy as the [`SendMessage`](crate::SendMessage) message),
/// without a round trip through the actor's mailbox, and costs a few tens of nanoseconds.
/// Get one with [`GetSender`](crate::GetSender).
///
/// A `Sender` belongs to one socket actor: once that socket closes (or a supervisor replaces
/// it after a panic) every send is refused with [`Error::Closed`] and the message handed back;
/// get a new `Sender` from the new socket, or use [`SendTo`](crate::SendTo).
///
/// ```no_run
/// # async fn demo(socket: actix::Addr<resocket::SocketActor>) -> Result<(), Box<dyn std::error::Error>> {
/// let sender = socket.send(resocket::GetSender).await?;
/// for n in 0..1000 {
///     sender.json(&serde_json::json!({ "n": n }))?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Sender {
    pub(crate) shared: Arc<SharedOutbox>,
}

impl Sender {
    /// Queues one message. Refused ([`Error::OutboxFull`], [`Error::Closed`], …): the message
    /// comes back inside the error. Drops by the `DropOldest`/`DropNewest` policies are also
    /// reported to the socket's error subscribers.
    pub fn send(&self, message: impl Into<Outgoing>) -> Result<(), SendError> {
        self.send_with(message, &Delivery::default())
    }

    /// Queues one message with delivery options: a time to live, a collapse key
    /// ([`Delivery`]). Refused as [`send`](Self::send) is, and for a TTL of zero.
    ///
    /// ```no_run
    /// # fn demo(sender: resocket::Sender) -> Result<(), resocket::SendError> {
    /// use std::time::Duration;
    /// let latest = resocket::Delivery::new().collapse_key("position").ttl(Duration::from_secs(2));
    /// sender.send_with(r#"{"x":1,"y":2}"#, &latest)?;
    /// # Ok(()) }
    /// ```
    pub fn send_with(
        &self,
        message: impl Into<Outgoing>,
        delivery: &Delivery,
    ) -> Result<(), SendError> {
        let result = self.push(message.into(), delivery);
        if result.is_err() {
            self.shared.refused.fetch_add(1, Ordering::AcqRel);
        }
        result
    }

    /// One push (its drops are counted by the queue, refusals by the callers).
    fn push(&self, message: Outgoing, delivery: &Delivery) -> Result<(), SendError> {
        match self.shared.push_with(message, delivery) {
            Pushing::Ok => Ok(()),
            Pushing::Refused { refused, .. } => Err(refused),
        }
    }

    /// Queues one message, waiting while the outbox is full (policy `Reject`) until there is
    /// room: backpressure for a hot sender, so that a loop of any length neither fails nor
    /// grows memory. Other refusals ([`Error::Closed`], a message too large) come back at once,
    /// with the message. Cancel-safe: dropped before it completes, the message was not queued.
    ///
    /// ```no_run
    /// # async fn demo(sender: resocket::Sender) -> Result<(), resocket::SendError> {
    /// for n in 0..100_000 {
    ///     sender.send_wait(format!("{n}")).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_wait(&self, message: impl Into<Outgoing>) -> Result<(), SendError> {
        let full = |e: &SendError| matches!(e.error, Error::OutboxFull { .. });
        let mut message = Some(message.into());
        let result = futures_util::future::poll_fn(|cx| {
            let Some(m) = message.take() else {
                return Poll::Ready(Ok(()));
            };
            match self.push(m, &Delivery::default()) {
                Err(refused) if full(&refused) => {
                    // Register, then try once more: room freed in between is not missed.
                    self.shared.wait_for_room(cx.waker());
                    match self.push(refused.message, &Delivery::default()) {
                        Err(again) if full(&again) => {
                            message = Some(again.message);
                            Poll::Pending
                        }
                        other => Poll::Ready(other),
                    }
                }
                other => Poll::Ready(other),
            }
        })
        .await;
        if result.is_err() {
            self.shared.refused.fetch_add(1, Ordering::AcqRel);
        }
        result
    }

    /// Queues `messages` in order, taking the outbox's lock once for all of them: for a
    /// producer that has many messages at hand, cheaper per message than a `send` each.
    /// Stops at the first message refused (the outbox full, the socket closed, a message too
    /// large): the ones before it stay queued, and it and every later one come back, in
    /// order, in [`BatchError::unsent`]. Nothing is lost.
    ///
    /// ```no_run
    /// # fn demo(sender: resocket::Sender) {
    /// let ticks: Vec<resocket::Outgoing> = (0..64).map(|n| format!("{n}").into()).collect();
    /// if let Err(refused) = sender.send_batch(ticks) {
    ///     eprintln!("{} queued, {} kept back: {}", refused.queued, refused.unsent.len(), refused.error);
    /// }
    /// # }
    /// ```
    pub fn send_batch(&self, messages: Vec<Outgoing>) -> Result<(), BatchError> {
        self.shared.push_batch(messages).map_err(|(refused, _)| {
            let unsent = refused.unsent.len() as u64;
            self.shared.refused.fetch_add(unsent, Ordering::AcqRel);
            refused
        })
    }

    /// [`send_wait`](Self::send_wait) for `value` serialized with serde_json. Like
    /// [`json`](Self::json), it returns the [`Error`] alone ([`Error::Encode`] included): the
    /// caller still has `value`.
    pub async fn json_wait<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let message = Outgoing::json(value)?;
        self.send_wait(message).await.map_err(|e| e.error)
    }

    /// Queues `value` serialized with serde_json. The methods that take a message hand it back
    /// inside a [`SendError`]; this one borrows `value`, so it returns the [`Error`] alone
    /// ([`Error::Encode`] when `value` cannot be serialized, or why it was refused).
    pub fn json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        self.send(Outgoing::json(value)?).map_err(|e| e.error)
    }

    /// Whether the socket accepts no more messages.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A push racing `close` either lands before it (and is drained) or is refused: every push
    /// that said Ok is in the drain. (Before the closed flag was checked under the lock, a push
    /// could pass the check, lose the race for the lock, and land after the drain.)
    #[test]
    fn a_push_racing_close_is_drained_or_refused() {
        for _ in 0..500 {
            let shared = Arc::new(SharedOutbox::new(Outbox::bounded(1_000_000), false, None));
            let started = Arc::new(AtomicBool::new(false));
            let pusher = {
                let (shared, started) = (shared.clone(), started.clone());
                std::thread::spawn(move || {
                    let mut ok = 0usize;
                    for n in 0..1_000_000u32 {
                        match shared.push(Outgoing::from(n.to_string())) {
                            Pushing::Ok => ok += 1,
                            _ => break,
                        }
                        started.store(true, Ordering::Release);
                    }
                    ok
                })
            };
            while !started.load(Ordering::Acquire) {
                std::hint::spin_loop();
            }
            shared.close();
            let drained = shared.lock().drain().len();
            let ok = pusher.join().unwrap_or(0);
            assert_eq!(ok, drained, "a push said Ok but was never drained");
        }
    }
}
