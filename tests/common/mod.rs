//! Test support: a scriptable server (actix-web + the crate's server session on 127.0.0.1:0),
//! an actor that records what a socket reports, and waiting with a deadline.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use resocket::server::{
    accept, Command, FromClient, Hub, ServerConfig, Session, SessionHandler, SubscribeHub, ToClient,
};
use resocket::{
    Error, ErrorOccurred, Inbound, InboundBinary, InboundText, SocketState, StateChanged,
};

/// How long any wait in a test may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` every few milliseconds until it holds, failing the test after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if check() {
            return;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Asks `socket` for its status every few milliseconds until `check` holds, and returns that
/// status; fails the test after [`DEADLINE`] with the last status.
pub async fn wait_status(
    socket: &Addr<resocket::SocketActor>,
    what: &str,
    mut check: impl FnMut(&resocket::Status) -> bool,
) -> resocket::Status {
    let start = Instant::now();
    loop {
        let status = socket.send(resocket::GetStatus).await.unwrap();
        if check(&status) {
            return status;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for: {what}; last status {status:?}");
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `ttl` has certainly passed since `sent` (a bound, not a race: a message sent
/// at `sent` with that time to live has expired, whatever the load).
pub async fn past(sent: Instant, ttl: Duration) {
    let left = (sent + ttl + Duration::from_millis(20)).saturating_duration_since(Instant::now());
    actix_rt::time::sleep(left).await;
}

/// A socket that has been Open and is now backing off: its server stopped (restart it with
/// `server.restart()`). What it is sent now waits in its outbox.
pub async fn disconnected(
    config: impl FnOnce(&str) -> resocket::SocketConfigBuilder,
) -> (TestServer, Addr<resocket::SocketActor>, Watch) {
    let mut server = TestServer::start().await;
    let socket = resocket::SocketActor::connect(config(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    (server, socket, watch)
}

/// What the server saw, shared with its sessions.
#[derive(Default)]
pub struct Shared {
    received: Mutex<Vec<String>>,
    binary: Mutex<Vec<Vec<u8>>>,
    sessions: Mutex<Vec<Session>>,
    close_codes: Mutex<Vec<Option<u16>>>,
    opened: AtomicUsize,
    live: AtomicUsize,
    pongs: AtomicUsize,
    max_live: AtomicUsize,
    pub echo: AtomicBool,
    /// The Authorization header of every upgrade to `/auth`.
    pub auth_seen: Mutex<Vec<String>>,
}

/// What the test server does with a JSON-RPC style request `{"id":…,"method":…,"params":…}`.
pub enum Rpc {
    /// Answers with these messages.
    Reply(Vec<String>),
    /// Drops the connection without a reply.
    Abort,
}

/// The test server's RPC methods: `echo` replies `{"id":…,"result":params}`; `twice` replies
/// twice; `never` does not reply; `abort` drops the connection. Anything else: not a request.
pub fn rpc(text: &str) -> Option<Rpc> {
    if !text.contains("\"method\"") {
        return None;
    }
    let request: serde_json::Value = serde_json::from_str(text).ok()?;
    let reply = serde_json::json!({"id": request["id"], "result": request["params"]}).to_string();
    match request["method"].as_str()? {
        "echo" => Some(Rpc::Reply(vec![reply])),
        "twice" => Some(Rpc::Reply(vec![reply.clone(), reply])),
        "never" => Some(Rpc::Reply(Vec::new())),
        "abort" => Some(Rpc::Abort),
        _ => None,
    }
}

struct Recording {
    shared: Arc<Shared>,
}

impl SessionHandler for Recording {
    fn opened(&mut self, session: &Session) {
        let s = &self.shared;
        s.opened.fetch_add(1, Ordering::SeqCst);
        let live = s.live.fetch_add(1, Ordering::SeqCst) + 1;
        s.max_live.fetch_max(live, Ordering::SeqCst);
        s.sessions.lock().unwrap().push(session.clone());
    }

    fn text(&mut self, session: &Session, text: &str) {
        self.shared.received.lock().unwrap().push(text.to_string());
        if self.shared.echo.load(Ordering::SeqCst) {
            session.text(text.to_string());
        }
        match rpc(text) {
            Some(Rpc::Reply(replies)) => replies.into_iter().for_each(|r| session.text(r)),
            Some(Rpc::Abort) => session.command(Command::Abort),
            None => {}
        }
    }

    fn pong(&mut self, _session: &Session) {
        self.shared.pongs.fetch_add(1, Ordering::SeqCst);
    }

    fn binary(&mut self, _session: &Session, data: bytes::Bytes) {
        self.shared.binary.lock().unwrap().push(data.to_vec());
    }

    fn closed(&mut self, code: Option<u16>) {
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
        self.shared.close_codes.lock().unwrap().push(code);
    }
}

/// A real WebSocket server on an ephemeral port of 127.0.0.1, scriptable from the test.
///
/// Routes: `/ws` (the recording, echoing session), `/status/{code}` (refuses the handshake with
/// that HTTP status).
pub struct TestServer {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    config: ServerConfig,
    handle: Option<ServerHandle>,
    /// The acked-protocol hub behind `/acked`; it outlives restarts, as an application's would.
    pub hub: Addr<Hub>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    pub async fn start_with(config: ServerConfig) -> Self {
        Self::start_full(config, Hub::default().start()).await
    }

    /// A server whose `/acked` route serves `hub`.
    pub async fn start_full(config: ServerConfig, hub: Addr<Hub>) -> Self {
        let shared = Arc::new(Shared::default());
        shared.echo.store(true, Ordering::SeqCst);
        let mut server = TestServer {
            addr: "127.0.0.1:0".parse().unwrap(),
            shared,
            config,
            handle: None,
            hub,
        };
        server.listen().await;
        server
    }

    async fn listen(&mut self) {
        // Rebinding the same port right after a stop can race the old listener's close.
        let mut listener = None;
        for _ in 0..200 {
            match std::net::TcpListener::bind(self.addr) {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => actix_rt::time::sleep(Duration::from_millis(10)).await,
            }
        }
        let listener = listener.unwrap_or_else(|| panic!("could not bind {}", self.addr));
        self.addr = listener.local_addr().unwrap();
        let shared = Arc::clone(&self.shared);
        let config = self.config.clone();
        let hub = self.hub.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::from(Arc::clone(&shared)))
                .app_data(web::Data::new(config.clone()))
                .app_data(web::Data::new(hub.clone()))
                .route("/ws", web::get().to(ws_route))
                .route("/auth", web::get().to(auth_route))
                .route("/acked", web::get().to(acked_route))
                .route("/acked/as/{id}", web::get().to(authenticated_acked_route))
                .route("/status/{code}", web::get().to(status_route))
                .route("/wrong-protocol", web::get().to(wrong_protocol_route))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        self.handle = Some(server.handle());
        actix_rt::spawn(server);
    }

    /// The WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// `/ws` behind an Authorization check.
    pub fn auth_url(&self) -> String {
        format!("ws://{}/auth", self.addr)
    }

    /// The acked-protocol URL.
    pub fn acked_url(&self) -> String {
        format!("ws://{}/acked", self.addr)
    }

    /// The acked-protocol URL for a connection authenticated as `id`.
    pub fn acked_url_as(&self, id: &str) -> String {
        format!("ws://{}/acked/as/{id}", self.addr)
    }

    /// A URL whose 101 answer names a subprotocol that was not offered.
    pub fn wrong_protocol_url(&self) -> String {
        format!("ws://{}/wrong-protocol", self.addr)
    }

    /// A URL whose handshake is refused with `status`.
    pub fn status_url(&self, status: u16) -> String {
        format!("ws://{}/status/{status}", self.addr)
    }

    /// Every text message received, in order, over all connections.
    pub fn received(&self) -> Vec<String> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn received_binary(&self) -> Vec<Vec<u8>> {
        self.shared.binary.lock().unwrap().clone()
    }

    pub fn close_codes(&self) -> Vec<Option<u16>> {
        self.shared.close_codes.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn opened(&self) -> usize {
        self.shared.opened.load(Ordering::SeqCst)
    }

    /// Pongs received from clients.
    pub fn pongs(&self) -> usize {
        self.shared.pongs.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// The most connections ever open at once.
    pub fn max_live(&self) -> usize {
        self.shared.max_live.load(Ordering::SeqCst)
    }

    /// Sends `command` to every live session.
    pub fn command_all(&self, command: Command) {
        let mut sessions = self.shared.sessions.lock().unwrap();
        sessions.retain(Session::connected);
        for s in sessions.iter() {
            s.command(command.clone());
        }
    }

    /// Every session opened so far (ended ones included).
    pub fn sessions(&self) -> Vec<Session> {
        self.shared.sessions.lock().unwrap().clone()
    }

    /// Stops listening and drops every connection.
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.stop(false).await;
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.listen().await;
    }
}

async fn ws_route(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    config: web::Data<ServerConfig>,
) -> actix_web::Result<HttpResponse> {
    let handler = Recording {
        shared: shared.into_inner(),
    };
    accept(&req, payload, handler, config.get_ref().clone())
}

/// `/ws`, for requests that carry an Authorization header (401 otherwise); records it.
async fn auth_route(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    config: web::Data<ServerConfig>,
) -> actix_web::Result<HttpResponse> {
    let Some(auth) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(HttpResponse::Unauthorized().finish());
    };
    shared.auth_seen.lock().unwrap().push(auth.to_string());
    ws_route(req, payload, shared, config).await
}

async fn acked_route(
    req: HttpRequest,
    payload: web::Payload,
    hub: web::Data<Addr<Hub>>,
    config: web::Data<ServerConfig>,
) -> actix_web::Result<HttpResponse> {
    resocket::server::accept_acked(
        &req,
        payload,
        hub.get_ref().clone(),
        resocket::server::ClientIdentity::TrustHello,
        config.get_ref().clone(),
    )
}

/// The acked protocol for a client the application authenticated as `{id}` (the test stands
/// in for a real check of a token).
async fn authenticated_acked_route(
    req: HttpRequest,
    payload: web::Payload,
    id: web::Path<String>,
    hub: web::Data<Addr<Hub>>,
    config: web::Data<ServerConfig>,
) -> actix_web::Result<HttpResponse> {
    resocket::server::accept_acked(
        &req,
        payload,
        hub.get_ref().clone(),
        resocket::server::ClientIdentity::Authenticated(id.into_inner()),
        config.get_ref().clone(),
    )
}

/// A valid 101 answer that picks a subprotocol the client never offered.
async fn wrong_protocol_route(req: HttpRequest) -> HttpResponse {
    let accept = req
        .headers()
        .get("sec-websocket-key")
        .map(|k| actix_http::ws::hash_key(k.as_bytes()))
        .unwrap_or([b'A'; 28]);
    HttpResponse::SwitchingProtocols()
        .upgrade("websocket")
        .insert_header(("sec-websocket-accept", &accept[..]))
        .insert_header(("sec-websocket-protocol", "not-offered"))
        .finish()
}

async fn status_route(path: web::Path<u16>) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(path.into_inner())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).body("refused by the test server")
}

/// Everything a socket reported to a [`Probe`], in order.
#[derive(Default)]
pub struct Log {
    pub states: Vec<SocketState>,
    /// The socket each state change named.
    pub state_sockets: Vec<String>,
    pub texts: Vec<String>,
    pub binary: Vec<Vec<u8>>,
    pub ticks: Vec<Tick>,
    pub errors: Vec<Error>,
}

/// A typed payload used by the tests.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Tick {
    pub symbol: String,
    pub price: f64,
}

/// An actor that records everything a socket sends it.
pub struct Probe {
    pub log: Arc<Mutex<Log>>,
}

impl Actor for Probe {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // A subscriber's mailbox is its buffer (actix's default is 16): a test probe must
        // never be the slow subscriber.
        ctx.set_mailbox_capacity(1_000_000);
    }
}

/// Stops a probe (as a crashed or finished subscriber would).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopProbe;

impl Handler<StopProbe> for Probe {
    type Result = ();
    fn handle(&mut self, _: StopProbe, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<StateChanged> for Probe {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Context<Self>) {
        let mut log = self.log.lock().unwrap();
        log.states.push(msg.state);
        log.state_sockets.push(msg.socket.to_string());
    }
}

impl Handler<InboundText> for Probe {
    type Result = ();
    fn handle(&mut self, msg: InboundText, _: &mut Context<Self>) {
        self.log.lock().unwrap().texts.push(msg.0.to_string());
    }
}

impl Handler<InboundBinary> for Probe {
    type Result = ();
    fn handle(&mut self, msg: InboundBinary, _: &mut Context<Self>) {
        self.log.lock().unwrap().binary.push(msg.0.to_vec());
    }
}

impl Handler<Inbound<Tick>> for Probe {
    type Result = ();
    fn handle(&mut self, msg: Inbound<Tick>, _: &mut Context<Self>) {
        self.log.lock().unwrap().ticks.push(msg.0);
    }
}

impl Handler<ErrorOccurred> for Probe {
    type Result = ();
    fn handle(&mut self, msg: ErrorOccurred, _: &mut Context<Self>) {
        self.log.lock().unwrap().errors.push(msg.0);
    }
}

/// A probe subscribed to everything `socket` reports.
pub struct Watch {
    pub log: Arc<Mutex<Log>>,
    pub addr: Addr<Probe>,
}

impl Watch {
    pub fn attach(socket: &Addr<resocket::SocketActor>) -> Self {
        use resocket::Subscribe;
        let log = Arc::new(Mutex::new(Log::default()));
        let addr = Probe {
            log: Arc::clone(&log),
        }
        .start();
        socket.do_send(Subscribe::states(addr.clone().recipient()));
        socket.do_send(Subscribe::text(addr.clone().recipient()));
        socket.do_send(Subscribe::binary(addr.clone().recipient()));
        socket.do_send(Subscribe::to::<Tick>(addr.clone().recipient()));
        socket.do_send(Subscribe::errors(addr.clone().recipient()));
        Watch { log, addr }
    }

    /// A probe not yet attached: its subscriptions go into a supervisor's `StartSocket`.
    pub fn detached() -> Self {
        let log = Arc::new(Mutex::new(Log::default()));
        let addr = Probe {
            log: Arc::clone(&log),
        }
        .start();
        Watch { log, addr }
    }

    /// Adds every subscription of this probe to `start`.
    pub fn subscribe_all(&self, start: resocket::StartSocket) -> resocket::StartSocket {
        use resocket::Subscribe;
        let a = &self.addr;
        start
            .subscribe(Subscribe::states(a.clone().recipient()))
            .subscribe(Subscribe::text(a.clone().recipient()))
            .subscribe(Subscribe::binary(a.clone().recipient()))
            .subscribe(Subscribe::to::<Tick>(a.clone().recipient()))
            .subscribe(Subscribe::errors(a.clone().recipient()))
    }

    pub fn states(&self) -> Vec<SocketState> {
        self.log.lock().unwrap().states.clone()
    }

    pub fn last_state(&self) -> Option<SocketState> {
        self.log.lock().unwrap().states.last().cloned()
    }

    pub fn texts(&self) -> Vec<String> {
        self.log.lock().unwrap().texts.clone()
    }

    pub fn ticks(&self) -> Vec<Tick> {
        self.log.lock().unwrap().ticks.clone()
    }

    pub fn errors(&self) -> Vec<Error> {
        self.log.lock().unwrap().errors.clone()
    }

    /// The attempt numbers of every Connecting state, in order.
    pub fn connecting_attempts(&self) -> Vec<u32> {
        self.states()
            .iter()
            .filter_map(|s| match s {
                SocketState::Connecting { attempt } => Some(*attempt),
                _ => None,
            })
            .collect()
    }

    /// The failure counts of every Backoff state, in order.
    pub fn backoff_attempts(&self) -> Vec<u32> {
        self.states()
            .iter()
            .filter_map(|s| match s {
                SocketState::Backoff { attempt, .. } => Some(*attempt),
                _ => None,
            })
            .collect()
    }

    /// How many times the socket has entered Open.
    pub fn opens(&self) -> usize {
        self.states().iter().filter(|s| s.is_open()).count()
    }

    /// Waits until the socket has entered Open `n` times in all.
    pub async fn wait_opens(&self, n: usize) {
        wait_for(&format!("{n} opens"), DEADLINE, || self.opens() >= n).await;
    }

    /// Waits until the last state matches `pred`.
    pub async fn wait_state(&self, what: &str, pred: impl Fn(&SocketState) -> bool) -> SocketState {
        wait_for(what, DEADLINE, || {
            self.last_state().is_some_and(|s| pred(&s))
        })
        .await;
        self.last_state().unwrap()
    }

    /// Waits until an error matching `pred` was reported.
    pub async fn wait_error(&self, what: &str, pred: impl Fn(&Error) -> bool) {
        wait_for(what, DEADLINE, || self.errors().iter().any(&pred)).await;
    }
}

/// A short backoff that gives up after `attempts` consecutive failures.
pub fn giving_up_after(attempts: u32) -> resocket::Backoff {
    resocket::Backoff::exponential(Duration::from_millis(5), Duration::from_millis(20))
        .max_attempts(attempts)
}

/// Waits until an acked socket has been welcomed and has nothing in flight: a probe makes the
/// round trip (before a test stalls the path, so that the stall is not the welcome's).
pub async fn welcomed(socket: &Addr<resocket::SocketActor>) {
    socket
        .send(resocket::SendMessage::text("0"))
        .await
        .unwrap()
        .unwrap();
    wait_status(socket, "welcomed, nothing in flight", |s| {
        s.unacked == 0 && s.outbox_len == 0
    })
    .await;
}

/// Settings for fast tests: short heartbeat and backoff.
pub fn fast(url: &str) -> resocket::SocketConfigBuilder {
    use resocket::{Backoff, SocketConfig};
    SocketConfig::builder(url)
        .heartbeat(Duration::from_millis(50), Duration::from_secs(2))
        .backoff(Backoff::exponential(
            Duration::from_millis(10),
            Duration::from_millis(50),
        ))
        .connect_timeout(Duration::from_secs(2))
        .close_timeout(Duration::from_millis(500))
        .min_uptime(Duration::from_millis(300))
        .reconnect_spread(Duration::from_millis(20))
}
pub mod fleet;
pub mod proxy;
pub mod raw;
pub mod raw_server;
pub mod redis;
pub mod supervision;

/// The application behind a hub: records every client message.
pub struct AppLog {
    pub messages: Arc<Mutex<Vec<FromClient>>>,
    /// Answers RPC requests through this hub, if set.
    pub rpc: Option<Addr<Hub>>,
}

impl Actor for AppLog {
    type Context = Context<Self>;
}

impl Handler<FromClient> for AppLog {
    type Result = ();
    fn handle(&mut self, msg: FromClient, _: &mut Context<Self>) {
        if let (Some(hub), Some(Rpc::Reply(replies))) = (&self.rpc, rpc(&msg.text)) {
            for text in replies {
                hub.do_send(ToClient {
                    client: msg.client.clone(),
                    text,
                });
            }
        }
        self.messages.lock().unwrap().push(msg);
    }
}

/// Subscribes a recording application to `hub` that also answers RPC requests ([`rpc`]).
pub fn rpc_app(hub: &Addr<Hub>) -> Arc<Mutex<Vec<FromClient>>> {
    subscribe_app(hub, Some(hub.clone()))
}

/// Subscribes a recording application to `hub`.
pub fn record_app(hub: &Addr<Hub>) -> Arc<Mutex<Vec<FromClient>>> {
    subscribe_app(hub, None)
}

fn subscribe_app(hub: &Addr<Hub>, rpc: Option<Addr<Hub>>) -> Arc<Mutex<Vec<FromClient>>> {
    let messages = Arc::new(Mutex::new(Vec::new()));
    let app = AppLog {
        messages: messages.clone(),
        rpc,
    }
    .start();
    hub.do_send(SubscribeHub {
        messages: app.recipient(),
        events: None,
    });
    messages
}
