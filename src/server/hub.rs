//! The server side of acked delivery: one `Hub` actor holds every client's state across
//! connections (and across restarts of the HTTP server, as long as the application keeps the
//! hub): dedup by (client id, sequence) so the application sees each client message exactly
//! once, in order; a bounded history of server→client messages for resume; acks both ways.

mod client;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use actix::fut::wrap_future;
use actix::prelude::*;
use log::{debug, warn};
use serde::de::DeserializeOwned;
use serde::Serialize;

use self::client::{ClientState, DataOutcome, Violation};
use super::{Command, Session, SessionHandler};
use crate::acked::wire::{self, ResumeGap};
use crate::Error;

/// Hub settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubConfig {
    /// Server→client messages kept per client until acknowledged, for resume. Past it the
    /// oldest are dropped and a reconnecting client is told of the [`ResumeGap`]; a connected client
    /// that reads so slowly that a dropped message was never written to it is disconnected
    /// (1013) to be told the same way. Defaults to 10,000.
    pub history: usize,
    /// How long acks may wait to be batched. Defaults to 1 ms. A client with a quarter of
    /// `max_pending_per_client` messages taken since its last ack is acked at once, so that a
    /// client whose window is that bound keeps writing instead of waiting out the delay.
    pub ack_delay: Duration,
    /// Client ids the hub keeps state for. When a new id says hello and the hub is full, clients
    /// disconnected for longer than `idle_client_ttl` are evicted first; if none is, the hello
    /// is refused (close code 1013, try again later). Defaults to 100,000.
    pub max_clients: usize,
    /// How long the state of a disconnected client (its unacknowledged messages, its dedup
    /// position) is kept. Past it the client is evicted ([`ClientEvent::Evicted`]): if it comes
    /// back it starts afresh. Defaults to 1 hour.
    pub idle_client_ttl: Duration,
    /// Messages of one client accepted and not yet taken by the application. A client that
    /// sends past it (it ignores its ack window, or its window is larger) has its session
    /// closed with 1013 and sends again after reconnecting: a client cannot make the hub queue
    /// without bound. Keep it at least the clients' `ack_window`. Defaults to 1,000
    /// ([`SocketConfig::DEFAULT_ACK_WINDOW`](crate::SocketConfig::DEFAULT_ACK_WINDOW)).
    pub max_pending_per_client: usize,
    /// Hellos per second one client id may send (bursts of as many); past it the hello is
    /// refused with 1013, so a reconnect loop or a flood cannot churn the hub. Defaults to 10.
    pub max_hellos_per_second: u32,
}

/// The longest client id accepted.
pub const MAX_CLIENT_ID: usize = 256;

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history: 10_000,
            ack_delay: Duration::from_millis(1),
            max_clients: 100_000,
            idle_client_ttl: Duration::from_secs(3600),
            max_pending_per_client: crate::SocketConfig::DEFAULT_ACK_WINDOW,
            max_hellos_per_second: 10,
        }
    }
}

/// A message from a client, delivered to the application exactly once and in order.
#[derive(Debug, Clone, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct FromClient {
    /// The client's id (as authenticated, or from its hello: see [`ClientIdentity`]).
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
            error: crate::Cause::from_error(e),
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
            text: serde_json::to_string(value)
                .map_err(|e| Error::Encode(crate::Cause::from_error(e)))?,
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
    ResumeGap {
        /// Its id.
        client: String,
        /// The lost range.
        gap: ResumeGap,
    },
    /// A client sent a frame it could not honestly have sent (a sequence gap, an ack for a
    /// message never sent, an impossible `last_seq`); its session was closed with `code`.
    Violation {
        /// Its id.
        client: String,
        /// The close code sent (1002 or 1008).
        code: u16,
        /// What was wrong, as sent in the close frame.
        reason: String,
    },
    /// A client was disconnected for longer than [`HubConfig::idle_client_ttl`]; its state is
    /// gone, and with it `unacked` messages it never acknowledged.
    Evicted {
        /// Its id.
        client: String,
        /// Server messages dropped unacknowledged.
        unacked: usize,
    },
}

