//! The hub's handover to the application under attack: restarts, rollbacks, evictions, floods
//! and two devices sharing a client id, over real sockets on 127.0.0.1. These began as a
//! hostile review's reproductions (each failed before its fix, as its comment says).
//!
//! Most attacks need an application that takes messages exactly when the test says so: the
//! `Gate` below holds each handover's reply until it is released (the handler "returned") or
//! dropped (the handler never answered: what the hub sees when the application actor stops or
//! an `actix::Supervisor` restarts it with a response future pending, which drops the future).

mod common;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::dev::{MessageResponse, OneshotSender};
use actix::prelude::*;
use common::raw::RawClient;
use common::{fast, wait_for, TestServer, Watch, DEADLINE};
use futures_util::SinkExt;
use resocket::server::{
    ClientEvent, FromClient, GetHubStats, Hub, HubConfig, HubStats, ServerConfig, SubscribeHub,
    ToClient,
};
use resocket::{Close, Error, GetStatus, SendMessage, SocketActor};

// ---- a controllable application ----

#[derive(Default)]
struct Gate {
    /// Handovers whose reply the test has not given yet, oldest first.
    pending: Mutex<VecDeque<(String, OneshotSender<()>)>>,
    /// Every message handed to the application, in order (taken or not).
    seen: Mutex<Vec<FromClient>>,
    events: Mutex<Vec<ClientEvent>>,
    /// Reply at once from now on.
    auto: AtomicBool,
}

impl Gate {
    fn pending(&self) -> usize {
        self.pending.lock().unwrap().len()
    }
    fn seen(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.text.clone())
            .collect()
    }
    fn count(&self, text: &str) -> usize {
        self.seen().iter().filter(|t| *t == text).count()
    }
    /// From now on every handover is taken at once (those held are left held).
    fn auto(&self) {
        self.auto.store(true, Ordering::SeqCst);
    }
    /// Takes every held handover, and every later one at once.
    fn release_all(&self) {
        let mut pending = self.pending.lock().unwrap();
        self.auto.store(true, Ordering::SeqCst);
        for (_, tx) in pending.drain(..) {
            let _ = tx.send(());
        }
    }
    /// The oldest held handover is never answered (its reply sender is dropped).
    fn fail_first(&self) -> String {
        let (text, tx) = self
            .pending
            .lock()
            .unwrap()
            .pop_front()
            .expect("a held handover");
        drop(tx);
        text
    }
    fn evicted(&self, client: &str) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, ClientEvent::Evicted { client: c, .. } if c == client))
    }
}

struct GateApp(Arc<Gate>);

impl Actor for GateApp {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1_000_000);
    }
}

/// The reply to one handover, held by the gate.
struct Hold(Arc<Gate>, String);

impl MessageResponse<GateApp, FromClient> for Hold {
    fn handle(self, _: &mut Context<GateApp>, tx: Option<OneshotSender<()>>) {
        let Some(tx) = tx else { return };
        let mut pending = self.0.pending.lock().unwrap();
        if self.0.auto.load(Ordering::SeqCst) {
            let _ = tx.send(());
        } else {
            pending.push_back((self.1, tx));
        }
    }
}

impl Handler<FromClient> for GateApp {
    type Result = Hold;
    fn handle(&mut self, msg: FromClient, _: &mut Context<Self>) -> Hold {
        self.0.seen.lock().unwrap().push(msg.clone());
        Hold(self.0.clone(), msg.text)
    }
}

impl Handler<ClientEvent> for GateApp {
    type Result = ();
    fn handle(&mut self, e: ClientEvent, _: &mut Context<Self>) {
        self.0.events.lock().unwrap().push(e);
    }
}

/// Subscribes a gated application (messages and events) to `hub`.
async fn gate(hub: &Addr<Hub>) -> Arc<Gate> {
    let gate = Arc::new(Gate::default());
    let app = GateApp(gate.clone()).start();
    hub.send(SubscribeHub {
        messages: app.clone().recipient(),
        events: Some(app.recipient()),
    })
    .await
    .unwrap();
    gate
}

async fn stats(hub: &Addr<Hub>) -> HubStats {
    hub.send(GetHubStats).await.unwrap()
}

