//! Supervision: restart after a panic keeps the outbox and subscribers; Permanent, Transient
//! and Temporary; the restart intensity; many sockets over several arbiters.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use common::{fast, giving_up_after, wait_for, TestServer, Watch, DEADLINE};
use resocket::testing::Panic;
use resocket::{
    Backoff, CloseReason, GetSocket, GetSupervisorStats, ListSockets, Outgoing, RestartIntensity,
    RestartPolicy, SendTo, SocketEnd, StartSocket, StopSocket, SubscribeSupervision,
    SupervisionEvent, SupervisorActor, SupervisorConfig,
};

/// Records supervision events.
struct EventLog(Arc<Mutex<Vec<SupervisionEvent>>>);

impl Actor for EventLog {
    type Context = Context<Self>;
}

impl Handler<SupervisionEvent> for EventLog {
    type Result = ();
    fn handle(&mut self, event: SupervisionEvent, _: &mut Context<Self>) {
        self.0.lock().unwrap().push(event);
    }
}

struct Tree {
    supervisor: Addr<SupervisorActor>,
    events: Arc<Mutex<Vec<SupervisionEvent>>>,
}

impl Tree {
    fn start(config: SupervisorConfig) -> Self {
        let supervisor = SupervisorActor::new(config).start();
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = EventLog(events.clone()).start();
        supervisor.do_send(SubscribeSupervision(log.recipient()));
        Tree { supervisor, events }
    }

    fn events(&self) -> Vec<SupervisionEvent> {
        self.events.lock().unwrap().clone()
    }

    async fn wait_event(&self, what: &str, pred: impl Fn(&SupervisionEvent) -> bool) {
        wait_for(what, DEADLINE, || self.events().iter().any(&pred)).await;
    }

    async fn socket(&self, key: &str) -> Addr<resocket::SocketActor> {
        self.supervisor
            .send(GetSocket(key.into()))
            .await
            .unwrap()
            .unwrap()
    }
}

fn one_arbiter() -> SupervisorConfig {
    SupervisorConfig {
        arbiters: 1,
        intensity: RestartIntensity {
            max_restarts: 10,
            within: Duration::from_secs(10),
        },
    }
}

#[actix_rt::test]
async fn a_panicking_socket_is_restarted_with_its_outbox_and_subscribers() {
    let mut server = TestServer::start().await;
    let tree = Tree::start(one_arbiter());
    let watch = Watch::detached();
    let start = watch.subscribe_all(StartSocket::new(
        "feed",
        fast(&server.url()).identify("id").build().unwrap(),
    ));
    tree.supervisor.send(start).await.unwrap().unwrap();
    watch.wait_opens(1).await;

    // Disconnected, messages wait in the outbox; then a handler panics.
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    for i in 0..5 {
        let send = SendTo {
            key: "feed".into(),
            message: Outgoing::from(format!("m{i}")),
        };
        tree.supervisor.send(send).await.unwrap().unwrap();
    }
    let before = tree.socket("feed").await;
    before.do_send(Panic);
    tree.wait_event("restarted", |e| {
        matches!(e, SupervisionEvent::ChildRestarted { restarts: 1, .. })
    })
    .await;
    assert!(tree.events().contains(&SupervisionEvent::SocketEnded {
        key: "feed".into(),
        end: SocketEnd::Panicked,
        restarting: true,
        unsent: 5,
    }));
    let after = tree.socket("feed").await;
    assert_ne!(before, after, "the restarted socket is a new actor");
    // (The old actor's mailbox goes a moment after it reported its end.)
    wait_for("the old actor gone", DEADLINE, || !before.connected()).await;

    // The server returns: the restarted socket identifies, then writes the inherited outbox.
    server.restart().await;
    watch.wait_opens(2).await; // the original subscribers followed the restart
    wait_for("queued messages", DEADLINE, || server.received().len() >= 7).await;
    assert_eq!(
        server.received(),
        ["id", "id", "m0", "m1", "m2", "m3", "m4"]
    );
}

#[actix_rt::test]
async fn transient_restarts_after_giving_up_but_not_after_a_user_close() {
    let server = TestServer::start().await;
    let tree = Tree::start(one_arbiter());
    // A socket that gives up at once against a refused port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("ws://{}/ws", dead.local_addr().unwrap());
    drop(dead);
    let gives_up = fast(&dead_url).backoff(giving_up_after(1)).build().unwrap();
    tree.supervisor
        .send(StartSocket::new("flaky", gives_up).policy(RestartPolicy::Transient))
        .await
        .unwrap()
        .unwrap();
    tree.wait_event(
        "restart after giving up",
        |e| matches!(e, SupervisionEvent::ChildRestarted { key, .. } if key == "flaky"),
    )
    .await;
    assert!(tree.events().iter().any(|e| matches!(
        e,
        SupervisionEvent::SocketEnded {
            end: SocketEnd::Closed(CloseReason::GaveUp { .. }),
            restarting: true,
            ..
        }
    )));
    // (It goes on giving up and restarting until the intensity stops that tree.)

    let tree = Tree::start(one_arbiter());
    let watch = Watch::detached();
    let start = watch.subscribe_all(
        StartSocket::new("calm", fast(&server.url()).build().unwrap())
            .policy(RestartPolicy::Transient),
    );
    tree.supervisor.send(start).await.unwrap().unwrap();
    watch.wait_opens(1).await;
    tree.socket("calm")
        .await
        .send(resocket::Close::now())
        .await
        .unwrap();
    tree.wait_event("calm ended", |e| {
        matches!(e, SupervisionEvent::SocketEnded { key, restarting: false, .. } if key == "calm")
    })
    .await;
    assert!(tree.supervisor.send(ListSockets).await.unwrap().is_empty());
}

