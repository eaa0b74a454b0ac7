//! `SocketActor`: one WebSocket client connection that keeps itself connected.
//!
//! The actor carries out decisions made by pure parts: the transition function
//! (`socket/machine.rs`) decides every change of state, including what a heartbeat tick or a
//! passed deadline means; [`Backoff`](crate::Backoff), the outbox queue, the heartbeat's
//! liveness check and the reassembler decide the rest. Each state owns its timers and futures
//! (`SpawnHandle`s); [`SocketActor::set_phase`] is the one place a state is left, and it
//! cancels them.

mod buffers;
mod closing;
mod connect;
mod connection;
mod deliveries;
mod handlers;
mod machine;
pub(crate) mod owner;
mod requests;
pub(crate) mod tcp;

use std::sync::Arc;
use std::time::Instant;

use crate::frame_guard::FrameError;
use actix::fut::wrap_future;
use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, SpawnHandle,
};
use actix_http::ws::Frame;
use log::{debug, warn};

use self::closing::{Closing, UserClose};
use self::connection::{Driver, OpenConnection};
use self::machine::{At, Event, Next, Overdue, Rules};
pub(crate) use self::owner::{Inheritance, Owner};
use self::owner::{LinkChanged, SocketEnd, SocketEnded};
use crate::acked::{wire, AckedLink};
use crate::backoff::SplitMix64;
use crate::events::SocketId;
use crate::heartbeat::RECHECK_AFTER;
use crate::outbox::Expired;
use crate::reassembly::Received;
use crate::sender::{Pushing, SharedOutbox};
use crate::subscribers::{Outcome, Subscribers};
use crate::telemetry::Telemetry;
use crate::{
    CloseReason, CloseReport, Counters, Disconnect, Error, SocketConfig, SocketState, StateChanged,
    Status,
};

/// One WebSocket client connection that keeps itself connected: heartbeat, reconnect with
/// backoff, identify messages on every connect, a bounded outbox, typed subscribers.
///
/// Talk to it with messages: [`SendMessage`](crate::SendMessage), [`Subscribe`](crate::Subscribe),
/// [`Close`](crate::Close), [`GetStatus`](crate::GetStatus), [`TakeOutbox`](crate::TakeOutbox).
/// The socket runs until it is Closed (by [`Close`](crate::Close), a fatal error or the attempt
/// limit); a Closed socket stops once the last address to it is dropped.
///
/// ```no_run
/// use resocket::{SendMessage, SocketActor, SocketConfig};
///
/// #[actix::main]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let config = SocketConfig::builder("ws://127.0.0.1:9000/ws").build()?;
///     let socket = SocketActor::connect(config);
///     socket.send(SendMessage::text("hello")).await??;
///     Ok(())
/// }
/// ```
pub struct SocketActor {
    config: Arc<SocketConfig>,
    phase: Phase,
    /// Shared with the socket's [`Sender`](crate::Sender)s.
    outbox: Arc<SharedOutbox>,
    subscribers: Subscribers,
    counters: Counters,
    rng: SplitMix64,
    next_connection_id: u64,
    /// Set when a supervisor owns this socket: it stops on Closed and reports its end.
    supervision: Option<Owner>,
    /// Acked mode's state (sequence numbers, messages in flight); it outlives connections.
    acked: Option<AckedLink>,
    /// The slow-subscriber policy's bookkeeping (it outlives connections).
    deliveries: deliveries::Deliveries,
    /// A graceful close asked for while not Open: it waits, within its timeout, for the next
    /// Open, then drains and closes.
    close_waiting: Option<WaitingClose>,
    /// Requests waiting for their reply.
    requests: requests::Requests,
    /// Pings sent (their payload is this counter).
    pings: u64,
    /// The latest Ping round trip measured.
    ping_rtt: Option<std::time::Duration>,
    /// Metric handles (feature `metrics`), registered when the socket starts.
    telemetry: Option<Telemetry>,
    /// Publishes the metrics every heartbeat interval outside Open (Open's heartbeat tick
    /// publishes them: one timer per socket, not two).
    metrics_timer: Option<actix::SpawnHandle>,
}

/// A [`Close::graceful`](crate::Close::graceful) waiting for the socket to open.
pub(crate) struct WaitingClose {
    pub(crate) deadline: Instant,
    pub(crate) timer: SpawnHandle,
    pub(crate) responders: Vec<futures_channel::oneshot::Sender<crate::CloseReport>>,
}

/// The internal state: each variant carries exactly the data and timers valid in it.
enum Phase {
    /// Not started yet (only before `started()`).
    NotStarted,
    /// The actor stopped (only in `stopped()`, after a stop that did not go through Closed).
    Stopped,
    Connecting {
        attempt: u32,
        task: SpawnHandle,
        /// This streak of failures has been logged at `warn` (the rest go to `debug`).
        warned: bool,
    },
    Open(Box<OpenConnection>),
    Backoff {
        attempt: u32,
        until: Instant,
        cause: Disconnect,
        timer: SpawnHandle,
        /// As in Connecting: the streak goes on across the wait.
        warned: bool,
    },
    Closed {
        reason: CloseReason,
    },
}

