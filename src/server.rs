//! The server side (feature `server`): a WebSocket session for actix-web apps that speaks to
//! [`SocketActor`](crate::SocketActor) clients: it answers pings, pings its clients, drops those
//! that go silent, and hands whole messages to a [`SessionHandler`].
//!
//! Every use of `actix-web-actors` in this crate is in this file, so that it can be replaced by
//! `actix-ws` in one place.
//!
//! ```no_run
//! use actix_web::{web, App, HttpRequest, HttpServer};
//! use resocket::server::{accept, ServerConfig, Session, SessionHandler};
//!
//! struct Echo;
//! impl SessionHandler for Echo {
//!     fn text(&mut self, session: &Session, text: &str) {
//!         session.text(text);
//!     }
//! }
//!
//! async fn ws(req: HttpRequest, payload: web::Payload) -> actix_web::Result<actix_web::HttpResponse> {
//!     accept(&req, payload, Echo, ServerConfig::default())
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     HttpServer::new(|| App::new().route("/ws", web::get().to(ws)))
//!         .bind(("127.0.0.1", 9000))?
//!         .run()
//!         .await
//! }
//! ```

mod hub;
mod payload_guard;
mod rate_limit;

use self::rate_limit::RateLimit;
use crate::heartbeat::{Liveness, Tick, RECHECK_AFTER};
use crate::reassembly::{Reassembler, Received};

use std::time::{Duration, Instant};

use actix::{Actor, ActorContext, AsyncContext, Handler, Message, Recipient, StreamHandler};
use actix_http::ws::Frame;
#[cfg(feature = "fault-injection")]
use actix_http::ws::Item;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use bytes::Bytes;
use bytestring::ByteString;

#[cfg(feature = "fault-injection")]
#[doc(hidden)]
pub use self::hub::PanicNext;
pub use self::hub::{
    ClientEvent, ClientIdentity, FromClient, GetHubStats, Hub, HubConfig, HubStats, SubscribeHub,
    ToClient, MAX_CLIENT_ID,
};

/// Server session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Time between pings to the client. Defaults to 5 s.
    pub heartbeat_interval: Duration,
    /// Silence after which the client is dropped. Defaults to 10 s.
    pub heartbeat_timeout: Duration,
    /// The largest inbound frame or reassembled message. A larger one ends the session with
    /// 1009 as soon as its header arrives. Defaults to 16 MiB.
    pub max_message: usize,
    /// The `Origin`s a browser may connect from (e.g. `"https://app.example.com"`, compared
    /// exactly). A request with another `Origin` is refused with 403 before the upgrade.
    /// Set it whenever browsers authenticate with cookies: without it any web page the user
    /// visits can open a socket in the user's name (cross-site WebSocket hijacking). Requests
    /// without an `Origin` header (non-browser clients) are not affected. Defaults to `None`
    /// (every origin).
    pub allowed_origins: Option<Vec<String>>,
    /// Inbound messages (data frames) per second a session may send, with bursts of as many;
    /// past it the session is closed with 1013 (try again later). Defaults to `None` (no limit).
    pub max_messages_per_second: Option<u32>,
    /// Bytes sent to one client and not yet written (a client that stays connected but does
    /// not read). One message is always taken when nothing is waiting, however large. Past
    /// it, messages are dropped (counted by [`Session::dropped`]) and the
    /// session is closed with 1008 as soon as it can run; in acked mode the hub's history
    /// still holds what was dropped. Defaults to 16 MiB.
    pub max_write_backlog: usize,
}

impl ServerConfig {
    /// The default [`max_write_backlog`](ServerConfig::max_write_backlog): 16 MiB.
    pub const DEFAULT_MAX_WRITE_BACKLOG: usize = 16 * 1024 * 1024;
}

impl Default for ServerConfig {
    /// The client's defaults where both sides have the setting (heartbeat, message size).
    fn default() -> Self {
        ServerConfig {
            heartbeat_interval: crate::Heartbeat::DEFAULT_INTERVAL,
            heartbeat_timeout: crate::Heartbeat::DEFAULT_TIMEOUT,
            max_message: crate::SocketConfig::DEFAULT_MAX_MESSAGE,
            allowed_origins: None,
            max_messages_per_second: None,
            max_write_backlog: Self::DEFAULT_MAX_WRITE_BACKLOG,
        }
    }
}

