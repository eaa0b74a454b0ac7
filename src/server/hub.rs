//! The server side of acked delivery: one `Hub` actor holds every client's state across
//! connections (and across restarts of the HTTP server, as long as the application keeps the
//! hub): dedup by (client id, sequence) so the application sees each client message exactly
//! once, in order; a bounded history of server→client messages for resume; acks both ways.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use bytestring::ByteString;
use log::{debug, warn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Session, SessionHandler};
use crate::acked::wire::{self, Gap};
use crate::Error;

/// Hub settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Server→client messages kept per client until acknowledged, for resume. Past it the
    /// oldest are dropped and a reconnecting client is told of the [`Gap`]. Defaults to 10,000.
    pub history: usize,
    /// How long acks may wait to be batched. Defaults to 1 ms.
    pub ack_delay: Duration,
    /// Client ids the hub keeps state for; a hello from a new id past it is refused (close
    /// code 1008). Defaults to 100,000.
    pub max_clients: usize,
}

/// The longest client id accepted.
pub const MAX_CLIENT_ID: usize = 256;

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history: 10_000,
            ack_delay: Duration::from_millis(1),
            max_clients: 100_000,
        }
    }
}

/// A message from a client, delivered to the application exactly once and in order.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct FromClient {
    /// The client's id (from its hello).
    pub client: String,
    /// The message as the client sent it (JSON text, or plain text).
    pub text: String,
    /// Its sequence number; None for identify messages (sent on every connect, not deduped).
    pub seq: Option<u64>,
}

impl FromClient {
    /// Decodes the message into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_str(&self.text).map_err(|e| Error::Decode {
            error: e.to_string(),
            text: self.text.chars().take(120).collect(),
        })
    }
}

/// Send a message to a client by id. It is kept (bounded) until the client acknowledges it,
/// and delivered when it connects if it is not connected now.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct ToClient {
    /// The client's id.
    pub client: String,
    /// The message (JSON text, or plain text).
    pub text: String,
}

impl ToClient {
    /// `value` serialized with serde_json.
    pub fn json<T: Serialize + ?Sized>(
        client: impl Into<String>,
        value: &T,
    ) -> Result<Self, Error> {
        Ok(ToClient {
            client: client.into(),
            text: serde_json::to_string(value).map_err(|e| Error::Encode(e.to_string()))?,
        })
    }
}

/// Subscribe the application to [`FromClient`] messages and [`ClientEvent`]s.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SubscribeHub {
    /// Receives every client message.
    pub messages: Recipient<FromClient>,
    /// Receives connects, disconnects and resume gaps, if given.
    pub events: Option<Recipient<ClientEvent>>,
}

/// What happens to clients.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum ClientEvent {
    /// A client said hello on a new connection.
    Connected {
        /// Its id.
        client: String,
        /// Whether it had connected before (a resume).
        resumed: bool,
    },
    /// A client's connection ended.
    Disconnected {
        /// Its id.
        client: String,
    },
    /// A reconnecting client missed messages the history no longer held.
    Gap {
        /// Its id.
        client: String,
        /// The lost range.
        gap: Gap,
    },
}

/// Counters of a hub, from [`GetHubStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Clients known.
    pub clients: usize,
    /// Clients connected now.
    pub connected: usize,
    /// Client messages delivered to the application.
    pub delivered: u64,
    /// Client messages dropped as duplicates.
    pub duplicates: u64,
    /// Server messages sent again on resume.
    pub replayed: u64,
}

/// Ask a hub for its [`HubStats`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "HubStats")]
pub struct GetHubStats;

#[derive(Default)]
struct ClientState {
    /// The highest client sequence number delivered to the application.
    received: u64,
    /// The next server sequence number.
    next_seq: u64,
    /// Sent and not acknowledged: (seq, frame).
    history: VecDeque<(u64, ByteString)>,
    /// Messages up to this sequence number were dropped from the history unacknowledged.
    trimmed: u64,
    session: Option<Session>,
}

/// The acked-protocol server state for every client. Start one per application and pass its
/// address to [`accept_acked`](super::accept_acked).
pub struct Hub {
    config: HubConfig,
    clients: HashMap<String, ClientState>,
    apps: Vec<Recipient<FromClient>>,
    events: Vec<Recipient<ClientEvent>>,
    acks_due: HashSet<String>,
    ack_timer: Option<SpawnHandle>,
    stats: HubStats,
}

