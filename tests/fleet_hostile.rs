//! The fleet under a hostile review: each test names one way to get two owners of a key,
//! lose, strand or reorder a message, or spin; each failed before its fix (the review's
//! findings, kept). Two name holes still open, ignored with the reason.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::fleet::{
    key, node_config, run_node_from_env, FleetServer, NodeProcess, LEASE_TTL, MAX_BACKOFF,
    RENEW_DEADLINE, RENEW_INTERVAL,
};
use common::proxy::{Cut, Proxy};
use common::redis::Redis;
use common::wait_for;
use resocket::{
    Backoff, Fleet, FleetConfig, FleetSender, ListSockets, SocketConfig, SubscribeSupervision,
    SupervisionEvent,
};

const STARTUP: Duration = Duration::from_secs(60);

/// The body of every node process (see `common::fleet`); an ordinary run does nothing.
#[test]
#[ignore = "run as a child process by the fleet tests"]
fn fleet_node_process() {
    run_node_from_env();
}

// ---------------------------------------------------------------------------------------------
// helpers

async fn redis_con(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap()
}

/// The upstream stops answering (every connection dropped) and the key's socket is down.
async fn upstream_down(switch: &Switch, server: &FleetServer) {
    switch.drop_all.store(true, Ordering::SeqCst);
    switch.cut();
    wait_for("the socket is down", STARTUP, || {
        server.ledger.live().is_empty()
    })
    .await;
}

/// Appends `n` entries `m00000{pad}`, `m00001{pad}`, … to `stream` in one pipeline.
async fn backlog(con: &mut redis::aio::MultiplexedConnection, stream: &str, n: usize, pad: &str) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("m")
            .arg(format!("m{i:05}{pad}"))
            .ignore();
    }
    let () = pipe.query_async(con).await.unwrap();
}

fn live_keys_of(server: &FleetServer, node: &str) -> BTreeSet<String> {
    server
        .ledger
        .conns()
        .into_iter()
        .filter(|c| c.closed.is_none() && c.node == node)
        .map(|c| c.key)
        .collect()
}

fn distinct_messages(server: &FleetServer) -> BTreeSet<String> {
    server.ledger.messages().into_iter().map(|m| m.1).collect()
}

/// Collects a supervisor's events.
struct Events(Arc<Mutex<Vec<(Instant, SupervisionEvent)>>>);

impl Actor for Events {
    type Context = Context<Self>;
}

impl Handler<SupervisionEvent> for Events {
    type Result = ();
    fn handle(&mut self, event: SupervisionEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().push((Instant::now(), event));
    }
}

async fn subscribe_events(fleet: &Fleet) -> Arc<Mutex<Vec<(Instant, SupervisionEvent)>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let addr = Events(Arc::clone(&events)).start();
    fleet
        .supervisor()
        .send(SubscribeSupervision(addr.recipient()))
        .await
        .unwrap();
    events
}

/// A TCP relay to `upstream` that answers the WebSocket upgrade with HTTP 404 when the
/// request line contains the string set with `reject` (an upstream that drops a feed).
struct Switch {
    addr: SocketAddr,
    reject: Arc<Mutex<Option<String>>>,
    generation: tokio::sync::watch::Sender<u64>,
    rejected: Arc<AtomicU64>,
    /// Every new connection is closed at once (the upstream is down).
    drop_all: Arc<std::sync::atomic::AtomicBool>,
    /// The next this many connections get HTTP 404, whatever their path.
    not_found_next: Arc<AtomicU64>,
}

