//! One client's acked state in the hub, and the protocol rules that change it. Pure: the hub
//! actor feeds it what its sessions received and carries out what it answers.
//!
//! Every sequence number here comes from an untrusted peer: arithmetic is checked, and a
//! number the peer could not honestly send is a [`Violation`], never a panic or a new floor.

use std::collections::VecDeque;
use std::time::Instant;

use bytestring::ByteString;

use super::super::Session;
use crate::acked::wire::{self, ResumeGap, MAX_SEQ};

/// Instances remembered per client id (see [`ClientState::took`]).
const RECENT_INSTANCES: usize = 8;

/// A frame the peer could not honestly have sent: the session is closed with `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    /// The WebSocket close code (1002 protocol error, 1008 policy violation).
    pub(crate) code: u16,
    /// Why, sent as the close description.
    pub(crate) reason: String,
}

impl Violation {
    fn protocol(reason: String) -> Self {
        Violation { code: 1002, reason }
    }
    fn policy(reason: String) -> Self {
        Violation { code: 1008, reason }
    }
}

/// What to do with a sequenced client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataOutcome {
    /// The next in sequence: hand it to the application.
    Deliver,
    /// Already received (a resend after a reconnect): drop it and acknowledge again.
    Duplicate,
}

/// What the hub answers a hello with.
#[derive(Debug)]
pub(crate) struct Welcome {
    /// The `welcome` frame.
    pub(crate) frame: String,
    /// Messages the client missed for good (trimmed from the history).
    pub(crate) gap: Option<ResumeGap>,
    /// Whether the hub had welcomed this client before (a resume).
    pub(crate) resumed: bool,
    /// The session this one replaced, still connected: to be closed.
    pub(crate) replaced: Option<Session>,
}

/// One client's state. It outlives connections; the hub evicts it only when the client has
/// been disconnected for longer than the configured idle time.
pub(crate) struct ClientState {
    /// Unique in the hub's life: handovers from a state since evicted and created afresh are
    /// told apart by it.
    pub(crate) incarnation: u64,
    /// Messages (identify messages included) accepted and not yet handed over.
    pub(crate) pending: usize,
    /// The hello rate limit of this client id.
    pub(crate) hellos: Option<crate::server::rate_limit::RateLimit>,
    /// The instance (process or device) of the live session, from its hello.
    pub(crate) instance: Option<u64>,
    /// The last message taken from each recent instance, most recent first: a client id
    /// used by two instances in turn tells each on its welcome how much of *its* messages
    /// arrived.
    taken_by: VecDeque<(u64, u64)>,
    /// A hello waiting for the messages of an earlier session to be handed over: its welcome
    /// must say what the application has taken.
    pub(crate) parked: Option<(u64, Option<u64>, Session)>,
    /// The highest client sequence number accepted (handed, or being handed, to the app).
    pub(crate) received: u64,
    /// The highest client sequence number the application has taken: what acks carry.
    pub(crate) taken: u64,
    /// What the last ack written to a session of this client carried.
    pub(crate) acked: u64,
    /// Bumped when accepted-but-untaken messages are given up (the application went away),
    /// so that handovers still completing from before cannot move `taken`.
    pub(crate) epoch: u64,
    /// The last server sequence number used.
    next_seq: u64,
    /// Sent and not acknowledged: (seq, text as the application gave it). The frame is built
    /// when written, so renumbering after a hub restart is free.
    history: VecDeque<(u64, ByteString)>,
    /// Messages up to this sequence number were dropped from the history unacknowledged.
    trimmed: u64,
    /// Whether this hub has welcomed the client at least once.
    greeted: bool,
    /// The highest server sequence number written on the live session (or known to the
    /// client from its hello).
    sent: u64,
    /// The live session, if any.
    pub(crate) session: Option<Session>,
    /// When the client was last without a session (or created without one).
    pub(crate) idle_since: Option<Instant>,
}

impl ClientState {
    /// A client the hub knows nothing of yet.
    pub(crate) fn new(now: Instant, incarnation: u64) -> Self {
        ClientState {
            incarnation,
            pending: 0,
            hellos: None,
            instance: None,
            taken_by: VecDeque::new(),
            parked: None,
            received: 0,
            taken: 0,
            acked: 0,
            epoch: 0,
            next_seq: 0,
            history: VecDeque::new(),
            trimmed: 0,
            greeted: false,
            sent: 0,
            session: None,
            idle_since: Some(now),
        }
    }

