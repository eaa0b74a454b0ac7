//! The hub writing to a client within its session's write backlog limit and its history
//! limit, over real sockets on 127.0.0.1: whatever the sizes, a message is delivered in order
//! or reported lost in a gap, never skipped and never the cause of an endless reconnect loop.
//! Both began as a hostile review's reproductions (round 3).

mod common;

use std::time::Duration;

use actix::Actor;

use common::proxy::Proxy;
use common::{wait_for, TestServer, Watch, DEADLINE};
use resocket::server::{Hub, HubConfig, ServerConfig, ToClient};
use resocket::{Error, SocketActor};

/// The `n` and the padding length of each message the client received.
fn received(watch: &Watch) -> Vec<(u64, usize)> {
    watch
        .texts()
        .iter()
        .map(|t| {
            let v: serde_json::Value = serde_json::from_str(t).unwrap();
            (
                v["n"].as_u64().unwrap(),
                v["pad"].as_str().unwrap_or("").len(),
            )
        })
        .collect()
}

fn message(n: u64, pad: usize) -> String {
    format!(r#"{{"n":{n},"pad":"{}"}}"#, "x".repeat(pad))
}

/// Before the fix the hub wrote a frame whenever the backlog was under half its limit, even
/// when the frame did not fit: the session dropped it and closed with 1008, and the same
/// replay did the same on every reconnect (a wedge). A frame larger than the whole limit was
/// never written at all.
#[actix_rt::test]
async fn messages_larger_than_the_room_left_or_the_whole_backlog_limit_are_all_delivered() {
    let hub = Hub::new(HubConfig::default()).start();
    let config = ServerConfig {
        max_write_backlog: 4096,
        ..ServerConfig::default()
    };
    let server = TestServer::start_full(config, hub.clone()).await;
    // Queued before the client connects: the hello's replay writes them in one go.
    let sizes: Vec<usize> = (0..20)
        .map(|i| if i % 2 == 0 { 1000 } else { 3500 })
        .chain([10_000, 10, 10_000])
        .collect();
    for (n, pad) in sizes.iter().enumerate() {
        hub.send(ToClient {
            client: "mixed".into(),
            text: message(n as u64, *pad),
        })
        .await
        .unwrap();
    }
    let config = common::fast(&server.acked_url())
        .acked("mixed")
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    wait_for("every message", DEADLINE, || {
        watch.texts().len() >= sizes.len()
    })
    .await;
    let expected: Vec<(u64, usize)> = sizes
        .iter()
        .enumerate()
        .map(|(n, pad)| (n as u64, *pad))
        .collect();
    assert_eq!(received(&watch), expected);
    assert_eq!(
        watch.opens(),
        1,
        "the session was ended: {:?}",
        watch.errors()
    );
    assert_eq!(server.close_codes(), Vec::<Option<u16>>::new());
}

/// Before the fix a history limit that dropped messages not yet written on the live session
/// skipped them: the client saw a sequence jump (a protocol error) instead of a reported gap.
/// Now the hub ends the session (1013) and the client's resume reports exactly what is lost.
#[actix_rt::test]
async fn a_client_that_falls_behind_the_history_limit_is_told_of_the_gap_and_sees_no_jump() {
    let hub = Hub::new(HubConfig {
        history: 5,
        ..HubConfig::default()
    })
    .start();
    let config = ServerConfig {
        max_write_backlog: 1024 * 1024,
        ..ServerConfig::default()
    };
    let server = TestServer::start_full(config, hub.clone()).await;
    let proxy = Proxy::start(server.addr).await;
    let config = common::fast(&format!("ws://{}/acked", proxy.addr))
        .acked("slow")
        .heartbeat(Duration::from_secs(10), Duration::from_secs(30))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    // The client stops reading; 60 × 256 KiB is far more than the kernel's socket buffers
    // and the session's backlog hold, so most are still unwritten when the history drops them.
    proxy.stall(true);
    const TOTAL: u64 = 60;
    for n in 1..=TOTAL {
        hub.send(ToClient {
            client: "slow".into(),
            text: message(n, 256 * 1024),
        })
        .await
        .unwrap();
    }
    proxy.stall(false);
    wait_for("the last message", DEADLINE, || {
        received(&watch).last().is_some_and(|(n, _)| *n == TOTAL)
    })
    .await;
    let errors = watch.errors();
    assert!(
        !errors.iter().any(|e| matches!(e, Error::Protocol(_))),
        "{errors:?}"
    );
    let gaps: Vec<(u64, u64)> = errors
        .iter()
        .filter_map(|e| match e {
            Error::ResumeGap { from, to } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert!(!gaps.is_empty(), "nothing was lost? {errors:?}");
    let got: Vec<u64> = received(&watch).iter().map(|(n, _)| *n).collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
    for n in 1..=TOTAL {
        let in_gap = gaps.iter().any(|(from, to)| (*from..=*to).contains(&n));
        assert!(
            got.contains(&n) != in_gap,
            "message {n}: received {}, in a reported gap {in_gap} ({gaps:?})",
            got.contains(&n)
        );
    }
}
