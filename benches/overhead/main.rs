//! What resocket costs over a bare awc client doing the same work, side by side in one run.
//!
//! ```sh
//! cargo bench --bench overhead -- --quick   # about a minute
//! cargo bench --bench overhead              # the full run (several minutes)
//! ```
//!
//! Every measurement runs in a fresh client process (this program re-run with `--client`),
//! which starts its own server process (`--serve`), so the server's CPU is not counted and
//! RSS starts clean. With `taskset`, the client runs on CPU 1 and the server on CPU 0, except
//! for ping-pong where both share CPU 0. resocket and bare awc (or the peers) take turns, the
//! first rotating from run to run; each figure is the median of the runs, shown with its
//! range. The table goes to stdout, progress to stderr, and the figures to
//! `target/resocket-bench.json`.
//!
//! | benchmark | what both sides do |
//! |---|---|
//! | send | serialize 64-byte `TickOut`s with serde_json and pipeline them to a counting server; resocket four ways: `Sender::json` into an outbox holding them all, `json_wait` into the default outbox (backpressure, like awc's `feed().await`), one `SendMessage` each, one `SendBatch` per 64 |
//! | receive | decode the server's pushed messages into `Tick` and `do_send` them to an actor |
//! | pingpong | one message at a time through an echo server, decoded on return |
//! | many | 10,000 connections with a 1 s heartbeat: open time, RSS, CPU, reconnect storms |
//! | hub | 1,000 clients, each sending 200 messages and `END`, through one server `Hub` (acked) against plain sessions (`/sink`): server RSS per client, msgs/s, server CPU per message |
//! | peers | send's work by the clients users pick instead, each against resocket's `Sender` in the same run: tokio-tungstenite with a `send` per message; tokio-tungstenite tuned (`feed` per message, one flush, 4 KiB buffers, TCP_NODELAY); ezsockets with its defaults |
//!
//! Other flags: `--only send,send_wait,send_messages,send_batch,receive,hub,pingpong,many,peers`, `--runs N`, `--many-runs N`,
//! `--connections N`.

mod common;
mod hub;
mod many;
mod peers;
mod server;
mod svg;
mod throughput;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{exit_with_parent, print_result, raise_fd_limit, BoxError, ServerProcess};

// ---- settings ----

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    runs: usize,
    many_runs: usize,
    /// Runs per side of the peers group (four sides: fewer runs keep `--quick` in its minute).
    peer_runs: usize,
    send_n: u64,
    recv_n: u64,
    warm_n: u64,
    ping_n: u64,
    ping_warm: u64,
    connections: usize,
    window_s: f64,
    storms_down_s: Vec<f64>,
    only: Option<Vec<String>>,
}

/// The hub benchmark's clients, and the messages each sends (the quick and full runs alike).
const HUB_CLIENTS: u64 = 1000;
const HUB_PER_CLIENT: u64 = 200;

/// The reconnect policy of the storm: the library's default minimum delay, and a 5 s maximum
/// (instead of 30 s) so that a run stays short.
const BACKOFF_MIN_S: f64 = 0.5;
const BACKOFF_MAX_S: f64 = 5.0;

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Settings {
                quick,
                runs: 5,
                many_runs: 3,
                peer_runs: 3,
                send_n: 500_000,
                recv_n: 500_000,
                warm_n: 50_000,
                ping_n: 10_000,
                ping_warm: 1_000,
                connections: 10_000,
                window_s: 2.0,
                storms_down_s: vec![0.0],
                only: None,
            }
        } else {
            Settings {
                quick,
                runs: 9,
                many_runs: 5,
                peer_runs: 9,
                send_n: 2_000_000,
                recv_n: 2_000_000,
                warm_n: 100_000,
                ping_n: 50_000,
                ping_warm: 2_000,
                connections: 10_000,
                window_s: 3.0,
                storms_down_s: vec![0.0, 1.0],
                only: None,
            }
        }
    }

    fn wants(&self, group: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|g| g == group))
    }
}

