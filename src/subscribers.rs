//! The actors that hear from a socket, and the routing of inbound messages to them.

use std::marker::PhantomData;

use actix::Recipient;
use bytes::Bytes;
use bytestring::ByteString;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Error, ErrorOccurred, Inbound, InboundBinary, InboundText, StateChanged};

/// One subscription, as carried by [`Subscribe`](crate::Subscribe).
pub(crate) enum Subscription {
    Typed(Box<dyn TypedSubscriber>),
    Text(Recipient<InboundText>),
    Binary(Recipient<InboundBinary>),
    States(Recipient<StateChanged>),
    Errors(Recipient<ErrorOccurred>),
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

/// Outcome of handing a message to one typed subscriber.
pub(crate) enum Delivery {
    Delivered,
    Undecodable(String),
}

/// A subscriber of some payload type, with the type erased.
pub(crate) trait TypedSubscriber: Send {
    /// Decode straight from the text (the cheapest path when this is the only typed subscriber).
    fn deliver_str(&self, text: &str) -> Delivery;
    /// Decode from a value parsed once for all subscribers.
    fn deliver_value(&self, value: &Value) -> Delivery;
    fn connected(&self) -> bool;
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
    fn deliver_str(&self, text: &str) -> Delivery {
        match serde_json::from_str::<T>(text) {
            Ok(v) => {
                self.recipient.do_send(Inbound(v));
                Delivery::Delivered
            }
            Err(e) => Delivery::Undecodable(e.to_string()),
        }
    }

    fn deliver_value(&self, value: &Value) -> Delivery {
        match T::deserialize(value) {
            Ok(v) => {
                self.recipient.do_send(Inbound(v));
                Delivery::Delivered
            }
            Err(e) => Delivery::Undecodable(e.to_string()),
        }
    }

    fn connected(&self) -> bool {
        self.recipient.connected()
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

/// Every subscriber of one socket.
#[derive(Default)]
pub(crate) struct Subscribers {
    typed: Vec<Box<dyn TypedSubscriber>>,
    text: Vec<Recipient<InboundText>>,
    binary: Vec<Recipient<InboundBinary>>,
    states: Vec<Recipient<StateChanged>>,
    errors: Vec<Recipient<ErrorOccurred>>,
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
    /// decode it. Err when there are typed subscribers and none could.
    pub(crate) fn text(&mut self, text: ByteString) -> Result<(), Error> {
        self.typed.retain(|t| t.connected());
        let outcome = match self.typed.len() {
            0 => Ok(()),
            1 => match self.typed[0].deliver_str(&text) {
                Delivery::Delivered => Ok(()),
                Delivery::Undecodable(error) => Err(decode_error(error, &text)),
            },
            _ => match serde_json::from_str::<Value>(&text) {
                Err(e) => Err(decode_error(e.to_string(), &text)),
                Ok(value) => {
                    let mut last_error = None;
                    let mut delivered = false;
                    for t in &self.typed {
                        match t.deliver_value(&value) {
                            Delivery::Delivered => delivered = true,
                            Delivery::Undecodable(e) => last_error = Some(e),
                        }
                    }
                    match (delivered, last_error) {
                        (false, Some(error)) => Err(decode_error(error, &text)),
                        _ => Ok(()),
                    }
                }
            },
        };
        broadcast(&mut self.text, || InboundText(text.clone()));
        outcome
    }

    pub(crate) fn binary(&mut self, data: Bytes) {
        broadcast(&mut self.binary, || InboundBinary(data.clone()));
    }

    pub(crate) fn state(&mut self, event: &StateChanged) {
        broadcast(&mut self.states, || event.clone());
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

    pub(crate) fn error(&mut self, error: &Error) {
        broadcast(&mut self.errors, || ErrorOccurred(error.clone()));
    }
}

fn broadcast<M>(recipients: &mut Vec<Recipient<M>>, make: impl Fn() -> M)
where
    M: actix::Message + std::marker::Send,
    M::Result: std::marker::Send,
{
    recipients.retain(|r| r.connected());
    for r in recipients.iter() {
        r.do_send(make());
    }
}

fn decode_error(error: String, text: &str) -> Error {
    let mut end = text.len().min(120);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Error::Decode {
        error,
        text: text[..end].to_string(),
    }
}