/// Counters of a hub, from [`GetHubStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Clients known.
    pub clients: usize,
    /// Clients connected now.
    pub connected: usize,
    /// Client messages accepted for the application (identify messages included).
    pub delivered: u64,
    /// Client messages dropped as duplicates.
    pub duplicates: u64,
    /// Server messages sent again on resume.
    pub replayed: u64,
    /// Sessions closed for a protocol violation.
    pub violations: u64,
    /// Sessions closed because a newer session said hello for the same client.
    pub replaced: u64,
    /// Clients evicted after being disconnected for longer than the idle TTL.
    pub evicted: u64,
    /// Hellos refused because the hub was full.
    pub refused: u64,
    /// Sessions closed because their client had `max_pending_per_client` messages waiting for
    /// the application.
    pub over_limit: u64,
    /// Hellos refused because their client id said hello more than `max_hellos_per_second`.
    pub rate_limited: u64,
    /// Client messages taken by the application and acknowledged.
    pub taken: u64,
    /// Handler panics contained (each a bug; the hub served on).
    pub panics: u64,
}

/// Ask a hub for its [`HubStats`].
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "HubStats")]
pub struct GetHubStats;

/// A client message on its way to the application.
struct Handover {
    message: FromClient,
    /// The client state it was accepted by (a state evicted and created afresh is another).
    incarnation: u64,
    /// The instance of the session it arrived on.
    instance: Option<u64>,
    epoch: u64,
}

