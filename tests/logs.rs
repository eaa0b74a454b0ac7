//! Logs that scale: a server restart under 200 supervised sockets is summarised by the
//! supervisor in a few lines, not one line per socket (per-socket detail is at debug).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use actix::prelude::*;
use common::{fast, wait_for, TestServer, DEADLINE};
use resocket::{StartSocket, SupervisorActor, SupervisorConfig};

/// Every record at info or above from resocket, as "LEVEL message".
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Info && metadata.target().starts_with("resocket")
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            if let Ok(mut lines) = LINES.lock() {
                lines.push(format!("{} {}", record.level(), record.args()));
            }
        }
    }
    fn flush(&self) {}
}

fn lines(level: log::Level) -> Vec<String> {
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with(level.as_str()))
        .cloned()
        .collect()
}

fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    static LOGGER: Capture = Capture;
    ONCE.call_once(|| {
        log::set_logger(&LOGGER).unwrap();
        log::set_max_level(log::LevelFilter::Info);
    });
}

#[actix_rt::test]
async fn a_server_restart_under_200_sockets_logs_a_summary_not_200_lines() {
    capture_logs();
    const N: usize = 200;
    let mut server = TestServer::start().await;
    let supervisor = SupervisorActor::new(SupervisorConfig {
        arbiters: 1,
        ..Default::default()
    })
    .start();
    for i in 0..N {
        let config = fast(&server.url())
            .backoff(resocket::Backoff::exponential(
                Duration::from_millis(50),
                Duration::from_millis(200),
            ))
            .build()
            .unwrap();
        supervisor
            .send(StartSocket::new(format!("s{i}"), config))
            .await
            .unwrap()
            .unwrap();
    }
    wait_for("all connected", DEADLINE, || server.live() == N).await;
    server.stop().await;
    wait_for("the summary", DEADLINE, || {
        lines(log::Level::Warn)
            .iter()
            .any(|l| l.contains(&format!("of {N} sockets reconnecting")))
    })
    .await;
    server.restart().await;
    wait_for("all back", DEADLINE * 3, || server.live() == N).await;
    wait_for("the all-clear", DEADLINE, || {
        lines(log::Level::Info)
            .iter()
            .any(|l| l.contains("all sockets connected again"))
    })
    .await;
    let warnings = lines(log::Level::Warn);
    assert!(
        warnings.len() < 10,
        "{} warnings: {:#?}",
        warnings.len(),
        &warnings[..warnings.len().min(20)]
    );
    let infos = lines(log::Level::Info);
    assert!(infos.len() < 10, "{} info lines: {infos:#?}", infos.len());
}

#[actix_rt::test]
async fn a_socket_stopped_while_down_leaves_the_outage_and_the_all_clear_still_comes() {
    capture_logs();
    let mut server = TestServer::start().await;
    let supervisor = SupervisorActor::new(SupervisorConfig {
        arbiters: 1,
        ..Default::default()
    })
    .start();
    for key in ["stopped-while-down", "comes-back"] {
        let config = fast(&server.url()).build().unwrap();
        supervisor
            .send(StartSocket::new(key, config))
            .await
            .unwrap()
            .unwrap();
    }
    wait_for("both connected", DEADLINE, || server.live() == 2).await;
    server.stop().await;
    wait_for("the outage summary", DEADLINE, || {
        lines(log::Level::Warn)
            .iter()
            .any(|l| l.contains("of 2 sockets reconnecting"))
    })
    .await;
    supervisor
        .send(resocket::StopSocket::new("stopped-while-down"))
        .await
        .unwrap();
    server.restart().await;
    // Only "comes-back" is left down: when it is back, the outage is over.
    wait_for("the all-clear", DEADLINE, || {
        lines(log::Level::Info)
            .iter()
            .any(|l| l.contains("all sockets connected again (2 were down)"))
    })
    .await;
}

#[actix_rt::test]
async fn an_outage_of_one_socket_is_one_warning_and_one_all_clear_two_streaks_two() {
    capture_logs();
    let (mut server, socket, watch) = common::disconnected(fast).await;
    let url = server.url();
    let mine = |level: log::Level, text: &str| {
        lines(level)
            .iter()
            .filter(|l| l.contains(url.as_str()) && l.contains(text))
            .count()
    };
    for streak in 1..=2 {
        // Several failed attempts in a row (the backoff carries the streak between them).
        let failures = socket
            .send(resocket::GetStatus)
            .await
            .unwrap()
            .counters
            .connect_failures;
        common::wait_status(&socket, "three more failed attempts", |s| {
            s.counters.connect_failures >= failures + 3
        })
        .await;
        server.restart().await;
        watch.wait_opens(streak + 1).await;
        wait_for("the all-clear", DEADLINE, || {
            mine(log::Level::Info, "connected after") == streak
        })
        .await;
        assert_eq!(
            mine(log::Level::Warn, "connect failed"),
            streak,
            "one warning a streak"
        );
        if streak == 1 {
            server.stop().await;
        }
    }
}