/// Whether `req` may be upgraded under `config`'s origin allow-list.
fn origin_allowed(req: &HttpRequest, config: &ServerConfig) -> bool {
    let Some(allowed) = &config.allowed_origins else {
        return true;
    };
    match req.headers().get(actix_web::http::header::ORIGIN) {
        None => true,
        Some(origin) => origin
            .to_str()
            .is_ok_and(|o| allowed.iter().any(|a| a == o)),
    }
}

/// The application's side of one server session. Every method runs on the session's actor.
pub trait SessionHandler: Unpin + 'static {
    /// The client connected; `session` can be kept (it is `Clone + Send`) to push messages.
    fn opened(&mut self, session: &Session) {
        let _ = session;
    }

    /// A whole text message arrived.
    fn text(&mut self, session: &Session, text: &str);

    /// A whole binary message arrived.
    fn binary(&mut self, session: &Session, data: Bytes) {
        let _ = (session, data);
    }

    /// A Pong arrived (the client's answer to a ping).
    fn pong(&mut self, session: &Session) {
        let _ = session;
    }

    /// The session ended (called once); `code` is the client's close code, if it sent one.
    fn closed(&mut self, code: Option<u16>) {
        let _ = code;
    }
}

/// Something to do to one session, sent through its [`Session`] handle.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum Command {
    /// Send a text message.
    Text(ByteString),
    /// Send a binary message.
    Binary(Bytes),
    /// Send a Close frame with this code (and description), then end the session.
    Close(u16, Option<String>),
    /// End the session at once, without a Close frame. Note: actix-web keeps the TCP
    /// connection of an upgraded request open until the client closes it, so the client sees
    /// a silent peer (its heartbeat ends the connection), not a FIN.
    Abort,
    /// Send one message as several fragments (`text` says which kind); the parts are sent as
    /// given, without any UTF-8 check (for fault tests; feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    Fragments {
        /// Whether the message is text.
        text: bool,
        /// The fragments' payloads.
        parts: Vec<Bytes>,
    },
    /// Stop (or resume) answering and sending anything, pings included, as a half-open peer
    /// would look (for fault tests; feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    Silence(bool),
    /// Send this many pings at once (a ping flood, for fault tests; feature
    /// `fault-injection`).
    #[cfg(feature = "fault-injection")]
    Pings(u32),
}

impl Command {
    /// The bytes a data command puts on the wire; None for control commands.
    fn data_len(&self) -> Option<usize> {
        match self {
            Command::Text(t) => Some(t.len()),
            Command::Binary(b) => Some(b.len()),
            #[cfg(feature = "fault-injection")]
            Command::Fragments { parts, .. } => Some(parts.iter().map(Bytes::len).sum()),
            _ => None,
        }
    }
}

/// A handle to one session: `Clone + Send`, usable from any thread.
#[derive(Debug, Clone)]
pub struct Session {
    id: u64,
    commands: Recipient<Command>,
    backlog: std::sync::Arc<Backlog>,
}

/// What is waiting to be written to one client: messages sent through its [`Session`] and
/// not yet taken by the session's actor (which runs only while the connection can take
/// bytes: a client that stops reading stalls it).
#[derive(Debug, Default)]
struct Backlog {
    bytes: std::sync::atomic::AtomicUsize,
    limit: usize,
    /// Messages dropped because the backlog was full.
    dropped: std::sync::atomic::AtomicU64,
}

impl Session {
    #[cfg(test)]
    pub(crate) fn for_test(id: u64, commands: Recipient<Command>) -> Self {
        let backlog = std::sync::Arc::new(Backlog {
            limit: usize::MAX,
            ..Backlog::default()
        });
        Session {
            id,
            commands,
            backlog,
        }
    }

