//! Chat: a chat server and three clients in one process, surviving a server restart.
//!
//! The server is actix-web with resocket's acked-protocol `Hub`; the chat room is an actor that
//! broadcasts every line to every member. The clients are `SocketActor`s in acked mode. Part-way
//! the HTTP server stops (every connection drops) and starts again on the same port; a line
//! said while it is down is delivered once it is back, and every client sees every line exactly
//! once, in order.
//!
//! Each connection is authenticated before it is upgraded: the client sends a bearer token,
//! the server looks it up and tells the hub who the client is (`ClientIdentity::Authenticated`);
//! a hello naming anyone else is refused. A real application checks a signed token or a
//! session cookie the same way.
//!
//! Run: `cargo run --example chat`

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpServer};
use resocket::server::{
    accept_acked, ClientEvent, ClientIdentity, FromClient, Hub, HubConfig, ServerConfig,
    SubscribeHub, ToClient,
};
use resocket::{Backoff, Inbound, SendMessage, SocketActor, SocketConfig, Subscribe};

/// What a client says.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Say {
    say: String,
}

/// What the room broadcasts.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Line {
    from: String,
    say: String,
}

/// The chat room: every line goes to every member.
struct Room {
    hub: Addr<Hub>,
    members: BTreeSet<String>,
}

impl Actor for Room {
    type Context = Context<Self>;
}

impl Handler<ClientEvent> for Room {
    type Result = ();
    fn handle(&mut self, event: ClientEvent, _: &mut Context<Self>) {
        if let ClientEvent::Connected { client, resumed } = event {
            if !resumed {
                println!("[room] {client} joined");
            }
            self.members.insert(client);
        }
    }
}

impl Handler<FromClient> for Room {
    type Result = ();
    fn handle(&mut self, msg: FromClient, _: &mut Context<Self>) {
        let Ok(Say { say }) = msg.json::<Say>() else {
            return;
        };
        let line = Line {
            from: msg.client.clone(),
            say,
        };
        for member in &self.members {
            if let Ok(to) = ToClient::json(member.as_str(), &line) {
                self.hub.do_send(to);
            }
        }
    }
}

/// A client's screen: prints and keeps what it sees.
struct Screen {
    name: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Actor for Screen {
    type Context = Context<Self>;
}

impl Handler<Inbound<Line>> for Screen {
    type Result = ();
    fn handle(&mut self, Inbound(line, _): Inbound<Line>, _: &mut Context<Self>) {
        println!("  [{} sees] {}: {}", self.name, line.from, line.say);
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(format!("{}: {}", line.from, line.say));
        }
    }
}

/// The users and their tokens (a real application asks its session store or checks a JWT).
const USERS: [(&str, &str); 3] = [
    ("alice", "token-a1"),
    ("bob", "token-b2"),
    ("carol", "token-c3"),
];

/// Who the request's bearer token says the client is.
fn authenticate(req: &HttpRequest) -> Option<String> {
    let header = req.headers().get("authorization")?.to_str().ok()?;
    let token = header.strip_prefix("Bearer ")?;
    USERS
        .iter()
        .find(|(_, t)| *t == token)
        .map(|(name, _)| name.to_string())
}

fn serve(
    listener: std::net::TcpListener,
    hub: Addr<Hub>,
) -> std::io::Result<actix_web::dev::ServerHandle> {
    let server = HttpServer::new(move || {
        let hub = hub.clone();
        App::new().route(
            "/chat",
            web::get().to(move |req: HttpRequest, payload: web::Payload| {
                let hub = hub.clone();
                async move {
                    let Some(name) = authenticate(&req) else {
                        return Ok(actix_web::HttpResponse::Unauthorized().finish());
                    };
                    let identity = ClientIdentity::Authenticated(name);
                    accept_acked(&req, payload, hub, identity, ServerConfig::default())
                }
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

async fn say(socket: &Addr<SocketActor>, text: &str) -> Result<(), Box<dyn std::error::Error>> {
    socket
        .send(SendMessage::json(&Say {
            say: text.to_string(),
        })?)
        .await??;
    Ok(())
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    // The application's state lives in the hub and the room: they outlive the HTTP server.
    let hub = Hub::new(HubConfig::default()).start();
    let room = Room {
        hub: hub.clone(),
        members: BTreeSet::new(),
    }
    .start();
    hub.do_send(SubscribeHub {
        messages: room.clone().recipient(),
        events: Some(room.recipient()),
    });

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = serve(listener, hub.clone())?;
    let url = format!("ws://{addr}/chat");
    println!("[server] chat on {url}");

    let names = USERS.map(|(name, _)| name);
    let mut clients = Vec::new();
    for (name, token) in USERS {
        let config = SocketConfig::builder(url.as_str())
            .secret_header("authorization", format!("Bearer {token}"))
            .acked(name)
            .backoff(Backoff::exponential(
                Duration::from_millis(100),
                Duration::from_secs(1),
            ))
            .build()?;
        let socket = SocketActor::connect(config);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let screen = Screen {
            name: name.to_string(),
            seen: seen.clone(),
        }
        .start();
        socket.do_send(Subscribe::to::<Line>(screen.recipient()));
        clients.push((socket, seen));
    }
    let seen_by_all = |n: usize| {
        let clients: Vec<_> = clients.iter().map(|(_, s)| s.clone()).collect();
        move || {
            clients
                .iter()
                .all(|s| s.lock().map(|v| v.len() >= n).unwrap_or(false))
        }
    };
    // Everyone is in the room before the first line.
    let start = Instant::now();
    while hub.send(resocket::server::GetHubStats).await?.connected < 3 {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the clients did not connect".into());
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }

    say(&clients[0].0, "hello, everyone").await?;
    wait("the first line", seen_by_all(1)).await?;
    say(&clients[1].0, "hi alice").await?;
    wait("the second line", seen_by_all(2)).await?;

    println!("[server] restarting: every connection drops");
    server.stop(false).await;
    say(&clients[0].0, "is the server down? (said while it is)").await?;
    let listener = bind_again(addr).await?;
    serve(listener, hub.clone())?;
    println!("[server] back on {url}");
    wait("the line said while down", seen_by_all(3)).await?;
    say(&clients[2].0, "it was, and nothing was lost").await?;
    wait("the last line", seen_by_all(4)).await?;

    let expected = [
        "alice: hello, everyone",
        "bob: hi alice",
        "alice: is the server down? (said while it is)",
        "carol: it was, and nothing was lost",
    ];
    for ((_, seen), name) in clients.iter().zip(names) {
        let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
        if seen != expected {
            return Err(format!("{name} saw {seen:?}").into());
        }
    }
    println!("every client saw every line exactly once, in order");
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
