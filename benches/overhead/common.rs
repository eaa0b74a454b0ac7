//! What every process of the harness shares: the message, the clocks, the child processes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub type BoxError = Box<dyn std::error::Error>;

/// The message every benchmark sends and decodes: 64 bytes of JSON for a six-digit `seq`.
#[derive(Serialize, Debug, Clone, Copy)]
pub struct TickOut {
    pub seq: u64,
    pub sym: &'static str,
    pub px: f64,
    pub qty: u32,
    pub side: &'static str,
}

impl TickOut {
    /// Checks the claim of the benchmark: every message is 64 bytes of JSON.
    pub fn check_size() -> Result<(), BoxError> {
        for seq in [0, 1, 899_999, 5_000_000] {
            let text = serde_json::to_string(&TickOut::new(seq))?;
            if text.len() != 64 {
                return Err(format!("{text} is {} bytes, not 64", text.len()).into());
            }
        }
        Ok(())
    }

    pub fn new(seq: u64) -> Self {
        TickOut {
            // Six digits whatever the counter, so every message has the same size.
            seq: 100_000 + seq % 900_000,
            sym: "BTC-USD",
            px: 4_321.5,
            qty: 17,
            side: "buy",
        }
    }
}

/// The same message decoded (owned strings: what an application would keep). Decoded for the
/// cost of it; no benchmark reads the fields.
#[derive(Deserialize, Debug, Clone)]
#[allow(dead_code)]
pub struct Tick {
    pub seq: u64,
    pub sym: String,
    pub px: f64,
    pub qty: u32,
    pub side: String,
}

/// CPU time used by this process so far, in nanoseconds: the sum of every thread's run time
/// (`/proc/self/task/*/schedstat`, nanosecond resolution), or utime + stime from
/// `/proc/self/stat` (10 ms ticks) where schedstat is missing.
pub fn cpu_ns() -> u64 {
    cpu_ns_of("self")
}

/// [`cpu_ns`] of the process `pid` ("self" for this one).
pub fn cpu_ns_of(pid: &str) -> u64 {
    let mut total = 0u64;
    let mut found = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten().take(4096) {
            let path = task.path().join("schedstat");
            if let Some(ns) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            {
                total += ns;
                found = true;
            }
        }
    }
    if found && total > 0 {
        return total;
    }
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which is in parentheses and may hold spaces).
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let utime: u64 = f.get(11)?.parse().ok()?;
            let stime: u64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) * 10_000_000)
        })
        .unwrap_or(0)
}

/// Resident set size of this process in bytes (`VmRSS`).
pub fn rss_bytes() -> u64 {
    rss_bytes_of("self")
}

/// [`rss_bytes`] of the process `pid` ("self" for this one).
pub fn rss_bytes_of(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
pub fn raise_fd_limit() -> u64 {
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

/// Ends this process when its parent closes our stdin (the parent ended, normally or not), so
/// that no server or client outlives the harness.
pub fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        // Bounded: one read per byte the parent writes, and the parent writes nothing.
        for _ in 0..1_000_000 {
            match stdin.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        std::process::exit(0);
    });
}

/// The server, in a child process (this program re-run with `--serve PORT`).
pub struct ServerProcess {
    child: Child,
    /// Held open: the server exits when it closes.
    _stdin: Option<ChildStdin>,
    pub addr: SocketAddr,
    /// The CPU the server is pinned to, if any.
    pub cpu: Option<u64>,
}

impl ServerProcess {
    /// Starts the server on `port` (0: any), pinned to `cpu` if given (with `taskset`), and
    /// waits until it listens (at most 10 s).
    pub fn spawn(port: u16, cpu: Option<u64>) -> Result<Self, BoxError> {
        let exe = std::env::current_exe()?;
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(["--serve", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout from the server")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the server did not start within 10 s".into());
            }
        };
        let addr = line
            .strip_prefix("LISTENING ")
            .ok_or_else(|| format!("server did not start: {line:?}"))?
            .trim()
            .parse()?;
        Ok(ServerProcess {
            child,
            _stdin: stdin,
            addr,
            cpu,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}/{path}", self.addr)
    }

    /// The server's process id (`taskset` execs it, so the child's pid is the server's).
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Kills the server at once (SIGKILL: its connections drop without a Close frame).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Prints the client's result line for the harness.
pub fn print_result(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "RESULT {value}");
    let _ = out.flush();
}

/// The `q`-quantile (0..=1) of sorted samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Polls `done` every 5 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}
