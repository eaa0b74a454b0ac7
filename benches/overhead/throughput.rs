//! One connection, many messages: pipelined send, typed receive, ping-pong round trips. Each
//! benchmark has a resocket client and a bare awc client doing the same work: the same
//! messages, encoded and decoded with the same serde_json calls.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message as WsMessage};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use resocket::{
    Inbound, InboundText, Outbox, Outgoing, SendBatch, SendMessage, SocketActor, SocketConfig,
    SocketState, StateChanged, Subscribe,
};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::common::{cpu_ns, quantile, BoxError, Tick, TickOut};

/// How long any single wait may take before the run is abandoned.
const WAIT: Duration = Duration::from_secs(60);
/// Messages handed to a resocket socket before the producer yields to the actors.
const CHUNK: u64 = 1024;

type WsFramed = Framed<BoxedSocket, Codec>;

// ---- bare awc ----

/// One client per thread with no pool limit, as awc wants for WebSockets.
fn bare_client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(10))
        .finish()
}

async fn bare_connect(url: &str) -> Result<WsFramed, BoxError> {
    let (_, framed) = bare_client()
        .ws(url)
        .connect()
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    Ok(framed)
}

/// The next text frame (pings answered, other frames skipped).
async fn next_text(framed: &mut WsFramed) -> Result<bytes::Bytes, BoxError> {
    for _ in 0..1_000_000 {
        match framed.next().await {
            Some(Ok(Frame::Text(b))) => return Ok(b),
            Some(Ok(Frame::Ping(p))) => framed.send(WsMessage::Pong(p)).await?,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the server closed the connection".into()),
        }
    }
    Err("no text frame".into())
}

pub fn parse_count(text: &[u8]) -> Result<u64, BoxError> {
    let v: Value = serde_json::from_slice(text)?;
    v["count"]
        .as_u64()
        .ok_or_else(|| format!("bad reply {v}").into())
}

/// Sends `n` messages then `END` without waiting; returns the count the server received.
async fn bare_send_batch(framed: &mut WsFramed, n: u64) -> Result<u64, BoxError> {
    for seq in 0..n {
        let text = serde_json::to_string(&TickOut::new(seq))?;
        framed.feed(WsMessage::Text(text.into())).await?;
    }
    framed.feed(WsMessage::Text("END".into())).await?;
    framed.flush().await?;
    let reply = actix_rt::time::timeout(WAIT, next_text(framed)).await??;
    parse_count(&reply)
}

// ---- resocket ----

/// Forwards raw text (the server's replies) to the benchmark.
pub struct Forward(pub mpsc::UnboundedSender<String>);

impl Actor for Forward {
    type Context = Context<Self>;
}

impl Handler<InboundText> for Forward {
    type Result = ();
    fn handle(&mut self, InboundText(text, _): InboundText, _: &mut Context<Self>) {
        let _ = self.0.send(text.to_string());
    }
}

fn socket_config(url: &str, outbox: u64) -> Result<SocketConfig, BoxError> {
    Ok(SocketConfig::builder(url)
        .heartbeat(Duration::from_secs(60), Duration::from_secs(120))
        .outbox(Outbox::bounded(outbox as usize + 16).max_bytes(1 << 30))
        .build()?)
}

/// Tells the benchmark when its socket is Open.
struct OpenSignal(Option<oneshot::Sender<()>>);

impl Actor for OpenSignal {
    type Context = Context<Self>;
}

impl Handler<StateChanged> for OpenSignal {
    type Result = ();
    fn handle(&mut self, change: StateChanged, ctx: &mut Context<Self>) {
        if let SocketState::Open { .. } = change.state {
            if let Some(open) = self.0.take() {
                let _ = open.send(());
            }
            ctx.stop();
        }
    }
}

/// Waits (at most 10 s) until the socket is Open.
pub async fn wait_open(socket: &Addr<SocketActor>) -> Result<(), BoxError> {
    let (tx, rx) = oneshot::channel();
    socket.do_send(Subscribe::states(OpenSignal(Some(tx)).start().recipient()));
    actix_rt::time::timeout(Duration::from_secs(10), rx)
        .await
        .map_err(|_| "the socket did not open within 10 s")??;
    Ok(())
}

/// How the resocket client hands messages to the socket.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Sender::json`: straight into the outbox.
    Sender,
    /// `socket.do_send(SendMessage::json(..))`: one actor message each.
    Messages,
    /// `Sender::json_wait`, with the default outbox (10,000 messages): backpressure, as bare
    /// awc's `feed().await` has, so the queue stays short and in cache.
    SenderWait,
    /// `socket.do_send(SendBatch(..))` of [`BATCH`] messages: one actor message per batch.
    Batch,
}