    /// Whether messages accepted from the client are still on their way to the application.
    pub(crate) fn handing_over(&self) -> bool {
        self.received > self.taken
    }

    /// Whether `session` is this client's live session.
    pub(crate) fn is_current(&self, session: u64) -> bool {
        self.session.as_ref().is_some_and(|s| s.id() == session)
    }

    /// Messages kept for resume.
    pub(crate) fn unacked(&self) -> usize {
        self.history.len()
    }

    /// Queues a server message, keeping at most `limit` (the hub then writes it with
    /// [`next_unsent`](Self::next_unsent)). Returns `true` when keeping the limit dropped a
    /// message the live session had not been written yet: the client can no longer receive
    /// everything in order on this session, so the hub ends it and the next welcome reports
    /// the gap.
    #[must_use]
    pub(crate) fn queue(&mut self, text: ByteString, limit: usize) -> bool {
        self.next_seq = self.next_seq.saturating_add(1);
        self.history.push_back((self.next_seq, text));
        let mut lost_unwritten = false;
        while self.history.len() > limit {
            if let Some((dropped, _)) = self.history.pop_front() {
                self.trimmed = dropped;
                lost_unwritten |= dropped > self.sent;
            }
        }
        lost_unwritten && self.session.is_some()
    }

    /// The next message not yet written on the live session, as its frame, if `fits` its
    /// length; it then counts as written. The hub pumps these while the session's write
    /// backlog has room, so a replay of a long history never floods a session.
    pub(crate) fn next_unsent(&mut self, fits: impl FnOnce(usize) -> bool) -> Option<ByteString> {
        self.session.as_ref()?;
        let next = self.history.partition_point(|(seq, _)| *seq <= self.sent);
        let (seq, text) = self.history.get(next)?;
        let frame = wire::msg(Some(*seq), text);
        if !fits(frame.len()) {
            return None;
        }
        self.sent = *seq;
        Some(ByteString::from(frame))
    }

    /// A hello on `session` from a client that has seen server messages up to `last_seq`.
    ///
    /// The restart rule: a hub that has never welcomed this client (it restarted and lost its
    /// state, or the client is new) takes `last_seq` as the numbering the client knows and
    /// renumbers what it queued before the hello above it, so nothing queued is lost and the
    /// client sees no jump. A hub that has welcomed the client refuses a `last_seq` beyond
    /// what it ever sent.
    pub(crate) fn hello(
        &mut self,
        last_seq: u64,
        session: Session,
        instance: Option<u64>,
    ) -> Result<Welcome, Violation> {
        if last_seq > MAX_SEQ {
            return Err(Violation::policy(format!(
                "last_seq {last_seq} is above the largest sequence number ({MAX_SEQ})"
            )));
        }
        let resumed = self.greeted;
        if !self.greeted {
            self.renumber_above(last_seq);
        } else if last_seq > self.next_seq {
            return Err(Violation::policy(format!(
                "last_seq {last_seq} is beyond the last message sent ({})",
                self.next_seq
            )));
        }
        self.greeted = true;
        // The client has everything up to last_seq.
        self.forget_through(last_seq);
        let gap = (last_seq < self.trimmed).then(|| ResumeGap {
            from: last_seq + 1,
            to: self.trimmed,
        });
        self.sent = last_seq;
        let replaced = self.session.replace(session).filter(|old| old.connected());
        self.idle_since = None;
        self.instance = instance;
        // What of this instance's messages arrived, when others wrote since.
        // (0 for an instance none of whose messages the hub remembers taking.)
        let yours = instance
            .map(|i| {
                self.taken_by
                    .iter()
                    .find(|(who, _)| *who == i)
                    .map_or(0, |(_, seq)| *seq)
            })
            .filter(|seq| *seq != self.taken);
        Ok(Welcome {
            frame: wire::welcome(self.taken, gap, yours),
            gap,
            resumed,
            replaced,
        })
    }

    /// Shifts everything queued before the first hello above `base`.
    fn renumber_above(&mut self, base: u64) {
        if base == 0 {
            return;
        }
        for (seq, _) in &mut self.history {
            *seq = seq.saturating_add(base);
        }
        if self.trimmed > 0 {
            self.trimmed = self.trimmed.saturating_add(base);
        }
        self.next_seq = self.next_seq.saturating_add(base);
    }