impl Hub {
    /// A hub with `config`.
    pub fn new(config: HubConfig) -> Self {
        Hub {
            config,
            clients: HashMap::new(),
            apps: Vec::new(),
            events: Vec::new(),
            acks_due: HashSet::new(),
            ack_timer: None,
            stats: HubStats::default(),
        }
    }

    fn event(&mut self, event: ClientEvent) {
        self.events.retain(Recipient::connected);
        for e in &self.events {
            e.do_send(event.clone());
        }
    }

    fn flush_acks(&mut self, _ctx: &mut Context<Self>) {
        self.ack_timer = None;
        for client in self.acks_due.drain() {
            if let Some(state) = self.clients.get(&client) {
                if let Some(session) = &state.session {
                    session.text(wire::ack(state.received));
                }
            }
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(HubConfig::default())
    }
}

impl Actor for Hub {
    type Context = Context<Self>;
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl Handler<SubscribeHub> for Hub {
    type Result = ();
    fn handle(&mut self, msg: SubscribeHub, _: &mut Context<Self>) {
        self.apps.push(msg.messages);
        if let Some(events) = msg.events {
            self.events.push(events);
        }
    }
}

impl Handler<GetHubStats> for Hub {
    type Result = MessageResult<GetHubStats>;
    fn handle(&mut self, _: GetHubStats, _: &mut Context<Self>) -> Self::Result {
        let mut stats = self.stats;
        stats.clients = self.clients.len();
        stats.connected = self
            .clients
            .values()
            .filter(|c| c.session.as_ref().is_some_and(Session::connected))
            .count();
        MessageResult(stats)
    }
}

impl Handler<ToClient> for Hub {
    type Result = ();
    fn handle(&mut self, msg: ToClient, _: &mut Context<Self>) {
        let limit = self.config.history;
        let state = self.clients.entry(msg.client).or_default();
        state.next_seq += 1;
        let seq = state.next_seq;
        let frame = ByteString::from(wire::msg(Some(seq), &msg.text));
        if let Some(session) = &state.session {
            session.text(frame.clone());
        }
        state.history.push_back((seq, frame));
        while state.history.len() > limit {
            if let Some((dropped, _)) = state.history.pop_front() {
                state.trimmed = dropped;
            }
        }
    }
}

/// A session said hello.
#[derive(Message)]
#[rtype(result = "()")]
struct Hello {
    client: String,
    last_seq: u64,
    session: Session,
}

impl Handler<Hello> for Hub {
    type Result = ();
    fn handle(&mut self, hello: Hello, _: &mut Context<Self>) {
        let resumed = self.clients.contains_key(&hello.client);
        if !resumed && self.clients.len() >= self.config.max_clients {
            warn!(
                "resocket hub: client limit {} reached",
                self.config.max_clients
            );
            hello
                .session
                .command(super::Command::Close(1008, Some("too many clients".into())));
            return;
        }
        let state = self.clients.entry(hello.client.clone()).or_default();
        // A hub that restarted (state lost) numbers on from what the client has seen, or the
        // client would take its new messages for duplicates.
        state.next_seq = state.next_seq.max(hello.last_seq);
        // The client has everything up to last_seq.
        while state
            .history
            .front()
            .is_some_and(|(s, _)| *s <= hello.last_seq)
        {
            state.history.pop_front();
        }
        let gap = (hello.last_seq < state.trimmed).then(|| Gap {
            from: hello.last_seq + 1,
            to: state.trimmed,
        });
        hello.session.text(wire::welcome(state.received, gap));
        for (_, frame) in &state.history {
            hello.session.text(frame.clone());
        }
        self.stats.replayed += state.history.len() as u64;
        state.session = Some(hello.session);
        debug!(
            "resocket hub: client {:?} connected (resumed: {resumed})",
            hello.client
        );
        self.event(ClientEvent::Connected {
            client: hello.client.clone(),
            resumed,
        });
        if let Some(gap) = gap {
            warn!("resocket hub: client {:?} missed {gap:?}", hello.client);
            self.event(ClientEvent::Gap {
                client: hello.client,
                gap,
            });
        }
    }
}

/// A session received a data message.
#[derive(Message)]
#[rtype(result = "()")]
struct Data {
    client: String,
    seq: Option<u64>,
    text: String,
}

impl Handler<Data> for Hub {
    type Result = ();
    fn handle(&mut self, data: Data, ctx: &mut Context<Self>) {
        self.apps.retain(Recipient::connected);
        if self.apps.is_empty() {
            // Nobody to deliver to: neither count it received nor ack it; the client keeps it
            // in flight and sends it again after its next reconnect.
            warn!("resocket hub: no application subscribed; client message not acknowledged");
            return;
        }
        let state = self.clients.entry(data.client.clone()).or_default();
        if let Some(seq) = data.seq {
            if seq <= state.received {
                self.stats.duplicates += 1;
                self.acks_due.insert(data.client);
                return self.schedule_acks(ctx);
            }
            if seq != state.received + 1 {
                warn!(
                    "resocket hub: client {:?} skipped from {} to {seq}",
                    data.client, state.received
                );
            }
            state.received = seq;
            self.acks_due.insert(data.client.clone());
        }
        self.stats.delivered += 1;
        let message = FromClient {
            client: data.client,
            text: data.text,
            seq: data.seq,
        };
        for app in &self.apps {
            app.do_send(message.clone());
        }
        self.schedule_acks(ctx);
    }
}

impl Hub {
    fn schedule_acks(&mut self, ctx: &mut Context<Self>) {
        if self.ack_timer.is_none() && !self.acks_due.is_empty() {
            self.ack_timer = Some(ctx.run_later(self.config.ack_delay, Hub::flush_acks));
        }
    }
}

/// A session received an ack.
#[derive(Message)]
#[rtype(result = "()")]
struct Acked {
    client: String,
    seq: u64,
}

impl Handler<Acked> for Hub {
    type Result = ();
    fn handle(&mut self, ack: Acked, _: &mut Context<Self>) {
        if let Some(state) = self.clients.get_mut(&ack.client) {
            while state.history.front().is_some_and(|(s, _)| *s <= ack.seq) {
                state.history.pop_front();
            }
        }
    }
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
struct Gone {
    client: String,
    session: u64,
}

impl Handler<Gone> for Hub {
    type Result = ();
    fn handle(&mut self, gone: Gone, _: &mut Context<Self>) {
        let Some(state) = self.clients.get_mut(&gone.client) else {
            return;
        };
        if state
            .session
            .as_ref()
            .is_some_and(|s| s.id() == gone.session)
        {
            state.session = None;
            self.event(ClientEvent::Disconnected {
                client: gone.client,
            });
        }
    }
}

/// The session side of the acked protocol: turns frames into hub messages.
pub(crate) struct HubSession {
    pub(crate) hub: Addr<Hub>,
    pub(crate) client: Option<String>,
    pub(crate) session: Option<u64>,
}

impl SessionHandler for HubSession {
    fn text(&mut self, session: &Session, text: &str) {
        match wire::decode(text) {
            Some(wire::Frame::Hello { client, last_seq }) => {
                if self.client.is_some() {
                    debug!("resocket hub: a second hello on one connection ignored");
                    return;
                }
                if client.is_empty() || client.len() > MAX_CLIENT_ID {
                    session.command(super::Command::Close(
                        1008,
                        Some(format!("client id must be 1 to {MAX_CLIENT_ID} bytes")),
                    ));
                    return;
                }
                let client = client.into_owned();
                self.client = Some(client.clone());
                self.session = Some(session.id());
                self.hub.do_send(Hello {
                    client,
                    last_seq,
                    session: session.clone(),
                });
            }
            Some(wire::Frame::Msg { seq, body }) => {
                let Some(client) = self.client.clone() else {
                    debug!("resocket hub: data before hello ignored");
                    return;
                };
                self.hub.do_send(Data {
                    client,
                    seq,
                    text: body.as_str().to_string(),
                });
            }
            Some(wire::Frame::Ack { seq }) => {
                if let Some(client) = self.client.clone() {
                    self.hub.do_send(Acked { client, seq });
                }
            }
            Some(wire::Frame::Welcome { .. }) | None => {
                debug!("resocket hub: non-protocol text ignored");
            }
        }
    }

    fn closed(&mut self, _code: Option<u16>) {
        if let (Some(client), Some(session)) = (self.client.take(), self.session) {
            self.hub.do_send(Gone { client, session });
        }
    }
}