/// Messages per `SendBatch` in [`Via::Batch`].
pub const BATCH: u64 = 64;

async fn resocket_send_batch(
    socket: &Addr<SocketActor>,
    sender: &resocket::Sender,
    via: Via,
    replies: &mut mpsc::UnboundedReceiver<String>,
    n: u64,
) -> Result<u64, BoxError> {
    let mut seq = 0;
    while seq < n {
        let end = (seq + CHUNK).min(n);
        match via {
            Via::Batch => {
                for from in (seq..end).step_by(BATCH as usize) {
                    let batch = (from..(from + BATCH).min(end))
                        .map(|s| Outgoing::json(&TickOut::new(s)))
                        .collect::<Result<Vec<_>, _>>()?;
                    socket.do_send(SendBatch(batch));
                }
            }
            Via::Sender => {
                for s in seq..end {
                    let tick = TickOut::new(s);
                    match sender.json(&tick) {
                        // A bounded outbox (acked mode's bench): wait for room, as a
                        // producer that cannot drop would.
                        Err(resocket::Error::OutboxFull { .. }) => sender.json_wait(&tick).await?,
                        sent => sent?,
                    }
                }
            }
            Via::SenderWait => {
                for s in seq..end {
                    sender.json_wait(&TickOut::new(s)).await?;
                }
            }
            Via::Messages => {
                for s in seq..end {
                    socket.do_send(SendMessage::json(&TickOut::new(s))?);
                }
            }
        }
        seq = end;
        actix_rt::task::yield_now().await;
    }
    socket.do_send(SendMessage::text("END"));
    let reply = actix_rt::time::timeout(WAIT, replies.recv())
        .await?
        .ok_or("no reply")?;
    parse_count(reply.as_bytes())
}

// ---- send ----

fn rate(n: u64, elapsed: Duration, cpu: u64) -> Value {
    json!({
        "msgs_per_s": n as f64 / elapsed.as_secs_f64(),
        "cpu_ns_per_msg": cpu as f64 / n as f64,
    })
}

fn check(what: &str, got: u64, n: u64) -> Result<(), BoxError> {
    if got == n {
        Ok(())
    } else {
        Err(format!("{what}: the server counted {got} of {n} messages").into())
    }
}

/// Typed 64-byte JSON messages pipelined through one connection to a server that counts them;
/// the time runs until the server's count comes back.
pub async fn send(
    resocket: bool,
    via: Via,
    url: &str,
    n: u64,
    warm: u64,
) -> Result<Value, BoxError> {
    if resocket {
        let config = match via {
            Via::SenderWait => SocketConfig::builder(url)
                .heartbeat(Duration::from_secs(60), Duration::from_secs(120))
                .build()?,
            _ => socket_config(url, n.max(warm))?,
        };
        resocket_send(config, via, n, warm).await
    } else {
        let mut framed = bare_connect(url).await?;
        check("warm-up", bare_send_batch(&mut framed, warm).await?, warm)?;
        let (cpu0, t0) = (cpu_ns(), Instant::now());
        let got = bare_send_batch(&mut framed, n).await?;
        let (elapsed, cpu) = (t0.elapsed(), cpu_ns() - cpu0);
        check("send", got, n)?;
        Ok(rate(n, elapsed, cpu))
    }
}

/// Sends `warm` then `n` messages through a resocket socket of `config` (to a sink that
/// answers its count on "END") and measures the `n`.
async fn resocket_send(
    config: SocketConfig,
    via: Via,
    n: u64,
    warm: u64,
) -> Result<Value, BoxError> {
    let socket = SocketActor::connect(config);
    let (tx, mut rx) = mpsc::unbounded_channel();
    socket.do_send(Subscribe::text(Forward(tx).start().recipient()));
    wait_open(&socket).await?;
    let sender = socket.send(resocket::GetSender).await?;
    check(
        "warm-up",
        resocket_send_batch(&socket, &sender, via, &mut rx, warm).await?,
        warm,
    )?;
    let (cpu0, t0) = (cpu_ns(), Instant::now());
    let got = resocket_send_batch(&socket, &sender, via, &mut rx, n).await?;
    let (elapsed, cpu) = (t0.elapsed(), cpu_ns() - cpu0);
    check("send", got, n)?;
    Ok(rate(n, elapsed, cpu))
}

