//! The frame guards (client and server), the liveness rules and the hub's instance/`yours`
//! handover under attack, over real sockets on 127.0.0.1. These began as a hostile review's
//! reproductions: each comment says what failed before its fix, or which property it guards.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::raw::RawClient;
use common::raw_server::{frame, header, raw_upgrade, RawServer, CONTINUATION, FIN, TEXT};
use common::{fast, record_app, wait_for, TestServer, Watch, DEADLINE};
use resocket::server::{Command, GetHubStats, Hub, HubConfig, ServerConfig};
use resocket::{Backoff, Error, GetStatus, SendMessage, SocketActor};

const PING: u8 = 0x9;
const PONG: u8 = 0xA;
const MIB: usize = 1 << 20;

/// Keeps the connection open, reading (and dropping) what the peer writes, until it closes.
fn hold(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 4096];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

/// Writes `total` payload bytes in 1 MiB chunks until a write fails (the peer closed, or
/// stopped reading for 2 s); returns how many were written.
fn stream_payload(stream: &mut TcpStream, total: usize) -> usize {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let chunk = vec![0u8; MIB];
    let mut written = 0;
    while written < total {
        match stream.write(&chunk[..MIB.min(total - written)]) {
            Ok(0) | Err(_) => break,
            Ok(n) => written += n,
        }
    }
    written
}

