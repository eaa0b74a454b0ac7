//! Feed: a market-data consumer, the kind of application resocket is for.
//!
//! An embedded feed server (actix-web + resocket's server session) pushes a typed tick every
//! 20 ms to each subscriber; the consumer subscribes with an identify message, decodes ticks
//! with serde, logs its state changes, and survives the feed restarting: the identify message
//! goes out again on the new connection, and ticks flow again. A malformed tick is an error
//! event, not a crash.
//!
//! Run: `cargo run --example feed` (it ends by itself after the restart is survived).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpServer};
use resocket::server::{accept, ServerConfig, Session, SessionHandler};
use resocket::{
    Backoff, Close, ErrorOccurred, Inbound, SocketActor, SocketConfig, StateChanged, Subscribe,
};

/// One price update.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Tick {
    symbol: String,
    price: f64,
    seq: u64,
}

/// The consumer: counts ticks, logs states and errors.
struct Consumer {
    ticks: Arc<AtomicU64>,
}

impl Actor for Consumer {
    type Context = Context<Self>;
}

impl Handler<Inbound<Tick>> for Consumer {
    type Result = ();
    fn handle(&mut self, Inbound(tick, socket): Inbound<Tick>, _: &mut Context<Self>) {
        let n = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if n % 25 == 1 {
            println!(
                "[{socket}] {} {:.2} (#{})",
                tick.symbol, tick.price, tick.seq
            );
        }
    }
}

impl Handler<StateChanged> for Consumer {
    type Result = ();
    fn handle(&mut self, change: StateChanged, _: &mut Context<Self>) {
        println!("[{}] state: {}", change.socket, change.state);
    }
}

impl Handler<ErrorOccurred> for Consumer {
    type Result = ();
    fn handle(&mut self, ErrorOccurred(error, socket): ErrorOccurred, _: &mut Context<Self>) {
        println!("[{socket}] error event: {error}");
    }
}

/// The feed server's session: after the subscribe message, a tick every 20 ms (and one
/// malformed tick, once).
struct FeedSession {
    next: u64,
}

impl SessionHandler for FeedSession {
    fn text(&mut self, session: &Session, text: &str) {
        if !text.contains(r#""op":"subscribe""#) {
            return;
        }
        println!("[feed] subscribe: {text}");
        session.text(r#"{"symbol":"BAD","price":"not a number"}"#);
        let session = session.clone();
        let start = self.next;
        self.next += 1_000_000;
        actix_rt::spawn(async move {
            let mut seq = start;
            while session.connected() {
                let tick = Tick {
                    symbol: "EURUSD".into(),
                    price: 1.08 + (seq % 100) as f64 / 10_000.0,
                    seq,
                };
                if let Ok(text) = serde_json::to_string(&tick) {
                    session.text(text);
                }
                seq += 1;
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

fn serve(listener: std::net::TcpListener) -> std::io::Result<actix_web::dev::ServerHandle> {
    let server = HttpServer::new(|| {
        App::new().route(
            "/feed",
            web::get().to(|req: HttpRequest, payload: web::Payload| async move {
                accept(
                    &req,
                    payload,
                    FeedSession { next: 0 },
                    ServerConfig::default(),
                )
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

async fn wait(what: &str, check: impl Fn() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("timed out waiting for {what}"));
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = serve(listener)?;
    let url = format!("ws://{addr}/feed");
    println!("[feed] on {url}");

    // One feed, back as soon as possible: a short backoff, no reconnect spread.
    let config = SocketConfig::builder(url.as_str())
        .name("eurusd")
        .identify(r#"{"op":"subscribe","channels":["EURUSD"]}"#)
        .heartbeat(Duration::from_secs(1), Duration::from_secs(3))
        .backoff(Backoff::exponential(
            Duration::from_millis(50),
            Duration::from_secs(2),
        ))
        .reconnect_spread(Duration::ZERO)
        .build()?;
    let socket = SocketActor::connect(config);
    let ticks = Arc::new(AtomicU64::new(0));
    let consumer = Consumer {
        ticks: ticks.clone(),
    }
    .start();
    socket.do_send(Subscribe::to::<Tick>(consumer.clone().recipient()));
    socket.do_send(Subscribe::states(consumer.clone().recipient()));
    socket.do_send(Subscribe::errors(consumer.recipient()));

    wait("50 ticks", || ticks.load(Ordering::Relaxed) >= 50).await?;
    println!("[feed] restarting");
    server.stop(false).await;
    let before = ticks.load(Ordering::Relaxed);
    let listener = bind_again(addr).await?;
    serve(listener)?;
    wait("ticks after the restart", || {
        ticks.load(Ordering::Relaxed) >= before + 50
    })
    .await?;
    let report = socket.send(Close::graceful(Duration::from_secs(2))).await?;
    println!(
        "[client] {} ticks, survived the restart; closed cleanly: {}",
        ticks.load(Ordering::Relaxed),
        report.clean
    );
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
