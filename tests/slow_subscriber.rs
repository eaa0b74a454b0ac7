//! A slow subscriber cannot grow memory without bound: by policy the socket waits (pausing its
//! reads, losing nothing) or drops for that subscriber and says so.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use resocket::server::Command;
use resocket::{Error, GetStatus, InboundText, SlowSubscriber, SocketActor, Subscribe};

/// A subscriber on its own thread that takes 1 ms per message, with a mailbox of 4.
struct Slow {
    seen: Arc<Mutex<Vec<String>>>,
}

impl Actor for Slow {
    type Context = Context<Self>;
}

impl Handler<InboundText> for Slow {
    type Result = ();
    fn handle(&mut self, msg: InboundText, _: &mut Context<Self>) {
        std::thread::sleep(Duration::from_millis(1));
        self.seen.lock().unwrap().push(msg.0.to_string());
    }
}

fn slow_subscriber(arbiter: &Arbiter) -> (Addr<Slow>, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let addr = Slow::start_in_arbiter(&arbiter.handle(), move |ctx| {
        ctx.set_mailbox_capacity(4);
        Slow { seen: s }
    });
    (addr, seen)
}

const N: usize = 1000;

async fn flood(server: &TestServer) {
    for i in 0..N {
        server.command_all(Command::Text(format!("{i}").into()));
    }
}

#[actix_rt::test]
async fn wait_policy_pauses_reading_and_loses_nothing() {
    let server = TestServer::start().await;
    let socket = SocketActor::connect(fast(&server.url()).build().unwrap());
    let watch = Watch::attach(&socket);
    let arbiter = Arbiter::new();
    let (slow, seen) = slow_subscriber(&arbiter);
    socket.do_send(Subscribe::text(slow.recipient()));
    watch.wait_opens(1).await;
    wait_for("session", DEADLINE, || server.live() == 1).await;
    flood(&server).await;
    wait_for(
        "all messages at the slow subscriber",
        Duration::from_secs(30),
        || seen.lock().unwrap().len() == N,
    )
    .await;
    let expected: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(*seen.lock().unwrap(), expected);
    let status = socket.send(GetStatus).await.unwrap();
    assert!(
        status.counters.waited > 0,
        "reading never paused: the test did not test"
    );
    assert_eq!(status.counters.lagged, 0);
    // The pauses were not mistaken for a dead peer.
    assert_eq!(watch.opens(), 1);
    arbiter.stop();
}

#[actix_rt::test]
async fn drop_policy_drops_for_the_slow_one_only_and_reports_it() {
    let server = TestServer::start().await;
    let config = fast(&server.url())
        .slow_subscriber(SlowSubscriber::Drop)
        .build()
        .unwrap();
    let socket = SocketActor::connect(config);
    let watch = Watch::attach(&socket);
    let arbiter = Arbiter::new();
    let (slow, seen) = slow_subscriber(&arbiter);
    socket.do_send(Subscribe::text(slow.recipient()));
    watch.wait_opens(1).await;
    wait_for("session", DEADLINE, || server.live() == 1).await;
    flood(&server).await;
    // The watch's probe (a quick subscriber) gets everything…
    wait_for("all messages at the quick subscriber", DEADLINE, || {
        watch.texts().len() == N
    })
    .await;
    watch
        .wait_error("lagging", |e| matches!(e, Error::SubscriberLagging { .. }))
        .await;
    // …the slow one gets what it could take, and the rest is counted, not lost silently.
    let status = socket.send(GetStatus).await.unwrap();
    wait_for("the slow subscriber drained", DEADLINE, || {
        seen.lock().unwrap().len() as u64 + status.counters.lagged == N as u64
    })
    .await;
    assert!(status.counters.lagged > 0);
    let got: Vec<usize> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "order kept for what arrived"
    );
    arbiter.stop();
}