    /// A sequenced message from the client. Only the next in sequence is accepted: a jump
    /// would make the cumulative ack cover messages never received.
    pub(crate) fn data(&mut self, seq: u64) -> Result<DataOutcome, Violation> {
        if seq <= self.received {
            return Ok(DataOutcome::Duplicate);
        }
        let expected = self.received + 1;
        if seq != expected {
            return Err(Violation::protocol(format!(
                "sequence gap: expected {expected}, got {seq}"
            )));
        }
        self.received = seq;
        Ok(DataOutcome::Deliver)
    }

    /// The application took messages up to `seq`, sent by `instance` (a handover of `epoch`
    /// completed).
    pub(crate) fn took(&mut self, seq: u64, epoch: u64, instance: Option<u64>) -> bool {
        if epoch != self.epoch || seq <= self.taken || seq > self.received {
            return false;
        }
        self.taken = seq;
        if let Some(instance) = instance {
            match self.taken_by.front_mut() {
                Some((who, last)) if *who == instance => *last = seq,
                _ => {
                    self.taken_by.retain(|(who, _)| *who != instance);
                    self.taken_by.push_front((instance, seq));
                    self.taken_by.truncate(RECENT_INSTANCES);
                }
            }
        }
        true
    }

    /// The application could not take `seq`: everything accepted after the last taken
    /// message is given up, to be sent again by the client.
    pub(crate) fn not_taken(&mut self, epoch: u64) -> bool {
        if epoch != self.epoch {
            return false;
        }
        self.epoch += 1;
        self.received = self.taken;
        true
    }

    /// A cumulative ack from the client.
    pub(crate) fn ack(&mut self, seq: u64) -> Result<(), Violation> {
        if seq > self.next_seq {
            return Err(Violation::protocol(format!(
                "ack {seq} for a message never sent (last sent {})",
                self.next_seq
            )));
        }
        self.forget_through(seq);
        Ok(())
    }

    /// Drops the history up to and including `seq`: the client has it.
    fn forget_through(&mut self, seq: u64) {
        while self.history.front().is_some_and(|(s, _)| *s <= seq) {
            self.history.pop_front();
        }
    }