    /// Queues a data command unless the backlog is full: then the message is dropped (the
    /// session is closed with 1008 as soon as it runs again).
    fn queue(&self, command: Command, len: usize) {
        use std::sync::atomic::Ordering;
        let backlog = &self.backlog;
        let before = backlog.bytes.fetch_add(len, Ordering::AcqRel);
        // One message is always taken when nothing is waiting, however large: a message
        // larger than the limit is written, not dropped for ever.
        if before > 0 && before.saturating_add(len) > backlog.limit {
            backlog.bytes.fetch_sub(len, Ordering::AcqRel);
            if backlog.dropped.fetch_add(1, Ordering::AcqRel) == 0 {
                log::warn!(
                    "resocket server session {}: the client is not reading; its write backlog of {} bytes is full",
                    self.id,
                    backlog.limit
                );
            }
            return;
        }
        self.commands.do_send(command);
    }

    /// Bytes sent through this session and not yet handed to the connection.
    pub fn backlog(&self) -> usize {
        self.backlog
            .bytes
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The most bytes [`backlog`](Self::backlog) may reach
    /// ([`ServerConfig::max_write_backlog`]).
    pub fn backlog_limit(&self) -> usize {
        self.backlog.limit
    }

    /// Messages dropped because the client was not reading and the backlog was full
    /// ([`ServerConfig::max_write_backlog`]).
    pub fn dropped(&self) -> u64 {
        self.backlog
            .dropped
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// This session's number (unique in the process).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends a text message. Dropped, and counted in [`dropped`](Self::dropped), when the
    /// client has stopped reading and the backlog is full.
    pub fn text(&self, text: impl Into<ByteString>) {
        self.command(Command::Text(text.into()));
    }

    /// Sends a binary message (dropped, as [`text`](Self::text), when the backlog is full).
    pub fn binary(&self, data: impl Into<Bytes>) {
        self.command(Command::Binary(data.into()));
    }

    /// Sends any [`Command`]; data commands count against the write backlog.
    pub fn command(&self, command: Command) {
        match command.data_len() {
            Some(len) => self.queue(command, len),
            None => self.commands.do_send(command),
        }
    }

    /// Whether the session is still running.
    pub fn connected(&self) -> bool {
        self.commands.connected()
    }
}

/// Upgrades `req` to a WebSocket session run by `handler`.
pub fn accept<H: SessionHandler>(
    req: &HttpRequest,
    payload: web::Payload,
    handler: H,
    config: ServerConfig,
) -> actix_web::Result<HttpResponse> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    if !origin_allowed(req, &config) {
        log::warn!("resocket server: upgrade refused: origin not allowed");
        return Ok(HttpResponse::Forbidden().body("origin not allowed"));
    }
    let max_message = config.max_message;
    let rate = config.max_messages_per_second.map(RateLimit::new);
    let refused = std::sync::Arc::new(AtomicU64::new(0));
    let payload = payload_guard::PayloadGuard::new(payload, config.max_message, refused.clone());
    let backlog = std::sync::Arc::new(Backlog {
        limit: config.max_write_backlog,
        ..Backlog::default()
    });
    let actor = SessionActor {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        backlog,
        refused,
        frames: 0,
        handler,
        config,
        liveness: Liveness::new(Instant::now()),
        silent: false,
        client_closed: false,
        ended: false,
        reassembler: Reassembler::new(max_message),
        session: None,
        close_code: None,
        rate,
    };
    ws::WsResponseBuilder::new(actor, req, payload)
        .frame_size(max_message)
        .start()
}

/// Upgrades `req` to a session that speaks the acked protocol (see the README) for `hub`:
/// client messages reach the application once, in order; server messages are resumed after a
/// reconnect. `identity` is who the application authenticated the request as (or, explicitly,
/// [`ClientIdentity::TrustHello`]); a hello naming anyone else is refused.
pub fn accept_acked(
    req: &HttpRequest,
    payload: web::Payload,
    hub: actix::Addr<Hub>,
    identity: ClientIdentity,
    config: ServerConfig,
) -> actix_web::Result<HttpResponse> {
    let handler = hub::HubSession {
        hub,
        identity,
        client: None,
        session: None,
    };
    accept(req, payload, handler, config)
}

struct SessionActor<H: SessionHandler> {
    id: u64,
    /// Shared with every [`Session`] handle.
    backlog: std::sync::Arc<Backlog>,
    /// The first inbound frame whose header announced more than allowed, set by the payload
    /// guard as soon as that header arrived (see `payload_guard::refused_frame`).
    refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Inbound frames handled.
    frames: u64,
    handler: H,
    config: ServerConfig,
    /// When the client last spoke (the client's dead-peer check, with its stall tolerance).
    liveness: Liveness,
    silent: bool,
    /// Joins fragments under `max_message` and checks text (the client's reassembler).
    reassembler: Reassembler,
    session: Option<Session>,
    /// The client's close code, reported once the session stops.
    close_code: Option<u16>,
    /// The inbound message rate limit, if configured.
    rate: Option<RateLimit>,
    /// The client sent its Close: what follows is not handled.
    client_closed: bool,
    /// The handler has been told the session ended.
    ended: bool,
}

impl<H: SessionHandler> SessionActor<H> {
    /// Tells the handler the session ended, once.
    fn end_for_handler(&mut self) {
        if !std::mem::replace(&mut self.ended, true) {
            self.handler.closed(self.close_code);
        }
    }

