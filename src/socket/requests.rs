//! Requests waiting for their reply, correlated by an id the user names with a JSON pointer.
//! Pure bookkeeping: the socket arms the timers and answers the callers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::SpawnHandle;
use futures_channel::oneshot;
use serde_json::Value;

use crate::{Error, Outgoing, SendError};

/// What a request's caller is answered with.
pub(crate) type Answer = Result<Value, SendError>;

/// One request waiting for its reply.
pub(crate) struct Pending {
    /// Its id as canonical JSON (so `1` and `"1"` are different ids).
    id: String,
    /// The request, handed back with any error.
    pub(crate) message: Outgoing,
    reply: oneshot::Sender<Answer>,
    pub(crate) timer: Option<SpawnHandle>,
    /// When it times out, and its timeout (for the error).
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    /// Written on the current connection (default mode: lost with it).
    written: bool,
}

impl Pending {
    /// Answers the caller with its reply.
    pub(crate) fn answer(self, reply: Value) {
        let _ = self.reply.send(Ok(reply));
    }

    /// Answers the caller with `error`, the request handed back.
    pub(crate) fn fail(self, error: Error) {
        let _ = self.reply.send(Err(SendError {
            error,
            message: self.message,
        }));
    }
}

/// An id as canonical JSON: a whole number is the same id however it is written (`1`, `1.0`,
/// `1e0`: a JavaScript peer echoes `1.0` as `1`); a string is never the number it spells.
fn canonical(id: &Value) -> String {
    match id.as_f64() {
        Some(n) if id.is_number() && n.fract() == 0.0 && n.abs() < 9.0e15 => {
            format!("{}", n as i64)
        }
        _ => id.to_string(),
    }
}

/// The requests of one socket (the default: none, and none enabled).
#[derive(Default)]
pub(crate) struct Requests {
    /// Where the id is; `None`: requests are not enabled.
    pointer: Option<String>,
    max: usize,
    next_token: u64,
    by_id: HashMap<String, u64>,
    pending: HashMap<u64, Pending>,
}

impl Requests {
    pub(crate) fn new(pointer: Option<String>, max: usize) -> Self {
        Requests {
            pointer,
            max,
            next_token: 0,
            by_id: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// Checks `message` can be sent as a request and registers it; returns its token. The
    /// caller arms the timer ([`set_timer`](Self::set_timer)) and queues the message.
    pub(crate) fn insert(
        &mut self,
        message: &Outgoing,
        timeout: Duration,
        reply: oneshot::Sender<Answer>,
    ) -> Result<u64, (Error, oneshot::Sender<Answer>)> {
        let id = match self.id_of_request(message) {
            Ok(id) => id,
            Err(e) => return Err((e, reply)),
        };
        if self.by_id.contains_key(&id) {
            let error = Error::InvalidRequest(format!("a request with id {id} is already pending"));
            return Err((error, reply));
        }
        if self.pending.len() >= self.max {
            return Err((Error::TooManyRequests { max: self.max }, reply));
        }
        let token = self.next_token;
        self.next_token += 1;
        self.by_id.insert(id.clone(), token);
        self.pending.insert(
            token,
            Pending {
                id,
                message: message.clone(),
                reply,
                timer: None,
                deadline: Instant::now()
                    .checked_add(timeout)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365)),
                timeout,
                written: false,
            },
        );
        Ok(token)
    }

