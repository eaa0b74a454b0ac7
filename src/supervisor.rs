//! `SupervisorActor`: many sockets by key, restarted by policy within a restart intensity,
//! spread over arbiters.
//!
//! What survives a restart: the outbox (messages not yet written, with their delivery
//! options), every subscription, pending requests, and in acked mode the messages in flight.
//! What does not: the connection, and in the default mode messages already handed to it (as
//! with any reconnect).
//! The restarted socket has a new address; look it up with [`GetSocket`] or send through
//! [`SendTo`].

mod messages;

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;
use futures_util::future::join_all;
use log::{debug, warn};

pub use self::messages::{
    GetSocket, GetSupervisorStats, ListSockets, SendTo, Shutdown, StartSocket, StopSocket,
    SubscribeAll, SubscribeSupervision, SupervisionEvent, SupervisorStats,
};
use crate::outbox::Queued;
use crate::restart::RestartWindow;
use crate::socket::owner::{LinkChanged, SocketEnded};
use crate::socket::{Inheritance, Owner};
use crate::subscribers::Subscribers;
use crate::{
    Close, CloseReport, Error, GetStatus, Outgoing, RestartIntensity, RestartPolicy, SendError,
    SendMessage, SocketActor, SocketConfig, SocketState, Subscribe,
};

/// How long a stopping supervisor lets its sockets close before it stops their arbiters.
const ARBITER_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Supervisor settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Arbiters (threads) to spread sockets over; 0 runs them on the supervisor's own arbiter.
    /// Defaults to one per core.
    pub arbiters: usize,
    /// Restart intensity. Defaults to 3 restarts in 5 s.
    pub intensity: RestartIntensity,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            arbiters: std::thread::available_parallelism().map_or(1, |n| n.get()),
            intensity: RestartIntensity::default(),
        }
    }
}

struct Child {
    addr: Addr<SocketActor>,
    config: SocketConfig,
    policy: RestartPolicy,
    arbiter: usize,
    generation: u64,
    restarts: u32,
    /// Messages that met the socket between its end and its restart.
    pending: Vec<Outgoing>,
}

/// Owns sockets by key and restarts those that end (Closed, fatal error, gave up, or a panic
/// in a handler) according to their [`RestartPolicy`], within the [`RestartIntensity`]. Past
/// the intensity it stops every socket and itself, and says why
/// ([`SupervisionEvent::IntensityExceeded`]), as an OTP supervisor does.
///
/// actix's own `Supervisor` does not restart on panic; this one learns of every end from the
/// socket's `stopped()`, which runs even after a panic.
pub struct SupervisorActor {
    config: SupervisorConfig,
    arbiters: Vec<Arbiter>,
    next_arbiter: usize,
    next_generation: u64,
    children: HashMap<String, Child>,
    window: RestartWindow,
    restarts: u64,
    subscribers: Vec<Recipient<SupervisionEvent>>,
    /// Subscriptions to every socket ([`SubscribeAll`]).
    for_all: Vec<crate::subscribers::Subscription>,
    /// The current outage, if sockets that were open lost their connection.
    outage: Option<Outage>,
}

/// Sockets that lost their connection and are not back yet, summarised in the log.
struct Outage {
    since: Instant,
    /// Key → why it was lost.
    down: HashMap<String, String>,
    /// The most down at once.
    peak: usize,
    /// The next summary line.
    summary: SpawnHandle,
}

/// The first summary of an outage waits this long (a blip that heals at once logs nothing at
/// warn); later ones come this far apart while it lasts.
const FIRST_SUMMARY: std::time::Duration = std::time::Duration::from_secs(1);
const NEXT_SUMMARY: std::time::Duration = std::time::Duration::from_secs(10);

impl SupervisorActor {
    /// A supervisor with `config`; its arbiters are created when it starts.
    pub fn new(config: SupervisorConfig) -> Self {
        SupervisorActor {
            config,
            arbiters: Vec::new(),
            next_arbiter: 0,
            next_generation: 0,
            children: HashMap::new(),
            window: RestartWindow::new(config.intensity),
            restarts: 0,
            subscribers: Vec::new(),
            for_all: Vec::new(),
            outage: None,
        }
    }

