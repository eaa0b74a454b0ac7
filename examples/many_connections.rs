//! Many connections: N supervised sockets (default 1,000) to one server, a live status line,
//! a server restart part-way, and every socket coming back.
//!
//! The server runs in a child process (this example re-run with `--serve`), so client and server
//! each have their own open-file limit; both raise their soft limit to the hard one. The server
//! pushes one small message per socket per second, so the status line shows real traffic.
//!
//! ```sh
//! cargo run --release --example many_connections                       # 1,000 sockets
//! cargo run --release --example many_connections -- --connections 19000
//! cargo run --release --example many_connections -- --url ws://host:port/ws   # your server
//! ```
//!
//! Flags: `--connections N`, `--url URL` (no restart then), `--hold SECS` (time between
//! phases, default 3), `--arbiters N` (default one per core).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpServer};
use resocket::server::{accept, ServerConfig, Session, SessionHandler};
use resocket::{
    Backoff, GetSupervisorStats, Shutdown, SocketConfig, StartSocket, SupervisorActor,
    SupervisorConfig, SupervisorStats,
};

type BoxError = Box<dyn std::error::Error>;

struct Options {
    connections: usize,
    url: Option<String>,
    hold: Duration,
    arbiters: usize,
    serve: Option<u16>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        connections: 1000,
        url: None,
        hold: Duration::from_secs(3),
        arbiters: SupervisorConfig::default().arbiters,
        serve: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--connections" => {
                o.connections = value("--connections")?
                    .parse()
                    .map_err(|_| "--connections takes a whole number")?
            }
            "--url" => o.url = Some(value("--url")?),
            "--hold" => {
                o.hold = Duration::from_secs_f64(
                    value("--hold")?
                        .parse()
                        .map_err(|_| "--hold takes seconds")?,
                )
            }
            "--arbiters" => {
                o.arbiters = value("--arbiters")?
                    .parse()
                    .map_err(|_| "--arbiters takes a whole number")?
            }
            "--serve" => {
                o.serve = Some(
                    value("--serve")?
                        .parse()
                        .map_err(|_| "--serve takes a port")?,
                )
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?} (see the file's header)"
                ))
            }
        }
    }
    Ok(o)
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
fn raise_fd_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(max) = limit.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        );
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

// ---- the server (child process) ----

/// Every live session, so the server can push to all of them.
type Sessions = Arc<Mutex<Vec<Session>>>;

struct Pusher {
    sessions: Sessions,
}

impl SessionHandler for Pusher {
    fn opened(&mut self, session: &Session) {
        if let Ok(mut s) = self.sessions.lock() {
            s.push(session.clone());
        }
    }

    fn text(&mut self, session: &Session, text: &str) {
        session.text(text.to_string());
    }
}

fn serve(port: u16) -> Result<(), BoxError> {
    raise_fd_limit();
    actix::System::new().block_on(async move {
        let sessions: Sessions = Arc::new(Mutex::new(Vec::new()));
        let for_app = sessions.clone();
        let server = HttpServer::new(move || {
            let sessions = for_app.clone();
            App::new().route(
                "/ws",
                web::get().to(move |req: HttpRequest, payload: web::Payload| {
                    let handler = Pusher {
                        sessions: sessions.clone(),
                    };
                    async move { accept(&req, payload, handler, ServerConfig::default()) }
                }),
            )
        })
        .backlog(4096)
        .max_connections(50_000)
        .disable_signals()
        .bind(("127.0.0.1", port))?;
        let addr = server.addrs()[0];
        println!("LISTENING {addr}");
        std::io::stdout().flush()?;
        // One small message per session per second.
        actix_rt::spawn(async move {
            let mut tick = actix_rt::time::interval(Duration::from_secs(1));
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                n += 1;
                let message = format!(r#"{{"tick":{n}}}"#);
                if let Ok(mut all) = sessions.lock() {
                    all.retain(Session::connected);
                    for s in all.iter() {
                        s.text(message.clone());
                    }
                }
            }
        });
        server.run().await?;
        Ok(())
    })
}

/// The server child process and the address it listens on.
struct ServerProcess {
    child: Child,
    addr: String,
}

impl ServerProcess {
    fn spawn(port: u16) -> Result<Self, BoxError> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["--serve", &port.to_string()])
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout from the server")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("server did not start: {line:?}"))?
            .trim()
            .to_string();
        Ok(ServerProcess { child, addr })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- the client ----

fn line(started: Instant, stats: &SupervisorStats, rate: f64) -> String {
    format!(
        "t={:>6.1}s sockets={} open={} connecting={} backoff={} closed={} in={:.0} msg/s reconnects={} rss={} MiB",
        started.elapsed().as_secs_f64(),
        stats.sockets,
        stats.open,
        stats.connecting,
        stats.backoff,
        stats.closed,
        rate,
        stats.reconnects,
        rss_bytes() / (1024 * 1024)
    )
}

