//! The acked protocol against peers that do not behave: raw WebSocket clients sending what the
//! library never would (sequence gaps, poisoned numbers, someone else's id, a second session),
//! a raw server that skips sequence numbers, a restarted hub, a slow application. Each test
//! is a regression test for a hole found in review; each fails on the code before its fix.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpServer};
use common::raw::{let_pass, RawClient, Seen};
use common::{fast, record_app, wait_for, TestServer, Watch, DEADLINE};
use resocket::server::{
    accept, ClientEvent, FromClient, GetHubStats, Hub, HubConfig, ServerConfig, Session,
    SessionHandler, SubscribeHub, ToClient,
};
use resocket::{Error, GetStatus, SendMessage, SocketActor};

fn texts(messages: &[FromClient]) -> Vec<String> {
    messages.iter().map(|m| m.text.clone()).collect()
}

async fn to_client(hub: &Addr<Hub>, client: &str, text: &str) {
    hub.send(ToClient {
        client: client.into(),
        text: text.into(),
    })
    .await
    .unwrap();
}

/// Records every hub event.
struct EventLog(Arc<Mutex<Vec<ClientEvent>>>);
impl Actor for EventLog {
    type Context = Context<Self>;
}
impl Handler<ClientEvent> for EventLog {
    type Result = ();
    fn handle(&mut self, e: ClientEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(e);
    }
}
impl Handler<FromClient> for EventLog {
    type Result = ();
    fn handle(&mut self, _: FromClient, _: &mut Context<Self>) {}
}

async fn record_events(hub: &Addr<Hub>) -> Arc<Mutex<Vec<ClientEvent>>> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let addr = EventLog(log.clone()).start();
    hub.send(SubscribeHub {
        messages: addr.clone().recipient(),
        events: Some(addr.recipient()),
    })
    .await
    .unwrap();
    log
}

// ---- sequence gaps (issue 10.1) ----