    fn publish(&mut self, event: SupervisionEvent) {
        debug!("resocket supervisor: {event:?}");
        self.subscribers.retain(Recipient::connected);
        for s in &self.subscribers {
            s.do_send(event.clone());
        }
    }

    fn arbiter(&self, index: usize) -> ArbiterHandle {
        match self.arbiters.get(index) {
            Some(a) => a.handle(),
            None => Arbiter::current(),
        }
    }

    /// Starts one socket instance on arbiter `arbiter`.
    fn spawn(
        &mut self,
        key: &str,
        config: &SocketConfig,
        arbiter: usize,
        inheritance: Inheritance,
        ctx: &mut Context<Self>,
    ) -> (Addr<SocketActor>, u64) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let supervision = Owner {
            key: key.to_string(),
            generation,
            ended: ctx.address().recipient(),
            links: ctx.address().recipient(),
        };
        let config = config.clone();
        let addr = SocketActor::start_in_arbiter_with(&self.arbiter(arbiter), move |_| {
            SocketActor::supervised(config, supervision, inheritance)
        });
        (addr, generation)
    }

    fn stop_all(&mut self) {
        for (_, child) in self.children.drain() {
            child.addr.do_send(Close::now());
        }
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Sockets are many small actors; the supervisor's mailbox should not be the bottleneck.
        ctx.set_mailbox_capacity(1024);
        self.arbiters = (0..self.config.arbiters).map(|_| Arbiter::new()).collect();
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.stop_all();
        // Give the sockets time to send their Close frames before their threads end.
        let arbiters = std::mem::take(&mut self.arbiters);
        actix_rt::spawn(async move {
            actix_rt::time::sleep(ARBITER_GRACE).await;
            for arbiter in arbiters {
                arbiter.stop();
            }
        });
    }
}

impl std::fmt::Debug for SupervisorActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorActor")
            .field("sockets", &self.children.len())
            .field("arbiters", &self.arbiters.len())
            .finish_non_exhaustive()
    }
}

impl SupervisorActor {
    /// Logs how many sockets are still reconnecting, and when to say so again.
    fn summarise(&mut self, ctx: &mut Context<Self>) {
        let total = self.children.len();
        let Some(outage) = self.outage.as_mut() else {
            return;
        };
        let example = outage
            .down
            .iter()
            .next()
            .map(|(k, cause)| format!("{k:?}: {cause}"))
            .unwrap_or_default();
        warn!(
            "resocket supervisor: {} of {total} sockets reconnecting for {:.1?} (e.g. {example})",
            outage.down.len(),
            outage.since.elapsed()
        );
        outage.summary = ctx.run_later(NEXT_SUMMARY, Self::summarise);
    }

    fn link_down(&mut self, key: String, cause: String, ctx: &mut Context<Self>) {
        let outage = self.outage.get_or_insert_with(|| Outage {
            since: Instant::now(),
            down: HashMap::new(),
            peak: 0,
            summary: ctx.run_later(FIRST_SUMMARY, Self::summarise),
        });
        debug!("resocket supervisor: socket {key:?} lost its connection: {cause}");
        outage.down.insert(key, cause);
        outage.peak = outage.peak.max(outage.down.len());
    }

    fn link_up(&mut self, key: &str, ctx: &mut Context<Self>) {
        let Some(outage) = self.outage.as_mut() else {
            return;
        };
        outage.down.remove(key);
        if outage.down.is_empty() {
            if let Some(outage) = self.outage.take() {
                ctx.cancel_future(outage.summary);
                let elapsed = outage.since.elapsed();
                if elapsed >= FIRST_SUMMARY {
                    log::info!(
                        "resocket supervisor: all sockets connected again ({} were down) after {elapsed:.1?}",
                        outage.peak
                    );
                } else {
                    debug!(
                        "resocket supervisor: all sockets connected again ({} were down) after {elapsed:.1?}",
                        outage.peak
                    );
                }
            }
        }
    }
}

impl Handler<LinkChanged> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, link: LinkChanged, ctx: &mut Context<Self>) {
        let current = self
            .children
            .get(&link.key)
            .is_some_and(|c| c.generation == link.generation);
        if !current {
            return;
        }
        if link.open {
            self.link_up(&link.key, ctx);
        } else {
            let cause = link.cause.unwrap_or_else(|| "closed".into());
            self.link_down(link.key, cause, ctx);
        }
    }
}