impl Switch {
    async fn start(upstream: SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reject: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let (generation, watch) = tokio::sync::watch::channel(0u64);
        let rejected = Arc::new(AtomicU64::new(0));
        let drop_all = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let not_found_next = Arc::new(AtomicU64::new(0));
        let (r, count) = (Arc::clone(&reject), Arc::clone(&rejected));
        let (drop_flag, nf) = (Arc::clone(&drop_all), Arc::clone(&not_found_next));
        actix_rt::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let (r, count) = (Arc::clone(&r), Arc::clone(&count));
                let once = nf
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                if !once && drop_flag.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut watch = watch.clone();
                actix_rt::spawn(async move {
                    let born = *watch.borrow();
                    let mut head = vec![0u8; 8192];
                    let Ok(n) = client.read(&mut head).await else {
                        return;
                    };
                    let line = String::from_utf8_lossy(&head[..n]).to_string();
                    let bad = r.lock().unwrap().clone();
                    if once || bad.is_some_and(|b| line.lines().next().unwrap_or("").contains(&b)) {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = client
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    if server.write_all(&head[..n]).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = async {
                            loop {
                                if watch.changed().await.is_err() { return; }
                                if *watch.borrow() > born { return; }
                            }
                        } => {}
                    }
                });
            }
        });
        Switch {
            addr,
            reject,
            generation,
            rejected,
            drop_all,
            not_found_next,
        }
    }

    fn reject(&self, needle: Option<&str>) {
        *self.reject.lock().unwrap() = needle.map(str::to_string);
    }

    /// Ends every connection open now (FIN).
    fn cut(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The stream reader: one XREADGROUP for every key held, and `reading` is never revisited on
//    error. A NOGROUP on one stream fails the whole call forever.

// An operator deletes one key's stream (DEL): messages to every OTHER key of its owner are
// accepted by Redis and never delivered.
#[actix_rt::test]
async fn attack_one_deleted_stream_stops_delivery_to_every_key_of_its_owner() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    const KEYS: usize = 4;
    let _a = NodeProcess::spawn("a", "del", &redis.url(), &server, KEYS);
    wait_for("4 keys on a", STARTUP, || server.ledger.each_once(KEYS)).await;
    let sender = FleetSender::connect(&redis.url(), "del").await.unwrap();
    for i in 0..KEYS {
        sender.send(&key(i), format!("warm-{i}")).await.unwrap();
    }
    wait_for("the warm-up messages", STARTUP, || {
        distinct_messages(&server).len() == KEYS
    })
    .await;
    let mut con = redis_con(&redis.url()).await;
    let _: i64 = redis::cmd("DEL")
        .arg("resocket:{del}:to:key-0000")
        .query_async(&mut con)
        .await
        .unwrap();
    for i in 1..KEYS {
        sender.send(&key(i), format!("after-{i}")).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && distinct_messages(&server).len() < 2 * KEYS - 1 {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let got = distinct_messages(&server);
    let missing: Vec<String> = (1..KEYS)
        .map(|i| format!("after-{i}"))
        .filter(|m| !got.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "10 s after one stream was deleted, messages Redis accepted for the other keys never arrived: {missing:?}"
    );
}

// Redis restarts empty within the renew deadline (the README's "blink": owners keep their keys
// and reassert their leases): every message published after it is accepted and never delivered.
#[actix_rt::test]
async fn attack_messages_after_a_redis_blink_are_never_delivered() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let server = FleetServer::start().await;
    const KEYS: usize = 4;
    let _a = NodeProcess::spawn("a", "blink2", &redis.url(), &server, KEYS);
    wait_for("4 keys on a", STARTUP, || server.ledger.each_once(KEYS)).await;
    let sender = FleetSender::connect(&redis.url(), "blink2").await.unwrap();
    for i in 0..KEYS {
        sender.send(&key(i), format!("warm-{i}")).await.unwrap();
    }
    wait_for("the warm-up messages", STARTUP, || {
        distinct_messages(&server).len() == KEYS
    })
    .await;
    let conns = server.ledger.conns().len();
    redis.restart();
    // The owner keeps its sockets (the restart was shorter than its deadline).
    actix_rt::time::sleep(RENEW_DEADLINE + 4 * RENEW_INTERVAL).await;
    assert_eq!(server.ledger.conns().len(), conns, "no socket moved");
    for i in 0..KEYS {
        let message = format!("after-{i}");
        let until = Instant::now() + Duration::from_secs(5);
        while sender.send(&key(i), &message).await.is_err() {
            assert!(Instant::now() < until, "Redis takes the message");
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && distinct_messages(&server).len() < 2 * KEYS {
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let got = distinct_messages(&server);
    let missing: Vec<String> = (0..KEYS)
        .map(|i| format!("after-{i}"))
        .filter(|m| !got.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "10 s after a Redis blink, messages Redis accepted never arrived: {missing:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. One key's upstream refuses it (HTTP 404): its socket's restarts exceed the supervisor's
//    intensity, the supervisor stops EVERY socket and itself, and the node keeps renewing every
//    lease: its whole share runs nowhere, forever, and no other node may take it.
#[actix_rt::test]
async fn attack_one_refused_key_kills_the_node_but_it_keeps_every_lease() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let switch = Switch::start(server.addr).await;
    const KEYS: usize = 10;
    let a = Fleet::start(
        node_config(&redis.url(), "refused", "a", KEYS, switch.addr)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let _b = NodeProcess::spawn("b", "refused", &redis.url(), &server, KEYS);
    wait_for("10 keys over a and b", STARTUP, || {
        server.ledger.each_once(KEYS) && server.ledger.per_node().len() == 2
    })
    .await;
    let a_keys = live_keys_of(&server, "a");
    let bad = a_keys.iter().next().unwrap().clone();
    // The upstream drops one of a's feeds; a's connections are cut and reconnect.
    switch.reject(Some(&format!("/fleet/{bad}?")));
    switch.cut();
    actix_rt::time::sleep(Duration::from_secs(5)).await;
    let live = server.ledger.live();
    let dead: Vec<&String> = a_keys
        .iter()
        .filter(|k| **k != bad && !live.contains_key(*k))
        .collect();
    let stats = a.stats();
    assert!(
        dead.is_empty(),
        "one refused key ({bad}, refused {} times) took down a's other keys {dead:?}: a reports owned {} with {} live connections; b runs {:?}",
        switch.rejected.load(Ordering::SeqCst),
        stats.owned,
        live_keys_of(&server, "a").len(),
        live_keys_of(&server, "b").len(),
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Redis slow for one node (round trip above renew_interval) but its commands still land: each
//    tick runs in Redis (it stays a member), the node discards every answer as late and never
//    places or takes a key, and the others leave its share to it: keys run nowhere, for as long
//    as the slowness lasts.
#[actix_rt::test]
async fn attack_a_node_with_slow_redis_is_a_member_that_owns_nothing() {
    // 150 ms each way: a 300 ms round trip against a 250 ms renew interval.
    slow_redis("slow", Duration::from_millis(150)).await;
}

// 3b. The same with a round trip above half the renew deadline (700 ms against 1.2 s): the
//     tick lands, but what is left of the deadline is shorter than the acquire's round trip
//     (whose lease is then set in Redis and unknown to the node, blocking the key for a TTL).
#[actix_rt::test]
#[ignore = "open: a Redis round trip above half the renew deadline leaves the acquire no time after the tick (the README says so)"]
async fn attack_a_node_with_redis_slower_than_half_its_deadline_owns_nothing() {
    slow_redis("slower", Duration::from_millis(350)).await;
}

async fn slow_redis(fleet: &str, one_way: Duration) {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let proxy = Proxy::start(redis.addr).await;
    const KEYS: usize = 20;
    let _a = NodeProcess::spawn(
        "a",
        fleet,
        &format!("redis://{}/", proxy.addr),
        &server,
        KEYS,
    );
    let _b = NodeProcess::spawn("b", fleet, &redis.url(), &server, KEYS);
    wait_for("20 keys over 2 nodes", STARTUP, || {
        server.ledger.each_once(KEYS) && server.ledger.per_node().len() == 2
    })
    .await;
    proxy.delay(one_way);
    actix_rt::time::sleep(LEASE_TTL * 2).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && !server.ledger.each_once(KEYS) {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let mut con = redis_con(&redis.url()).await;
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("resocket:{{{fleet}}}:nodes"))
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    let live = server.ledger.live();
    assert!(
        server.ledger.each_once(KEYS),
        "19 s into a slow Redis path for a ({one_way:?} each way): {} of {KEYS} keys run nowhere; live per node {:?}; members in Redis {members:?}",
        KEYS - live.len(),
        server.ledger.per_node(),
    );
    proxy.delay(Duration::ZERO);
}

// ---------------------------------------------------------------------------------------------
// 4. Handing keys over, `place()` awaits `leases.release` with no bound of its own. If the shared
//    Redis connection is being re-established (another user of it, FleetSender::send here, hit
//    the cut first), release waits for the ConnectionManager's whole retry schedule (7 attempts
//    of up to renew_interval each, with backoff): longer than the lease TTL. Meanwhile the
//    node's other sockets run, unchecked, past their leases: another node takes them.

/// Runs `hook` once, on the first ChildStopped, inside the supervisor's thread's turn.
struct OnFirstStop {
    hook: Option<Box<dyn FnOnce()>>,
    at: Arc<Mutex<Option<Instant>>>,
}

impl Actor for OnFirstStop {
    type Context = Context<Self>;
}

impl Handler<SupervisionEvent> for OnFirstStop {
    type Result = ();
    fn handle(&mut self, event: SupervisionEvent, _: &mut Context<Self>) {
        if matches!(event, SupervisionEvent::ChildStopped { .. }) {
            if let Some(hook) = self.hook.take() {
                *self.at.lock().unwrap() = Some(Instant::now());
                hook();
            }
        }
    }
}

// Redis's connection breaks during a hand-over while the application publishes through the
// node: the node's release waits out the reconnect schedule and its other sockets outlive
// their leases, taken meanwhile by another node.
#[actix_rt::test]
async fn attack_a_release_stuck_behind_a_reconnect_keeps_sockets_past_their_leases() {
    let _ = env_logger::try_init();
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let to_redis = Arc::new(Proxy::start(redis.addr).await);
    const KEYS: usize = 20;
    let a = Fleet::start(
        node_config(
            &format!("redis://{}/", to_redis.addr),
            "stuck",
            "a",
            KEYS,
            server.addr,
        )
        .build()
        .unwrap(),
    )
    .await
    .unwrap();
    wait_for("a runs every key", STARTUP, || {
        live_keys_of(&server, "a").len() == KEYS && server.ledger.each_once(KEYS)
    })
    .await;
    let (proxy, sender) = (Arc::clone(&to_redis), a.sender());
    let cut_at = Arc::new(Mutex::new(None));
    let hook = OnFirstStop {
        hook: Some(Box::new(move || {
            proxy.stall(true);
            proxy.cut(Cut::Rst);
            // The application keeps publishing through the node.
            actix_rt::spawn(async move {
                for _ in 0..200 {
                    let _ = actix_rt::time::timeout(
                        Duration::from_millis(50),
                        sender.send("key-0000", "bg"),
                    )
                    .await;
                    actix_rt::time::sleep(Duration::from_micros(200)).await;
                }
            });
        })),
        at: Arc::clone(&cut_at),
    }
    .start();
    a.supervisor()
        .send(SubscribeSupervision(hook.recipient()))
        .await
        .unwrap();
    // b joins: a's next tick hands b its share.
    let _b = NodeProcess::spawn("b", "stuck", &redis.url(), &server, KEYS);
    wait_for("a starts handing keys over", STARTUP, || {
        cut_at.lock().unwrap().is_some()
    })
    .await;
    let cut = cut_at.lock().unwrap().unwrap();
    // Watch a's own sockets against b's connections.
    let mut overlaps: BTreeMap<String, (Duration, Duration)> = BTreeMap::new();
    while cut.elapsed() < Duration::from_secs(8) {
        let a_sockets: BTreeSet<String> = a
            .supervisor()
            .send(ListSockets)
            .await
            .unwrap()
            .into_iter()
            .collect();
        for k in live_keys_of(&server, "b") {
            if a_sockets.contains(&k) {
                let now = cut.elapsed();
                overlaps.entry(k).or_insert((now, now)).1 = now;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    to_redis.stall(false);
    let stats = a.stats();
    assert!(
        overlaps.is_empty(),
        "{} key(s) had a connection from b while a still ran their sockets (a: {} deadline stops, {} renewals failed); (first, last) seen after the cut: {:?}",
        overlaps.len(),
        stats.deadline_stops,
        stats.renewals_failed,
        overlaps.iter().take(5).collect::<Vec<_>>()
    );
    assert_no_ledger_overlap(&server);
}

fn assert_no_ledger_overlap(server: &FleetServer) {
    let overlaps = server.ledger.overlaps();
    assert!(
        overlaps.is_empty(),
        "{} overlapping connections at the upstream, the first: {:?}",
        overlaps.len(),
        overlaps.first()
    );
}

/// Redis `INFO commandstats` calls of one command.
async fn command_calls(con: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

async fn pending_count(con: &mut redis::aio::MultiplexedConnection, stream: &str) -> i64 {
    // (No group yet: -1.)
    let Ok(reply) = redis::cmd("XPENDING")
        .arg(stream)
        .arg("owners")
        .query_async::<redis::Value>(con)
        .await
    else {
        return -1;
    };
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => -1,
        },
        _ => -1,
    }
}

// ---------------------------------------------------------------------------------------------
// 5. (HELD) A socket restarted by its supervisor (its upstream answered 404 once, a fatal
//    handshake error) inherits its outbox: are the inherited entries still acknowledged (the
//    `Delivery::on_written` docs say a receipt is not called for a message handed to a
//    restarted socket)? They are: the receipt travels with the entry (the doc is stale).
#[actix_rt::test]
async fn attack_entries_written_by_a_restarted_socket_are_never_acknowledged() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let switch = Switch::start(server.addr).await;
    let a = Fleet::start(
        node_config(&redis.url(), "restart", "a", 1, switch.addr)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    wait_for("a runs key-0000", STARTUP, || server.ledger.each_once(1)).await;
    let events = subscribe_events(&a).await;
    // The upstream goes down; what is published meanwhile waits in the socket's outbox.
    upstream_down(&switch, &server).await;
    const N: usize = 1000;
    let sender = a.sender();
    for i in 0..N {
        sender.send("key-0000", format!("m{i}")).await.unwrap();
    }
    wait_for("every entry handed to the socket", STARTUP, || {
        a.stats().messages_delivered == N as u64
    })
    .await;
    // It comes back, answering one attempt with 404 first: the socket ends, and is restarted.
    switch.not_found_next.store(1, Ordering::SeqCst);
    switch.drop_all.store(false, Ordering::SeqCst);
    wait_for("every message at the upstream", STARTUP, || {
        distinct_messages(&server).len() == N
    })
    .await;
    let mut con = redis_con(&redis.url()).await;
    let stream = "resocket:{restart}:to:key-0000";
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && pending_count(&mut con, stream).await > 0 {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = pending_count(&mut con, stream).await;
    let acked = a.stats().messages_acked;
    // The consequence: the next owner sends them all again.
    a.leave().await;
    let b = Fleet::start(
        node_config(&redis.url(), "restart", "b", 1, server.addr)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let _ = actix_rt::time::timeout(Duration::from_secs(10), async {
        while server.ledger.messages().len() < 2 * N {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let duplicates = server.ledger.messages().len() - N;
    b.leave().await;
    let ended = events
        .lock()
        .unwrap()
        .iter()
        .any(|(_, e)| matches!(e, SupervisionEvent::SocketEnded { .. }));
    assert!(
        ended,
        "the socket ended on the 404: {:?}",
        events.lock().unwrap()
    );
    assert!(
        pending == 0 && duplicates <= 256,
        "all {N} written after the socket's restart, 5 s later {pending} still pending ({acked} acknowledged); the next owner wrote {duplicates} of them again (README: bounded by one read batch)"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. One message larger than the socket's outbox (16 MiB by default) is accepted by Redis; the
//    socket refuses it, the reader stops at it and re-claims it once (the adopt path then marks
//    the key read again): it and every entry read in the same batch after it stay pending for
//    as long as this node owns the key, overtaken by everything published later.
#[actix_rt::test]
async fn attack_an_oversized_message_strands_the_rest_of_its_batch() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let _a = NodeProcess::spawn("a", "poison", &redis.url(), &server, 1);
    wait_for("a runs key-0000", STARTUP, || server.ledger.each_once(1)).await;
    let sender = FleetSender::connect(&redis.url(), "poison").await.unwrap();
    sender.send("key-0000", "before").await.unwrap();
    wait_for("before", STARTUP, || {
        distinct_messages(&server).contains("before")
    })
    .await;
    let mut con = redis_con(&redis.url()).await;
    // The oversized message and the one after it, read in one batch (as on a busy stream).
    let stream = "resocket:{poison}:to:key-0000";
    let () = redis::pipe()
        .atomic()
        .cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("m")
        .arg("x".repeat(17 * 1024 * 1024))
        .ignore()
        .cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("m")
        .arg("after")
        .ignore()
        .query_async(&mut con)
        .await
        .unwrap();
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    let claims_before = command_calls(&mut con, "xautoclaim").await;
    let window = Duration::from_secs(3);
    actix_rt::time::sleep(window).await;
    let claims = command_calls(&mut con, "xautoclaim").await - claims_before;
    // A message published later still flows: it overtakes "after".
    sender.send("key-0000", "later").await.unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until && !distinct_messages(&server).contains("after") {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let pending = pending_count(&mut con, "resocket:{poison}:to:key-0000").await;
    let got: Vec<String> = distinct_messages(&server)
        .into_iter()
        .map(|m| m.chars().take(20).collect())
        .collect();
    assert!(
        got.contains(&"after".to_string()),
        "10 s later the key has received only {got:?} (in order of arrival: {:?}); {pending} entries pending; the reader ran XAUTOCLAIM {claims} times in {window:?}",
        server.ledger.messages().iter().map(|m| m.1.chars().take(10).collect::<String>()).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. A backlog while the upstream is down: the reader fills the outbox (10,000), is refused,
//    forgets the key (`reading.remove`), re-adopts it at the next round (XAUTOCLAIM over the
//    whole PEL, which XREADGROUP grows by 256 every round) and has no pause between rounds:
//    a busy loop against Redis for as long as the upstream is down.
#[actix_rt::test]
async fn attack_a_backlog_with_the_upstream_down_spins_the_reader() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let switch = Switch::start(server.addr).await;
    let a = Fleet::start(
        node_config(&redis.url(), "spin", "a", 1, switch.addr)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    wait_for("a runs key-0000", STARTUP, || server.ledger.each_once(1)).await;
    upstream_down(&switch, &server).await;
    let mut con = redis_con(&redis.url()).await;
    const N: usize = 30_000;
    backlog(
        &mut con,
        "resocket:{spin}:to:key-0000",
        N,
        &format!("-{}", "p".repeat(100)),
    )
    .await;
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(3);
    let (claims0, reads0) = (
        command_calls(&mut con, "xautoclaim").await,
        command_calls(&mut con, "xreadgroup").await,
    );
    actix_rt::time::sleep(window).await;
    let claims = command_calls(&mut con, "xautoclaim").await - claims0;
    let reads = command_calls(&mut con, "xreadgroup").await - reads0;
    let pending = pending_count(&mut con, "resocket:{spin}:to:key-0000").await;
    let stats = a.stats();
    assert!(
        claims < 100,
        "upstream down, {N} waiting: in {window:?} the reader ran {claims} XAUTOCLAIM and {reads} XREADGROUP; {pending} entries in the PEL, {} counted as claimed, {} handed to the socket",
        stats.messages_claimed,
        stats.messages_delivered,
    );
}

// ---------------------------------------------------------------------------------------------
// 8. (HELD) The socket definition fails once for a key (a transient error): is the key dead
//    for good (node.rs's comment says the lease is "held unused and renewed")? No: the key is
//    not put in `held`, its lease expires and is taken again (the comment is wrong).
#[actix_rt::test]
async fn attack_a_definition_that_fails_once_leaves_its_key_dead_forever() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&failed);
    let upstream = server.addr;
    let a = Fleet::start(
        FleetConfig::builder(redis.url(), "def", "a")
            .keys((0..2).map(key))
            .lease_ttl(LEASE_TTL)
            .renew_interval(RENEW_INTERVAL)
            .renew_deadline(RENEW_DEADLINE)
            .socket(move |lease| {
                if lease.key == "key-0000" && !flag.swap(true, Ordering::SeqCst) {
                    return Err(resocket::Error::InvalidConfig {
                        field: "socket",
                        reason: "credentials not readable yet".into(),
                    });
                }
                SocketConfig::builder(format!("ws://{upstream}/fleet/{}?node=a", lease.key)).build()
            })
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let until = Instant::now() + STARTUP.min(Duration::from_secs(15));
    while Instant::now() < until && !server.ledger.each_once(2) {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = a.stats();
    assert!(
        server.ledger.each_once(2),
        "15 s after one failed definition: live {:?}, the node owns {} and waits for {}",
        server.ledger.live(),
        stats.owned,
        stats.waiting
    );
}

// ---------------------------------------------------------------------------------------------
// 9. A backlog larger than the socket's outbox (10,000) while the upstream is down: the reader
//    reads the whole stream into its PEL (XREADGROUP `>`), the socket holds 10,000, the rest
//    are refused while being claimed (the adopt path puts the key back in `reading`), and with
//    nothing new to read no refusal happens again: they are never claimed again while this
//    node owns the key. Newer messages overtake them.
#[actix_rt::test]
async fn attack_a_backlog_larger_than_the_outbox_is_stranded_and_overtaken() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let switch = Switch::start(server.addr).await;
    let a = Fleet::start(
        node_config(&redis.url(), "strand", "a", 1, switch.addr)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    wait_for("a runs key-0000", STARTUP, || server.ledger.each_once(1)).await;
    upstream_down(&switch, &server).await;
    let mut con = redis_con(&redis.url()).await;
    const N: usize = 12_000;
    let stream = "resocket:{strand}:to:key-0000";
    backlog(&mut con, stream, N, "").await;
    // The reader reads the backlog into its PEL (all of it, or as far as it goes in 20 s).
    let until = Instant::now() + Duration::from_secs(20);
    while pending_count(&mut con, stream).await < N as i64 && Instant::now() < until {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the reader settle (its last claim pass refused, nothing new to read).
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    // The upstream is back: the socket writes what it holds; then one more is published.
    switch.drop_all.store(false, Ordering::SeqCst);
    wait_for("the outbox written", STARTUP, || {
        distinct_messages(&server).len() >= 10_000
    })
    .await;
    actix_rt::time::sleep(Duration::from_secs(2)).await;
    a.send("key-0000", "later").await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && distinct_messages(&server).len() < N + 1 {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let arrived: Vec<String> = server.ledger.messages().into_iter().map(|m| m.1).collect();
    let distinct = distinct_messages(&server);
    let missing = (0..N)
        .filter(|i| !distinct.contains(&format!("m{i:05}")))
        .count();
    let later_at = arrived.iter().position(|m| m == "later");
    let pending = pending_count(&mut con, stream).await;
    assert!(
        missing == 0,
        "12 s after the outbox was written: {missing} of {N} never arrived ({pending} pending); \"later\" arrived at position {later_at:?} of {}",
        arrived.len()
    );
}

fn flatten(value: &redis::Value, out: &mut Vec<String>) {
    match value {
        redis::Value::BulkString(b) => out.push(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => out.push(s.clone()),
        redis::Value::Int(n) => out.push(n.to_string()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|v| flatten(v, out))
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
}

async fn strings(con: &mut redis::aio::MultiplexedConnection, cmd: &redis::Cmd) -> Vec<String> {
    let value: redis::Value = cmd.query_async(con).await.unwrap_or(redis::Value::Nil);
    let mut out = Vec::new();
    flatten(&value, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// 10. Hand-over race: the old owner's blocking XREADGROUP (up to 200 ms, issued with the key
//     still held) is still blocked in Redis after the new owner claimed the key's pending
//     entries. Redis serves the first blocked reader: the next entry lands in the OLD owner's
//     PEL, is never written (its socket is gone), and the new owner never claims it again.
#[actix_rt::test]
async fn attack_a_read_in_flight_at_hand_over_strands_the_next_message() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    const KEYS: usize = 8;
    let a = Fleet::start(
        node_config(&redis.url(), "race", "a", KEYS, server.addr)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    wait_for("a runs every key", STARTUP, || {
        server.ledger.each_once(KEYS) && live_keys_of(&server, "a").len() == KEYS
    })
    .await;
    let mut con = redis_con(&redis.url()).await;
    let mut hits = 0;
    let trials = 40;
    for trial in 0..trials {
        let id = format!("b{trial}");
        let b = Fleet::start(
            node_config(&redis.url(), "race", &id, KEYS, server.addr)
                .build()
                .unwrap(),
        )
        .await
        .unwrap();
        // The moment b has taken one of a's keys and blocks reading it (b held nothing before:
        // its reader's first XREADGROUP comes after it claimed the key's pending entries).
        let start = Instant::now();
        let mut moved = None;
        while moved.is_none() && start.elapsed() < Duration::from_secs(3) {
            let list: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut con)
                .await
                .unwrap();
            let blocked = list
                .lines()
                .filter(|l| l.contains("flags=b") && l.contains("cmd=xreadgroup"))
                .count();
            if blocked >= 2 {
                for i in 0..KEYS {
                    let owner: Option<String> = redis::cmd("GET")
                        .arg(format!("resocket:{{race}}:lease:{}", key(i)))
                        .query_async(&mut con)
                        .await
                        .unwrap();
                    if owner.as_deref() == Some(id.as_str()) {
                        moved = Some(format!("resocket:{{race}}:to:{}", key(i)));
                        break;
                    }
                }
            }
        }
        let Some(moved) = moved else {
            b.leave().await; // b got no key, or a held none: another trial
            continue;
        };
        let message = format!("t{trial}");
        let _: String = redis::cmd("XADD")
            .arg(&moved)
            .arg("*")
            .arg("m")
            .arg(&message)
            .query_async(&mut con)
            .await
            .unwrap();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until && !distinct_messages(&server).contains(&message) {
            actix_rt::time::sleep(Duration::from_millis(20)).await;
        }
        if !distinct_messages(&server).contains(&message) {
            let mut cmd = redis::cmd("XPENDING");
            cmd.arg(&moved).arg("owners").arg("-").arg("+").arg(10);
            let pending = strings(&mut con, &cmd).await;
            hits += 1;
            eprintln!(
                "trial {trial}: {message} to {moved} not delivered in 3 s; pending: {pending:?}"
            );
            // Keep b, so the entry stays stranded while b owns the key.
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until && !distinct_messages(&server).contains(&message) {
                actix_rt::time::sleep(Duration::from_millis(20)).await;
            }
            let still = !distinct_messages(&server).contains(&message);
            b.leave().await;
            assert!(
                !still,
                "trial {trial}: {message}, accepted by Redis for {moved} after {id} took it, not delivered in 6 s: it sits in the old owner's PEL {pending:?}"
            );
            break;
        }
        b.leave().await;
        wait_for("a runs every key again", STARTUP, || {
            server.ledger.each_once(KEYS) && live_keys_of(&server, "a").len() == KEYS
        })
        .await;
    }
    eprintln!("{hits} stranded in {trials} trials");
    a.leave().await;
}

// ---------------------------------------------------------------------------------------------
// Child nodes whose pid we know (for SIGSTOP / SIGCONT).

struct Paused {
    child: std::process::Child,
    _stdin: Option<std::process::ChildStdin>,
}

impl Paused {
    fn spawn(id: &str, fleet: &str, redis_url: &str, upstream: SocketAddr, keys: usize) -> Self {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["fleet_node_process", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env("RESOCKET_FLEET_NODE", id)
            .env("RESOCKET_FLEET_NAME", fleet)
            .env("RESOCKET_FLEET_REDIS", redis_url)
            .env("RESOCKET_FLEET_SERVER", upstream.to_string())
            .env("RESOCKET_FLEET_KEYS", keys.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        Paused {
            child,
            _stdin: stdin,
        }
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 11. (HELD) A node paused (SIGSTOP) past the lease TTL, then resumed while messages flow:
//     nothing Redis accepted may be lost, and its stale connections must go at once. (While it
//     is stopped its TCP connections stay open at the upstream: the README's fencing case.)
#[actix_rt::test]
async fn attack_a_paused_node_resumed_while_messages_flow() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    const KEYS: usize = 20;
    let a = Paused::spawn("a", "pause", &redis.url(), server.addr, KEYS);
    let _b = NodeProcess::spawn("b", "pause", &redis.url(), &server, KEYS);
    wait_for("20 keys over 2 nodes", STARTUP, || {
        server.ledger.each_once(KEYS) && server.ledger.per_node().len() == 2
    })
    .await;
    let a_keys = live_keys_of(&server, "a");
    let sender = FleetSender::connect(&redis.url(), "pause").await.unwrap();
    a.signal("STOP");
    // b takes a's keys after the TTL (a's connections stay open at the upstream meanwhile).
    wait_for("b runs every key", STARTUP, || {
        live_keys_of(&server, "b").len() == KEYS
    })
    .await;
    let mut n = 0;
    let publish_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < publish_until {
        for i in 0..KEYS {
            sender
                .send(&key(i), format!("{}:{n}", key(i)))
                .await
                .unwrap();
            n += 1;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    a.signal("CONT");
    let resumed = Instant::now();
    let publish_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < publish_until {
        for i in 0..KEYS {
            sender
                .send(&key(i), format!("{}:{n}", key(i)))
                .await
                .unwrap();
            n += 1;
        }
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && distinct_messages(&server).len() < n {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let stale_closed: Vec<Duration> = server
        .ledger
        .conns()
        .iter()
        .filter(|c| c.node == "a" && a_keys.contains(&c.key))
        .filter_map(|c| c.closed.map(|t| t.saturating_duration_since(resumed)))
        .collect();
    let got = distinct_messages(&server).len();
    let slowest = stale_closed.iter().max();
    assert!(
        got == n,
        "{} of {n} messages published around the resume never arrived; a's stale connections closed up to {slowest:?} after SIGCONT",
        n - got
    );
    eprintln!("a's stale connections closed up to {slowest:?} after SIGCONT");
}

// 9b. (HELD in our runs) The same backlog, with the upstream back while the reader still re-claims: a claim pass
//     that finds the outbox full skips the rest of a batch of 256, the next batch finds room
//     (the socket writes meanwhile) and goes first: the key's messages arrive out of order.
#[actix_rt::test]
async fn attack_a_backlog_drained_while_being_claimed_arrives_out_of_order() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let switch = Switch::start(server.addr).await;
    let _a = Fleet::start(
        node_config(&redis.url(), "order", "a", 1, switch.addr)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    wait_for("a runs key-0000", STARTUP, || server.ledger.each_once(1)).await;
    upstream_down(&switch, &server).await;
    let mut con = redis_con(&redis.url()).await;
    const N: usize = 12_000;
    let stream = "resocket:{order}:to:key-0000";
    backlog(&mut con, stream, N, "").await;
    actix_rt::time::sleep(Duration::from_millis(1000)).await;
    switch.drop_all.store(false, Ordering::SeqCst);
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until && distinct_messages(&server).len() < N {
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen = BTreeSet::new();
    let mut last: Option<usize> = None;
    let mut inversions = Vec::new();
    for (_, m) in server.ledger.messages() {
        if !seen.insert(m.clone()) {
            continue;
        }
        let n: usize = m[1..].parse().unwrap();
        if let Some(prev) = last {
            if n < prev {
                inversions.push((prev, n));
            }
        }
        last = Some(last.map_or(n, |p| p.max(n)));
    }
    assert!(
        inversions.is_empty() && seen.len() == N,
        "{} of {N} arrived; {} arrived after a later one, the first: {:?}",
        seen.len(),
        inversions.len(),
        inversions.first()
    );
}

// ---------------------------------------------------------------------------------------------
// 12. Key lists that differ between nodes (a rolling deploy adding keys): a key only b knows is
//     placed by rendezvous on a just as often, a never takes it, b leaves it to a: it runs
//     nowhere, with nothing in either node's stats to say so (b counts it neither waiting
//     nor unplaced).
// Fixed: each member's key-list fingerprint is in Redis with each list, and a key is placed
// only among the nodes that know it.
#[actix_rt::test]
async fn attack_keys_only_some_nodes_know_run_nowhere() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let b = Fleet::start(
        node_config(&redis.url(), "lists", "b", 14, server.addr)
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    // a is the old version: it knows the first 10 keys only.
    let _a = NodeProcess::spawn("a", "lists", &redis.url(), &server, 10);
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until && !server.ledger.each_once(14) {
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    let live = server.ledger.live();
    let nowhere: Vec<String> = (10..14)
        .map(key)
        .filter(|k| !live.contains_key(k))
        .collect();
    let stats = b.stats();
    assert!(
        nowhere.is_empty(),
        "keys only b knows, running nowhere after 20 s: {nowhere:?}; b's stats: nodes {} owned {} waiting {} unplaced {}",
        stats.nodes,
        stats.owned,
        stats.waiting,
        stats.unplaced
    );
}

// ---------------------------------------------------------------------------------------------
// Held up (kept as checks): two nodes started with the same id; leave while Redis is down.
#[actix_rt::test]
async fn attack_two_nodes_with_one_id() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    const KEYS: usize = 20;
    let _a1 = NodeProcess::spawn("a", "twins", &redis.url(), &server, KEYS);
    let mut a2 = NodeProcess::spawn("a", "twins", &redis.url(), &server, KEYS);
    let _b = NodeProcess::spawn("b", "twins", &redis.url(), &server, KEYS);
    wait_for("20 keys, each once", STARTUP, || {
        server.ledger.each_once(KEYS)
    })
    .await;
    let sender = FleetSender::connect(&redis.url(), "twins").await.unwrap();
    for i in 0..200 {
        if i == 100 {
            a2.kill();
        }
        sender.send(&key(i % KEYS), format!("m{i}")).await.unwrap();
    }
    wait_for("every message", STARTUP, || {
        distinct_messages(&server).len() == 200
    })
    .await;
    wait_for("every key once again", STARTUP, || {
        server.ledger.each_once(KEYS)
    })
    .await;
    assert_no_ledger_overlap(&server);
}

#[actix_rt::test]
async fn attack_leave_while_redis_is_down() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let proxy = Proxy::start(redis.addr).await;
    let a = Fleet::start(
        node_config(
            &format!("redis://{}/", proxy.addr),
            "leave",
            "a",
            10,
            server.addr,
        )
        .build()
        .unwrap(),
    )
    .await
    .unwrap();
    wait_for("a runs every key", STARTUP, || server.ledger.each_once(10)).await;
    proxy.stall(true);
    proxy.cut(Cut::Rst);
    let started = Instant::now();
    actix_rt::time::timeout(Duration::from_secs(5), a.leave())
        .await
        .expect("leave returns");
    let took = started.elapsed();
    wait_for("every socket closed", Duration::from_secs(2), || {
        server.ledger.live().is_empty()
    })
    .await;
    assert!(took < Duration::from_secs(2), "leave took {took:?}");
    proxy.stall(false);
}

// ---------------------------------------------------------------------------------------------
// 13. The socket definition runs inside the tick (`take()`), once per key taken, with no
//     deadline check until the tick ends. A definition that takes a while (a blocking call for a
//     signed URL, 200 ms) times a failover's worth of keys outlasts the lease TTL: the node's
//     other leases and its membership expire meanwhile, a third node takes those keys, and the
//     node's sockets for them keep running until the next tick.
#[actix_rt::test]
async fn attack_a_slow_definition_during_a_failover_outlives_the_leases() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    const KEYS: usize = 60;
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&slow);
    let upstream = server.addr;
    let _a = Fleet::start(
        FleetConfig::builder(redis.url(), "slowdef", "a")
            .keys((0..KEYS).map(key))
            .lease_ttl(LEASE_TTL)
            .renew_interval(RENEW_INTERVAL)
            .renew_deadline(RENEW_DEADLINE)
            .socket(move |lease| {
                if flag.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                }
                SocketConfig::builder(format!(
                    "ws://{upstream}/fleet/{}?node=a&token={}",
                    lease.key, lease.token
                ))
                .heartbeat(Duration::from_millis(500), Duration::from_secs(5))
                .backoff(Backoff::exponential(Duration::from_millis(10), MAX_BACKOFF))
                .build()
            })
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let mut b = NodeProcess::spawn("b", "slowdef", &redis.url(), &server, KEYS);
    let _c = NodeProcess::spawn("c", "slowdef", &redis.url(), &server, KEYS);
    wait_for("60 keys over 3 nodes", STARTUP, || {
        server.ledger.each_once(KEYS) && server.ledger.per_node().len() == 3
    })
    .await;
    slow.store(true, Ordering::SeqCst);
    b.kill();
    wait_for("every key owned again", STARTUP, || {
        server.ledger.each_once(KEYS) && !server.ledger.per_node().contains_key("b")
    })
    .await;
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    let overlaps = server.ledger.overlaps();
    let longest = overlaps
        .iter()
        .map(|(x, y)| {
            x.closed
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(y.opened)
        })
        .max();
    assert!(
        overlaps.is_empty(),
        "{} overlapping connections (longest {longest:?}), the first: {:?} / {:?}",
        overlaps.len(),
        overlaps.first().map(|o| (&o.0.key, &o.0.node)),
        overlaps.first().map(|o| (&o.1.key, &o.1.node)),
    );
}

/// Attack: the reply of a read is lost after Redis ran it (the reader's connection killed
/// right after an entry unblocked it). The entry is then pending for the node, and reading
/// `>` never returns it again: the key must be adopted again, which claims it, before
/// anything newer goes out.
#[actix_rt::test]
async fn an_entry_whose_read_reply_was_lost_is_still_delivered_in_order() {
    let Some(redis) = Redis::start() else { return };
    let server = FleetServer::start().await;
    let config = common::fleet::node_config(&redis.url(), "lost", "a", 1, server.addr);
    let fleet = resocket::Fleet::start(config.build().unwrap())
        .await
        .unwrap();
    wait_for("a runs key-0000", Duration::from_secs(60), || {
        server.ledger.each_once(1)
    })
    .await;
    let client = redis::Client::open(redis.url().as_str()).unwrap();
    let mut con = client.get_connection().unwrap();
    let stream = "resocket:{lost}:to:key-0000";
    const ROUNDS: usize = 10;
    for round in 0..ROUNDS {
        // The reader's connection, once it blocks in XREADGROUP again.
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = loop {
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut con).unwrap();
            let blocked = list
                .lines()
                .find(|l| l.contains("cmd=xreadgroup") && l.contains("flags=b"))
                .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("id=")))
                .map(str::to_string);
            if let Some(id) = blocked {
                break id;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: the reader never blocked"
            );
            actix_rt::time::sleep(Duration::from_millis(3)).await;
        };
        // One pipeline: the entry unblocks the read, which Redis runs; the kill loses its reply.
        let _: redis::Value = redis::pipe()
            .cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("m")
            .arg(format!("lost:{round}"))
            .cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&id)
            .query(&mut con)
            .unwrap();
    }
    fleet.send("key-0000", "after").await.unwrap();
    let texts = || -> Vec<String> {
        server
            .ledger
            .messages()
            .into_iter()
            .map(|(_, text)| text)
            .collect()
    };
    wait_for(
        "every entry at the upstream",
        Duration::from_secs(60),
        || {
            let got: BTreeSet<String> = texts().into_iter().collect();
            (0..ROUNDS).all(|r| got.contains(&format!("lost:{r}"))) && got.contains("after")
        },
    )
    .await;
    let mut firsts = Vec::new();
    for text in texts() {
        if !firsts.contains(&text) {
            firsts.push(text);
        }
    }
    let mut expected: Vec<String> = (0..ROUNDS).map(|r| format!("lost:{r}")).collect();
    expected.push("after".into());
    assert_eq!(firsts, expected, "first arrivals out of publish order");
}
