//! Interop with WebSocket servers nobody here wrote: Python `websockets` and Node `ws`
//! (installed at pinned versions by `tests/interop/install.sh`, which `.ci/run` runs).
//! Outside CI a missing peer is reported and the test skipped; in CI it is a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{fast, wait_for, Watch, DEADLINE};
use resocket::{Disconnect, Error, SendMessage, SocketActor, SocketState};

/// A peer server in a child process.
struct Peer {
    child: Child,
    url: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Python,
    Node,
}

fn start(kind: Kind) -> Option<Peer> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let (installed, mut command) = match kind {
        Kind::Python => {
            let mut c = Command::new("python3");
            c.arg(format!("{dir}/python_server.py"))
                .env("PYTHONPATH", format!("{dir}/.python"));
            (format!("{dir}/.python/websockets"), c)
        }
        Kind::Node => {
            let mut c = Command::new("node");
            c.arg(format!("{dir}/node_server.js"))
                .env("NODE_PATH", format!("{dir}/.node/node_modules"));
            (format!("{dir}/.node/node_modules/ws"), c)
        }
    };
    let name = match kind {
        Kind::Python => "Python websockets",
        Kind::Node => "Node ws",
    };
    if !std::path::Path::new(&installed).exists() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{name} is not installed at {installed}: .ci/run must run tests/interop/install.sh"
            );
        }
        eprintln!(
            "SKIPPED: interop with {name}: not installed (run `bash tests/interop/install.sh`)"
        );
        return None;
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the {name} server: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} said {line:?}"));
    Some(Peer {
        child,
        url: format!("ws://127.0.0.1:{port}/"),
    })
}

async fn echo(kind: Kind) {
    let Some(peer) = start(kind) else { return };
    let socket = SocketActor::connect(fast(&peer.url).build().unwrap());
    let watch = Watch::attach(&socket);
    for i in 0..20 {
        socket
            .send(SendMessage::text(format!("m{i}")))
            .await
            .unwrap()
            .unwrap();
    }
    socket
        .send(SendMessage::binary(vec![0u8, 255]))
        .await
        .unwrap()
        .unwrap();
    let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    wait_for("echoes", DEADLINE, || watch.texts() == expected).await;
    wait_for("binary echo", DEADLINE, || {
        watch.log.lock().unwrap().binary == [vec![0u8, 255]]
    })
    .await;
}

async fn server_pings_are_answered(kind: Kind) {
    let Some(peer) = start(kind) else { return };
    // The peer pings every 100 ms and drops a client that does not answer; our own heartbeat
    // is slow, so only our pongs keep the connection.
    let config = fast(&peer.url)
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    actix_rt::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        watch.opens(),
        1,
        "the peer dropped us: {:?}",
        watch.states()
    );
    socket
        .send(SendMessage::text("still here"))
        .await
        .unwrap()
        .unwrap();
    wait_for("echo", DEADLINE, || watch.texts() == ["still here"]).await;
}

async fn server_close_codes(kind: Kind) {
    let Some(peer) = start(kind) else { return };
    let socket = SocketActor::connect(fast(&peer.url).fatal_close_code(4002).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    socket
        .send(SendMessage::text("close:4001"))
        .await
        .unwrap()
        .unwrap();
    watch.wait_opens(2).await;
    assert!(watch.states().iter().any(|s| matches!(
        s,
        SocketState::Backoff {
            cause: Disconnect::PeerClosed {
                code: Some(4001),
                ..
            },
            ..
        }
    )));
    socket
        .send(SendMessage::text("close:4002"))
        .await
        .unwrap()
        .unwrap();
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    assert!(matches!(
        state,
        SocketState::Closed {
            reason: resocket::CloseReason::PeerClosed {
                code: Some(4002),
                ..
            }
        }
    ));
}

async fn abrupt_disconnect_and_reconnect(kind: Kind) {
    let Some(peer) = start(kind) else { return };
    let config = fast(&peer.url)
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .identify("hello")
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    wait_for("identify echoed", DEADLINE, || watch.texts() == ["hello"]).await;
    socket
        .send(SendMessage::text("abort"))
        .await
        .unwrap()
        .unwrap();
    watch.wait_opens(2).await;
    assert!(watch.states().iter().any(|s| matches!(
        s,
        SocketState::Backoff {
            cause: Disconnect::ConnectionLost(_),
            ..
        }
    )));
    wait_for("identify again", DEADLINE, || {
        watch.texts() == ["hello", "hello"]
    })
    .await;
}

async fn oversized_message(kind: Kind) {
    let Some(peer) = start(kind) else { return };
    let socket = SocketActor::connect(fast(&peer.url).max_message(1000).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    socket
        .send(SendMessage::text("big:5000"))
        .await
        .unwrap()
        .unwrap();
    watch
        .wait_error("too large", |e| {
            *e == Error::MessageTooLarge { limit: 1000 }
        })
        .await;
    socket
        .send(SendMessage::text("after"))
        .await
        .unwrap()
        .unwrap();
    wait_for("the next message", DEADLINE, || watch.texts() == ["after"]).await;
    assert_eq!(watch.opens(), 1);
}

macro_rules! interop {
    ($($name:ident => $scenario:ident($kind:expr);)*) => {
        $(
            #[actix_rt::test]
            async fn $name() {
                $scenario($kind).await;
            }
        )*
    };
}

interop! {
    python_echo => echo(Kind::Python);
    node_echo => echo(Kind::Node);
    python_pings_answered => server_pings_are_answered(Kind::Python);
    node_pings_answered => server_pings_are_answered(Kind::Node);
    python_close_codes => server_close_codes(Kind::Python);
    node_close_codes => server_close_codes(Kind::Node);
    python_abrupt_disconnect => abrupt_disconnect_and_reconnect(Kind::Python);
    node_abrupt_disconnect => abrupt_disconnect_and_reconnect(Kind::Node);
    python_oversized => oversized_message(Kind::Python);
    node_oversized => oversized_message(Kind::Node);
}
