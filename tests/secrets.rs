//! Secrets (header values such as Authorization, identify payloads marked secret, tokens in the
//! URL's query) never appear in Debug output or in any log line, at any level.

mod common;

use std::sync::Mutex;

use common::{wait_for, TestServer, Watch, DEADLINE};
use resocket::{Close, GetStatus, SendMessage, SocketActor, SocketConfig};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records every log line, from every crate, at every level.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {} {}", record.level(), record.target(), record.args());
        LINES.lock().unwrap().push(line);
    }
    fn flush(&self) {}
}

const SECRETS: [&str; 4] = [
    "hdr-s3cret",
    "custom-s3cret",
    "ident-s3cret",
    "query-s3cret",
];

#[actix_rt::test]
async fn secrets_never_reach_debug_output_or_logs() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let server = TestServer::start().await;
    let url = format!("{}?token=query-s3cret", server.url());
    let config = SocketConfig::builder(url)
        .header("Authorization", "Bearer hdr-s3cret")
        .secret_header("X-Session", "custom-s3cret")
        .identify_secret(r#"{"op":"auth","token":"ident-s3cret"}"#)
        .build()
        .unwrap();
    let shown_config = format!("{config:?}");
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    socket
        .send(SendMessage::text("hello"))
        .await
        .unwrap()
        .unwrap();
    wait_for("identify and hello", DEADLINE, || {
        server.received().len() == 2
    })
    .await;
    // The secret identify message was sent all the same.
    assert!(server.received()[0].contains("ident-s3cret"));
    let status = socket.send(GetStatus).await.unwrap();
    socket.send(Close::now()).await.unwrap();
    watch.wait_state("closed", |s| s.is_closed()).await;

    let mut shown = vec![
        shown_config,
        format!("{status:?}"),
        format!("{:?}", watch.states()),
    ];
    shown.extend(LINES.lock().unwrap().iter().cloned());
    assert!(
        LINES.lock().unwrap().len() > 5,
        "the logger captured nothing: the test is not testing"
    );
    for line in &shown {
        for secret in SECRETS {
            assert!(!line.contains(secret), "{secret} leaked: {line}");
        }
    }
}