impl Phase {
    /// Leaves this phase: cancels every timer and task it owns.
    fn leave(self, ctx: &mut Context<SocketActor>) {
        match self {
            Phase::NotStarted | Phase::Stopped | Phase::Closed { .. } => {}
            Phase::Connecting { task, .. } => {
                ctx.cancel_future(task);
            }
            Phase::Backoff { timer, .. } => {
                ctx.cancel_future(timer);
            }
            Phase::Open(conn) => conn.cancel_timers(ctx),
        }
    }
}

impl SocketActor {
    /// A socket for `config`, not yet started.
    pub fn new(config: SocketConfig) -> Self {
        let rng = match config.jitter_seed {
            Some(seed) => SplitMix64::new(seed),
            None => SplitMix64::from_entropy(),
        };
        let acked = config
            .acked
            .as_ref()
            .map(|a| AckedLink::new(a.client_id.clone(), a.window));
        let mut subscribers = Subscribers::default();
        subscribers.policy = config.slow_subscriber;
        if let Some(name) = &config.name {
            subscribers.socket = SocketId::new(name.as_str());
        }
        SocketActor {
            requests: requests::Requests::new(
                config.request_id.clone(),
                config.max_pending_requests,
            ),
            pings: 0,
            ping_rtt: None,
            telemetry: None,
            metrics_timer: None,
            acked,
            deliveries: deliveries::Deliveries::default(),
            close_waiting: None,
            subscribers,
            outbox: Arc::new(SharedOutbox::new(
                config.outbox,
                config.acked.is_some(),
                config.peer_max_message,
            )),
            config: Arc::new(config),
            phase: Phase::NotStarted,
            counters: Counters::default(),
            rng,
            next_connection_id: 0,
            supervision: None,
        }
    }

    /// A socket owned by a supervisor, taking over the outbox and subscribers of the one it
    /// replaces.
    pub(crate) fn supervised(
        config: SocketConfig,
        supervision: Owner,
        inheritance: Inheritance,
    ) -> Self {
        let Inheritance {
            outbox,
            subscribers,
            acked,
            requests,
        } = inheritance;
        let mut socket = SocketActor::new(config);
        if let Some(requests) = requests {
            socket.requests.adopt(requests);
        }
        if let (Some(link), true) = (acked, socket.acked.is_some()) {
            // Keep the sequence numbers and messages in flight: resent, they stay deduplicated.
            // Their bytes count against this socket's outbox limit, as they did before.
            socket.outbox.lock().hold(link.in_flight_bytes());
            socket.acked = Some(link);
        }
        let policy = socket.subscribers.policy;
        socket.subscribers = subscribers;
        socket.subscribers.policy = policy;
        // Every event of a supervised socket names it by its key.
        socket.subscribers.socket = SocketId::new(supervision.key.as_str());
        let mut dropped = 0;
        for queued in outbox {
            // The same checks as any send (acked mode refuses binary; the outbox policy).
            match socket.outbox.push_queued(queued) {
                // (The policy's drops are counted by the queue, reported at the first turn.)
                Pushing::Ok | Pushing::Refused { dropped: true, .. } => {}
                Pushing::Refused { refused, .. } => {
                    if let Error::Encode(_) = refused.error {
                        socket.subscribers.error(&refused.error);
                    }
                    dropped += 1;
                }
            }
        }
        // Say so: the senders were told Ok when these were handed over.
        socket.dropped(dropped);
        socket.supervision = Some(supervision);
        socket
    }

    /// Starts a socket for `config` on the current arbiter; it connects at once. (Named
    /// apart from `Actor::start`, which starts a `SocketActor::new(config)` the same way.)
    /// To have sockets restarted when they end or panic, start them under a
    /// [`SupervisorActor`](crate::SupervisorActor) instead (`actix::Supervisor` does not fit:
    /// a socket's context is its own).
    pub fn connect(config: SocketConfig) -> Addr<SocketActor> {
        Actor::start(SocketActor::new(config))
    }

    /// Starts a socket on another arbiter; it connects there (awc's client is per thread).
    pub fn connect_in_arbiter(arbiter: &ArbiterHandle, config: SocketConfig) -> Addr<SocketActor> {
        SocketActor::start_in_arbiter_with(arbiter, move |_| SocketActor::new(config))
    }

    pub(crate) fn start_in_arbiter_with<F>(arbiter: &ArbiterHandle, f: F) -> Addr<SocketActor>
    where
        F: FnOnce(&mut Context<SocketActor>) -> SocketActor + std::marker::Send + 'static,
    {
        <SocketActor as Actor>::start_in_arbiter(arbiter, f)
    }

    /// The state as subscribers see it.
    fn state(&self) -> SocketState {
        match &self.phase {
            Phase::NotStarted | Phase::Stopped => SocketState::Connecting { attempt: 1 },
            Phase::Connecting { attempt, .. } => SocketState::Connecting { attempt: *attempt },
            Phase::Open(c) if c.identifying.is_some() => {
                SocketState::Identifying { since: c.since }
            }
            Phase::Open(c) => SocketState::Open { since: c.since },
            Phase::Backoff {
                attempt,
                until,
                cause,
                ..
            } => SocketState::Backoff {
                attempt: *attempt,
                until: *until,
                cause: cause.clone(),
            },
            Phase::Closed { reason } => SocketState::Closed {
                reason: reason.clone(),
            },
        }
    }

