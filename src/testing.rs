//! Test-only fault hooks (feature `fault-injection`). Not part of the supported API.

use actix::{Context, Handler, Message};

use crate::SocketActor;

/// Makes the socket's handler panic, as a bug in a handler would.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Panic;

impl Handler<Panic> for SocketActor {
    type Result = ();

    fn handle(&mut self, _: Panic, _: &mut Context<Self>) {
        panic!("resocket fault injection: a handler panicked");
    }
}

/// An echo server on an ephemeral port of 127.0.0.1, for examples and doctests (feature
/// `server`): it records every text message and sends it back. Start it inside an actix
/// system.
#[cfg(feature = "server")]
#[derive(Debug)]
pub struct EchoServer {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    handle: actix_web::dev::ServerHandle,
}

#[cfg(feature = "server")]
struct Echo(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

#[cfg(feature = "server")]
impl crate::server::SessionHandler for Echo {
    fn text(&mut self, session: &crate::server::Session, text: &str) {
        if let Ok(mut received) = self.0.lock() {
            received.push(text.to_string());
        }
        session.text(text.to_string());
    }
}

#[cfg(feature = "server")]
impl EchoServer {
    /// Starts the server (every path is the echo endpoint).
    pub fn start() -> std::io::Result<Self> {
        use actix_web::{web, App, HttpRequest, HttpServer};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let shared = received.clone();
        let server = HttpServer::new(move || {
            let shared = shared.clone();
            App::new().default_service(web::to(move |req: HttpRequest, payload: web::Payload| {
                let handler = Echo(shared.clone());
                async move {
                    crate::server::accept(
                        &req,
                        payload,
                        handler,
                        crate::server::ServerConfig::default(),
                    )
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)?
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(EchoServer {
            addr,
            received,
            handle,
        })
    }

    /// The WebSocket URL of `path` (e.g. `"/feed"`).
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Every text message received so far, in order.
    pub fn received(&self) -> Vec<String> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Stops the server.
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