/// The acked-protocol server state for every client. Start one per application and pass its
/// address to [`accept_acked`](super::accept_acked).
///
/// Client messages reach the application one at a time, in arrival order, each through a
/// `send` that completes when the application's handler has returned; only then is the
/// message acknowledged. A slow application therefore slows its clients (their windows of
/// unacknowledged messages fill up) instead of growing a mailbox without bound, and a
/// message acknowledged to a client is one the application has had.
pub struct Hub {
    config: HubConfig,
    clients: HashMap<String, ClientState>,
    apps: Vec<Recipient<FromClient>>,
    events: Vec<Recipient<ClientEvent>>,
    acks_due: HashSet<String>,
    ack_timer: Option<SpawnHandle>,
    /// Messages accepted and not yet handed to the application, oldest first.
    handovers: VecDeque<Handover>,
    /// Whether a handover is in progress.
    handing: bool,
    /// The next client state's incarnation.
    next_incarnation: u64,
    /// Fault injection: panic in the next hello.
    #[cfg(feature = "fault-injection")]
    panic_next: bool,
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
            handovers: VecDeque::new(),
            handing: false,
            next_incarnation: 1,
            #[cfg(feature = "fault-injection")]
            panic_next: false,
            stats: HubStats::default(),
        }
    }

    fn event(&mut self, event: ClientEvent) {
        self.events.retain(Recipient::connected);
        for e in &self.events {
            e.do_send(event.clone());
        }
    }

    /// Writes `client`'s unsent messages on its live session while they fit in half the
    /// session's write backlog limit (one message is always written when nothing is waiting,
    /// however large), so that the other half stays free for acks. Called on every hello,
    /// message and ack, so a replay of a long history goes out as fast as the client reads
    /// (it acks as it goes) and is never dropped for want of room.
    fn pump(&mut self, client: &str) {
        let Some(state) = self.clients.get_mut(client) else {
            return;
        };
        let Some(session) = state.session.clone() else {
            return;
        };
        let room = session.backlog_limit() / 2;
        loop {
            let backlog = session.backlog();
            let fits = |len: usize| backlog == 0 || backlog.saturating_add(len) <= room;
            let Some(frame) = state.next_unsent(fits) else {
                break;
            };
            session.text(frame);
        }
    }

    /// A handler panicked (a bug): the panic is contained so that every other client is still
    /// served; it is logged and counted.
    fn panicked(&mut self) {
        self.stats.panics += 1;
        log::error!("resocket hub: a handler panicked (a bug); the hub serves on");
    }

    /// `client`'s state, created if the hub knows nothing of it.
    fn state(&mut self, client: String) -> &mut ClientState {
        let incarnation = &mut self.next_incarnation;
        self.clients.entry(client).or_insert_with(|| {
            *incarnation += 1;
            ClientState::new(Instant::now(), *incarnation)
        })
    }

    fn schedule_acks(&mut self, ctx: &mut Context<Self>) {
        if self.ack_timer.is_none() && !self.acks_due.is_empty() {
            self.ack_timer = Some(ctx.run_later(self.config.ack_delay, Hub::flush_acks));
        }
    }

    fn flush_acks(&mut self, _ctx: &mut Context<Self>) {
        self.ack_timer = None;
        for client in self.acks_due.drain() {
            if let Some(state) = self.clients.get_mut(&client) {
                write_ack(state);
            }
        }
    }

    /// How many taken messages make an ack due at once (see [`HubConfig::ack_delay`]).
    fn eager_ack_after(&self) -> u64 {
        (self.config.max_pending_per_client as u64 / 4).max(1)
    }

    /// Closes `client`'s live session with `code`; it is no longer current, so frames still
    /// arriving from it are ignored.
    fn end_session(&mut self, client: &str, code: u16, reason: String) {
        let Some(state) = self.clients.get_mut(client) else {
            return;
        };
        if let Some(session) = state.session.take() {
            state.idle_since = Some(Instant::now());
            session.command(Command::Close(code, Some(reason)));
            self.event(ClientEvent::Disconnected {
                client: client.to_string(),
            });
        }
    }

    fn violation(&mut self, client: &str, violation: Violation) {
        warn!(
            "resocket hub: client {client:?} closed for a protocol violation: {}",
            violation.reason
        );
        self.stats.violations += 1;
        self.end_session(client, violation.code, violation.reason.clone());
        self.event(ClientEvent::Violation {
            client: client.to_string(),
            code: violation.code,
            reason: violation.reason,
        });
    }

    /// Evicts clients disconnected for longer than the idle TTL.
    fn evict_idle(&mut self) {
        let ttl = self.config.idle_client_ttl;
        let now = Instant::now();
        let expired: Vec<String> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.pending == 0
                    && c.parked.is_none()
                    && c.idle_since
                        .is_some_and(|t| now.saturating_duration_since(t) >= ttl)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for client in expired {
            if let Some(state) = self.clients.remove(&client) {
                self.stats.evicted += 1;
                self.acks_due.remove(&client);
                debug!("resocket hub: client {client:?} evicted after {ttl:?} idle");
                self.event(ClientEvent::Evicted {
                    client,
                    unacked: state.unacked(),
                });
            }
        }
    }

    /// Hands the oldest accepted message to the application, if none is being handed now.
    /// Messages of a client whose accepted messages were given up since (a rollback, an
    /// eviction) are dropped here: the client sends them again.
    fn hand_over(&mut self, ctx: &mut Context<Self>) {
        if self.handing {
            return;
        }
        let next = loop {
            let Some(next) = self.handovers.pop_front() else {
                return;
            };
            let Some(state) = self.clients.get_mut(&next.message.client) else {
                continue;
            };
            if state.incarnation != next.incarnation {
                continue;
            }
            if state.epoch == next.epoch {
                break next;
            }
            state.pending = state.pending.saturating_sub(1);
        };
        self.apps.retain(Recipient::connected);
        self.handing = true;
        let sends =
            futures_util::future::join_all(self.apps.iter().map(|a| a.send(next.message.clone())));
        ctx.spawn(wrap_future::<_, Self>(sends).map(move |results, act, ctx| {
            act.handing = false;
            let taken = results.iter().any(Result::is_ok);
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                act.handed(next, taken, ctx);
            }));
            if caught.is_err() {
                act.panicked();
            }
            act.hand_over(ctx);
        }));
    }

    /// A handover completed: acknowledge it, or give up what followed it.
    fn handed(&mut self, handover: Handover, taken: bool, ctx: &mut Context<Self>) {
        let Handover {
            message,
            incarnation,
            instance,
            epoch,
        } = handover;
        let client = message.client;
        let eager_ack_after = self.eager_ack_after();
        let Some(state) = self.clients.get_mut(&client) else {
            return;
        };
        if state.incarnation != incarnation {
            return; // evicted meanwhile, and a new state created under the same id
        }
        state.pending = state.pending.saturating_sub(1);
        if let Some(seq) = message.seq {
            if taken {
                if state.took(seq, epoch, instance) {
                    self.stats.taken += 1;
                    if state.taken.saturating_sub(state.acked) >= eager_ack_after {
                        write_ack(state);
                    } else {
                        self.acks_due.insert(client.clone());
                        self.schedule_acks(ctx);
                    }
                }
            } else if state.not_taken(epoch) {
                warn!(
                    "resocket hub: the application stopped before taking message {seq} of client {client:?}"
                );
                // Whichever session is live now holds the given-up messages unacknowledged:
                // it must reconnect to send them again.
                let reason = "the application is not taking messages; try again later".into();
                self.end_session(&client, 1013, reason);
            }
        }
        self.welcome_parked(&client);
    }

    /// Welcomes a parked hello once every earlier message has been handed over.
    fn welcome_parked(&mut self, client: &str) {
        let Some(state) = self.clients.get_mut(client) else {
            return;
        };
        if state.handing_over() {
            return;
        }
        if let Some((last_seq, instance, session)) = state.parked.take() {
            if session.connected() {
                self.welcome(client.to_string(), last_seq, instance, session);
            } else {
                state.idle_since = Some(Instant::now());
            }
        }
    }
}