/// Acked mode's cost: `acked` sends through a `Hub` (sequence numbers, a window of 1,000 in
/// flight, acks), the baseline is the default mode to the plain sink; both via a `Sender`,
/// both with the default outbox (10,000 messages), the producer waiting for room when it is
/// full. (With an outbox as large as the run, the slower acked pipeline would queue nearly
/// every message first, and the figure would be the cost of a 300,000-message backlog, page
/// faults most of it, not of acked mode.)
pub async fn send_acked(
    acked: bool,
    sink: &str,
    hub: &str,
    n: u64,
    warm: u64,
) -> Result<Value, BoxError> {
    let config = if acked {
        SocketConfig::builder(hub)
            .heartbeat(Duration::from_secs(60), Duration::from_secs(120))
            .acked("bench")
            .build()?
    } else {
        SocketConfig::builder(sink)
            .heartbeat(Duration::from_secs(60), Duration::from_secs(120))
            .build()?
    };
    resocket_send(config, Via::Sender, n, warm).await
}

// ---- receive ----

/// The subscriber: counts decoded messages and says when it has seen `target`.
struct Counter {
    seen: u64,
    target: u64,
    done: Option<oneshot::Sender<u64>>,
}

impl Actor for Counter {
    type Context = Context<Self>;
}

impl Handler<Inbound<Tick>> for Counter {
    type Result = ();
    fn handle(&mut self, Inbound(tick, _): Inbound<Tick>, _: &mut Context<Self>) {
        std::hint::black_box(&tick);
        self.seen += 1;
        if self.seen == self.target {
            if let Some(done) = self.done.take() {
                let _ = done.send(self.seen);
            }
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Expect(u64, oneshot::Sender<u64>);

impl Handler<Expect> for Counter {
    type Result = ();
    fn handle(&mut self, Expect(n, done): Expect, _: &mut Context<Self>) {
        self.seen = 0;
        self.target = n;
        self.done = Some(done);
    }
}

async fn expect(counter: &Addr<Counter>, n: u64) -> Result<oneshot::Receiver<u64>, BoxError> {
    let (tx, rx) = oneshot::channel();
    actix_rt::time::timeout(WAIT, counter.send(Expect(n, tx))).await??;
    Ok(rx)
}

/// Reads `n` frames, decodes each into a `Tick` and hands it to the subscriber actor.
async fn bare_receive_batch(
    framed: &mut WsFramed,
    counter: &Addr<Counter>,
    n: u64,
) -> Result<(), BoxError> {
    let done = expect(counter, n).await?;
    framed
        .send(WsMessage::Text(format!("push {n}").into()))
        .await?;
    // One timeout for the whole batch (a timer per message would cost the bare side).
    // The same per-message cost as resocket's: one id, cloned into each event.
    let id = resocket::SocketId::new("bare");
    let read = async {
        for _ in 0..n {
            let text = next_text(framed).await?;
            let tick: Tick = serde_json::from_slice(&text)?;
            counter.do_send(Inbound(tick, id.clone()));
        }
        Ok::<_, BoxError>(())
    };
    actix_rt::time::timeout(WAIT, read).await??;
    let seen = actix_rt::time::timeout(WAIT, done).await??;
    check("receive", seen, n)
}

async fn resocket_receive_batch(
    socket: &Addr<SocketActor>,
    counter: &Addr<Counter>,
    n: u64,
) -> Result<(), BoxError> {
    let done = expect(counter, n).await?;
    socket.do_send(SendMessage::text(format!("push {n}")));
    let seen = actix_rt::time::timeout(WAIT, done).await??;
    check("receive", seen, n)
}

/// The server pushes `n` 64-byte messages; the client decodes each into a `Tick` and delivers
/// it to a subscriber actor. The time runs until the subscriber has them all.
pub async fn receive(resocket: bool, url: &str, n: u64, warm: u64) -> Result<Value, BoxError> {
    let counter = Counter {
        seen: 0,
        target: 0,
        done: None,
    }
    .start();
    if resocket {
        let socket = SocketActor::connect(socket_config(url, 16)?);
        socket.do_send(Subscribe::to::<Tick>(counter.clone().recipient()));
        wait_open(&socket).await?;
        resocket_receive_batch(&socket, &counter, warm).await?;
        let (cpu0, t0) = (cpu_ns(), Instant::now());
        resocket_receive_batch(&socket, &counter, n).await?;
        Ok(rate(n, t0.elapsed(), cpu_ns() - cpu0))
    } else {
        let mut framed = bare_connect(url).await?;
        bare_receive_batch(&mut framed, &counter, warm).await?;
        let (cpu0, t0) = (cpu_ns(), Instant::now());
        bare_receive_batch(&mut framed, &counter, n).await?;
        Ok(rate(n, t0.elapsed(), cpu_ns() - cpu0))
    }
}

// ---- ping-pong ----

/// Sends one message, waits for its echo, decodes it, sends the next; records each round trip.
struct Pinger {
    socket: Addr<SocketActor>,
    /// The time from one send to the next (zero: at once on the echo).
    gap: Duration,
    sent_at: Instant,
    seq: u64,
    total: u64,
    samples: Vec<u64>,
    done: Option<oneshot::Sender<Vec<u64>>>,
}

impl Pinger {
    fn ping(&mut self) {
        self.sent_at = Instant::now();
        match SendMessage::json(&TickOut::new(self.seq)) {
            Ok(message) => self.socket.do_send(message),
            Err(_) => self.done = None,
        }
    }
}

impl Actor for Pinger {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "()")]
struct Start;

impl Handler<Start> for Pinger {
    type Result = ();
    fn handle(&mut self, _: Start, _: &mut Context<Self>) {
        self.ping();
    }
}

impl Handler<Inbound<Tick>> for Pinger {
    type Result = ();
    fn handle(&mut self, Inbound(tick, _): Inbound<Tick>, ctx: &mut Context<Self>) {
        let elapsed = self.sent_at.elapsed();
        std::hint::black_box(&tick);
        self.samples.push(elapsed.as_nanos() as u64);
        self.seq += 1;
        if self.seq < self.total {
            match self.gap.checked_sub(elapsed) {
                Some(wait) if !wait.is_zero() => {
                    ctx.run_later(wait, |act, _| act.ping());
                }
                _ => self.ping(),
            }
        } else if let Some(done) = self.done.take() {
            let _ = done.send(std::mem::take(&mut self.samples));
        }
    }
}

fn latency(mut samples: Vec<u64>, warm: u64) -> Result<Value, BoxError> {
    let mut measured = samples.split_off((warm as usize).min(samples.len()));
    if measured.is_empty() {
        return Err("no round trips measured".into());
    }
    measured.sort_unstable();
    // Shows whether the pinning took (the server inherits the client's affinity).
    let cpus = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|c| c.trim().to_string())
        })
        .unwrap_or_default();
    Ok(json!({
        "cpus": cpus,
        "p50_us": quantile(&measured, 0.50) as f64 / 1000.0,
        "p99_us": quantile(&measured, 0.99) as f64 / 1000.0,
        "round_trips": measured.len(),
    }))
}

