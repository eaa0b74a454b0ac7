//! The actors that hear from a socket, the routing of inbound messages to them, and what
//! happens when one of them cannot keep up.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix::dev::SendError;
use actix::Recipient;
use bytes::Bytes;
use bytestring::ByteString;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::events::SocketId;
use crate::Cause;
use crate::{Error, ErrorOccurred, Inbound, InboundBinary, InboundText, StateChanged};

/// What the socket does when a subscriber's mailbox is full (actix's default capacity is 16
/// messages; a subscriber can raise it with `ctx.set_mailbox_capacity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowSubscriber {
    /// Stop reading from the connection until the subscriber has taken the message: nothing is
    /// lost, memory stays bounded, and the peer feels TCP backpressure (the default). While it
    /// waits, the socket does not count the peer's silence against the heartbeat.
    #[default]
    Wait,
    /// Drop the message for that subscriber and report [`Error::SubscriberLagging`] (once per
    /// episode); the connection and the other subscribers go on at full speed.
    Drop,
}

/// One subscription, as carried by [`Subscribe`](crate::Subscribe).
pub(crate) enum Subscription {
    Typed(Box<dyn TypedSubscriber>),
    Text(Recipient<InboundText>),
    Binary(Recipient<InboundBinary>),
    States(Recipient<StateChanged>),
    Errors(Recipient<ErrorOccurred>),
}

impl Clone for Subscription {
    fn clone(&self) -> Self {
        match self {
            Subscription::Typed(t) => Subscription::Typed(t.clone_box()),
            Subscription::Text(r) => Subscription::Text(r.clone()),
            Subscription::Binary(r) => Subscription::Binary(r.clone()),
            Subscription::States(r) => Subscription::States(r.clone()),
            Subscription::Errors(r) => Subscription::Errors(r.clone()),
        }
    }
}

impl Subscription {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Subscription::Typed(t) => t.type_name(),
            Subscription::Text(_) => "text",
            Subscription::Binary(_) => "binary",
            Subscription::States(_) => "states",
            Subscription::Errors(_) => "errors",
        }
    }
}

/// A delivery waiting for room in a full mailbox.
pub(crate) type Waiting = Pin<Box<dyn Future<Output = ()>>>;

/// What came of handing one inbound message to the subscribers.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Deliveries waiting for room (policy Wait).
    pub(crate) waiting: Vec<Waiting>,
    /// Deliveries dropped (policy Drop).
    pub(crate) dropped: usize,
    /// No typed subscriber could decode the message.
    pub(crate) undecodable: Option<Error>,
}

/// Offers `message` to `recipient` under `policy`; false when the recipient has stopped.
/// Offers `message` to every recipient, forgetting those whose actor has stopped.
fn offer_all<M>(
    recipients: &mut Vec<Recipient<M>>,
    message: &M,
    policy: SlowSubscriber,
    out: &mut Outcome,
) where
    M: actix::Message + Send + Clone + 'static,
    M::Result: Send,
{
    recipients.retain(|r| offer(r, message.clone(), policy, out));
}

fn offer<M>(recipient: &Recipient<M>, message: M, policy: SlowSubscriber, out: &mut Outcome) -> bool
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    match recipient.try_send(message) {
        Ok(()) => true,
        Err(SendError::Full(message)) => {
            match policy {
                SlowSubscriber::Wait => {
                    let request = recipient.send(message);
                    out.waiting.push(Box::pin(async move {
                        let _ = request.await;
                    }));
                }
                SlowSubscriber::Drop => out.dropped += 1,
            }
            true
        }
        Err(SendError::Closed(_)) => false,
    }
}

/// A subscriber of some payload type, with the type erased.
pub(crate) trait TypedSubscriber: Send {
    /// Decodes straight from the text (the cheapest path when this is the only typed
    /// subscriber) and offers the value. Err: the text does not decode into this type.
    fn deliver_str(
        &self,
        text: &str,
        socket: &SocketId,
        policy: SlowSubscriber,
        out: &mut Outcome,
    ) -> Result<(), Cause>;
    /// The same from a value parsed once for all subscribers.
    fn deliver_value(
        &self,
        value: &Value,
        socket: &SocketId,
        policy: SlowSubscriber,
        out: &mut Outcome,
    ) -> Result<(), Cause>;
    fn connected(&self) -> bool;
    fn clone_box(&self) -> Box<dyn TypedSubscriber>;
    fn type_name(&self) -> &'static str;
}

pub(crate) struct TypedRecipient<T: 'static + Send> {
    recipient: Recipient<Inbound<T>>,
    _type: PhantomData<fn() -> T>,
}

impl<T: 'static + Send> TypedRecipient<T> {
    pub(crate) fn new(recipient: Recipient<Inbound<T>>) -> Self {
        TypedRecipient {
            recipient,
            _type: PhantomData,
        }
    }
}

