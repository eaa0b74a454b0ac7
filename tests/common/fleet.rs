//! Fleet test support: a server that records, per key, every connection's open and close
//! (and which node opened it), and fleet nodes as real child processes (this test binary run
//! again as `fleet_node_process`, configured through the environment).

use std::collections::BTreeMap;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use resocket::server::{
    accept, accept_acked, ClientIdentity, FromClient, Hub, ServerConfig, Session, SessionHandler,
};

/// One connection as the server saw it.
#[derive(Debug, Clone)]
pub struct Conn {
    pub key: String,
    pub node: String,
    pub opened: Instant,
    pub closed: Option<Instant>,
}

/// Every connection of the run.
#[derive(Default)]
pub struct Ledger {
    conns: Mutex<Vec<Conn>>,
    /// Every text message received, with its key and arrival, in arrival order.
    messages: Mutex<Vec<(String, String, Instant)>>,
}

impl Ledger {
    pub fn messages(&self) -> Vec<(String, String)> {
        let messages = self.messages.lock().unwrap();
        messages
            .iter()
            .map(|(k, m, _)| (k.clone(), m.clone()))
            .collect()
    }

    /// When each message arrived.
    pub fn arrivals(&self) -> Vec<(String, Instant)> {
        let messages = self.messages.lock().unwrap();
        messages.iter().map(|(_, m, at)| (m.clone(), *at)).collect()
    }

    pub fn conns(&self) -> Vec<Conn> {
        self.conns.lock().unwrap().clone()
    }

    /// Keys with a live connection, and by how many.
    pub fn live(&self) -> BTreeMap<String, usize> {
        let mut live = BTreeMap::new();
        for c in self.conns().iter().filter(|c| c.closed.is_none()) {
            *live.entry(c.key.clone()).or_insert(0) += 1;
        }
        live
    }

    /// Whether each of `keys` has exactly one live connection (and nothing else is live).
    pub fn each_once(&self, keys: usize) -> bool {
        let live = self.live();
        live.len() == keys && live.values().all(|n| *n == 1)
    }

    /// Live keys per node.
    pub fn per_node(&self) -> BTreeMap<String, usize> {
        let mut nodes = BTreeMap::new();
        for c in self.conns().iter().filter(|c| c.closed.is_none()) {
            *nodes.entry(c.node.clone()).or_insert(0) += 1;
        }
        nodes
    }

    /// Every pair of connections of one key that were open at the same time.
    pub fn overlaps(&self) -> Vec<(Conn, Conn)> {
        let mut by_key: BTreeMap<String, Vec<Conn>> = BTreeMap::new();
        for c in self.conns() {
            by_key.entry(c.key.clone()).or_default().push(c);
        }
        let mut overlaps = Vec::new();
        for conns in by_key.values_mut() {
            conns.sort_by_key(|c| c.opened);
            for pair in conns.windows(2) {
                if pair[0].closed.is_none_or(|closed| closed > pair[1].opened) {
                    overlaps.push((pair[0].clone(), pair[1].clone()));
                }
            }
        }
        overlaps
    }
}

struct Recorder {
    key: String,
    node: String,
    ledger: Arc<Ledger>,
    index: Option<usize>,
}

impl SessionHandler for Recorder {
    fn opened(&mut self, session: &Session) {
        // One greeting per connection (for the inbound stream's test).
        session.text(format!("hello {}", self.key));
        let mut conns = self.ledger.conns.lock().unwrap();
        self.index = Some(conns.len());
        conns.push(Conn {
            key: self.key.clone(),
            node: self.node.clone(),
            opened: Instant::now(),
            closed: None,
        });
    }

    fn text(&mut self, _session: &Session, text: &str) {
        let message = (self.key.clone(), text.to_string(), Instant::now());
        self.ledger.messages.lock().unwrap().push(message);
    }

    fn closed(&mut self, _code: Option<u16>) {
        if let Some(i) = self.index {
            self.ledger.conns.lock().unwrap()[i].closed = Some(Instant::now());
        }
    }
}

async fn fleet_route(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    query: web::Query<BTreeMap<String, String>>,
    ledger: web::Data<Ledger>,
) -> actix_web::Result<HttpResponse> {
    let recorder = Recorder {
        key: path.into_inner(),
        node: query.get("node").cloned().unwrap_or_default(),
        ledger: ledger.into_inner(),
        index: None,
    };
    accept(&req, payload, recorder, ServerConfig::default())
}