fn parse_settings(args: &[String]) -> Result<Settings, String> {
    let mut s = Settings::new(args.iter().any(|a| a == "--quick"));
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--quick" | "--full" | "--bench" => {}
            "--only" => s.only = Some(value("--only")?.split(',').map(String::from).collect()),
            "--runs" => {
                s.runs = value("--runs")?.parse().map_err(|_| "--runs: a number")?;
                s.peer_runs = s.runs;
            }
            "--many-runs" => {
                s.many_runs = value("--many-runs")?
                    .parse()
                    .map_err(|_| "--many-runs: a number")?
            }
            "--connections" => {
                s.connections = value("--connections")?
                    .parse()
                    .map_err(|_| "--connections: a number")?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if s.runs == 0 || s.many_runs == 0 || s.connections == 0 {
        return Err("runs and connections must be at least 1".into());
    }
    Ok(s)
}

// ---- the client process ----

/// Runs one client within its time limit (`limit_s`), so that it ends by itself even if the
/// code under test hangs.
async fn client(params: Value) -> Result<Value, BoxError> {
    let limit = Duration::from_secs_f64(params["limit_s"].as_f64().unwrap_or(100.0));
    actix_rt::time::timeout(limit, client_run(params))
        .await
        .map_err(|_| format!("gave up after {limit:?}"))?
}

async fn client_run(params: Value) -> Result<Value, BoxError> {
    let bench = params["bench"].as_str().ok_or("no bench")?;
    let resocket = params["resocket"].as_bool().ok_or("no impl")?;
    let n = params["n"].as_u64().unwrap_or(0);
    let warm = params["warm"].as_u64().unwrap_or(0);
    let server_cpu = params["server_cpu"].as_u64();
    if bench == "hub" {
        let p = hub::Params {
            clients: params["clients"].as_u64().unwrap_or(100) as usize,
            per_client: params["per_client"].as_u64().unwrap_or(1000),
        };
        return hub::run(resocket, p, server_cpu).await;
    }
    if bench == "many" {
        return many::run(resocket, many::Params::from_json(&params)?, server_cpu).await;
    }
    let server = ServerProcess::spawn(0, server_cpu)?;
    let result = match bench {
        "send" => {
            let via = throughput::Via::Sender;
            throughput::send(resocket, via, &server.url("sink"), n, warm).await
        }
        "send_batch" => {
            let via = throughput::Via::Batch;
            throughput::send(resocket, via, &server.url("sink"), n, warm).await
        }
        "send_wait" => {
            let via = throughput::Via::SenderWait;
            throughput::send(resocket, via, &server.url("sink"), n, warm).await
        }
        "send_messages" => {
            let via = throughput::Via::Messages;
            throughput::send(resocket, via, &server.url("sink"), n, warm).await
        }
        "receive" => throughput::receive(resocket, &server.url("push"), n, warm).await,
        "peer" => {
            let peer = peers::Peer::from_key(params["peer"].as_str().ok_or("no peer")?)?;
            peers::send(peer, &server.url("sink"), n, warm).await
        }
        "send_acked" => {
            throughput::send_acked(resocket, &server.url("sink"), &server.url("acked"), n, warm)
                .await
        }
        "pingpong" => throughput::ping_pong(resocket, &server.url("echo"), n, warm).await,
        "paced" => {
            let gap = Duration::from_millis(params["gap_ms"].as_u64().unwrap_or(1));
            throughput::paced(resocket, &server.url("echo"), n, warm, gap).await
        }
        other => Err(format!("unknown bench {other}").into()),
    };
    drop(server);
    result
}

fn client_main(params: &str) -> ! {
    exit_with_parent();
    raise_fd_limit();
    let result = serde_json::from_str::<Value>(params)
        .map_err(BoxError::from)
        .and_then(|p| actix::System::new().block_on(client(p)));
    match result {
        Ok(v) => {
            print_result(&v);
            // Exit at once: tearing down 10,000 actors is not part of any figure.
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("overhead client: {e}");
            print_result(&json!({ "error": e.to_string() }));
            std::process::exit(1)
        }
    }
}

// ---- the harness ----

fn taskset_available() -> bool {
    Command::new("taskset")
        .args(["-c", "0", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where the client and its server run.
#[derive(Debug, Clone, Copy)]
enum Pin {
    /// Wherever the scheduler puts them.
    None,
    /// Client on the first CPU, server on the second (`taskset`).
    Cpus { client: u64, server: u64 },
}

/// Runs one client process and returns its result.
fn run_client(params: &Value, pin: Pin, limit: Duration) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut params = params.clone();
    // The client gives up by itself a little before the harness would kill it.
    params["limit_s"] = json!(limit.saturating_sub(Duration::from_secs(10)).as_secs_f64());
    let mut cmd = match pin {
        Pin::Cpus { client, server } => {
            params["server_cpu"] = json!(server);
            let mut c = Command::new("taskset");
            c.args(["-c", &client.to_string()]).arg(exe);
            c
        }
        Pin::None => Command::new(exe),
    };
    let mut child = cmd
        .arg("--client")
        .arg(params.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().take(10_000) {
            let Ok(line) = line else { break };
            if let Some(result) = line.strip_prefix("RESULT ") {
                let _ = tx.send(result.to_string());
                break;
            }
        }
    });
    let result = rx.recv_timeout(limit);
    // The client exits by itself right after its result; give it a moment, then insist.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    match result {
        Ok(line) => {
            let v: Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            match v["error"].as_str() {
                Some(error) => Err(error.to_string()),
                None => Ok(v),
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no result within {limit:?}")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the client failed".into()),
    }
}

/// What a figure is held to.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// resocket / baseline at least this.
    RatioAtLeast(f64),
    /// resocket / baseline at most this.
    RatioAtMost(f64),
    /// resocket at most baseline + this (same unit).
    PlusAtMost(f64),
    /// resocket at most this, whatever the baseline.
    AtMost(f64),
    /// None: the ratio is the information (resocket against another client).
    Compare,
}

impl Target {
    fn describe(&self, unit: &str) -> String {
        match self {
            Target::RatioAtLeast(r) => format!(">= {r:.2}x"),
            Target::RatioAtMost(r) => format!("<= {r:.2}x"),
            Target::PlusAtMost(d) => format!("<= bare + {d} {unit}"),
            Target::AtMost(v) => format!("<= {v} {unit}"),
            Target::Compare => "-".into(),
        }
    }

    fn met(&self, resocket: f64, baseline: f64) -> bool {
        match self {
            Target::RatioAtLeast(r) => resocket / baseline >= *r,
            Target::RatioAtMost(r) => resocket / baseline <= *r,
            Target::PlusAtMost(d) => resocket <= baseline + d,
            Target::AtMost(v) => resocket <= *v,
            Target::Compare => true,
        }
    }
}

/// One figure: how to read it from a client's result, and what it is held to.
struct Figure {
    name: String,
    unit: &'static str,
    higher_is_better: bool,
    target: Target,
    read: Reader,
    /// The side of the group that resocket (side 0) is compared with.
    baseline: usize,
}

/// Reads one figure from a client's result.
type Reader = Box<dyn Fn(&Value) -> Option<f64>>;

fn figure(
    name: impl Into<String>,
    unit: &'static str,
    higher_is_better: bool,
    target: Target,
    read: impl Fn(&Value) -> Option<f64> + 'static,
) -> Figure {
    Figure {
        name: name.into(),
        unit,
        higher_is_better,
        target,
        read: Box::new(read),
        baseline: 1,
    }
}

impl Figure {
    /// Compares resocket with side `baseline` of the group (default: side 1).
    fn against(mut self, baseline: usize) -> Self {
        self.baseline = baseline;
        self
    }
}

/// One client of a group: its name in the progress lines, and what it adds to the group's
/// parameters.
struct Side {
    label: &'static str,
    params: Value,
}

/// resocket (side 0) and bare awc (side 1).
fn resocket_and_bare() -> Vec<Side> {
    two_sides("resocket", "bare awc")
}

/// Side 0 (`"resocket": true`) labelled `ours`, side 1 (`false`) labelled `baseline`.
fn two_sides(ours: &'static str, baseline: &'static str) -> Vec<Side> {
    vec![
        Side {
            label: ours,
            params: json!({"resocket": true}),
        },
        Side {
            label: baseline,
            params: json!({"resocket": false}),
        },
    ]
}

/// A benchmark: the client parameters, the clients it runs, and the figures their results give.
struct Group {
    name: &'static str,
    params: Value,
    /// Side 0 is resocket; each figure compares it with one of the others.
    sides: Vec<Side>,
    pin: Pin,
    runs: usize,
    limit: Duration,
    figures: Vec<Figure>,
}

fn groups(s: &Settings, taskset: bool) -> Vec<Group> {
    // Throughput and many connections: client and server each on a CPU of their own.
    // Ping-pong: both on CPU 0, as the latency figures are defined.
    let (split, same) = if taskset {
        (
            Pin::Cpus {
                client: 1,
                server: 0,
            },
            Pin::Cpus {
                client: 0,
                server: 0,
            },
        )
    } else {
        (Pin::None, Pin::None)
    };
    let key = |k: &'static str| move |v: &Value| v[k].as_f64();
    // One send benchmark: msgs/s (at least 0.95x bare awc) and CPU per message (at most
    // `cpu_max` times).
    let send_group = |name: &'static str, how: &str, cpu: &str, cpu_max: f64| Group {
        name,
        params: json!({"bench": name, "n": s.send_n, "warm": s.warm_n}),
        sides: resocket_and_bare(),
        pin: split,
        runs: s.runs,
        limit: Duration::from_secs(60),
        figures: vec![
            figure(
                format!("send via {how}: msgs/s"),
                "msg/s",
                true,
                Target::RatioAtLeast(0.95),
                key("msgs_per_s"),
            ),
            figure(
                format!("send via {how}: {cpu}"),
                "ns",
                false,
                Target::RatioAtMost(cpu_max),
                key("cpu_ns_per_msg"),
            ),
        ],
    };
    let mut groups = vec![
        send_group("send", "Sender", "client CPU per msg", 1.2),
        send_group("send_messages", "Send messages", "CPU per msg", 1.5),
        send_group("send_batch", "SendBatch of 64", "CPU per msg", 1.5),
        send_group(
            "send_wait",
            "Sender::json_wait, default outbox",
            "CPU per msg",
            1.2,
        ),
        Group {
            name: "receive",
            params: json!({"bench": "receive", "n": s.recv_n, "warm": s.warm_n}),
            sides: resocket_and_bare(),
            pin: split,
            runs: s.runs,
            limit: Duration::from_secs(60),
            figures: vec![
                figure(
                    "typed receive: msgs/s",
                    "msg/s",
                    true,
                    Target::RatioAtLeast(0.9),
                    key("msgs_per_s"),
                ),
                figure(
                    "typed receive: client CPU per msg",
                    "ns",
                    false,
                    Target::RatioAtMost(1.3),
                    key("cpu_ns_per_msg"),
                ),
            ],
        },
    ];
    groups.push(Group {
        name: "send_acked",
        params: json!({"bench": "send_acked", "n": s.send_n / 10, "warm": s.warm_n}),
        sides: resocket_and_bare(),
        pin: split,
        runs: s.runs,
        limit: Duration::from_secs(60),
        figures: vec![
            figure(
                "acked mode via Sender (baseline: default mode): msgs/s",
                "msg/s",
                true,
                Target::RatioAtLeast(0.5),
                key("msgs_per_s"),
            ),
            figure(
                "acked mode via Sender (baseline: default mode): CPU per msg",
                "ns",
                false,
                Target::RatioAtMost(1.5),
                key("cpu_ns_per_msg"),
            ),
        ],
    });
    groups.push(Group {
        name: "hub",
        params: json!({"bench": "hub", "clients": HUB_CLIENTS, "per_client": HUB_PER_CLIENT}),
        sides: two_sides("Hub, acked", "plain sessions"),
        pin: split,
        // (Each run opens 1,000 connections: one run per side keeps `--quick` short.)
        runs: if s.quick { 1 } else { s.runs.min(3) },
        limit: Duration::from_secs(90),
        figures: vec![
            figure(
                "Hub (baseline: plain sessions): server RSS per client",
                "KiB",
                false,
                Target::Compare,
                key("server_rss_kib_per_client"),
            ),
            figure(
                "Hub (baseline: plain sessions): msgs/s",
                "msg/s",
                true,
                Target::RatioAtLeast(0.5),
                key("msgs_per_s"),
            ),
            figure(
                "Hub (baseline: plain sessions): server CPU per msg",
                "ns",
                false,
                Target::RatioAtMost(2.0),
                key("server_cpu_ns_per_msg"),
            ),
        ],
    });
    let pinned = if taskset {
        " (pinned, 1 CPU)"
    } else {
        " (NOT pinned)"
    };
    groups.push(Group {
        name: "pingpong",
        params: json!({"bench": "pingpong", "n": s.ping_n, "warm": s.ping_warm}),
        sides: resocket_and_bare(),
        pin: same,
        runs: s.runs,
        limit: Duration::from_secs(60),
        figures: vec![
            figure(
                format!("ping-pong RTT p50{pinned}"),
                "us",
                false,
                Target::PlusAtMost(3.0),
                key("p50_us"),
            ),
            figure(
                format!("ping-pong RTT p99{pinned}"),
                "us",
                false,
                Target::PlusAtMost(3.0),
                key("p99_us"),
            ),
        ],
    });
    // Paced: one message every 1 ms and every 10 ms, each echoed; without TCP_NODELAY a
    // small write waits for the peer's delayed ACK (~40 ms), so the p99 shows it.
    for (gap_ms, count) in [(1u64, s.ping_warm / 5), (10, s.ping_warm / 20)] {
        groups.push(Group {
            name: if gap_ms == 1 {
                "paced_1ms"
            } else {
                "paced_10ms"
            },
            params: json!({"bench": "paced", "n": count.max(20), "warm": 10, "gap_ms": gap_ms}),
            sides: resocket_and_bare(),
            pin: same,
            // (As few runs as the peers in --quick: a p99 of paced traffic is steady, and the
            // quick run stays under a minute.)
            runs: s.peer_runs,
            limit: Duration::from_secs(60),
            figures: vec![figure(
                format!("paced every {gap_ms} ms: echo RTT p99{pinned}"),
                "us",
                false,
                Target::AtMost(1000.0),
                key("p99_us"),
            )],
        });
    }
    let n = s.connections;
    let mut figures = vec![
        figure(
            format!("idle memory: client RSS per conn @{n}"),
            "KiB",
            false,
            Target::RatioAtMost(1.15),
            key("rss_kib_per_conn"),
        ),
        figure(
            format!("time to open {n} connections"),
            "s",
            false,
            Target::RatioAtMost(1.2),
            key("open_s"),
        ),
        figure(
            format!("heartbeat CPU @{n}, 1 ping/s"),
            "% core",
            false,
            Target::RatioAtMost(1.1),
            key("heartbeat_cpu_pct"),
        ),
    ];
    for (i, down) in s.storms_down_s.iter().enumerate() {
        let storm = move |k: &'static str| move |v: &Value| v["storms"][i][k].as_f64();
        figures.push(figure(
            format!("storm (down {down} s): all Open after restart"),
            "s",
            false,
            Target::AtMost(BACKOFF_MAX_S + 2.0),
            storm("all_open_s"),
        ));
        figures.push(figure(
            format!("storm (down {down} s): busiest 100 ms window"),
            "% reconn",
            false,
            Target::AtMost(10.0),
            storm("max_window_pct"),
        ));
    }
    groups.push(Group {
        name: "many",
        params: json!({
            "bench": "many",
            "connections": n,
            "window_s": s.window_s,
            "interval_s": 1.0,
            "timeout_s": 5.0,
            "backoff_min_s": BACKOFF_MIN_S,
            "backoff_max_s": BACKOFF_MAX_S,
            "min_uptime_s": 0.5,
            "storms_down_s": s.storms_down_s,
        }),
        sides: resocket_and_bare(),
        pin: split,
        runs: s.many_runs,
        limit: Duration::from_secs(180),
        figures,
    });
    groups.push(peers_group(s, split));
    groups
}