/// `warm + n` round trips of one message through an echo server, one at a time.
pub async fn ping_pong(resocket: bool, url: &str, n: u64, warm: u64) -> Result<Value, BoxError> {
    paced(resocket, url, n, warm, Duration::ZERO).await
}

/// Ping-pong with the next message sent `gap` after the previous one was (at once when its
/// echo comes later): paced traffic, where Nagle's algorithm would hold a small write for
/// the peer's delayed ACK.
pub async fn paced(
    resocket: bool,
    url: &str,
    n: u64,
    warm: u64,
    gap: Duration,
) -> Result<Value, BoxError> {
    let total = warm + n;
    if resocket {
        let socket = SocketActor::connect(socket_config(url, 16)?);
        let (tx, rx) = oneshot::channel();
        let pinger = Pinger {
            socket: socket.clone(),
            gap,
            sent_at: Instant::now(),
            seq: 0,
            total,
            samples: Vec::with_capacity(total as usize),
            done: Some(tx),
        }
        .start();
        socket.do_send(Subscribe::to::<Tick>(pinger.clone().recipient()));
        wait_open(&socket).await?;
        pinger.do_send(Start);
        let samples = actix_rt::time::timeout(WAIT, rx).await??;
        latency(samples, warm)
    } else {
        let mut framed = bare_connect(url).await?;
        let mut samples = Vec::with_capacity(total as usize);
        let deadline = Instant::now() + WAIT;
        let mut next = Instant::now();
        for seq in 0..total {
            // No timer when there is nothing to wait for: even a zero sleep waits for the
            // timer's next 1 ms tick (ping-pong's 10,000 round trips took 12 s).
            let wait = next.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                actix_rt::time::sleep(wait).await;
            }
            let sent_at = Instant::now();
            next = sent_at + gap;
            let text = serde_json::to_string(&TickOut::new(seq))?;
            framed.send(WsMessage::Text(text.into())).await?;
            let echo = next_text(&mut framed).await?;
            let tick: Tick = serde_json::from_slice(&echo)?;
            samples.push(sent_at.elapsed().as_nanos() as u64);
            std::hint::black_box(&tick);
            if Instant::now() > deadline {
                return Err("ping-pong took too long".into());
            }
        }
        latency(samples, warm)
    }
}
