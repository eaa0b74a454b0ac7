//! What the slow-subscriber policy keeps between deliveries: how many inbound messages wait
//! for room in a full subscriber mailbox (reading pauses while any do), and whether the
//! current streak of drops has been reported.
//!
//! This belongs to the socket, not to one connection: a message that was read is delivered
//! even if its connection ends meanwhile, so a waiting delivery is never cancelled with the
//! Open state. It ends with the actor.

/// The slow-subscriber bookkeeping of one socket.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    waiting: usize,
    lagging: bool,
}

impl Deliveries {
    /// Whether a delivery waits for room: the socket does not read meanwhile, so the silence
    /// of the connection is ours, not the peer's.
    pub(crate) fn paused(&self) -> bool {
        self.waiting > 0
    }

    /// A delivery starts waiting for room.
    pub(crate) fn wait(&mut self) {
        self.waiting += 1;
    }

    /// A waiting delivery was taken; `true` when none waits any more (reading resumes).
    pub(crate) fn taken(&mut self) -> bool {
        self.waiting = self.waiting.saturating_sub(1);
        self.waiting == 0
    }

    /// Messages were dropped for a lagging subscriber; `true` for the first drop of a
    /// streak (the one that is reported).
    pub(crate) fn dropped(&mut self) -> bool {
        !std::mem::replace(&mut self.lagging, true)
    }

    /// Every subscriber took its message: the next drop starts a new streak.
    pub(crate) fn caught_up(&mut self) {
        self.lagging = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_resumes_when_the_last_waiting_delivery_is_taken() {
        let mut deliveries = Deliveries::default();
        assert!(!deliveries.paused());
        deliveries.wait();
        deliveries.wait();
        assert!(deliveries.paused());
        assert!(!deliveries.taken());
        assert!(deliveries.taken());
        assert!(!deliveries.paused());
    }

    #[test]
    fn a_streak_of_drops_is_reported_once() {
        let mut deliveries = Deliveries::default();
        assert!(deliveries.dropped());
        assert!(!deliveries.dropped());
        deliveries.caught_up();
        assert!(deliveries.dropped());
    }
}