    fn session(&self) -> Option<Session> {
        self.session.clone()
    }

    /// Ends the session with a Close frame saying `code` and why.
    fn refuse(&mut self, code: u16, description: String, ctx: &mut ws::WebsocketContext<Self>) {
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(code),
            description: Some(description),
        }));
        ctx.stop();
    }

    /// A suspected client, once what was waiting has had its chance to be read.
    fn recheck(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let timeout = self.config.heartbeat_timeout;
        if let Tick::Dead(silent) = self.liveness.recheck(Instant::now(), timeout) {
            log::debug!("resocket server session {}: silent for {silent:?}", self.id);
            ctx.stop();
        }
    }
}

impl<H: SessionHandler> Actor for SessionActor<H> {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let session = Session {
            id: self.id,
            commands: ctx.address().recipient(),
            backlog: self.backlog.clone(),
        };
        self.session = Some(session.clone());
        ctx.run_interval(self.config.heartbeat_interval, |act, ctx| {
            let backlog_full = act
                .backlog
                .dropped
                .load(std::sync::atomic::Ordering::Acquire)
                > 0;
            if backlog_full {
                return ctx.stop();
            }
            let (interval, timeout) = (act.config.heartbeat_interval, act.config.heartbeat_timeout);
            match act.liveness.tick(Instant::now(), interval, timeout) {
                Tick::Suspect => {
                    ctx.run_later(RECHECK_AFTER, |act, ctx| act.recheck(ctx));
                }
                Tick::Dead(_) => ctx.stop(),
                Tick::Ping | Tick::Alive if !act.silent => ctx.ping(b""),
                Tick::Ping | Tick::Alive => {}
            }
        });
        self.handler.opened(&session);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.end_for_handler();
    }
}

