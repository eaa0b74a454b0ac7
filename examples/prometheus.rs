//! Prometheus: every socket's counters, state, outbox depth and ping round trip (feature
//! `metrics`), served in Prometheus text format at `/metrics`.
//!
//! Three sockets talk to an embedded echo server; one of them sends a message every 100 ms.
//! The exporter is `metrics-exporter-prometheus` without its HTTP listener: actix-web serves
//! its rendering, so nothing else listens. Scrape it with `curl http://127.0.0.1:9898/metrics`
//! or point Prometheus at it.
//!
//! ```text
//! cargo run --example prometheus                    # serves until Ctrl-C
//! cargo run --example prometheus -- --run-for 2     # prints one scrape after 2 s and ends
//! cargo run --example prometheus -- --port 0        # any free port
//! ```

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use resocket::testing::EchoServer;
use resocket::{GetSender, SocketActor, SocketConfig};

async fn metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(handle.render())
}

#[actix::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 9898u16;
    let mut run_for = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().ok_or("--port needs a number")?.parse()?,
            "--run-for" => {
                let secs: f64 = args.next().ok_or("--run-for needs seconds")?.parse()?;
                run_for = Some(Duration::from_secs_f64(secs));
            }
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    // The recorder first: sockets register their metrics when they start.
    let handle = PrometheusBuilder::new().install_recorder()?;
    let upstream = EchoServer::start()?;
    let mut sockets = Vec::new();
    for name in ["btc", "eth", "sol"] {
        let config = SocketConfig::builder(upstream.url("/feed"))
            .name(name)
            .heartbeat(Duration::from_millis(250), Duration::from_secs(5))
            .build()?;
        sockets.push(SocketActor::connect(config));
    }
    let sender = sockets[0].send(GetSender).await?;
    actix_rt::spawn(async move {
        for n in 0u64.. {
            if sender.send(format!(r#"{{"n":{n}}}"#)).is_err() {
                break;
            }
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let data = web::Data::new(handle);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(metrics))
    })
    .workers(1)
    .bind(("127.0.0.1", port))?;
    let addr = server.addrs()[0];
    println!("metrics at http://{addr}/metrics");
    let server = server.run();
    match run_for {
        None => server.await?,
        Some(d) => {
            let stop = server.handle();
            actix_rt::spawn(server);
            actix_rt::time::sleep(d).await;
            let mut response = awc::Client::new()
                .get(format!("http://{addr}/metrics"))
                .send()
                .await?;
            let body = response.body().await?;
            print!("{}", String::from_utf8_lossy(&body));
            stop.stop(true).await;
        }
    }
    Ok(())
}
