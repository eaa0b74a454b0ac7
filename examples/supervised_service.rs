//! The shape of a long-running service: a few named upstream sockets under a supervisor,
//! typed subscribers, supervision events logged, and a clean shutdown on Ctrl-C.
//!
//! With no arguments it starts its own upstream server (three feeds on 127.0.0.1) so that it runs
//! out of the box; pass `--url NAME=ws://...` (repeatable) to watch real upstreams instead, and
//! `--run-for SECS` to stop by itself.
//!
//! ```sh
//! cargo run --example supervised_service                 # Ctrl-C to stop
//! cargo run --example supervised_service -- --run-for 5
//! ```

use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpServer};
use resocket::server::{accept, ServerConfig, Session, SessionHandler};
use resocket::{
    ErrorOccurred, Inbound, RestartPolicy, Shutdown, SocketConfig, StartSocket, StateChanged,
    Subscribe, SubscribeSupervision, SupervisionEvent, SupervisorActor, SupervisorConfig,
};

/// What the feeds publish.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct Quote {
    feed: String,
    seq: u64,
    price: f64,
}

/// The application's consumer: one per feed, told its name.
struct Consumer {
    feed: String,
    quotes: u64,
}

impl Actor for Consumer {
    type Context = Context<Self>;
}

impl Handler<Inbound<Quote>> for Consumer {
    type Result = ();
    fn handle(&mut self, Inbound(q, _): Inbound<Quote>, _: &mut Context<Self>) {
        self.quotes += 1;
        if self.quotes % 5 == 1 {
            println!("[{}] quote #{} price {:.2}", self.feed, q.seq, q.price);
        }
    }
}

impl Handler<StateChanged> for Consumer {
    type Result = ();
    fn handle(&mut self, change: StateChanged, _: &mut Context<Self>) {
        println!("[{}] {}", self.feed, change.state);
    }
}

impl Handler<ErrorOccurred> for Consumer {
    type Result = ();
    fn handle(&mut self, e: ErrorOccurred, _: &mut Context<Self>) {
        eprintln!("[{}] error: {}", self.feed, e.0);
    }
}

/// Logs what the supervisor does.
struct Operations;

impl Actor for Operations {
    type Context = Context<Self>;
}

impl Handler<SupervisionEvent> for Operations {
    type Result = ();
    fn handle(&mut self, event: SupervisionEvent, _: &mut Context<Self>) {
        println!("[supervisor] {event:?}");
    }
}

/// The demo upstream: after a subscribe message, pushes a quote every 200 ms.
struct Feed;

impl SessionHandler for Feed {
    fn text(&mut self, session: &Session, text: &str) {
        let Ok(sub) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        let Some(feed) = sub["subscribe"].as_str().map(str::to_string) else {
            return;
        };
        let session = session.clone();
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(Duration::from_millis(200));
            for seq in 1.. {
                tick.tick().await;
                if !session.connected() {
                    break;
                }
                let quote = Quote {
                    feed: feed.clone(),
                    seq,
                    price: 100.0 + (seq as f64 * 0.37).sin(),
                };
                if let Ok(text) = serde_json::to_string(&quote) {
                    session.text(text);
                }
            }
        });
    }
}

fn start_demo_upstream() -> std::io::Result<String> {
    let server = HttpServer::new(|| {
        App::new().route(
            "/ws",
            web::get().to(|req: HttpRequest, payload: web::Payload| async move {
                accept(&req, payload, Feed, ServerConfig::default())
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))?;
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    Ok(format!("ws://{addr}/ws"))
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut upstreams: Vec<(String, String)> = Vec::new();
    let mut run_for = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => {
                let spec = args.next().ok_or("--url needs NAME=URL")?;
                let (name, url) = spec.split_once('=').ok_or("--url needs NAME=URL")?;
                upstreams.push((name.to_string(), url.to_string()));
            }
            "--run-for" => {
                let secs: f64 = args.next().ok_or("--run-for needs seconds")?.parse()?;
                run_for = Some(Duration::from_secs_f64(secs));
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if upstreams.is_empty() {
        let url = start_demo_upstream()?;
        println!("demo upstream on {url}");
        for feed in ["btc", "eth", "sol"] {
            upstreams.push((feed.to_string(), url.clone()));
        }
    }

    let supervisor = SupervisorActor::new(SupervisorConfig::default()).start();
    supervisor.do_send(SubscribeSupervision(Operations.start().recipient()));
    for (name, url) in &upstreams {
        let config = SocketConfig::builder(url.as_str())
            .identify(serde_json::json!({ "subscribe": name }))
            .build()?;
        let consumer = Consumer {
            feed: name.clone(),
            quotes: 0,
        }
        .start();
        let start = StartSocket::new(name.as_str(), config)
            .policy(RestartPolicy::Permanent)
            .subscribe(Subscribe::to::<Quote>(consumer.clone().recipient()))
            .subscribe(Subscribe::states(consumer.clone().recipient()))
            .subscribe(Subscribe::errors(consumer.recipient()));
        supervisor.send(start).await??;
    }

    match run_for {
        Some(d) => actix_rt::time::sleep(d).await,
        None => {
            println!("running; Ctrl-C to stop");
            actix_rt::signal::ctrl_c().await?;
        }
    }
    println!("shutting down: closing every socket");
    supervisor
        .send(Shutdown {
            timeout: Duration::from_secs(3),
        })
        .await?;
    println!("bye");
    Ok(())
}
