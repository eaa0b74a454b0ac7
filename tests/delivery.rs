//! Per-message delivery options over real sockets: a time to live (a message that would be
//! written after it is dropped and handed back in an event) and a collapse key (a newer
//! queued message replaces the older one).

mod common;

use std::time::{Duration, Instant};

use common::proxy::Proxy;
use common::{fast, record_app, wait_for, TestServer, Watch, DEADLINE};
use resocket::{Delivery, Error, GetSender, GetStatus, Outgoing, SendMessage, SocketActor};

fn ttl(ms: u64) -> Delivery {
    Delivery::new().ttl(Duration::from_millis(ms))
}

/// An acked socket `client` through a proxy to the test server's hub (with an application
/// that records what it takes), welcomed and with nothing in flight.
async fn acked_behind_proxy(
    client: &str,
) -> (
    TestServer,
    std::sync::Arc<std::sync::Mutex<Vec<resocket::server::FromClient>>>,
    Proxy,
    actix::Addr<SocketActor>,
    Watch,
) {
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked(client)
        .heartbeat(Duration::from_secs(10), Duration::from_secs(30))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    common::welcomed(&socket).await;
    (server, app, proxy, socket, watch)
}

#[actix_rt::test]
async fn a_message_whose_ttl_passes_while_disconnected_is_not_written_and_comes_back() {
    let (mut server, socket, watch) = common::disconnected(fast).await;
    let sent = Instant::now();
    let send = |text: &str, delivery: Delivery| {
        let socket = socket.clone();
        let message = SendMessage::text(text).with(delivery);
        async move { socket.send(message).await.unwrap().unwrap() }
    };
    send("stale", ttl(100)).await;
    send("fresh", Delivery::new().ttl(Duration::from_secs(60))).await;
    send("plain", Delivery::new()).await;
    common::past(sent, Duration::from_millis(100)).await;
    server.restart().await;
    wait_for("two messages", DEADLINE, || server.received().len() >= 2).await;
    assert_eq!(server.received(), ["fresh", "plain"]);
    watch
        .wait_error("expired", |e| {
            *e == Error::Expired {
                ttl: Duration::from_millis(100),
                message: Outgoing::from("stale"),
            }
        })
        .await;
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.counters.expired, 1);
    assert_eq!(status.counters.dropped, 0);
}

#[actix_rt::test]
async fn a_reconnect_replays_the_latest_value_of_each_key_once() {
    let (mut server, socket, _watch) = common::disconnected(fast).await;
    let sender = socket.send(GetSender).await.unwrap();
    let btc = Delivery::new().collapse_key("BTC");
    let eth = Delivery::new().collapse_key("ETH");
    for n in 0..100 {
        sender.send_with(format!("BTC {n}"), &btc).unwrap();
        if n == 10 {
            sender.send("news").unwrap();
        }
        sender.send_with(format!("ETH {n}"), &eth).unwrap();
    }
    assert_eq!(socket.send(GetStatus).await.unwrap().outbox_len, 3);
    server.restart().await;
    wait_for("three messages", DEADLINE, || server.received().len() >= 3).await;
    // Each latest value in the place of the first one queued for its key.
    assert_eq!(server.received(), ["BTC 99", "ETH 99", "news"]);
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.counters.collapsed, 198);
    // Open, a key's message that was written is not replaced: the next one follows it.
    sender.send_with("BTC 100", &btc).unwrap();
    sender.send_with("BTC 101", &btc).unwrap();
    wait_for("the live ones", DEADLINE, || server.received().len() >= 4).await;
    assert!(server.received().ends_with(&["BTC 101".to_string()]));
}

#[actix_rt::test]
async fn a_zero_ttl_is_refused_with_the_message_handed_back() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let zero = Delivery::new().ttl(Duration::ZERO);
    let refused = socket
        .send(SendMessage::text("now or never").with(zero.clone()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(refused.error, Error::InvalidConfig { field: "ttl", .. }),
        "{refused}"
    );
    assert_eq!(refused.message, Outgoing::from("now or never"));
    let sender = socket.send(GetSender).await.unwrap();
    let refused = sender.send_with("again", &zero).unwrap_err();
    assert!(matches!(refused.error, Error::InvalidConfig { .. }));
}

