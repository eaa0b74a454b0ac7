//! Many connections on one client thread: time to open them all, client RSS per idle
//! connection, the CPU of a 1 s heartbeat, and reconnect storms after the server is killed and
//! restarted.
//!
//! The resocket fleet is `SocketActor`s with a state subscriber. The bare fleet is what one
//! would write by hand with awc and actix: an actor per connection holding a `SinkWrite` and
//! the frame stream, pinging on an interval, answering pings, and reconnecting with
//! exponential backoff and full jitter (resocket's public `Backoff::delay`, the attempt counter
//! reset after a minimum uptime) and nothing more.
//!
//! With `RESOCKET_BENCH_EXIT_IDLE` set, a run ends right after the idle RSS is measured, so a
//! heap profiler sees the idle connections' memory as unfreed at exit:
//! `RESOCKET_BENCH_EXIT_IDLE=1 heaptrack target/release/deps/overhead-… --client '{"bench":"many",…}'`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::fut::wrap_future;
use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::Framed;
use awc::error::WsProtocolError;
use awc::ws::{Codec, Frame, Message as WsMessage};
use awc::BoxedSocket;
use futures_util::stream::SplitSink;
use futures_util::StreamExt;
use resocket::{
    Backoff, Disconnect, SocketActor, SocketConfig, SocketState, SplitMix64, StateChanged,
    Subscribe,
};
use serde_json::{json, Value};

use crate::common::{cpu_ns, raise_fd_limit, rss_bytes, wait_until, BoxError, ServerProcess};

/// What one run does.
#[derive(Debug, Clone)]
pub struct Params {
    pub connections: usize,
    /// The heartbeat CPU is measured over this long.
    pub window: Duration,
    pub interval: Duration,
    pub timeout: Duration,
    pub backoff: Backoff,
    pub min_uptime: Duration,
    /// One reconnect storm per entry: how long the server stays down.
    pub storms: Vec<Duration>,
}

impl Params {
    pub fn from_json(v: &Value) -> Result<Self, BoxError> {
        let secs = |k: &str| -> Result<Duration, BoxError> {
            Ok(Duration::from_secs_f64(
                v[k].as_f64().ok_or(format!("missing {k}"))?,
            ))
        };
        Ok(Params {
            connections: v["connections"].as_u64().ok_or("missing connections")? as usize,
            window: secs("window_s")?,
            interval: secs("interval_s")?,
            timeout: secs("timeout_s")?,
            backoff: Backoff::exponential(secs("backoff_min_s")?, secs("backoff_max_s")?),
            min_uptime: secs("min_uptime_s")?,
            storms: v["storms_down_s"]
                .as_array()
                .ok_or("missing storms_down_s")?
                .iter()
                .filter_map(Value::as_f64)
                .map(Duration::from_secs_f64)
                .collect(),
        })
    }
}

/// What both fleets report, on the client thread.
#[derive(Default)]
struct Shared {
    opens: Cell<usize>,
    last_open: Cell<Option<Instant>>,
    losses: Cell<usize>,
    recording: Cell<bool>,
    open_times: RefCell<Vec<Instant>>,
}

impl Shared {
    fn opened(&self, at: Instant) {
        self.opens.set(self.opens.get() + 1);
        self.last_open.set(Some(at));
        if self.recording.get() {
            self.open_times.borrow_mut().push(at);
        }
    }

    fn lost(&self) {
        self.losses.set(self.losses.get() + 1);
    }
}

// ---- resocket fleet ----

