//! The bounded queue of messages waiting to be written, and its overflow policy. Pure logic.

use std::collections::VecDeque;

use crate::{Error, Outgoing};

/// What happens when a message arrives at a full outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Refuse the new message and hand it back to the sender inside the error (the default).
    #[default]
    Reject,
    /// Drop the oldest queued messages to make room; an [`Error::Dropped`] event reports it.
    DropOldest,
    /// Drop the new message; the sender gets it back with [`Error::OutboxFull`] and an
    /// [`Error::Dropped`] event reports it (for senders that use `do_send`).
    DropNewest,
}

/// The outbox limits: messages waiting to be written while the socket is not Open, or while
/// the peer reads more slowly than the application sends.
///
/// ```
/// use resocket::{Outbox, Overflow};
/// let outbox = Outbox::bounded(1_000).max_bytes(1 << 20).on_overflow(Overflow::DropOldest);
/// assert_eq!(outbox.message_limit(), 1_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbox {
    max_messages: usize,
    max_bytes: usize,
    overflow: Overflow,
}

impl Outbox {
    /// Default message limit: 10,000.
    pub const DEFAULT_MAX_MESSAGES: usize = 10_000;
    /// Default byte limit: 16 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 16 * 1024 * 1024;

    /// At most `max_messages` messages (and the default 16 MiB), policy Reject.
    pub fn bounded(max_messages: usize) -> Self {
        Outbox {
            max_messages,
            ..Outbox::default()
        }
    }

    /// At most this many payload bytes in all.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The overflow policy. Defaults to [`Overflow::Reject`].
    pub fn on_overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// The message limit.
    pub fn message_limit(&self) -> usize {
        self.max_messages
    }

    /// The byte limit.
    pub fn byte_limit(&self) -> usize {
        self.max_bytes
    }

    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_messages == 0 || self.max_bytes == 0 {
            return Err(Error::config("outbox", "limits must be greater than zero"));
        }
        Ok(())
    }

    fn full_error(&self) -> Error {
        Error::OutboxFull {
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
        }
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            max_messages: Self::DEFAULT_MAX_MESSAGES,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            overflow: Overflow::Reject,
        }
    }
}

/// The outcome of [`OutboxQueue::push`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued, nothing lost.
    Queued,
    /// Queued after dropping this many of the oldest messages.
    QueuedDroppingOldest(usize),
    /// Not queued: the message is handed back with the reason. `dropped` says whether the policy
    /// counts it as a drop (DropNewest) rather than a refusal.
    Refused {
        message: Outgoing,
        error: Error,
        dropped: bool,
    },
}

/// The queue itself: order kept, never above its limits.
#[derive(Debug)]
pub(crate) struct OutboxQueue {
    limits: Outbox,
    items: VecDeque<Outgoing>,
    bytes: usize,
    /// Bytes of messages taken out but still held elsewhere until acknowledged (acked mode's
    /// messages in flight): they count against the byte limit as if they were still here.
    held: usize,
}

impl OutboxQueue {
    pub(crate) fn new(limits: Outbox) -> Self {
        OutboxQueue {
            limits,
            items: VecDeque::new(),
            bytes: 0,
            held: 0,
        }
    }

    /// Queues `message` at the back, applying the overflow policy if it does not fit.
    pub(crate) fn push(&mut self, message: Outgoing) -> Pushed {
        let size = message.len();
        if size > self.limits.max_bytes {
            return Pushed::Refused {
                message,
                error: Error::MessageTooLargeForOutbox {
                    size,
                    max_bytes: self.limits.max_bytes,
                },
                dropped: false,
            };
        }
        if self.fits(size) {
            self.push_unchecked(message);
            return Pushed::Queued;
        }
        match self.limits.overflow {
            Overflow::Reject | Overflow::DropNewest => Pushed::Refused {
                message,
                error: self.limits.full_error(),
                dropped: self.limits.overflow == Overflow::DropNewest,
            },
            Overflow::DropOldest => {
                let mut dropped = 0;
                while !self.fits(size) {
                    if self.pop_front().is_none() {
                        // What is left is held in flight and cannot be dropped: no room.
                        return Pushed::Refused {
                            message,
                            error: self.limits.full_error(),
                            dropped: true,
                        };
                    }
                    dropped += 1;
                }
                self.push_unchecked(message);
                Pushed::QueuedDroppingOldest(dropped)
            }
        }
    }

    fn fits(&self, size: usize) -> bool {
        self.items.len() < self.limits.max_messages
            && self.bytes + self.held + size <= self.limits.max_bytes
    }

    fn push_unchecked(&mut self, message: Outgoing) {
        self.bytes += message.len();
        self.items.push_back(message);
    }

    /// Takes the oldest message.
    pub(crate) fn pop_front(&mut self) -> Option<Outgoing> {
        let message = self.items.pop_front()?;
        self.bytes -= message.len();
        Some(message)
    }

    /// Messages queued, and bytes queued or held: what room depends on.
    pub(crate) fn load(&self) -> (usize, usize) {
        (self.items.len(), self.bytes + self.held)
    }

    /// Takes the oldest message out to be held in flight: its bytes keep counting until
    /// [`release`](Self::release)d.
    pub(crate) fn take_for_flight(&mut self) -> Option<Outgoing> {
        let message = self.pop_front()?;
        self.held += message.len();
        Some(message)
    }

    /// Counts `bytes` held in flight (a link handed over from another socket).
    pub(crate) fn hold(&mut self, bytes: usize) {
        self.held += bytes;
    }

