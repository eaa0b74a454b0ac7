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
    let socket = SocketActor::start(
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
    let socket = SocketActor::start(
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

    let fatal = SocketActor::start(
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
    let socket = SocketActor::start(
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