/// Writes the ack of what the application has taken of `state`'s client on its live session.
fn write_ack(state: &mut ClientState) {
    if let (Some(session), true) = (&state.session, state.taken > 0) {
        session.text(wire::ack(state.taken));
        state.acked = state.taken;
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(HubConfig::default())
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = self.config.idle_client_ttl.max(Duration::from_millis(100));
        ctx.run_interval(every, |hub, _| hub.evict_idle());
    }
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
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let limit = self.config.history;
            let client = msg.client.clone();
            if self.state(msg.client).queue(msg.text.into(), limit) {
                let reason = format!(
                    "more than {limit} messages queued for this client before they could be written: it is not reading fast enough"
                );
                log::warn!("resocket hub: client {client:?}: {reason}");
                self.end_session(&client, 1013, reason);
                return;
            }
            self.pump(&client);
        }));
        if caught.is_err() {
            self.panicked();
        }
    }
}

/// A session said hello.
#[derive(Message)]
#[rtype(result = "()")]
struct Hello {
    client: String,
    last_seq: u64,
    instance: Option<u64>,
    session: Session,
}

impl Handler<Hello> for Hub {
    type Result = ();
    fn handle(&mut self, hello: Hello, _: &mut Context<Self>) {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            #[cfg(feature = "fault-injection")]
            if std::mem::take(&mut self.panic_next) {
                panic!("resocket fault injection: a hub handler panicked");
            }
            let Hello {
                client,
                last_seq,
                instance,
                session,
            } = hello;
            if !self.clients.contains_key(&client) && self.clients.len() >= self.config.max_clients
            {
                self.evict_idle();
                if self.clients.len() >= self.config.max_clients {
                    warn!(
                        "resocket hub: client limit {} reached; {client:?} refused",
                        self.config.max_clients
                    );
                    self.stats.refused += 1;
                    session.command(Command::Close(
                        1013,
                        Some("too many clients; try again later".into()),
                    ));
                    return;
                }
            }
            let per_second = self.config.max_hellos_per_second;
            let state = self.state(client.clone());
            let hellos = state
                .hellos
                .get_or_insert_with(|| super::rate_limit::RateLimit::new(per_second));
            if !hellos.take(Instant::now()) {
                warn!(
                "resocket hub: client {client:?} says hello more than {per_second} times a second"
            );
                self.stats.rate_limited += 1;
                session.command(Command::Close(
                    1013,
                    Some(format!(
                        "more than {per_second} hellos a second for this client id"
                    )),
                ));
                return;
            }
            if state.handing_over() {
                // Messages of an earlier session (perhaps of the client's previous process) are
                // still on their way to the application: the welcome must say what it has taken,
                // so it waits for them. The earlier session is done.
                debug!("resocket hub: client {client:?}: hello waits for earlier messages");
                let replaced = state.session.take();
                state.idle_since = Some(Instant::now());
                if let Some((_, _, older)) = state.parked.replace((last_seq, instance, session)) {
                    replace_session(&older);
                }
                if let Some(old) = replaced {
                    replace_session(&old);
                    self.stats.replaced += 1;
                    self.event(ClientEvent::Disconnected { client });
                }
                return;
            }
            self.welcome(client, last_seq, instance, session);
        }));
        if caught.is_err() {
            self.panicked();
        }
    }
}

