//! The server side: many clients through one `Hub` (acked sessions: sequence numbers, acks,
//! a per-client replay state) against the same clients on plain sessions (`/sink`), both
//! measured in the server's process: memory per connected client, messages/s, and the
//! server's CPU per message.

use std::time::{Duration, Instant};

use actix::prelude::*;
use resocket::{GetSender, Outbox, SendMessage, SocketActor, SocketConfig, Subscribe};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::common::{cpu_ns_of, rss_bytes_of, BoxError, ServerProcess, TickOut};
use crate::throughput::{parse_count, wait_open, Forward};

/// What one run does.
pub struct Params {
    pub clients: usize,
    pub per_client: u64,
}

/// One round: every client sends `per_client` messages, then `END`; returns when every
/// client has its count back (each checked).
async fn round(
    sockets: &[(Addr<SocketActor>, resocket::Sender)],
    replies: &mut mpsc::UnboundedReceiver<String>,
    per_client: u64,
) -> Result<(), BoxError> {
    for seq in 0..per_client {
        for (_, sender) in sockets {
            sender.json(&TickOut::new(seq))?;
        }
        if seq % 16 == 15 {
            actix_rt::task::yield_now().await;
        }
    }
    for (socket, _) in sockets {
        socket.do_send(SendMessage::text("END"));
    }
    for _ in 0..sockets.len() {
        let reply = actix_rt::time::timeout(Duration::from_secs(60), replies.recv())
            .await?
            .ok_or("no reply")?;
        let count = parse_count(reply.as_bytes())?;
        if count != per_client {
            return Err(format!("a client's count came back {count}, not {per_client}").into());
        }
    }
    Ok(())
}

/// `hub`: acked clients to `/acked`; otherwise plain clients to `/sink`.
pub async fn run(hub: bool, p: Params, server_cpu: Option<u64>) -> Result<Value, BoxError> {
    let server = ServerProcess::spawn(0, server_cpu)?;
    let pid = server.pid();
    let (tx, mut replies) = mpsc::unbounded_channel();
    let forward = Forward(tx).start();
    // Let the server settle before its baseline.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let rss0 = rss_bytes_of(&pid);
    let mut sockets = Vec::with_capacity(p.clients);
    for i in 0..p.clients {
        let builder = SocketConfig::builder(server.url(if hub { "acked" } else { "sink" }))
            .heartbeat(Duration::from_secs(60), Duration::from_secs(120))
            .outbox(Outbox::bounded(p.per_client as usize + 16).max_bytes(1 << 30));
        let builder = if hub {
            builder.acked(format!("bench-{i}"))
        } else {
            builder
        };
        let socket = SocketActor::connect(builder.build()?);
        socket.do_send(Subscribe::text(forward.clone().recipient()));
        let sender = socket.send(GetSender).await?;
        sockets.push((socket, sender));
    }
    for (socket, _) in &sockets {
        wait_open(socket).await?;
    }
    // A first round warms every session (buffers, the hub's per-client state).
    round(&sockets, &mut replies, 10).await?;
    actix_rt::time::sleep(Duration::from_secs(1)).await;
    let rss_per_client = rss_bytes_of(&pid).saturating_sub(rss0) as f64 / 1024.0 / p.clients as f64;
    let (cpu0, t0) = (cpu_ns_of(&pid), Instant::now());
    round(&sockets, &mut replies, p.per_client).await?;
    let (elapsed, server_cpu_ns) = (t0.elapsed(), cpu_ns_of(&pid) - cpu0);
    let n = p.per_client * p.clients as u64;
    Ok(json!({
        "server_rss_kib_per_client": rss_per_client,
        "msgs_per_s": n as f64 / elapsed.as_secs_f64(),
        "server_cpu_ns_per_msg": server_cpu_ns as f64 / n as f64,
    }))
}