impl Handler<SubscribeAll> for SupervisorActor {
    type Result = ();

    fn handle(
        &mut self,
        SubscribeAll(Subscribe(subscription)): SubscribeAll,
        _: &mut Context<Self>,
    ) {
        for child in self.children.values() {
            child.addr.do_send(Subscribe(subscription.clone()));
        }
        self.for_all.push(subscription);
    }
}

impl Handler<StartSocket> for SupervisorActor {
    type Result = Result<Addr<SocketActor>, Error>;

    fn handle(&mut self, start: StartSocket, ctx: &mut Context<Self>) -> Self::Result {
        if self.children.contains_key(&start.key) {
            return Err(Error::DuplicateKey(start.key));
        }
        let mut subscribers = Subscribers::default();
        for Subscribe(subscription) in start.subscriptions {
            subscribers.add(subscription);
        }
        for subscription in &self.for_all {
            subscribers.add(subscription.clone());
        }
        let arbiter = if self.arbiters.is_empty() {
            0
        } else {
            self.next_arbiter = (self.next_arbiter + 1) % self.arbiters.len();
            self.next_arbiter
        };
        let (addr, generation) = self.spawn(
            &start.key,
            &start.config,
            arbiter,
            Inheritance {
                subscribers,
                ..Inheritance::default()
            },
            ctx,
        );
        self.children.insert(
            start.key.clone(),
            Child {
                addr: addr.clone(),
                config: start.config,
                policy: start.policy,
                arbiter,
                generation,
                restarts: 0,
                pending: Vec::new(),
            },
        );
        self.publish(SupervisionEvent::ChildStarted { key: start.key });
        Ok(addr)
    }
}

impl Handler<SocketEnded> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, ended: SocketEnded, ctx: &mut Context<Self>) {
        let SocketEnded {
            key,
            generation,
            end,
            mut inheritance,
        } = ended;
        let Some(child) = self.children.get_mut(&key) else {
            return; // stopped on purpose, or the supervisor is shutting down
        };
        if child.generation != generation {
            return; // a late report from an instance already replaced
        }
        inheritance
            .outbox
            .extend(child.pending.drain(..).map(Queued::from));
        let restarting = child.policy.restarts_after(&end);
        let unsent =
            inheritance.outbox.len() + inheritance.acked.as_ref().map_or(0, |l| l.unacked());
        if restarting {
            warn!("resocket supervisor: socket {key:?} ended ({end}); restarting");
        } else {
            debug!("resocket supervisor: socket {key:?} ended ({end})");
        }
        self.publish(SupervisionEvent::SocketEnded {
            key: key.clone(),
            end,
            restarting,
            unsent,
        });
        if !restarting {
            self.children.remove(&key);
            self.link_up(&key, ctx); // no longer part of any outage
            return;
        }
        if !self.window.allow(Instant::now()) {
            let RestartIntensity {
                max_restarts,
                within,
            } = self.config.intensity;
            warn!(
                "resocket supervisor: more than {max_restarts} restarts in {within:?}; \
                 stopping every socket and the supervisor"
            );
            self.publish(SupervisionEvent::IntensityExceeded {
                max_restarts,
                within,
                key,
            });
            self.stop_all();
            ctx.stop();
            return;
        }
        let Some(child) = self.children.get(&key) else {
            return;
        };
        let (config, arbiter) = (child.config.clone(), child.arbiter);
        let (addr, generation) = self.spawn(&key, &config, arbiter, inheritance, ctx);
        self.restarts += 1;
        if let Some(child) = self.children.get_mut(&key) {
            child.addr = addr;
            child.generation = generation;
            child.restarts += 1;
            let restarts = child.restarts;
            self.publish(SupervisionEvent::ChildRestarted { key, restarts });
        }
    }
}

impl Handler<StopSocket> for SupervisorActor {
    type Result = ResponseFuture<Option<CloseReport>>;

    fn handle(&mut self, stop: StopSocket, ctx: &mut Context<Self>) -> Self::Result {
        let StopSocket { key, within } = stop;
        let Some(child) = self.children.remove(&key) else {
            return Box::pin(async { None });
        };
        self.link_up(&key, ctx); // no longer part of any outage
        self.publish(SupervisionEvent::ChildStopped { key });
        let close = within.map_or_else(Close::now, Close::now_within);
        Box::pin(async move { child.addr.send(close).await.ok() })
    }
}

