//! Test-only fault hooks (feature `fault-injection`). Not part of the supported API.

use actix::{Context, Handler, Message};

use crate::SocketActor;

/// Makes the socket's handler panic, as a bug in a handler would.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Panic;

impl Handler<Panic> for SocketActor {
    type Result = ();

    fn handle(&mut self, _: Panic, _: &mut Context<Self>) {
        panic!("resocket fault injection: a handler panicked");
    }
}
