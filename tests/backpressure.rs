//! A peer that does not read fills the bounded outbox, not memory: awc's write buffer takes a
//! message only when it has room, so what is written but not yet taken by the peer stays small.
//! Also: many sockets on one thread (awc's default pool would stop at 100).

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::{Error, GetStatus, Outbox, SendMessage, SocketActor};

#[actix_rt::test]
async fn a_stalled_peer_fills_the_outbox_and_then_sends_are_refused() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&proxy.url())
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .outbox(Outbox::bounded(100))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    proxy.stall(true);
    let big = "x".repeat(64 * 1024);
    let mut accepted = 0usize;
    let mut refused = None;
    // 2,000 × 64 KiB = 125 MiB if nothing pushed back; the outbox must refuse long before.
    for _ in 0..2000 {
        match socket.send(SendMessage::text(big.clone())).await.unwrap() {
            Ok(()) => accepted += 1,
            Err(e) => {
                refused = Some(e.error);
                break;
            }
        }
        // Let the driver write what the socket will take.
        actix_rt::task::yield_now().await;
    }
    assert!(
        matches!(
            refused,
            Some(Error::OutboxFull {
                max_messages: 100,
                ..
            })
        ),
        "never refused after {accepted} messages"
    );
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.outbox_len, 100);
    // What left the outbox is only what the kernel buffers and awc's small write buffer hold.
    let written = status.counters.messages_out as usize;
    assert_eq!(written + status.outbox_len, accepted);
    assert!(
        written * 64 * 1024 < 64 * 1024 * 1024,
        "{written} messages went out to a stalled peer"
    );
    // Unstalled, everything queued arrives.
    proxy.stall(false);
    wait_for("all accepted messages at the server", DEADLINE, || {
        server.received().len() == accepted
    })
    .await;
}

#[actix_rt::test]
async fn more_than_a_hundred_sockets_on_one_thread_all_open() {
    let server = TestServer::start().await;
    let sockets: Vec<_> = (0..150)
        .map(|_| SocketActor::connect(fast(&server.url()).build().unwrap()))
        .collect();
    let watches: Vec<_> = sockets.iter().map(Watch::attach).collect();
    wait_for("150 sockets open", DEADLINE, || {
        watches.iter().all(|w| w.opens() >= 1)
    })
    .await;
    wait_for("150 sessions", DEADLINE, || server.live() == 150).await;
}
