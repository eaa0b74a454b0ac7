//! The bounded queue of messages waiting to be written, and its overflow policy. Pure logic.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::{Delivery, Error, Outgoing};

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

/// One queued message with its delivery options (boxed: most messages have none, and a plain
/// entry stays small).
#[derive(Debug)]
struct Entry {
    /// Push order, increasing along the queue: found again by binary search.
    id: u64,
    message: Outgoing,
    options: Option<Box<EntryOptions>>,
}

#[derive(Debug)]
pub(crate) struct EntryOptions {
    /// When it stops being worth writing, and its TTL (for the error).
    expires: Option<(Instant, Duration)>,
    collapse_key: Option<Arc<str>>,
    /// The pending request this message is.
    request: Option<u64>,
    /// Called once the message is delivered ([`Delivery::on_written`]).
    written: Option<crate::delivery::Receipt>,
    /// The sequence number an earlier link gave it (`Delivery::known_seq`).
    known_seq: Option<u64>,
}

impl Entry {
    fn expires(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.expires.is_some())
    }

    fn expired(&self, now: &mut Option<Instant>) -> bool {
        match self.options.as_ref().and_then(|o| o.expires) {
            Some((deadline, _)) => *now.get_or_insert_with(Instant::now) >= deadline,
            None => false,
        }
    }

    fn key(&self) -> Option<&Arc<str>> {
        self.options.as_ref().and_then(|o| o.collapse_key.as_ref())
    }

    fn request(&self) -> Option<u64> {
        self.options.as_ref().and_then(|o| o.request)
    }

    fn receipt(&self) -> Option<crate::delivery::Receipt> {
        self.options.as_ref().and_then(|o| o.written.clone())
    }

    fn known_seq(&self) -> Option<u64> {
        self.options.as_ref().and_then(|o| o.known_seq)
    }
}

/// A message taken to be written, with what must happen once it is.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) message: Outgoing,
    /// The pending request it is.
    pub(crate) request: Option<u64>,
    /// Its [`Delivery::on_written`] callback.
    pub(crate) receipt: Option<crate::delivery::Receipt>,
    /// The sequence number an earlier link gave it (acked mode, the fleet).
    pub(crate) known_seq: Option<u64>,
}

/// Expired messages kept to be handed back in their events until the socket reports them;
/// past it (a long outage with a busy sender) they are only counted.
pub(crate) const MAX_EXPIRED_HELD: usize = 1024;

/// A queued message with its options, as one queue hands it to another (a restarted socket
/// inherits its predecessor's outbox this way: deadlines, keys and requests included).
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) message: Outgoing,
    pub(crate) options: Option<Box<EntryOptions>>,
}

impl From<Outgoing> for Queued {
    fn from(message: Outgoing) -> Self {
        Queued {
            message,
            options: None,
        }
    }
}

/// A message dropped because its time to live passed before it could be written.
#[derive(Debug)]
pub(crate) struct Expired {
    pub(crate) message: Outgoing,
    pub(crate) ttl: Duration,
}

/// The queue itself: order kept, never above its limits.
#[derive(Debug)]
pub(crate) struct OutboxQueue {
    limits: Outbox,
    items: VecDeque<Entry>,
    bytes: usize,
    /// Bytes of messages taken out but still held elsewhere until acknowledged (acked mode's
    /// messages in flight): they count against the byte limit as if they were still here.
    held: usize,
    next_id: u64,
    /// The queued entry holding each collapse key.
    keys: HashMap<Arc<str>, u64>,
    /// Messages dropped on expiry, to be reported by the socket.
    expired: Vec<Expired>,
    /// Expired while `expired` was full: reported as a count only.
    expired_uncarried: usize,
    /// Queued messages that are pending requests (none: nothing to look for).
    requests: usize,
    /// Queued messages with a time to live: a full queue looks for expired ones to make room
    /// only when there are some (the scan is of the whole queue, on every push while full).
    expiring: usize,
    /// Messages the overflow policy dropped (DropOldest's oldest, DropNewest's newest) since
    /// the last [`take_dropped`](Self::take_dropped), whichever path pushed them.
    dropped: usize,
    /// Pending requests whose message the overflow policy dropped, to be failed.
    dropped_requests: Vec<u64>,
    /// Messages replaced by a newer one with the same collapse key, since the last call to
    /// [`take_collapsed`](Self::take_collapsed).
    collapsed: u64,
}