/// Prints a status line about once a second until `done` holds or `limit` passes; returns the
/// last stats and whether `done` held.
async fn watch(
    supervisor: &Addr<SupervisorActor>,
    started: Instant,
    limit: Duration,
    done: impl Fn(&SupervisorStats) -> bool,
) -> Result<(SupervisorStats, bool), BoxError> {
    let begin = Instant::now();
    let mut last_in = supervisor.send(GetSupervisorStats).await?.messages_in;
    let mut last_time = Instant::now();
    let mut last_print = Instant::now() - Duration::from_secs(2);
    loop {
        // During a reconnect storm the sockets answer late; say so rather than go quiet.
        let stats = match actix_rt::time::timeout(
            Duration::from_secs(2),
            supervisor.send(GetSupervisorStats),
        )
        .await
        {
            Ok(stats) => stats?,
            Err(_) => {
                println!(
                    "t={:>6.1}s (sockets busy reconnecting: status delayed)",
                    started.elapsed().as_secs_f64()
                );
                continue;
            }
        };
        let now = Instant::now();
        if now.duration_since(last_print) >= Duration::from_secs(1) || done(&stats) {
            let secs = now.duration_since(last_time).as_secs_f64().max(0.1);
            let rate = stats.messages_in.saturating_sub(last_in) as f64 / secs;
            println!("{}", line(started, &stats, rate));
            last_in = stats.messages_in;
            last_time = now;
            last_print = now;
        }
        if done(&stats) {
            return Ok((stats, true));
        }
        if begin.elapsed() > limit {
            return Ok((stats, false));
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(o: Options) -> Result<(), BoxError> {
    let soft = raise_fd_limit();
    if (o.connections as u64) + 64 > soft {
        return Err(format!(
            "{} connections need more open files than this process may have ({soft})",
            o.connections
        )
        .into());
    }
    let mut server = match &o.url {
        Some(_) => None,
        None => Some(ServerProcess::spawn(0)?),
    };
    let url = match (&o.url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(s)) => format!("ws://{}/ws", s.addr),
        (None, None) => return Err("no server".into()),
    };
    println!(
        "many_connections: {} sockets to {url}, {} arbiters",
        o.connections, o.arbiters
    );

    let supervisor = SupervisorActor::new(SupervisorConfig {
        arbiters: o.arbiters,
        ..SupervisorConfig::default()
    })
    .start();
    let config = SocketConfig::builder(&url)
        .backoff(Backoff::exponential(
            Duration::from_millis(200),
            Duration::from_secs(5),
        ))
        .build()?;
    // Let the arbiters start before the baseline is taken.
    supervisor.send(GetSupervisorStats).await?;
    let rss_before = rss_bytes();
    let started = Instant::now();
    for i in 0..o.connections {
        supervisor
            .send(StartSocket::new(format!("socket-{i}"), config.clone()))
            .await??;
    }
    let n = o.connections;
    let limit = Duration::from_secs(120);
    let (_, ok) = watch(&supervisor, started, limit, |s| s.open == n).await?;
    if !ok {
        return Err("not every socket opened in time".into());
    }
    let open_after = started.elapsed();
    let rss_per_connection = rss_bytes().saturating_sub(rss_before) as f64 / n as f64;
    println!(
        "all {n} open after {:.2} s; client RSS {:.1} KiB per connection",
        open_after.as_secs_f64(),
        rss_per_connection / 1024.0
    );

    watch(&supervisor, started, o.hold, |_| false).await?;

    let mut recovery = None;
    if let Some(server) = server.as_mut() {
        let port: u16 = server
            .addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or("bad server address")?;
        println!("restarting the server (killed: every connection drops without a Close frame)");
        let before = supervisor.send(GetSupervisorStats).await?.reconnects;
        server.kill();
        let restarted_at = Instant::now();
        *server = ServerProcess::spawn(port)?;
        let (stats, ok) = watch(&supervisor, started, limit, |s| {
            s.open == n && s.reconnects >= before + n as u64
        })
        .await?;
        if !ok {
            return Err(format!("not every socket came back: {stats:?}").into());
        }
        let took = restarted_at.elapsed();
        println!("all {n} back after {:.2} s", took.as_secs_f64());
        recovery = Some(took);
        watch(&supervisor, started, o.hold, |_| false).await?;
    } else {
        println!("external server: no restart");
    }

    let stats = supervisor.send(GetSupervisorStats).await?;
    println!("totals:");
    println!("  sockets            {}", stats.sockets);
    println!("  open               {}", stats.open);
    println!("  time to all open   {:.2} s", open_after.as_secs_f64());
    println!(
        "  RSS per connection {:.1} KiB",
        rss_per_connection / 1024.0
    );
    if let Some(r) = recovery {
        println!("  recovery           {:.2} s", r.as_secs_f64());
    }
    println!("  connects           {}", stats.connects);
    println!("  reconnects         {}", stats.reconnects);
    println!("  messages in        {}", stats.messages_in);
    println!("  restarts           {}", stats.restarts);
    supervisor
        .send(Shutdown {
            timeout: Duration::from_secs(5),
        })
        .await?;
    drop(server);
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("error")).init();
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("many_connections: {e}");
            std::process::exit(2);
        }
    };
    let result = match options.serve {
        Some(port) => serve(port),
        None => actix::System::new().block_on(run(options)),
    };
    if let Err(e) = result {
        eprintln!("many_connections: {e}");
        std::process::exit(1);
    }
}
