//! `Sender`: the direct path into a socket's outbox, from any thread.

mod common;

use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::{Close, Error, GetSender, GetStatus, Outbox, Outgoing, SocketActor};

/// A server that counts without echoing, and a socket to it (with `outbox`), once Open: its
/// watch and a `Sender`.
async fn open_to_quiet_server(
    outbox: Outbox,
) -> (
    TestServer,
    actix::Addr<SocketActor>,
    Watch,
    resocket::Sender,
) {
    let server = TestServer::start().await;
    server
        .shared
        .echo
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let socket = SocketActor::connect(fast(&server.url()).outbox(outbox).build().unwrap());
    let watch = Watch::attach(&socket);
    let sender = socket.send(GetSender).await.unwrap();
    watch.wait_opens(1).await;
    (server, socket, watch, sender)
}

#[actix_rt::test]
async fn a_sender_on_another_thread_delivers_everything_in_order() {
    let (server, _socket, _watch, sender) = open_to_quiet_server(Outbox::bounded(100_000)).await;
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
    let socket = SocketActor::connect(
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

#[actix_rt::test]
async fn every_refused_send_and_every_lost_error_event_is_counted() {
    use resocket::{GetStatus, Outbox, SendMessage};
    let mut server = common::TestServer::start().await;
    let socket = SocketActor::connect(
        common::fast(&server.url())
            .outbox(Outbox::bounded(10))
            .build()
            .unwrap(),
    );
    let watch = common::Watch::attach(&socket);
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        use actix::Actor;
        let counter = ErrorCount(errors.clone()).start();
        socket.do_send(resocket::Subscribe::errors(counter.recipient()));
    }
    watch.wait_opens(1).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    // Fire and forget: do_send discards each answer, so only the counters can tell.
    for n in 0..1000 {
        socket.do_send(SendMessage::text(format!("{n}")));
    }
    let sender = socket.send(resocket::GetSender).await.unwrap();
    let mut refused_by_sender = 0;
    for n in 0..100 {
        if sender.send(format!("s{n}")).is_err() {
            refused_by_sender += 1;
        }
    }
    assert_eq!(refused_by_sender, 100, "the outbox was already full");
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.outbox_len, 10);
    assert_eq!(status.counters.refused, 990 + 100);
    // Each SendMessage refusal was an OutboxFull event; an error subscriber with actix's default
    // 16-slot mailbox could not take them all at once: what it missed is counted.
    let start = std::time::Instant::now();
    loop {
        let lost = socket.send(GetStatus).await.unwrap().counters.errors_lost;
        let got = errors.load(std::sync::atomic::Ordering::SeqCst) as u64;
        if got + lost == 990 {
            assert!(lost > 0, "a 16-slot mailbox took 990 events at once?");
            break;
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "{got} delivered + {lost} lost != 990"
        );
        actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Counts the OutboxFull errors it gets, with the default mailbox.
struct ErrorCount(std::sync::Arc<std::sync::atomic::AtomicUsize>);
impl actix::Actor for ErrorCount {
    type Context = actix::Context<Self>;
}
impl actix::Handler<resocket::ErrorOccurred> for ErrorCount {
    type Result = ();
    fn handle(&mut self, e: resocket::ErrorOccurred, _: &mut actix::Context<Self>) {
        if matches!(e.0, Error::OutboxFull { .. }) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[actix_rt::test]
async fn send_wait_applies_backpressure_and_delivers_everything_in_order() {
    use resocket::{Outbox, SendWhenRoom};
    let server = common::TestServer::start().await;
    let socket = SocketActor::connect(
        common::fast(&server.url())
            .outbox(Outbox::bounded(50))
            .build()
            .unwrap(),
    );
    let sender = socket.send(resocket::GetSender).await.unwrap();
    for n in 0..5_000 {
        sender.send_wait(format!("{n}")).await.unwrap();
    }
    // The actor-message form too.
    socket
        .send(SendWhenRoom::text("last"))
        .await
        .unwrap()
        .unwrap();
    common::wait_for("all of them", common::DEADLINE, || {
        server.received().len() == 5_001
    })
    .await;
    let expected: Vec<String> = (0..5_000)
        .map(|n| n.to_string())
        .chain(["last".to_string()])
        .collect();
    assert_eq!(server.received(), expected);
    let status = socket.send(resocket::GetStatus).await.unwrap();
    assert_eq!(status.counters.refused, 0, "waiting is not refusing");
}

#[actix_rt::test]
async fn send_wait_returns_at_once_for_a_closed_socket() {
    let server = common::TestServer::start().await;
    let socket = SocketActor::connect(common::fast(&server.url()).build().unwrap());
    let sender = socket.send(resocket::GetSender).await.unwrap();
    socket.send(Close::now()).await.unwrap();
    let refused = sender.send_wait("late").await.unwrap_err();
    assert_eq!(refused.error, resocket::Error::Closed);
}

#[actix_rt::test]
async fn a_send_wait_blocked_on_a_full_outbox_returns_closed_when_the_socket_closes() {
    // Nothing listens: the socket never connects, and its outbox of one stays full.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let socket = SocketActor::connect(
        common::fast(&format!("ws://127.0.0.1:{port}/ws"))
            .outbox(resocket::Outbox::bounded(1))
            .build()
            .unwrap(),
    );
    let sender = socket.send(resocket::GetSender).await.unwrap();
    sender.send("fills the outbox").unwrap();
    let waiting = actix_rt::spawn({
        let sender = sender.clone();
        async move { sender.send_wait("waits for room").await }
    });
    // Give it the chance to register as a waiter; had it not, the close would refuse it at
    // once and the test pass the same way.
    actix_rt::task::yield_now().await;
    let report = socket.send(Close::now()).await.unwrap();
    assert_eq!(report.unsent, 1);
    let result = actix_rt::time::timeout(common::DEADLINE, waiting)
        .await
        .expect("send_wait never returned after the socket closed")
        .unwrap();
    assert_eq!(result.unwrap_err().error, resocket::Error::Closed);
}

#[actix_rt::test]
async fn batches_from_a_sender_and_the_mailbox_arrive_in_order_with_single_sends() {
    use resocket::SendBatch;
    let (server, socket, _watch, sender) = open_to_quiet_server(Outbox::default()).await;
    let batch = |from: usize| (from..from + 100).map(|n| Outgoing::from(format!("{n}")));
    sender.send("single-0").unwrap();
    sender.send_batch(batch(0).collect()).unwrap();
    sender.send("single-1").unwrap();
    socket
        .send(SendBatch(batch(100).collect()))
        .await
        .unwrap()
        .unwrap();
    sender.send_batch(Vec::new()).unwrap();
    sender.send("single-2").unwrap();
    let mut expected = vec!["single-0".to_string()];
    expected.extend((0..100).map(|n| n.to_string()));
    expected.push("single-1".into());
    expected.extend((100..200).map(|n| n.to_string()));
    expected.push("single-2".into());
    wait_for("203 at the server", DEADLINE, || {
        server.received().len() == expected.len()
    })
    .await;
    assert_eq!(server.received(), expected);
}

/// A batch refused for a full outbox after `queued` messages, handing back `unsent`.
fn assert_outbox_full(refused: &resocket::BatchError, queued: usize, unsent: Vec<Outgoing>) {
    assert!(
        matches!(refused.error, Error::OutboxFull { .. }),
        "{refused}"
    );
    assert_eq!((refused.queued, refused.unsent.clone()), (queued, unsent));
}

#[actix_rt::test]
async fn a_batch_refused_part_way_hands_back_the_rest_in_order_and_loses_nothing() {
    use resocket::SendBatch;
    let (mut server, socket, watch, sender) = open_to_quiet_server(Outbox::bounded(5)).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    let numbered = |r: std::ops::Range<usize>| -> Vec<Outgoing> {
        r.map(|n| Outgoing::from(format!("m{n}"))).collect()
    };
    // The Sender's batch fits, two of the mailbox's do, and the rest comes back.
    sender.send_batch(numbered(0..3)).unwrap();
    let refused = socket
        .send(SendBatch(numbered(3..10)))
        .await
        .unwrap()
        .unwrap_err();
    assert_outbox_full(&refused, 2, numbered(5..10));
    assert!(
        refused.to_string().contains("5 of a batch of 7"),
        "{refused}"
    );
    let refused = sender.send_batch(numbered(5..7)).unwrap_err();
    assert_outbox_full(&refused, 0, numbered(5..7));
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.outbox_len, 5);
    assert_eq!(
        status.counters.refused, 7,
        "each message handed back counts"
    );
    server.restart().await;
    wait_for("the five queued", DEADLINE, || server.received().len() == 5).await;
    assert_eq!(server.received(), ["m0", "m1", "m2", "m3", "m4"]);
    // Once closed, nothing is queued and everything comes back.
    socket.send(Close::now()).await.unwrap();
    let refused = sender.send_batch(numbered(0..2)).unwrap_err();
    assert_eq!((refused.error, refused.queued), (Error::Closed, 0));
    assert_eq!(refused.unsent, numbered(0..2));
}

#[actix_rt::test]
async fn a_batch_stops_at_a_message_the_peer_could_not_take() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).peer_max_message(8).build().unwrap());
    let watch = Watch::attach(&socket);
    let sender = socket.send(GetSender).await.unwrap();
    watch.wait_opens(1).await;
    let batch = vec![
        Outgoing::from("short"),
        Outgoing::from("far too long for the peer"),
        Outgoing::from("after"),
    ];
    let refused = sender.send_batch(batch.clone()).unwrap_err();
    assert!(
        matches!(
            refused.error,
            Error::MessageTooLargeForPeer { size: 25, limit: 8 }
        ),
        "{refused}"
    );
    assert_eq!((refused.queued, refused.unsent), (1, batch[1..].to_vec()));
    // A message sent after the batch arrives right behind its first: nothing else was queued.
    sender.send("end").unwrap();
    wait_for("the first and the end at the server", DEADLINE, || {
        server.received().len() >= 2
    })
    .await;
    assert_eq!(server.received(), ["short", "end"]);
}

