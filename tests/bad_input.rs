//! Bad input from the peer never takes the connection down: malformed JSON, invalid UTF-8,
//! oversized frames and messages. Fragmented messages are joined. A full outbox refuses or
//! drops by policy and says so.

mod common;

use bytes::Bytes;
use common::{fast, wait_for, StopProbe, TestServer, Tick, Watch, DEADLINE};
use resocket::server::Command;
use resocket::{
    Error, GetStatus, Outbox, Outgoing, Overflow, SendError, SendMessage, SocketActor, TakeOutbox,
};

async fn open_socket(server: &TestServer, max_message: usize) -> (actix::Addr<SocketActor>, Watch) {
    let config = fast(&server.url())
        .max_message(max_message)
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    wait_for("server session", DEADLINE, || server.live() == 1).await;
    (socket, watch)
}

/// A socket with `outbox` that connected once and then lost its server (now in Backoff).
async fn disconnected(
    server: &mut TestServer,
    outbox: Outbox,
) -> (actix::Addr<SocketActor>, Watch) {
    let socket = SocketActor::connect(fast(&server.url()).outbox(outbox).build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    (socket, watch)
}

fn good_tick() -> Command {
    Command::Text(r#"{"symbol":"OK","price":2.0}"#.into())
}

async fn still_delivering(server: &TestServer, watch: &Watch) {
    server.command_all(good_tick());
    wait_for("the next good message", DEADLINE, || {
        watch.ticks().iter().any(|t| t.symbol == "OK")
    })
    .await;
    assert_eq!(watch.opens(), 1, "the connection was dropped");
}

#[actix_rt::test]
async fn malformed_json_is_reported_and_the_connection_stays_up() {
    let server = TestServer::start().await;
    let (socket, watch) = open_socket(&server, 1 << 20).await;
    server.command_all(Command::Text(r#"{"symbol": "ABC", "price": "#.into()));
    server.command_all(Command::Text(r#"{"symbol": "ABC"}"#.into()));
    wait_for("two decode errors", DEADLINE, || {
        watch
            .errors()
            .iter()
            .filter(|e| matches!(e, Error::Decode { .. }))
            .count()
            == 2
    })
    .await;
    let errors = watch.errors();
    let Error::Decode { text, .. } = &errors[0] else {
        unreachable!()
    };
    assert_eq!(text, r#"{"symbol": "ABC", "price": "#);
    // serde_json's own error is the source (its line, column and category).
    let json = std::error::Error::source(&errors[0])
        .and_then(|s| s.downcast_ref::<serde_json::Error>())
        .expect("serde_json's error as the source");
    assert!(json.is_eof(), "{json}");
    still_delivering(&server, &watch).await;
    // Raw text subscribers got the malformed messages all the same.
    assert_eq!(watch.texts().len(), 3);
    assert_eq!(socket.send(GetStatus).await.unwrap().counters.discarded, 2);
}

#[actix_rt::test]
async fn invalid_utf8_is_reported_and_the_connection_stays_up() {
    let server = TestServer::start().await;
    let (_socket, watch) = open_socket(&server, 1 << 20).await;
    server.command_all(Command::Fragments {
        text: true,
        parts: vec![Bytes::from_static(b"ab"), Bytes::from_static(&[0xff, 0xfe])],
    });
    watch
        .wait_error("invalid utf-8", |e| *e == Error::InvalidUtf8)
        .await;
    still_delivering(&server, &watch).await;
    assert!(watch.texts().iter().all(|t| !t.starts_with("ab")));
}

#[actix_rt::test]
async fn an_oversized_frame_is_discarded_and_the_connection_stays_up() {
    let server = TestServer::start().await;
    let (_socket, watch) = open_socket(&server, 1024).await;
    server.command_all(Command::Text("x".repeat(5000).into()));
    watch
        .wait_error("too large", |e| {
            *e == Error::MessageTooLarge { limit: 1024 }
        })
        .await;
    still_delivering(&server, &watch).await;
    assert!(watch.texts().iter().all(|t| t.len() <= 1024));
}

#[actix_rt::test]
async fn fragmented_messages_are_joined_and_oversized_ones_discarded() {
    let server = TestServer::start().await;
    let (_socket, watch) = open_socket(&server, 64).await;
    let parts = [r#"{"symbol":"#, r#""FRAG","#, r#""price":3.5}"#];
    server.command_all(Command::Fragments {
        text: true,
        parts: parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect(),
    });
    wait_for("joined message", DEADLINE, || !watch.ticks().is_empty()).await;
    assert_eq!(
        watch.ticks()[0],
        Tick {
            symbol: "FRAG".into(),
            price: 3.5
        }
    );
    // Three fragments of 40 bytes: each fits, the whole (120) does not.
    server.command_all(Command::Fragments {
        text: true,
        parts: vec![Bytes::from(vec![b'a'; 40]); 3],
    });
    watch
        .wait_error("too large", |e| *e == Error::MessageTooLarge { limit: 64 })
        .await;
    still_delivering(&server, &watch).await;
}

#[actix_rt::test]
async fn a_full_outbox_rejects_and_hands_the_message_back() {
    let mut server = TestServer::start().await;
    let (socket, watch) = disconnected(
        &mut server,
        Outbox::bounded(3).on_overflow(Overflow::Reject),
    )
    .await;
    for i in 0..3 {
        socket
            .send(SendMessage::text(format!("m{i}")))
            .await
            .unwrap()
            .unwrap();
    }
    let refused = socket.send(SendMessage::text("m3")).await.unwrap();
    assert_eq!(
        refused,
        Err(SendError {
            error: Error::OutboxFull {
                max_messages: 3,
                max_bytes: Outbox::DEFAULT_MAX_BYTES
            },
            message: Outgoing::from("m3"),
        })
    );
    assert!(refused.unwrap_err().to_string().contains("outbox full"));
    // Reported to error subscribers too (for senders that use do_send).
    watch
        .wait_error("outbox full", |e| matches!(e, Error::OutboxFull { .. }))
        .await;
    server.restart().await;
    wait_for("queued messages", DEADLINE, || server.received().len() == 3).await;
    assert_eq!(server.received(), ["m0", "m1", "m2"]);
}

#[actix_rt::test]
async fn drop_oldest_keeps_the_newest_and_reports_the_drop() {
    let mut server = TestServer::start().await;
    let (socket, watch) = disconnected(
        &mut server,
        Outbox::bounded(3).on_overflow(Overflow::DropOldest),
    )
    .await;
    for i in 0..5 {
        socket
            .send(SendMessage::text(format!("m{i}")))
            .await
            .unwrap()
            .unwrap();
    }
    watch
        .wait_error("dropped", |e| *e == Error::Dropped { count: 1 })
        .await;
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!((status.outbox_len, status.counters.dropped), (3, 2));
    server.restart().await;
    wait_for("queued messages", DEADLINE, || server.received().len() == 3).await;
    assert_eq!(server.received(), ["m2", "m3", "m4"]);
}

#[actix_rt::test]
async fn drop_newest_refuses_and_reports_the_drop() {
    let mut server = TestServer::start().await;
    let (socket, watch) = disconnected(
        &mut server,
        Outbox::bounded(1).on_overflow(Overflow::DropNewest),
    )
    .await;
    socket
        .send(SendMessage::text("kept"))
        .await
        .unwrap()
        .unwrap();
    socket.do_send(SendMessage::text("dropped"));
    watch
        .wait_error("dropped", |e| *e == Error::Dropped { count: 1 })
        .await;
    assert_eq!(
        socket.send(TakeOutbox).await.unwrap(),
        vec![Outgoing::from("kept")]
    );
}

#[actix_rt::test]
async fn a_message_larger_than_the_outbox_is_refused() {
    let server = TestServer::start().await;
    let config = fast(&server.url())
        .outbox(Outbox::bounded(10).max_bytes(8))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let err = socket
        .send(SendMessage::text("123456789"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.error,
        Error::MessageTooLargeForOutbox {
            size: 9,
            max_bytes: 8
        }
    );
}

#[actix_rt::test]
async fn a_stopped_subscriber_is_pruned_and_the_others_still_get_messages() {
    let server = TestServer::start().await;
    let (socket, watch) = open_socket(&server, 1 << 20).await;
    let gone = Watch::attach(&socket);
    wait_for("second watch subscribed", DEADLINE, || {
        gone.last_state().is_some()
    })
    .await;
    assert_eq!(socket.send(GetStatus).await.unwrap().subscribers, 10);
    gone.addr.send(StopProbe).await.unwrap();
    let mut pruned = false;
    for _ in 0..200 {
        if socket.send(GetStatus).await.unwrap().subscribers == 5 {
            pruned = true;
            break;
        }
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert!(
        pruned,
        "the stopped subscriber's five subscriptions were not pruned"
    );
    still_delivering(&server, &watch).await;
}

#[actix_rt::test]
async fn a_ping_flood_is_answered_with_the_latest_pong_only_and_the_connection_stays_up() {
    let server = TestServer::start().await;
    // A long heartbeat: the socket's own pings must not be counted as answers.
    let config = fast(&server.url())
        .heartbeat(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_secs(20),
        )
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    wait_for("session", DEADLINE, || server.live() == 1).await;
    server.command_all(Command::Pings(5000));
    still_delivering(&server, &watch).await;
    // Every ping has been read; pongs go out before data, so once this marker arrives every
    // pong the flood caused has arrived too.
    socket
        .send(SendMessage::text("marker"))
        .await
        .unwrap()
        .unwrap();
    wait_for("marker", DEADLINE, || {
        server.received().contains(&"marker".to_string())
    })
    .await;
    let pongs = server.pongs();
    assert!(pongs >= 1, "no ping was answered");
    assert!(
        pongs < 5000,
        "every one of 5,000 pings got its own pong ({pongs})"
    );
}
