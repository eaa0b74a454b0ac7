//! Acked delivery, client side: sequence numbers, the window of messages in flight, acks, resume
//! and duplicate suppression. Pure logic; the socket feeds it frames and asks it what to write.
//!
//! The wire format is in [`wire`] and documented in the README ("Acked protocol").

pub(crate) mod wire;

use std::collections::VecDeque;

use bytestring::ByteString;

pub use self::wire::Gap;
use crate::outbox::OutboxQueue;
use crate::{Error, Outgoing};

/// Default number of messages in flight (written, not yet acknowledged): 1,000.
pub const DEFAULT_ACK_WINDOW: usize = 1000;

/// One message written (or about to be) and not yet acknowledged.
#[derive(Debug, Clone)]
struct InFlight {
    seq: u64,
    frame: ByteString,
    original: Outgoing,
}

/// What to do with an inbound sequenced message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
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
    window: usize,
    next_seq: u64,
    in_flight: VecDeque<InFlight>,
    /// Index in `in_flight` of the next message to (re)write on this connection.
    cursor: usize,
    /// Whether the server's welcome has arrived on this connection.
    welcomed: bool,
    last_inbound: u64,
    ack_due: bool,
}

impl AckedLink {
    pub(crate) fn new(client: String, window: usize) -> Self {
        AckedLink {
            client,
            window,
            next_seq: 1,
            in_flight: VecDeque::new(),
            cursor: 0,
            welcomed: false,
            last_inbound: 0,
            ack_due: false,
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

    /// A new connection opened: say hello; nothing else until the welcome.
    pub(crate) fn connected(&mut self) -> String {
        self.welcomed = false;
        self.cursor = 0;
        // Nothing but the hello before the welcome (an ack is sent again after it).
        self.ack_due = false;
        wire::hello(&self.client, self.last_inbound)
    }

    /// The server's welcome: drop what it already has; everything else is written again.
    /// False (and ignored) when this connection was already welcomed.
    pub(crate) fn welcome(&mut self, acked: u64) -> bool {
        if self.welcomed {
            return false;
        }
        self.prune(acked);
        // A client that restarted with the same id numbers on from what the server has, or
        // the server would take its new messages for duplicates.
        self.next_seq = self.next_seq.max(acked.saturating_add(1));
        self.cursor = 0;
        self.welcomed = true;
        self.ack_due = self.last_inbound > 0;
        true
    }

    /// Whether the welcome has arrived on this connection.
    pub(crate) fn is_welcomed(&self) -> bool {
        self.welcomed
    }

    /// A cumulative ack from the server.
    pub(crate) fn ack(&mut self, seq: u64) {
        let pruned = self.prune(seq);
        self.cursor = self.cursor.saturating_sub(pruned);
    }

    fn prune(&mut self, acked: u64) -> usize {
        let mut n = 0;
        while self.in_flight.front().is_some_and(|m| m.seq <= acked) {
            self.in_flight.pop_front();
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
            return Some(m.frame.clone());
        }
        if self.in_flight.len() >= self.window {
            return None;
        }
        let original = outbox.pop_front()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        // Binary messages are refused before they reach the outbox (`accepts`).
        let payload = original.as_text().unwrap_or_default();
        let frame = ByteString::from(wire::msg(Some(seq), payload));
        self.in_flight.push_back(InFlight {
            seq,
            frame: frame.clone(),
            original,
        });
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

    /// A sequenced message from the server.
    pub(crate) fn inbound(&mut self, seq: u64) -> Inbound {
        self.ack_due = true;
        if seq <= self.last_inbound {
            Inbound::Duplicate
        } else {
            self.last_inbound = seq;
            Inbound::Deliver
        }
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
    /// forgotten: sent again, they count as new).
    pub(crate) fn take_unacked(&mut self) -> Vec<Outgoing> {
        self.cursor = 0;
        self.in_flight.drain(..).map(|m| m.original).collect()
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
        link.welcome(0);
        assert_eq!(drain(&mut link, &mut q), [1, 2, 3, 4, 5]);
        link.ack(2);
        assert_eq!(link.unacked(), 3);
        // The connection dies; after the next welcome (server has up to 3) 4 and 5 go again.
        link.connected();
        link.welcome(3);
        q.push(Outgoing::from("new"));
        assert_eq!(drain(&mut link, &mut q), [4, 5, 6]);
    }

    #[test]
    fn the_window_bounds_messages_in_flight() {
        let mut link = AckedLink::new("c".into(), 3);
        let mut q = outbox(10);
        link.connected();
        link.welcome(0);
        assert_eq!(drain(&mut link, &mut q), [1, 2, 3]);
        assert!(!link.has_next(&q));
        link.ack(1);
        assert_eq!(drain(&mut link, &mut q), [4]);
        link.ack(4);
        assert_eq!(drain(&mut link, &mut q), [5, 6, 7]);
    }

    #[test]
    fn inbound_duplicates_are_dropped_and_acked() {
        let mut link = AckedLink::new("c".into(), 3);
        assert_eq!(link.inbound(1), Inbound::Deliver);
        assert_eq!(link.inbound(2), Inbound::Deliver);
        assert_eq!(link.take_ack(), Some(wire::ack(2)));
        assert_eq!(link.take_ack(), None);
        assert_eq!(link.inbound(2), Inbound::Duplicate);
        assert_eq!(link.take_ack(), Some(wire::ack(2)));
        assert!(link.connected().contains(r#""last_seq":2"#));
    }

    #[test]
    fn a_restarted_client_numbers_on_from_what_the_server_has() {
        let mut link = AckedLink::new("c".into(), 10);
        let mut q = outbox(2);
        link.connected();
        assert!(link.welcome(41));
        assert_eq!(drain(&mut link, &mut q), [42, 43]);
        assert!(
            !link.welcome(0),
            "a second welcome on one connection is ignored"
        );
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
            assert!(link.welcome(0));
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
                    Op::Ack => link.ack(server_has),
                    Op::Reconnect => {
                        link.connected();
                        link.welcome(server_has);
                        last_on_conn = 0;
                    }
                }
                prop_assert!(link.unacked() <= window);
            }
            // Drain: reconnect once, then write until nothing is left, acking as we go.
            link.connected();
            link.welcome(server_has);
            while let Some(frame) = link.next_frame(&mut outbox) {
                let seq = seq_of(&frame);
                prop_assert_eq!(seq, server_has + 1, "a gap or a duplicate");
                server_has = seq;
                link.ack(server_has);
            }
            prop_assert_eq!(server_has, sent);
            prop_assert_eq!(link.unacked(), 0);
        }
    }
}