    fn id_of_request(&self, message: &Outgoing) -> Result<String, Error> {
        let Some(pointer) = &self.pointer else {
            return Err(Error::InvalidRequest(
                "requests are not enabled: configure the id field with SocketConfigBuilder::requests"
                    .into(),
            ));
        };
        let Some(text) = message.as_text() else {
            return Err(Error::InvalidRequest(
                "a request must be JSON text, not binary".into(),
            ));
        };
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::InvalidRequest(format!("a request must be JSON: {e}")))?;
        match value.pointer(pointer) {
            Some(id) if !id.is_null() => Ok(canonical(id)),
            _ => Err(Error::InvalidRequest(format!(
                "the request has no id at {pointer}"
            ))),
        }
    }

    pub(crate) fn set_timer(&mut self, token: u64, timer: SpawnHandle) {
        if let Some(p) = self.pending.get_mut(&token) {
            p.timer = Some(timer);
        }
    }

    /// Takes request `token` out (answered, timed out, refused).
    pub(crate) fn remove(&mut self, token: u64) -> Option<Pending> {
        let pending = self.pending.remove(&token)?;
        self.by_id.remove(&pending.id);
        Some(pending)
    }

    /// Request `token`'s message was written to the connection.
    pub(crate) fn written(&mut self, token: u64) {
        if let Some(p) = self.pending.get_mut(&token) {
            p.written = true;
        }
    }

    /// If `text` answers a pending request, takes it out with the parsed reply. Costs nothing
    /// while no request is pending.
    pub(crate) fn reply(&mut self, text: &str) -> Option<(u64, Pending, Value)> {
        if self.pending.is_empty() {
            return None;
        }
        let pointer = self.pointer.as_ref()?;
        let value: Value = serde_json::from_str(text).ok()?;
        let id = canonical(value.pointer(pointer)?);
        let token = *self.by_id.get(&id)?;
        let pending = self.remove(token)?;
        Some((token, pending, value))
    }

    /// The connection ended: the requests written on it (their replies will never come on a
    /// new connection).
    pub(crate) fn take_written(&mut self) -> Vec<Pending> {
        let tokens: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.written)
            .map(|(t, _)| *t)
            .collect();
        let mut taken: Vec<(u64, Pending)> = tokens
            .into_iter()
            .filter_map(|t| self.remove(t).map(|p| (t, p)))
            .collect();
        taken.sort_by_key(|(t, _)| *t);
        taken.into_iter().map(|(_, p)| p).collect()
    }

    /// Every pending request with its token, oldest first (the socket closed).
    pub(crate) fn take_all(&mut self) -> Vec<(u64, Pending)> {
        self.by_id.clear();
        let mut all: Vec<(u64, Pending)> = self.pending.drain().collect();
        all.sort_by_key(|(t, _)| *t);
        all
    }

    /// Adopts the requests of a socket that ended (a supervisor restart): same pointer and
    /// bound as this one's configuration; their timers are to be armed again
    /// ([`deadlines`](Self::deadlines)).
    pub(crate) fn adopt(&mut self, mut other: Requests) {
        for (token, mut pending) in other.pending.drain() {
            pending.timer = None;
            pending.written = false; // on no connection of this socket yet
            self.by_id.insert(pending.id.clone(), token);
            self.pending.insert(token, pending);
        }
        self.next_token = self.next_token.max(other.next_token);
    }

    /// Every pending request's token and deadline.
    pub(crate) fn deadlines(&self) -> Vec<(u64, Instant)> {
        self.pending.iter().map(|(t, p)| (*t, p.deadline)).collect()
    }

    /// Requests waiting for their reply.
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests() -> Requests {
        Requests::new(Some("/id".into()), 2)
    }

    fn insert(r: &mut Requests, text: &str) -> Result<u64, Error> {
        let (tx, _rx) = oneshot::channel();
        r.insert(&Outgoing::from(text), Duration::from_secs(5), tx)
            .map_err(|(e, _)| e)
    }

    #[test]
    fn a_reply_is_matched_by_its_id_and_only_once() {
        let mut r = requests();
        let token = insert(&mut r, r#"{"id":7,"method":"get"}"#).unwrap();
        assert!(r.reply(r#"{"id":"7"}"#).is_none(), "\"7\" is not 7");
        let (_, _, value) = r.reply(r#"{"id":7.0,"result":0}"#).unwrap();
        assert_eq!(value["result"], 0, "7.0 is 7");
        insert(&mut r, r#"{"id":7,"method":"get"}"#).unwrap();
        assert!(r.reply("not json").is_none());
        let (_, pending, value) = r.reply(r#"{"id":7,"result":1}"#).unwrap();
        assert_eq!(value["result"], 1);
        assert_eq!(
            pending.message,
            Outgoing::from(r#"{"id":7,"method":"get"}"#)
        );
        assert!(r.reply(r#"{"id":7,"result":1}"#).is_none());
        assert!(r.remove(token).is_none());
    }

    #[test]
    fn bad_requests_are_refused_with_the_reason() {
        let mut r = requests();
        let why = |e: Error| e.to_string();
        assert!(why(insert(&mut r, "{}").unwrap_err()).contains("no id at /id"));
        assert!(why(insert(&mut r, r#"{"id":null}"#).unwrap_err()).contains("no id"));
        assert!(why(insert(&mut r, "nope").unwrap_err()).contains("must be JSON"));
        insert(&mut r, r#"{"id":1}"#).unwrap();
        assert!(why(insert(&mut r, r#"{"id":1}"#).unwrap_err()).contains("already pending"));
        insert(&mut r, r#"{"id":2}"#).unwrap();
        assert_eq!(
            insert(&mut r, r#"{"id":3}"#).unwrap_err(),
            Error::TooManyRequests { max: 2 }
        );
        let mut off = Requests::new(None, 2);
        assert!(why(insert(&mut off, r#"{"id":1}"#).unwrap_err()).contains("not enabled"));
    }

    #[test]
    fn only_written_requests_are_lost_with_the_connection() {
        let mut r = requests();
        let a = insert(&mut r, r#"{"id":"a"}"#).unwrap();
        insert(&mut r, r#"{"id":"b"}"#).unwrap();
        r.written(a);
        let lost = r.take_written();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].message, Outgoing::from(r#"{"id":"a"}"#));
        assert_eq!(r.len(), 1);
        // Its id is free again.
        insert(&mut r, r#"{"id":"a"}"#).unwrap();
        assert_eq!(r.take_all().len(), 2);
        assert_eq!(r.len(), 0);
    }
}
