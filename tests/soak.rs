//! The long soak (ignored by default; run it in release):
//!
//! ```text
//! cargo test --release --test soak -- --ignored --nocapture
//! ```
//!
//! Acked mode, `SOAK_MESSAGES` (default 1,000,000) messages each way through the fault proxy,
//! with cuts (FIN and RST) and stalls throughout and one HTTP server restart per 100,000
//! messages. It checks on the fly that nothing is lost, duplicated or reordered (each side
//! expects exactly the next number), and samples the process's resident memory (client and
//! server run in this one process) at every tenth of the run: after warm-up (the first fifth),
//! the end must be within 5% of the sample at one fifth.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use common::proxy::{Cut, Proxy};
use common::{fast, TestServer};
use resocket::server::{
    FromClient, GetHubStats, Hub, HubConfig, ServerConfig, SubscribeHub, ToClient,
};
use resocket::{
    Backoff, GetSender, GetStatus, Inbound, Outbox, RandomSource, SocketActor, SplitMix64,
    Subscribe,
};

/// Expects 0, 1, 2, … and counts what was not the next.
#[derive(Default)]
struct InOrder {
    next: AtomicU64,
    wrong: AtomicU64,
}

impl InOrder {
    fn saw(&self, n: u64) {
        if self.next.load(Ordering::Relaxed) == n {
            self.next.fetch_add(1, Ordering::Relaxed);
        } else {
            self.wrong.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn next(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }
}

fn number(text: &str) -> Option<u64> {
    text.strip_prefix(r#"{"n":"#)?
        .strip_suffix('}')?
        .parse()
        .ok()
}

struct App(Arc<InOrder>);
impl Actor for App {
    type Context = Context<Self>;
}
impl Handler<FromClient> for App {
    type Result = ();
    fn handle(&mut self, msg: FromClient, _: &mut Context<Self>) {
        if msg.seq.is_some() {
            self.0.saw(number(&msg.text).unwrap_or(u64::MAX));
        }
    }
}

struct Client(Arc<InOrder>);
impl Actor for Client {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}
impl Handler<Inbound<serde_json::Value>> for Client {
    type Result = ();
    fn handle(&mut self, msg: Inbound<serde_json::Value>, _: &mut Context<Self>) {
        self.0.saw(msg.0["n"].as_u64().unwrap_or(u64::MAX));
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[actix_rt::test]
#[ignore = "a long soak: cargo test --release --test soak -- --ignored --nocapture"]
async fn soak_a_million_each_way_through_cuts_stalls_and_restarts() {
    let n: u64 = std::env::var("SOAK_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let restart_every = 100_000.min(n / 2).max(1);
    let hub = Hub::new(HubConfig {
        history: 50_000,
        ..HubConfig::default()
    })
    .start();
    let mut server = TestServer::start_full(
        ServerConfig {
            heartbeat_interval: Duration::from_millis(200),
            heartbeat_timeout: Duration::from_secs(2),
            ..ServerConfig::default()
        },
        hub.clone(),
    )
    .await;
    let to_app = Arc::new(InOrder::default());
    let app = App(to_app.clone()).start();
    hub.send(SubscribeHub {
        messages: app.recipient(),
        events: None,
    })
    .await
    .unwrap();
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("soak")
        .heartbeat(Duration::from_millis(200), Duration::from_secs(2))
        .backoff(Backoff::exponential(
            Duration::from_millis(10),
            Duration::from_millis(100),
        ))
        .outbox(Outbox::bounded(20_000))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let to_client = Arc::new(InOrder::default());
    let collector = Client(to_client.clone()).start();
    socket.do_send(Subscribe::to::<serde_json::Value>(collector.recipient()));
    let sender = socket.send(GetSender).await.unwrap();

    let started = Instant::now();
    let (mut sent_up, mut sent_down) = (0u64, 0u64);
    let mut rng = SplitMix64::new(2026);
    let (mut cuts, mut stalls, mut restarts) = (0u32, 0u32, 0u32);
    let mut next_fault = Instant::now() + Duration::from_millis(200);
    let mut next_restart = restart_every;
    let mut rss = Vec::new();
    let mut next_sample = 0u64;
    let deadline = Duration::from_secs(3600);
    while to_app.next() < n || to_client.next() < n {
        assert!(started.elapsed() < deadline, "the soak did not finish");
        assert_eq!(
            to_app.wrong.load(Ordering::Relaxed),
            0,
            "client→app out of order"
        );
        assert_eq!(
            to_client.wrong.load(Ordering::Relaxed),
            0,
            "app→client out of order"
        );
        // Keep at most 10,000 in flight each way (the outbox and the hub history hold them).
        while sent_up < n && sent_up - to_app.next() < 10_000 {
            if sender.send(format!(r#"{{"n":{sent_up}}}"#)).is_err() {
                break; // outbox full: later
            }
            sent_up += 1;
        }
        while sent_down < n && sent_down - to_client.next() < 10_000 {
            hub.do_send(ToClient {
                client: "soak".into(),
                text: format!(r#"{{"n":{sent_down}}}"#),
            });
            sent_down += 1;
        }
        let progress = to_app.next().min(to_client.next());
        if progress >= next_sample {
            rss.push(rss_kib());
            next_sample += n / 10;
        }
        if progress >= next_restart && next_restart < n {
            restarts += 1;
            next_restart += restart_every;
            server.restart().await;
        }
        if Instant::now() >= next_fault {
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
            next_fault = Instant::now() + Duration::from_millis(50 + rng.next_u64() % 250);
        }
        actix_rt::time::sleep(Duration::from_millis(2)).await;
    }
    rss.push(rss_kib());
    let elapsed = started.elapsed();
    let stats = hub.send(GetHubStats).await.unwrap();
    let client = socket.send(GetStatus).await.unwrap();
    println!(
        "soak: {n} messages each way in {elapsed:.1?} ({:.0}/s each way); {cuts} cuts, {stalls} \
         stalls, {restarts} server restarts, {} reconnects; duplicates dropped: hub {}, client \
         {}; lost 0, duplicated 0, reordered 0",
        n as f64 / elapsed.as_secs_f64(),
        client.counters.reconnects,
        stats.duplicates,
        client.counters.duplicates,
    );
    println!("soak: RSS by tenths (KiB): {rss:?}");
    assert_eq!((to_app.next(), to_client.next()), (n, n));
    assert_eq!(to_app.wrong.load(Ordering::Relaxed), 0);
    assert_eq!(to_client.wrong.load(Ordering::Relaxed), 0);
    if rss.len() >= 11 {
        // Warm-up is the first fifth: buffers and queues reach their high-water marks as the
        // worst stalls and restarts happen, then stay (a step, not a slope).
        let (warm, last) = (rss[2] as f64, rss[10] as f64);
        let growth = (last - warm) / warm;
        println!(
            "soak: RSS after warm-up {warm} KiB, at the end {last} KiB ({:+.1}%)",
            growth * 100.0
        );
        assert!(growth.abs() <= 0.05, "RSS not flat: {rss:?}");
    }
}