/// The state subscriber of every socket.
struct Collector(Rc<Shared>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for Collector {
    type Result = ();
    fn handle(&mut self, change: StateChanged, _: &mut Context<Self>) {
        match change.state {
            SocketState::Open { since } => self.0.opened(since),
            // A failed connect attempt is not a lost connection.
            SocketState::Backoff {
                cause: Disconnect::ConnectFailed(_),
                ..
            } => {}
            SocketState::Backoff { .. } | SocketState::Closed { .. } => self.0.lost(),
            SocketState::Connecting { .. } | SocketState::Identifying { .. } => {}
        }
    }
}

// ---- bare awc fleet ----

type WsSink = SplitSink<Framed<BoxedSocket, Codec>, WsMessage>;

/// What every bare socket shares (as every resocket socket shares its configuration).
struct BareParams {
    client: awc::Client,
    url: String,
    interval: Duration,
    timeout: Duration,
    backoff: Backoff,
    min_uptime: Duration,
    shared: Rc<Shared>,
}

struct BareConn {
    sink: SinkWrite<WsMessage, WsSink>,
    stream: SpawnHandle,
    heartbeat: SpawnHandle,
    last_seen: Instant,
    since: Instant,
    attempt: u32,
}

struct BareSocket {
    params: Rc<BareParams>,
    rng: SplitMix64,
    conn: Option<BareConn>,
}

impl Actor for BareSocket {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(1, ctx);
    }
}

impl BareSocket {
    fn connect(&mut self, attempt: u32, ctx: &mut Context<Self>) {
        let request = self.params.client.ws(self.params.url.as_str()).connect();
        ctx.spawn(
            wrap_future::<_, Self>(request).map(move |result, act, ctx| match result {
                Ok((_, framed)) => act.opened(attempt, framed, ctx),
                Err(_) => act.retry(attempt, ctx),
            }),
        );
    }

    fn opened(
        &mut self,
        attempt: u32,
        framed: Framed<BoxedSocket, Codec>,
        ctx: &mut Context<Self>,
    ) {
        let (sink, stream) = framed.split();
        let sink = SinkWrite::new(sink, ctx);
        let stream = ctx.add_stream(stream);
        let heartbeat = ctx.run_interval(self.params.interval, |act, ctx| act.tick(ctx));
        let now = Instant::now();
        self.conn = Some(BareConn {
            sink,
            stream,
            heartbeat,
            last_seen: now,
            since: now,
            attempt,
        });
        self.params.shared.opened(now);
    }

    /// `failures` consecutive attempts failed: wait, then try again.
    fn retry(&mut self, failures: u32, ctx: &mut Context<Self>) {
        let delay = self.params.backoff.delay(failures, &mut self.rng);
        ctx.run_later(delay, move |act, ctx| act.connect(failures + 1, ctx));
    }

    fn lost(&mut self, ctx: &mut Context<Self>) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        ctx.cancel_future(conn.stream);
        ctx.cancel_future(conn.heartbeat);
        ctx.cancel_future(conn.sink.handle());
        self.params.shared.lost();
        let stable = conn.since.elapsed() >= self.params.min_uptime;
        self.retry(if stable { 1 } else { conn.attempt }, ctx);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let Some(conn) = &mut self.conn else {
            return;
        };
        if conn.last_seen.elapsed() > self.params.timeout {
            self.lost(ctx);
        } else {
            let _ = conn.sink.write(WsMessage::Ping(bytes::Bytes::new()));
        }
    }
}

impl StreamHandler<Result<Frame, WsProtocolError>> for BareSocket {
    fn handle(&mut self, item: Result<Frame, WsProtocolError>, ctx: &mut Context<Self>) {
        let Some(conn) = &mut self.conn else {
            return;
        };
        match item {
            Ok(frame) => {
                conn.last_seen = Instant::now();
                match frame {
                    Frame::Ping(p) => {
                        let _ = conn.sink.write(WsMessage::Pong(p));
                    }
                    Frame::Close(_) => self.lost(ctx),
                    _ => {}
                }
            }
            Err(_) => self.lost(ctx),
        }
    }

    /// The current stream ended (earlier ones are cancelled when their connection is lost).
    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.lost(ctx);
    }
}