    /// Arms request `token`'s timeout, `after` from now.
    pub(crate) fn arm_request_timer(
        &mut self,
        token: u64,
        after: std::time::Duration,
        ctx: &mut Context<Self>,
    ) {
        let timer = ctx.run_later(after, move |act, ctx| {
            if let Some(pending) = act.requests.remove(token) {
                act.outbox.lock().remove_request(token);
                let timeout = pending.timeout;
                act.request_failed(pending, Error::RequestTimeout(timeout), ctx);
            }
        });
        self.requests.set_timer(token, timer);
    }

    /// Answers a request's caller with `error`, its timer cancelled.
    pub(crate) fn request_failed(
        &mut self,
        pending: requests::Pending,
        error: Error,
        ctx: &mut Context<Self>,
    ) {
        if let Some(timer) = pending.timer {
            ctx.cancel_future(timer);
        }
        pending.fail(error);
    }

    /// The connection its replies would have come on is gone (default mode): requests
    /// written on it fail with [`Error::RequestLost`], not resent (the peer may have acted).
    fn lose_written_requests(&mut self, ctx: &mut Context<Self>) {
        for pending in self.requests.take_written() {
            self.request_failed(pending, Error::RequestLost, ctx);
        }
    }

    /// The socket closed or stopped: every pending request fails with [`Error::Closed`],
    /// its message taken out of the outbox.
    fn fail_all_requests(&mut self, ctx: &mut Context<Self>) {
        for (token, pending) in self.requests.take_all() {
            self.outbox.lock().remove_request(token);
            self.request_failed(pending, Error::Closed, ctx);
        }
    }

    /// `count` messages were dropped by the outbox policy: counted and reported (no-op for 0).
    pub(crate) fn dropped(&mut self, count: usize) {
        if count > 0 {
            self.counters.dropped += count as u64;
            self.subscribers.error(&Error::Dropped { count });
        }
    }

    /// Reports what the outbox did: the policy's drops (on every path: a `Sender` cannot reach
    /// the subscribers), messages whose time to live passed, replacements by collapse key.
    pub(crate) fn report_outbox_events(&mut self, ctx: &mut Context<Self>) {
        let (dropped, expired, uncarried, collapsed, dropped_requests) = {
            let mut queue = self.outbox.lock();
            let (expired, uncarried) = queue.take_expired();
            let collapsed = queue.take_collapsed();
            let dropped = queue.take_dropped();
            (
                dropped,
                expired,
                uncarried,
                collapsed,
                queue.take_dropped_requests(),
            )
        };
        self.counters.collapsed += collapsed;
        self.counters.expired += (expired.len() + uncarried) as u64;
        for Expired { message, ttl } in expired {
            self.subscribers.error(&Error::Expired { ttl, message });
        }
        if uncarried > 0 {
            let error = Error::ExpiredUnreported { count: uncarried };
            self.subscribers.error(&error);
        }
        self.dropped(dropped);
        // A request whose message the overflow policy dropped can never be answered.
        for token in dropped_requests {
            if let Some(pending) = self.requests.remove(token) {
                self.request_failed(pending, Error::Dropped { count: 1 }, ctx);
            }
        }
    }

    /// Leaves the current state (cancelling everything it owns), enters `next`, and tells the
    /// state subscribers.
    fn set_phase(&mut self, next: Phase, ctx: &mut Context<Self>) {
        self.report_outbox_events(ctx);
        let now_open = matches!(next, Phase::Open(_));
        let was_open = matches!(self.phase, Phase::Open(_));
        // Dropping an Open phase's framed socket closes the TCP connection.
        std::mem::replace(&mut self.phase, next).leave(ctx);
        if matches!(self.phase, Phase::Closed { .. }) && self.supervision.is_none() {
            self.fail_all_requests(ctx);
        } else if was_open && !now_open && self.acked.is_none() {
            self.lose_written_requests(ctx);
        }
        let state = self.state();
        debug!("resocket {}: {state}", self.config.shown_url);
        if let (Some(supervision), true) = (&self.supervision, was_open != now_open) {
            let cause = match &state {
                SocketState::Backoff { cause, .. } => Some(cause.to_string()),
                _ => None,
            };
            supervision.links.do_send(LinkChanged {
                key: supervision.key.clone(),
                generation: supervision.generation,
                open: now_open,
                cause,
            });
        }
        self.publish_metrics(false);
        self.time_metrics(now_open, ctx);
        let socket = self.subscribers.socket.clone();
        self.subscribers.state(&StateChanged { state, socket });
    }

    /// What [`GetStatus`](crate::GetStatus) answers: the state, the gauges and the counters
    /// (those kept elsewhere folded in).
    pub(crate) fn status(&self) -> Status {
        let (outbox_len, outbox_bytes) = {
            let queue = self.outbox.lock();
            (queue.len(), queue.bytes())
        };
        Status {
            state: self.state(),
            outbox_len,
            outbox_bytes,
            unacked: self.acked.as_ref().map_or(0, AckedLink::unacked),
            subscribers: self.subscribers.len(),
            pending_requests: self.requests.len(),
            ping_rtt: self.ping_rtt,
            counters: Counters {
                refused: self.counters.refused + self.outbox.refused(),
                errors_lost: self.subscribers.errors_lost,
                ..self.counters
            },
        }
    }

