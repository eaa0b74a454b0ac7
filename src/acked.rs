//! Acked delivery, client side: sequence numbers, the window of messages in flight, acks, resume
//! and duplicate suppression. Pure logic; the socket feeds it frames and asks it what to write.
//!
//! The wire format is in [`wire`] and documented in the README ("Acked protocol").

pub(crate) mod wire;

use std::collections::VecDeque;

use bytestring::ByteString;

pub use self::wire::{ResumeGap, MAX_SEQ};
use crate::delivery::Receipted;
use crate::outbox::OutboxQueue;
use crate::{Error, Outgoing};

/// Default number of messages in flight (written, not yet acknowledged): 1,000.
pub(crate) const DEFAULT_ACK_WINDOW: usize = 1000;

/// One message written (or about to be) and not yet acknowledged, held once: as its frame.
#[derive(Debug, Clone)]
struct InFlight {
    seq: u64,
    /// The message as the application gave it. Its frame is built each time it is written
    /// (rarely more than once), so nothing is shared between the codec and this queue.
    message: Outgoing,
    /// The payload's size, as the outbox counted it.
    size: usize,
    /// Called when the server acknowledges it ([`Delivery::on_written`](crate::Delivery::on_written)).
    receipt: Option<crate::delivery::Receipt>,
    /// The pending request it is.
    request: Option<u64>,
}

impl InFlight {
    /// Its frame: the message wrapped with its sequence number.
    fn frame(&self) -> ByteString {
        let text = self.message.as_text().unwrap_or_default();
        ByteString::from(wire::msg(Some(self.seq), text))
    }
}

/// What to do with an inbound sequenced message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// New: deliver it.
    Deliver,
    /// Seen before (a resend after a reconnect): drop it.
    Duplicate,
}

/// The acked state of one socket. It outlives connections (and, handed over by a supervisor,
/// the socket actor itself).
#[derive(Debug)]
pub(crate) struct AckedLink {
    client: String,
    /// Tells this link apart from another process or device using the same client id.
    instance: u64,
    window: usize,
    next_seq: u64,
    in_flight: VecDeque<InFlight>,
    /// Index in `in_flight` of the next message to (re)write on this connection.
    cursor: usize,
    /// Whether the server's welcome has arrived on this connection.
    welcomed: bool,
    /// Whether any connection of this link was ever welcomed.
    ever_welcomed: bool,
    /// The server's `acked` at this link's first welcome: a message whose known sequence
    /// number (`Delivery::known_seq`, given by the fleet for a key's previous owner) is at or
    /// below it is one the server already has, and is not written again.
    floor: Option<u64>,
    /// The highest server sequence number delivered (or passed over by a reported gap).
    last_inbound: u64,
    ack_due: bool,
    /// The oldest unacknowledged message's sequence number and how many connections in a row
    /// the peer ended over it.
    refusals: Option<(u64, u32)>,
}

impl AckedLink {
    pub(crate) fn new(client: String, window: usize) -> Self {
        use crate::RandomSource;
        AckedLink {
            client,
            instance: crate::SplitMix64::from_entropy().next_u64() & MAX_SEQ,
            window,
            next_seq: 1,
            in_flight: VecDeque::new(),
            cursor: 0,
            welcomed: false,
            ever_welcomed: false,
            floor: None,
            last_inbound: 0,
            ack_due: false,
            refusals: None,
        }
    }

    /// Refuses what the protocol cannot carry.
    pub(crate) fn accepts(message: &Outgoing) -> Result<(), Error> {
        match message {
            Outgoing::Text(_) => Ok(()),
            Outgoing::Binary(_) => Err(Error::Encode(
                "acked mode carries text messages only, not binary".into(),
            )),
        }
    }

    /// The size of `message` as it will be written (in its envelope, with the largest
    /// sequence number, JSON-escaped if it is not JSON), when that is more than `limit`. The
    /// text is parsed to find out whether it is JSON only if its escaped form, never shorter,
    /// is over `limit`.
    pub(crate) fn written_size_over(message: &Outgoing, limit: usize) -> Option<usize> {
        let text = message.as_text().unwrap_or_default();
        let seq = Some(MAX_SEQ);
        // The escaped form is never shorter than the JSON one: if it fits, the envelope does.
        if wire::envelope_len(seq, text, false) <= limit {
            return None;
        }
        let size = wire::envelope_len(seq, text, wire::is_json(text));
        (size > limit).then_some(size)
    }

