//! Attacks on delivery options (TTL, collapse keys), requests and metrics, over real sockets:
//! a hostile review's reproductions (round 4), each of which failed before its fix. Each
//! test's comment says what broke; its name says what holds now.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::proxy::Proxy;
use common::supervision::{request_in_background, restarted, supervised_down, tree};
use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use resocket::testing::Panic;
use resocket::{
    Delivery, Error, GetSender, GetSocket, GetStatus, Outbox, Overflow, Request, SendMessage,
    SocketActor, StartSocket,
};

/// A ws:// URL nobody listens on (connection refused at once).
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("ws://{addr}/ws")
}

fn ttl(ms: u64) -> Delivery {
    Delivery::new().ttl(Duration::from_millis(ms))
}

fn keyed(key: &str) -> Delivery {
    Delivery::new().collapse_key(key)
}

fn panic_text(p: Box<dyn std::any::Any + std::marker::Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// 1. A TTL too large for Instant arithmetic panics (user input).
// ---------------------------------------------------------------------------------------

#[actix_rt::test]
async fn a_ttl_too_long_for_the_clock_never_expires_on_the_sender_path() {
    let socket = SocketActor::connect(fast(&dead_url()).build().unwrap());
    let sender = socket.send(GetSender).await.unwrap();
    let forever = Delivery::new().ttl(Duration::MAX);
    let result = catch_unwind(AssertUnwindSafe(|| sender.send_with("x", &forever)));
    assert!(
        result.is_ok(),
        "Sender::send_with with ttl(Duration::MAX) panicked: {}",
        panic_text(result.unwrap_err())
    );
}

#[actix_rt::test]
async fn a_ttl_too_long_for_the_clock_never_expires_on_the_actor_path() {
    let socket = SocketActor::connect(fast(&dead_url()).build().unwrap());
    let forever = Delivery::new().ttl(Duration::from_secs(u64::MAX));
    let answer = socket.send(SendMessage::text("x").with(forever)).await;
    assert!(
        matches!(answer, Ok(Ok(()))),
        "SendMessage with a very long TTL: {answer:?} (the actor panicked and is gone)"
    );
    assert!(socket.connected(), "the socket actor died");
}

// ---------------------------------------------------------------------------------------
// 2. Collapse: a larger replacement that does not fit puts the older message back at an
//    index taken before purge_expired removed entries in front of it.
// ---------------------------------------------------------------------------------------

#[actix_rt::test]
async fn a_refused_larger_replacement_after_an_expiry_purge_puts_the_older_back() {
    let socket = SocketActor::connect(
        fast(&dead_url())
            .outbox(Outbox::bounded(100).max_bytes(10))
            .build()
            .unwrap(),
    );
    let sender = socket.send(GetSender).await.unwrap();
    let sent = Instant::now();
    sender.send_with("e", &ttl(50)).unwrap();
    sender.send_with("f", &ttl(50)).unwrap();
    sender.send_with("1", &keyed("k")).unwrap(); // index 2
    sender.send("ppp").unwrap(); // 6 bytes queued
    common::past(sent, Duration::from_millis(50)).await;
    // 6 - 1 + 8 > 10: the older "1" is removed (index 2); still no room: purge drops "e" and
    // "f"; 3 + 8 > 10: refused, and "1" is re-inserted at index 2 of a 1-entry queue.
    let result = catch_unwind(AssertUnwindSafe(|| {
        sender.send_with("22222222", &keyed("k"))
    }));
    assert!(
        result.is_ok(),
        "a refused collapse panicked: {}",
        panic_text(result.unwrap_err())
    );
}

#[actix_rt::test]
async fn a_refused_larger_replacement_keeps_the_queue_in_order() {
    let (mut server, socket, _watch) =
        common::disconnected(|url| fast(url).outbox(Outbox::bounded(100).max_bytes(10))).await;
    let sender = socket.send(GetSender).await.unwrap();
    let sent = Instant::now();
    sender.send_with("e", &ttl(50)).unwrap();
    sender.send_with("1", &keyed("k")).unwrap(); // index 1
    sender.send("ppp").unwrap();
    common::past(sent, Duration::from_millis(50)).await;
    let refused = sender.send_with("22222222", &keyed("k"));
    assert!(refused.is_err(), "does not fit: refused");
    server.restart().await;
    wait_for("two messages", DEADLINE, || server.received().len() >= 2).await;
    // Sent in the order "1", "ppp"; the refusal put "1" back behind "ppp".
    assert_eq!(server.received(), ["1", "ppp"], "queue order changed");
}

// ---------------------------------------------------------------------------------------
// 3. Acked mode, DropOldest, bytes held in flight: the queue is emptied, the new message
//    still does not fit, and the older keyed one is put back at a stale index (panic); the
//    plain variant loses every queued message without a count.
// ---------------------------------------------------------------------------------------

/// An acked socket through a stalled proxy with one message ("FFFFFFFF", 8 bytes) in flight,
/// window 1, so that everything else stays queued; outbox 20 bytes, DropOldest.
async fn acked_with_eight_bytes_held() -> (TestServer, Proxy, Addr<SocketActor>) {
    let server = TestServer::start().await;
    let _app = common::record_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("review13")
        .ack_window(1)
        .heartbeat(Duration::from_secs(10), Duration::from_secs(30))
        .outbox(
            Outbox::bounded(100)
                .max_bytes(20)
                .on_overflow(Overflow::DropOldest),
        )
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    common::welcomed(&socket).await;
    proxy.stall(true);
    socket
        .send(SendMessage::text("FFFFFFFF"))
        .await
        .unwrap()
        .unwrap();
    common::wait_status(&socket, "never written", |s| s.unacked == 1).await;
    (server, proxy, socket)
}

#[actix_rt::test]
async fn acked_drop_oldest_with_a_larger_replacement_that_cannot_fit_refuses_it() {
    let (_server, _proxy, socket) = acked_with_eight_bytes_held().await;
    let sender = socket.send(GetSender).await.unwrap();
    sender.send("a").unwrap();
    sender.send("b").unwrap();
    sender.send_with("1", &keyed("k")).unwrap(); // index 2; 3 queued + 8 held
    let result = catch_unwind(AssertUnwindSafe(|| {
        sender.send_with("2222222222222", &keyed("k")) // 13 bytes: never fits beside 8 held
    }));
    assert!(
        result.is_ok(),
        "DropOldest + collapse panicked: {}",
        panic_text(result.unwrap_err())
    );
}

#[actix_rt::test]
async fn acked_drop_oldest_drops_nothing_when_what_is_in_flight_leaves_no_room() {
    let (_server, _proxy, socket) = acked_with_eight_bytes_held().await;
    socket.send(SendMessage::text("a")).await.unwrap().unwrap();
    socket.send(SendMessage::text("b")).await.unwrap().unwrap();
    let big = socket
        .send(SendMessage::text("ccccccccccccc")) // 13 bytes: 8 held + 13 > 20 whatever is dropped
        .await
        .unwrap();
    assert!(big.is_err(), "cannot fit: handed back");
    let status = socket.send(GetStatus).await.unwrap();
    // "a" and "b" were accepted (Ok); each must still be queued or counted as dropped.
    assert_eq!(
        (status.outbox_len, status.counters.dropped),
        (2, 1),
        "a and b stay queued; the refused one is the only drop counted"
    );
}

// ---------------------------------------------------------------------------------------
// 4. A request whose message the overflow policy drops waits for its whole timeout and
//    then reports RequestTimeout.
// ---------------------------------------------------------------------------------------

#[actix_rt::test]
async fn a_request_whose_message_the_overflow_policy_drops_fails_at_once() {
    let socket = SocketActor::connect(
        fast(&dead_url())
            .requests("/id")
            .outbox(Outbox::bounded(1).on_overflow(Overflow::DropOldest))
            .build()
            .unwrap(),
    );
    let answer = request_in_background(
        &socket,
        Request::new(r#"{"id":1,"method":"echo"}"#, Duration::from_secs(8)),
    );
    common::wait_status(&socket, "never pending", |s| s.pending_requests == 1).await;
    socket
        .send(SendMessage::text("newer"))
        .await
        .unwrap()
        .unwrap();
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(
        status.counters.dropped, 1,
        "the request's message was dropped"
    );
    // Its message is gone: it can never be written, so it fails at once with the drop (not
    // by its 8 s timeout, which would answer RequestTimeout).
    wait_for("the request answered", DEADLINE, || {
        answer.lock().unwrap().is_some()
    })
    .await;
    let told = answer.lock().unwrap().take().unwrap();
    assert_eq!(told.map_err(|e| e.error), Err(Error::Dropped { count: 1 }));
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.pending_requests, 0);
}

// ---------------------------------------------------------------------------------------
// 5. Supervisor restart: the inherited outbox loses the delivery options.
// ---------------------------------------------------------------------------------------

#[actix_rt::test]
async fn a_supervisor_restart_keeps_the_ttl() {
    let tree = tree(10);
    let (mut server, _watch, socket) = supervised_down(&tree, "ttl-restart", fast).await;
    let sent = Instant::now();
    socket
        .send(SendMessage::text("stale").with(ttl(100)))
        .await
        .unwrap()
        .unwrap();
    socket
        .send(SendMessage::text("fresh"))
        .await
        .unwrap()
        .unwrap();
    socket.do_send(Panic);
    restarted(&tree, "ttl-restart", &socket).await;
    common::past(sent, Duration::from_millis(100)).await;
    server.restart().await;
    wait_for("fresh", DEADLINE, || {
        server.received().contains(&"fresh".to_string())
    })
    .await;
    assert_eq!(
        server.received(),
        ["fresh"],
        "a message written 100+ ms after its 100 ms TTL"
    );
}

#[actix_rt::test]
async fn a_supervisor_restart_keeps_collapse_keys() {
    let tree = tree(10);
    let (mut server, _watch, socket) = supervised_down(&tree, "key-restart", fast).await;
    socket
        .send(SendMessage::text("BTC 1").with(keyed("BTC")))
        .await
        .unwrap()
        .unwrap();
    socket.do_send(Panic);
    restarted(&tree, "key-restart", &socket).await;
    let after = tree
        .send(GetSocket("key-restart".into()))
        .await
        .unwrap()
        .unwrap();
    after
        .send(SendMessage::text("BTC 2").with(keyed("BTC")))
        .await
        .unwrap()
        .unwrap();
    server.restart().await;
    wait_for("BTC 2", DEADLINE, || {
        server.received().contains(&"BTC 2".to_string())
    })
    .await;
    assert_eq!(
        server.received(),
        ["BTC 2"],
        "the newer keyed message did not replace the inherited one"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Metrics.
// ---------------------------------------------------------------------------------------

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
}

fn series(name: &str, socket: &str) -> Option<f64> {
    let text = recorder().render();
    let prefix = format!("{name}{{socket=\"{socket}\"}}");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str())?.trim().parse().ok())
}

