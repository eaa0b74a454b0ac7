//! A fleet of three processes sharing 300 sockets through Redis (feature `fleet`): every key
//! runs on exactly one node; one node is killed mid-run (SIGKILL) and its keys move to the
//! two left within the lease TTL. A live status line shows the upstream's view: live keys,
//! keys per node, and keys that were ever connected twice at once (it must stay 0).
//!
//! ```sh
//! sudo apt-get install redis-server     # once; the example starts its own on a free port
//! cargo run --example fleet
//! cargo run --example fleet -- --keys 1000 --run-for 20
//! ```
//!
//! The nodes are this example run again with `--node ID` (child processes); the upstream is
//! an actix-web server in this process; Redis runs without persistence in a temporary
//! directory. Exit status 0 when every key ended owned exactly once with no overlap.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpServer};
use resocket::server::{accept, ServerConfig, Session, SessionHandler};
use resocket::{Backoff, Fleet, FleetConfig, SocketConfig};

type BoxError = Box<dyn std::error::Error>;

const LEASE_TTL: Duration = Duration::from_secs(3);
const RENEW_INTERVAL: Duration = Duration::from_millis(500);
const RENEW_DEADLINE: Duration = Duration::from_millis(1800);

fn value(args: &[String], flag: &str) -> Option<String> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let keys: usize = value(&args, "--keys").map_or(Ok(300), |v| v.parse())?;
    if let Some(node) = value(&args, "--node") {
        let redis = value(&args, "--redis").ok_or("--redis URL")?;
        let upstream = value(&args, "--upstream").ok_or("--upstream ADDR")?;
        return run_node(node, redis, upstream, keys);
    }
    let run_for = value(&args, "--run-for").map_or(Ok(12.0), |v| v.parse::<f64>())?;
    actix_rt::System::new().block_on(run_fleet(keys, Duration::from_secs_f64(run_for)))
}

/// One node: a fleet member until its parent closes its stdin (or kills it).
fn run_node(node: String, redis: String, upstream: String, keys: usize) -> Result<(), BoxError> {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        for _ in 0..1_000_000 {
            if matches!(stdin.read(&mut sink), Ok(0) | Err(_)) {
                break;
            }
        }
        std::process::exit(0);
    });
    actix_rt::System::new().block_on(async move {
        let me = node.clone();
        let config = FleetConfig::builder(redis, "example", node)
            .keys((0..keys).map(|i| format!("feed-{i:04}")))
            .lease_ttl(LEASE_TTL)
            .renew_interval(RENEW_INTERVAL)
            .renew_deadline(RENEW_DEADLINE)
            .socket(move |lease| {
                // The fencing token goes upstream, so the upstream can refuse a stale owner.
                SocketConfig::builder(format!(
                    "ws://{upstream}/feeds/{}?node={me}&fence={}",
                    lease.key, lease.token
                ))
                .backoff(Backoff::exponential(
                    Duration::from_millis(50),
                    Duration::from_millis(500),
                ))
                .build()
            })
            .build()?;
        let _fleet = Fleet::start(config).await?;
        loop {
            actix_rt::time::sleep(Duration::from_secs(3600)).await;
        }
    })
}

/// The upstream's view: per key, its live connections (by node) and whether two ever
/// overlapped.
#[derive(Default)]
struct Upstream {
    live: Mutex<BTreeMap<String, Vec<String>>>,
    overlaps: Mutex<usize>,
}

struct Feed {
    key: String,
    node: String,
    upstream: Arc<Upstream>,
}

impl SessionHandler for Feed {
    fn opened(&mut self, _session: &Session) {
        let mut live = self.upstream.live.lock().unwrap_or_else(|e| e.into_inner());
        let nodes = live.entry(self.key.clone()).or_default();
        if !nodes.is_empty() {
            *self
                .upstream
                .overlaps
                .lock()
                .unwrap_or_else(|e| e.into_inner()) += 1;
        }
        nodes.push(self.node.clone());
    }

    fn text(&mut self, _session: &Session, _text: &str) {}

    fn closed(&mut self, _code: Option<u16>) {
        let mut live = self.upstream.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(nodes) = live.get_mut(&self.key) {
            if let Some(i) = nodes.iter().position(|n| *n == self.node) {
                nodes.remove(i);
            }
        }
    }
}