impl<H: SessionHandler> StreamHandler<Result<ws::Message, ws::ProtocolError>> for SessionActor<H> {
    fn handle(
        &mut self,
        msg: Result<ws::Message, ws::ProtocolError>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if msg.is_ok() {
            self.frames += 1;
        }
        if self.silent || self.client_closed {
            // (Nothing after a client's Close is data: RFC 6455 5.5.1.)
            return;
        }
        self.liveness.saw_frame(Instant::now());
        let msg = match msg {
            Ok(msg) => {
                if let Some((frame, code)) = payload_guard::refused_frame(&self.refused) {
                    if frame == self.frames {
                        let description = if code == 1009 {
                            format!("message larger than {} bytes", self.config.max_message)
                        } else {
                            "control frame longer than 125 bytes".to_string()
                        };
                        ctx.close(Some(ws::CloseReason {
                            code: ws::CloseCode::from(code),
                            description: Some(description),
                        }));
                        ctx.stop();
                        return;
                    }
                }
                msg
            }
            Err(e) => {
                log::debug!("resocket server session {}: {e}", self.id);
                ctx.stop();
                return;
            }
        };
        let is_data = matches!(
            msg,
            ws::Message::Text(_) | ws::Message::Binary(_) | ws::Message::Continuation(_)
        );
        if is_data {
            if let Some(rate) = self.rate.as_mut() {
                if !rate.take(Instant::now()) {
                    let limit = rate.per_second;
                    log::warn!(
                        "resocket server session {}: over {limit} messages a second",
                        self.id
                    );
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::Again,
                        description: Some(format!("more than {limit} messages a second")),
                    }));
                    ctx.stop();
                    return;
                }
            }
        }
        let frame = match msg {
            ws::Message::Text(text) => Frame::Text(text.into_bytes()),
            ws::Message::Binary(data) => Frame::Binary(data),
            ws::Message::Continuation(item) => Frame::Continuation(item),
            ws::Message::Ping(payload) => Frame::Ping(payload),
            ws::Message::Pong(payload) => Frame::Pong(payload),
            ws::Message::Close(reason) => Frame::Close(reason),
            ws::Message::Nop => return,
        };
        let received = match self.reassembler.frame(frame) {
            Ok(Some(received)) => received,
            Ok(None) => return, // a fragment
            Err(crate::Error::MessageTooLarge { limit }) => {
                return self.refuse(1009, format!("message larger than {limit} bytes"), ctx)
            }
            Err(crate::Error::InvalidUtf8) => {
                return self.refuse(1007, "text message is not UTF-8".into(), ctx)
            }
            Err(other) => return self.refuse(1002, other.to_string(), ctx),
        };
        let Some(session) = self.session() else {
            return;
        };
        match received {
            Received::Ping(p) => ctx.pong(&p),
            Received::Pong(_) => self.handler.pong(&session),
            Received::Text(text) => self.handler.text(&session, &text),
            Received::Binary(data) => self.handler.binary(&session, data),
            Received::Close(reason) => {
                self.client_closed = true;
                self.close_code = reason.as_ref().map(|r| u16::from(r.code));
                // The session is over for the handler now (a client that closes and stops
                // reading would otherwise hold it open behind a full write buffer)...
                self.end_for_handler();
                // ...but the answering Close goes behind what the handler already sent (the
                // messages waiting in this actor's mailbox): closing at once dropped them, so a
                // client that closed right after its last request lost the replies.
                let (code, description) = match reason {
                    Some(r) => (u16::from(r.code), r.description),
                    None => (1000, None),
                };
                ctx.address().do_send(Command::Close(code, description));
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl<H: SessionHandler> Handler<Command> for SessionActor<H> {
    type Result = ();

    fn handle(&mut self, command: Command, ctx: &mut Self::Context) {
        use std::sync::atomic::Ordering;
        if let Some(len) = command.data_len() {
            self.backlog.bytes.fetch_sub(len, Ordering::AcqRel);
        }
        if self.backlog.dropped.load(Ordering::Acquire) > 0 {
            // The client stopped reading long enough to fill the backlog: what was dropped
            // cannot be sent in order any more.
            ctx.close(Some(ws::CloseReason {
                code: ws::CloseCode::Policy,
                description: Some(format!(
                    "write backlog of {} bytes full: the client is not reading",
                    self.backlog.limit
                )),
            }));
            ctx.stop();
            return;
        }
        match command {
            Command::Text(t) if !self.silent => ctx.text(t),
            Command::Binary(b) if !self.silent => ctx.binary(b),
            Command::Close(code, description) => {
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::from(code),
                    description,
                }));
                ctx.stop();
            }
            Command::Abort => ctx.stop(),
            #[cfg(feature = "fault-injection")]
            Command::Fragments { text, parts } => {
                let n = parts.len();
                for (i, part) in parts.into_iter().enumerate() {
                    let item = match (i, i + 1 == n) {
                        (0, _) if text => Item::FirstText(part),
                        (0, _) => Item::FirstBinary(part),
                        (_, true) => Item::Last(part),
                        _ => Item::Continue(part),
                    };
                    ctx.write_raw(ws::Message::Continuation(item));
                }
            }
            #[cfg(feature = "fault-injection")]
            Command::Silence(silent) => self.silent = silent,
            #[cfg(feature = "fault-injection")]
            Command::Pings(n) => {
                for i in 0..n {
                    ctx.ping(&i.to_be_bytes());
                }
            }
            Command::Text(_) | Command::Binary(_) => {}
        }
    }
}