    /// The peer ended the connection over the oldest unacknowledged message (if it was
    /// written on that connection). After `max` times in a row it is given up and returned,
    /// with the count; the next welcome numbers the rest on without it.
    pub(crate) fn refused(
        &mut self,
        max: u32,
        outbox: &mut OutboxQueue,
    ) -> Option<(Outgoing, u32)> {
        if self.cursor == 0 {
            return None; // nothing was written on that connection
        }
        let front = self.in_flight.front()?.seq;
        let count = match self.refusals {
            Some((seq, n)) if seq == front => n + 1,
            _ => 1,
        };
        if count < max {
            self.refusals = Some((front, count));
            return None;
        }
        self.refusals = None;
        self.cursor = self.cursor.saturating_sub(1);
        let m = self.in_flight.pop_front()?;
        outbox.release(m.size);
        if let Some(receipt) = &m.receipt {
            receipt.fire(Receipted::GivenUp);
        }
        Some((m.message, count))
    }

    /// A new connection opened: say hello; nothing else until the welcome.
    pub(crate) fn connected(&mut self) -> String {
        self.welcomed = false;
        self.cursor = 0;
        // Nothing but the hello before the welcome (an ack is sent again after it).
        self.ack_due = false;
        wire::hello(&self.client, self.last_inbound, self.instance)
    }

    /// The server's welcome: drop what it already has of this link's messages; everything
    /// else is written again, numbered on from `acked`. False (and ignored) when this
    /// connection was already welcomed; an error when the welcome is one the server could not
    /// honestly send.
    ///
    /// `acked` is where the server's numbering of this client id stands; `yours`, when given,
    /// is the last of *this link's* messages it took (another process or device with the same
    /// id wrote since). Renumbering from `acked + 1` covers every restart: a server that lost
    /// its state (it acks less than it did), a client that restarted, another instance that
    /// moved the numbering on.
    pub(crate) fn welcome(
        &mut self,
        acked: u64,
        gap: Option<ResumeGap>,
        yours: Option<u64>,
        outbox: &mut OutboxQueue,
    ) -> Result<bool, Error> {
        if self.welcomed {
            return Ok(false);
        }
        if acked > MAX_SEQ {
            return Err(Error::Protocol(format!(
                "welcome acknowledges {acked}, above the largest sequence number {MAX_SEQ}"
            )));
        }
        let last_sent = self.next_seq - 1;
        if let Some(yours) = yours {
            if yours > last_sent || yours > acked {
                return Err(Error::Protocol(format!(
                    "welcome says {yours} of this client's messages arrived (acked {acked}), but the last sent was {last_sent}"
                )));
            }
        }
        if let Some(gap) = gap {
            if gap.from > gap.to || gap.to > MAX_SEQ || gap.from <= self.last_inbound {
                return Err(Error::Protocol(format!(
                    "welcome reports gap {}..={} after {} received",
                    gap.from, gap.to, self.last_inbound
                )));
            }
            // The gap is reported (once, by the socket); what follows it is the next in order.
            self.last_inbound = gap.to;
        }
        let mine = match yours {
            Some(yours) => yours,
            None if self.ever_welcomed && acked > last_sent => {
                // The numbering moved past this link and the server does not say how much of
                // it was ours: keep everything (sent again, perhaps twice) rather than lose.
                log::warn!(
                    "resocket acked {:?}: the server acknowledges {acked}, more than this link sent ({last_sent}); another process with the same client id? Unacknowledged messages are sent again",
                    self.client
                );
                0
            }
            None => acked,
        };
        self.prune(mine, outbox);
        let mut seq = acked;
        for m in &mut self.in_flight {
            seq += 1;
            m.seq = seq;
        }
        // The floor is the first welcome's; a server whose numbering went back (it restarted,
        // or evicted this client) has lost what the floor stood for, and nothing is skipped.
        if !self.ever_welcomed {
            self.floor = Some(acked);
        } else if self.floor.is_some_and(|floor| acked < floor) {
            self.floor = None;
        }
        self.next_seq = seq + 1;
        self.cursor = 0;
        self.welcomed = true;
        self.ever_welcomed = true;
        self.ack_due = self.last_inbound > 0;
        Ok(true)
    }

    /// Whether the welcome has arrived on this connection.
    pub(crate) fn is_welcomed(&self) -> bool {
        self.welcomed
    }

