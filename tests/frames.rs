//! Frames no well-behaved server sends, and peers that are slow rather than dead: a header that
//! announces 1 GiB, oversized first and last fragments, one large message trickled over
//! several heartbeat timeouts, a client thread that is stalled while its peer talks on. Raw
//! servers write the bytes; nothing here is mocked.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::raw_server::{frame, header, RawServer, CONTINUATION, FIN, TEXT};
use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::server::{Command, ServerConfig};
use resocket::{Error, InboundText, SocketActor, Subscribe};

/// Keeps the connection open, reading (and dropping) what the client writes, until it closes.
fn hold(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = [0u8; 1024];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

/// Waits (bounded) until `flag` is set.
fn wait_flag(flag: &AtomicBool) {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) && start.elapsed() < DEADLINE {
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn too_large(watch: &Watch) -> usize {
    watch
        .errors()
        .iter()
        .filter(|e| matches!(e, Error::MessageTooLarge { .. }))
        .count()
}

#[actix_rt::test]
async fn a_frame_announcing_a_huge_length_is_refused_at_its_header_not_after_buffering_it() {
    const ANNOUNCED: usize = 64 << 20;
    let refused = Arc::new(AtomicBool::new(false));
    let go_on = refused.clone();
    let server = RawServer::start(move |stream| {
        // The header and a first kilobyte; the rest only once the client has refused it, so a
        // client that waits for the whole frame before checking its size never gets there.
        let _ = stream.write_all(&header(FIN | TEXT, ANNOUNCED as u64));
        let _ = stream.write_all(&[b'x'; 1024]);
        wait_flag(&go_on);
        let chunk = vec![b'x'; 1 << 20];
        let mut left = ANNOUNCED - 1024;
        while left > 0 {
            let n = left.min(chunk.len());
            if stream.write_all(&chunk[..n]).is_err() {
                return;
            }
            left -= n;
        }
        let _ = stream.write_all(&frame(FIN | TEXT, b"after"));
        hold(stream);
    });
    let socket = SocketActor::connect(fast(&server.url()).max_message(64 * 1024).build().unwrap());
    let watch = Watch::attach(&socket);
    watch
        .wait_error("refused at the header", |e| {
            *e == Error::MessageTooLarge { limit: 64 * 1024 }
        })
        .await;
    refused.store(true, Ordering::SeqCst);
    wait_for("the message after it", DEADLINE * 3, || {
        watch.texts() == ["after"]
    })
    .await;
    assert_eq!((watch.opens(), server.connections()), (1, 1));
    assert_eq!(too_large(&watch), 1);
}

#[actix_rt::test]
async fn an_oversized_first_or_last_fragment_discards_one_message_and_the_connection_stays_up() {
    let big = vec![b'x'; 4096];
    let server = RawServer::start(move |stream| {
        let mut bytes = Vec::new();
        bytes.extend(frame(TEXT, &big)); // first fragment, too big
        bytes.extend(frame(CONTINUATION, b"x"));
        bytes.extend(frame(FIN | CONTINUATION, b"y"));
        bytes.extend(frame(FIN | TEXT, b"one"));
        bytes.extend(frame(TEXT, b"a"));
        bytes.extend(frame(FIN | CONTINUATION, &big)); // last fragment, too big
        bytes.extend(frame(FIN | TEXT, b"two"));
        let _ = stream.write_all(&bytes);
        hold(stream);
    });
    let socket = SocketActor::connect(fast(&server.url()).max_message(1024).build().unwrap());
    let watch = Watch::attach(&socket);
    wait_for("both good messages", DEADLINE, || watch.texts().len() >= 2).await;
    assert_eq!(watch.texts(), ["one", "two"]);
    assert_eq!(too_large(&watch), 2, "{:?}", watch.errors());
    assert_eq!((watch.opens(), server.connections()), (1, 1));
}

#[actix_rt::test]
async fn one_large_message_sent_slowly_is_not_taken_for_a_dead_peer() {
    // 64 KiB over about 1.2 s, with a heartbeat timeout of 200 ms: the frame is complete only
    // long after several timeouts, but bytes keep arriving.
    let payload = vec![b'y'; 64 * 1024];
    let server = RawServer::start(move |stream| {
        let bytes = frame(FIN | TEXT, &payload);
        for chunk in bytes.chunks(bytes.len() / 60 + 1) {
            if stream.write_all(chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        hold(stream);
    });
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    wait_for("the slow message", DEADLINE, || !watch.texts().is_empty()).await;
    assert_eq!(watch.texts()[0].len(), 64 * 1024);
    assert_eq!((watch.opens(), server.connections()), (1, 1));
    assert!(
        !watch
            .errors()
            .iter()
            .any(|e| matches!(e, Error::HeartbeatTimeout(_))),
        "{:?}",
        watch.errors()
    );
}

/// A subscriber that blocks its thread (the socket's) for a while on the message "block".
struct Blocker;
impl Actor for Blocker {
    type Context = Context<Self>;
}
impl Handler<InboundText> for Blocker {
    type Result = ();
    fn handle(&mut self, msg: InboundText, _: &mut Context<Self>) {
        if &*msg.0 == "block" {
            std::thread::sleep(Duration::from_millis(800));
        }
    }
}

#[actix_rt::test]
async fn a_stalled_client_thread_does_not_take_its_live_peer_for_dead() {
    // The server pings every 50 ms, so there is always something waiting to be read.
    let server = TestServer::start_with(ServerConfig {
        heartbeat_interval: Duration::from_millis(50),
        ..ServerConfig::default()
    })
    .await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    socket.do_send(Subscribe::text(Blocker.start().recipient()));
    watch.wait_opens(1).await;
    wait_for("server session", DEADLINE, || server.live() == 1).await;
    // The thread stalls for 800 ms: four heartbeat timeouts of "silence" that is really
    // unread pings.
    server.command_all(Command::Text("block".into()));
    wait_for("the stall", DEADLINE, || {
        watch.texts().contains(&"block".into())
    })
    .await;
    server.command_all(Command::Text("after".into()));
    wait_for("the message after the stall", DEADLINE, || {
        watch.texts().contains(&"after".into())
    })
    .await;
    assert_eq!(watch.opens(), 1, "reconnected: {:?}", watch.errors());
    assert!(
        !watch
            .errors()
            .iter()
            .any(|e| matches!(e, Error::HeartbeatTimeout(_))),
        "{:?}",
        watch.errors()
    );
}

#[actix_rt::test]
async fn a_server_session_refuses_a_huge_frame_at_its_header_with_1009() {
    let server = TestServer::start_with(ServerConfig {
        max_message: 64 * 1024,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.addr;
    // The client announces 1 GiB and sends 100 bytes of it, then waits: a session that
    // buffers the whole frame before checking never answers.
    let code = actix_rt::task::spawn_blocking(move || {
        let mut stream = common::raw_server::raw_upgrade(addr, "/ws");
        let mut bytes = vec![FIN | TEXT, 0x80 | 127];
        bytes.extend_from_slice(&(1u64 << 30).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(&[b'x'; 100]);
        stream.write_all(&bytes).unwrap();
        common::raw_server::read_close_code(&mut stream)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1009));
    assert!(server.received().is_empty());
}

/// A masked client frame (mask key 0, so the payload is sent as it is).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![first];
    match payload.len() {
        n if n < 126 => bytes.push(0x80 | n as u8),
        n => {
            bytes.push(0x80 | 126);
            bytes.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    bytes.extend_from_slice(&[0, 0, 0, 0]);
    bytes.extend_from_slice(payload);
    bytes
}

/// What a case sends, and the close code it expects (None: the message is taken).
type Case = (&'static str, Vec<Vec<u8>>, Option<u16>);

/// The server session joins fragments with the client's reassembler: a whole message reaches
/// the handler; fragments whose join is not UTF-8 end the session with 1007, fragments over
/// `max_message` together (each one under it) with 1009, and neither reaches the handler.
#[actix_rt::test]
async fn a_server_session_joins_fragments_and_refuses_bad_or_oversized_joins() {
    let server = TestServer::start_with(ServerConfig {
        max_message: 1024,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.addr;
    let cases: [Case; 3] = [
        (
            "whole",
            vec![
                client_frame(TEXT, b"frag"),
                client_frame(FIN | CONTINUATION, b"mented"),
            ],
            None,
        ),
        (
            "not UTF-8",
            // "é" is 0xC3 0xA9: its first byte, then a byte that cannot follow it.
            vec![
                client_frame(TEXT, &[b'a', 0xC3]),
                client_frame(FIN | CONTINUATION, b"("),
            ],
            Some(1007),
        ),
        (
            "oversized",
            vec![
                client_frame(TEXT, &[b'x'; 600]),
                client_frame(FIN | CONTINUATION, &[b'y'; 600]),
            ],
            Some(1009),
        ),
    ];
    for (what, frames, expected) in cases {
        let code = actix_rt::task::spawn_blocking(move || {
            let mut stream = common::raw_server::raw_upgrade(addr, "/ws");
            for frame in frames {
                stream.write_all(&frame).unwrap();
            }
            if expected.is_none() {
                // Ask for the close ourselves once the message is in.
                stream
                    .write_all(&client_frame(FIN | 0x8, &1000u16.to_be_bytes()))
                    .unwrap();
            }
            common::raw_server::read_close_code(&mut stream)
        })
        .await
        .unwrap();
        assert_eq!(code, expected.or(Some(1000)), "{what}");
    }
    assert_eq!(server.received(), vec!["fragmented".to_string()]);
}

/// An idle connection gives its I/O buffers back between frames (after a quiet 100 ms), never
/// in the middle of one: frames cut inside their header and inside their payload, each half
/// arriving 300 ms apart, are read whole, and a write after each quiet spell still goes out.
#[actix_rt::test]
async fn frames_split_across_quiet_spells_survive_the_idle_buffer_release() {
    let server = RawServer::start(move |stream| {
        let pause = || std::thread::sleep(Duration::from_millis(300));
        let _ = stream.write_all(&frame(FIN | TEXT, b"whole"));
        pause();
        let payload = frame(FIN | TEXT, b"split in the payload");
        let _ = stream.write_all(&payload[..8]);
        pause();
        let _ = stream.write_all(&payload[8..]);
        pause();
        let header = frame(FIN | TEXT, b"split in the header");
        let _ = stream.write_all(&header[..1]);
        pause();
        let _ = stream.write_all(&header[1..]);
        hold(stream);
    });
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    wait_for("three messages", DEADLINE, || watch.texts().len() >= 3).await;
    assert_eq!(
        watch.texts(),
        ["whole", "split in the payload", "split in the header"]
    );
    assert_eq!(
        (watch.opens(), server.connections()),
        (1, 1),
        "{:?}",
        watch.errors()
    );
}

#[actix_rt::test]
async fn writes_after_quiet_spells_go_out_whole() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    let big = "y".repeat(20_000); // larger than the 8 KiB a released buffer starts again from
    for (n, text) in ["small", big.as_str(), "last"].into_iter().enumerate() {
        actix_rt::time::sleep(Duration::from_millis(250)).await; // quiet: buffers given back
        socket
            .send(resocket::SendMessage::text(text))
            .await
            .unwrap()
            .unwrap();
        wait_for("its echo", DEADLINE, || watch.texts().len() > n).await;
    }
    assert_eq!(watch.texts(), ["small", big.as_str(), "last"]);
    assert_eq!(watch.opens(), 1);
}