impl<T> TypedSubscriber for TypedRecipient<T>
where
    T: DeserializeOwned + Send + 'static,
{
    fn deliver_str(
        &self,
        text: &str,
        socket: &SocketId,
        policy: SlowSubscriber,
        out: &mut Outcome,
    ) -> Result<(), Cause> {
        let value = serde_json::from_str::<T>(text).map_err(Cause::from_error)?;
        offer(&self.recipient, Inbound(value, socket.clone()), policy, out);
        Ok(())
    }

    fn deliver_value(
        &self,
        value: &Value,
        socket: &SocketId,
        policy: SlowSubscriber,
        out: &mut Outcome,
    ) -> Result<(), Cause> {
        let value = T::deserialize(value).map_err(Cause::from_error)?;
        offer(&self.recipient, Inbound(value, socket.clone()), policy, out);
        Ok(())
    }

    fn connected(&self) -> bool {
        self.recipient.connected()
    }

    fn clone_box(&self) -> Box<dyn TypedSubscriber> {
        Box::new(TypedRecipient::<T>::new(self.recipient.clone()))
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// Every subscriber of one socket.
#[derive(Default)]
pub(crate) struct Subscribers {
    pub(crate) policy: SlowSubscriber,
    typed: Vec<Box<dyn TypedSubscriber>>,
    text: Vec<Recipient<InboundText>>,
    binary: Vec<Recipient<InboundBinary>>,
    states: Vec<Recipient<StateChanged>>,
    errors: Vec<Recipient<ErrorOccurred>>,
    /// Error events a full error subscriber missed.
    pub(crate) errors_lost: u64,
    /// The socket every event names.
    pub(crate) socket: SocketId,
}

impl Subscribers {
    pub(crate) fn add(&mut self, subscription: Subscription) {
        match subscription {
            Subscription::Typed(t) => self.typed.push(t),
            Subscription::Text(r) => self.text.push(r),
            Subscription::Binary(r) => self.binary.push(r),
            Subscription::States(r) => self.states.push(r),
            Subscription::Errors(r) => self.errors.push(r),
        }
    }

    /// Routes a text message to the raw text subscribers and every typed subscriber that can
    /// decode it (parsed once).
    pub(crate) fn text(&mut self, text: ByteString) -> Outcome {
        let policy = self.policy;
        let mut out = Outcome::default();
        self.typed.retain(|t| t.connected());
        let mut last_error = None;
        let mut delivered = false;
        match self.typed.len() {
            0 => delivered = true,
            1 => match self.typed[0].deliver_str(&text, &self.socket, policy, &mut out) {
                Ok(()) => delivered = true,
                Err(e) => last_error = Some(e),
            },
            _ => match serde_json::from_str::<Value>(&text) {
                Err(e) => last_error = Some(Cause::from_error(e)),
                Ok(value) => {
                    for t in &self.typed {
                        match t.deliver_value(&value, &self.socket, policy, &mut out) {
                            Ok(()) => delivered = true,
                            Err(e) => last_error = Some(e),
                        }
                    }
                }
            },
        }
        if !delivered {
            out.undecodable = last_error.map(|e| decode_error(e, &text));
        }
        let message = InboundText(text, self.socket.clone());
        offer_all(&mut self.text, &message, policy, &mut out);
        out
    }

    pub(crate) fn binary(&mut self, data: Bytes) -> Outcome {
        let policy = self.policy;
        let mut out = Outcome::default();
        let message = InboundBinary(data, self.socket.clone());
        offer_all(&mut self.binary, &message, policy, &mut out);
        out
    }

    /// State changes are rare: every one is queued (`do_send`).
    pub(crate) fn state(&mut self, event: &StateChanged) {
        self.states.retain(Recipient::connected);
        for r in &self.states {
            r.do_send(event.clone());
        }
    }

    /// Sends the current state to one new state subscriber.
    pub(crate) fn greet(&mut self, event: StateChanged) {
        if let Some(r) = self.states.last() {
            r.do_send(event);
        }
    }

    /// Forgets every recipient whose actor has stopped.
    pub(crate) fn prune(&mut self) {
        self.typed.retain(|t| t.connected());
        self.text.retain(Recipient::connected);
        self.binary.retain(Recipient::connected);
        self.states.retain(Recipient::connected);
        self.errors.retain(Recipient::connected);
    }

    /// The number of subscriptions held.
    pub(crate) fn len(&self) -> usize {
        self.typed.len()
            + self.text.len()
            + self.binary.len()
            + self.states.len()
            + self.errors.len()
    }

    /// Errors can come in floods (a peer sending garbage): a full error subscriber misses some
    /// rather than growing without bound.
    pub(crate) fn error(&mut self, error: &Error) {
        let mut lost = 0;
        self.errors.retain(|r| {
            match r.try_send(ErrorOccurred(error.clone(), self.socket.clone())) {
                Ok(()) => true,
                Err(SendError::Full(_)) => {
                    lost += 1;
                    true
                }
                Err(SendError::Closed(_)) => false,
            }
        });
        self.errors_lost += lost;
    }
}

fn decode_error(error: Cause, text: &str) -> Error {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Error::Decode {
        error,
        text: text[..end].to_string(),
    }
}