/// send's work by the clients users would pick instead, each against resocket's `Sender`
/// measured in the same run.
fn peers_group(s: &Settings, pin: Pin) -> Group {
    let mut sides = vec![Side {
        label: "resocket",
        params: json!({"resocket": true}),
    }];
    let mut figures = Vec::new();
    for peer in peers::Peer::ALL {
        sides.push(Side {
            label: peer.label(),
            params: json!({"bench": "peer", "peer": peer.key(), "resocket": false}),
        });
        let side = sides.len() - 1;
        let label = peer.label();
        figures.push(
            figure(
                format!("send vs {label}: msgs/s"),
                "msg/s",
                true,
                Target::Compare,
                |v: &Value| v["msgs_per_s"].as_f64(),
            )
            .against(side),
        );
        figures.push(
            figure(
                format!("send vs {label}: client CPU per msg"),
                "ns",
                false,
                Target::Compare,
                |v: &Value| v["cpu_ns_per_msg"].as_f64(),
            )
            .against(side),
        );
    }
    Group {
        name: "peers",
        // resocket's side is the send benchmark's Sender path; the peers' sides override it.
        params: json!({"bench": "send", "n": s.send_n, "warm": s.warm_n}),
        sides,
        pin,
        runs: s.peer_runs,
        limit: Duration::from_secs(60),
        figures,
    }
}