/// Acked mode: a message already written when its TTL passes is in flight, numbered; dropping
/// it would leave a hole the server cannot cross. It is resent after the reconnect and
/// delivered exactly once; one still queued when its TTL passes is dropped without a hole.
#[actix_rt::test]
async fn in_acked_mode_the_ttl_ends_when_a_message_is_written() {
    let (_server, app, proxy, socket, watch) = acked_behind_proxy("ttl").await;
    app.lock().unwrap().clear(); // (the probe)
    proxy.stall(true);
    let sent = Instant::now();
    socket
        .send(SendMessage::text(r#"{"n":1}"#).with(ttl(100)))
        .await
        .unwrap()
        .unwrap();
    // Written (in flight, not acknowledged through the stalled path).
    common::wait_status(&socket, "never written", |s| s.unacked == 1).await;
    common::past(sent, Duration::from_millis(100)).await;
    proxy.cut(common::proxy::Cut::Rst);
    proxy.stall(false);
    watch.wait_opens(2).await;
    wait_for("the in-flight message", DEADLINE, || {
        !app.lock().unwrap().is_empty()
    })
    .await;
    // Now one that expires while queued, behind the link's back.
    proxy.refuse(true);
    proxy.cut(common::proxy::Cut::Rst);
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    let sent = Instant::now();
    socket
        .send(SendMessage::text(r#"{"n":2}"#).with(ttl(100)))
        .await
        .unwrap()
        .unwrap();
    socket
        .send(SendMessage::text(r#"{"n":3}"#))
        .await
        .unwrap()
        .unwrap();
    common::past(sent, Duration::from_millis(100)).await;
    proxy.refuse(false);
    wait_for("the last message", DEADLINE, || {
        app.lock().unwrap().len() >= 2
    })
    .await;
    let texts: Vec<String> = app.lock().unwrap().iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, [r#"{"n":1}"#, r#"{"n":3}"#]);
    let expired: Vec<Error> = watch
        .errors()
        .into_iter()
        .filter(|e| matches!(e, Error::Expired { .. }))
        .collect();
    assert_eq!(
        expired,
        [Error::Expired {
            ttl: Duration::from_millis(100),
            message: Outgoing::from(r#"{"n":2}"#)
        }]
    );
}

/// A receipt that counts its calls.
fn counted() -> (Delivery, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let delivery = Delivery::new().on_written(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    (delivery, calls)
}

#[actix_rt::test]
async fn a_receipt_is_called_once_written_and_never_for_a_message_that_expired() {
    use std::sync::atomic::Ordering;
    let (mut server, socket, watch) = common::disconnected(fast).await;
    let (written, written_calls) = counted();
    let (expiring, expired_calls) = counted();
    let sent = Instant::now();
    let queue =
        |text: &str, delivery: Delivery| socket.send(SendMessage::text(text).with(delivery));
    queue("expires", expiring.ttl(Duration::from_millis(100)))
        .await
        .unwrap()
        .unwrap();
    queue("kept", written).await.unwrap().unwrap();
    assert_eq!(
        written_calls.load(Ordering::SeqCst),
        0,
        "queued, not written"
    );
    common::past(sent, Duration::from_millis(100)).await;
    server.restart().await;
    wait_for("the kept message", DEADLINE, || {
        !server.received().is_empty()
    })
    .await;
    wait_for("its receipt", DEADLINE, || {
        written_calls.load(Ordering::SeqCst) == 1
    })
    .await;
    watch
        .wait_error("expired", |e| matches!(e, Error::Expired { .. }))
        .await;
    assert_eq!(server.received(), ["kept"]);
    assert_eq!(
        expired_calls.load(Ordering::SeqCst),
        0,
        "an expired message has no receipt"
    );
    assert_eq!(written_calls.load(Ordering::SeqCst), 1, "called once");
}

#[actix_rt::test]
async fn in_acked_mode_a_receipt_waits_for_the_servers_ack_not_the_write() {
    use std::sync::atomic::Ordering;
    let (_server, _app, proxy, socket, _watch) = acked_behind_proxy("receipt").await;
    proxy.stall(true);
    let (delivery, calls) = counted();
    socket
        .send(SendMessage::text(r#"{"n":1}"#).with(delivery))
        .await
        .unwrap()
        .unwrap();
    common::wait_status(&socket, "written, not acknowledged", |s| s.unacked == 1).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "written is not acknowledged"
    );
    proxy.stall(false);
    wait_for("the ack's receipt", DEADLINE, || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
    common::wait_status(&socket, "acknowledged", |s| s.unacked == 0).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// A receipt says the message's bytes reached the kernel (the flush completed), not only that
// it was encoded: against a peer that reads nothing, a message far larger than the socket
// buffers is encoded (it has left the outbox) and its receipt waits until the peer reads.
#[actix_rt::test]
async fn a_receipt_waits_for_the_flush_while_the_peer_reads_nothing() {
    use common::raw_server::RawServer;
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const BIG: usize = 12 << 20; // far past the loopback socket buffers a peer that never reads lets fill
    let reading = Arc::new(AtomicBool::new(false));
    let read_flag = reading.clone();
    let server = RawServer::start(move |stream| {
        let started = Instant::now();
        while !read_flag.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    });
    let config = resocket::SocketConfig::builder(server.url())
        .heartbeat(Duration::from_secs(60), Duration::from_secs(120))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    let (delivery, calls) = counted();
    socket
        .send(SendMessage::text("x".repeat(BIG)).with(delivery))
        .await
        .unwrap()
        .unwrap();
    socket
        .send(SendMessage::text("after"))
        .await
        .unwrap()
        .unwrap();
    // The big one encoded (it left the outbox; the small one waits behind the full write
    // buffer), so a receipt fired on encoding would have fired by now.
    common::wait_status(&socket, "the big message encoded", |s| s.outbox_len <= 1).await;
    assert_eq!(calls.load(Ordering::SeqCst), 0, "encoded, not flushed");
    reading.store(true, Ordering::SeqCst);
    wait_for("the receipt once the peer reads", DEADLINE, || {
        calls.load(Ordering::SeqCst) == 1
    })
    .await;
}