    /// Messages of `bytes` held in flight are gone (acknowledged, given up, taken back).
    pub(crate) fn release(&mut self, bytes: usize) {
        self.held = self.held.saturating_sub(bytes);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Empties the queue, oldest first.
    pub(crate) fn drain(&mut self) -> Vec<Outgoing> {
        self.bytes = 0;
        self.items.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_held_in_flight_count_against_the_limit_until_released() {
        let mut q = OutboxQueue::new(Outbox::bounded(100).max_bytes(10));
        assert_eq!(q.push(msg(1, 6)), Pushed::Queued);
        let taken = q.take_for_flight().unwrap();
        assert!(
            matches!(q.push(msg(2, 6)), Pushed::Refused { .. }),
            "6 held + 6 > 10"
        );
        q.release(taken.len());
        assert_eq!(q.push(msg(2, 6)), Pushed::Queued);
        // DropOldest cannot drop what is in flight.
        let mut q = OutboxQueue::new(
            Outbox::bounded(100)
                .max_bytes(10)
                .on_overflow(Overflow::DropOldest),
        );
        q.push(msg(1, 8));
        q.take_for_flight();
        assert!(matches!(
            q.push(msg(2, 8)),
            Pushed::Refused { dropped: true, .. }
        ));
    }

    fn msg(i: usize, size: usize) -> Outgoing {
        let mut s = format!("{i}:");
        while s.len() < size {
            s.push('x');
        }
        Outgoing::from(s)
    }

    #[test]
    fn reject_hands_the_message_back() {
        let mut q = OutboxQueue::new(Outbox::bounded(2));
        assert_eq!(q.push(msg(1, 4)), Pushed::Queued);
        assert_eq!(q.push(msg(2, 4)), Pushed::Queued);
        match q.push(msg(3, 4)) {
            Pushed::Refused {
                message,
                error,
                dropped,
            } => {
                assert_eq!(message, msg(3, 4));
                assert!(matches!(
                    error,
                    Error::OutboxFull {
                        max_messages: 2,
                        ..
                    }
                ));
                assert!(!dropped);
            }
            other => panic!("expected refusal, got {other:?}"),
        }
        assert_eq!(q.drain(), vec![msg(1, 4), msg(2, 4)]);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_in_order() {
        let mut q = OutboxQueue::new(Outbox::bounded(3).on_overflow(Overflow::DropOldest));
        for i in 0..3 {
            assert_eq!(q.push(msg(i, 4)), Pushed::Queued);
        }
        assert_eq!(q.push(msg(3, 4)), Pushed::QueuedDroppingOldest(1));
        assert_eq!(q.drain(), vec![msg(1, 4), msg(2, 4), msg(3, 4)]);
    }

    #[test]
    fn drop_newest_counts_as_a_drop() {
        let mut q = OutboxQueue::new(Outbox::bounded(1).on_overflow(Overflow::DropNewest));
        q.push(msg(0, 4));
        assert!(matches!(
            q.push(msg(1, 4)),
            Pushed::Refused { dropped: true, .. }
        ));
    }

    #[test]
    fn byte_limit_applies_and_oversized_is_refused() {
        let mut q = OutboxQueue::new(Outbox::bounded(100).max_bytes(10));
        assert_eq!(q.push(msg(0, 6)), Pushed::Queued);
        assert!(matches!(q.push(msg(1, 6)), Pushed::Refused { .. }));
        let mut q = OutboxQueue::new(
            Outbox::bounded(100)
                .max_bytes(10)
                .on_overflow(Overflow::DropOldest),
        );
        assert!(matches!(
            q.push(msg(0, 11)),
            Pushed::Refused {
                error: Error::MessageTooLargeForOutbox {
                    size: 11,
                    max_bytes: 10
                },
                ..
            }
        ));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the limits, policy and operations: never above a limit, never reordered,
        /// byte count exact, and every message either queued, handed back or reported dropped.
        #[test]
        fn bounded_ordered_and_accounted(
            max_messages in 1usize..20,
            max_bytes in 1usize..200,
            policy in 0u8..3,
            ops in proptest::collection::vec((any::<bool>(), 0usize..40), 0..300),
        ) {
            let overflow = [Overflow::Reject, Overflow::DropOldest, Overflow::DropNewest][policy as usize];
            let mut q = OutboxQueue::new(Outbox::bounded(max_messages).max_bytes(max_bytes).on_overflow(overflow));
            let (mut next, mut last_popped, mut accounted) = (0usize, None, 0usize);
            for (push, size) in ops {
                if push {
                    let text = format!("{next:04}{}", "x".repeat(size));
                    next += 1;
                    match q.push(Outgoing::from(text)) {
                        Pushed::Queued => {}
                        Pushed::QueuedDroppingOldest(n) => accounted += n,
                        Pushed::Refused { .. } => accounted += 1,
                    }
                } else if let Some(m) = q.pop_front() {
                    let n: usize = m.as_text().unwrap()[..4].parse().unwrap();
                    prop_assert!(last_popped.is_none_or(|l| n > l), "reordered");
                    last_popped = Some(n);
                    accounted += 1;
                }
                prop_assert!(q.len() <= max_messages);
                prop_assert!(q.bytes() <= max_bytes);
                prop_assert_eq!(q.items.iter().map(Outgoing::len).sum::<usize>(), q.bytes());
                prop_assert_eq!(accounted + q.len(), next, "a message vanished");
            }
        }
    }
}
