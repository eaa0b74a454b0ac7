//! Restarts and closes at the worst moment: a supervisor restart with requests and drops in
//! flight, a client that closes and then keeps sending or stops reading. A hostile review's
//! reproductions (round 5); each failed before its fix, as its comment says.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::testing::Panic;
use resocket::{Error, GetSender, GetSocket, GetStatus, Outbox, Overflow, Request, StartSocket};

use common::supervision::{request_in_background, restarted, supervised_down, tree};

// =======================================================================================
// Area 3: supervisor restart inheritance.
// =======================================================================================

/// Acked mode, supervised (Permanent, the default). A request is in flight (written, not
/// acked) when the socket gives up: `set_phase(Closed)` fails every pending request with
/// `Error::Closed` (src/socket.rs, `fail_all_requests` in `set_phase`), but `stopped()` still
/// hands the AckedLink with the in-flight request to the restarted socket, which resends it:
/// the server executes a request whose caller was told it was closed (a caller that retries on
/// Closed executes it twice). Round 4 fixed exactly this for a panic; the Closed path (GaveUp,
/// Fatal, ByUser under Permanent/Transient) still does it.
#[actix_rt::test]
async fn an_acked_request_in_flight_when_a_supervised_socket_gives_up_is_answered_by_the_restart_not_told_closed(
) {
    let server = TestServer::start().await;
    let app = common::rpc_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let tree = tree(1000);
    let watch = Watch::detached();
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("r5-gave-up")
        .requests("/id")
        .heartbeat(Duration::from_secs(10), Duration::from_secs(30))
        .connect_timeout(Duration::from_millis(500))
        .backoff(common::giving_up_after(1))
        .build()
        .unwrap();
    tree.send(watch.subscribe_all(StartSocket::new("rpc", config)))
        .await
        .unwrap()
        .unwrap();
    watch.wait_opens(1).await;
    let socket = tree.send(GetSocket("rpc".into())).await.unwrap().unwrap();
    common::welcomed(&socket).await;
    proxy.stall(true);
    let answer = request_in_background(
        &socket,
        Request::new(r#"{"id":1,"method":"echo"}"#, Duration::from_secs(20)),
    );
    common::wait_status(&socket, "written, in flight", |s| s.unacked == 1).await;
    // The connection dies; the stalled path makes every reconnect time out: it gives up.
    proxy.cut(common::proxy::Cut::Rst);
    let _after = restarted(&tree, "rpc", &socket).await;
    proxy.stall(false);
    wait_for("the caller answered", DEADLINE, || {
        answer.lock().unwrap().is_some()
    })
    .await;
    let told = answer.lock().unwrap().take().unwrap();
    // The restarted socket resent what it inherited and answered the request; a probe
    // behind it shows that nothing else of it is still on its way.
    tree.do_send(resocket::SendTo {
        key: "rpc".into(),
        message: "probe".into(),
    });
    wait_for("the probe reached the app", DEADLINE, || {
        app.lock().unwrap().iter().any(|m| m.text == "probe")
    })
    .await;
    let executed = app
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.text.contains(r#""method":"echo""#))
        .count();
    assert_eq!(
        told.map_err(|e| e.error),
        Ok(serde_json::json!({"id": 1, "result": null}))
    );
    assert_eq!(executed, 1, "the server executed the request once");
}

/// A supervised socket that is down (long backoff). A request waits in the outbox; a
/// `Sender` push under DropOldest drops the request's message. The drop is noted in the old
/// outbox (`take_dropped_requests`) and reported at the actor's next turn — but a panic comes
/// first, and `stopped()` (src/socket.rs) hands over the queue without reporting or carrying
/// the pending outbox events. The restarted socket adopts a request whose message no longer
/// exists: its caller waits its whole timeout and gets RequestTimeout instead of Dropped at once.
#[actix_rt::test]
async fn a_request_dropped_just_before_a_restart_fails_at_once() {
    let tree = tree(10);
    let (_server, _watch, socket) = supervised_down(&tree, "drop", |url| {
        fast(url)
            .requests("/id")
            .outbox(Outbox::bounded(1).on_overflow(Overflow::DropOldest))
            .backoff(resocket::Backoff::exponential(
                Duration::from_secs(5),
                Duration::from_secs(5),
            ))
    })
    .await;
    let answer = request_in_background(
        &socket,
        Request::new(r#"{"id":1,"method":"echo"}"#, Duration::from_secs(8)),
    );
    common::wait_status(&socket, "pending", |s| s.pending_requests == 1).await;
    let sender = socket.send(GetSender).await.unwrap();
    sender.send("newer").unwrap(); // drops the request's message (DropOldest, bound 1)
    socket.do_send(Panic);
    let after = restarted(&tree, "drop", &socket).await;
    // Failed with the drop, not by its 8 s timeout (which would answer RequestTimeout).
    wait_for("the request answered", DEADLINE, || {
        answer.lock().unwrap().is_some()
    })
    .await;
    let told = answer.lock().unwrap().take().unwrap();
    assert_eq!(told.map_err(|e| e.error), Err(Error::Dropped { count: 1 }));
    let status = after.send(GetStatus).await.unwrap();
    assert_eq!(status.pending_requests, 0);
}

/// Same setup without a request: a `Sender` push under DropOldest drops an older message
/// (the sender was told Ok). The drop is reported as `Error::Dropped` at the actor's next
/// turn; a restart first loses it (`stopped()` does not report outbox events): a message
/// lost with no event, no count ("nothing is lost without a count").
#[actix_rt::test]
async fn a_sender_drop_just_before_a_restart_is_reported() {
    let tree = tree(10);
    let (_server, watch, socket) = supervised_down(&tree, "drop2", |url| {
        fast(url)
            .outbox(Outbox::bounded(1).on_overflow(Overflow::DropOldest))
            .backoff(resocket::Backoff::exponential(
                Duration::from_secs(5),
                Duration::from_secs(5),
            ))
    })
    .await;
    let sender = socket.send(GetSender).await.unwrap();
    sender.send("older").unwrap();
    sender.send("newer").unwrap(); // drops "older"
    socket.do_send(Panic);
    let after = restarted(&tree, "drop2", &socket).await;
    // The restarted socket has run its start (a GetStatus answers after it).
    let _ = after.send(GetStatus).await.unwrap();
    let reported = || {
        watch
            .errors()
            .iter()
            .any(|e| matches!(e, Error::Dropped { .. }))
    };
    let start = Instant::now();
    while !reported() && start.elapsed() < Duration::from_secs(1) {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        reported(),
        "\"older\" was dropped (the sender was told Ok) and no Error::Dropped was ever reported; errors seen: {:?}",
        watch.errors()
    );
}

// =======================================================================================
// Area 2: the server session's deferred answering Close.
// =======================================================================================

/// A masked client frame.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn close_frame(code: u16) -> Vec<u8> {
    client_frame(0x88, &code.to_be_bytes())
}

fn text_frame(text: &str) -> Vec<u8> {
    client_frame(0x81, text.as_bytes())
}

fn ping_frame() -> Vec<u8> {
    client_frame(0x89, b"p")
}

/// RFC 6455 5.5.1: after its Close a client sends no data, and what follows is not data of the
/// session. Before today the session stopped at the Close (nothing after it was handled); now
/// it queues `Command::Close` to itself (src/server.rs, `ws::Message::Close` in the
/// StreamHandler) and keeps handing every later frame to the handler until that command
/// runs: data the client sent after closing reaches the application.
#[actix_rt::test]
async fn data_after_the_clients_close_does_not_reach_the_handler() {
    let server = TestServer::start().await;
    let addr = server.addr;
    let code = actix_rt::task::spawn_blocking(move || {
        let mut stream = common::raw_server::raw_upgrade(addr, "/ws");
        let mut bytes = close_frame(1000);
        bytes.extend(text_frame("after-close"));
        stream.write_all(&bytes).unwrap();
        common::raw_server::read_close_code(&mut stream)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1000), "the session answers the Close");
    wait_for("the session ended", DEADLINE, || {
        !server.close_codes().is_empty()
    })
    .await;
    assert_eq!(server.close_codes(), [Some(1000)]);
    assert!(
        !server.received().contains(&"after-close".to_string()),
        "a text sent after the client's Close reached the handler: {:?}",
        server.received()
    );
}

/// A handler that answers "flood" with one 12 MB message; records `closed`.
struct Flood {
    closed: Arc<Mutex<Vec<Option<u16>>>>,
}

impl resocket::server::SessionHandler for Flood {
    fn text(&mut self, session: &resocket::server::Session, text: &str) {
        if text == "flood" {
            session.text("x".repeat(12 * 1024 * 1024));
        }
    }
    fn closed(&mut self, code: Option<u16>) {
        self.closed.lock().unwrap().push(code);
    }
}

async fn flood_server(closed: Arc<Mutex<Vec<Option<u16>>>>) -> std::net::SocketAddr {
    use actix_web::{web, App, HttpRequest, HttpServer};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let closed = closed.clone();
        App::new().route(
            "/flood",
            web::get().to(move |req: HttpRequest, payload: web::Payload| {
                let handler = Flood {
                    closed: closed.clone(),
                };
                async move {
                    resocket::server::accept(
                        &req,
                        payload,
                        handler,
                        resocket::server::ServerConfig::default(),
                    )
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)
    .unwrap()
    .run();
    actix_rt::spawn(server);
    addr
}

/// A client asks for a large message, then closes and stops reading (it is done). Before
/// today the session stopped when it read the Close: `SessionHandler::closed` ran, the hub
/// learnt the client was gone. Now the Close is a command queued behind the session's turn;
/// the turn that read the Close also produced 12 MB the client does not read, so actix-web
/// stops polling the session (its write buffer is full) and the queued Close never runs: the
/// session never ends (no heartbeat either: it runs on the same stalled actor).
///
/// Deterministic: the client's frames arrive in one segment; actix handles at most 16 stream
/// items per turn, so "flood" + 15 pings fill one turn, and the next turn writes the 12 MB
/// (its mailbox comes first) and then reads the Close.
#[actix_rt::test]
async fn a_client_that_closes_and_stops_reading_ends_its_session() {
    let closed: Arc<Mutex<Vec<Option<u16>>>> = Arc::default();
    let addr = flood_server(closed.clone()).await;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        let mut stream = common::raw_server::raw_upgrade(addr, "/flood");
        let mut bytes = text_frame("flood");
        for _ in 0..15 {
            bytes.extend(ping_frame());
        }
        bytes.extend(close_frame(1000));
        stream.write_all(&bytes).unwrap();
        // Never reads; holds the connection until the test is done.
        let _ = rx.recv_timeout(Duration::from_secs(10));
        let mut sink = [0u8; 1];
        let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
        let _ = stream.read(&mut sink);
    });
    let start = Instant::now();
    while closed.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(3) {
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let ended = !closed.lock().unwrap().is_empty();
    let _ = tx.send(());
    let _ = client.join();
    assert!(
        ended,
        "3 s after the client's Close the session has not ended (SessionHandler::closed never ran)"
    );
}

// =======================================================================================
// What held (these pass): inheritance of default-mode requests, ids and tokens across a
// restart; a Temporary child's callers are answered.
// =======================================================================================

/// A request queued while down survives a panic restart and is answered once the server is
/// back; its id stays taken in the restarted socket; a new request gets a fresh token (no
/// collision with the adopted one: both answered, each with its own reply).
#[actix_rt::test]
async fn adopted_requests_keep_their_ids_and_new_ones_do_not_collide() {
    let tree = tree(10);
    let (mut server, _watch, socket) =
        supervised_down(&tree, "ids", |url| fast(url).requests("/id")).await;
    let first = request_in_background(
        &socket,
        Request::new(
            r#"{"id":1,"method":"echo","params":"a"}"#,
            Duration::from_secs(8),
        ),
    );
    common::wait_status(&socket, "pending", |s| s.pending_requests == 1).await;
    socket.do_send(Panic);
    let after = restarted(&tree, "ids", &socket).await;
    let same_id = after
        .send(Request::new(
            r#"{"id":1,"method":"echo"}"#,
            Duration::from_secs(8),
        ))
        .await
        .unwrap();
    assert!(
        matches!(&same_id, Err(e) if matches!(e.error, Error::InvalidRequest(_))),
        "{same_id:?}"
    );
    let second = request_in_background(
        &after,
        Request::new(
            r#"{"id":2,"method":"echo","params":"b"}"#,
            Duration::from_secs(8),
        ),
    );
    common::wait_status(&after, "two pending", |s| s.pending_requests == 2).await;
    server.restart().await;
    wait_for("both answered", DEADLINE, || {
        first.lock().unwrap().is_some() && second.lock().unwrap().is_some()
    })
    .await;
    let first = first.lock().unwrap().take().unwrap().map_err(|e| e.error);
    let second = second.lock().unwrap().take().unwrap().map_err(|e| e.error);
    // (The test server echoes a request before it answers it: the echo, same id, is the reply.)
    let first = first.unwrap();
    let second = second.unwrap();
    assert_eq!(
        (&first["id"], &first["params"]),
        (&serde_json::json!(1), &serde_json::json!("a"))
    );
    assert_eq!(
        (&second["id"], &second["params"]),
        (&serde_json::json!(2), &serde_json::json!("b"))
    );
}

/// A Temporary child that panics with a request pending: not restarted; the caller is
/// answered (Closed) at once, not left waiting for its timeout.
#[actix_rt::test]
async fn a_temporary_childs_pending_request_is_answered_when_it_ends() {
    let tree = tree(10);
    let mut server = TestServer::start().await;
    let watch = Watch::detached();
    let config = fast(&server.url()).requests("/id").build().unwrap();
    let start = StartSocket::new("temp", config).policy(resocket::RestartPolicy::Temporary);
    tree.send(watch.subscribe_all(start))
        .await
        .unwrap()
        .unwrap();
    watch.wait_opens(1).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    let socket = tree.send(GetSocket("temp".into())).await.unwrap().unwrap();
    let answer = request_in_background(
        &socket,
        Request::new(r#"{"id":1,"method":"echo"}"#, Duration::from_secs(20)),
    );
    common::wait_status(&socket, "pending", |s| s.pending_requests == 1).await;
    socket.do_send(Panic);
    wait_for("the request answered", DEADLINE, || {
        answer.lock().unwrap().is_some()
    })
    .await;
    let told = answer.lock().unwrap().take();
    assert!(
        matches!(&told, Some(Err(e)) if e.error == Error::Closed),
        "{told:?}"
    );
}

// =======================================================================================
// Area 4: docs after the renames.
// =======================================================================================
