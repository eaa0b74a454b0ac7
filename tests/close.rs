//! Closing: the Close frame really reaches the peer; graceful close drains the outbox; closing
//! while not Open; sending after close hands the message back.

mod common;

use std::time::Duration;

use common::proxy::Proxy;
use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::{
    Close, CloseReason, CloseReport, Error, GetStatus, Outgoing, SendError, SendMessage,
    SocketActor, SocketState, TakeOutbox,
};

#[actix_rt::test]
async fn close_delivers_the_close_frame_and_ends_in_closed_by_user() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    let report = socket.send(Close::now()).await.unwrap();
    assert_eq!(
        report,
        CloseReport {
            clean: true,
            unsent: 0
        }
    );
    // The server saw our Close frame with code 1000 (awc alone would send a bare FIN).
    wait_for("server saw the close", DEADLINE, || {
        !server.close_codes().is_empty()
    })
    .await;
    assert_eq!(server.close_codes(), [Some(1000)]);
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    assert_eq!(
        state,
        SocketState::Closed {
            reason: CloseReason::ByUser
        }
    );
    // No reconnect afterwards, and sends are refused with the message handed back.
    let refused = socket.send(SendMessage::text("late")).await.unwrap();
    assert_eq!(
        refused,
        Err(SendError {
            error: Error::Closed,
            message: Outgoing::from("late")
        })
    );
    assert_eq!(server.opened(), 1);
}

#[actix_rt::test]
async fn graceful_close_writes_the_outbox_first() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    for i in 0..2000 {
        socket.do_send(SendMessage::text(format!("m{i}")));
    }
    let report = socket
        .send(Close::graceful(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        report,
        CloseReport {
            clean: true,
            unsent: 0
        }
    );
    wait_for("server saw the close", DEADLINE, || {
        !server.close_codes().is_empty()
    })
    .await;
    let expected: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
    assert_eq!(server.received(), expected);
    assert_eq!(server.close_codes(), [Some(1000)]);
}

#[actix_rt::test]
async fn close_times_out_against_a_peer_that_never_answers_and_keeps_the_outbox() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&proxy.url())
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    proxy.stall(true);
    // Enough to fill the socket buffers of a stalled path, so some stay in the outbox.
    let big = "x".repeat(64 * 1024);
    for _ in 0..200 {
        socket.do_send(SendMessage::text(big.clone()));
    }
    let report = socket
        .send(Close::graceful(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(!report.clean);
    assert!(report.unsent > 0, "{report:?}");
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    assert_eq!(
        state,
        SocketState::Closed {
            reason: CloseReason::ByUser
        }
    );
    let left = socket.send(TakeOutbox).await.unwrap();
    assert_eq!(left.len(), report.unsent);
}

#[actix_rt::test]
async fn close_now_within_gives_up_on_a_silent_peer_at_its_own_bound_not_the_configs() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    // The configured close timeout is 20 s: only `now_within` can end this close sooner.
    let config = fast(&proxy.url())
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .close_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    proxy.stall(true);
    let report = actix_rt::time::timeout(
        DEADLINE,
        socket.send(Close::now_within(Duration::from_millis(200))),
    )
    .await
    .expect("the close ended within its bound, not the configured 20 s")
    .unwrap();
    assert!(!report.clean, "the silent peer never answered: {report:?}");
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    assert_eq!(
        state,
        SocketState::Closed {
            reason: CloseReason::ByUser
        }
    );
}

#[actix_rt::test]
async fn close_while_backing_off_closes_at_once_and_keeps_the_outbox() {
    let (mut server, socket, watch) = common::disconnected(fast).await;
    socket
        .send(SendMessage::text("pending"))
        .await
        .unwrap()
        .unwrap();
    let report = socket.send(Close::now()).await.unwrap();
    assert_eq!(
        report,
        CloseReport {
            clean: false,
            unsent: 1
        }
    );
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    assert_eq!(
        state,
        SocketState::Closed {
            reason: CloseReason::ByUser
        }
    );
    // Closing again is a no-op.
    assert_eq!(socket.send(Close::now()).await.unwrap().unsent, 1);
    assert_eq!(
        socket.send(TakeOutbox).await.unwrap(),
        vec![Outgoing::from("pending")]
    );
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.outbox_len, 0);
    // And no timer is left to reconnect: the server comes back, the socket stays closed over
    // a window of four of its longest backoff delays (50 ms), counted at the server.
    server.restart().await;
    let before = server.opened();
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.opened(), before);
}

#[actix_rt::test]
async fn close_while_connecting_closes_at_once() {
    // A listener that never answers the handshake keeps the socket in Connecting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let socket = SocketActor::connect(
        fast(&url)
            .connect_timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    watch
        .wait_state("connecting", |s| s.name() == "connecting")
        .await;
    let report = socket.send(Close::now()).await.unwrap();
    assert!(!report.clean);
    assert_eq!(
        watch.wait_state("closed", SocketState::is_closed).await,
        SocketState::Closed {
            reason: CloseReason::ByUser
        }
    );
}

#[actix_rt::test]
async fn a_graceful_close_while_connecting_waits_for_open_and_sends_what_is_queued() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    // At once: the socket is still Connecting.
    socket
        .send(resocket::SendMessage::text("hello"))
        .await
        .unwrap()
        .unwrap();
    let report = socket.send(Close::graceful(DEADLINE)).await.unwrap();
    assert!(report.clean && report.unsent == 0, "{report:?}");
    wait_for("hello at the server", DEADLINE, || {
        server.received() == ["hello"]
    })
    .await;
}

#[actix_rt::test]
async fn a_graceful_close_that_never_sees_open_gives_up_at_its_timeout_keeping_the_outbox() {
    let mut server = TestServer::start().await;
    let url = server.url();
    server.stop().await;
    let socket = SocketActor::connect(fast(&url).build().unwrap());
    socket
        .send(resocket::SendMessage::text("kept"))
        .await
        .unwrap()
        .unwrap();
    let started = std::time::Instant::now();
    let report = socket
        .send(Close::graceful(std::time::Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!((report.clean, report.unsent), (false, 1));
    let left = socket.send(resocket::TakeOutbox).await.unwrap();
    assert_eq!(left, [resocket::Outgoing::from("kept")]);
}

/// The server session closed at once on the client's Close, dropping the replies its handler
/// had already sent (still in the session's mailbox): a client that closed right after its
/// last request lost the last replies (the CLI's stress failure). The answering Close now goes
/// behind them, and the client's Close report comes once they are handed to its subscribers.
#[actix_rt::test]
async fn replies_sent_before_the_peers_close_arrive_before_the_answering_close() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    const N: usize = 500;
    for n in 0..N {
        socket.do_send(SendMessage::text(format!("{n}")));
    }
    let report = socket
        .send(Close::graceful(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(report.clean, "{report:?}");
    assert_eq!(server.received().len(), N);
    let echoes = watch.texts();
    assert_eq!(
        echoes.len(),
        N,
        "replies lost: the last is {:?}",
        echoes.last()
    );
    assert_eq!(server.close_codes(), [Some(1000)]);
}
