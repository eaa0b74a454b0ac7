//! The close handshake of an Open connection (RFC 6455 7.1.2): who closed first, whether our
//! Close frame is written, and who waits for the report. Each [`Step`] holds exactly what is
//! valid in it, so "our frame written but nobody asked" or "draining after the peer closed"
//! cannot be represented.

use actix::SpawnHandle;
use actix_http::ws::{CloseCode, CloseReason, Message};
use futures_channel::oneshot;

use crate::{CloseReport, Disconnect};

/// An Open connection on its way out, with the deadline for the whole close.
pub(crate) struct Closing {
    pub(crate) deadline: SpawnHandle,
    step: Step,
}

/// Where the close handshake is.
enum Step {
    /// The application asked to close: our Close frame is next (after the outbox when it
    /// drains).
    Requested(UserClose),
    /// Our Close frame is written: the peer's answering Close ends the connection.
    AwaitingAnswer(UserClose),
    /// The peer closed first: our answer, echoing its reason, is next. The application may
    /// have asked to close meanwhile.
    Answering {
        peer: Disconnect,
        frame: Option<CloseReason>,
        user: Option<UserClose>,
    },
    /// Our answer is written: the peer's FIN (or the deadline) ends the connection.
    Answered {
        peer: Disconnect,
        user: Option<UserClose>,
    },
}

/// An application's close request: whether to write the outbox first, and who waits for the
/// report.
pub(crate) struct UserClose {
    pub(crate) drain: bool,
    pub(crate) responders: Vec<oneshot::Sender<CloseReport>>,
}

impl UserClose {
    /// Sends `report` to everyone waiting.
    pub(crate) fn report(self, report: &CloseReport) {
        for responder in self.responders {
            let _ = responder.send(report.clone());
        }
    }
}

impl Closing {
    /// The application closes first.
    pub(crate) fn by_user(user: UserClose, deadline: SpawnHandle) -> Self {
        Closing {
            deadline,
            step: Step::Requested(user),
        }
    }

    /// The peer closed first, for `peer` (its Close frame said `frame`).
    pub(crate) fn by_peer(
        peer: Disconnect,
        frame: Option<CloseReason>,
        deadline: SpawnHandle,
    ) -> Self {
        Closing {
            deadline,
            step: Step::Answering {
                peer,
                frame,
                user: None,
            },
        }
    }

    /// Whether the outbox is still written before our Close frame: a graceful close the peer
    /// has not pre-empted.
    pub(crate) fn draining(&self) -> bool {
        matches!(&self.step, Step::Requested(user) if user.drain)
    }

    /// Whether our Close frame is written (nothing may follow it, RFC 6455 5.5.1).
    pub(crate) fn sent(&self) -> bool {
        matches!(self.step, Step::AwaitingAnswer(_) | Step::Answered { .. })
    }

    /// Whether our Close frame is due now: not written yet, and when draining, nothing is
    /// left to deliver.
    pub(crate) fn due(&self, nothing_left: bool) -> bool {
        match &self.step {
            Step::Requested(user) => nothing_left || !user.drain,
            Step::Answering { .. } => true,
            Step::AwaitingAnswer(_) | Step::Answered { .. } => false,
        }
    }

    /// Our Close frame, written now: the handshake moves on to waiting for the peer.
    pub(crate) fn write(self) -> (Self, Message) {
        let (step, frame) = match self.step {
            Step::Requested(user) => (Step::AwaitingAnswer(user), None),
            Step::Answering { peer, frame, user } => (Step::Answered { peer, user }, frame),
            written @ (Step::AwaitingAnswer(_) | Step::Answered { .. }) => (written, None),
        };
        let closing = Closing {
            deadline: self.deadline,
            step,
        };
        (
            closing,
            Message::Close(frame.or(Some(CloseCode::Normal.into()))),
        )
    }

    /// The peer's Close frame arrived before ours was written: ours answers it, with its
    /// reason, and the outbox is no longer drained. (Once ours is written, the peer's Close
    /// ends the connection instead: see [`Closing::sent`].)
    pub(crate) fn peer_closed(self, peer: Disconnect, frame: Option<CloseReason>) -> Self {
        let user = match self.step {
            Step::Requested(user) | Step::AwaitingAnswer(user) => Some(user),
            Step::Answering { user, .. } | Step::Answered { user, .. } => user,
        };
        Closing {
            deadline: self.deadline,
            step: Step::Answering { peer, frame, user },
        }
    }

