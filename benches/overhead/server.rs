//! The server process (`--serve PORT`): `resocket::server` sessions on one actix-web worker.
//! The path picks what a session does:
//!
//! | path | session |
//! |---|---|
//! | `/sink` | counts text messages; on `END` answers `{"count":N}` and starts again |
//! | `/push` | on `push N` sends N copies of the 64-byte message |
//! | `/echo` | sends every text message back |
//! | `/idle` | nothing (answers pings, as every session does) |
//! | `/acked` | an acked session of one `Hub`, whose application counts each client's messages and on `END` answers that client's count |
//!
//! Sessions do not ping their clients (the interval is an hour), so the client's CPU counts
//! only its own heartbeat.

use std::io::Write;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpServer};
use bytestring::ByteString;
use resocket::server::{
    accept, accept_acked, ClientIdentity, FromClient, Hub, HubConfig, ServerConfig, Session,
    SessionHandler, SubscribeHub, ToClient,
};

use crate::common::{exit_with_parent, raise_fd_limit, BoxError, TickOut};

#[derive(Clone, Copy)]
enum Mode {
    Sink,
    Push,
    Echo,
    Idle,
}

struct Bench {
    mode: Mode,
    count: u64,
    message: ByteString,
}

impl SessionHandler for Bench {
    fn text(&mut self, session: &Session, text: &str) {
        match self.mode {
            Mode::Sink if text == "END" => {
                session.text(format!(r#"{{"count":{}}}"#, self.count));
                self.count = 0;
            }
            Mode::Sink => self.count += 1,
            Mode::Push => {
                let n: u64 = text
                    .strip_prefix("push ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
                    .min(100_000_000);
                for _ in 0..n {
                    session.text(self.message.clone());
                }
            }
            Mode::Echo => session.text(text.to_owned()),
            Mode::Idle => {}
        }
    }
}

/// Runs the server until the parent closes our stdin.
/// The application behind `/acked`: counts what each client sends and, on "END", answers
/// that client's count (the acked twin of the sink; many clients count apart).
struct AckedSink {
    hub: Addr<Hub>,
    counts: std::collections::HashMap<String, u64>,
}

impl Actor for AckedSink {
    type Context = Context<Self>;
}

impl Handler<FromClient> for AckedSink {
    type Result = ();
    fn handle(&mut self, msg: FromClient, _: &mut Context<Self>) {
        if msg.text == "END" {
            let count = self.counts.remove(&msg.client).unwrap_or(0);
            self.hub.do_send(ToClient {
                client: msg.client,
                text: format!(r#"{{"count":{count}}}"#),
            });
        } else if msg.seq.is_some() {
            *self.counts.entry(msg.client).or_default() += 1;
        }
    }
}

pub fn serve(port: u16) -> Result<(), BoxError> {
    raise_fd_limit();
    exit_with_parent();
    let message = ByteString::from(serde_json::to_string(&TickOut::new(1))?);
    actix::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            // Started by the worker (the only one), on its thread: the sessions' messages
            // reach the hub without crossing threads.
            let hub = Hub::new(HubConfig::default()).start();
            let app = AckedSink {
                hub: hub.clone(),
                counts: Default::default(),
            }
            .start();
            hub.do_send(SubscribeHub {
                messages: app.recipient(),
                events: None,
            });
            let message = message.clone();
            App::new()
                .route(
                    "/acked",
                    web::get().to(move |req: HttpRequest, payload: web::Payload| {
                        let hub = hub.clone();
                        async move {
                            let config = ServerConfig {
                                heartbeat_interval: Duration::from_secs(3600),
                                heartbeat_timeout: Duration::from_secs(7200),
                                ..ServerConfig::default()
                            };
                            accept_acked(&req, payload, hub, ClientIdentity::TrustHello, config)
                        }
                    }),
                )
                .route(
                    "/{mode}",
                    web::get().to(
                        move |req: HttpRequest, payload: web::Payload, path: web::Path<String>| {
                            let mode = match path.as_str() {
                                "sink" => Some(Mode::Sink),
                                "push" => Some(Mode::Push),
                                "echo" => Some(Mode::Echo),
                                "idle" => Some(Mode::Idle),
                                _ => None,
                            };
                            let message = message.clone();
                            async move {
                                let Some(mode) = mode else {
                                    return Ok(actix_web::HttpResponse::NotFound().finish());
                                };
                                let handler = Bench {
                                    mode,
                                    count: 0,
                                    message,
                                };
                                let config = ServerConfig {
                                    heartbeat_interval: Duration::from_secs(3600),
                                    heartbeat_timeout: Duration::from_secs(7200),
                                    // `push N` queues all N messages at once (32 MB for the
                                    // quick run's 500,000): past the 16 MiB default the
                                    // session would drop them and close with 1008.
                                    max_write_backlog: 1 << 30,
                                    ..ServerConfig::default()
                                };
                                accept(&req, payload, handler, config)
                            }
                        },
                    ),
                )
        })
        .workers(1)
        .backlog(4096)
        .max_connections(50_000)
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", port))?;
        let addr = server.addrs()[0];
        println!("LISTENING {addr}");
        std::io::stdout().flush()?;
        server.run().await?;
        Ok(())
    })
}