/// The figures of one benchmark: for each side, for each figure, the values of every run.
struct Measured {
    values: Vec<Vec<Vec<f64>>>,
    /// Each side's last result, as its client reported it.
    last: Vec<Option<Value>>,
}

/// `params` with every key of `patch` set.
fn merged(params: &Value, patch: &Value) -> Value {
    let mut out = params.clone();
    if let (Some(out), Some(patch)) = (out.as_object_mut(), patch.as_object()) {
        for (k, v) in patch {
            out.insert(k.clone(), v.clone());
        }
    }
    out
}

fn measure(group: &Group) -> Measured {
    let sides = group.sides.len();
    let mut m = Measured {
        values: vec![vec![Vec::new(); group.figures.len()]; sides],
        last: vec![None; sides],
    };
    // A side that timed out once, or failed twice, is not run again in this group (a hang
    // would otherwise cost the time limit on every run).
    let mut failures = vec![0u32; sides];
    let mut timed_out = vec![false; sides];
    for run in 0..group.runs {
        // Rotate which side goes first, so that drift hits every side alike.
        for index in (0..sides).map(|i| (i + run) % sides) {
            let side = &group.sides[index];
            let params = merged(&group.params, &side.params);
            let label = side.label;
            if timed_out[index] || failures[index] >= 2 {
                eprintln!(
                    "  {} run {}/{} {label}: skipped",
                    group.name,
                    run + 1,
                    group.runs
                );
                continue;
            }
            let started = Instant::now();
            match run_client(&params, group.pin, group.limit) {
                Ok(v) => {
                    eprintln!(
                        "  {} run {}/{} {label}: {v} ({:.1} s)",
                        group.name,
                        run + 1,
                        group.runs,
                        started.elapsed().as_secs_f64()
                    );
                    for (i, fig) in group.figures.iter().enumerate() {
                        if let Some(x) = (fig.read)(&v).filter(|x| x.is_finite()) {
                            m.values[index][i].push(x);
                        }
                    }
                    m.last[index] = Some(v);
                }
                Err(e) => {
                    failures[index] += 1;
                    timed_out[index] |= e.starts_with("no result") || e.starts_with("gave up");
                    eprintln!(
                        "  {} run {}/{} {label}: FAILED: {e}",
                        group.name,
                        run + 1,
                        group.runs
                    )
                }
            }
        }
    }
    m
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    })
}

