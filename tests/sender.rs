//! `Sender`: the direct path into a socket's outbox, from any thread.

mod common;

use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::{Close, Error, GetSender, GetStatus, Outbox, Outgoing, SocketActor};

#[actix_rt::test]
async fn a_sender_on_another_thread_delivers_everything_in_order() {
    let server = TestServer::start().await;
    server
        .shared
        .echo
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let socket = SocketActor::start(
        fast(&server.url())
            .outbox(Outbox::bounded(100_000))
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    let sender = socket.send(GetSender).await.unwrap();
    watch.wait_opens(1).await;
    let thread = std::thread::spawn(move || {
        for n in 0..10_000 {
            sender.json(&serde_json::json!({ "n": n })).unwrap();
        }
    });
    thread.join().unwrap();
    wait_for("10,000 at the server", DEADLINE, || {
        server.received().len() == 10_000
    })
    .await;
    let expected: Vec<String> = (0..10_000).map(|n| format!(r#"{{"n":{n}}}"#)).collect();
    assert_eq!(server.received(), expected);
}

#[actix_rt::test]
async fn a_sender_queues_while_disconnected_refuses_when_full_and_after_close() {
    let mut server = TestServer::start().await;
    let socket = SocketActor::start(
        fast(&server.url())
            .outbox(Outbox::bounded(3))
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    let sender = socket.send(GetSender).await.unwrap();
    watch.wait_opens(1).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    for i in 0..3 {
        sender.send(format!("m{i}")).unwrap();
    }
    let refused = sender.send("m3").unwrap_err();
    assert!(matches!(refused.error, Error::OutboxFull { .. }));
    assert_eq!(refused.message, Outgoing::from("m3"));
    assert_eq!(socket.send(GetStatus).await.unwrap().outbox_len, 3);
    server.restart().await;
    wait_for("queued messages", DEADLINE, || server.received().len() == 3).await;
    assert_eq!(server.received(), ["m0", "m1", "m2"]);
    socket.send(Close::now()).await.unwrap();
    assert!(sender.is_closed());
    assert_eq!(sender.send("late").unwrap_err().error, Error::Closed);
}