/// A key's acked-mode session (client id: the key) with the server's hub.
async fn acked_route(
    req: HttpRequest,
    payload: web::Payload,
    path: web::Path<String>,
    hub: web::Data<Addr<Hub>>,
) -> actix_web::Result<HttpResponse> {
    let identity = ClientIdentity::Authenticated(path.into_inner());
    let hub = hub.get_ref().clone();
    accept_acked(&req, payload, hub, identity, ServerConfig::default())
}

/// The upstream the fleet's sockets connect to: `/fleet/{key}?node={node}`, and in acked
/// mode `/acked/{key}` (the key is the client id), whose messages the `app` records.
pub struct FleetServer {
    pub addr: std::net::SocketAddr,
    pub ledger: Arc<Ledger>,
    /// What the acked endpoint's application took, in order.
    pub app: Arc<Mutex<Vec<FromClient>>>,
    handle: ServerHandle,
}

impl FleetServer {
    pub async fn start() -> Self {
        let ledger = Arc::new(Ledger::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let data = Arc::clone(&ledger);
        let hub = actix::Actor::start(Hub::default());
        let app = super::record_app(&hub);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::from(Arc::clone(&data)))
                .app_data(web::Data::new(hub.clone()))
                .route("/fleet/{key}", web::get().to(fleet_route))
                .route("/acked/{key}", web::get().to(acked_route))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_rt::spawn(server);
        FleetServer {
            addr,
            ledger,
            app,
            handle,
        }
    }
}

impl Drop for FleetServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        actix_rt::spawn(async move { handle.stop(false).await });
    }
}

/// Timings short enough for tests: a dead node's keys move within about 2 s.
pub const LEASE_TTL: Duration = Duration::from_millis(2000);
pub const RENEW_INTERVAL: Duration = Duration::from_millis(250);
pub const RENEW_DEADLINE: Duration = Duration::from_millis(1200);
/// The sockets' longest backoff delay.
pub const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// A fleet node in a child process; it exits when this handle is dropped (its stdin closes)
/// or is killed.
pub struct NodeProcess {
    pub id: String,
    child: Child,
    _stdin: Option<ChildStdin>,
    /// Every line the node wrote to its stderr (its log, its panics), each prefixed with the
    /// milliseconds since the node was spawned; see [`NodeProcess::log`].
    log: Arc<Mutex<Vec<String>>>,
    spawned: Instant,
}

impl NodeProcess {
    /// Node `id` of fleet `fleet` on `redis_url`, running keys `key-0000..` (`keys` of them)
    /// against `server`.
    pub fn spawn(
        id: &str,
        fleet: &str,
        redis_url: &str,
        server: &FleetServer,
        keys: usize,
    ) -> Self {
        Self::spawn_to(id, fleet, redis_url, server.addr, keys)
    }

    /// As [`spawn`](Self::spawn), with the sockets connecting to `upstream` (a proxy in
    /// front of the server, say).
    pub fn spawn_to(
        id: &str,
        fleet: &str,
        redis_url: &str,
        upstream: std::net::SocketAddr,
        keys: usize,
    ) -> Self {
        Self::spawn_with(id, fleet, redis_url, upstream, keys, &[])
    }

    /// As [`spawn_to`](Self::spawn_to), with extra environment (`RESOCKET_FLEET_FORWARD`).
    pub fn spawn_with(
        id: &str,
        fleet: &str,
        redis_url: &str,
        upstream: std::net::SocketAddr,
        keys: usize,
        env: &[(&str, &str)],
    ) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .envs(env.iter().copied())
            .args(["fleet_node_process", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("RESOCKET_FLEET_NODE", id)
            .env("RESOCKET_FLEET_NAME", fleet)
            .env("RESOCKET_FLEET_REDIS", redis_url)
            .env("RESOCKET_FLEET_SERVER", upstream.to_string())
            .env("RESOCKET_FLEET_KEYS", keys.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the node process starts");
        let stdin = child.stdin.take();
        let spawned = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        // The node's stderr is kept for a failing test's report; what the node would have
        // shown on the test's stderr before (all of it when the test's RUST_LOG asked, else
        // what is not debug or trace: a log asked for by the test only) is still shown there.
        let stderr = child.stderr.take().expect("a piped stderr");
        let (lines, node) = (Arc::clone(&log), id.to_string());
        let show_all = std::env::var_os("RUST_LOG").is_some()
            || !env.iter().any(|(name, _)| *name == "RUST_LOG");
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let quiet = line.contains(" DEBUG ") || line.contains(" TRACE ");
                if show_all || !quiet {
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
                let at = spawned.elapsed().as_millis();
                lines
                    .lock()
                    .unwrap()
                    .push(format!("[{node} +{at}ms] {line}"));
            }
        });
        NodeProcess {
            id: id.to_string(),
            child,
            _stdin: stdin,
            log,
            spawned,
        }
    }

