//! Connecting: identify first, echo, typed delivery, handshake refusals, refused and stalled
//! connects.

mod common;

use std::time::Duration;

use common::{fast, giving_up_after, wait_for, TestServer, Tick, Watch, DEADLINE};
use resocket::{CloseReason, Disconnect, Error, GetStatus, SendMessage, SocketActor, SocketState};

#[actix_rt::test]
async fn connects_sends_identify_first_and_delivers_typed_and_raw_payloads() {
    let server = TestServer::start().await;
    let config = fast(&server.url())
        .identify(r#"{"op":"auth","token":"t"}"#)
        .identify_with(|| vec![r#"{"op":"subscribe"}"#.into()])
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    socket
        .send(
            SendMessage::json(&Tick {
                symbol: "ABC".into(),
                price: 1.5,
            })
            .unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    wait_for("the echoed tick", DEADLINE, || !watch.ticks().is_empty()).await;
    assert_eq!(
        watch.ticks()[0],
        Tick {
            symbol: "ABC".into(),
            price: 1.5
        }
    );
    assert_eq!(
        server.received(),
        [
            r#"{"op":"auth","token":"t"}"#,
            r#"{"op":"subscribe"}"#,
            r#"{"symbol":"ABC","price":1.5}"#
        ]
    );
    // Raw text subscribers see every message, typed ones only what decodes.
    assert_eq!(watch.texts().len(), 3);
    let states = watch.states();
    assert!(
        matches!(states[0], SocketState::Connecting { attempt: 1 }),
        "{states:?}"
    );
    assert!(states.iter().any(SocketState::is_open));
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.counters.connects, 1);
    assert_eq!(status.counters.messages_out, 3);
    assert_eq!(status.counters.messages_in, 3);
}

#[actix_rt::test]
async fn binary_messages_go_both_ways() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let _watch = Watch::attach(&socket);
    socket
        .send(SendMessage::binary(vec![0u8, 159, 255]))
        .await
        .unwrap()
        .unwrap();
    wait_for("binary at the server", DEADLINE, || {
        !server.received_binary().is_empty()
    })
    .await;
    assert_eq!(server.received_binary()[0], vec![0u8, 159, 255]);
}

#[actix_rt::test]
async fn handshake_refused_with_client_error_is_fatal() {
    let server = TestServer::start().await;
    for status in [401u16, 403, 404] {
        let socket = SocketActor::connect(fast(&server.status_url(status)).build().unwrap());
        let watch = Watch::attach(&socket);
        let state = watch.wait_state("closed", SocketState::is_closed).await;
        assert_eq!(
            state,
            SocketState::Closed {
                reason: CloseReason::Fatal(Error::HandshakeStatus(status))
            }
        );
        assert!(watch.errors().contains(&Error::HandshakeStatus(status)));
        // Exactly one attempt: fatal means no retry.
        let connecting = watch
            .states()
            .iter()
            .filter(|s| s.name() == "connecting")
            .count();
        assert_eq!(connecting, 1, "status {status}");
    }
}

#[actix_rt::test]
async fn handshake_refused_with_server_error_is_retried_until_the_limit() {
    let server = TestServer::start().await;
    let config = fast(&server.status_url(500))
        .backoff(giving_up_after(3))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let state = watch.wait_state("gave up", SocketState::is_closed).await;
    match state {
        SocketState::Closed {
            reason: CloseReason::GaveUp { attempts, last },
        } => {
            assert_eq!(attempts, 3);
            assert_eq!(last, Disconnect::ConnectFailed(Error::HandshakeStatus(500)));
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    let attempts = watch.connecting_attempts();
    assert_eq!(attempts, [1, 2, 3]);
}

#[actix_rt::test]
async fn client_errors_can_be_made_retryable() {
    let server = TestServer::start().await;
    let config = fast(&server.status_url(401))
        .retry_client_errors(true)
        .backoff(giving_up_after(2))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let state = watch.wait_state("gave up", SocketState::is_closed).await;
    assert!(matches!(
        state,
        SocketState::Closed {
            reason: CloseReason::GaveUp { attempts: 2, .. }
        }
    ));
}

#[actix_rt::test]
async fn refused_connection_backs_off_and_connects_once_the_server_is_back() {
    let mut server = TestServer::start().await;
    server.stop().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    wait_for("two refused attempts", DEADLINE, || {
        watch
            .states()
            .iter()
            .filter(|s| {
                matches!(
                    s,
                    SocketState::Backoff {
                        cause: Disconnect::ConnectFailed(Error::Connect(_)),
                        ..
                    }
                )
            })
            .count()
            >= 2
    })
    .await;
    // The refusal's I/O error is the error's source: a caller can tell refused from
    // unreachable or out of file descriptors without parsing text.
    let refused = watch
        .errors()
        .into_iter()
        .find(|e| matches!(e, Error::Connect(_)))
        .expect("a connect error");
    let io = std::error::Error::source(&refused).and_then(|s| s.downcast_ref::<std::io::Error>());
    assert_eq!(
        io.map(std::io::Error::kind),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
    server.restart().await;
    watch.wait_opens(1).await;
    let status = socket.send(GetStatus).await.unwrap();
    assert!(status.counters.connect_failures >= 2);
}

#[actix_rt::test]
async fn a_server_that_never_answers_the_handshake_times_out() {
    // A listener that accepts TCP (backlog) but never speaks HTTP.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let config = fast(&url)
        .connect_timeout(Duration::from_millis(100))
        .backoff(giving_up_after(2))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let state = watch.wait_state("gave up", SocketState::is_closed).await;
    assert_eq!(
        state,
        SocketState::Closed {
            reason: CloseReason::GaveUp {
                attempts: 2,
                last: Disconnect::ConnectFailed(Error::ConnectTimeout(Duration::from_millis(100)))
            }
        }
    );
    drop(listener);
}

#[actix_rt::test]
async fn a_subprotocol_that_was_not_offered_is_fatal() {
    let server = TestServer::start().await;
    let config = fast(&server.wrong_protocol_url())
        .protocol("chat.v1")
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    assert_eq!(
        state,
        SocketState::Closed {
            reason: CloseReason::Fatal(Error::Subprotocol {
                offered: vec!["chat.v1".into()],
                chosen: "not-offered".into()
            })
        }
    );
}