async fn feed(
    req: HttpRequest,
    payload: web::Payload,
    key: web::Path<String>,
    query: web::Query<BTreeMap<String, String>>,
    upstream: web::Data<Upstream>,
) -> actix_web::Result<actix_web::HttpResponse> {
    let handler = Feed {
        key: key.into_inner(),
        node: query.get("node").cloned().unwrap_or_default(),
        upstream: upstream.into_inner(),
    };
    accept(&req, payload, handler, ServerConfig::default())
}

/// A redis-server of our own: free port, temporary directory, no persistence.
struct RedisServer {
    child: Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl RedisServer {
    fn start() -> Result<Self, BoxError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("resocket-fleet-example-{port}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (install it: apt-get install redis-server)"))?;
        let started = Instant::now();
        loop {
            let mut answer = [0u8; 7];
            let ping = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                s.write_all(b"PING\r\n")?;
                s.read_exact(&mut answer)
            });
            if ping.is_ok() && &answer == b"+PONG\r\n" {
                return Ok(RedisServer { child, dir, port });
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err("redis-server did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn status(upstream: &Upstream, keys: usize, at: Duration) -> (usize, bool) {
    let live = upstream.live.lock().unwrap_or_else(|e| e.into_inner());
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for node in live.values().flatten() {
        *per_node.entry(node).or_insert(0) += 1;
    }
    let owned = live.values().filter(|n| !n.is_empty()).count();
    let once = live.values().filter(|n| n.len() == 1).count() == keys && owned == keys;
    let overlaps = *upstream.overlaps.lock().unwrap_or_else(|e| e.into_inner());
    let nodes: Vec<String> = per_node.iter().map(|(n, k)| format!("{n}:{k}")).collect();
    print!(
        "\r{:5.1} s  keys live {owned:4}/{keys}  per node [{}]  overlaps {overlaps}   ",
        at.as_secs_f64(),
        nodes.join(" ")
    );
    let _ = std::io::stdout().flush();
    (overlaps, once)
}

async fn run_fleet(keys: usize, run_for: Duration) -> Result<(), BoxError> {
    let redis = RedisServer::start()?;
    let upstream = Arc::new(Upstream::default());
    let data = Arc::clone(&upstream);
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::from(Arc::clone(&data)))
            .route("/feeds/{key}", web::get().to(feed))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    let exe = std::env::current_exe()?;
    let redis_url = format!("redis://127.0.0.1:{}/", redis.port);
    let mut nodes: Vec<(String, Child)> = Vec::new();
    for id in ["a", "b", "c"] {
        let child = Command::new(&exe)
            .args([
                "--node",
                id,
                "--redis",
                &redis_url,
                "--upstream",
                &addr.to_string(),
            ])
            .args(["--keys", &keys.to_string()])
            .stdin(Stdio::piped())
            .spawn()?;
        nodes.push((id.to_string(), child));
    }
    println!("3 nodes, {keys} keys, lease TTL {LEASE_TTL:?}; node b is killed once all keys run");
    let start = Instant::now();
    let mut killed: Option<Instant> = None;
    let mut recovered: Option<Duration> = None;
    let (mut overlaps, mut once) = (0, false);
    while start.elapsed() < run_for || killed.is_none() || recovered.is_none() {
        if start.elapsed() > run_for + Duration::from_secs(30) {
            break; // (bounded: the summary says what did not happen)
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        (overlaps, once) = status(&upstream, keys, start.elapsed());
        match killed {
            None if once => {
                if let Some((_, child)) = nodes.iter_mut().find(|(id, _)| id == "b") {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                killed = Some(Instant::now());
                println!("\nnode b killed (SIGKILL)");
            }
            Some(at) if recovered.is_none() && once => {
                recovered = Some(at.elapsed());
                println!(
                    "\nevery key owned again {:.2} s after the kill",
                    at.elapsed().as_secs_f64()
                );
            }
            _ => {}
        }
    }
    println!();
    for (_, child) in &mut nodes {
        let _ = child.kill();
        let _ = child.wait();
    }
    handle.stop(false).await;
    drop(redis);
    match (recovered, overlaps, once) {
        (Some(_), 0, true) => {
            println!("ok: every key owned exactly once, 0 overlapping connections");
            Ok(())
        }
        _ => Err(format!(
            "not as promised: recovered {recovered:?}, {overlaps} overlaps, each key once: {once}"
        )
        .into()),
    }
}