#[actix_rt::test]
async fn permanent_restarts_even_after_a_user_close_and_temporary_never_restarts() {
    let server = TestServer::start().await;
    let tree = Tree::start(one_arbiter());
    tree.supervisor
        .send(StartSocket::new(
            "perm",
            fast(&server.url()).build().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    tree.supervisor
        .send(
            StartSocket::new("temp", fast(&server.url()).build().unwrap())
                .policy(RestartPolicy::Temporary),
        )
        .await
        .unwrap()
        .unwrap();
    tree.socket("perm")
        .await
        .send(resocket::Close::now())
        .await
        .unwrap();
    tree.socket("temp").await.do_send(Panic);
    tree.wait_event(
        "perm restarted",
        |e| matches!(e, SupervisionEvent::ChildRestarted { key, .. } if key == "perm"),
    )
    .await;
    tree.wait_event("temp ended", |e| {
        matches!(e, SupervisionEvent::SocketEnded { key, end: SocketEnd::Panicked, restarting: false, .. } if key == "temp")
    })
    .await;
    assert_eq!(tree.supervisor.send(ListSockets).await.unwrap(), ["perm"]);
    // StopSocket removes a socket for good.
    let report = tree.supervisor.send(StopSocket::new("perm")).await.unwrap();
    assert!(report.is_some());
    assert!(tree.supervisor.send(ListSockets).await.unwrap().is_empty());
    assert!(tree
        .events()
        .contains(&SupervisionEvent::ChildStopped { key: "perm".into() }));
}

#[actix_rt::test]
async fn exceeding_the_restart_intensity_stops_the_tree_and_says_why() {
    let server = TestServer::start().await;
    let tree = Tree::start(SupervisorConfig {
        arbiters: 1,
        intensity: RestartIntensity {
            max_restarts: 2,
            within: Duration::from_secs(30),
        },
    });
    tree.supervisor
        .send(StartSocket::new(
            "crashy",
            fast(&server.url()).build().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    tree.supervisor
        .send(StartSocket::new(
            "bystander",
            fast(&server.url()).build().unwrap(),
        ))
        .await
        .unwrap()
        .unwrap();
    let bystander = tree.socket("bystander").await;
    for n in 1..=2u32 {
        tree.socket("crashy").await.do_send(Panic);
        tree.wait_event(
            "restart",
            |e| matches!(e, SupervisionEvent::ChildRestarted { restarts, .. } if *restarts == n),
        )
        .await;
    }
    tree.socket("crashy").await.do_send(Panic);
    tree.wait_event("intensity exceeded", |e| {
        matches!(e, SupervisionEvent::IntensityExceeded { max_restarts: 2, key, .. } if key == "crashy")
    })
    .await;
    wait_for("supervisor stopped", DEADLINE, || {
        !tree.supervisor.connected()
    })
    .await;
    wait_for("children stopped", DEADLINE, || !bystander.connected()).await;
}

#[actix_rt::test]
async fn a_thousand_sockets_over_two_arbiters_all_open_and_all_come_back_after_a_server_restart() {
    let mut server = TestServer::start().await;
    let tree = Tree::start(SupervisorConfig {
        arbiters: 2,
        ..SupervisorConfig::default()
    });
    let config = fast(&server.url())
        .heartbeat(Duration::from_secs(5), Duration::from_secs(10))
        .backoff(Backoff::exponential(
            Duration::from_millis(50),
            Duration::from_secs(1),
        ))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for i in 0..1000 {
        tree.supervisor
            .send(StartSocket::new(format!("s{i}"), config.clone()))
            .await
            .unwrap()
            .unwrap();
    }
    let stats = wait_stats(&tree, "1,000 open", |s| s.open == 1000).await;
    assert_eq!(stats.sockets, 1000);
    assert_eq!(server.live(), 1000);

    server.restart().await;
    let stats = wait_stats(&tree, "1,000 open again", |s| {
        s.open == 1000 && s.reconnects == 1000
    })
    .await;
    assert_eq!(stats.backoff, 0);
    assert_eq!(stats.restarts, 0, "reconnects, not restarts");
}

async fn wait_stats(
    tree: &Tree,
    what: &str,
    pred: impl Fn(&resocket::SupervisorStats) -> bool,
) -> resocket::SupervisorStats {
    let start = std::time::Instant::now();
    loop {
        let stats = tree.supervisor.send(GetSupervisorStats).await.unwrap();
        if pred(&stats) {
            return stats;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {stats:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn keys_are_unique_and_unknown_keys_hand_the_message_back() {
    let server = TestServer::start().await;
    let tree = Tree::start(one_arbiter());
    let config = fast(&server.url()).build().unwrap();
    tree.supervisor
        .send(StartSocket::new("a", config.clone()))
        .await
        .unwrap()
        .unwrap();
    let duplicate = tree
        .supervisor
        .send(StartSocket::new("a", config))
        .await
        .unwrap();
    assert_eq!(
        duplicate.unwrap_err(),
        resocket::Error::DuplicateKey("a".into())
    );
    let send = SendTo {
        key: "nope".into(),
        message: Outgoing::from("hi"),
    };
    let refused = tree.supervisor.send(send).await.unwrap().unwrap_err();
    assert_eq!(refused.error, resocket::Error::UnknownKey("nope".into()));
    assert_eq!(refused.message, Outgoing::from("hi"));
    // SendTo reaches the socket.
    let send = SendTo {
        key: "a".into(),
        message: Outgoing::from("hello"),
    };
    tree.supervisor.send(send).await.unwrap().unwrap();
    wait_for("message at the server", DEADLINE, || {
        server.received() == ["hello"]
    })
    .await;
    let stats = wait_stats(&tree, "open", |s| s.open == 1).await;
    assert_eq!((stats.sockets, stats.messages_out), (1, 1));
}

#[actix_rt::test]
async fn send_to_racing_a_panic_still_reaches_the_server() {
    let server = TestServer::start().await;
    let tree = Tree::start(SupervisorConfig {
        arbiters: 0,
        ..SupervisorConfig::default()
    });
    let config = fast(&server.url()).build().unwrap();
    let socket = tree
        .supervisor
        .send(StartSocket::new("k", config))
        .await
        .unwrap()
        .unwrap();
    wait_for("session", DEADLINE, || server.live() == 1).await;
    let sends: Vec<_> = (0..5)
        .map(|i| {
            tree.supervisor.send(SendTo {
                key: "k".into(),
                message: Outgoing::from(format!("m{i}")),
            })
        })
        .collect();
    // The supervisor forwards the sends behind this panic: they meet a dead socket.
    socket.do_send(Panic);
    for result in futures_util::future::join_all(sends).await {
        result.unwrap().unwrap();
    }
    wait_for("all five at the server", DEADLINE, || {
        server.received().len() == 5
    })
    .await;
    let mut got = server.received();
    got.sort();
    assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"]);
}

/// Records which socket each text came from.
struct BySocket(Arc<Mutex<Vec<(String, String)>>>);
impl Actor for BySocket {
    type Context = Context<Self>;
}
impl Handler<resocket::InboundText> for BySocket {
    type Result = ();
    fn handle(&mut self, msg: resocket::InboundText, _: &mut Context<Self>) {
        self.0
            .lock()
            .unwrap()
            .push((msg.1.to_string(), msg.0.to_string()));
    }
}

#[actix_rt::test]
async fn one_subscription_serves_every_socket_and_each_event_names_its_socket() {
    let server = TestServer::start().await;
    let supervisor = SupervisorActor::new(SupervisorConfig {
        arbiters: 1,
        ..Default::default()
    })
    .start();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let collector = BySocket(seen.clone()).start();
    let start = |key: &str| StartSocket::new(key, fast(&server.url()).build().unwrap());
    supervisor.send(start("a")).await.unwrap().unwrap();
    supervisor
        .send(resocket::SubscribeAll(resocket::Subscribe::text(
            collector.recipient(),
        )))
        .await
        .unwrap();
    // Started after the subscription: covered too.
    supervisor.send(start("b")).await.unwrap().unwrap();
    wait_for("both connected", DEADLINE, || server.live() == 2).await;
    server.command_all(resocket::server::Command::Text("tick".into()));
    wait_for("a tick from each", DEADLINE, || {
        seen.lock().unwrap().len() == 2
    })
    .await;
    let mut from: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    from.sort();
    assert_eq!(from, ["a", "b"]);
    // A bare socket is named by the builder, or gets a unique socket-N.
    let named =
        resocket::SocketActor::connect(fast(&server.url()).name("feed-eu").build().unwrap());
    let unnamed = resocket::SocketActor::connect(fast(&server.url()).build().unwrap());
    let (named_watch, unnamed_watch) = (Watch::attach(&named), Watch::attach(&unnamed));
    named_watch.wait_opens(1).await;
    unnamed_watch.wait_opens(1).await;
    let name_of = |w: &Watch| w.log.lock().unwrap().state_sockets.last().cloned();
    assert_eq!(name_of(&named_watch).as_deref(), Some("feed-eu"));
    assert!(name_of(&unnamed_watch).is_some_and(|n| n.starts_with("socket-")));
}