impl OutboxQueue {
    pub(crate) fn new(limits: Outbox) -> Self {
        OutboxQueue {
            limits,
            items: VecDeque::new(),
            bytes: 0,
            held: 0,
            next_id: 0,
            keys: HashMap::new(),
            expired: Vec::new(),
            expired_uncarried: 0,
            requests: 0,
            expiring: 0,
            dropped: 0,
            dropped_requests: Vec::new(),
            collapsed: 0,
        }
    }

    /// Queues `message` at the back, applying the overflow policy if it does not fit.
    #[cfg(test)]
    pub(crate) fn push(&mut self, message: Outgoing) -> Pushed {
        self.push_with(message, &Delivery::default())
    }

    /// Queues `message` with its delivery options: at the back, or in the place of a queued
    /// message with the same collapse key; applying the overflow policy if it does not fit.
    pub(crate) fn push_with(&mut self, message: Outgoing, delivery: &Delivery) -> Pushed {
        let options = (!delivery.is_plain()).then(|| {
            Box::new(EntryOptions {
                // A TTL too long to add to the clock never expires.
                expires: delivery
                    .time_to_live()
                    .and_then(|ttl| Some((Instant::now().checked_add(ttl)?, ttl))),
                collapse_key: delivery.collapse_key_arc().cloned(),
                request: delivery.request,
                written: delivery.receipt().cloned(),
                known_seq: delivery.known_seq,
            })
        });
        self.push_queued(Queued { message, options })
    }

    /// Queues a message that keeps the options it had in another queue (a restarted
    /// socket's inheritance): its deadline, key and request.
    pub(crate) fn push_queued(&mut self, queued: Queued) -> Pushed {
        let Queued { message, options } = queued;
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
        let key = options.as_ref().and_then(|o| o.collapse_key.clone());
        let Some(index) = key.and_then(|k| self.index_of_key(&k)) else {
            return self.push_entry(message, size, options, None);
        };
        let old_size = self.items[index].message.len();
        if self.bytes - old_size + size + self.held <= self.limits.max_bytes {
            let entry = &mut self.items[index];
            self.expiring -= usize::from(entry.expires());
            entry.message = message;
            entry.options = options;
            self.expiring += usize::from(entry.expires());
            self.bytes = self.bytes - old_size + size;
            self.collapsed += 1;
            return Pushed::Queued;
        }
        // Larger than the room the older one leaves: it goes, and the newer one takes its
        // place once there is room (or is refused, and the older one is put back).
        let old = self.remove(index);
        let pushed = self.push_entry(message, size, options, Some(old.id));
        match &pushed {
            Pushed::Refused { .. } => self.restore(old),
            _ => self.collapsed += 1,
        }
        pushed
    }

    /// Queues at the back, or where the entry `in_place_of` was (keeping the ids sorted).
    fn push_entry(
        &mut self,
        message: Outgoing,
        size: usize,
        options: Option<Box<EntryOptions>>,
        in_place_of: Option<u64>,
    ) -> Pushed {
        if !self.fits(size) {
            self.purge_expired();
        }
        if self.fits(size) {
            self.insert(message, options, in_place_of);
            return Pushed::Queued;
        }
        match self.limits.overflow {
            Overflow::Reject => Pushed::Refused {
                message,
                error: self.limits.full_error(),
                dropped: false,
            },
            Overflow::DropNewest => {
                self.dropped += 1;
                Pushed::Refused {
                    message,
                    error: self.limits.full_error(),
                    dropped: true,
                }
            }
            Overflow::DropOldest if self.held + size > self.limits.max_bytes => {
                // What is held in flight alone leaves no room: dropping the queue would not
                // help, so nothing is dropped but the new message.
                self.dropped += 1;
                Pushed::Refused {
                    message,
                    error: self.limits.full_error(),
                    dropped: true,
                }
            }
            Overflow::DropOldest => {
                let mut dropped = 0;
                while !self.fits(size) {
                    let Some(entry) = self.pop_entry() else {
                        break; // (cannot happen: the held bytes alone leave room)
                    };
                    self.dropped_requests.extend(entry.request());
                    dropped += 1;
                }
                self.dropped += dropped;
                self.insert(message, options, in_place_of);
                Pushed::QueuedDroppingOldest(dropped)
            }
        }
    }

