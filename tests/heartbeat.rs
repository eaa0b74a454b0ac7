//! Heartbeat: a silent (half-open) peer is detected within interval + timeout; the server's
//! pings are answered; the app-level keepalive goes out with every heartbeat.

mod common;

use std::time::{Duration, Instant};

use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::server::{Command, ServerConfig};
use resocket::{Backoff, Disconnect, Error, GetStatus, SocketActor, SocketState};

#[actix_rt::test]
async fn a_silent_peer_is_detected_within_interval_plus_timeout_and_the_socket_reconnects() {
    let server = TestServer::start().await;
    let interval = Duration::from_millis(50);
    let timeout = Duration::from_millis(200);
    let config = fast(&server.url())
        .heartbeat(interval, timeout)
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    wait_for("server session", DEADLINE, || server.live() == 1).await;

    // The server goes quiet: it reads nothing, answers nothing, sends nothing.
    let silenced = Instant::now();
    server.command_all(Command::Silence(true));
    let state = watch
        .wait_state("backoff after heartbeat timeout", |s| {
            matches!(
                s,
                SocketState::Backoff {
                    cause: Disconnect::HeartbeatTimeout(_),
                    ..
                }
            )
        })
        .await;
    let detected = silenced.elapsed();
    if let SocketState::Backoff {
        cause: Disconnect::HeartbeatTimeout(silent),
        ..
    } = state
    {
        assert!(silent > timeout, "declared dead after only {silent:?}");
    }
    // Bound: the last frame came at most one interval before the silence began, plus the
    // timeout, plus one tick to notice; generous slack for a loaded CI machine.
    assert!(
        detected <= interval + timeout + interval + Duration::from_millis(500),
        "half-open peer detected only after {detected:?}"
    );
    assert!(watch
        .errors()
        .iter()
        .any(|e| matches!(e, Error::HeartbeatTimeout(_))));
    // The next connection (a fresh, talkative session) opens.
    watch.wait_opens(2).await;
}

#[actix_rt::test]
async fn server_pings_are_answered_so_a_strict_server_keeps_the_connection() {
    // The server drops clients silent for 150 ms; the client itself pings only every 10 s, so
    // only its pongs to the server's pings (every 30 ms) keep it alive.
    let server = TestServer::start_with(ServerConfig {
        heartbeat_interval: Duration::from_millis(30),
        heartbeat_timeout: Duration::from_millis(150),
        ..ServerConfig::default()
    })
    .await;
    let config = fast(&server.url())
        .heartbeat(Duration::from_secs(10), Duration::from_secs(20))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    // Six server timeouts long: without pongs the server would have dropped us by now. The
    // pongs it counts over the window are the evidence that they kept the connection.
    let pongs_before = server.pongs();
    actix_rt::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        server.opened(),
        1,
        "the server dropped the client: pings were not answered"
    );
    assert!(
        server.pongs() >= pongs_before + 3,
        "{} pongs in 900 ms with a ping every 30 ms",
        server.pongs() - pongs_before
    );
    assert!(watch.last_state().unwrap().is_open());
}

#[actix_rt::test]
async fn the_keepalive_message_goes_out_with_every_heartbeat() {
    let server = TestServer::start().await;
    let config = fast(&server.url())
        .heartbeat(Duration::from_millis(20), Duration::from_millis(500))
        .keepalive(r#"{"keepalive":"live"}"#)
        .backoff(Backoff::default())
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let keepalives = || {
        server
            .received()
            .iter()
            .filter(|m| *m == r#"{"keepalive":"live"}"#)
            .count()
    };
    wait_for("three keepalives", DEADLINE, || keepalives() >= 3).await;
    // Closed, so that the count stops: every keepalive the socket wrote (its only data
    // messages) arrived, one per heartbeat tick it was written at.
    socket.send(resocket::Close::now()).await.unwrap();
    watch.wait_state("closed", SocketState::is_closed).await;
    let written = socket.send(GetStatus).await.unwrap().counters.messages_out;
    wait_for("every keepalive written", DEADLINE, || {
        keepalives() as u64 == written
    })
    .await;
    assert_eq!(keepalives() as u64, written);
}