#[actix_rt::test]
async fn the_hub_never_accepts_a_message_across_a_sequence_gap() {
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let mut raw = RawClient::connect(&server.acked_url()).await;
    raw.hello("g", 0).await;
    raw.send(r#"{"type":"msg","seq":2,"data":"two"}"#).await;
    let (code, reason) = raw.closed().await;
    assert_eq!(code, Some(1002));
    assert_eq!(reason.as_deref(), Some("sequence gap: expected 1, got 2"));
    // In order, on a new connection, both are taken.
    let mut raw = RawClient::connect(&server.acked_url()).await;
    raw.hello("g", 0).await;
    raw.send(r#"{"type":"msg","seq":1,"data":"one"}"#).await;
    raw.send(r#"{"type":"msg","seq":2,"data":"two"}"#).await;
    let mut acks = Vec::new();
    while acks.last().map(String::as_str) != Some(r#"{"type":"ack","seq":2}"#) {
        acks.push(raw.text().await);
        assert!(acks.len() <= 2, "{acks:?}");
    }
    assert_eq!(texts(&app.lock().unwrap()), [r#""one""#, r#""two""#]);
}

#[actix_rt::test]
async fn a_message_the_hub_could_not_deliver_is_not_skipped_by_the_next_one() {
    let server = TestServer::start().await;
    let mut raw = RawClient::connect(&server.acked_url()).await;
    raw.hello("late", 0).await;
    // No application yet: the hub cannot take it, and says so.
    raw.send(r#"{"type":"msg","seq":1,"data":"one"}"#).await;
    let (code, _) = raw.closed().await;
    assert_eq!(code, Some(1013), "try again later");
    let app = record_app(&server.hub);
    server.hub.send(GetHubStats).await.unwrap(); // the subscription is in
    let mut raw = RawClient::connect(&server.acked_url()).await;
    raw.hello("late", 0).await;
    raw.send(r#"{"type":"msg","seq":2,"data":"two"}"#).await;
    let (code, _) = raw.closed().await;
    assert_eq!(code, Some(1002), "2 would skip 1");
    assert!(app.lock().unwrap().is_empty());
}

#[actix_rt::test]
async fn messages_sent_before_the_application_subscribes_all_arrive_in_order() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("early").build().unwrap());
    for n in 0..3 {
        socket
            .send(SendMessage::text(format!("{n}")))
            .await
            .unwrap()
            .unwrap();
    }
    // The client has said hello to a hub with no application behind it.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stats = server.hub.send(GetHubStats).await.unwrap();
        if stats.clients > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the client never said hello");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let app = record_app(&server.hub);
    wait_for("all three", DEADLINE, || app.lock().unwrap().len() >= 3).await;
    let start = Instant::now();
    while socket.send(GetStatus).await.unwrap().unacked > 0 {
        assert!(start.elapsed() < DEADLINE, "never acknowledged");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(texts(&app.lock().unwrap()), ["0", "1", "2"]);
}

// ---- a restarted hub (issue 10.2) ----

#[actix_rt::test]
async fn a_fresh_hub_numbers_what_it_queued_before_the_hello_above_last_seq() {
    let server = TestServer::start().await;
    for n in 0..3 {
        to_client(&server.hub, "dev", &format!(r#"{{"n":{n}}}"#)).await;
    }
    let mut raw = RawClient::connect(&server.acked_url()).await;
    // The client saw 1..5 from the hub's previous life.
    let welcome = raw.hello("dev", 5).await;
    assert_eq!(welcome, r#"{"type":"welcome","acked":0,"gap":null}"#);
    for (seq, n) in (6..9).zip(0..3) {
        assert_eq!(
            raw.text().await,
            format!(r#"{{"type":"msg","seq":{seq},"data":{{"n":{n}}}}}"#)
        );
    }
}

#[actix_rt::test]
async fn messages_queued_while_the_hub_was_replaced_reach_the_client() {
    let mut server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("dev").build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    for n in 0..3 {
        to_client(&server.hub, "dev", &format!("{n}")).await;
    }
    wait_for("old messages", DEADLINE, || watch.texts().len() == 3).await;
    // A fresh hub (the process restarted) queues before the client is back.
    server.hub = Hub::default().start();
    for n in 3..6 {
        to_client(&server.hub, "dev", &format!("{n}")).await;
    }
    server.restart().await;
    wait_for("new messages", DEADLINE, || watch.texts().len() >= 6).await;
    assert_eq!(watch.texts(), ["0", "1", "2", "3", "4", "5"]);
    assert!(
        !watch
            .errors()
            .iter()
            .any(|e| matches!(e, Error::Protocol(_))),
        "{:?}",
        watch.errors()
    );
}

// ---- client slots (issue 10.6) ----

#[actix_rt::test]
async fn idle_clients_are_evicted_before_a_new_one_is_refused() {
    let hub = Hub::new(HubConfig {
        max_clients: 2,
        idle_client_ttl: Duration::from_millis(300),
        ..HubConfig::default()
    })
    .start();
    let events = record_events(&hub).await;
    let server = TestServer::start_full(ServerConfig::default(), hub.clone()).await;
    for id in ["a", "b"] {
        let mut raw = RawClient::connect(&server.acked_url()).await;
        raw.hello(id, 0).await;
    }
    // Both are gone (the raw clients were dropped).
    let start = Instant::now();
    while hub.send(GetHubStats).await.unwrap().connected > 0 {
        assert!(start.elapsed() < DEADLINE, "the sessions never ended");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let mut raw = RawClient::connect(&server.acked_url()).await;
    raw.send(r#"{"type":"hello","client":"c","last_seq":0}"#)
        .await;
    match raw.next().await {
        Seen::Close(code, _) => assert_eq!(code, Some(1013), "full, nobody idle long enough"),
        Seen::Text(t) => panic!("welcomed while a and b were idle for less than the TTL: {t}"),
        Seen::Ended => panic!("ended without a Close"),
    }
    let_pass(Duration::from_millis(300)).await;
    let mut raw = RawClient::connect(&server.acked_url()).await;
    raw.hello("c", 0).await;
    // The hello evicted what it needed; the hub's periodic sweep evicts the rest.
    let start = Instant::now();
    let stats = loop {
        let stats = hub.send(GetHubStats).await.unwrap();
        if stats.evicted == 2 {
            break stats;
        }
        assert!(start.elapsed() < DEADLINE, "not evicted: {stats:?}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!((stats.clients, stats.refused), (1, 1));
    let events = events.lock().unwrap();
    let evicted: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Evicted { client, .. } => Some(client.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(evicted.len(), 2, "{events:?}");
}

// ---- identity and sessions (issue 16.1, 16.2) ----

#[actix_rt::test]
async fn a_connection_cannot_say_hello_as_someone_else() {
    let server = TestServer::start().await;
    let victim = SocketActor::connect(
        fast(&server.acked_url_as("victim"))
            .acked("victim")
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&victim);
    watch.wait_opens(1).await;
    let mut stranger = RawClient::connect(&server.acked_url_as("stranger")).await;
    stranger
        .send(r#"{"type":"hello","client":"victim","last_seq":1000}"#)
        .await;
    let (code, reason) = stranger.closed().await;
    assert_eq!(code, Some(1008));
    assert!(reason.unwrap_or_default().contains("authenticated"));
    to_client(&server.hub, "victim", r#"{"secret":1}"#).await;
    wait_for("the victim's message", DEADLINE, || {
        watch.texts() == [r#"{"secret":1}"#]
    })
    .await;
}

#[actix_rt::test]
async fn a_newer_session_replaces_the_older_which_is_told_why() {
    let server = TestServer::start().await;
    let mut old = RawClient::connect(&server.acked_url()).await;
    old.hello("v", 0).await;
    let mut new = RawClient::connect(&server.acked_url()).await;
    new.hello("v", 0).await;
    let (code, reason) = old.closed().await;
    assert_eq!(code, Some(4001));
    assert_eq!(
        reason.as_deref(),
        Some("replaced by a newer session for this client")
    );
    to_client(&server.hub, "v", "m").await;
    assert_eq!(new.text().await, r#"{"type":"msg","seq":1,"text":"m"}"#);
    assert_eq!(server.hub.send(GetHubStats).await.unwrap().replaced, 1);
}

// ---- poisoned numbers (issue 16.3, 16.4) ----

#[actix_rt::test]
async fn poisoned_sequence_numbers_close_the_session_and_the_hub_serves_on() {
    let server = TestServer::start().await;
    let events = record_events(&server.hub).await;
    let cases = [
        (
            r#"{"type":"hello","client":"x","last_seq":18446744073709551615}"#,
            1008,
        ),
        (r#"{"type":"ack","seq":18446744073709551615}"#, 1002),
        (r#"{"type":"ack","seq":1}"#, 1002),
        (
            r#"{"type":"msg","seq":18446744073709551615,"data":1}"#,
            1002,
        ),
    ];
    for (i, (frame, code)) in cases.into_iter().enumerate() {
        let mut raw = RawClient::connect(&server.acked_url()).await;
        if i > 0 {
            raw.hello("x", 0).await;
        }
        raw.send(frame).await;
        let (seen, _) = raw.closed().await;
        assert_eq!(seen, Some(code), "{frame}");
    }
    // Neither a panic nor a poisoned floor: x's next message is its first.
    to_client(&server.hub, "x", "after").await;
    let mut raw = RawClient::connect(&server.acked_url()).await;
    raw.hello("x", 0).await;
    assert_eq!(raw.text().await, r#"{"type":"msg","seq":1,"text":"after"}"#);
    let mut other = RawClient::connect(&server.acked_url()).await;
    other.hello("y", 0).await;
    to_client(&server.hub, "y", "still serving").await;
    assert_eq!(
        other.text().await,
        r#"{"type":"msg","seq":1,"text":"still serving"}"#
    );
    let stats = server.hub.send(GetHubStats).await.unwrap();
    assert_eq!(stats.violations, 4);
    let violations = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, ClientEvent::Violation { .. }))
        .count();
    assert_eq!(violations, 4);
}

/// A server that welcomes, sends 1, then skips to 3.
struct Skipper {
    hellos: Arc<Mutex<Vec<String>>>,
}

impl SessionHandler for Skipper {
    fn text(&mut self, session: &Session, text: &str) {
        if text.contains(r#""type":"hello""#) {
            self.hellos.lock().unwrap().push(text.to_string());
            session.text(r#"{"type":"welcome","acked":0,"gap":null}"#);
            session.text(r#"{"type":"msg","seq":1,"text":"one"}"#);
            session.text(r#"{"type":"msg","seq":3,"text":"three"}"#);
        }
    }
}

#[actix_rt::test]
async fn a_server_that_skips_a_sequence_number_is_reported_and_not_believed() {
    let hellos = Arc::new(Mutex::new(Vec::new()));
    let shared = hellos.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let hellos = shared.clone();
        App::new().route(
            "/",
            web::get().to(move |req: HttpRequest, payload: web::Payload| {
                let handler = Skipper {
                    hellos: hellos.clone(),
                };
                async move { accept(&req, payload, handler, ServerConfig::default()) }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    actix_rt::spawn(server);
    let socket = SocketActor::connect(fast(&format!("ws://{addr}/")).acked("c").build().unwrap());
    let watch = Watch::attach(&socket);
    watch
        .wait_error("the jump", |e| {
            *e == Error::Protocol("sequence jump: expected 2, got 3".into())
        })
        .await;
    // The client reconnects and tells the server what really arrived: 1, not 3.
    wait_for("a second hello", DEADLINE, || {
        hellos.lock().unwrap().len() >= 2
    })
    .await;
    assert!(
        hellos.lock().unwrap()[1].contains(r#""last_seq":1"#),
        "{:?}",
        hellos.lock().unwrap()
    );
    assert_eq!(watch.texts().first().map(String::as_str), Some("one"));
    assert!(!watch.texts().iter().any(|t| t == "three"));
}

// ---- acknowledge only what the application took (issue 10.4) ----

/// An application that takes a few milliseconds per message.
struct SlowApp {
    taken: Arc<AtomicUsize>,
}
impl Actor for SlowApp {
    type Context = Context<Self>;
}
impl Handler<FromClient> for SlowApp {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: FromClient, _: &mut Context<Self>) -> Self::Result {
        Box::pin(
            actix_rt::time::sleep(Duration::from_millis(3))
                .into_actor(self)
                .map(|_, app, _| {
                    app.taken.fetch_add(1, Ordering::SeqCst);
                }),
        )
    }
}

#[actix_rt::test]
async fn the_hub_acknowledges_only_what_the_application_has_taken() {
    const N: usize = 200;
    let server = TestServer::start().await;
    let taken = Arc::new(AtomicUsize::new(0));
    let app = SlowApp {
        taken: taken.clone(),
    }
    .start();
    server
        .hub
        .send(SubscribeHub {
            messages: app.recipient(),
            events: None,
        })
        .await
        .unwrap();
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("s").build().unwrap());
    for n in 0..N {
        socket
            .send(SendMessage::text(format!("{n}")))
            .await
            .unwrap()
            .unwrap();
    }
    let start = Instant::now();
    loop {
        // Read what the client counts as acknowledged first: taken only grows after it.
        let status = socket.send(GetStatus).await.unwrap();
        let pending = status.outbox_len + status.unacked;
        let taken_now = taken.load(Ordering::SeqCst);
        let acked = N - pending;
        assert!(
            acked <= taken_now,
            "{acked} acknowledged but the application has taken only {taken_now}"
        );
        if pending == 0 {
            break;
        }
        assert!(start.elapsed() < DEADLINE * 3, "stuck at {pending} pending");
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(taken.load(Ordering::SeqCst), N);
}

// ---- origins and rate limits (issue 16.5, 16.6) ----

#[actix_rt::test]
async fn an_origin_outside_the_allow_list_is_refused_before_the_upgrade() {
    let server = TestServer::start_with(ServerConfig {
        allowed_origins: Some(vec!["https://app.example".into()]),
        ..ServerConfig::default()
    })
    .await;
    let connect = |origin: Option<&'static str>| {
        let url = server.url();
        async move {
            let mut request = awc::Client::new().ws(url);
            if let Some(origin) = origin {
                request = request.origin(origin);
            }
            match request.connect().await {
                Ok(_) => 101,
                Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert_eq!(connect(Some("https://evil.example")).await, 403);
    assert_eq!(connect(Some("https://app.example")).await, 101);
    assert_eq!(
        connect(None).await,
        101,
        "non-browser clients send no Origin"
    );
    // Through the library: a fatal handshake status.
    let socket = SocketActor::connect(
        fast(&server.url())
            .header("origin", "https://evil.example")
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    watch
        .wait_error("refused", |e| *e == Error::HandshakeStatus(403))
        .await;
}

#[actix_rt::test]
async fn a_session_sending_faster_than_its_rate_limit_is_closed_with_1013() {
    let server = TestServer::start_with(ServerConfig {
        max_messages_per_second: Some(20),
        ..ServerConfig::default()
    })
    .await;
    let mut raw = RawClient::connect(&server.url()).await;
    for n in 0..100 {
        raw.send(&format!("m{n}")).await;
    }
    let (code, reason) = raw.closed().await;
    assert_eq!(code, Some(1013));
    assert_eq!(reason.as_deref(), Some("more than 20 messages a second"));
    let received = server.received().len();
    assert!((20..100).contains(&received), "{received} taken");
}

#[actix_rt::test]
async fn a_hello_flood_for_one_client_id_is_refused_and_counted() {
    let hub = Hub::new(HubConfig {
        max_hellos_per_second: 3,
        ..HubConfig::default()
    })
    .start();
    let server = TestServer::start_full(ServerConfig::default(), hub.clone()).await;
    let mut refused = 0;
    for _ in 0..10 {
        let mut raw = RawClient::connect(&server.acked_url()).await;
        raw.send(r#"{"type":"hello","client":"f","last_seq":0}"#)
            .await;
        match raw.next().await {
            Seen::Text(t) => assert!(t.contains("welcome"), "{t}"),
            Seen::Close(code, reason) => {
                assert_eq!(code, Some(1013));
                assert_eq!(
                    reason.as_deref(),
                    Some("more than 3 hellos a second for this client id")
                );
                refused += 1;
            }
            Seen::Ended => panic!("ended without a Close"),
        }
    }
    // At least the burst is welcomed; past it, hellos are refused (a few may be welcomed as
    // the bucket refills on a slow machine).
    assert!(refused >= 1, "no hello refused");
    assert_eq!(hub.send(GetHubStats).await.unwrap().rate_limited, refused);
    // Another client id is not affected.
    let mut other = RawClient::connect(&server.acked_url()).await;
    other.hello("g", 0).await;
}

// ---- a client that does not read (issue 10.7) ----

#[actix_rt::test]
async fn a_client_that_never_reads_cannot_grow_its_sessions_write_backlog_without_bound() {
    const LIMIT: usize = 1 << 20;
    let server = TestServer::start_with(ServerConfig {
        max_write_backlog: LIMIT,
        ..ServerConfig::default()
    })
    .await;
    let addr = server.addr;
    // A raw client: upgrades, then never reads a byte.
    let stream =
        actix_rt::task::spawn_blocking(move || common::raw_server::raw_upgrade(addr, "/ws"))
            .await
            .unwrap();
    wait_for("the session", DEADLINE, || server.sessions().len() == 1).await;
    let session = server.sessions()[0].clone();
    // 64 MiB pushed at a client that takes none of it.
    let chunk = "x".repeat(64 * 1024);
    for _ in 0..1024 {
        session.text(chunk.clone());
        assert!(session.backlog() <= LIMIT, "{} queued", session.backlog());
    }
    assert!(session.dropped() > 0);
    drop(stream);
}

#[actix_rt::test]
async fn a_history_far_larger_than_the_write_backlog_is_replayed_as_the_client_reads() {
    let hub = Hub::new(HubConfig {
        history: 3_000,
        ..HubConfig::default()
    })
    .start();
    let server = TestServer::start_full(
        ServerConfig {
            max_write_backlog: 256 * 1024,
            ..ServerConfig::default()
        },
        hub.clone(),
    )
    .await;
    // 3,000 messages of 4 KiB: 12 MiB of history for a 256 KiB backlog.
    let pad = "y".repeat(4096);
    for n in 0..3_000 {
        to_client(&hub, "reader", &format!(r#"{{"n":{n},"pad":"{pad}"}}"#)).await;
    }
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("reader").build().unwrap());
    let watch = Watch::attach(&socket);
    wait_for("all 3,000", DEADLINE * 3, || watch.texts().len() >= 3_000).await;
    let numbers: Vec<u64> = watch
        .texts()
        .iter()
        .map(|t| {
            serde_json::from_str::<serde_json::Value>(t).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(numbers, (0..3_000).collect::<Vec<u64>>());
    assert_eq!(watch.opens(), 1, "the replay never overflowed the backlog");
}

// ---- a bug in the hub does not stop it (issue 16.4) ----

#[actix_rt::test]
async fn a_panic_in_a_hub_handler_is_contained_and_every_other_client_is_served() {
    let server = TestServer::start().await;
    server.hub.send(resocket::server::PanicNext).await.unwrap();
    let mut unlucky = RawClient::connect(&server.acked_url()).await;
    unlucky
        .send(r#"{"type":"hello","client":"unlucky","last_seq":0}"#)
        .await;
    let start = Instant::now();
    while server.hub.send(GetHubStats).await.unwrap().panics == 0 {
        assert!(
            start.elapsed() < DEADLINE,
            "the hello never reached the hub"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    let mut other = RawClient::connect(&server.acked_url()).await;
    other.hello("other", 0).await;
    to_client(&server.hub, "other", "served").await;
    assert_eq!(
        other.text().await,
        r#"{"type":"msg","seq":1,"text":"served"}"#
    );
    // The unlucky client's next try goes through.
    let mut again = RawClient::connect(&server.acked_url()).await;
    again.hello("unlucky", 0).await;
}
