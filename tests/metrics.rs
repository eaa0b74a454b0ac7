//! Metrics (feature `metrics`) scraped over HTTP in Prometheus text format, as a monitoring
//! system would, after a scripted reconnect: the counters, the state gauge and the ping round
//! trip say what happened.
//!
//! The recorder is process-global, so this file holds one test.

mod common;

use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use common::proxy::{Cut, Proxy};
use common::{fast, TestServer, Watch, DEADLINE};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use resocket::{SendMessage, SocketActor};

/// Serves `handle` at `/metrics` on an ephemeral port of 127.0.0.1; returns the URL.
fn serve(handle: PrometheusHandle) -> String {
    let server = HttpServer::new(move || {
        let handle = handle.clone();
        App::new().route(
            "/metrics",
            web::get().to(move || {
                let handle = handle.clone();
                async move {
                    handle.run_upkeep();
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4")
                        .body(handle.render())
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    actix_rt::spawn(server.run());
    format!("http://{addr}/metrics")
}

async fn scrape(url: &str) -> String {
    let mut response = awc::Client::new().get(url).send().await.unwrap();
    assert!(response.status().is_success());
    String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
}

/// The value of the series `name{labels}` in a scrape (labels as rendered, sorted).
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Scrapes until every `(series, value)` holds (metrics are published on state changes and
/// heartbeat ticks), failing with the last scrape after the deadline.
async fn wait_for_series(url: &str, expected: &[(&str, f64)]) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(url).await;
        if expected.iter().all(|(s, v)| value(&text, s) == Some(*v)) {
            return text;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "expected {expected:?} in the scrape:\n{text}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_scrape_after_a_reconnect_shows_what_happened() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let url = serve(handle);
    let server = TestServer::start().await;
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&proxy.url()).name("feed").build().unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    for n in 0..3 {
        socket
            .send(SendMessage::text(format!("m{n}")))
            .await
            .unwrap()
            .unwrap();
    }
    proxy.cut(Cut::Rst);
    watch.wait_opens(2).await;
    let text = wait_for_series(
        &url,
        &[
            (r#"resocket_connects_total{socket="feed"}"#, 2.0),
            (r#"resocket_reconnects_total{socket="feed"}"#, 1.0),
            (r#"resocket_messages_out_total{socket="feed"}"#, 3.0),
            (r#"resocket_state{socket="feed",state="open"}"#, 1.0),
            (r#"resocket_state{socket="feed",state="backoff"}"#, 0.0),
            (r#"resocket_outbox_messages{socket="feed"}"#, 0.0),
            (r#"resocket_pending_requests{socket="feed"}"#, 0.0),
        ],
    )
    .await;
    assert_eq!(
        value(&text, r#"resocket_dropped_total{socket="feed"}"#),
        Some(0.0)
    );
    // The heartbeat pings every 50 ms: round trips are measured (a summary with a count).
    let start = Instant::now();
    loop {
        let text = scrape(&url).await;
        let count = value(&text, r#"resocket_ping_rtt_seconds_count{socket="feed"}"#);
        if count.is_some_and(|c| c >= 1.0) {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "no round trip:\n{text}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    // Gone: no state is current any more.
    socket.send(resocket::Close::now()).await.unwrap();
    wait_for_series(
        &url,
        &[
            (r#"resocket_state{socket="feed",state="closed"}"#, 1.0),
            (r#"resocket_state{socket="feed",state="open"}"#, 0.0),
        ],
    )
    .await;
}