fn replace_session(old: &Session) {
    old.command(Command::Close(
        4001,
        Some("replaced by a newer session for this client".into()),
    ));
}

impl Hub {
    /// Answers a hello: the welcome, then the history.
    fn welcome(&mut self, client: String, last_seq: u64, instance: Option<u64>, session: Session) {
        let state = self.state(client.clone());
        let welcome = match state.hello(last_seq, session.clone(), instance) {
            Ok(welcome) => welcome,
            Err(violation) => {
                self.stats.violations += 1;
                warn!(
                    "resocket hub: hello from {client:?} refused: {}",
                    violation.reason
                );
                session.command(Command::Close(
                    violation.code,
                    Some(violation.reason.clone()),
                ));
                self.event(ClientEvent::Violation {
                    client,
                    code: violation.code,
                    reason: violation.reason,
                });
                return;
            }
        };
        session.text(welcome.frame);
        self.stats.replayed += state.unacked() as u64;
        self.pump(&client);
        if let Some(old) = welcome.replaced {
            self.stats.replaced += 1;
            debug!("resocket hub: client {client:?}: a newer session replaces the old one");
            replace_session(&old);
        }
        debug!(
            "resocket hub: client {client:?} connected (resumed: {})",
            welcome.resumed
        );
        self.event(ClientEvent::Connected {
            client: client.clone(),
            resumed: welcome.resumed,
        });
        if let Some(gap) = welcome.gap {
            warn!("resocket hub: client {client:?} missed {gap:?}");
            self.event(ClientEvent::ResumeGap { client, gap });
        }
    }
}

/// A session received a data message.
#[derive(Message)]
#[rtype(result = "()")]
struct Data {
    client: String,
    session: u64,
    seq: Option<u64>,
    text: String,
}

impl Handler<Data> for Hub {
    type Result = ();
    fn handle(&mut self, data: Data, ctx: &mut Context<Self>) {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let Some(state) = self.clients.get_mut(&data.client) else {
                return;
            };
            if !state.is_current(data.session) {
                return; // from a session the hub closed or a newer one replaced
            }
            self.apps.retain(Recipient::connected);
            if self.apps.is_empty() {
                // Nobody to deliver to: not received, not acked; the client sends it again after
                // it reconnects (with backoff).
                warn!(
                    "resocket hub: no application subscribed; client {:?} asked to come back later",
                    data.client
                );
                let reason = "no application is subscribed; try again later".into();
                return self.end_session(&data.client, 1013, reason);
            }
            let duplicate = data.seq.is_some_and(|seq| seq <= state.received);
            if !duplicate && state.pending >= self.config.max_pending_per_client {
                // The client ignores its ack window (or the window is larger than this bound):
                // not accepted, not acked; it sends again after it reconnects.
                let limit = self.config.max_pending_per_client;
                warn!(
                    "resocket hub: client {:?} has {limit} messages waiting for the application",
                    data.client
                );
                self.stats.over_limit += 1;
                let reason = format!(
                    "more than {limit} messages waiting for the application; try again later"
                );
                return self.end_session(&data.client, 1013, reason);
            }
            if let Some(seq) = data.seq {
                match state.data(seq) {
                    Ok(DataOutcome::Deliver) => {}
                    Ok(DataOutcome::Duplicate) => {
                        self.stats.duplicates += 1;
                        self.acks_due.insert(data.client);
                        return self.schedule_acks(ctx);
                    }
                    Err(violation) => return self.violation(&data.client, violation),
                }
            }
            self.stats.delivered += 1;
            state.pending += 1;
            self.handovers.push_back(Handover {
                incarnation: state.incarnation,
                instance: state.instance,
                epoch: state.epoch,
                message: FromClient {
                    client: data.client,
                    text: data.text,
                    seq: data.seq,
                },
            });
            self.hand_over(ctx);
        }));
        if caught.is_err() {
            self.panicked();
        }
    }
}

