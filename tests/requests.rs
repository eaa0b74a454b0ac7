//! Request/response over real sockets: replies matched by the id field the user names, a
//! timeout, a lost connection, a closed socket and every bad request each answered with a
//! clear error and the request handed back. The test server answers `{"method":…}` requests
//! (see `common::rpc`).

mod common;

use std::time::Duration;

use common::proxy::{Cut, Proxy};
use common::{fast, rpc_app, wait_for, TestServer, Watch, DEADLINE};
use futures_util::future::join_all;
use resocket::{Close, Error, GetStatus, Outgoing, Request, SendMessage, SocketActor};
use serde_json::json;

const LONG: Duration = Duration::from_secs(10);

type Answer = Result<Result<serde_json::Value, resocket::SendError>, actix::MailboxError>;

fn refused(answer: Answer) -> resocket::SendError {
    answer.unwrap().unwrap_err()
}

/// The test server, answering requests without echoing them (an echo carries the same id).
async fn rpc_server() -> TestServer {
    let server = TestServer::start().await;
    server
        .shared
        .echo
        .store(false, std::sync::atomic::Ordering::SeqCst);
    server
}

fn call(id: impl serde::Serialize, method: &str, params: serde_json::Value) -> Request {
    Request::json(&json!({"id": id, "method": method, "params": params}), LONG).unwrap()
}

