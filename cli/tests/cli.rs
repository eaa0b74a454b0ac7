//! The `resocket` binary, driven as a person or a script would: stdin in, stdout and stderr out,
//! exit codes.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::proxy::{Cut, Proxy};
use common::{wait_for, TestServer, DEADLINE};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

struct Cli {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<actix_rt::task::JoinHandle<()>>,
}

impl Cli {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_resocket"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let (stdout, out_reader) = collect(child.stdout.take().unwrap());
        let (stderr, err_reader) = collect(child.stderr.take().unwrap());
        Cli {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    async fn write_lines(&mut self, lines: impl IntoIterator<Item = String>) {
        let stdin = self.stdin.as_mut().unwrap();
        for line in lines {
            stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .unwrap();
        }
        if let Err(e) = stdin.flush().await {
            let status = self.child.wait().await;
            panic!(
                "the CLI stopped reading ({e}): {status:?}, stderr {:?}",
                self.stderr()
            );
        }
    }

    /// Closes stdin and waits for the exit code.
    async fn finish(&mut self) -> i32 {
        drop(self.stdin.take());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the CLI did not exit")
            .unwrap();
        // The readers end at EOF, once they have every line.
        for reader in self.readers.drain(..) {
            tokio::time::timeout(DEADLINE, reader)
                .await
                .unwrap()
                .unwrap();
        }
        status.code().unwrap_or(-1)
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }
}

type Lines = Arc<Mutex<Vec<String>>>;

/// Collects a pipe's lines until EOF.
fn collect(
    pipe: impl tokio::io::AsyncRead + Unpin + 'static,
) -> (Lines, actix_rt::task::JoinHandle<()>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reader = actix_rt::spawn(async move {
        let mut reader = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    (lines, reader)
}

const FAST: &[&str] = &[
    "--heartbeat",
    "50ms",
    "--heartbeat-timeout",
    "3s",
    "--backoff-min",
    "10ms",
    "--backoff-max",
    "50ms",
];

fn args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![url];
    v.extend_from_slice(FAST);
    v.extend_from_slice(extra);
    v
}

#[actix_rt::test]
async fn lines_are_sent_in_order_and_replies_printed() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut cli = Cli::start(&args(&url, &["--identify", r#"{"op":"hello"}"#]));
    cli.write_lines((0..50).map(|i| format!("line {i}"))).await;
    assert_eq!(cli.finish().await, 0, "stderr: {:?}", cli.stderr());
    let mut expected = vec![r#"{"op":"hello"}"#.to_string()];
    expected.extend((0..50).map(|i| format!("line {i}")));
    assert_eq!(server.received(), expected);
    // The echo server's replies, one per line, in order.
    assert_eq!(cli.stdout(), expected);
    assert_eq!(server.close_codes(), [Some(1000)], "closed cleanly");
}

#[actix_rt::test]
async fn a_connection_dropped_in_the_middle_of_the_input_loses_no_line() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let url = proxy.url();
    let mut cli = Cli::start(&args(&url, &["--events", "json"]));
    cli.write_lines((0..100).map(|i| format!("{i}"))).await;
    wait_for("first half at the server", DEADLINE, || {
        server.received().len() == 100
    })
    .await;
    proxy.cut(Cut::Fin);
    wait_for("the CLI saw the drop", DEADLINE, || {
        cli.stderr()
            .iter()
            .any(|l| l.contains(r#""state":"backoff""#))
    })
    .await;
    // Read while disconnected: kept and sent after reconnecting.
    cli.write_lines((100..200).map(|i| format!("{i}"))).await;
    assert_eq!(cli.finish().await, 0, "stderr: {:?}", cli.stderr());
    let expected: Vec<String> = (0..200).map(|i| format!("{i}")).collect();
    assert_eq!(server.received(), expected);
}

#[actix_rt::test]
async fn usage_errors_are_one_line_and_exit_2() {
    for bad in [
        vec![],
        vec!["http://127.0.0.1:1/"],
        vec!["ws://127.0.0.1:1/", "--heartbeat", "5"],
        vec!["ws://127.0.0.1:1/", "--bogus"],
        vec!["ws://127.0.0.1:1/", "--identify", "{not json"],
        vec!["ws://127.0.0.1:1/", "--header", "no-colon"],
        vec![
            "ws://127.0.0.1:1/",
            "--backoff-min",
            "2s",
            "--backoff-max",
            "1s",
        ],
    ] {
        let mut cli = Cli::start(&bad);
        assert_eq!(cli.finish().await, 2, "{bad:?}");
        let err = cli.stderr();
        assert_eq!(err.len(), 1, "{bad:?}: {err:?}");
        assert!(err[0].starts_with("resocket: "), "{err:?}");
    }
}

#[actix_rt::test]
async fn a_refused_handshake_exits_3() {
    let server = TestServer::start().await;
    let url = server.status_url(401);
    let mut cli = Cli::start(&args(&url, &[]));
    assert_eq!(cli.finish().await, 3);
    assert!(
        cli.stderr().iter().any(|l| l.contains("HTTP 401")),
        "{:?}",
        cli.stderr()
    );
}

#[actix_rt::test]
async fn giving_up_exits_1() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", dead.local_addr().unwrap());
    drop(dead);
    let mut cli = Cli::start(&args(&url, &["--max-attempts", "2"]));
    cli.write_lines(["x".to_string()]).await;
    assert_eq!(cli.finish().await, 1, "{:?}", cli.stderr());
    assert!(cli
        .stderr()
        .iter()
        .any(|l| l.contains("gave up after 2 attempts")));
}

#[actix_rt::test]
async fn a_drain_timeout_exits_4_and_says_how_many() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", dead.local_addr().unwrap());
    drop(dead);
    let mut cli = Cli::start(&args(&url, &["--drain-timeout", "300ms"]));
    cli.write_lines((0..3).map(|i| format!("{i}"))).await;
    assert_eq!(cli.finish().await, 4, "{:?}", cli.stderr());
    let err = cli.stderr();
    assert!(
        err.last().unwrap().contains("3 message(s) unsent"),
        "{err:?}"
    );
}

#[actix_rt::test]
async fn json_events_have_the_documented_keys() {
    let server = TestServer::start().await;
    let url = server.url();
    let mut cli = Cli::start(&args(&url, &["--events", "json"]));
    cli.write_lines(["hi".to_string()]).await;
    assert_eq!(cli.finish().await, 0);
    let events: Vec<serde_json::Value> = cli
        .stderr()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert!(events.len() >= 3, "{events:?}");
    for e in &events {
        for key in ["ts", "event", "state", "attempt", "reason", "detail"] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
    }
    let states: Vec<&str> = events.iter().filter_map(|e| e["state"].as_str()).collect();
    assert_eq!(states, ["connecting", "open", "closed"]);
    assert_eq!(events[0]["attempt"], 1);
}

#[actix_rt::test]
async fn acked_mode_delivers_every_line_once_through_a_cut_mid_write() {
    let server = TestServer::start().await;
    let app = common::record_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let url = format!("ws://{}/acked", proxy.addr);
    let mut cli = Cli::start(&[
        &url,
        "--acked",
        "cli-1",
        "--backoff-min",
        "10ms",
        "--backoff-max",
        "50ms",
    ]);
    cli.write_lines((0..50).map(|i| format!("{i}"))).await;
    wait_for("first half", DEADLINE, || app.lock().unwrap().len() == 50).await;
    // Lines written into a stalled path are never acknowledged; the cut loses them in flight.
    proxy.stall(true);
    cli.write_lines((50..100).map(|i| format!("{i}"))).await;
    proxy.cut(Cut::Rst);
    proxy.stall(false);
    assert_eq!(cli.finish().await, 0, "stderr: {:?}", cli.stderr());
    let texts: Vec<String> = app.lock().unwrap().iter().map(|m| m.text.clone()).collect();
    let expected: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
    assert_eq!(texts, expected);
}