    /// What the node wrote to its stderr so far, a line each (`[id +MSms] line`, the time
    /// since it was spawned).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// When the node was spawned.
    pub fn spawned(&self) -> Instant {
        self.spawned
    }

    /// SIGKILL: no goodbye, its leases expire on their own.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The name of key `i`: `key-0000`, `key-0001`, …
pub fn key(i: usize) -> String {
    format!("key-{i:04}")
}

/// A node with the test timings, running keys `key(0..keys)` with sockets to
/// `ws://{upstream}/fleet/{key}?node={node}&token={token}`.
pub fn node_config(
    redis_url: &str,
    fleet: &str,
    node: &str,
    keys: usize,
    upstream: std::net::SocketAddr,
) -> resocket::FleetConfigBuilder {
    node_config_with(redis_url, fleet, node, keys, upstream, false)
}

/// As [`node_config`]; with `acked`, the sockets speak the acked protocol to
/// `ws://{upstream}/acked/{key}`, with the key as client id.
pub fn node_config_with(
    redis_url: &str,
    fleet: &str,
    node: &str,
    keys: usize,
    upstream: std::net::SocketAddr,
    acked: bool,
) -> resocket::FleetConfigBuilder {
    use resocket::{Backoff, FleetConfig, SocketConfig};
    let node_id = node.to_string();
    FleetConfig::builder(redis_url, fleet, node)
        .keys((0..keys).map(key))
        .lease_ttl(LEASE_TTL)
        .renew_interval(RENEW_INTERVAL)
        .renew_deadline(RENEW_DEADLINE)
        .socket(move |lease| {
            let url = match acked {
                true => format!("ws://{upstream}/acked/{}", lease.key),
                false => format!(
                    "ws://{upstream}/fleet/{}?node={node_id}&token={}",
                    lease.key, lease.token
                ),
            };
            let mut socket = SocketConfig::builder(url)
                .heartbeat(Duration::from_millis(500), Duration::from_secs(5))
                .backoff(Backoff::exponential(Duration::from_millis(10), MAX_BACKOFF));
            if acked {
                socket = socket.acked(lease.key.clone());
            }
            socket.build()
        })
}

/// The body of a node process: a fleet node until its parent goes away.
pub fn run_node_from_env() {
    use resocket::Fleet;
    let Ok(node) = std::env::var("RESOCKET_FLEET_NODE") else {
        return; // run as an ordinary (ignored) test: nothing to do
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let (fleet, redis, server) = (
        var("RESOCKET_FLEET_NAME"),
        var("RESOCKET_FLEET_REDIS"),
        var("RESOCKET_FLEET_SERVER"),
    );
    let keys: usize = var("RESOCKET_FLEET_KEYS").parse().unwrap();
    // RUST_LOG=resocket=info shows what each node decides (its stderr is the test's).
    let _ = env_logger::try_init();
    // The parent holds our stdin: when it closes (the parent ended), so do we.
    std::thread::spawn(|| {
        use std::io::Read;
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        for _ in 0..1_000_000 {
            match stdin.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::process::exit(0);
    });
    actix_rt::System::new().block_on(async move {
        let forward = std::env::var_os("RESOCKET_FLEET_FORWARD").is_some();
        let upstream: std::net::SocketAddr = server.parse().unwrap();
        let acked = std::env::var_os("RESOCKET_FLEET_ACKED").is_some();
        let mut config = node_config_with(&redis, &fleet, &node, keys, upstream, acked);
        if forward {
            config = config.forward_inbound(100_000);
        }
        let _fleet = Fleet::start(config.build().unwrap()).await.unwrap();
        loop {
            actix_rt::time::sleep(Duration::from_secs(3600)).await;
        }
    });
}