#[actix_rt::test]
async fn a_reply_answers_its_request_and_is_not_delivered_to_subscribers() {
    let server = rpc_server().await;
    let config = fast(&server.url()).requests("/id").build().unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let reply = socket
        .send(call(1, "echo", json!({"x": 1})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, json!({"id": 1, "result": {"x": 1}}));
    // The second reply to the same id finds no request: an ordinary inbound message.
    let reply = socket
        .send(call("t", "twice", json!(2)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply["result"], 2);
    wait_for("the second reply", DEADLINE, || !watch.texts().is_empty()).await;
    assert_eq!(watch.texts(), [r#"{"id":"t","result":2}"#]);
    let status = socket.send(GetStatus).await.unwrap();
    assert_eq!(status.pending_requests, 0);
    assert_eq!(status.counters.messages_in, 3);
}

#[actix_rt::test]
async fn many_concurrent_requests_each_get_their_own_reply() {
    let server = rpc_server().await;
    let socket = SocketActor::connect(fast(&server.url()).requests("/id").build().unwrap());
    let replies = join_all((0..200).map(|n| socket.send(call(n, "echo", json!(n * 10))))).await;
    for (n, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap().unwrap(), json!({"id": n, "result": n * 10}));
    }
}

#[actix_rt::test]
async fn no_reply_within_the_timeout_is_an_error_with_the_request_handed_back() {
    let server = rpc_server().await;
    let socket = SocketActor::connect(fast(&server.url()).requests("/id").build().unwrap());
    let request = Request::json(
        &json!({"id": 9, "method": "never"}),
        Duration::from_millis(200),
    )
    .unwrap();
    let sent = request.message.clone();
    let refused = socket.send(request).await.unwrap().unwrap_err();
    assert_eq!(
        refused.error,
        Error::RequestTimeout(Duration::from_millis(200))
    );
    assert_eq!(refused.message, sent);
    assert_eq!(socket.send(GetStatus).await.unwrap().pending_requests, 0);
    // Its id is free again.
    let reply = socket.send(call(9, "echo", json!(0))).await.unwrap();
    assert!(reply.is_ok(), "{reply:?}");
}

#[actix_rt::test]
async fn a_request_that_times_out_while_queued_is_never_written() {
    let (mut server, socket, _watch) = common::disconnected(|url| fast(url).requests("/id")).await;
    let request = Request::json(
        &json!({"id": 1, "method": "echo"}),
        Duration::from_millis(100),
    )
    .unwrap();
    let refused = socket.send(request).await.unwrap().unwrap_err();
    assert_eq!(
        refused.error,
        Error::RequestTimeout(Duration::from_millis(100))
    );
    assert_eq!(socket.send(GetStatus).await.unwrap().outbox_len, 0);
    socket
        .send(SendMessage::text("after"))
        .await
        .unwrap()
        .unwrap();
    server.restart().await;
    wait_for("the message behind it", DEADLINE, || {
        server.received().contains(&"after".to_string())
    })
    .await;
    assert_eq!(server.received(), ["after"]);
}

#[actix_rt::test]
async fn a_written_request_whose_connection_dies_is_lost_and_not_resent() {
    let server = rpc_server().await;
    let socket = SocketActor::connect(fast(&server.url()).requests("/id").build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    let refused = socket
        .send(call(5, "abort", json!(null)))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.error, Error::RequestLost);
    watch.wait_opens(2).await;
    socket
        .send(SendMessage::text("after"))
        .await
        .unwrap()
        .unwrap();
    wait_for("the next message", DEADLINE, || {
        server.received().contains(&"after".to_string())
    })
    .await;
    let abort = server
        .received()
        .iter()
        .filter(|t| t.contains("abort"))
        .count();
    assert_eq!(abort, 1, "{:?}", server.received());
}

#[actix_rt::test]
async fn in_acked_mode_a_written_request_is_resent_and_answered_after_the_reconnect() {
    let server = rpc_server().await;
    let app = rpc_app(&server.hub);
    let proxy = Proxy::start(server.addr).await;
    let config = fast(&format!("ws://{}/acked", proxy.addr))
        .acked("rpc")
        .requests("/id")
        .heartbeat(Duration::from_secs(10), Duration::from_secs(30))
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    common::welcomed(&socket).await;
    app.lock().unwrap().clear(); // (the probe)
    proxy.stall(true);
    let pending = socket.send(call(1, "echo", json!("hi")));
    let (reply, ()) = futures_util::future::join(pending, async {
        // Written and unacknowledged through the stalled path, then the cut.
        common::wait_status(&socket, "never written", |s| s.unacked == 1).await;
        proxy.cut(Cut::Rst);
        proxy.stall(false);
    })
    .await;
    assert_eq!(reply.unwrap().unwrap(), json!({"id": 1, "result": "hi"}));
    assert_eq!(app.lock().unwrap().len(), 1, "the hub took it once");
    assert!(watch.opens() >= 2);
}

#[actix_rt::test]
async fn closing_the_socket_answers_every_pending_request() {
    let server = rpc_server().await;
    let socket = SocketActor::connect(fast(&server.url()).requests("/id").build().unwrap());
    let watch = Watch::attach(&socket);
    watch.wait_opens(1).await;
    let pending = socket.send(call(1, "never", json!(null)));
    let (answer, _) = futures_util::future::join(pending, async {
        common::wait_status(&socket, "never pending", |s| s.pending_requests == 1).await;
        socket.send(Close::now()).await.unwrap()
    })
    .await;
    assert_eq!(answer.unwrap().unwrap_err().error, Error::Closed);
    let after = socket.send(call(2, "echo", json!(null))).await.unwrap();
    assert_eq!(after.unwrap_err().error, Error::Closed);
}

#[actix_rt::test]
async fn bad_requests_are_refused_at_once_with_the_reason() {
    let server = rpc_server().await;
    let config = fast(&server.url())
        .requests("/id")
        .max_pending_requests(2)
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let no_id = refused(
        socket
            .send(Request::new(r#"{"method":"echo"}"#, LONG))
            .await,
    );
    assert_eq!(
        no_id.error,
        Error::InvalidRequest("the request has no id at /id".into())
    );
    assert_eq!(no_id.message, Outgoing::from(r#"{"method":"echo"}"#));
    let binary = refused(
        socket
            .send(Request::new(Outgoing::Binary(vec![1].into()), LONG))
            .await,
    );
    assert!(matches!(binary.error, Error::InvalidRequest(_)));
    let zero = refused(
        socket
            .send(Request::new(r#"{"id":1}"#, Duration::ZERO))
            .await,
    );
    assert!(zero.error.to_string().contains("timeout"), "{}", zero.error);
    // Two pending (never answered), then a duplicate id and one too many. (`send` queues
    // at once, in order; the two futures are dropped unanswered at the end.)
    let _a = socket.send(call(1, "never", json!(null)));
    let _b = socket.send(call(2, "never", json!(null)));
    let dup = refused(socket.send(call(1, "echo", json!(null))).await);
    assert_eq!(
        dup.error,
        Error::InvalidRequest("a request with id 1 is already pending".into())
    );
    let third = refused(socket.send(call(3, "echo", json!(null))).await);
    assert_eq!(third.error, Error::TooManyRequests { max: 2 });
    // Not enabled at all.
    let plain = SocketActor::connect(fast(&server.url()).build().unwrap());
    let off = refused(plain.send(call(1, "echo", json!(null))).await);
    assert!(
        off.error.to_string().contains("not enabled"),
        "{}",
        off.error
    );
    // A pointer that is not one.
    let bad = fast(&server.url()).requests("id").build().unwrap_err();
    assert!(matches!(
        bad,
        Error::InvalidConfig {
            field: "requests",
            ..
        }
    ));
}