impl WriteHandler<WsProtocolError> for BareSocket {
    fn error(&mut self, _: WsProtocolError, _: &mut Context<Self>) -> Running {
        // The stream sees the same failure and handles it.
        Running::Continue
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

// ---- the run ----

/// Keeps the fleet's addresses (and so the fleet) alive for the run.
enum Fleet {
    Resocket(Vec<Addr<SocketActor>>),
    Bare(Vec<Addr<BareSocket>>),
}

fn start_fleet(
    resocket: bool,
    url: &str,
    p: &Params,
    shared: &Rc<Shared>,
    client: Option<awc::Client>,
) -> Result<Fleet, BoxError> {
    let n = p.connections;
    if resocket {
        let config = SocketConfig::builder(url)
            .heartbeat(p.interval, p.timeout)
            .backoff(p.backoff)
            .min_uptime(p.min_uptime)
            .build()?;
        let collector = Collector(shared.clone()).start();
        let mut fleet = Vec::with_capacity(n);
        for _ in 0..n {
            let socket = SocketActor::connect(config.clone());
            socket.do_send(Subscribe::states(collector.clone().recipient()));
            fleet.push(socket);
        }
        Ok(Fleet::Resocket(fleet))
    } else {
        let params = Rc::new(BareParams {
            client: client.ok_or("no client")?,
            url: url.to_string(),
            interval: p.interval,
            timeout: p.timeout,
            backoff: p.backoff,
            min_uptime: p.min_uptime,
            shared: shared.clone(),
        });
        let mut seeds = SplitMix64::from_entropy();
        let mut fleet = Vec::with_capacity(n);
        for _ in 0..n {
            use resocket::RandomSource;
            let socket = BareSocket {
                params: params.clone(),
                rng: SplitMix64::new(seeds.next_u64()),
                conn: None,
            }
            .start();
            fleet.push(socket);
        }
        Ok(Fleet::Bare(fleet))
    }
}

impl Fleet {
    fn len(&self) -> usize {
        match self {
            Fleet::Resocket(v) => v.len(),
            Fleet::Bare(v) => v.len(),
        }
    }
}

/// The largest share of `times` that falls in any window of `width`.
fn busiest_window(times: &mut [Instant], width: Duration) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    times.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) > width {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best as f64 / times.len() as f64
}

/// Kills the server, keeps it down for `down`, restarts it on the same port, and waits until
/// every socket is Open again. The kill and restart run on a helper thread so that the client
/// thread keeps running its timers meanwhile.
async fn storm(
    server: &mut Option<ServerProcess>,
    shared: &Rc<Shared>,
    n: usize,
    down: Duration,
    limit: Duration,
) -> Result<Value, BoxError> {
    let mut old = server.take().ok_or("no server")?;
    let (port, cpu) = (old.addr.port(), old.cpu);
    shared.open_times.borrow_mut().clear();
    shared.recording.set(true);
    let base = shared.opens.get();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let killed = Instant::now();
        old.kill();
        drop(old);
        std::thread::sleep(down);
        let new = ServerProcess::spawn(port, cpu).map_err(|e| e.to_string());
        let _ = tx.send((killed, new, Instant::now()));
    });
    // Meanwhile, note when every socket has seen its connection drop.
    let lost_base = shared.losses.get();
    let all_lost = Cell::new(None);
    let note_lost = || {
        if all_lost.get().is_none() && shared.losses.get() >= lost_base + n {
            all_lost.set(Some(Instant::now()));
        }
    };
    let mut rx = rx;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (killed, new, up) = loop {
        note_lost();
        match rx.try_recv() {
            Ok(restarted) => break restarted,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            Err(e) => return Err(format!("restarting the server: {e}").into()),
        }
        if Instant::now() > deadline {
            return Err("the server did not restart within 30 s".into());
        }
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    };
    *server = Some(new?);
    let all = wait_until(limit, || {
        note_lost();
        shared.opens.get() >= base + n
    })
    .await;
    shared.recording.set(false);
    let mut times = std::mem::take(&mut *shared.open_times.borrow_mut());
    let reopened = times.len();
    let last = times.iter().max().copied().unwrap_or(up);
    let all_open_s = if all {
        last.saturating_duration_since(up).as_secs_f64()
    } else {
        // Not all came back: report the wait as a lower bound.
        up.elapsed().as_secs_f64()
    };
    let window = busiest_window(&mut times, Duration::from_millis(100));
    // Reconnects per 100 ms after the restart (the first 8 s), to see where the busiest is.
    let mut histogram = vec![0u32; 80];
    for t in &times {
        let bin = (t.saturating_duration_since(up).as_millis() / 100) as usize;
        if let Some(count) = histogram.get_mut(bin) {
            *count += 1;
        }
    }
    while histogram.last() == Some(&0) {
        histogram.pop();
    }
    Ok(json!({
        "all_open_s": all_open_s,
        "all_open_after_kill_s": last.saturating_duration_since(killed).as_secs_f64(),
        "up_after_kill_s": up.saturating_duration_since(killed).as_secs_f64(),
        "all_lost_after_kill_s": all_lost.get().map(|t| t.saturating_duration_since(killed).as_secs_f64()),
        "max_window_pct": window * 100.0,
        "reopened": reopened,
        "per_100ms_after_restart": histogram,
        "complete": all,
    }))
}