impl Handler<GetSocket> for SupervisorActor {
    type Result = Option<Addr<SocketActor>>;

    fn handle(&mut self, GetSocket(key): GetSocket, _ctx: &mut Context<Self>) -> Self::Result {
        self.children.get(&key).map(|c| c.addr.clone())
    }
}

impl Handler<ListSockets> for SupervisorActor {
    type Result = Vec<String>;

    fn handle(&mut self, _: ListSockets, _ctx: &mut Context<Self>) -> Self::Result {
        let mut keys: Vec<String> = self.children.keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl Handler<SendTo> for SupervisorActor {
    type Result = ResponseActFuture<Self, Result<(), SendError>>;

    fn handle(&mut self, send: SendTo, _ctx: &mut Context<Self>) -> Self::Result {
        let SendTo { key, message } = send;
        let Some(child) = self.children.get_mut(&key) else {
            let error = SendError {
                error: Error::UnknownKey(key),
                message,
            };
            return Box::pin(actix::fut::ready(Err(error)));
        };
        if !child.addr.connected() {
            // Between its end and its restart: keep it for the restarted socket.
            child.pending.push(message);
            return Box::pin(actix::fut::ready(Ok(())));
        }
        let generation = child.generation;
        let request = child.addr.send(SendMessage::new(message.clone()));
        Box::pin(
            request
                .into_actor(self)
                .map(move |result, act, _| match result {
                    Ok(outcome) => outcome,
                    // The socket ended while the message was on its way.
                    Err(_) => match act.children.get_mut(&key) {
                        // Already restarted: the new socket takes it (its outbox policy applies).
                        Some(child) if child.generation != generation && child.addr.connected() => {
                            child.addr.do_send(SendMessage::new(message));
                            Ok(())
                        }
                        // Not yet restarted: it goes to the restarted socket with the outbox.
                        Some(child) => {
                            child.pending.push(message);
                            Ok(())
                        }
                        None => Err(SendError {
                            error: Error::UnknownKey(key),
                            message,
                        }),
                    },
                }),
        )
    }
}

impl Handler<GetSupervisorStats> for SupervisorActor {
    type Result = ResponseFuture<SupervisorStats>;

    fn handle(&mut self, _: GetSupervisorStats, _ctx: &mut Context<Self>) -> Self::Result {
        let queries: Vec<_> = self
            .children
            .values()
            .map(|c| c.addr.send(GetStatus))
            .collect();
        let restarts = self.restarts;
        let pending: usize = self.children.values().map(|c| c.pending.len()).sum();
        Box::pin(async move {
            let mut stats = SupervisorStats {
                sockets: queries.len(),
                restarts,
                outbox: pending,
                ..SupervisorStats::default()
            };
            for status in join_all(queries).await {
                let Ok(status) = status else {
                    stats.closed += 1;
                    continue;
                };
                match status.state {
                    SocketState::Connecting { .. } => stats.connecting += 1,
                    SocketState::Identifying { .. } => stats.identifying += 1,
                    SocketState::Open { .. } => stats.open += 1,
                    SocketState::Backoff { .. } => stats.backoff += 1,
                    SocketState::Closed { .. } => stats.closed += 1,
                }
                let c = status.counters;
                stats.connects += c.connects;
                stats.reconnects += c.reconnects;
                stats.messages_in += c.messages_in;
                stats.messages_out += c.messages_out;
                stats.dropped += c.dropped;
                stats.outbox += status.outbox_len;
            }
            stats
        })
    }
}

impl Handler<SubscribeSupervision> for SupervisorActor {
    type Result = ();

    fn handle(&mut self, msg: SubscribeSupervision, _ctx: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}

impl Handler<Shutdown> for SupervisorActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, shutdown: Shutdown, _ctx: &mut Context<Self>) -> Self::Result {
        let closes: Vec<_> = self
            .children
            .drain()
            .map(|(_, c)| c.addr.send(Close::graceful(shutdown.timeout)))
            .collect();
        let wait = actix_rt::time::timeout(shutdown.timeout, join_all(closes));
        Box::pin(wait.into_actor(self).map(|_, _act, ctx| ctx.stop()))
    }
}