/// Three significant digits, with k/M suffixes for large values.
fn num(x: f64) -> String {
    let (v, suffix) = if x.abs() >= 1e6 {
        (x / 1e6, "M")
    } else if x.abs() >= 1e4 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{suffix}")
}

fn cell(values: &[f64]) -> String {
    match median(values) {
        None => "failed".into(),
        Some(m) => {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{} [{}..{}]", num(m), num(lo), num(hi))
        }
    }
}

/// The first storm's reconnects per 100 ms, resocket against bare awc (each side's last run),
/// to `target/resocket-storm.svg`.
fn write_storm_svg(m: &Measured) -> Result<(), BoxError> {
    let bins = |side: usize| -> Option<Vec<u32>> {
        let v = m.last.get(side)?.as_ref()?;
        let bins = v["storms"][0]["per_100ms_after_restart"].as_array()?;
        Some(
            bins.iter()
                .filter_map(|b| b.as_u64())
                .map(|b| b as u32)
                .collect(),
        )
    };
    let (Some(resocket), Some(bare)) = (bins(0), bins(1)) else {
        return Ok(()); // a side failed: no picture
    };
    let svg = svg::storm(
        "10,000 sockets, server restarted: reconnects per 100 ms",
        &[
            ("resocket", "#1f77b4", resocket),
            ("bare awc", "#d62728", bare),
        ],
    );
    let path = output_path().with_file_name("resocket-storm.svg");
    std::fs::write(&path, svg)?;
    eprintln!("storm picture written to {}", path.display());
    Ok(())
}