    /// The session `id` ended (or was closed by the hub); true if it was the live one.
    pub(crate) fn gone(&mut self, id: u64, now: Instant) -> bool {
        if self.is_current(id) {
            self.session = None;
            self.idle_since = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: u64) -> (Session, actix::Addr<Sink>) {
        use actix::Actor;
        let addr = Sink.start();
        (Session::for_test(id, addr.clone().recipient()), addr)
    }

    struct Sink;
    impl actix::Actor for Sink {
        type Context = actix::Context<Self>;
    }
    impl actix::Handler<super::super::super::Command> for Sink {
        type Result = ();
        fn handle(&mut self, _: super::super::super::Command, _: &mut Self::Context) {}
    }

    fn queued(state: &mut ClientState, n: usize) {
        for i in 0..n {
            let _ = state.queue(format!("{i}").into(), 5);
        }
    }

    fn seqs(state: &ClientState) -> Vec<u64> {
        state.history.iter().map(|(s, _)| *s).collect()
    }

    #[actix_rt::test]
    async fn a_fresh_hub_renumbers_what_it_queued_above_the_clients_last_seq() {
        let mut state = ClientState::new(Instant::now(), 1);
        queued(&mut state, 3);
        let (s, _a) = session(1);
        let welcome = state.hello(40, s, None).unwrap();
        assert_eq!(welcome.gap, None);
        assert!(!welcome.resumed);
        assert_eq!(seqs(&state), [41, 42, 43]);
        let _ = state.queue("next".into(), 5);
        assert_eq!(seqs(&state), [41, 42, 43, 44]);
        let written: Vec<_> = std::iter::from_fn(|| state.next_unsent(|_| true)).collect();
        assert_eq!(written.len(), 4);
        assert!(written[0].contains(r#""seq":41"#));
        assert_eq!(state.next_unsent(|_| true), None);
    }

    #[actix_rt::test]
    async fn a_trimmed_history_is_a_gap_above_last_seq_after_a_restart() {
        let mut state = ClientState::new(Instant::now(), 1);
        queued(&mut state, 8); // keeps 4..8, trimmed 3
        let (s, _a) = session(1);
        let welcome = state.hello(10, s, None).unwrap();
        assert_eq!(welcome.gap, Some(ResumeGap { from: 11, to: 13 }));
        assert_eq!(seqs(&state), [14, 15, 16, 17, 18]);
    }

    #[actix_rt::test]
    async fn poisoned_sequence_numbers_are_violations_not_panics() {
        let mut state = ClientState::new(Instant::now(), 1);
        let (s, _a) = session(1);
        assert_eq!(
            state.hello(u64::MAX, s.clone(), None).unwrap_err().code,
            1008
        );
        state.hello(0, s.clone(), None).unwrap();
        queued(&mut state, 2);
        assert_eq!(state.hello(3, s.clone(), None).unwrap_err().code, 1008);
        assert_eq!(state.ack(3).unwrap_err().code, 1002);
        assert_eq!(state.ack(u64::MAX).unwrap_err().code, 1002);
        state.ack(2).unwrap();
        assert_eq!(state.data(u64::MAX).unwrap_err().code, 1002);
        assert_eq!(state.data(2).unwrap_err().code, 1002);
        assert_eq!(state.data(1), Ok(DataOutcome::Deliver));
        assert_eq!(state.data(1), Ok(DataOutcome::Duplicate));
    }

    #[actix_rt::test]
    async fn a_handover_from_before_a_give_up_cannot_move_taken() {
        let mut state = ClientState::new(Instant::now(), 1);
        let (s, _a) = session(1);
        state.hello(0, s, None).unwrap();
        for seq in 1..=3 {
            state.data(seq).unwrap();
        }
        assert!(state.took(1, 0, None));
        assert!(state.not_taken(0));
        assert_eq!(state.received, 1);
        assert!(!state.took(3, 0, None), "a stale handover");
        assert_eq!(state.taken, 1);
        assert_eq!(state.data(2), Ok(DataOutcome::Deliver));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Hello(u64),
        Data(u64),
        Ack(u64),
        Queue,
        Took,
        NotTaken,
        Write,
        Gone,
    }

    /// Numbers near the edges as well as small ones: what a hostile client would send.
    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..20,
            Just(MAX_SEQ),
            Just(MAX_SEQ + 1),
            Just(u64::MAX),
            any::<u64>(),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            number().prop_map(Op::Hello),
            number().prop_map(Op::Data),
            number().prop_map(Op::Ack),
            Just(Op::Queue),
            Just(Op::Took),
            Just(Op::NotTaken),
            Just(Op::Write),
            Just(Op::Gone),
        ]
    }

    struct Sink;
    impl actix::Actor for Sink {
        type Context = actix::Context<Self>;
    }
    impl actix::Handler<crate::server::Command> for Sink {
        type Result = ();
        fn handle(&mut self, _: crate::server::Command, _: &mut Self::Context) {}
    }

    proptest! {
        /// Any sequence of frames from a hostile client (hellos, data, acks with any numbers)
        /// interleaved with the hub's own work: no panic, and the state stays consistent.
        #[test]
        fn no_sequence_of_frames_panics_or_breaks_the_state(
            ops in proptest::collection::vec(op(), 0..120),
        ) {
            actix_rt::System::new().block_on(async move {
                use actix::Actor;
                let sink = Sink.start().recipient();
                let mut state = ClientState::new(Instant::now(), 1);
                let mut id = 0;
                for op in ops {
                    match op {
                        Op::Hello(last_seq) => {
                            id += 1;
                            let session = Session::for_test(id, sink.clone());
                            let ok = state.hello(last_seq, session, Some(7)).is_ok();
                            assert!(!ok || last_seq <= MAX_SEQ);
                        }
                        Op::Data(seq) => {
                            let before = state.received;
                            match state.data(seq) {
                                Ok(DataOutcome::Deliver) => assert_eq!(state.received, before + 1),
                                Ok(DataOutcome::Duplicate) => assert!(seq <= before),
                                Err(v) => assert!(v.code == 1002 && state.received == before),
                            }
                        }
                        Op::Ack(seq) => {
                            let _ = state.ack(seq);
                        }
                        Op::Queue => {
                            // As the hub does: a session that lost an unwritten message ends.
                            if state.queue("m".into(), 8) {
                                state.gone(id, Instant::now());
                            }
                        }
                        Op::Took => {
                            let (seq, epoch) = (state.received, state.epoch);
                            state.took(seq, epoch, Some(7));
                        }
                        Op::NotTaken => {
                            state.not_taken(state.epoch);
                        }
                        Op::Write => {
                            let _ = state.next_unsent(|_| true);
                        }
                        Op::Gone => {
                            state.gone(id, Instant::now());
                        }
                    }
                    assert!(state.taken <= state.received);
                    let seqs: Vec<u64> = state.history.iter().map(|(s, _)| *s).collect();
                    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
                    assert!(seqs.last().is_none_or(|last| *last <= state.next_seq));
                    assert!(state.history.len() <= 8);
                }
            });
        }
    }
}
