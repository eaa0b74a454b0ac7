//! Per-message delivery options: how long a queued message stays worth sending, and which
//! newer message replaces it.

use std::sync::Arc;
use std::time::Duration;

use crate::Error;

/// Delivery options for one message, for upstreams where an old message is worse than none:
/// a price, a position, a presence update.
///
/// - **Time to live.** A message still in the outbox when its TTL (counted from the send) has
///   passed is not written: it is dropped and an [`Error::Expired`] event hands it back. The
///   TTL applies until the message is written; in acked mode a message already written (in
///   flight) is resent after a reconnect whatever its age, so the server sees every sequence
///   number.
/// - **Collapse key.** A newer message with the same key replaces an older one still queued,
///   in place (it takes the older one's position in the queue), so a reconnect replays the
///   latest value once instead of every value queued while disconnected. Messages already
///   written are never replaced. Replacements are counted in
///   [`Counters::collapsed`](crate::Counters::collapsed).
///
/// ```
/// use std::time::Duration;
/// use resocket::{Delivery, SendMessage};
///
/// let quote = SendMessage::text(r#"{"BTC":97000}"#)
///     .with(Delivery::new().ttl(Duration::from_secs(5)).collapse_key("quote:BTC"));
/// assert_eq!(quote.delivery.time_to_live(), Some(Duration::from_secs(5)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    ttl: Option<Duration>,
    collapse_key: Option<Arc<str>>,
    written: Option<Receipt>,
    /// The pending request this message is (set by the socket, never by users).
    pub(crate) request: Option<u64>,
    /// The acked-mode sequence number this message has if an earlier link with the same
    /// client id wrote it (a fleet key's previous owner): not written again when the server
    /// already had it at this link's first welcome (set by the fleet, never by users).
    pub(crate) known_seq: Option<u64>,
}

impl Delivery {
    /// No options: the message waits as long as the outbox keeps it and is never replaced.
    pub fn new() -> Self {
        Delivery::default()
    }

    /// Drop the message instead of writing it once `ttl` has passed since it was sent. A TTL
    /// of zero is refused when sending ([`Error::InvalidConfig`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// A newer queued message with the same `key` replaces this one.
    pub fn collapse_key(mut self, key: impl Into<Arc<str>>) -> Self {
        self.collapse_key = Some(key.into());
        self
    }

    /// Call `receipt` once the message is delivered as far as the mode can tell: in the
    /// default mode when it is written to a connection, in acked mode when the server
    /// acknowledges it. It runs on the socket's thread, so it must be quick (send on a
    /// channel). It is not called for a message that is dropped, expires or is taken back with
    /// `TakeOutbox`, nor, in acked mode, for one in flight when a supervisor restarts its
    /// socket (it is resent without it); a queued message handed to a restarted socket keeps
    /// it. No call means "not known to be delivered" (the fleet delivers such a message
    /// again).
    pub fn on_written(mut self, receipt: impl Fn() + Send + Sync + 'static) -> Self {
        self.written = Some(Receipt(Arc::new(move |_| receipt())));
        self
    }

    /// [`on_written`](Self::on_written), told how the message was delivered (the fleet
    /// learns the sequence number the server gave it).
    #[cfg(any(feature = "fleet", test))]
    pub(crate) fn on_receipt(
        mut self,
        receipt: impl Fn(Receipted) + Send + Sync + 'static,
    ) -> Self {
        self.written = Some(Receipt(Arc::new(receipt)));
        self
    }

    /// Marks the message with the sequence number an earlier link would have written it
    /// with ([`Delivery::known_seq`]).
    #[cfg(any(feature = "fleet", test))]
    pub(crate) fn known_seq(mut self, seq: Option<u64>) -> Self {
        self.known_seq = seq;
        self
    }

    /// The time to live, if set.
    pub fn time_to_live(&self) -> Option<Duration> {
        self.ttl
    }

    /// The collapse key, if set.
    pub fn key(&self) -> Option<&str> {
        self.collapse_key.as_deref()
    }

    /// Whether no option is set (the common case, which costs nothing).
    pub fn is_plain(&self) -> bool {
        self.ttl.is_none()
            && self.collapse_key.is_none()
            && self.request.is_none()
            && self.written.is_none()
            && self.known_seq.is_none()
    }

    /// The options of pending request `token`'s message: none but the tag.
    pub(crate) fn for_request(token: u64) -> Self {
        Delivery {
            request: Some(token),
            ..Delivery::default()
        }
    }

    pub(crate) fn collapse_key_arc(&self) -> Option<&Arc<str>> {
        self.collapse_key.as_ref()
    }

    pub(crate) fn receipt(&self) -> Option<&Receipt> {
        self.written.as_ref()
    }

    /// Refuses options that can never be honoured.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.ttl == Some(Duration::ZERO) {
            return Err(Error::InvalidConfig {
                field: "ttl",
                reason: "a time to live of zero would drop the message before it could be written"
                    .into(),
            });
        }
        Ok(())
    }
}

/// How a message with a receipt was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receipted {
    /// Written to a connection (default mode).
    Written,
    /// Acknowledged by the server as this sequence number (acked mode).
    Acked(u64),
    /// Not written: the server already had it from an earlier link with the same client id
    /// (its [`Delivery::known_seq`] was at or below the first welcome's `acked`).
    AlreadyDelivered,
    /// Given up in acked mode: the server ended the connection over it too many times in a
    /// row (`SocketConfig::max_refusals`), and it was handed back in an error event.
    GivenUp,
}

/// A [`Delivery::on_written`] callback. Two are equal when they are the same callback.
#[derive(Clone)]
pub(crate) struct Receipt(Arc<dyn Fn(Receipted) + Send + Sync>);

impl Receipt {
    /// The message was delivered as far as the mode can tell, as `how`.
    pub(crate) fn fire(&self, how: Receipted) {
        (self.0)(how)
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receipt")
    }
}

impl PartialEq for Receipt {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Receipt {}
