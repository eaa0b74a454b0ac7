//! The messages an application sends to a socket.

use actix::{AsyncContext, Context, Handler, ResponseFuture};
use futures_channel::oneshot;

use super::closing::{Closing, UserClose};
use super::{Phase, SocketActor, WaitingClose};
use crate::sender::Pushing;
use crate::GetSender;
use crate::{
    BatchError, Close, CloseReport, Delivery, Error, GetStatus, Outgoing, Request, SendBatch,
    SendError, SendMessage, StateChanged, Subscribe, TakeOutbox,
};

impl Handler<SendMessage> for SocketActor {
    type Result = Result<(), SendError>;

    fn handle(&mut self, send: SendMessage, ctx: &mut Context<Self>) -> Self::Result {
        self.push(send.message, &send.delivery, ctx)
    }
}

impl Handler<SendBatch> for SocketActor {
    type Result = Result<(), BatchError>;

    fn handle(&mut self, SendBatch(messages): SendBatch, ctx: &mut Context<Self>) -> Self::Result {
        let pushed = self.outbox.push_batch(messages);
        if self.outbox.take_events_flag() {
            self.report_outbox_events(ctx);
        }
        pushed.map_err(|(refused, dropped)| {
            self.counters.refused += refused.unsent.len() as u64;
            if !dropped && !matches!(refused.error, Error::Closed | Error::Encode(_)) {
                self.subscribers.error(&refused.error);
            }
            refused
        })
    }
}

impl SocketActor {
    /// Queues one message from the actor path, reporting drops and refusals.
    fn push(
        &mut self,
        message: Outgoing,
        delivery: &Delivery,
        ctx: &mut Context<Self>,
    ) -> Result<(), SendError> {
        // The outbox refuses once the socket is closing by the user's request or closed.
        let pushed = self.outbox.push_with(message, delivery);
        if self.outbox.take_events_flag() {
            self.report_outbox_events(ctx);
        }
        // (The policy's drops were counted by the queue and reported just above.)
        match pushed {
            Pushing::Ok => Ok(()),
            Pushing::Refused { refused, dropped } => {
                self.counters.refused += 1;
                if !dropped && !matches!(refused.error, Error::Closed | Error::Encode(_)) {
                    self.subscribers.error(&refused.error);
                }
                Err(refused)
            }
        }
    }
}

impl Handler<Request> for SocketActor {
    type Result = ResponseFuture<Result<serde_json::Value, SendError>>;

    fn handle(&mut self, request: Request, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let Request { message, timeout } = request;
        let handed_back = message.clone();
        let answered = |rx: oneshot::Receiver<super::requests::Answer>| -> Self::Result {
            Box::pin(async move {
                rx.await.unwrap_or(Err(SendError {
                    error: Error::Closed,
                    message: handed_back,
                }))
            })
        };
        if timeout.is_zero() {
            let error = Error::InvalidRequest("the timeout must be greater than zero".into());
            let _ = tx.send(Err(SendError { error, message }));
            return answered(rx);
        }
        let token = match self.requests.insert(&message, timeout, tx) {
            Ok(token) => token,
            Err((error, tx)) => {
                self.counters.refused += 1;
                let _ = tx.send(Err(SendError { error, message }));
                return answered(rx);
            }
        };
        let delivery = Delivery::for_request(token);
        match self.push(message, &delivery, ctx) {
            Ok(()) => self.arm_request_timer(token, timeout, ctx),
            Err(refused) => {
                if let Some(pending) = self.requests.remove(token) {
                    pending.fail(refused.error);
                }
            }
        }
        answered(rx)
    }
}

impl Handler<crate::SendWhenRoom> for SocketActor {
    type Result = ResponseFuture<Result<(), SendError>>;

    fn handle(&mut self, send: crate::SendWhenRoom, _ctx: &mut Context<Self>) -> Self::Result {
        let sender = crate::Sender {
            shared: self.outbox.clone(),
        };
        Box::pin(async move { sender.send_wait(send.0).await })
    }
}

impl Handler<Subscribe> for SocketActor {
    type Result = ();