/// The messages the `Dropped` events seen by `watch` report, in all.
fn dropped(watch: &Watch) -> usize {
    watch
        .errors()
        .iter()
        .map(|e| match e {
            Error::Dropped { count } => *count,
            _ => 0,
        })
        .sum()
}

/// A socket with an outbox of 3 under `overflow`, backing off (its quiet server stopped), and
/// six numbered messages for it.
async fn backing_off_with_six_to_send(
    overflow: resocket::Overflow,
) -> (
    TestServer,
    actix::Addr<SocketActor>,
    Watch,
    resocket::Sender,
    Vec<Outgoing>,
) {
    let outbox = Outbox::bounded(3).on_overflow(overflow);
    let (mut server, socket, watch, sender) = open_to_quiet_server(outbox).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    let batch = (0..6).map(|n| Outgoing::from(format!("m{n}"))).collect();
    (server, socket, watch, sender, batch)
}

#[actix_rt::test]
async fn a_batch_under_drop_oldest_keeps_the_newest_and_reports_what_it_dropped() {
    let (mut server, socket, watch, sender, batch) =
        backing_off_with_six_to_send(resocket::Overflow::DropOldest).await;
    sender
        .send_batch(batch)
        .expect("DropOldest takes every message");
    assert_eq!(socket.send(GetStatus).await.unwrap().outbox_len, 3);
    wait_for("three reported dropped", DEADLINE, || dropped(&watch) == 3).await;
    server.restart().await;
    wait_for("the newest three", DEADLINE, || {
        server.received().len() == 3
    })
    .await;
    assert_eq!(server.received(), ["m3", "m4", "m5"]);
    assert_eq!(dropped(&watch), 3);
}

#[actix_rt::test]
async fn a_batch_under_drop_newest_stops_at_the_first_drop_and_hands_back_the_rest() {
    let (mut server, socket, watch, sender, batch) =
        backing_off_with_six_to_send(resocket::Overflow::DropNewest).await;
    let refused = sender.send_batch(batch.clone()).unwrap_err();
    assert_outbox_full(&refused, 3, batch[3..].to_vec());
    // The first message past the limit counts as dropped; the two after it were never tried.
    wait_for("one reported dropped", DEADLINE, || dropped(&watch) == 1).await;
    assert_eq!(socket.send(GetStatus).await.unwrap().outbox_len, 3);
    server.restart().await;
    wait_for("the first three", DEADLINE, || server.received().len() == 3).await;
    assert_eq!(server.received(), ["m0", "m1", "m2"]);
    assert_eq!(dropped(&watch), 1);
}
