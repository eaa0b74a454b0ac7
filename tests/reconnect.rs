//! Reconnect: after a dropped connection, a server Close, a server restart; identify again on
//! every connect; the outbox delivered after it, in order; a flapping server backs off.

mod common;

use std::time::Duration;

use common::proxy::{Cut, Proxy};
use common::{fast, giving_up_after, wait_for, TestServer, Watch, DEADLINE};
use resocket::server::Command;
use resocket::{CloseReason, Disconnect, GetStatus, SendMessage, SocketActor, SocketState};

#[actix_rt::test]
async fn a_connection_dropped_without_close_reconnects_and_identifies_again() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&proxy.url())
        .identify("hello")
        // A long heartbeat: the drop must be seen from the FIN itself, not from silence.
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    wait_for("identify", DEADLINE, || server.received().len() == 1).await;
    proxy.cut(Cut::Fin);
    watch.wait_opens(2).await;
    let states = watch.states();
    assert!(
        states.iter().any(|s| matches!(
            s,
            SocketState::Backoff {
                cause: Disconnect::ConnectionLost(None),
                ..
            }
        )),
        "{states:#?}"
    );
    wait_for("identify again", DEADLINE, || server.received().len() == 2).await;
    assert_eq!(server.received(), ["hello", "hello"]);
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(
        (status.counters.connects, status.counters.reconnects),
        (2, 1)
    );
}

#[actix_rt::test]
async fn a_reset_connection_reconnects_with_the_io_error_as_cause() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&proxy.url())
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    proxy.cut(Cut::Rst);
    watch.wait_opens(2).await;
    let states = watch.states();
    assert!(
        states.iter().any(|s| matches!(
            s,
            SocketState::Backoff {
                cause: Disconnect::ConnectionLost(Some(_)),
                ..
            }
        )),
        "{states:#?}"
    );
}

#[actix_rt::test]
async fn a_server_close_frame_reconnects_unless_its_code_is_fatal() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).fatal_close_code(4001).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    wait_for("session", DEADLINE, || server.live() == 1).await;
    server.command_all(Command::Close(4000, Some("maintenance".into())));
    watch.wait_opens(2).await;
    assert!(watch.states().iter().any(|s| matches!(
        s,
        SocketState::Backoff {
            cause: Disconnect::PeerClosed {
                code: Some(4000),
                ..
            },
            ..
        }
    )));

    // A code outside every valid range (RFC 6455 7.4.2): awc rejects the frame as a protocol
    // error, and the socket reconnects as after any broken connection.
    wait_for("second session", DEADLINE, || server.live() == 1).await;
    server.command_all(Command::Close(999, None));
    watch.wait_opens(3).await;
    let states = watch.states();
    assert!(
        states.iter().any(|s| matches!(
            s,
            SocketState::Backoff {
                cause: Disconnect::ConnectionLost(Some(resocket::Error::Connection(_))),
                ..
            }
        )),
        "{states:#?}"
    );

    wait_for("third session", DEADLINE, || server.live() == 1).await;
    server.command_all(Command::Close(4001, Some("banned".into())));
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    assert_eq!(
        state,
        SocketState::Closed {
            reason: CloseReason::PeerClosed {
                code: Some(4001),
                description: Some("banned".into())
            }
        }
    );
}

#[actix_rt::test]
async fn messages_sent_while_disconnected_arrive_after_identify_in_order_none_missing() {
    let mut server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).identify("identify").build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    for i in 0..500 {
        socket
            .send(SendMessage::text(format!("m{i}")))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(socket.send(GetStatus).await.unwrap().outbox_len, 500);
    server.restart().await;
    watch.wait_opens(2).await;
    wait_for("500 messages after identify", DEADLINE, || {
        server.received().len() >= 502
    })
    .await;
    let mut expected = vec!["identify".to_string(), "identify".to_string()];
    expected.extend((0..500).map(|i| format!("m{i}")));
    assert_eq!(server.received(), expected);
    assert_eq!(socket.send(GetStatus).await.unwrap().outbox_len, 0);
}

#[actix_rt::test]
async fn a_flapping_server_does_not_reset_the_attempt_counter() {
    // Every connection is cut 30 ms after it opens: each connect "succeeds", but the
    // connection never reaches the minimum uptime, so the attempts climb to the limit.
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    proxy.lifetime(Some(Duration::from_millis(30)));
    let config = fast(&proxy.url())
        .min_uptime(Duration::from_secs(5))
        .backoff(giving_up_after(4))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let state = watch.wait_state("gave up", SocketState::is_closed).await;
    assert!(
        matches!(
            state,
            SocketState::Closed {
                reason: CloseReason::GaveUp { attempts: 4, .. }
            }
        ),
        "{state:?}"
    );
    let attempts = watch.connecting_attempts();
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert_eq!(watch.opens(), 4, "every attempt connected, then was cut");
    // One reconnect at a time: never two connections at once.
    assert_eq!(server.max_live(), 1);
}

#[actix_rt::test]
async fn a_stable_connection_resets_the_attempt_counter() {
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&proxy.url())
        .min_uptime(Duration::from_millis(50))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    for round in 1..=3 {
        watch.wait_opens(round).await;
        // Stay up (pongs arriving every 50 ms) well past the minimum uptime, then drop.
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        proxy.cut(Cut::Fin);
        watch.wait_opens(round + 1).await;
    }
    // Every lost connection counted as the first failure, not one more on top of the last.
    let backoffs = watch.backoff_attempts();
    assert_eq!(backoffs, [1, 1, 1]);
}
