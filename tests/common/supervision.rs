//! Test support for supervised sockets: a one-arbiter tree, waiting for a restart, a socket
//! whose server is down, a request answered in the background.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use resocket::{
    Error, GetSocket, Request, RestartIntensity, SendError, SocketActor, SocketConfigBuilder,
    StartSocket, SupervisorActor, SupervisorConfig,
};

use super::{TestServer, Watch, DEADLINE};

/// Where a background request's answer lands.
pub type Answer = Arc<Mutex<Option<Result<serde_json::Value, SendError>>>>;

/// A supervisor on one arbiter allowing `max_restarts` within 10 s.
pub fn tree(max_restarts: u32) -> Addr<SupervisorActor> {
    SupervisorActor::new(SupervisorConfig {
        arbiters: 1,
        intensity: RestartIntensity {
            max_restarts,
            within: Duration::from_secs(10),
        },
    })
    .start()
}

/// Waits until `tree`'s socket `key` is a new actor (replacing `before`) and returns it.
pub async fn restarted(
    tree: &Addr<SupervisorActor>,
    key: &str,
    before: &Addr<SocketActor>,
) -> Addr<SocketActor> {
    let start = Instant::now();
    loop {
        if let Some(after) = tree.send(GetSocket(key.into())).await.unwrap() {
            if after != *before {
                return after;
            }
        }
        assert!(start.elapsed() < DEADLINE, "never restarted");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A socket `key` under `tree` (configured by `config` from the server's URL) that has been
/// Open and now backs off: its server stopped.
pub async fn supervised_down(
    tree: &Addr<SupervisorActor>,
    key: &str,
    config: impl FnOnce(&str) -> SocketConfigBuilder,
) -> (TestServer, Watch, Addr<SocketActor>) {
    let mut server = TestServer::start().await;
    let watch = Watch::detached();
    let start = StartSocket::new(key, config(&server.url()).build().unwrap());
    tree.send(watch.subscribe_all(start))
        .await
        .unwrap()
        .unwrap();
    watch.wait_opens(1).await;
    server.stop().await;
    watch.wait_state("backoff", |s| s.name() == "backoff").await;
    let socket = tree.send(GetSocket(key.into())).await.unwrap().unwrap();
    (server, watch, socket)
}

/// Sends `request` to `socket` in the background; its answer lands in the returned slot.
pub fn request_in_background(socket: &Addr<SocketActor>, request: Request) -> Answer {
    let answer: Answer = Arc::default();
    let (socket, slot) = (socket.clone(), answer.clone());
    actix_rt::spawn(async move {
        let reply = socket.send(request).await.unwrap_or_else(|e| {
            Err(SendError {
                error: Error::Connection(format!("mailbox: {e}").into()),
                message: "".into(),
            })
        });
        *slot.lock().unwrap() = Some(reply);
    });
    answer
}