/// One run: open `connections`, idle with a heartbeat, then the reconnect storms.
pub async fn run(resocket: bool, p: Params, server_cpu: Option<u64>) -> Result<Value, BoxError> {
    let n = p.connections;
    let soft = raise_fd_limit();
    if n as u64 + 64 > soft {
        return Err(format!("{n} connections need more open files than the limit {soft}").into());
    }
    let mut server = Some(ServerProcess::spawn(0, server_cpu)?);
    let url = server.as_ref().ok_or("no server")?.url("idle");
    let shared = Rc::new(Shared::default());
    let client = (!resocket).then(|| {
        awc::Client::builder()
            .connector(awc::Connector::new().limit(0))
            .timeout(Duration::from_secs(10))
            .finish()
    });

    // Open.
    let rss0 = rss_bytes();
    let cpu0 = cpu_ns();
    let t0 = Instant::now();
    let fleet = start_fleet(resocket, &url, &p, &shared, client)?;
    if !wait_until(Duration::from_secs(60), || shared.opens.get() >= n).await {
        return Err(format!("only {} of {n} opened within 60 s", shared.opens.get()).into());
    }
    let open_s = t0.elapsed().as_secs_f64();
    let open_cpu_s = (cpu_ns() - cpu0) as f64 / 1e9;

    // Idle, with the heartbeat.
    actix_rt::time::sleep(Duration::from_millis(300)).await;
    let losses0 = shared.losses.get();
    let (cpu1, t1) = (cpu_ns(), Instant::now());
    actix_rt::time::sleep(p.window).await;
    let heartbeat_cpu_pct = (cpu_ns() - cpu1) as f64 / t1.elapsed().as_nanos() as f64 * 100.0;
    let rss_kib_per_conn = rss_bytes().saturating_sub(rss0) as f64 / 1024.0 / n as f64;
    let idle_losses = shared.losses.get() - losses0;
    if std::env::var_os("RESOCKET_BENCH_EXIT_IDLE").is_some() {
        // For a heap profiler: end here, every connection idle and nothing torn down, so
        // what the profiler finds unfreed at exit is what the idle connections hold.
        crate::common::print_result(&json!({ "rss_kib_per_conn": rss_kib_per_conn }));
        std::process::exit(0);
    }

    // Reconnect storms.
    let mut storms = Vec::new();
    let limit = p.backoff.max() + Duration::from_secs(12);
    for down in &p.storms {
        // Every connection has heard from the peer after its minimum uptime (the first pong
        // after it), so every socket counts as stable and starts the storm afresh.
        let pings = p.min_uptime.as_secs_f64() / p.interval.as_secs_f64();
        let talked = p.interval.mul_f64(pings.ceil().max(1.0)) + Duration::from_millis(300);
        if let Some(last) = shared.last_open.get() {
            let ready = last + talked;
            let now = Instant::now();
            if ready > now {
                actix_rt::time::sleep(ready - now).await;
            }
        }
        let mut s = storm(&mut server, &shared, n, *down, limit).await?;
        s["down_s"] = json!(down.as_secs_f64());
        storms.push(s);
    }
    let connections = fleet.len();
    drop(server);
    Ok(json!({
        "connections": connections,
        "open_s": open_s,
        "open_cpu_s": open_cpu_s,
        "rss_kib_per_conn": rss_kib_per_conn,
        "heartbeat_cpu_pct": heartbeat_cpu_pct,
        "idle_losses": idle_losses,
        "storms": storms,
    }))
}