async fn wait_stats(hub: &Addr<Hub>, what: &str, pred: impl Fn(&HubStats) -> bool) -> HubStats {
    let start = Instant::now();
    loop {
        let s = stats(hub).await;
        if pred(&s) {
            return s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {s:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_all_acked(socket: &Addr<SocketActor>, what: &str) {
    let start = Instant::now();
    loop {
        let s = socket.send(GetStatus).await.unwrap();
        if s.unacked == 0 && s.outbox_len == 0 {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}: {s:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
}

fn protocol_errors(watch: &Watch) -> usize {
    watch
        .errors()
        .iter()
        .filter(|e| matches!(e, Error::Protocol(_)))
        .count()
}

fn msg(seq: u64, text: &str) -> String {
    format!(r#"{{"type":"msg","seq":{seq},"text":"{text}"}}"#)
}

/// The old process of client `id` (a raw client) sends `texts` as 1..; the application holds
/// the first (the others queue behind it in the hub); then the process dies.
async fn old_process_dies_mid_handover(server: &TestServer, gate: &Gate, id: &str, texts: &[&str]) {
    let mut old = RawClient::connect(&server.acked_url()).await;
    old.hello(id, 0).await;
    for (seq, text) in (1..).zip(texts) {
        old.send(&msg(seq, text)).await;
    }
    wait_for("the first held by the app", DEADLINE, || {
        gate.pending() == 1
    })
    .await;
    let n = texts.len() as u64;
    wait_stats(&server.hub, "all accepted", |s| s.delivered == n).await;
    drop(old);
    wait_stats(&server.hub, "the old session gone", |s| s.connected == 0).await;
}

// ---- 1. a restarted client process and messages still being handed over ----

// Failed before its fix (LOSS). A client process restarts (a fresh link) while the application is still
// working through messages its previous process sent. The welcome says `acked` = what the
// application has *taken* (0), not what the hub has *received* (2); the fresh client numbers
// its new messages from 1, the hub drops them as duplicates of the old process's 1 and 2, and
// once the old ones are taken the ack 2 tells the client its new ones arrived. They never do.
#[actix_rt::test]
async fn a_restarted_client_loses_nothing_while_the_app_is_busy_with_its_old_messages() {
    let server = TestServer::start().await;
    let gate = gate(&server.hub).await;
    old_process_dies_mid_handover(&server, &gate, "r", &["old1", "old2"]).await;
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("r").build().unwrap());
    let _watch = Watch::attach(&socket);
    for text in ["new1", "new2"] {
        socket.send(SendMessage::text(text)).await.unwrap().unwrap();
    }
    // The new process's hello waits for the old messages; release them.
    gate.release_all();
    // The client is told everything was taken...
    wait_all_acked(&socket, "the client's messages acknowledged").await;
    // ...so the application must have had them.
    let seen = gate.seen();
    assert!(
        seen.iter().any(|t| t == "new1") && seen.iter().any(|t| t == "new2"),
        "acknowledged to the client but never handed to the application: {seen:?} (stats {:?})",
        stats(&server.hub).await
    );
    assert_eq!(seen, ["old1", "old2", "new1", "new2"]);
}

// Failed before its fix (WEDGE). Same start, but the restarted process sends nothing before the old
// messages are taken: the hub acks 2 on its session, more than it ever sent (Error::Protocol);
// every later welcome says acked 2 to a link that has sent nothing, which the client refuses
// (`ever_welcomed && acked > last_sent`), forever: the client can never send again.
#[actix_rt::test]
async fn a_restarted_client_is_not_wedged_by_acks_of_its_previous_process() {
    let server = TestServer::start().await;
    let gate = gate(&server.hub).await;
    old_process_dies_mid_handover(&server, &gate, "w", &["old1", "old2"]).await;
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("w").build().unwrap());
    let watch = Watch::attach(&socket);
    gate.release_all();
    wait_stats(&server.hub, "the old messages taken", |s| s.taken == 2).await;
    wait_stats(&server.hub, "the new process welcomed", |s| {
        s.connected == 1
    })
    .await;
    socket
        .send(SendMessage::text("after"))
        .await
        .unwrap()
        .unwrap();
    wait_for("'after' delivered, or the client looping", DEADLINE, || {
        gate.count("after") > 0 || protocol_errors(&watch) >= 3
    })
    .await;
    assert!(
        protocol_errors(&watch) < 3,
        "every welcome refused, the client is wedged: {:?}",
        watch.errors()
    );
    assert_eq!(gate.count("after"), 1);
}

// ---- 2. the epoch rollback ----

// Failed before its fix (DUPLICATES + REORDER). The application does not take "a" (it stopped, or an
// actix Supervisor restarted it: same address, the pending reply dropped). The hub rolls
// `received` back and closes the session (1013), but "b" and "c", queued behind "a" with the
// old epoch, are still handed to the (restarted) application; their acks are suppressed by the
// epoch, so the client sends a, b, c again and the application sees b, c, a, b, c.
#[actix_rt::test]
async fn after_a_rollback_the_messages_queued_behind_it_are_not_handed_over_as_well() {
    let server = TestServer::start().await;
    let gate = gate(&server.hub).await;
    let mut raw = RawClient::connect(&server.acked_url()).await;
    raw.hello("q", 0).await;
    for (seq, text) in [(1, "a"), (2, "b"), (3, "c")] {
        raw.send(&msg(seq, text)).await;
    }
    wait_for("a held", DEADLINE, || gate.pending() == 1).await;
    wait_stats(&server.hub, "b and c queued", |s| s.delivered == 3).await;
    gate.auto(); // the application is back and takes everything from now on
    assert_eq!(gate.fail_first(), "a");
    let (code, _) = raw.closed().await;
    assert_eq!(code, Some(1013));
    // The client comes back and sends again from the welcome's acked + 1, as the rules say.
    let mut raw = RawClient::connect(&server.acked_url()).await;
    let welcome: serde_json::Value = serde_json::from_str(&raw.hello("q", 0).await).unwrap();
    let acked = welcome["acked"].as_u64().unwrap();
    let texts = ["a", "b", "c"];
    for seq in acked + 1..=3 {
        raw.send(&msg(seq, texts[seq as usize - 1])).await;
    }
    loop {
        if raw.text().await == r#"{"type":"ack","seq":3}"# {
            break;
        }
    }
    // "a" once not taken, then a, b, c once each, in order.
    assert_eq!(gate.seen(), ["a", "a", "b", "c"]);
}

// Failed before its fix (WEDGE). The handover that is not taken came from a session that a newer one has
// replaced, so the hub does not close anything (`is_current(session)` is false). But the newer
// session had already resent "one", dropped as a duplicate before the rollback: the client
// holds it unacknowledged and will not send it again on this connection; the hub waits for it
// (`received` rolled back to 0). "one" never reaches the application while the client stays
// connected, and the client's next message is a "sequence gap" (1002) the client did not make.
#[actix_rt::test]
async fn a_rollback_for_a_replaced_session_makes_the_live_one_send_again() {
    let server = TestServer::start().await;
    let gate = gate(&server.hub).await;
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("p").build().unwrap());
    let watch = Watch::attach(&socket);
    wait_stats(&server.hub, "the socket's hello", |s| s.connected == 1).await;
    socket
        .send(SendMessage::text("one"))
        .await
        .unwrap()
        .unwrap();
    wait_for("one held", DEADLINE, || gate.pending() == 1).await;
    // Another connection for "p" replaces the socket's session; the socket comes back and
    // replaces it in turn, and sends "one" again (a duplicate for the hub).
    // (Both hellos wait for "one" to be handed over before they are welcomed.)
    let mut intruder = RawClient::connect(&server.acked_url()).await;
    intruder
        .send(r#"{"type":"hello","client":"p","last_seq":0}"#)
        .await;
    let (code, _) = intruder.closed().await;
    assert_eq!(code, Some(4001));
    watch.wait_opens(2).await;
    gate.auto();
    assert_eq!(gate.fail_first(), "one");
    wait_for("'one' handed over again", DEADLINE, || {
        gate.count("one") >= 2
    })
    .await;
    assert_eq!(stats(&server.hub).await.violations, 0);
}

// ---- 3. eviction of a client whose messages are still being handed over ----

// Failed before its fix (WEDGE). A client is evicted (idle TTL) while its messages still wait for a slow
// application; the application then queues a notice for it (a new, fresh state). The old
// handovers complete: `handed` finds the *new* state by id, its epoch (0) matches, and
// `took` sets taken = 3 on a state that has received nothing. The client's welcome says
// acked 3, it numbers on from 4, and the hub (expecting 1) closes it with 1002 "sequence gap"
// on every reconnect, forever.
#[actix_rt::test]
async fn an_evicted_client_starts_afresh_without_sequence_gaps() {
    let hub = Hub::new(HubConfig {
        // Long enough that the client's own reconnects (about 0.5 s apart: it waits the
        // close timeout for a FIN actix-web never sends) never look idle.
        idle_client_ttl: Duration::from_millis(1500),
        ..HubConfig::default()
    })
    .start();
    let gate = gate(&hub).await;
    let server = TestServer::start_full(ServerConfig::default(), hub.clone()).await;
    old_process_dies_mid_handover(&server, &gate, "e", &["a", "b", "c"]).await;
    // A client whose messages are still being handed over is not evicted; once they are
    // taken, it is (after the TTL), and a fresh state starts for the id.
    gate.release_all();
    wait_stats(&hub, "a, b, c taken", |s| s.taken == 3).await;
    wait_for("e evicted", DEADLINE, || gate.evicted("e")).await;
    hub.send(ToClient {
        client: "e".into(),
        text: "notice".into(),
    })
    .await
    .unwrap();
    let socket = SocketActor::connect(fast(&server.acked_url()).acked("e").build().unwrap());
    let watch = Watch::attach(&socket);
    socket
        .send(SendMessage::text("after"))
        .await
        .unwrap()
        .unwrap();
    let start = Instant::now();
    loop {
        let s = stats(&hub).await;
        if gate.count("after") > 0 || s.violations >= 3 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "neither: {s:?}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        stats(&hub).await.violations,
        0,
        "an honest client closed for sequence gaps: {:?} seen {:?} events {:?}",
        watch.errors(),
        gate.seen(),
        gate.events.lock().unwrap()
    );
    assert_eq!(gate.count("after"), 1);
}

// ---- 4. a client that ignores its window ----

// Failed before its fix (UNBOUNDED MEMORY). The hub bounds nothing per client on the way in: the README
// says "a slow application slows its clients through their ack windows instead of growing a
// mailbox", but the window is the client's own promise. A raw client that never waits for
// acks makes the hub queue every message (in `handovers`) while the application is slow.
#[actix_rt::test]
async fn a_client_that_ignores_its_window_cannot_make_the_hub_queue_without_bound() {
    const N: u64 = 5_000;
    let server = TestServer::start().await;
    let gate = gate(&server.hub).await; // holds the first message for ever
    let (_response, mut framed) = awc::Client::new()
        .ws(server.acked_url())
        .connect()
        .await
        .unwrap();
    use awc::ws::Message;
    framed
        .send(Message::Text(
            r#"{"type":"hello","client":"flood","last_seq":0}"#.into(),
        ))
        .await
        .unwrap();
    for seq in 1..=N {
        let frame = format!(
            r#"{{"type":"msg","seq":{seq},"text":"{}"}}"#,
            "x".repeat(100)
        );
        if framed.send(Message::Text(frame.into())).await.is_err() {
            break; // closed by the hub: what a bound would do
        }
    }
    let s = wait_stats(&server.hub, "all accepted, or the session closed", |s| {
        s.delivered == N || s.connected == 0 || s.violations > 0
    })
    .await;
    assert_eq!(gate.pending(), 1);
    let queued = s.delivered - s.taken;
    assert!(
        queued <= resocket::SocketConfig::DEFAULT_ACK_WINDOW as u64,
        "the hub queued {queued} messages of one client for a slow application: {s:?}"
    );
}

// ---- 5. two devices with one client id ----

// Failed before its fix (LOSS or WEDGE). One client id on two devices (examples/chat.rs uses the user
// name as the id, and "a newer hello replaces the older session" is documented). Both number
// their messages in the one sequence space the hub keeps per id, so they collide. What
// happens to A's next message after B (its b1 = seq 2 taken) has left:
// - usually: A has not read its 4001 yet and writes a2 as seq 2 on the replaced connection
//   (the hub silently ignores frames of a replaced session); A's next welcome says acked 2
//   (B's b1), which prunes a2: acknowledged, never delivered (LOSS);
// - otherwise: the welcome's acked 2 exceeds A's last sent (1), which A refuses with
//   Error::Protocol on every reconnect, for good (WEDGE).
#[actix_rt::test]
async fn a_second_device_with_the_same_id_loses_nothing_of_the_first() {
    let server = TestServer::start().await;
    let gate = gate(&server.hub).await;
    gate.auto();
    let url = server.acked_url_as("alice");
    let a = SocketActor::connect(fast(&url).acked("alice").build().unwrap());
    let watch_a = Watch::attach(&a);
    a.send(SendMessage::text("a1")).await.unwrap().unwrap();
    wait_all_acked(&a, "a1").await;
    let b = SocketActor::connect(fast(&url).acked("alice").build().unwrap());
    b.send(SendMessage::text("b1")).await.unwrap().unwrap();
    wait_all_acked(&b, "b1").await;
    let _ = b.send(Close::now()).await;
    a.send(SendMessage::text("a2")).await.unwrap().unwrap();
    let has = |t: &str| gate.count(t) > 0;
    let errors_before = protocol_errors(&watch_a);
    let start = Instant::now();
    loop {
        let status = a.send(GetStatus).await.unwrap();
        let all_acked = status.state.is_open() && status.unacked == 0 && status.outbox_len == 0;
        if has("a2") || all_acked || protocol_errors(&watch_a) >= errors_before + 3 {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "neither: {status:?}");
        actix_rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        protocol_errors(&watch_a) < errors_before + 3,
        "A is locked out, every welcome refused: {:?}",
        watch_a.errors()
    );
    assert!(
        has("a2"),
        "A was told a2 arrived, but the application never had it: {:?}",
        gate.seen()
    );
}

// ---- properties that hold (PASS) ----

// Guards a property. The welcome renumbering when the hub did NOT restart: a socket
// restarted by its supervisor after a panic, with messages in flight that the hub received
// but the application had not yet taken, resends them under the same numbers; the hub drops
// them as duplicates and the application sees each once, in order.
#[actix_rt::test]
async fn a_supervised_restart_mid_handover_delivers_each_message_once() {
    use resocket::testing::Panic;
    use resocket::{GetSocket, SendTo, StartSocket, SupervisorActor, SupervisorConfig};
    let server = TestServer::start().await;
    let gate = gate(&server.hub).await;
    let supervisor = SupervisorActor::new(SupervisorConfig {
        arbiters: 1,
        ..Default::default()
    })
    .start();
    let config = fast(&server.acked_url()).acked("sup").build().unwrap();
    supervisor
        .send(StartSocket::new("s", config))
        .await
        .unwrap()
        .unwrap();
    for n in 0..5 {
        supervisor
            .send(SendTo {
                key: "s".into(),
                message: format!("{n}").into(),
            })
            .await
            .unwrap()
            .unwrap();
    }
    wait_for("0 held", DEADLINE, || gate.pending() == 1).await;
    wait_stats(&server.hub, "all five at the hub", |s| s.delivered == 5).await;
    let socket = supervisor
        .send(GetSocket("s".into()))
        .await
        .unwrap()
        .unwrap();
    socket.do_send(Panic);
    // The restarted socket's hello waits for the five to be handed over.
    gate.release_all();
    wait_stats(&server.hub, "all taken", |s| s.taken == 5).await;
    supervisor
        .send(SendTo {
            key: "s".into(),
            message: "5".into(),
        })
        .await
        .unwrap()
        .unwrap();
    wait_for("5", DEADLINE, || gate.count("5") == 1).await;
    assert_eq!(gate.seen(), ["0", "1", "2", "3", "4", "5"]);
}

// Guards a property. A replaced session's frames still in flight are ignored, even a
// sequence gap or an impossible ack: they must not close the live session.
#[actix_rt::test]
async fn frames_of_a_replaced_session_cannot_hurt_the_live_one() {
    let server = TestServer::start().await;
    let gate = gate(&server.hub).await;
    gate.auto();
    let mut old = RawClient::connect(&server.acked_url()).await;
    old.hello("z", 0).await;
    let mut new = RawClient::connect(&server.acked_url()).await;
    new.hello("z", 0).await;
    // The old session's frames, sent before it learns it was replaced.
    old.send(&msg(7, "gap")).await;
    old.send(r#"{"type":"ack","seq":99}"#).await;
    let (code, _) = old.closed().await;
    assert_eq!(code, Some(4001));
    new.send(&msg(1, "ok")).await;
    assert_eq!(new.text().await, r#"{"type":"ack","seq":1}"#);
    assert_eq!(gate.seen(), ["ok"]);
    assert_eq!(stats(&server.hub).await.violations, 0);
}