    /// A cumulative ack from the server; an error for an ack of a message never sent.
    pub(crate) fn ack(&mut self, seq: u64, outbox: &mut OutboxQueue) -> Result<(), Error> {
        let last_sent = self.next_seq - 1;
        if seq > last_sent {
            return Err(Error::Protocol(format!(
                "ack {seq} for a message never sent (last sent {last_sent})"
            )));
        }
        let pruned = self.prune(seq, outbox);
        self.cursor = self.cursor.saturating_sub(pruned);
        Ok(())
    }

    fn prune(&mut self, acked: u64, outbox: &mut OutboxQueue) -> usize {
        let mut n = 0;
        while self.in_flight.front().is_some_and(|m| m.seq <= acked) {
            if let Some(m) = self.in_flight.pop_front() {
                outbox.release(m.size);
                if let Some(receipt) = &m.receipt {
                    receipt.fire(Receipted::Acked(m.seq));
                }
            }
            n += 1;
        }
        n
    }

    /// Whether [`next_frame`](Self::next_frame) has something to write now.
    pub(crate) fn has_next(&self, outbox: &OutboxQueue) -> bool {
        self.welcomed
            && (self.cursor < self.in_flight.len()
                || (self.in_flight.len() < self.window && !outbox.is_empty()))
    }

