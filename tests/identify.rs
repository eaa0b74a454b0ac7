//! Identify, then wait: nothing but the identify messages reaches a server before it accepts
//! the identity; a server that never accepts is a failed connection, retried.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::{Error, SendMessage, SocketActor, SocketState};

const IDENTIFY: &str = r#"{"op":"identify","token":"t"}"#;

#[actix_rt::test]
async fn the_outbox_waits_for_the_servers_acceptance_then_flows() {
    // The test server echoes: the echo of the identify message is its "ready".
    let server = TestServer::start().await;
    let socket = SocketActor::connect(
        fast(&server.url())
            .identify(IDENTIFY)
            .identify_until(|t| t.contains(r#""op":"identify""#), Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    for n in 0..3 {
        socket
            .send(SendMessage::text(format!("m{n}")))
            .await
            .unwrap()
            .unwrap();
    }
    wait_for("all of it", DEADLINE, || server.received().len() == 4).await;
    assert_eq!(server.received(), [IDENTIFY, "m0", "m1", "m2"]);
    let names: Vec<&str> = watch.states().iter().map(SocketState::name).collect();
    let identifying = names.iter().position(|n| *n == "identifying");
    let open = names.iter().position(|n| *n == "open");
    assert!(
        matches!((identifying, open), (Some(i), Some(o)) if i < o),
        "{names:?}"
    );
}

#[actix_rt::test]
async fn a_server_that_never_accepts_gets_nothing_but_identify_messages_and_is_retried() {
    let server = TestServer::start().await;
    server.shared.echo.store(false, Ordering::SeqCst); // no reply, so never ready
    let socket = SocketActor::connect(
        fast(&server.url())
            .identify(IDENTIFY)
            .identify_until(|t| t.contains("ready"), Duration::from_millis(200))
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    socket
        .send(SendMessage::text("secret-data"))
        .await
        .unwrap()
        .unwrap();
    watch
        .wait_error(
            "not accepted",
            |e| matches!(e, Error::Handshake(m) if m.contains("did not accept the identify")),
        )
        .await;
    wait_for("a second connection", DEADLINE, || server.opened() >= 2).await;
    wait_for("its identify", DEADLINE, || server.received().len() >= 2).await;
    assert!(
        server.received().iter().all(|t| t == IDENTIFY),
        "{:?}",
        server.received()
    );
    assert!(!watch.states().iter().any(SocketState::is_open));
}