    /// Publishes the status as metrics (feature `metrics`); `stopped`: no state is current.
    fn publish_metrics(&mut self, stopped: bool) {
        if self.telemetry.is_none() {
            return;
        }
        let status = self.status();
        if let Some(telemetry) = &mut self.telemetry {
            telemetry.publish(&status, stopped);
        }
    }

    /// Outside Open, a timer publishes the metrics every heartbeat interval (the gauges of an
    /// outage matter most); in Open the heartbeat tick does.
    fn time_metrics(&mut self, open: bool, ctx: &mut Context<Self>) {
        if self.telemetry.is_none() {
            return;
        }
        match (open, self.metrics_timer) {
            (true, Some(timer)) => {
                ctx.cancel_future(timer);
                self.metrics_timer = None;
            }
            (false, None) => {
                let every = self.config.heartbeat.interval;
                let timer = ctx.run_interval(every, |act, _| act.publish_metrics(false));
                self.metrics_timer = Some(timer);
            }
            _ => {}
        }
    }

    /// Whether the current streak of connect failures has been logged at `warn`.
    fn warned(&self) -> bool {
        match &self.phase {
            Phase::Connecting { warned, .. } | Phase::Backoff { warned, .. } => *warned,
            _ => false,
        }
    }

    fn enter_connecting(&mut self, attempt: u32, ctx: &mut Context<Self>) {
        let warned = self.warned();
        let config = Arc::clone(&self.config);
        let connecting = wrap_future::<_, Self>(async move { connect::connect(&config).await });
        let task = ctx.spawn(
            connecting.map(move |result, act, ctx| act.connect_finished(attempt, result, ctx)),
        );
        self.set_phase(
            Phase::Connecting {
                attempt,
                task,
                warned,
            },
            ctx,
        );
    }

    fn connect_finished(
        &mut self,
        attempt: u32,
        result: Result<connect::Connected, Error>,
        ctx: &mut Context<Self>,
    ) {
        if !matches!(self.phase, Phase::Connecting { attempt: a, .. } if a == attempt) {
            return;
        }
        match result {
            Ok(connected) => {
                if let Next::Open { attempt } = self.next(Event::Connected) {
                    self.enter_open(attempt, connected, ctx);
                }
            }
            Err(error) => {
                self.counters.connect_failures += 1;
                if self.warned() || self.supervision.is_some() {
                    // (A supervisor summarises its sockets' outages.)
                    debug!(
                        "resocket {}: attempt {attempt} failed: {error}",
                        self.config.shown_url
                    );
                } else {
                    warn!(
                        "resocket {}: connect failed: {error}",
                        self.config.shown_url
                    );
                    if let Phase::Connecting { warned, .. } = &mut self.phase {
                        *warned = true;
                    }
                }
                self.subscribers.error(&error);
                let retryable = connect::is_retryable(&error, &self.config);
                if !retryable {
                    warn!("resocket {}: not retrying: {error}", self.config.shown_url);
                }
                self.decide(Event::ConnectFailed { error, retryable }, ctx);
            }
        }
    }

    fn enter_open(
        &mut self,
        attempt: u32,
        connect::Connected { framed, identify }: connect::Connected,
        ctx: &mut Context<Self>,
    ) {
        self.next_connection_id += 1;
        let id = self.next_connection_id;
        self.counters.connects += 1;
        if self.counters.connects > 1 {
            self.counters.reconnects += 1;
        }
        if self.warned() {
            log::info!(
                "resocket {}: connected after {attempt} attempts",
                self.config.shown_url
            );
        }
        let mut conn = OpenConnection::new(id, attempt, framed, self.config.max_message);
        // The handshake's buffers go back at once: the first read and write take what they
        // need (thousands of sockets opening together reuse each other's, instead of holding
        // 16 KiB each).
        buffers::release(&mut conn.framed);
        match &mut self.acked {
            None => conn.priority.extend(
                self.config
                    .identify_messages()
                    .into_iter()
                    .chain(identify)
                    .map(crate::Outgoing::into_frame),
            ),
            Some(link) => {
                // Hello first; identify and data only after the server's welcome.
                conn.identify_async = identify;
                conn.priority
                    .push_back(awc::ws::Message::Text(link.connected().into()));
                conn.welcome_deadline =
                    Some(ctx.run_later(self.config.connect_timeout, move |act, ctx| {
                        act.welcome_overdue(id, ctx)
                    }));
            }
        }
        conn.heartbeat = ctx.run_interval(self.config.heartbeat.interval, |act, ctx| {
            act.heartbeat_tick(ctx)
        });
        conn.driver = ctx.spawn(Driver { id });
        if let Some(wait) = &self.config.identify_wait {
            let timeout = wait.timeout;
            conn.identifying = Some(ctx.run_later(timeout, move |act, ctx| {
                act.identify_overdue(id, timeout, ctx)
            }));
        }
        if let Some(waiting) = self.close_waiting.take() {
            // A graceful close was waiting for this: drain, then close, in the time left.
            ctx.cancel_future(waiting.timer);
            let left = waiting
                .deadline
                .saturating_duration_since(Instant::now())
                .max(std::time::Duration::from_millis(1));
            let deadline = ctx.run_later(left, move |act, ctx| act.close_deadline(id, ctx));
            let user = UserClose {
                drain: true,
                responders: waiting.responders,
            };
            conn.closing = Some(Closing::by_user(user, deadline));
        }
        self.set_phase(Phase::Open(Box::new(conn)), ctx);
        self.outbox.waker.wake();
    }