    fn fits(&self, size: usize) -> bool {
        self.items.len() < self.limits.max_messages
            && self.bytes + self.held + size <= self.limits.max_bytes
    }

    fn insert(
        &mut self,
        message: Outgoing,
        options: Option<Box<EntryOptions>>,
        in_place_of: Option<u64>,
    ) {
        let id = in_place_of.unwrap_or_else(|| {
            self.next_id += 1;
            self.next_id - 1
        });
        self.restore(Entry {
            id,
            message,
            options,
        });
    }

    fn index_of_key(&self, key: &Arc<str>) -> Option<usize> {
        let id = *self.keys.get(key)?;
        self.items.binary_search_by_key(&id, |e| e.id).ok()
    }

    /// Takes the entry at `index` out (its bytes and key with it).
    fn remove(&mut self, index: usize) -> Entry {
        let entry = self.items.remove(index).expect("index from a search");
        self.forget(&entry);
        entry
    }

    /// Puts an entry where its id belongs (the back, for a new one).
    fn restore(&mut self, entry: Entry) {
        self.bytes += entry.message.len();
        if let Some(key) = entry.key() {
            self.keys.insert(key.clone(), entry.id);
        }
        self.requests += usize::from(entry.request().is_some());
        self.expiring += usize::from(entry.expires());
        // A new entry goes at the back: no search through a long queue on the hot path.
        if self.items.back().is_none_or(|last| last.id < entry.id) {
            self.items.push_back(entry);
            return;
        }
        let index = self.items.partition_point(|e| e.id < entry.id);
        self.items.insert(index, entry);
    }

    fn forget(&mut self, entry: &Entry) {
        self.bytes -= entry.message.len();
        self.requests -= usize::from(entry.request().is_some());
        self.expiring -= usize::from(entry.expires());
        if let Some(key) = entry.key() {
            if self.keys.get(key) == Some(&entry.id) {
                self.keys.remove(key);
            }
        }
    }

    fn pop_entry(&mut self) -> Option<Entry> {
        let entry = self.items.pop_front()?;
        self.forget(&entry);
        Some(entry)
    }

    /// Takes the oldest message that is still worth writing; expired ones on the way are set
    /// aside for [`take_expired`](Self::take_expired).
    #[cfg(test)]
    pub(crate) fn pop_front(&mut self) -> Option<Outgoing> {
        self.pop_front_tagged().map(|taken| taken.message)
    }

    /// [`pop_front`](Self::pop_front), with the pending request the message is and its
    /// receipt, if any.
    pub(crate) fn pop_front_tagged(&mut self) -> Option<Taken> {
        let mut now = None;
        loop {
            let entry = self.pop_entry()?;
            if !entry.expired(&mut now) {
                let (request, receipt) = (entry.request(), entry.receipt());
                let known_seq = entry.known_seq();
                return Some(Taken {
                    message: entry.message,
                    request,
                    receipt,
                    known_seq,
                });
            }
            self.set_aside(entry);
        }
    }