    fn handle(&mut self, Subscribe(subscription): Subscribe, _ctx: &mut Context<Self>) {
        let greet = matches!(subscription, crate::subscribers::Subscription::States(_));
        self.subscribers.add(subscription);
        if greet {
            let socket = self.subscribers.socket.clone();
            self.subscribers.greet(StateChanged {
                socket,
                state: self.state(),
            });
        }
    }
}

impl Handler<Close> for SocketActor {
    type Result = ResponseFuture<CloseReport>;

    fn handle(&mut self, close: Close, ctx: &mut Context<Self>) -> Self::Result {
        let unsent = self.unsent();
        let done = move |clean| -> ResponseFuture<CloseReport> {
            Box::pin(async move { CloseReport { clean, unsent } })
        };
        let conn = match &mut self.phase {
            Phase::Closed { .. } => return done(false),
            Phase::NotStarted
            | Phase::Stopped
            | Phase::Connecting { .. }
            | Phase::Backoff { .. }
                if close.drain =>
            {
                // Graceful: wait, within the timeout, for the next Open; then drain and close.
                self.outbox.close();
                let (tx, rx) = oneshot::channel();
                match &mut self.close_waiting {
                    Some(waiting) => waiting.responders.push(tx),
                    None => {
                        let timeout = close.timeout.unwrap_or(self.config.close_timeout);
                        let timer = ctx.run_later(timeout, |act, ctx| act.close_wait_expired(ctx));
                        self.close_waiting = Some(WaitingClose {
                            deadline: std::time::Instant::now() + timeout,
                            timer,
                            responders: vec![tx],
                        });
                    }
                }
                return Box::pin(async move {
                    rx.await.unwrap_or(CloseReport {
                        clean: false,
                        unsent,
                    })
                });
            }
            Phase::NotStarted
            | Phase::Stopped
            | Phase::Connecting { .. }
            | Phase::Backoff { .. } => {
                self.decide(super::machine::Event::CloseNow, ctx);
                return done(false);
            }
            Phase::Open(conn) => conn,
        };
        // From now on the socket takes no more messages (the SendMessage handler checks the phase).
        self.outbox.close();
        let (tx, rx) = oneshot::channel();
        match &mut conn.closing {
            Some(closing) => closing.user_asks(tx),
            None => {
                let id = conn.id;
                let timeout = close.timeout.unwrap_or(self.config.close_timeout);
                let deadline = ctx.run_later(timeout, move |act, ctx| act.close_deadline(id, ctx));
                let user = UserClose {
                    drain: close.drain,
                    responders: vec![tx],
                };
                conn.closing = Some(Closing::by_user(user, deadline));
                self.outbox.waker.wake();
            }
        }
        Box::pin(async move {
            rx.await.unwrap_or(CloseReport {
                clean: false,
                unsent,
            })
        })
    }
}

impl Handler<GetStatus> for SocketActor {
    type Result = actix::MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, ctx: &mut Context<Self>) -> Self::Result {
        self.report_outbox_events(ctx);
        actix::MessageResult(self.status())
    }
}

impl Handler<TakeOutbox> for SocketActor {
    type Result = actix::MessageResult<TakeOutbox>;

    fn handle(&mut self, _: TakeOutbox, ctx: &mut Context<Self>) -> Self::Result {
        let (messages, requests) = {
            let mut outbox = self.outbox.lock();
            let (mut messages, mut requests) = match &mut self.acked {
                Some(link) => link.take_unacked(&mut outbox),
                None => (Vec::new(), Vec::new()),
            };
            let (queued, queued_requests) = outbox.drain_for_application();
            messages.extend(queued);
            requests.extend(queued_requests);
            (messages, requests)
        };
        // A request's message is handed back once, to its caller, with the failure.
        for token in requests {
            if let Some(pending) = self.requests.remove(token) {
                self.request_failed(pending, Error::Dropped { count: 1 }, ctx);
            }
        }
        actix::MessageResult(messages)
    }
}

impl Handler<GetSender> for SocketActor {
    type Result = actix::MessageResult<GetSender>;

    fn handle(&mut self, _: GetSender, _ctx: &mut Context<Self>) -> Self::Result {
        actix::MessageResult(crate::Sender {
            shared: std::sync::Arc::clone(&self.outbox),
        })
    }
}