fn output_path() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("resocket-bench.json")
}

fn harness(s: Settings) -> Result<(), BoxError> {
    let started = Instant::now();
    common::TickOut::check_size()?;
    let taskset =
        taskset_available() && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    println!(
        "resocket overhead benchmark: {} mode, {} CPUs, {} runs per figure ({} for the {}-connection figures, {} for the peers)",
        if s.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        s.runs,
        s.many_runs,
        s.connections,
        s.peer_runs,
    );
    println!(
        "  send/receive: {} + {} warm-up messages of 64 B; ping-pong: {} + {} warm-up round trips; \
         storms: backoff {BACKOFF_MIN_S}..{BACKOFF_MAX_S} s, heartbeat 1 s",
        s.send_n, s.warm_n, s.ping_n, s.ping_warm
    );
    if taskset {
        println!("  pinned with taskset: client CPU 1 / server CPU 0; ping-pong: both on CPU 0");
    } else {
        println!("  taskset not found (or 1 CPU): nothing pinned");
    }
    let mut rows = Vec::new();
    for group in groups(&s, taskset).into_iter().filter(|g| s.wants(g.name)) {
        eprintln!("{} ({} runs per side)", group.name, group.runs);
        let m = measure(&group);
        if group.name == "many" {
            write_storm_svg(&m)?;
        }
        for (i, fig) in group.figures.iter().enumerate() {
            let baseline = m.values.get(fig.baseline).map(|v| v[i].clone());
            rows.push((
                fig.name.clone(),
                fig.unit,
                fig.higher_is_better,
                fig.target,
                m.values[0][i].clone(),
                baseline.unwrap_or_default(),
            ));
        }
    }

    println!();
    println!(
        "{:<60} {:>8}  {:<26} {:<26} {:>6}  {:<18} verdict",
        "figure (median [min..max])", "unit", "resocket", "bare awc / peer", "ratio", "target"
    );
    println!("{}", "-".repeat(164));
    let mut json_rows = Vec::new();
    let mut missed = 0;
    for (name, unit, higher, target, res, base) in &rows {
        let (mr, mb) = (median(res), median(base));
        let ratio = match (mr, mb) {
            (Some(r), Some(b)) if b != 0.0 => Some(r / b),
            _ => None,
        };
        let verdict = match (mr, mb) {
            (Some(_), Some(_)) if matches!(target, Target::Compare) => "-",
            (Some(r), Some(b)) if target.met(r, b) => "met",
            (Some(_), Some(_)) => {
                missed += 1;
                "MISSED"
            }
            _ => {
                missed += 1;
                "no data"
            }
        };
        println!(
            "{:<60} {:>8}  {:<26} {:<26} {:>6}  {:<18} {}",
            name,
            unit,
            cell(res),
            cell(base),
            ratio.map_or("-".into(), |r| format!("{r:.2}x")),
            target.describe(unit),
            verdict
        );
        json_rows.push(json!({
            "name": name,
            "resocket": mr,
            "baseline": mb,
            "ratio": ratio,
            "unit": unit,
            "better": if *higher { "higher" } else { "lower" },
        }));
    }
    println!("{}", "-".repeat(164));
    let path = output_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::File::create(&path)?;
    writeln!(file, "{}", serde_json::to_string_pretty(&json_rows)?)?;
    println!(
        "{} figures, {} missed or without data; written to {}; took {:.0} s",
        rows.len(),
        missed,
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--serve") => {
            let port = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            if let Err(e) = server::serve(port) {
                eprintln!("overhead server: {e}");
                std::process::exit(1);
            }
        }
        Some("--client") => client_main(args.get(1).map_or("", String::as_str)),
        _ => {
            // `cargo test --benches` runs this without `--bench`: nothing to do there.
            let chosen = ["--bench", "--quick", "--full"];
            if !args.iter().any(|a| chosen.contains(&a.as_str())) {
                println!("overhead: run with `cargo bench --bench overhead [-- --quick]`");
                return;
            }
            let settings = match parse_settings(&args) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("overhead: {e}");
                    std::process::exit(2);
                }
            };
            if let Err(e) = harness(settings) {
                eprintln!("overhead: {e}");
                std::process::exit(1);
            }
        }
    }
}