    /// Takes the message of pending request `request` out, if it is still queued (its
    /// request timed out or failed: it must not be written later).
    pub(crate) fn remove_request(&mut self, request: u64) -> Option<Outgoing> {
        if self.requests == 0 {
            return None;
        }
        let index = self
            .items
            .iter()
            .position(|e| e.request() == Some(request))?;
        Some(self.remove(index).message)
    }

    fn set_aside(&mut self, entry: Entry) {
        if self.expired.len() >= MAX_EXPIRED_HELD {
            self.expired_uncarried += 1;
            return;
        }
        let ttl = entry
            .options
            .and_then(|o| o.expires)
            .map_or(Duration::ZERO, |(_, ttl)| ttl);
        self.expired.push(Expired {
            message: entry.message,
            ttl,
        });
    }

    /// Drops every expired message (to make room).
    fn purge_expired(&mut self) {
        if self.expiring == 0 {
            return;
        }
        let mut now = None;
        if !self.items.iter().any(|e| e.expired(&mut now)) {
            return;
        }
        let items = std::mem::take(&mut self.items);
        for entry in items {
            if entry.expired(&mut now) {
                self.forget(&entry);
                self.set_aside(entry);
            } else {
                self.items.push_back(entry);
            }
        }
    }

    /// Messages dropped on expiry since the last call, oldest first, and how many more
    /// expired beyond the [`MAX_EXPIRED_HELD`] kept to be handed back.
    pub(crate) fn take_expired(&mut self) -> (Vec<Expired>, usize) {
        (
            std::mem::take(&mut self.expired),
            std::mem::take(&mut self.expired_uncarried),
        )
    }

    /// Whether expired or replaced messages wait to be reported.
    pub(crate) fn has_events(&self) -> bool {
        self.dropped > 0
            || !self.expired.is_empty()
            || self.expired_uncarried > 0
            || self.collapsed > 0
            || !self.dropped_requests.is_empty()
    }

    /// Messages the overflow policy dropped since the last call.
    pub(crate) fn take_dropped(&mut self) -> usize {
        std::mem::take(&mut self.dropped)
    }

    /// Pending requests whose message the overflow policy dropped since the last call.
    pub(crate) fn take_dropped_requests(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.dropped_requests)
    }

    /// Messages replaced through their collapse key since the last call.
    pub(crate) fn take_collapsed(&mut self) -> u64 {
        std::mem::take(&mut self.collapsed)
    }

    /// Messages queued, and bytes queued or held: what room depends on.
    pub(crate) fn load(&self) -> (usize, usize) {
        (self.items.len(), self.bytes + self.held)
    }

    /// Takes the oldest message out to be held in flight: its bytes keep counting until
    /// [`release`](Self::release)d.
    pub(crate) fn take_for_flight(&mut self) -> Option<Taken> {
        let taken = self.pop_front_tagged()?;
        self.held += taken.message.len();
        Some(taken)
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

    /// Empties the queue, oldest first (delivery options are not kept).
    #[cfg(test)]
    pub(crate) fn drain(&mut self) -> Vec<Outgoing> {
        self.drain_queued().into_iter().map(|q| q.message).collect()
    }

    /// Empties the queue, oldest first, each message with its options.
    pub(crate) fn drain_queued(&mut self) -> Vec<Queued> {
        self.bytes = 0;
        self.requests = 0;
        self.expiring = 0;
        self.keys.clear();
        self.items
            .drain(..)
            .map(|e| Queued {
                message: e.message,
                options: e.options,
            })
            .collect()
    }

    /// Empties the queue for the application ([`TakeOutbox`](crate::TakeOutbox)): the plain
    /// messages, oldest first, and apart the pending requests whose messages these were
    /// (their callers get them back with the failure).
    pub(crate) fn drain_for_application(&mut self) -> (Vec<Outgoing>, Vec<u64>) {
        let mut messages = Vec::new();
        let mut requests = Vec::new();
        for queued in self.drain_queued() {
            match queued.options.as_ref().and_then(|o| o.request) {
                Some(token) => requests.push(token),
                None => messages.push(queued.message),
            }
        }
        (messages, requests)
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
