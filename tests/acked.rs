//! Acked delivery against the server module's hub: nothing lost, nothing duplicated, in order,
//! both ways, through cuts, stalls, a server restart and a socket restart after a panic.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::proxy::{Cut, Proxy};
use common::{fast, giving_up_after, record_app, wait_for, TestServer, Watch, DEADLINE};
use resocket::server::{FromClient, GetHubStats, Hub, HubConfig, ServerConfig, ToClient};
use resocket::{
    Backoff, Error, GetStatus, Outbox, RandomSource, SendMessage, SocketActor, SocketState,
    SplitMix64,
};

fn numbers(messages: &[FromClient]) -> Vec<u64> {
    messages
        .iter()
        .filter(|m| m.seq.is_some())
        .map(|m| {
            m.json::<serde_json::Value>().unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

fn client_numbers(texts: &[String]) -> Vec<u64> {
    texts
        .iter()
        .map(|t| {
            serde_json::from_str::<serde_json::Value>(t).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect()
}

#[actix_rt::test]
async fn messages_flow_both_ways_exactly_once_in_order() {
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let config = fast(&server.acked_url())
        .acked("client-1")
        .identify(r#"{"op":"subscribe"}"#)
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    for n in 0..100 {
        socket
            .send(SendMessage::text(format!(r#"{{"n":{n}}}"#)))
            .await
            .unwrap()
            .unwrap();
    }
    for n in 0..100 {
        server.hub.do_send(ToClient {
            client: "client-1".into(),
            text: format!(r#"{{"n":{n}}}"#),
        });
    }
    wait_for("100 at the app", DEADLINE, || {
        numbers(&app.lock().unwrap()).len() == 100
    })
    .await;
    wait_for("100 at the client", DEADLINE, || watch.texts().len() == 100).await;
    assert_eq!(numbers(&app.lock().unwrap()), (0..100).collect::<Vec<_>>());
    // The identify message reached the app too, unsequenced, before the data.
    let first = app.lock().unwrap()[0].clone();
    assert_eq!(
        (first.text.as_str(), first.seq),
        (r#"{"op":"subscribe"}"#, None)
    );
    assert_eq!(client_numbers(&watch.texts()), (0..100).collect::<Vec<_>>());
    wait_unacked(&socket, "all acked", |u| u == 0).await;
}

/// Waits until the socket's count of unacknowledged messages satisfies `pred`.
async fn wait_unacked(socket: &Addr<SocketActor>, what: &str, pred: impl Fn(usize) -> bool) {
    let start = Instant::now();
    loop {
        let unacked = socket.send(GetStatus).await.unwrap().unacked;
        if pred(unacked) {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what} (unacked {unacked})"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn unacked_messages_are_sent_again_after_a_cut_and_delivered_once() {
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("c")
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    for n in 0..10 {
        socket
            .send(SendMessage::text(format!(r#"{{"n":{n}}}"#)))
            .await
            .unwrap()
            .unwrap();
    }
    wait_for("first ten", DEADLINE, || {
        numbers(&app.lock().unwrap()).len() == 10
    })
    .await;
    wait_unacked(&socket, "first ten acked", |u| u == 0).await;
    // Stalled, the next messages are written but never acknowledged; then the cut.
    proxy.stall(true);
    for n in 10..30 {
        socket
            .send(SendMessage::text(format!(r#"{{"n":{n}}}"#)))
            .await
            .unwrap()
            .unwrap();
    }
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.unacked + status.outbox_len, 20);
    proxy.cut(Cut::Rst);
    proxy.stall(false);
    watch.wait_opens(2).await;
    wait_for("all thirty", DEADLINE, || {
        numbers(&app.lock().unwrap()).len() >= 30
    })
    .await;
    assert_eq!(numbers(&app.lock().unwrap()), (0..30).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn a_client_that_was_away_gets_what_it_missed_and_is_told_of_a_gap() {
    let hub = Hub::new(HubConfig {
        history: 5,
        ..HubConfig::default()
    })
    .start();
    let server = TestServer::start_full(ServerConfig::default(), hub.clone()).await;
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("away")
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    hub.do_send(ToClient {
        client: "away".into(),
        text: r#"{"n":0}"#.into(),
    });
    wait_for("first message", DEADLINE, || watch.texts().len() == 1).await;
    // Away: the proxy refuses; the server sends 10 more, the history keeps only 5.
    proxy.refuse(true);
    proxy.cut(Cut::Fin);
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    for n in 1..=10 {
        hub.do_send(ToClient {
            client: "away".into(),
            text: format!(r#"{{"n":{n}}}"#),
        });
    }
    proxy.refuse(false);
    wait_for("resumed", DEADLINE, || watch.texts().len() == 6).await;
    assert_eq!(client_numbers(&watch.texts()), [0, 6, 7, 8, 9, 10]);
    watch
        .wait_error("gap", |e| *e == Error::ResumeGap { from: 2, to: 6 })
        .await;
}

#[actix_rt::test]
async fn a_server_that_does_not_speak_the_protocol_is_a_clear_error() {
    let server = TestServer::start().await;
    let config = fast(&server.url())
        .acked("c")
        .connect_timeout(Duration::from_millis(200))
        .backoff(giving_up_after(1))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_state("closed", SocketState::is_closed).await;
    watch
        .wait_error(
            "no welcome",
            |e| matches!(e, Error::Handshake(m) if m.contains("acked protocol")),
        )
        .await;
}

#[actix_rt::test]
async fn binary_messages_are_refused_in_acked_mode() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("c").build().unwrap());
    let err = socket
        .send(SendMessage::binary(vec![1u8]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err.error, Error::Encode(_)));
}

#[actix_rt::test]
async fn a_socket_restarted_after_a_panic_keeps_its_sequence_numbers() {
    use resocket::testing::Panic;
    use resocket::{GetSocket, SendTo, StartSocket, SupervisorActor, SupervisorConfig};
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let supervisor = SupervisorActor::new(SupervisorConfig {
        arbiters: 1,
        ..Default::default()
    })
    .start();
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("phoenix")
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .build()
        .unwrap();
    supervisor
        .send(StartSocket::new("p", config))
        .await
        .unwrap()
        .unwrap();
    let send = |n: u64| SendTo {
        key: "p".into(),
        message: format!(r#"{{"n":{n}}}"#).into(),
    };
    for n in 0..5 {
        supervisor.send(send(n)).await.unwrap().unwrap();
    }
    wait_for("first five", DEADLINE, || {
        numbers(&app.lock().unwrap()).len() == 5
    })
    .await;
    let first = supervisor
        .send(GetSocket("p".into()))
        .await
        .unwrap()
        .unwrap();
    // Their acks back too (on a loaded machine they may still be on their way).
    wait_unacked(&first, "first five acked", |u| u == 0).await;
    // Written but not acknowledged when the socket dies.
    proxy.stall(true);
    for n in 5..15 {
        supervisor.send(send(n)).await.unwrap().unwrap();
    }
    let socket = supervisor
        .send(GetSocket("p".into()))
        .await
        .unwrap()
        .unwrap();
    wait_unacked(&socket, "ten in flight", |u| u == 10).await;
    // Let the stalled bytes through to the server, but keep the acks from coming back.
    proxy.cut(Cut::Rst);
    proxy.stall(false);
    socket.do_send(Panic);
    wait_for("all fifteen", DEADLINE, || {
        numbers(&app.lock().unwrap()).len() >= 15
    })
    .await;
    assert_eq!(numbers(&app.lock().unwrap()), (0..15).collect::<Vec<_>>());
}

/// Collects what the client receives.
struct Received(Arc<Mutex<Vec<u64>>>);

impl Actor for Received {
    type Context = Context<Self>;
}

impl Handler<resocket::Inbound<serde_json::Value>> for Received {
    type Result = ();
    fn handle(&mut self, msg: resocket::Inbound<serde_json::Value>, _: &mut Context<Self>) {
        if let Some(n) = msg.0["n"].as_u64() {
            self.0.lock().unwrap().push(n);
        }
    }
}

#[actix_rt::test]
async fn chaos_twenty_thousand_each_way_through_cuts_stalls_and_a_server_restart() {
    const N: u64 = 20_000;
    let hub = Hub::new(HubConfig {
        history: 30_000,
        ..HubConfig::default()
    })
    .start();
    let mut server = TestServer::start_full(
        ServerConfig {
            heartbeat_interval: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_millis(400),
            ..ServerConfig::default()
        },
        hub.clone(),
    )
    .await;
    let app = record_app(&hub);
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("chaos")
        .heartbeat(Duration::from_millis(50), Duration::from_millis(250))
        .backoff(Backoff::exponential(
            Duration::from_millis(10),
            Duration::from_millis(100),
        ))
        .outbox(Outbox::bounded(30_000))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let received = Arc::new(Mutex::new(Vec::new()));
    let collector = Received(received.clone()).start();
    socket.do_send(resocket::Subscribe::to::<serde_json::Value>(
        collector.recipient(),
    ));
    let started = Instant::now();
    // Both sides send at a steady pace (about 8 s for all), so the chaos meets traffic.
    let sender = socket.clone();
    let hub_sender = hub.clone();
    actix_rt::spawn(async move {
        for batch in 0..(N / 25) {
            for n in batch * 25..(batch + 1) * 25 {
                let text = format!(r#"{{"n":{n}}}"#);
                sender
                    .send(SendMessage::text(text.clone()))
                    .await
                    .unwrap()
                    .unwrap();
                hub_sender.do_send(ToClient {
                    client: "chaos".into(),
                    text,
                });
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }
    });

    let mut rng = SplitMix64::new(2026);
    let (mut cuts, mut stalls, mut restarted) = (0u32, 0u32, false);
    let deadline = Duration::from_secs(120);
    let done = |app: &Arc<Mutex<Vec<FromClient>>>, received: &Arc<Mutex<Vec<u64>>>| {
        numbers(&app.lock().unwrap()).len() as u64 >= N
            && received.lock().unwrap().len() as u64 >= N
    };
    while !done(&app, &received) {
        assert!(
            started.elapsed() < deadline,
            "chaos run did not finish in {deadline:?}"
        );
        let pause = Duration::from_millis(50 + rng.next_u64() % 451);
        actix_rt::time::sleep(pause).await;
        match rng.next_u64() % 6 {
            0 => {
                stalls += 1;
                proxy.stall(true);
                actix_rt::time::sleep(Duration::from_millis(100 + rng.next_u64() % 300)).await;
                proxy.stall(false);
            }
            1 | 2 => {
                cuts += 1;
                proxy.cut(Cut::Rst);
            }
            _ => {
                cuts += 1;
                proxy.cut(Cut::Fin);
            }
        }
        let progress = numbers(&app.lock().unwrap()).len() as u64;
        if !restarted && progress >= N / 2 {
            restarted = true;
            server.restart().await;
        }
    }
    let elapsed = started.elapsed();
    let to_app = numbers(&app.lock().unwrap());
    let to_client = received.lock().unwrap().clone();
    let expected: Vec<u64> = (0..N).collect();
    let stats = hub.send(GetHubStats).await.unwrap();
    let client = socket.send(GetStatus).await.unwrap();
    println!(
        "chaos: {N} messages each way in {elapsed:.1?}; {cuts} cuts, {stalls} stalls, 1 server restart \
         ({}); client→app duplicates dropped by the hub: {}; app→client duplicates dropped by the \
         client: {}; reconnects: {}; lost 0, duplicated 0, reordered 0",
        if restarted { "done" } else { "not reached" },
        stats.duplicates,
        client.counters.duplicates,
        client.counters.reconnects,
    );
    assert!(restarted, "the server restart never happened");
    assert!(cuts >= 3, "too few cuts to mean anything: {cuts}");
    assert_eq!(
        to_app.len(),
        expected.len(),
        "client→app: lost or duplicated"
    );
    assert_eq!(to_app, expected, "client→app out of order");
    assert_eq!(
        to_client.len(),
        expected.len(),
        "app→client: lost or duplicated"
    );
    assert_eq!(to_client, expected, "app→client out of order");
}

#[actix_rt::test]
async fn the_hub_drops_duplicate_sequence_numbers_from_a_raw_client() {
    use futures_util::{SinkExt, StreamExt};
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let (_response, mut framed) = awc::Client::new()
        .ws(server.acked_url())
        .connect()
        .await
        .unwrap();
    let frames = [
        r#"{"type":"hello","client":"raw","last_seq":0}"#,
        r#"{"type":"msg","seq":1,"data":{"n":1}}"#,
        r#"{"type":"msg","seq":1,"data":{"n":1}}"#,
        r#"{"type":"msg","seq":2,"text":"two"}"#,
        r#"{"type":"msg","seq":2,"text":"two"}"#,
    ];
    for f in frames {
        framed.send(awc::ws::Message::Text(f.into())).await.unwrap();
    }
    // The welcome, then a cumulative ack of 2.
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|t: &String| t.contains(r#""type":"ack","seq":2"#))
    {
        let frame = actix_rt::time::timeout(DEADLINE, framed.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let awc::ws::Frame::Text(t) = frame {
            seen.push(String::from_utf8(t.to_vec()).unwrap());
        }
    }
    assert_eq!(seen[0], r#"{"type":"welcome","acked":0,"gap":null}"#);
    let texts: Vec<String> = app.lock().unwrap().iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, [r#"{"n":1}"#, "two"]);
    assert_eq!(server.hub.send(GetHubStats).await.unwrap().duplicates, 2);
}

// ---- regressions found in review ----

#[actix_rt::test]
async fn a_client_restarted_with_the_same_id_is_not_taken_for_duplicates() {
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let first = SocketActor::connect(fast(&server.acked_url()).acked("device-7").build().unwrap());
    for n in 0..3 {
        first
            .send(SendMessage::text(format!(r#"{{"n":{n}}}"#)))
            .await
            .unwrap()
            .unwrap();
    }
    wait_for("first run", DEADLINE, || {
        numbers(&app.lock().unwrap()).len() == 3
    })
    .await;
    wait_unacked(&first, "first run acked", |u| u == 0).await;
    first.send(resocket::Close::now()).await.unwrap();
    // A new process: its numbering starts afresh, the hub remembers 1..3.
    let second = SocketActor::connect(fast(&server.acked_url()).acked("device-7").build().unwrap());
    for n in 10..13 {
        second
            .send(SendMessage::text(format!(r#"{{"n":{n}}}"#)))
            .await
            .unwrap()
            .unwrap();
    }
    wait_for("second run", DEADLINE, || {
        numbers(&app.lock().unwrap()).len() == 6
    })
    .await;
    assert_eq!(numbers(&app.lock().unwrap()), [0, 1, 2, 10, 11, 12]);
}

#[actix_rt::test]
async fn a_server_that_lost_its_hub_state_is_not_taken_for_duplicates() {
    let mut server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("dev").build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    for n in 0..3 {
        server.hub.do_send(ToClient {
            client: "dev".into(),
            text: format!(r#"{{"n":{n}}}"#),
        });
    }
    wait_for("old messages", DEADLINE, || watch.texts().len() == 3).await;
    // The server restarts with a fresh hub: its numbering starts at 1 again.
    server.hub = Hub::default().start();
    server.restart().await;
    watch.wait_opens(2).await;
    let hub = server.hub.clone();
    let start = Instant::now();
    while hub.send(GetHubStats).await.unwrap().connected < 1 {
        assert!(
            start.elapsed() < DEADLINE,
            "the client never said hello to the new hub"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    for n in 3..6 {
        hub.do_send(ToClient {
            client: "dev".into(),
            text: format!(r#"{{"n":{n}}}"#),
        });
    }
    wait_for("new messages", DEADLINE, || watch.texts().len() == 6).await;
    assert_eq!(client_numbers(&watch.texts()), [0, 1, 2, 3, 4, 5]);
}

#[actix_rt::test]
async fn a_null_payload_is_data_too() {
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("n").build().unwrap());
    socket
        .send(SendMessage::json(&()).unwrap())
        .await
        .unwrap()
        .unwrap();
    socket
        .send(SendMessage::text(r#"{"n":1}"#))
        .await
        .unwrap()
        .unwrap();
    wait_for("both", DEADLINE, || app.lock().unwrap().len() == 2).await;
    let texts: Vec<String> = app.lock().unwrap().iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, ["null", r#"{"n":1}"#]);
    wait_unacked(&socket, "acked", |u| u == 0).await;
}

#[actix_rt::test]
async fn a_server_that_never_welcomes_is_not_a_stable_connection() {
    let server = TestServer::start().await;
    // Each connection lasts the connect timeout, longer than the minimum uptime; it must still
    // count as a failure, or the attempt limit would never be reached.
    let config = fast(&server.url())
        .acked("x")
        .connect_timeout(Duration::from_millis(150))
        .min_uptime(Duration::from_millis(50))
        .backoff(giving_up_after(3))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let state = watch.wait_state("gave up", SocketState::is_closed).await;
    assert!(
        matches!(
            state,
            SocketState::Closed {
                reason: resocket::CloseReason::GaveUp { attempts: 3, .. }
            }
        ),
        "{state:?}"
    );
}

#[actix_rt::test]
async fn repeated_hellos_on_one_connection_do_not_replay_the_history_again() {
    use futures_util::SinkExt;
    let hub = Hub::new(HubConfig {
        history: 100,
        ..HubConfig::default()
    })
    .start();
    let server = TestServer::start_full(ServerConfig::default(), hub.clone()).await;
    for n in 0..100 {
        hub.do_send(ToClient {
            client: "v".into(),
            text: format!("{n}"),
        });
    }
    let (_r, mut framed) = awc::Client::new()
        .ws(server.acked_url())
        .connect()
        .await
        .unwrap();
    for _ in 0..20 {
        let hello = r#"{"type":"hello","client":"v","last_seq":0}"#;
        framed
            .send(awc::ws::Message::Text(hello.into()))
            .await
            .unwrap();
    }
    // A marker after the hellos, on the same connection: once the application has it, the hub
    // has handled every hello before it.
    let app = record_app(&hub);
    let marker = r#"{"type":"msg","seq":1,"data":"marker"}"#;
    framed
        .send(awc::ws::Message::Text(marker.into()))
        .await
        .unwrap();
    wait_for("marker", DEADLINE, || app.lock().unwrap().len() == 1).await;
    assert_eq!(hub.send(GetHubStats).await.unwrap().replayed, 100);
}

// ---- a message the server will not take (issue 10.3) ----

#[actix_rt::test]
async fn a_message_the_server_keeps_refusing_is_given_up_and_the_rest_flows() {
    let server = TestServer::start_with(ServerConfig {
        max_message: 1024,
        ..ServerConfig::default()
    })
    .await;
    let app = record_app(&server.hub);
    let socket = SocketActor::connect(
        fast(&server.acked_url())
            .acked("big")
            .max_refusals(2)
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    let big = format!(r#"{{"n":1,"pad":"{}"}}"#, "x".repeat(2000));
    for text in [
        r#"{"n":0}"#.to_string(),
        big.clone(),
        r#"{"n":2}"#.to_string(),
    ] {
        socket.send(SendMessage::text(text)).await.unwrap().unwrap();
    }
    watch
        .wait_error("given up", |e| {
            matches!(e, Error::MessageRefused { code: 1009, attempts: 2, message }
                if message.as_text() == Some(big.as_str()))
        })
        .await;
    wait_for("the rest", DEADLINE, || {
        numbers(&app.lock().unwrap()).len() == 2
    })
    .await;
    assert_eq!(numbers(&app.lock().unwrap()), [0, 2]);
    wait_unacked(&socket, "acked", |u| u == 0).await;
}

#[actix_rt::test]
async fn a_message_larger_than_the_peer_takes_is_refused_when_sent_envelope_and_escaping_included()
{
    let server = TestServer::start().await;
    let socket = SocketActor::connect(
        fast(&server.acked_url())
            .acked("p")
            .peer_max_message(1024)
            .build()
            .unwrap(),
    );
    // 600 bytes of quotes: 1,200 once escaped, 1,247 in the envelope with the largest
    // sequence number (`{"type":"msg","seq":9007199254740991,"text":"…"}`).
    let quotes = "\"".repeat(600);
    let refused = socket
        .send(SendMessage::text(quotes.clone()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            refused.error,
            Error::MessageTooLargeForPeer {
                size: 1247,
                limit: 1024
            }
        ),
        "{:?}",
        refused.error
    );
    assert_eq!(refused.message.as_text(), Some(quotes.as_str()));
    socket
        .send(SendMessage::text("small"))
        .await
        .unwrap()
        .expect("a small one is taken");
}

#[actix_rt::test]
async fn json_whose_escaped_form_would_not_fit_the_peer_goes_unescaped_and_is_taken() {
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let socket = SocketActor::connect(
        fast(&server.acked_url())
            .acked("j")
            .peer_max_message(1024)
            .build()
            .unwrap(),
    );
    let sender = socket.send(resocket::GetSender).await.unwrap();
    // 808 bytes of JSON (`{"q":"\"\"…"}`): 853 in a `data` envelope, over 1,700 escaped as
    // `text`. Both ways of sending take it; 502 quotes (1,012 bytes, 1,057 in the envelope)
    // are refused with the envelope's exact size.
    let value = serde_json::json!({ "q": "\"".repeat(400) });
    let text = serde_json::to_string(&value).unwrap();
    assert_eq!(text.len(), 808);
    sender.json(&value).expect("a Sender's JSON value fits");
    socket
        .send(SendMessage::text(text.clone()))
        .await
        .unwrap()
        .expect("the same JSON as text fits");
    let over = serde_json::json!({ "q": "\"".repeat(502) });
    assert_eq!(serde_json::to_string(&over).unwrap().len(), 1012);
    assert!(
        matches!(
            sender.json(&over),
            Err(Error::MessageTooLargeForPeer {
                size: 1057,
                limit: 1024
            })
        ),
        "{:?}",
        sender.json(&over)
    );
    wait_for("both at the app", DEADLINE, || {
        app.lock().unwrap().len() == 2
    })
    .await;
    let texts: Vec<String> = app.lock().unwrap().iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, [text.clone(), text]);
}

/// An application that never finishes taking a message.
struct NeverTakes;
impl Actor for NeverTakes {
    type Context = Context<Self>;
}
impl Handler<FromClient> for NeverTakes {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: FromClient, _: &mut Context<Self>) -> Self::Result {
        Box::pin(futures_util::future::pending())
    }
}

#[actix_rt::test]
async fn bytes_in_flight_count_against_the_outbox_byte_limit() {
    let server = TestServer::start().await;
    server
        .hub
        .send(resocket::server::SubscribeHub {
            messages: NeverTakes.start().recipient(),
            events: None,
        })
        .await
        .unwrap();
    let socket = SocketActor::connect(
        fast(&server.acked_url())
            .acked("bytes")
            .outbox(Outbox::bounded(1000).max_bytes(64 * 1024))
            .build()
            .unwrap(),
    );
    let big = "x".repeat(58 * 1024);
    socket
        .send(SendMessage::text(big.clone()))
        .await
        .unwrap()
        .unwrap();
    wait_unacked(&socket, "the first in flight", |u| u == 1).await;
    let refused = socket
        .send(SendMessage::text(big))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(refused.error, Error::OutboxFull { .. }),
        "{:?}",
        refused.error
    );
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!((status.unacked, status.outbox_len), (1, 0));
}

#[actix_rt::test]
async fn the_hub_acks_at_once_when_a_quarter_of_its_per_client_bound_is_taken() {
    // Acks wait up to a minute here, far past the deadline below: only the eager ack, due
    // once 2 messages (a quarter of 8) are taken, can arrive in time.
    let hub = Hub::new(HubConfig {
        ack_delay: Duration::from_secs(60),
        max_pending_per_client: 8,
        ..HubConfig::default()
    })
    .start();
    let server = TestServer::start_full(ServerConfig::default(), hub).await;
    let app = record_app(&server.hub);
    let mut raw = common::raw::RawClient::connect(&server.acked_url()).await;
    raw.hello("eager", 0).await;
    raw.send(r#"{"type":"msg","seq":1,"data":{"n":1}}"#).await;
    wait_for("the first taken", DEADLINE, || {
        app.lock().unwrap().len() == 1
    })
    .await;
    raw.send(r#"{"type":"msg","seq":2,"data":{"n":2}}"#).await;
    // The first text to arrive is the ack of both: none was written for the first alone.
    assert_eq!(raw.text().await, r#"{"type":"ack","seq":2}"#);
    assert_eq!(numbers(&app.lock().unwrap()), [1, 2]);
}

/// A `Serialize` that misuses serde_json's map (a value without its key): serde_json writes
/// `{:1}`, which is not JSON.
struct MapValueWithoutKey;
impl serde::Serialize for MapValueWithoutKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_value(&1)?;
        map.end()
    }
}

/// A `Serialize` that borrows serde_json's raw-value token: serde_json writes the text as it
/// is, unchecked.
struct Unchecked(&'static str);
impl serde::Serialize for Unchecked {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut raw = s.serialize_struct("$serde_json::private::RawValue", 1)?;
        raw.serialize_field("$serde_json::private::RawValue", self.0)?;
        raw.end()
    }
}

// Found by review: trusting `Sender::json`'s text to be JSON (no parse) put `{:1}` raw into a
// `data` envelope; the hub could not decode the frame, closed the next one as a sequence gap,
// and the client sent the same frame again on every reconnect. Every payload is checked.
#[actix_rt::test]
async fn text_serde_json_writes_that_is_not_json_still_goes_as_text_and_nothing_stalls() {
    let server = TestServer::start().await;
    let app = record_app(&server.hub);
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("odd").build().unwrap());
    let sender = socket.send(resocket::GetSender).await.unwrap();
    sender.json(&MapValueWithoutKey).unwrap();
    sender.json(&Unchecked("hello world")).unwrap();
    sender.json(&serde_json::json!({ "n": 1 })).unwrap();
    wait_for("all three at the app", DEADLINE, || {
        app.lock().unwrap().len() == 3
    })
    .await;
    let texts: Vec<String> = app.lock().unwrap().iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, ["{:1}", "hello world", r#"{"n":1}"#]);
    let stats = server.hub.send(GetHubStats).await.unwrap();
    assert_eq!(stats.violations, 0, "{stats:?}");
}