    /// A graceful close waited for Open in vain.
    pub(crate) fn close_wait_expired(&mut self, ctx: &mut Context<Self>) {
        let Some(waiting) = self.close_waiting.take() else {
            return;
        };
        let report = crate::CloseReport {
            clean: false,
            unsent: self.unsent(),
        };
        for r in waiting.responders {
            let _ = r.send(report.clone());
        }
        self.decide(Event::CloseNow, ctx);
    }

    /// Where the socket is, for the transition function.
    fn at(&self) -> At {
        match &self.phase {
            Phase::NotStarted | Phase::Stopped => At::Inactive,
            Phase::Connecting { attempt, .. } => At::Connecting { attempt: *attempt },
            Phase::Open(conn) => At::Open {
                attempt: conn.attempt,
            },
            Phase::Backoff { attempt, .. } => At::Backoff { attempt: *attempt },
            Phase::Closed { .. } => At::Closed,
        }
    }

    /// What the transition function makes of `event` here.
    fn next(&mut self, event: Event) -> Next {
        let config = Arc::clone(&self.config);
        let rules = Rules {
            backoff: &config.backoff,
            fatal_close_codes: &config.fatal_close_codes,
            reconnect_spread: config.reconnect_spread,
        };
        machine::transition(self.at(), event, &rules, &mut self.rng)
    }

    /// Decides `event` with the transition function and enters the state it says.
    fn decide(&mut self, event: Event, ctx: &mut Context<Self>) {
        match self.next(event) {
            Next::Stay | Next::Open { .. } => {} // (Open is entered with its connection)
            Next::Ping => self.ping(),
            Next::Recheck => self.recheck_later(ctx),
            Next::End { cause, error } => {
                if let Some(error) = error {
                    debug!("resocket {}: {error}", self.config.shown_url);
                    self.subscribers.error(&error);
                }
                self.connection_ended(cause, ctx);
            }
            Next::Connect { attempt } => self.enter_connecting(attempt, ctx),
            Next::Backoff {
                attempt,
                delay,
                cause,
            } => self.back_off(attempt, delay, cause, ctx),
            Next::Closed(reason) => {
                if let CloseReason::GaveUp { attempts, .. } = &reason {
                    warn!(
                        "resocket {}: giving up after {attempts} attempts",
                        self.config.shown_url
                    );
                }
                self.enter_closed(reason, ctx);
            }
        }
    }

    /// Enters Backoff for `delay`; the timer starts attempt `failures + 1`.
    fn back_off(
        &mut self,
        failures: u32,
        delay: std::time::Duration,
        cause: Disconnect,
        ctx: &mut Context<Self>,
    ) {
        let warned = self.warned();
        let timer = ctx.run_later(delay, move |act, ctx| {
            act.decide(Event::BackoffElapsed, ctx)
        });
        self.set_phase(
            Phase::Backoff {
                attempt: failures,
                until: Instant::now() + delay,
                cause,
                timer,
                warned,
            },
            ctx,
        );
    }

    /// Messages not yet delivered: the outbox, and in acked mode those not yet acknowledged.
    pub(crate) fn unsent(&self) -> usize {
        self.outbox.lock().len() + self.acked.as_ref().map_or(0, AckedLink::unacked)
    }

    fn enter_closed(&mut self, reason: CloseReason, ctx: &mut Context<Self>) {
        self.outbox.close();
        if let Some(waiting) = self.close_waiting.take() {
            ctx.cancel_future(waiting.timer);
            let report = crate::CloseReport {
                clean: false,
                unsent: self.unsent(),
            };
            for r in waiting.responders {
                let _ = r.send(report.clone());
            }
        }
        self.set_phase(Phase::Closed { reason }, ctx);
        if self.supervision.is_some() {
            // The supervisor decides what happens next; it learns of the end in `stopped()`.
            ctx.stop();
        }
    }

    /// The Open connection ended for `cause`.
    fn connection_ended(&mut self, cause: Disconnect, ctx: &mut Context<Self>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let closing = conn.closing.take();
        if let Some(closing) = &closing {
            ctx.cancel_future(closing.deadline);
        }
        let sent = closing.as_ref().is_some_and(Closing::sent);
        if let Some(user) = closing.and_then(Closing::into_user) {
            let clean = sent
                && matches!(
                    cause,
                    Disconnect::PeerClosed { .. } | Disconnect::ConnectionLost(None)
                );
            user.report(&CloseReport {
                clean,
                unsent: self.unsent(),
            });
            let event = Event::ConnectionEnded {
                cause,
                by_user: true,
                stable: false,
            };
            self.decide(event, ctx);
            return;
        }
        if let (
            Some(link),
            Disconnect::PeerClosed {
                code: Some(code), ..
            },
        ) = (self.acked.as_mut(), &cause)
        {
            // The codes a server refuses one message with: after a few times in a row over the
            // same message, it is given up so that the rest flows.
            if matches!(code, 1003 | 1007 | 1009) {
                let refused = link.refused(self.config.max_refusals, &mut self.outbox.lock());
                if let Some((message, attempts)) = refused {
                    let error = Error::MessageRefused {
                        code: *code,
                        attempts,
                        message,
                    };
                    warn!("resocket {}: {error}", self.config.shown_url);
                    self.subscribers.error(&error);
                }
            }
        }
        let Phase::Open(conn) = &self.phase else {
            return;
        };
        // Stable: the peer kept talking for the minimum uptime (a silent or never-welcoming
        // peer does not count), so a connection that never worked keeps backing off.
        let talked_for = conn
            .liveness
            .last_seen()
            .saturating_duration_since(conn.since);
        let welcomed = self.acked.as_ref().is_none_or(AckedLink::is_welcomed);
        let identified = conn.identifying.is_none();
        let stable = welcomed && identified && talked_for >= self.config.min_uptime;
        let event = Event::ConnectionEnded {
            cause,
            by_user: false,
            stable,
        };
        self.decide(event, ctx);
    }

