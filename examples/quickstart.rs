//! Quickstart: a socket that survives its server going away.
//!
//! Starts its own echo server (actix-web + resocket's server session) on 127.0.0.1, connects a
//! socket with an identify message, sends a message, then stops the server: the socket goes
//! to Backoff while the messages sent meanwhile wait in its outbox. The server comes back on
//! the same port; the socket reconnects, sends the identify message first and then the queued
//! messages in order, and finally closes cleanly.
//!
//! Run: `cargo run --example quickstart` (add `RUST_LOG=resocket=debug` for the library's log).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpServer};
use resocket::server::{accept, ServerConfig, Session, SessionHandler};
use resocket::{
    Backoff, Close, GetStatus, Inbound, SendMessage, SocketActor, SocketConfig, SocketState,
    StateChanged, Subscribe,
};

/// What the demo sends and receives.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Note {
    n: u32,
    text: String,
}

/// Prints what the socket reports.
struct Printer;

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Printer {
    type Result = ();
    fn handle(&mut self, msg: StateChanged, _: &mut Context<Self>) {
        println!("[client] state: {}", msg.state);
    }
}

impl Handler<Inbound<Note>> for Printer {
    type Result = ();
    fn handle(&mut self, Inbound(note, _): Inbound<Note>, _: &mut Context<Self>) {
        println!("[client] echo received: #{} {:?}", note.n, note.text);
    }
}

/// The server side: echoes every message and records it.
struct Echo {
    log: Arc<Mutex<Vec<String>>>,
}

impl SessionHandler for Echo {
    fn text(&mut self, session: &Session, text: &str) {
        println!("[server] received: {text}");
        self.log.lock().map(|mut l| l.push(text.to_string())).ok();
        session.text(text.to_string());
    }
}

fn start_server(
    listener: std::net::TcpListener,
    log: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let server = HttpServer::new(move || {
        let log = log.clone();
        App::new().route(
            "/ws",
            web::get().to(move |req: HttpRequest, payload: web::Payload| {
                let handler = Echo { log: log.clone() };
                async move { accept(&req, payload, handler, ServerConfig::default()) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

/// Waits (at most `limit`) until the socket's state satisfies `pred`.
async fn wait_until(
    socket: &Addr<SocketActor>,
    limit: Duration,
    pred: impl Fn(&SocketState) -> bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if pred(&socket.send(GetStatus).await?.state) {
            return Ok(());
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    Err("timed out waiting for the socket".into())
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    let log = Arc::new(Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = start_server(listener, log.clone())?;
    let url = format!("ws://{addr}/ws");
    println!("[server] listening on {url}");

    let config = SocketConfig::builder(&url)
        .identify(r#"{"op":"identify","client":"quickstart"}"#)
        .heartbeat(Duration::from_secs(1), Duration::from_secs(3))
        .backoff(Backoff::exponential(
            Duration::from_millis(200),
            Duration::from_secs(2),
        ))
        .build()?;
    let socket = SocketActor::connect(config);
    let printer = Printer.start();
    socket.do_send(Subscribe::states(printer.clone().recipient()));
    socket.do_send(Subscribe::to::<Note>(printer.recipient()));

    wait_until(&socket, Duration::from_secs(5), SocketState::is_open).await?;
    let hello = Note {
        n: 1,
        text: "hello".into(),
    };
    socket.send(SendMessage::json(&hello)?).await??;
    actix_rt::time::sleep(Duration::from_millis(200)).await;

    println!("[server] stopping: every connection dropped, no Close frame");
    server.stop(false).await;
    wait_until(&socket, Duration::from_secs(5), |s| s.name() == "backoff").await?;

    for n in 2..=4 {
        let note = Note {
            n,
            text: format!("sent while disconnected #{n}"),
        };
        socket.send(SendMessage::json(&note)?).await??;
    }
    let queued = socket.send(GetStatus).await?.outbox_len;
    println!("[client] {queued} messages wait in the outbox");

    let listener = bind_again(addr).await?;
    start_server(listener, log.clone())?;
    println!("[server] back on {url}");
    wait_until(&socket, Duration::from_secs(10), SocketState::is_open).await?;

    // Wait for the identify message and the three queued messages to reach the server.
    let start = Instant::now();
    while log.lock().map(|l| l.len()).unwrap_or(0) < 6 && start.elapsed() < Duration::from_secs(5) {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = log.lock().map(|l| l.clone()).unwrap_or_default();
    println!("[server] everything it received, in order:");
    for (i, m) in seen.iter().enumerate() {
        println!("         {}. {m}", i + 1);
    }

    let report = socket.send(Close::graceful(Duration::from_secs(2))).await?;
    println!(
        "[client] closed: clean={} unsent={}",
        report.clean, report.unsent
    );
    wait_until(&socket, Duration::from_secs(2), SocketState::is_closed).await?;
    let status = socket.send(GetStatus).await?;
    println!(
        "[client] connects={} reconnects={} out={} in={}",
        status.counters.connects,
        status.counters.reconnects,
        status.counters.messages_out,
        status.counters.messages_in
    );
    if seen.len() != 6 || !report.clean {
        return Err("the demo did not go as expected".into());
    }
    Ok(())
}

/// Binds the same port again (the old listener may take a moment to release it).
async fn bind_again(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let mut last = None;
    for _ in 0..100 {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("bind failed")))
}