async fn wait_series(name: &str, socket: &str, value: f64, within: Duration) -> Option<f64> {
    let start = Instant::now();
    loop {
        let now = series(name, socket);
        if now == Some(value) || start.elapsed() > within {
            return now;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Counters are published with `Counter::absolute`, which recorders implement as a max:
/// a restarted socket (same key, same label) counts from zero again and its counts vanish
/// under the old maximum.
#[actix_rt::test]
async fn metrics_counters_add_up_across_a_supervised_restart() {
    recorder();
    let server = TestServer::start().await;
    let tree = tree(10);
    let watch = Watch::detached();
    let start = watch.subscribe_all(StartSocket::new(
        "metered",
        fast(&server.url()).build().unwrap(),
    ));
    tree.send(start).await.unwrap().unwrap();
    watch.wait_opens(1).await;
    let socket = tree
        .send(GetSocket("metered".into()))
        .await
        .unwrap()
        .unwrap();
    for n in 0..3 {
        socket
            .send(SendMessage::text(format!("m{n}")))
            .await
            .unwrap()
            .unwrap();
    }
    let out = wait_series("resocket_messages_out_total", "metered", 3.0, DEADLINE).await;
    assert_eq!(out, Some(3.0));
    socket.do_send(Panic);
    restarted(&tree, "metered", &socket).await;
    watch.wait_opens(2).await;
    let after = tree
        .send(GetSocket("metered".into()))
        .await
        .unwrap()
        .unwrap();
    for n in 3..5 {
        after
            .send(SendMessage::text(format!("m{n}")))
            .await
            .unwrap()
            .unwrap();
    }
    wait_for("5 received", DEADLINE, || server.received().len() >= 5).await;
    // Published on every heartbeat tick (50 ms): 2 s is forty ticks.
    let out = wait_series(
        "resocket_messages_out_total",
        "metered",
        5.0,
        Duration::from_secs(2),
    )
    .await;
    let connects = series("resocket_connects_total", "metered");
    assert_eq!(
        (out, connects),
        (Some(5.0), Some(2.0)),
        "messages_out_total / connects_total after 5 messages over 2 connections"
    );
}

/// Heartbeat ticks only run while Open: during an outage (exactly when the outbox grows)
/// the gauges keep the value of the last state change.
#[actix_rt::test]
async fn the_outbox_gauge_moves_during_an_outage() {
    recorder();
    let mut server = TestServer::start().await;
    let config = fast(&server.url())
        .name("outage")
        .backoff(resocket::Backoff::exponential(
            Duration::from_secs(5),
            Duration::from_secs(5),
        ))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    let sender = socket.send(GetSender).await.unwrap();
    for n in 0..5 {
        sender.send(format!("m{n}")).unwrap();
    }
    assert_eq!(socket.send(GetStatus).await.unwrap().outbox_len, 5);
    // Ten heartbeat intervals.
    let gauge = wait_series(
        "resocket_outbox_messages",
        "outage",
        5.0,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(
        gauge,
        Some(5.0),
        "resocket_outbox_messages during the outage, 5 queued"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Smaller accounting / contract issues.
// ---------------------------------------------------------------------------------------

/// Beyond the 1,024 expired messages carried in events, the rest are folded into an
/// Error::Dropped event, while Counters::dropped leaves them out: the events and the
/// counters disagree.
#[actix_rt::test]
async fn expired_messages_beyond_those_handed_back_are_counted_not_called_dropped() {
    let (mut server, socket, watch) = common::disconnected(fast).await;
    let sender = socket.send(GetSender).await.unwrap();
    let sent = Instant::now();
    for n in 0..1030 {
        sender.send_with(format!("{n}"), &ttl(50)).unwrap();
    }
    sender.send("last").unwrap();
    common::past(sent, Duration::from_millis(50)).await;
    server.restart().await;
    wait_for("last", DEADLINE, || {
        server.received().contains(&"last".to_string())
    })
    .await;
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.counters.expired, 1030);
    let dropped_events: usize = watch
        .errors()
        .iter()
        .filter_map(|e| match e {
            Error::Dropped { count } => Some(*count),
            _ => None,
        })
        .sum();
    assert_eq!(
        (dropped_events as u64, status.counters.dropped),
        (0, 0),
        "nothing was dropped by the overflow policy (events, counter)"
    );
}

/// Delivery's docs: a newer message with the same key replaces the older "in place (it
/// takes the older one's position in the queue)". A larger one that fits once the older
/// one is gone goes to the back instead.
#[actix_rt::test]
async fn a_larger_replacement_takes_the_older_ones_place() {
    let (mut server, socket, _watch) =
        common::disconnected(|url| fast(url).outbox(Outbox::bounded(100).max_bytes(10))).await;
    let sender = socket.send(GetSender).await.unwrap();
    let sent = Instant::now();
    sender.send_with("k1", &keyed("k")).unwrap();
    sender.send("pp").unwrap();
    sender.send_with("ee", &ttl(50)).unwrap();
    common::past(sent, Duration::from_millis(50)).await;
    // 6 - 2 + 7 > 10: removed; 4 + 7 > 10: the expired "ee" is purged; 2 + 7 fits.
    sender.send_with("k2xxxxx", &keyed("k")).unwrap();
    server.restart().await;
    wait_for("two", DEADLINE, || server.received().len() >= 2).await;
    assert_eq!(
        server.received(),
        ["k2xxxxx", "pp"],
        "the replacement did not take the older one's position"
    );
}

// ---------------------------------------------------------------------------------------
// 8. Requests and the outbox/restart paths.
// ---------------------------------------------------------------------------------------

/// TakeOutbox handed a pending request's message to its own caller while the request stayed
/// pending: the request's caller was later handed the same message back again (with
/// RequestTimeout), so resending what comes back sent it twice. Now it goes back once, to
/// the request's caller, at once.
#[actix_rt::test]
async fn take_outbox_hands_a_requests_message_back_once_through_its_caller() {
    let socket = SocketActor::connect(fast(&dead_url()).requests("/id").build().unwrap());
    let request = Request::new(r#"{"id":1,"method":"echo"}"#, Duration::from_secs(8));
    let pending = socket.send(request); // queued at once
    take_outbox_hands_the_request_back(&socket, pending).await;
}

/// TakeOutbox on `socket` leaves the pending request's message out of its list, and the
/// request fails at once (Dropped), its message handed back to its caller.
async fn take_outbox_hands_the_request_back(
    socket: &Addr<SocketActor>,
    pending: actix::dev::Request<SocketActor, Request>,
) {
    let taken = socket.send(resocket::TakeOutbox).await.unwrap();
    assert!(
        taken.is_empty(),
        "the request's message goes back to its caller only"
    );
    let refused = pending.await.unwrap().unwrap_err();
    assert_eq!(refused.error, Error::Dropped { count: 1 });
    assert_eq!(refused.message, r#"{"id":1,"method":"echo"}"#.into());
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(
        (status.pending_requests, status.unacked),
        (0, 0),
        "failed at once, not at its timeout"
    );
}

/// The same in acked mode, for a request already written and not yet acknowledged: its
/// message was in TakeOutbox's list while the request stayed pending until its timeout.
#[actix_rt::test]
async fn take_outbox_hands_an_acked_in_flight_requests_message_back_once_through_its_caller() {
    let server = TestServer::start().await;
    let _app = common::rpc_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("take-in-flight")
        .requests("/id")
        .heartbeat(Duration::from_secs(10), Duration::from_secs(30))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    common::welcomed(&socket).await;
    proxy.stall(true); // written, never acknowledged
    let pending = socket.send(Request::new(
        r#"{"id":1,"method":"echo"}"#,
        Duration::from_secs(20),
    ));
    common::wait_status(&socket, "the request in flight", |s| s.unacked == 1).await;
    take_outbox_hands_the_request_back(&socket, pending).await;
}

/// Acked mode under a supervisor: a request in flight when the socket ended was failed with
/// Error::Closed, yet the restarted socket inherited the in-flight message and delivered it:
/// the request reached the server although its caller was told it did not. Now the pending
/// request is inherited too, and answered once.
#[actix_rt::test]
async fn an_acked_request_in_flight_survives_a_supervisor_restart_and_is_answered() {
    let server = TestServer::start().await;
    let app = common::rpc_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let tree = tree(10);
    let watch = Watch::detached();
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("review13-restart")
        .requests("/id")
        .heartbeat(Duration::from_secs(10), Duration::from_secs(30))
        .build()
        .unwrap();
    tree.send(watch.subscribe_all(StartSocket::new("rpc", config)))
        .await
        .unwrap()
        .unwrap();
    watch.wait_opens(1).await;
    let socket = tree.send(GetSocket("rpc".into())).await.unwrap().unwrap();
    common::welcomed(&socket).await;
    app.lock().unwrap().clear(); // (the probe)
    proxy.stall(true);
    let answer = request_in_background(
        &socket,
        Request::new(r#"{"id":1,"method":"echo"}"#, Duration::from_secs(8)),
    );
    common::wait_status(&socket, "never written", |s| s.unacked == 1).await;
    socket.do_send(Panic);
    restarted(&tree, "rpc", &socket).await;
    proxy.stall(false);
    proxy.cut(common::proxy::Cut::Rst);
    wait_for("the caller answered", DEADLINE, || {
        answer.lock().unwrap().is_some()
    })
    .await;
    let told = answer.lock().unwrap().take().unwrap();
    assert_eq!(
        told.map_err(|e| e.error),
        Ok(serde_json::json!({"id": 1, "result": null}))
    );
    let executed = app
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.text.contains(r#""method":"echo""#))
        .count();
    assert_eq!(executed, 1, "the request reached the application once");
}