    /// The next data frame to write: an unacked message again, or the next outbox message
    /// wrapped with its sequence number. None while the window is full.
    pub(crate) fn next_frame(&mut self, outbox: &mut OutboxQueue) -> Option<ByteString> {
        if !self.welcomed {
            return None;
        }
        if let Some(m) = self.in_flight.get(self.cursor) {
            self.cursor += 1;
            return Some(m.frame());
        }
        if self.in_flight.len() >= self.window {
            return None;
        }
        let taken = loop {
            let taken = outbox.take_for_flight()?;
            match (taken.known_seq, self.floor) {
                (Some(known), Some(floor)) if known <= floor => {
                    // An earlier link (the key's previous owner) wrote it, and the server had
                    // it before this link was first welcomed: once is enough.
                    outbox.release(taken.message.len());
                    if let Some(receipt) = &taken.receipt {
                        receipt.fire(Receipted::AlreadyDelivered);
                    }
                }
                _ => break taken,
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        // Binary messages are refused before they reach the outbox (`accepts`).
        let flight = InFlight {
            seq,
            size: taken.message.len(),
            message: taken.message,
            receipt: taken.receipt,
            request: taken.request,
        };
        let frame = flight.frame();
        self.in_flight.push_back(flight);
        self.cursor = self.in_flight.len();
        Some(frame)
    }

    /// An identify message: unsequenced, sent on every connect, never resent.
    pub(crate) fn identify_frame(message: &Outgoing) -> Outgoing {
        match message {
            Outgoing::Text(t) => Outgoing::Text(wire::msg(None, t).into()),
            other => other.clone(),
        }
    }

    /// A sequenced message from the server. Only the next in order is delivered; a jump is
    /// an error (the server skipped messages without reporting a gap), except for the first
    /// message a fresh link ever receives: a client that restarted takes up the server's
    /// numbering wherever it is.
    pub(crate) fn inbound(&mut self, seq: u64) -> Result<Arrival, Error> {
        if seq <= self.last_inbound {
            self.ack_due = true;
            return Ok(Arrival::Duplicate);
        }
        let fresh = self.last_inbound == 0 && seq <= MAX_SEQ;
        if seq != self.last_inbound + 1 && !fresh {
            return Err(Error::Protocol(format!(
                "sequence jump: expected {}, got {seq}",
                self.last_inbound + 1
            )));
        }
        self.ack_due = true;
        self.last_inbound = seq;
        Ok(Arrival::Deliver)
    }

    /// Whether an ack should be written (never before the welcome).
    pub(crate) fn ack_due(&self) -> bool {
        self.welcomed && self.ack_due && self.last_inbound > 0
    }

    /// The ack to write, if one is due.
    pub(crate) fn take_ack(&mut self) -> Option<String> {
        if std::mem::take(&mut self.ack_due) && self.last_inbound > 0 {
            Some(wire::ack(self.last_inbound))
        } else {
            None
        }
    }

    /// Messages written but not yet acknowledged.
    pub(crate) fn unacked(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes the unacknowledged messages back, oldest first (their sequence numbers are
    /// forgotten: sent again, they count as new), and the tokens of those that are pending
    /// requests (their messages go back to the requests' callers, not in the list).
    pub(crate) fn take_unacked(&mut self, outbox: &mut OutboxQueue) -> (Vec<Outgoing>, Vec<u64>) {
        self.cursor = 0;
        outbox.release(self.in_flight_bytes());
        let (mut messages, mut requests) = (Vec::new(), Vec::new());
        for m in self.in_flight.drain(..) {
            match m.request {
                Some(token) => requests.push(token),
                None => messages.push(m.message),
            }
        }
        (messages, requests)
    }

    /// Payload bytes held in flight (counted against the outbox's byte limit).
    pub(crate) fn in_flight_bytes(&self) -> usize {
        self.in_flight.iter().map(|m| m.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outbox;

    fn outbox(n: usize) -> OutboxQueue {
        let mut q = OutboxQueue::new(Outbox::bounded(1000));
        for i in 0..n {
            q.push(Outgoing::from(format!(r#"{{"n":{i}}}"#)));
        }
        q
    }

    fn drain(link: &mut AckedLink, q: &mut OutboxQueue) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(frame) = link.next_frame(q) {
            match wire::decode(&frame) {
                Some(wire::Frame::Msg { seq: Some(s), .. }) => seqs.push(s),
                other => panic!("{other:?}"),
            }
        }
        seqs
    }

    #[test]
    fn nothing_before_the_welcome_then_everything_unacked_again_in_order() {
        let mut link = AckedLink::new("c".into(), 100);
        let mut q = outbox(5);
        assert!(link.connected().contains(r#""last_seq":0"#));
        assert_eq!(link.next_frame(&mut q), None);
        link.welcome(0, None, None, &mut q).unwrap();
        assert_eq!(drain(&mut link, &mut q), [1, 2, 3, 4, 5]);
        link.ack(2, &mut q).unwrap();
        assert_eq!(link.unacked(), 3);
        // The connection dies; after the next welcome (server has up to 3) 4 and 5 go again.
        link.connected();
        link.welcome(3, None, None, &mut q).unwrap();
        q.push(Outgoing::from("new"));
        assert_eq!(drain(&mut link, &mut q), [4, 5, 6]);
    }

    #[test]
    fn the_window_bounds_messages_in_flight() {
        let mut link = AckedLink::new("c".into(), 3);
        let mut q = outbox(10);
        link.connected();
        link.welcome(0, None, None, &mut q).unwrap();
        assert_eq!(drain(&mut link, &mut q), [1, 2, 3]);
        assert!(!link.has_next(&q));
        link.ack(1, &mut q).unwrap();
        assert_eq!(drain(&mut link, &mut q), [4]);
        link.ack(4, &mut q).unwrap();
        assert_eq!(drain(&mut link, &mut q), [5, 6, 7]);
    }

    #[test]
    fn inbound_duplicates_are_dropped_and_acked() {
        let mut link = AckedLink::new("c".into(), 3);
        assert_eq!(link.inbound(1), Ok(Arrival::Deliver));
        assert_eq!(link.inbound(2), Ok(Arrival::Deliver));
        assert_eq!(link.take_ack(), Some(wire::ack(2)));
        assert_eq!(link.take_ack(), None);
        assert_eq!(link.inbound(2), Ok(Arrival::Duplicate));
        assert_eq!(link.take_ack(), Some(wire::ack(2)));
        assert!(link.connected().contains(r#""last_seq":2"#));
    }

    #[test]
    fn a_restarted_client_numbers_on_from_what_the_server_has() {
        let mut link = AckedLink::new("c".into(), 10);
        let mut q = outbox(2);
        link.connected();
        assert!(link.welcome(41, None, None, &mut q).unwrap());
        assert_eq!(drain(&mut link, &mut q), [42, 43]);
        assert!(
            !link.welcome(0, None, None, &mut q).unwrap(),
            "a second welcome on one connection is ignored"
        );
    }

    #[test]
    fn a_server_that_lost_its_state_gets_the_unacked_renumbered_from_its_acked() {
        let mut link = AckedLink::new("c".into(), 10);
        let mut q = outbox(7);
        link.connected();
        link.welcome(0, None, None, &mut q).unwrap();
        assert_eq!(drain(&mut link, &mut q), [1, 2, 3, 4, 5, 6, 7]);
        link.ack(4, &mut q).unwrap();
        // A fresh hub: it has nothing, and expects 1 next.
        link.connected();
        assert!(link.welcome(0, None, None, &mut q).unwrap());
        q.push(Outgoing::from("new"));
        assert_eq!(drain(&mut link, &mut q), [1, 2, 3, 4]);
    }

    #[test]
    fn impossible_acks_and_welcomes_are_protocol_errors() {
        let mut link = AckedLink::new("c".into(), 10);
        let mut q = outbox(2);
        link.connected();
        assert!(matches!(
            link.welcome(u64::MAX, None, None, &mut q),
            Err(Error::Protocol(_))
        ));
        link.welcome(0, None, None, &mut q).unwrap();
        drain(&mut link, &mut q);
        assert!(matches!(link.ack(3, &mut q), Err(Error::Protocol(_))));
        assert!(matches!(
            link.ack(u64::MAX, &mut q),
            Err(Error::Protocol(_))
        ));
        link.ack(2, &mut q).unwrap();
        link.connected();
        assert!(
            matches!(
                link.welcome(5, None, Some(3), &mut q),
                Err(Error::Protocol(_))
            ),
            "3 of this link's messages cannot have arrived: it sent 2"
        );
        link.connected();
        let gap = Some(ResumeGap { from: 3, to: 1 });
        assert!(matches!(
            link.welcome(2, gap, None, &mut q),
            Err(Error::Protocol(_))
        ));
    }

    #[test]
    fn a_sequence_jump_is_an_error_but_a_fresh_link_takes_up_the_numbering() {
        let mut link = AckedLink::new("c".into(), 3);
        assert_eq!(link.inbound(51), Ok(Arrival::Deliver), "fresh: any start");
        assert_eq!(link.inbound(52), Ok(Arrival::Deliver));
        assert!(matches!(link.inbound(54), Err(Error::Protocol(_))));
        assert_eq!(
            link.inbound(53),
            Ok(Arrival::Deliver),
            "the jump was not taken"
        );
        let mut fresh = AckedLink::new("d".into(), 3);
        assert!(matches!(fresh.inbound(u64::MAX), Err(Error::Protocol(_))));
    }

    #[test]
    fn a_reported_gap_is_passed_over_once() {
        let mut link = AckedLink::new("c".into(), 3);
        let mut q = outbox(0);
        assert_eq!(link.inbound(1), Ok(Arrival::Deliver));
        link.connected();
        link.welcome(0, Some(ResumeGap { from: 2, to: 6 }), None, &mut q)
            .unwrap();
        assert_eq!(link.inbound(7), Ok(Arrival::Deliver));
        assert!(link.connected().contains(r#""last_seq":7"#));
        link.welcome(0, None, None, &mut q).unwrap();
        assert_eq!(link.inbound(7), Ok(Arrival::Duplicate));
    }

    #[test]
    fn another_instance_moving_the_numbering_on_loses_nothing_of_this_one() {
        let mut link = AckedLink::new("c".into(), 10);
        let mut q = outbox(3);
        link.connected();
        link.welcome(0, None, None, &mut q).unwrap();
        assert_eq!(drain(&mut link, &mut q), [1, 2, 3]);
        // The server took 1 of ours, then another device wrote up to 7.
        link.connected();
        assert!(link.welcome(7, None, Some(1), &mut q).unwrap());
        assert_eq!(
            drain(&mut link, &mut q),
            [8, 9],
            "2 and 3 again, numbered on"
        );
        // Not told how much was ours: everything unacknowledged goes again.
        link.connected();
        assert!(link.welcome(20, None, None, &mut q).unwrap());
        assert_eq!(drain(&mut link, &mut q), [21, 22]);
    }

    #[test]
    fn what_the_server_had_before_the_first_welcome_is_not_written_again() {
        use crate::Delivery;
        use std::sync::{Arc, Mutex};
        // A fleet key's new owner: the old owner wrote known 1..=3 and the server took them;
        // 4 and 5 were lost from the stream (trimmed), 6 and 7 are new.
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut q = OutboxQueue::new(Outbox::bounded(1000));
        for known in [1, 2, 3, 6, 7] {
            let fired = fired.clone();
            let delivery = Delivery::new()
                .known_seq(Some(known))
                .on_receipt(move |how| fired.lock().unwrap().push((known, how)));
            q.push_with(Outgoing::from(format!("{known}")), &delivery);
        }
        let mut link = AckedLink::new("c".into(), 10);
        link.connected();
        assert!(link.welcome(3, None, Some(0), &mut q).unwrap());
        assert_eq!(drain(&mut link, &mut q), [4, 5], "6 and 7, numbered on");
        let already: Vec<_> = (1..=3).map(|k| (k, Receipted::AlreadyDelivered)).collect();
        assert_eq!(*fired.lock().unwrap(), already);
        link.ack(5, &mut q).unwrap();
        assert_eq!(
            fired.lock().unwrap()[3..],
            [(6, Receipted::Acked(4)), (7, Receipted::Acked(5))]
        );
        assert_eq!((q.len(), link.unacked()), (0, 0));
        // A later welcome with more does not move the floor.
        link.connected();
        link.welcome(5, None, None, &mut q).unwrap();
        q.push_with(Outgoing::from("old"), &Delivery::new().known_seq(Some(3)));
        assert!(
            drain(&mut link, &mut q).is_empty(),
            "still at or below the floor"
        );
        // A server that lost its state (acked 0, below the floor) gets everything, whatever
        // its known number: the floor is gone with that state.
        link.connected();
        link.welcome(0, None, None, &mut q).unwrap();
        for known in [1, 2, 3] {
            q.push_with(
                Outgoing::from(format!("{known}")),
                &Delivery::new().known_seq(Some(known)),
            );
        }
        assert_eq!(drain(&mut link, &mut q), [1, 2, 3]);
    }

    #[test]
    fn a_message_given_up_fires_its_receipt_as_given_up() {
        use crate::Delivery;
        use std::sync::{Arc, Mutex};
        let fired = Arc::new(Mutex::new(Vec::new()));
        let mut q = OutboxQueue::new(Outbox::bounded(1000));
        let log = fired.clone();
        let delivery = Delivery::new().on_receipt(move |how| log.lock().unwrap().push(how));
        q.push_with(Outgoing::from("poison"), &delivery);
        let mut link = AckedLink::new("c".into(), 10);
        link.connected();
        link.welcome(0, None, None, &mut q).unwrap();
        assert_eq!(drain(&mut link, &mut q), [1]);
        assert!(link.refused(1, &mut q).is_some());
        assert_eq!(*fired.lock().unwrap(), [Receipted::GivenUp]);
    }

    #[test]
    fn binary_is_refused() {
        assert!(AckedLink::accepts(&Outgoing::Binary(vec![1].into())).is_err());
        assert!(AckedLink::accepts(&Outgoing::from("x")).is_ok());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::Outbox;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Send,
        Write,
        Ack,
        Reconnect,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Send),
            Just(Op::Write),
            Just(Op::Ack),
            Just(Op::Reconnect)
        ]
    }

    fn seq_of(frame: &str) -> u64 {
        match wire::decode(frame) {
            Some(wire::Frame::Msg { seq: Some(s), .. }) => s,
            other => panic!("not a sequenced msg: {other:?}"),
        }
    }

    proptest! {
        /// A model of the link against a server that acks what it received: whatever the
        /// interleaving of sends, writes, acks and reconnects, the window holds, a connection
        /// never writes a sequence twice or out of order, and in the end the server has every
        /// message exactly once, in order.
        #[test]
        fn window_order_and_exactly_once(
            window in 1usize..8,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut link = AckedLink::new("c".into(), window);
            let mut outbox = OutboxQueue::new(Outbox::bounded(10_000));
            let (mut sent, mut server_has, mut last_on_conn) = (0u64, 0u64, 0u64);
            link.connected();
            assert!(link.welcome(0, None, None, &mut outbox).unwrap());
            for op in ops {
                match op {
                    Op::Send => {
                        outbox.push(Outgoing::from(format!("{sent}")));
                        sent += 1;
                    }
                    Op::Write => {
                        if let Some(frame) = link.next_frame(&mut outbox) {
                            let seq = seq_of(&frame);
                            prop_assert!(seq > last_on_conn, "out of order on one connection");
                            last_on_conn = seq;
                            // The server delivers only the next in sequence (TCP order).
                            if seq == server_has + 1 {
                                server_has = seq;
                            }
                        }
                    }
                    Op::Ack => link.ack(server_has, &mut outbox).unwrap(),
                    Op::Reconnect => {
                        link.connected();
                        link.welcome(server_has, None, None, &mut outbox).unwrap();
                        last_on_conn = 0;
                    }
                }
                prop_assert!(link.unacked() <= window);
            }
            // Drain: reconnect once, then write until nothing is left, acking as we go.
            link.connected();
            link.welcome(server_has, None, None, &mut outbox).unwrap();
            while let Some(frame) = link.next_frame(&mut outbox) {
                let seq = seq_of(&frame);
                prop_assert_eq!(seq, server_has + 1, "a gap or a duplicate");
                server_has = seq;
                link.ack(server_has, &mut outbox).unwrap();
            }
            prop_assert_eq!(server_has, sent);
            prop_assert_eq!(link.unacked(), 0);
        }
    }
}