/// A session received an ack.
#[derive(Message)]
#[rtype(result = "()")]
struct Acked {
    client: String,
    session: u64,
    seq: u64,
}

impl Handler<Acked> for Hub {
    type Result = ();
    fn handle(&mut self, ack: Acked, _: &mut Context<Self>) {
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let Some(state) = self.clients.get_mut(&ack.client) else {
                return;
            };
            if !state.is_current(ack.session) {
                return;
            }
            if let Err(violation) = state.ack(ack.seq) {
                return self.violation(&ack.client, violation);
            }
            self.pump(&ack.client);
        }));
        if caught.is_err() {
            self.panicked();
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
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let Some(state) = self.clients.get_mut(&gone.client) else {
                return;
            };
            if state
                .parked
                .as_ref()
                .is_some_and(|(_, _, s)| s.id() == gone.session)
            {
                state.parked = None;
                state.idle_since = Some(Instant::now());
            }
            if state.gone(gone.session, Instant::now()) {
                self.event(ClientEvent::Disconnected {
                    client: gone.client,
                });
            }
        }));
        if caught.is_err() {
            self.panicked();
        }
    }
}

/// Who a connection's client is, decided when the upgrade request is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// The application authenticated the request (a token, a session cookie, a client
    /// certificate) as this client id. A hello naming any other id is refused (close code
    /// 1008) and the connection ends.
    Authenticated(String),
    /// Trust the id the client names in its hello. Anyone who can reach the endpoint can then
    /// speak as any client (take over its session and its queued messages): only for tests
    /// and networks where every client is trusted.
    TrustHello,
}

/// The session side of the acked protocol: turns frames into hub messages.
pub(crate) struct HubSession {
    pub(crate) hub: Addr<Hub>,
    pub(crate) identity: ClientIdentity,
    /// The client id, once its hello is accepted.
    pub(crate) client: Option<String>,
    /// The session's id, once its hello is accepted.
    pub(crate) session: Option<u64>,
}

impl HubSession {
    fn hello(&mut self, session: &Session, client: &str, last_seq: u64, instance: Option<u64>) {
        if self.client.is_some() {
            debug!("resocket hub: a second hello on one connection ignored");
            return;
        }
        if client.is_empty() || client.len() > MAX_CLIENT_ID {
            return refuse(
                session,
                format!("client id must be 1 to {MAX_CLIENT_ID} bytes"),
            );
        }
        if let ClientIdentity::Authenticated(id) = &self.identity {
            if id != client {
                warn!(
                    "resocket hub: a connection authenticated as {id:?} said hello as {client:?}"
                );
                return refuse(
                    session,
                    "hello names a client id other than the one this connection is authenticated as".into(),
                );
            }
        }
        self.client = Some(client.to_string());
        self.session = Some(session.id());
        self.hub.do_send(Hello {
            client: client.to_string(),
            last_seq,
            instance,
            session: session.clone(),
        });
    }
}

fn refuse(session: &Session, reason: String) {
    session.command(Command::Close(1008, Some(reason)));
}

impl SessionHandler for HubSession {
    fn text(&mut self, session: &Session, text: &str) {
        match wire::decode(text) {
            Some(wire::Frame::Hello {
                client,
                last_seq,
                instance,
            }) => self.hello(session, &client, last_seq, instance),
            Some(wire::Frame::Msg { seq, body }) => {
                let Some(client) = self.client.clone() else {
                    debug!("resocket hub: data before hello ignored");
                    return;
                };
                self.hub.do_send(Data {
                    client,
                    session: session.id(),
                    seq,
                    text: body.as_str().to_string(),
                });
            }
            Some(wire::Frame::Ack { seq }) => {
                if let Some(client) = self.client.clone() {
                    self.hub.do_send(Acked {
                        client,
                        session: session.id(),
                        seq,
                    });
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

/// Makes the hub panic while handling the next hello, as a bug would (feature
/// `fault-injection`).
#[cfg(feature = "fault-injection")]
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct PanicNext;

#[cfg(feature = "fault-injection")]
impl Handler<PanicNext> for Hub {
    type Result = ();
    fn handle(&mut self, _: PanicNext, _: &mut Context<Self>) {
        self.panic_next = true;
    }
}