    fn heartbeat_tick(&mut self, ctx: &mut Context<Self>) {
        self.subscribers.prune();
        self.report_outbox_events(ctx);
        self.publish_metrics(false);
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let now = Instant::now();
        let last_read = conn.framed.codec_ref().last_read();
        conn.liveness
            .observe(now, last_read, self.deliveries.paused());
        let heartbeat = self.config.heartbeat;
        let tick = conn
            .liveness
            .tick(now, heartbeat.interval, heartbeat.timeout);
        let closing = conn.closing.is_some();
        self.decide(Event::Heartbeat { tick, closing }, ctx);
    }

    /// A suspected peer, once what was waiting has had its chance to be read.
    fn heartbeat_recheck(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        if conn.id != id {
            return;
        }
        conn.recheck = None;
        let now = Instant::now();
        let last_read = conn.framed.codec_ref().last_read();
        conn.liveness
            .observe(now, last_read, self.deliveries.paused());
        let tick = conn.liveness.recheck(now, self.config.heartbeat.timeout);
        let closing = conn.closing.is_some();
        self.decide(Event::Heartbeat { tick, closing }, ctx);
    }

    /// Open: queues a Ping (unless one still waits) and the keepalive.
    fn ping(&mut self) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let queued = conn
            .priority
            .iter()
            .any(|m| matches!(m, awc::ws::Message::Ping(_)));
        if !queued {
            // A counter as the payload: the Pong that echoes it gives the round trip.
            self.pings += 1;
            let payload = bytes::Bytes::copy_from_slice(&self.pings.to_be_bytes());
            conn.ping_sent = Some((payload.clone(), Instant::now()));
            conn.priority.push_back(awc::ws::Message::Ping(payload));
        }
        if let Some(keepalive) = &self.config.keepalive {
            conn.queue_once(keepalive.clone().into_frame());
        }
        self.outbox.waker.wake();
    }

    /// Open: arms the recheck of a suspected peer (the driver reads meanwhile).
    fn recheck_later(&mut self, ctx: &mut Context<Self>) {
        // One armed at a time; an earlier one still waiting is kept (on a stalled thread the
        // ticks come late, and replacing it each time would never let a recheck run).
        if let Phase::Open(conn) = &mut self.phase {
            if conn.recheck.is_none() {
                let id = conn.id;
                conn.recheck = Some(ctx.run_later(RECHECK_AFTER, move |act, ctx| {
                    act.heartbeat_recheck(id, ctx)
                }));
            }
        }
    }

    /// One frame (or codec error) from the driver.
    fn frame_received(&mut self, item: Result<Frame, FrameError>, ctx: &mut Context<Self>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let inbound = match item {
            Ok(frame) => {
                conn.liveness.saw_frame(Instant::now());
                conn.reassembler.frame(frame)
            }
            Err(FrameError::Oversized(position)) => {
                conn.liveness.saw_frame(Instant::now());
                conn.reassembler
                    .oversized_frame(position)
                    .map_or(Ok(None), Err)
            }
            Err(FrameError::Protocol(e)) => {
                let error = Error::Connection(crate::Cause::from_error(e));
                self.connection_ended(Disconnect::ConnectionLost(Some(error)), ctx);
                return;
            }
        };
        match inbound {
            Ok(None) => {}
            Ok(Some(Received::Pong(payload))) => {
                // Only the Pong of our latest Ping measures a round trip.
                if let Some((_, sent)) = conn.ping_sent.take_if(|(p, _)| *p == payload) {
                    let rtt = sent.elapsed();
                    self.ping_rtt = Some(rtt);
                    if let Some(telemetry) = &self.telemetry {
                        telemetry.ping_rtt(rtt);
                    }
                }
            }
            Ok(Some(Received::Ping(payload))) => conn.pending_pong = Some(payload),
            Ok(Some(Received::Text(text))) if self.acked.is_some() => self.acked_text(text, ctx),
            Ok(Some(Received::Text(text))) => self.deliver_text(text, ctx),
            Ok(Some(Received::Binary(data))) => {
                self.counters.messages_in += 1;
                let outcome = self.subscribers.binary(data);
                self.delivered(outcome, ctx);
            }
            Ok(Some(Received::Close(reason))) => self.peer_closed(reason, ctx),
            Err(error) => self.discarded(error),
        }
    }

    /// Identify-then-wait: the server accepted; everything else may flow now.
    fn identified(&mut self, text: &str, ctx: &mut Context<Self>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let accepted = match (&conn.identifying, &self.config.identify_wait) {
            (Some(_), Some(wait)) => (wait.ready)(text),
            _ => false,
        };
        if !accepted {
            return;
        }
        if let Some(deadline) = conn.identifying.take() {
            ctx.cancel_future(deadline);
        }
        let state = self.state();
        debug!("resocket {}: {state}", self.config.shown_url);
        let socket = self.subscribers.socket.clone();
        self.subscribers.state(&StateChanged { state, socket });
        self.outbox.waker.wake();
    }

    /// Identify-then-wait: the server never accepted the identity.
    fn identify_overdue(&mut self, id: u64, timeout: std::time::Duration, ctx: &mut Context<Self>) {
        let Phase::Open(conn) = &self.phase else {
            return;
        };
        if conn.id != id || conn.identifying.is_none() {
            return;
        }
        self.decide(Event::Overdue(Overdue::Identify(timeout)), ctx);
    }

    /// Hands a whole text message to the subscribers, or to the request it answers.
    fn deliver_text(&mut self, text: bytestring::ByteString, ctx: &mut Context<Self>) {
        self.identified(&text, ctx);
        self.counters.messages_in += 1;
        if let Some((token, mut pending, reply)) = self.requests.reply(&text) {
            if let Some(timer) = pending.timer.take() {
                ctx.cancel_future(timer);
            }
            // Answered before it was written (a peer that guessed the id): not written now.
            self.outbox.lock().remove_request(token);
            pending.answer(reply);
            return;
        }
        let outcome = self.subscribers.text(text);
        self.delivered(outcome, ctx);
    }

    /// Carries out the slow-subscriber policy after a delivery.
    fn delivered(&mut self, outcome: Outcome, ctx: &mut Context<Self>) {
        let Outcome {
            waiting,
            dropped,
            undecodable,
        } = outcome;
        if let Some(error) = undecodable {
            self.discarded(error);
        }
        if dropped > 0 {
            self.counters.lagged += dropped as u64;
            if self.deliveries.dropped() {
                let error = Error::SubscriberLagging { dropped };
                warn!("resocket {}: {error}", self.config.shown_url);
                self.subscribers.error(&error);
            }
        } else if waiting.is_empty() {
            self.deliveries.caught_up();
        }
        if !waiting.is_empty() {
            // Stop reading until the slow subscriber has taken the message.
            self.counters.waited += 1;
            self.deliveries.wait();
            let all = futures_util::future::join_all(waiting);
            ctx.spawn(wrap_future::<_, Self>(all).map(|_, act, _ctx| {
                if act.deliveries.taken() {
                    act.outbox.waker.wake();
                }
            }));
        }
    }

    /// A text frame in acked mode: protocol frames are handled here; data is deduplicated and
    /// delivered without its envelope; anything else is delivered as it is.
    fn acked_text(&mut self, text: bytestring::ByteString, ctx: &mut Context<Self>) {
        let (Some(link), Phase::Open(conn)) = (self.acked.as_mut(), &mut self.phase) else {
            return;
        };
        let deliver = match wire::decode(&text) {
            Some(wire::Frame::Welcome { acked, gap, yours }) => {
                let welcomed = link.welcome(acked, gap, yours, &mut self.outbox.lock());
                match welcomed {
                    Ok(true) => {}
                    Ok(false) => return, // a second welcome on one connection: ignored
                    Err(error) => return self.protocol_violated(error, ctx),
                }
                if let Some(deadline) = conn.welcome_deadline.take() {
                    ctx.cancel_future(deadline);
                }
                let produced = std::mem::take(&mut conn.identify_async);
                conn.priority.extend(
                    self.config
                        .identify_messages()
                        .iter()
                        .chain(&produced)
                        .map(|m| AckedLink::identify_frame(m).into_frame()),
                );
                self.outbox.waker.wake();
                if let Some(wire::ResumeGap { from, to }) = gap {
                    let error = Error::ResumeGap { from, to };
                    warn!("resocket {}: {error}", self.config.shown_url);
                    self.subscribers.error(&error);
                }
                None
            }
            Some(wire::Frame::Ack { seq }) => {
                let acked = link.ack(seq, &mut self.outbox.lock());
                if let Err(error) = acked {
                    return self.protocol_violated(error, ctx);
                }
                None
            }
            Some(wire::Frame::Msg { seq, body }) => {
                let fresh = match seq.map(|seq| link.inbound(seq)) {
                    None | Some(Ok(crate::acked::Arrival::Deliver)) => true,
                    Some(Ok(crate::acked::Arrival::Duplicate)) => false,
                    Some(Err(error)) => return self.protocol_violated(error, ctx),
                };
                if !fresh {
                    self.counters.duplicates += 1;
                }
                fresh.then(|| bytestring::ByteString::from(body.as_str()))
            }
            Some(wire::Frame::Hello { .. }) => None,
            None => Some(text.clone()),
        };
        if let Some(data) = deliver {
            self.deliver_text(data, ctx);
        }
    }

    /// Acked mode: the server broke the protocol. The connection ends and is resumed, so that
    /// the next hello tells the server what really arrived.
    fn protocol_violated(&mut self, error: Error, ctx: &mut Context<Self>) {
        warn!("resocket {}: {error}", self.config.shown_url);
        self.subscribers.error(&error);
        self.connection_ended(Disconnect::ConnectionLost(Some(error)), ctx);
    }

    /// Acked mode: the server did not welcome us in time; it does not speak the protocol.
    fn welcome_overdue(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Phase::Open(conn) = &self.phase else {
            return;
        };
        if conn.id != id {
            return;
        }
        let timeout = self.config.connect_timeout;
        self.decide(Event::Overdue(Overdue::Welcome(timeout)), ctx);
    }

    /// An inbound message was discarded; the connection goes on.
    fn discarded(&mut self, error: Error) {
        self.counters.discarded += 1;
        // Payloads may hold secrets or personal data: the log names the fault, not the text
        // (error subscribers get the whole error).
        match &error {
            Error::Decode { text, .. } => debug!(
                "resocket {}: an inbound message ({} bytes shown to error subscribers) could not be decoded",
                self.config.shown_url,
                text.len()
            ),
            other => debug!("resocket {}: {other}", self.config.shown_url),
        }
        self.subscribers.error(&error);
    }

    /// The peer sent a Close frame: answer it, then wait (bounded) for the peer's FIN.
    fn peer_closed(
        &mut self,
        reason: Option<actix_http::ws::CloseReason>,
        ctx: &mut Context<Self>,
    ) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let cause = Disconnect::PeerClosed {
            code: reason.as_ref().map(|r| u16::from(r.code)),
            description: reason.as_ref().and_then(|r| r.description.clone()),
        };
        match conn.closing.take() {
            Some(closing) if closing.sent() => {
                // Our Close was answered: done.
                conn.closing = Some(closing);
                self.connection_ended(cause, ctx);
            }
            Some(closing) => conn.closing = Some(closing.peer_closed(cause, reason)),
            None => {
                let id = conn.id;
                let deadline = ctx.run_later(self.config.close_timeout, move |act, ctx| {
                    act.close_deadline(id, ctx)
                });
                conn.closing = Some(Closing::by_peer(cause, reason, deadline));
            }
        }
    }

    /// The close deadline passed: finish without waiting any longer.
    fn close_deadline(&mut self, id: u64, ctx: &mut Context<Self>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        if conn.id != id {
            return;
        }
        let peer = conn.closing.as_ref().and_then(|c| c.peer_cause(true));
        self.decide(Event::Overdue(Overdue::Close { peer }), ctx);
    }

    /// The peer closed the TCP connection (FIN).
    fn stream_ended(&mut self, ctx: &mut Context<Self>) {
        let Phase::Open(conn) = &mut self.phase else {
            return;
        };
        let cause = conn
            .closing
            .as_ref()
            .and_then(|c| c.peer_cause(false))
            .unwrap_or(Disconnect::ConnectionLost(None));
        self.connection_ended(cause, ctx);
    }

    fn write_failed(&mut self, error: String, ctx: &mut Context<Self>) {
        let error = Error::Connection(error.into());
        self.connection_ended(Disconnect::ConnectionLost(Some(error)), ctx);
    }
}