/// A masked client frame header announcing `len` (mask 0: the payload reads as is).
fn masked_header(first: u8, len: u64) -> Vec<u8> {
    let mut out = vec![first];
    match len {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out
}

fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = masked_header(first, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn too_large(watch: &Watch) -> usize {
    watch
        .errors()
        .iter()
        .filter(|e| matches!(e, Error::MessageTooLarge { .. }))
        .count()
}

// ======================================================================================
// 1. Control frames are not covered by either guard: memory balloon
// ======================================================================================

// Failed before its fix (BALLOON, client). FrameGuard applies the size limit to data frames only
// (`!is_data || length <= max` passes the frame to awc's codec unchecked). A Ping (or Pong,
// Close) whose header announces 1 GiB goes to awc's codec, which waits for the whole frame
// (its read buffer grows with every byte) and only refuses it once all of it has arrived. The
// bytes keep `last_read` fresh, so the heartbeat never ends it either. Here the raw server
// streams 96 MiB of a Ping that announced 1 GiB to a client whose limit is 64 KiB, and the
// client reads (buffers) every byte of it. A control frame may not exceed 125 bytes (RFC 6455
// 5.5): it should be refused at its header.
#[actix_rt::test]
async fn client_a_ping_announcing_a_gigabyte_is_refused_at_its_header() {
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let (w, d) = (written.clone(), done.clone());
    let server = RawServer::start(move |stream| {
        if d.load(Ordering::SeqCst) {
            return hold(stream); // a reconnect: nothing more to prove
        }
        let _ = stream.write_all(&header(FIN | PING, 1 << 30));
        let n = stream_payload(stream, 96 * MIB);
        w.store(n, Ordering::SeqCst);
        d.store(true, Ordering::SeqCst);
    });
    let socket = SocketActor::connect(fast(&server.url()).max_message(64 * 1024).build().unwrap());
    let watch = Watch::attach(&socket);
    wait_for("the raw server to finish", DEADLINE * 3, || {
        done.load(Ordering::SeqCst)
    })
    .await;
    let n = written.load(Ordering::SeqCst);
    assert!(
        n < 24 * MIB,
        "the client read {} MiB of one Ping frame (limit 64 KiB) before refusing it; errors: {:?}",
        n / MIB,
        watch.errors()
    );
}

// Failed before its fix (BALLOON, server). The same hole in PayloadGuard: `is_data && length > max` is the
// only check, so a masked Ping announcing 1 GiB is passed on unchanged and
// actix-web-actors' WsStream buffers it (its codec waits for the whole frame before checking
// its size). ServerConfig::max_message says "A larger one ends the session with 1009 as soon
// as its header arrives". The raw client streams 32 MiB of it into a session whose limit is
// 64 KiB: the session reads it all and never answers (until its heartbeat timeout).
#[actix_rt::test]
async fn server_a_ping_announcing_a_gigabyte_is_refused_at_its_header() {
    let server = TestServer::start_with(ServerConfig {
        max_message: 64 * 1024,
        heartbeat_interval: Duration::from_secs(30),
        heartbeat_timeout: Duration::from_secs(60),
        ..ServerConfig::default()
    })
    .await;
    let addr = server.addr;
    let (written, code) = actix_rt::task::spawn_blocking(move || {
        let mut stream = raw_upgrade(addr, "/ws");
        stream
            .write_all(&masked_header(FIN | PING, 1 << 30))
            .unwrap();
        let written = stream_payload(&mut stream, 32 * MIB);
        (written, common::raw_server::read_close_code(&mut stream))
    })
    .await
    .unwrap();
    assert!(
        code.is_some(),
        "no Close for a Ping announcing 1 GiB (limit 64 KiB); the session read {} MiB of it",
        written / MIB
    );
}

// ======================================================================================
// 2. The client guard's replay drops what the codec would have refused
// ======================================================================================

// Failed before its fix (protocol violation accepted). FrameGuard replays an oversized frame's header to the
// codec as `[first & (FIN | OPCODE), 0]`: the RSV bits and the MASK bit are dropped, so the
// codec cannot refuse what it refuses in any frame of allowed size (a masked server frame, a
// frame with RSV bits and no extension negotiated: RFC 6455 5.1 / 5.2 say the client MUST
// fail the connection). The comment says the codec "refuses what it would have refused". An
// oversized masked (or RSV1) frame is only "too large", and the connection goes on: "after"
// is delivered.
#[actix_rt::test]
async fn client_an_oversized_masked_or_rsv_frame_still_fails_the_connection() {
    let mut accepted = Vec::new();
    for (what, first, mask) in [
        ("masked", FIN | TEXT, true),
        ("RSV1", FIN | 0x40 | TEXT, false),
    ] {
        let server = RawServer::start(move |stream| {
            let mut bytes = if mask {
                masked_header(first, 2000)
            } else {
                header(first, 2000)
            };
            bytes.extend_from_slice(&[b'x'; 2000]);
            bytes.extend(frame(FIN | TEXT, b"after"));
            let _ = stream.write_all(&bytes);
            hold(stream);
        });
        let socket = SocketActor::connect(fast(&server.url()).max_message(1024).build().unwrap());
        let watch = Watch::attach(&socket);
        wait_for("a verdict", DEADLINE, || {
            !watch.texts().is_empty()
                || watch
                    .errors()
                    .iter()
                    .any(|e| matches!(e, Error::Connection(_)))
                || watch.opens() >= 2
        })
        .await;
        if !watch.texts().is_empty() {
            accepted.push(format!("{what}: {:?}", watch.errors()));
        }
        socket.do_send(resocket::Close::now());
    }
    assert!(
        accepted.is_empty(),
        "oversized frames skipped as merely too large, the connection going on: {accepted:?}"
    );
}

// Guards a property (the control for the test above): the same masked / RSV1 frames at an allowed size
// are refused by awc's codec and end the connection.
#[actix_rt::test]
async fn client_a_small_masked_or_rsv_frame_fails_the_connection() {
    for (first, mask) in [(FIN | TEXT, true), (FIN | 0x40 | TEXT, false)] {
        let server = RawServer::start(move |stream| {
            let mut bytes = if mask {
                masked_header(first, 20)
            } else {
                header(first, 20)
            };
            bytes.extend_from_slice(&[b'x'; 20]);
            bytes.extend(frame(FIN | TEXT, b"after"));
            let _ = stream.write_all(&bytes);
            hold(stream);
        });
        let socket = SocketActor::connect(fast(&server.url()).max_message(1024).build().unwrap());
        let watch = Watch::attach(&socket);
        wait_for("a verdict", DEADLINE, || {
            !watch.texts().is_empty() || watch.opens() >= 2
        })
        .await;
        assert!(watch.texts().is_empty(), "{:?}", watch.errors());
        socket.do_send(resocket::Close::now());
    }
}

// ======================================================================================
// 3. Framing properties that hold (PASS)
// ======================================================================================

// Guards a property (guards a property). Everything the guard must get right at once, written one byte
// at a time (TCP_NODELAY, a flush per byte): fragments with a Ping and a Pong between them,
// a frame of exactly the limit in 126 and in (non-minimal) 127 encoding, one byte over in
// both encodings, an oversized middle fragment followed by a control frame, and a normal
// message after all of it. One connection; exactly the good messages, in order.
#[actix_rt::test]
async fn client_byte_by_byte_fragments_controls_and_the_exact_limit() {
    const MAX: usize = 1024;
    fn header127(first: u8, len: u64) -> Vec<u8> {
        let mut out = vec![first, 127];
        out.extend_from_slice(&len.to_be_bytes());
        out
    }
    let mut bytes = Vec::new();
    bytes.extend(frame(TEXT, b"he"));
    bytes.extend(frame(FIN | PING, b"p"));
    bytes.extend(frame(CONTINUATION, b"ll"));
    bytes.extend(frame(FIN | PONG, b""));
    bytes.extend(frame(FIN | CONTINUATION, b"o"));
    // one over, 126 encoding
    bytes.extend(header(FIN | TEXT, MAX as u64 + 1));
    bytes.extend(vec![b'x'; MAX + 1]);
    // exactly the limit, 126 encoding
    bytes.extend(header(FIN | TEXT, MAX as u64));
    bytes.extend(vec![b'a'; MAX]);
    // exactly the limit, 127 encoding
    bytes.extend(header127(FIN | TEXT, MAX as u64));
    bytes.extend(vec![b'b'; MAX]);
    // one over, 127 encoding
    bytes.extend(header127(FIN | TEXT, MAX as u64 + 1));
    bytes.extend(vec![b'y'; MAX + 1]);
    // first fragment fine, middle oversized, a ping, last fragment fine: one message lost
    bytes.extend(frame(TEXT, b"q"));
    bytes.extend(header(CONTINUATION, MAX as u64 + 1));
    bytes.extend(vec![b'z'; MAX + 1]);
    bytes.extend(frame(FIN | PING, b""));
    bytes.extend(frame(FIN | CONTINUATION, b"r"));
    bytes.extend(frame(FIN | TEXT, b"end"));
    let server = RawServer::start(move |stream| {
        let _ = stream.set_nodelay(true);
        for b in &bytes {
            if stream.write_all(std::slice::from_ref(b)).is_err() {
                return;
            }
            let _ = stream.flush();
        }
        hold(stream);
    });
    let socket = SocketActor::connect(
        fast(&server.url())
            .heartbeat(Duration::from_secs(5), Duration::from_secs(10))
            .max_message(MAX)
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    wait_for("end", DEADLINE * 2, || {
        watch.texts().last().is_some_and(|t| t == "end")
    })
    .await;
    let expected = vec![
        "hello".to_string(),
        "a".repeat(MAX),
        "b".repeat(MAX),
        "end".to_string(),
    ];
    assert_eq!(watch.texts(), expected);
    assert_eq!(too_large(&watch), 3, "{:?}", watch.errors());
    assert_eq!((watch.opens(), server.connections()), (1, 1));
}

// Guards a property (guards a property). The server guard counts frames at their headers, the session
// counts StreamHandler calls; they must agree when many frames arrive in one TCP segment
// (WsStream reads every chunk available before decoding, so the guard is several frames
// ahead). Empty frames, a Ping, a Pong and a fragmented message come before the oversized
// frame; the ones before it are delivered, nothing after it.
#[actix_rt::test]
async fn server_pipelined_frames_in_one_segment_close_at_exactly_the_oversized_one() {
    let server = TestServer::start_with(ServerConfig {
        max_message: 1024,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.addr;
    let code = actix_rt::task::spawn_blocking(move || {
        let mut stream = raw_upgrade(addr, "/ws");
        let mut bytes = Vec::new();
        bytes.extend(masked(FIN | TEXT, b"one"));
        bytes.extend(masked(FIN | TEXT, b""));
        bytes.extend(masked(FIN | PING, b"p"));
        bytes.extend(masked(FIN | PONG, b""));
        bytes.extend(masked(TEXT, b"tw"));
        bytes.extend(masked(FIN | PING, b""));
        bytes.extend(masked(CONTINUATION, b""));
        bytes.extend(masked(FIN | CONTINUATION, b"o"));
        bytes.extend(masked_header(FIN | TEXT, 5000));
        bytes.extend(vec![b'x'; 5000]);
        bytes.extend(masked(FIN | TEXT, b"three"));
        stream.write_all(&bytes).unwrap();
        common::raw_server::read_close_code(&mut stream)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1009));
    assert_eq!(server.received(), ["one", "", "two"]);
}

// ======================================================================================
// 4. Liveness
// ======================================================================================

/// Blocks its thread (the socket's) for `stall` every `every`.
struct Staller {
    every: Duration,
    stall: Duration,
}
impl Actor for Staller {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        let stall = self.stall;
        ctx.run_interval(self.every, move |_, _| std::thread::sleep(stall));
    }
}

// Guards a property (guards a property). A thread that stalls at every heartbeat tick (150 ms of every
// 160, with a 50 ms interval: every tick is late by more than two intervals) must not hide a
// dead peer: the "a late tick does not judge" rule is once, the next tick (actix fires missed
// ticks back to back) judges, and the recheck confirms.
#[actix_rt::test]
async fn a_dead_peer_is_still_found_when_the_thread_stalls_at_every_tick() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    wait_for("server session", DEADLINE, || server.live() == 1).await;
    let _staller = Staller {
        every: Duration::from_millis(160),
        stall: Duration::from_millis(150),
    }
    .start();
    server.command_all(Command::Silence(true));
    let start = Instant::now();
    watch
        .wait_error("the dead peer found", |e| {
            matches!(e, Error::HeartbeatTimeout(_))
        })
        .await;
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

// ======================================================================================
// 5. The hub: instances and `yours`
// ======================================================================================

// Failed before its fix (LOSS). Two instances of one client id in turn, where the other instance moved the
// numbering on by no more than this link had sent. Instance A is welcomed (acked 0) and
// writes a1 as seq 1, which the hub does not accept (here: no application subscribed yet, so
// the session is closed with 1013 "try again later": a1 stays in A's flight). Before A's
// reconnect, instance B says hello (instance 99) and the application takes its b1 (seq 1).
// A comes back: the hub has nothing taken from A, so the welcome is `{"acked":1}` without
// `yours`; A has `ever_welcomed` and `acked (1) <= last_sent (1)`, so `mine = acked` and A
// prunes a1 as delivered. It never was: the application only ever sees b1. (The same happens
// whenever B's messages are no more than A's unaccepted ones: `acked <= last_sent` does not
// mean the acked ones are A's.)
#[actix_rt::test]
async fn an_instance_whose_messages_never_arrived_does_not_take_anothers_acks_for_its_own() {
    let server = TestServer::start().await;
    let hub = server.hub.clone();
    let url = server.acked_url();
    // A long backoff: B does its part while A waits to reconnect (a deadline, not a race).
    let a = SocketActor::connect(
        fast(&url)
            .acked("shared")
            .backoff(Backoff::exponential(
                Duration::from_secs(3),
                Duration::from_secs(3),
            ))
            .reconnect_spread(Duration::from_millis(1))
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&a);
    watch.wait_opens(1).await;
    a.send(SendMessage::text("a1")).await.unwrap().unwrap();
    // The hub has no application: it closes A's session with 1013, a1 not accepted.
    wait_for("A's connection closed", DEADLINE, || {
        watch.opens() == 1 && !watch.last_state().is_some_and(|s| s.is_open())
    })
    .await;
    let status = a.send(GetStatus).await.unwrap();
    assert_eq!(
        status.unacked, 1,
        "a1 was written and is in flight: {status:?}"
    );
    let app = record_app(&hub);
    // Instance B, the same id, another process.
    let mut b = RawClient::connect(&url).await;
    b.send(r#"{"type":"hello","client":"shared","last_seq":0,"instance":99}"#)
        .await;
    let welcome = b.text().await;
    assert!(welcome.contains(r#""acked":0"#), "{welcome}");
    b.send(r#"{"type":"msg","seq":1,"text":"b1"}"#).await;
    assert_eq!(b.text().await, r#"{"type":"ack","seq":1}"#);
    drop(b);
    // A reconnects and resumes.
    let start = Instant::now();
    loop {
        let s = a.send(GetStatus).await.unwrap();
        if s.state.is_open() && s.unacked == 0 && s.outbox_len == 0 && watch.opens() >= 2 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "A never settled: {s:?}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    // Give a resent a1 its chance to be handed over (it would be acked only once taken, so
    // `unacked == 0` above already means the hub took whatever A sent).
    let texts: Vec<String> = app.lock().unwrap().iter().map(|m| m.text.clone()).collect();
    assert!(
        texts.contains(&"a1".to_string()),
        "A was told a1 arrived (pruned at the welcome), but the application only had {texts:?}"
    );
}

// Guards a property (guards a property). A hello parked behind an application that never takes the
// earlier message: the client times out its welcome and reconnects, each new hello replaces
// the parked one (4001), so parked sessions do not pile up; once the application takes the
// message the latest hello is welcomed and everything arrives once.
#[actix_rt::test]
async fn parked_hellos_do_not_pile_up_behind_a_stuck_application() {
    use actix::dev::{MessageResponse, OneshotSender};
    use resocket::server::{FromClient, SubscribeHub};
    type Held = Arc<Mutex<Vec<OneshotSender<()>>>>;
    struct Stuck(Held, Arc<AtomicBool>);
    struct Reply(Held, bool);
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    struct App(Stuck, Arc<Mutex<Vec<String>>>);
    impl Actor for App {
        type Context = Context<Self>;
    }
    impl Handler<FromClient> for App {
        type Result = Reply;
        fn handle(&mut self, m: FromClient, _: &mut Context<Self>) -> Reply {
            self.1.lock().unwrap().push(m.text);
            Reply(self.0 .0.clone(), self.0 .1.load(Ordering::SeqCst))
        }
    }
    impl MessageResponse<App, FromClient> for Reply {
        fn handle(self, ctx: &mut Context<App>, tx: Option<OneshotSender<()>>) {
            let _ = ctx;
            if let Some(tx) = tx {
                if self.1 {
                    let _ = tx.send(());
                } else {
                    self.0.lock().unwrap().push(tx);
                }
            }
        }
    }
    let held: Held = Arc::default();
    let release = Arc::new(AtomicBool::new(false));
    let hub = Hub::new(HubConfig::default()).start();
    let app = App(Stuck(held.clone(), release.clone()), seen.clone()).start();
    hub.send(SubscribeHub {
        messages: app.recipient(),
        events: None,
    })
    .await
    .unwrap();
    let server = TestServer::start_full(ServerConfig::default(), hub.clone()).await;
    // The old process: m1, held by the application.
    let mut old = RawClient::connect(&server.acked_url()).await;
    old.hello("p", 0).await;
    old.send(r#"{"type":"msg","seq":1,"text":"m1"}"#).await;
    wait_for("m1 held", DEADLINE, || held.lock().unwrap().len() == 1).await;
    drop(old);
    // The new process: its hello is parked; short connect timeout, so it retries a few times.
    let socket = SocketActor::connect(
        fast(&server.acked_url())
            .acked("p")
            .connect_timeout(Duration::from_millis(150))
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    socket.send(SendMessage::text("m2")).await.unwrap().unwrap();
    wait_for("several parked hellos", DEADLINE, || watch.opens() >= 4).await;
    assert!(
        server.max_live() <= 3,
        "parked sessions pile up: {} live at once",
        server.max_live()
    );
    release.store(true, Ordering::SeqCst);
    for tx in held.lock().unwrap().drain(..) {
        let _ = tx.send(());
    }
    wait_for("m2 taken", DEADLINE, || {
        seen.lock().unwrap().contains(&"m2".to_string())
    })
    .await;
    let stats = hub.send(GetHubStats).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["m1", "m2"], "{stats:?}");
}
