//! Fresh credentials on every connect: a provider is asked before each attempt; its
//! failures are retried or fatal as it says; its values never show.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use common::{fast, giving_up_after, wait_for, TestServer, Watch, DEADLINE};
use resocket::{CloseReason, Credentials, Error, SocketActor, SocketState};

#[actix_rt::test]
async fn every_connect_gets_a_fresh_token() {
    let mut server = TestServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let socket = SocketActor::connect(
        fast(&server.auth_url())
            .credentials(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                Box::pin(async move {
                    Ok(Credentials::new().header("authorization", format!("Bearer tok-{n}")))
                })
            })
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    server.restart().await;
    watch.wait_opens(2).await;
    let seen = server.shared.auth_seen.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), Some("Bearer tok-1"));
    assert_eq!(
        seen.len(),
        calls.load(Ordering::SeqCst) as usize,
        "one call per attempt"
    );
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "{seen:?}");
}

#[actix_rt::test]
async fn a_retryable_provider_failure_backs_off_and_a_fatal_one_closes() {
    let server = TestServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let socket = SocketActor::connect(
        fast(&server.auth_url())
            .credentials(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                Box::pin(async move {
                    if n == 0 {
                        Err(Error::Credentials {
                            message: "auth service unavailable".into(),
                            retryable: true,
                        })
                    } else {
                        Ok(Credentials::new().header("authorization", "Bearer ok"))
                    }
                })
            })
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    assert!(watch.errors().iter().any(|e| matches!(
        e,
        Error::Credentials {
            retryable: true,
            ..
        }
    )));

    let fatal = SocketActor::connect(
        fast(&server.auth_url())
            .backoff(giving_up_after(5))
            .credentials(|| {
                Box::pin(async {
                    Err(Error::Credentials {
                        message: "account disabled".into(),
                        retryable: false,
                    })
                })
            })
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&fatal);
    let state = watch.wait_state("closed", SocketState::is_closed).await;
    assert!(
        matches!(
            state,
            SocketState::Closed {
                reason: CloseReason::Fatal(Error::Credentials {
                    retryable: false,
                    ..
                })
            }
        ),
        "{state:?}"
    );
}

#[actix_rt::test]
async fn a_provided_url_replaces_the_configured_one_and_secrets_never_show() {
    let server = TestServer::start().await;
    let url = server.auth_url();
    let socket = SocketActor::connect(
        fast("ws://127.0.0.1:1/never-used")
            .credentials(move || {
                let url = url.clone();
                Box::pin(async move {
                    Ok(Credentials::new()
                        .url(url)
                        .header("authorization", "Bearer s3cret-value"))
                })
            })
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    wait_for("the upgrade", DEADLINE, || {
        !server.shared.auth_seen.lock().unwrap().is_empty()
    })
    .await;
    let shown = format!(
        "{:?}",
        Credentials::new()
            .url("ws://h/?token=s3cret-value")
            .header("authorization", "Bearer s3cret-value")
    );
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[actix_rt::test]
async fn async_identify_messages_are_fresh_on_every_connect_and_follow_the_fixed_ones() {
    let mut server = TestServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let socket = SocketActor::connect(
        fast(&server.url())
            .identify("fixed")
            .identify_with_async(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                Box::pin(async move {
                    actix_rt::time::sleep(std::time::Duration::from_millis(5)).await;
                    Ok(vec![resocket::Outgoing::from(format!("token-{n}"))])
                })
            })
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    socket
        .send(resocket::SendMessage::text("data"))
        .await
        .unwrap()
        .unwrap();
    wait_for("first connection", DEADLINE, || {
        server.received().len() >= 3
    })
    .await;
    server.restart().await;
    watch.wait_opens(2).await;
    let n = calls.load(Ordering::SeqCst);
    wait_for("second identify", DEADLINE, || server.received().len() >= 5).await;
    assert_eq!(
        server.received(),
        ["fixed", "token-1", "data", "fixed", &format!("token-{n}")]
    );
    assert!(n >= 2);
}

#[actix_rt::test]
async fn an_async_identify_that_fails_or_never_answers_fails_the_attempt() {
    let server = TestServer::start().await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = calls.clone();
    let config = fast(&server.url())
        .connect_timeout(std::time::Duration::from_millis(200))
        .identify_with_async(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                match n {
                    0 => futures_util::future::pending().await,
                    1 => Err(Error::Credentials {
                        message: "token service down".into(),
                        retryable: true,
                    }),
                    _ => Ok(vec![resocket::Outgoing::from("ok")]),
                }
            })
        })
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    let errors = watch.errors();
    assert!(
        errors.iter().any(
            |e| matches!(e, Error::Credentials { message, retryable: true }
            if message.contains("did not answer within the connect timeout"))
        ),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, Error::Credentials { message, .. }
            if message == "token service down")),
        "{errors:?}"
    );
    wait_for("identify", DEADLINE, || !server.received().is_empty()).await;
    assert_eq!(server.received(), ["ok"]);
}

#[actix_rt::test]
async fn in_acked_mode_async_identify_messages_follow_the_welcome() {
    let server = TestServer::start().await;
    let app = common::record_app(&server.hub);
    let socket = SocketActor::connect(
        fast(&server.acked_url())
            .acked("ida")
            .identify_with_async(|| {
                Box::pin(async { Ok(vec![resocket::Outgoing::from(r#"{"token":"t"}"#)]) })
            })
            .build()
            .unwrap(),
    );
    socket
        .send(resocket::SendMessage::text(r#"{"n":1}"#))
        .await
        .unwrap()
        .unwrap();
    wait_for("both", DEADLINE, || app.lock().unwrap().len() >= 2).await;
    let texts: Vec<(String, Option<u64>)> = app
        .lock()
        .unwrap()
        .iter()
        .map(|m| (m.text.clone(), m.seq))
        .collect();
    assert_eq!(
        texts,
        [
            (r#"{"token":"t"}"#.to_string(), None),
            (r#"{"n":1}"#.to_string(), Some(1))
        ]
    );
}

/// The connect timeout bounds the whole attempt: the credentials provider's time counts in
/// it. (Each step had the full timeout of its own: a slow provider and a silent server made
/// an attempt last up to twice the timeout.) The margin is wide: the fixed rule ends the
/// attempt at 1 s, the old one at 1.7 s.
#[actix_rt::test]
async fn one_connect_timeout_bounds_the_provider_and_the_handshake_together() {
    // A listener that accepts and never answers the upgrade.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let started = std::time::Instant::now();
    let socket = SocketActor::connect(
        fast(&url)
            .connect_timeout(std::time::Duration::from_secs(1))
            .backoff(giving_up_after(1))
            .credentials(|| {
                Box::pin(async {
                    actix_rt::time::sleep(std::time::Duration::from_millis(700)).await;
                    Ok(Credentials::new())
                })
            })
            .build()
            .unwrap(),
    );
    let watch = Watch::attach(&socket);
    watch.wait_state("gave up", SocketState::is_closed).await;
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_millis(1500),
        "the attempt took {took:?}: the provider's 700 ms did not count in the 1 s timeout"
    );
    assert!(
        watch
            .errors()
            .iter()
            .any(|e| matches!(e, Error::ConnectTimeout(_))),
        "{:?}",
        watch.errors()
    );
    drop(listener);
}