impl Actor for SocketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        debug!("resocket {}: starting", self.config.shown_url);
        if cfg!(feature = "metrics") {
            self.telemetry = Some(Telemetry::new(self.subscribers.socket.as_str()));
            // Every heartbeat interval in every state (see `time_metrics`).
            self.time_metrics(false, ctx);
        }
        // Requests inherited from the socket this one replaces keep their deadlines.
        let now = Instant::now();
        for (token, deadline) in self.requests.deadlines() {
            self.arm_request_timer(token, deadline.saturating_duration_since(now), ctx);
        }
        self.enter_connecting(1, ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        // Senders must not queue into an outbox nobody will write.
        self.outbox.close();
        // What the outbox did since the last report (a Sender's drops, a request's message
        // dropped) is told now: the socket that replaces this one could not.
        self.report_outbox_events(ctx);
        if self.supervision.is_none() {
            // Nobody would wait for their replies.
            self.fail_all_requests(ctx);
        } else if self.acked.is_none() {
            // The connection dies with the actor; the rest go to the socket that replaces
            // this one, with the outbox.
            self.lose_written_requests(ctx);
        }
        self.publish_metrics(true);
        debug!("resocket {}: stopped", self.config.shown_url);
        // Runs after a panic in a handler too (the context is dropped while unwinding).
        let end = if std::thread::panicking() {
            SocketEnd::Panicked
        } else {
            match &self.phase {
                Phase::Closed { reason } => SocketEnd::Closed(reason.clone()),
                _ => SocketEnd::Stopped,
            }
        };
        if !matches!(self.phase, Phase::Closed { .. }) {
            // Cancel what the state owns (a panic may have left it mid-transition).
            std::mem::replace(&mut self.phase, Phase::Stopped).leave(ctx);
        }
        if let Some(supervision) = self.supervision.take() {
            supervision.ended.do_send(SocketEnded {
                key: supervision.key,
                generation: supervision.generation,
                end,
                inheritance: Inheritance {
                    outbox: self.outbox.lock().drain_queued(),
                    requests: Some(std::mem::take(&mut self.requests)),
                    subscribers: std::mem::take(&mut self.subscribers),
                    acked: self.acked.take(),
                },
            });
        }
    }
}

impl std::fmt::Debug for SocketActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketActor")
            .field("url", &self.config.shown_url)
            .field("state", &self.state())
            .field("outbox", &self.outbox.lock().len())
            .finish_non_exhaustive()
    }
}