    /// The application asks (again) to close: it waits for the same report.
    pub(crate) fn user_asks(&mut self, responder: oneshot::Sender<CloseReport>) {
        match &mut self.step {
            Step::Requested(user) | Step::AwaitingAnswer(user) => user.responders.push(responder),
            Step::Answering { user, .. } | Step::Answered { user, .. } => user
                .get_or_insert_with(|| UserClose {
                    drain: false,
                    responders: Vec::new(),
                })
                .responders
                .push(responder),
        }
    }

    /// How the connection ended if it ends now without a word from the peer (its FIN, or the
    /// deadline when the application did not ask to close): as the peer's Close said, when it
    /// closed first.
    pub(crate) fn peer_cause(&self, at_deadline: bool) -> Option<Disconnect> {
        match &self.step {
            Step::Answering { peer, user, .. } | Step::Answered { peer, user }
                if !(at_deadline && user.is_some()) =>
            {
                Some(peer.clone())
            }
            _ => None,
        }
    }

    /// The application's close request, if it made one.
    pub(crate) fn into_user(self) -> Option<UserClose> {
        match self.step {
            Step::Requested(user) | Step::AwaitingAnswer(user) => Some(user),
            Step::Answering { user, .. } | Step::Answered { user, .. } => user,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(drain: bool) -> UserClose {
        UserClose {
            drain,
            responders: Vec::new(),
        }
    }

    fn peer() -> Disconnect {
        Disconnect::PeerClosed {
            code: Some(1001),
            description: None,
        }
    }

    fn going_away() -> Option<CloseReason> {
        Some(CloseCode::Away.into())
    }

    #[test]
    fn a_graceful_close_drains_then_writes_a_normal_close_and_waits_for_the_answer() {
        let closing = Closing::by_user(user(true), SpawnHandle::default());
        assert!(closing.draining());
        assert!(!closing.due(false), "not while messages are left");
        assert!(closing.due(true));
        let (closing, frame) = closing.write();
        assert_eq!(frame, Message::Close(Some(CloseCode::Normal.into())));
        assert!(closing.sent() && !closing.draining());
        assert!(!closing.due(true), "written once");
        assert!(closing.peer_cause(false).is_none());
        assert!(closing.into_user().is_some());
    }

    #[test]
    fn an_immediate_close_is_due_at_once() {
        let closing = Closing::by_user(user(false), SpawnHandle::default());
        assert!(!closing.draining());
        assert!(closing.due(false));
    }

    #[test]
    fn the_peers_close_is_answered_with_its_reason_and_its_cause_stands() {
        let closing = Closing::by_peer(peer(), going_away(), SpawnHandle::default());
        assert!(closing.due(false) && !closing.sent() && !closing.draining());
        let (closing, frame) = closing.write();
        assert_eq!(frame, Message::Close(going_away()));
        assert!(closing.sent());
        assert_eq!(closing.peer_cause(false), Some(peer()));
        assert_eq!(closing.peer_cause(true), Some(peer()));
        assert!(closing.into_user().is_none());
    }

    #[test]
    fn a_peer_closing_during_a_drain_stops_the_drain_and_is_answered() {
        let closing = Closing::by_user(user(true), SpawnHandle::default());
        let closing = closing.peer_closed(peer(), going_away());
        assert!(!closing.draining(), "the peer will read no more");
        assert!(closing.due(false));
        let (closing, frame) = closing.write();
        assert_eq!(frame, Message::Close(going_away()));
        // The application asked: its deadline is a timeout, not the peer's word.
        assert_eq!(closing.peer_cause(false), Some(peer()));
        assert_eq!(closing.peer_cause(true), None);
        assert!(closing.into_user().is_some());
    }

    #[test]
    fn an_application_asking_after_the_peer_closed_waits_for_the_same_report() {
        let mut closing = Closing::by_peer(peer(), None, SpawnHandle::default());
        let (tx, _rx) = oneshot::channel();
        closing.user_asks(tx);
        let user = closing.into_user().expect("the application waits");
        assert_eq!(user.responders.len(), 1);
        assert!(
            !user.drain,
            "nothing more is written after the peer's Close"
        );
    }
}
