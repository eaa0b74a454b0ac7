//! The clients users would pick instead of resocket, doing the `send` benchmark's work: the
//! same 64-byte `TickOut`s serialized with serde_json and pipelined to the counting sink,
//! then `END`, timed until the server's count comes back.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{cpu_ns, BoxError, TickOut};

/// How long any single wait may take before the run is abandoned.
const WAIT: Duration = Duration::from_secs(60);
/// Messages handed to ezsockets before the producer yields (as resocket's producer does).
const CHUNK: u64 = 1024;
/// The tuned tokio-tungstenite client's read buffer and write buffer (default: 128 KiB each).
const TUNED_BUFFER: usize = 4 * 1024;

/// A peer client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// tokio-tungstenite with its defaults, `send().await` (a flush) per message.
    TungsteniteSend,
    /// tokio-tungstenite with `feed()` per message and one flush when the batch ends, 4 KiB
    /// read and write buffers, TCP_NODELAY.
    TungsteniteTuned,
    /// ezsockets' client with its defaults, `Client::text` per message.
    Ezsockets,
}

impl Peer {
    pub const ALL: [Peer; 3] = [
        Peer::TungsteniteSend,
        Peer::TungsteniteTuned,
        Peer::Ezsockets,
    ];

    /// The name in the table and the JSON.
    pub fn label(self) -> &'static str {
        match self {
            Peer::TungsteniteSend => "tokio-tungstenite (send per msg)",
            Peer::TungsteniteTuned => "tokio-tungstenite (feed, tuned)",
            Peer::Ezsockets => "ezsockets (defaults)",
        }
    }

    /// The name in a client's parameters.
    pub fn key(self) -> &'static str {
        match self {
            Peer::TungsteniteSend => "tungstenite_send",
            Peer::TungsteniteTuned => "tungstenite_tuned",
            Peer::Ezsockets => "ezsockets",
        }
    }

    pub fn from_key(key: &str) -> Result<Peer, BoxError> {
        Peer::ALL
            .into_iter()
            .find(|p| p.key() == key)
            .ok_or_else(|| format!("unknown peer {key:?}").into())
    }
}

fn rate(n: u64, elapsed: Duration, cpu: u64) -> Value {
    json!({
        "msgs_per_s": n as f64 / elapsed.as_secs_f64(),
        "cpu_ns_per_msg": cpu as f64 / n as f64,
    })
}

fn parse_count(text: &str, n: u64) -> Result<(), BoxError> {
    let v: Value = serde_json::from_str(text)?;
    match v["count"].as_u64() {
        Some(got) if got == n => Ok(()),
        Some(got) => Err(format!("the server counted {got} of {n} messages").into()),
        None => Err(format!("bad reply {v}").into()),
    }
}

/// Sends `warm` then `n` messages with `peer` and measures the `n`.
pub async fn send(peer: Peer, url: &str, n: u64, warm: u64) -> Result<Value, BoxError> {
    match peer {
        Peer::TungsteniteSend | Peer::TungsteniteTuned => {
            tungstenite_send(peer, url, n, warm).await
        }
        Peer::Ezsockets => ezsockets_send(url, n, warm).await,
    }
}

// ---- tokio-tungstenite ----

type Tungstenite =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message (pings are answered by tungstenite itself, other frames skipped).
async fn tungstenite_next_text(ws: &mut Tungstenite) -> Result<String, BoxError> {
    for _ in 0..1_000_000 {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
            Some(Ok(Message::Close(frame))) => return Err(format!("closed: {frame:?}").into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the server closed the connection".into()),
        }
    }
    Err("no text message".into())
}

/// Sends `n` messages then `END` and waits for the server's count.
async fn tungstenite_batch(ws: &mut Tungstenite, tuned: bool, n: u64) -> Result<(), BoxError> {
    for seq in 0..n {
        let text = serde_json::to_string(&TickOut::new(seq))?;
        if tuned {
            ws.feed(Message::text(text)).await?;
        } else {
            ws.send(Message::text(text)).await?;
        }
    }
    ws.send(Message::text("END")).await?;
    let reply = actix_rt::time::timeout(WAIT, tungstenite_next_text(ws)).await??;
    parse_count(&reply, n)
}

async fn tungstenite_send(peer: Peer, url: &str, n: u64, warm: u64) -> Result<Value, BoxError> {
    let tuned = peer == Peer::TungsteniteTuned;
    let (mut ws, _) = if tuned {
        let config = WebSocketConfig::default()
            .read_buffer_size(TUNED_BUFFER)
            .write_buffer_size(TUNED_BUFFER);
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?
    } else {
        tokio_tungstenite::connect_async(url).await?
    };
    tungstenite_batch(&mut ws, tuned, warm).await?;
    let (cpu0, t0) = (cpu_ns(), Instant::now());
    tungstenite_batch(&mut ws, tuned, n).await?;
    Ok(rate(n, t0.elapsed(), cpu_ns() - cpu0))
}

// ---- ezsockets ----

/// The ezsockets client: forwards text (the server's replies) and says when it is connected.
/// It gives up instead of reconnecting, so that a failed run ends instead of hanging.
struct EzClient {
    replies: mpsc::UnboundedSender<String>,
    connected: Option<oneshot::Sender<()>>,
}

#[async_trait::async_trait]
impl ezsockets::ClientExt for EzClient {
    type Call = ();

    async fn on_text(&mut self, text: ezsockets::Utf8Bytes) -> Result<(), ezsockets::Error> {
        let _ = self.replies.send(text.to_string());
        Ok(())
    }

    async fn on_binary(&mut self, _: ezsockets::Bytes) -> Result<(), ezsockets::Error> {
        Ok(())
    }

    async fn on_call(&mut self, (): ()) -> Result<(), ezsockets::Error> {
        Ok(())
    }

    async fn on_connect(&mut self) -> Result<(), ezsockets::Error> {
        if let Some(connected) = self.connected.take() {
            let _ = connected.send(());
        }
        Ok(())
    }

    async fn on_connect_fail(
        &mut self,
        _: ezsockets::WSError,
    ) -> Result<ezsockets::client::ClientCloseMode, ezsockets::Error> {
        Ok(ezsockets::client::ClientCloseMode::Close)
    }

    async fn on_close(
        &mut self,
        _: Option<ezsockets::CloseFrame>,
    ) -> Result<ezsockets::client::ClientCloseMode, ezsockets::Error> {
        Ok(ezsockets::client::ClientCloseMode::Close)
    }

    async fn on_disconnect(
        &mut self,
    ) -> Result<ezsockets::client::ClientCloseMode, ezsockets::Error> {
        Ok(ezsockets::client::ClientCloseMode::Close)
    }
}

/// Sends `n` messages then `END` (yielding every `CHUNK`) and waits for the server's count.
async fn ezsockets_batch(
    client: &ezsockets::Client<EzClient>,
    replies: &mut mpsc::UnboundedReceiver<String>,
    n: u64,
) -> Result<(), BoxError> {
    let closed = |_| "ezsockets: the client is closed";
    let mut seq = 0;
    while seq < n {
        let end = (seq + CHUNK).min(n);
        for s in seq..end {
            client
                .text(serde_json::to_string(&TickOut::new(s))?)
                .map_err(closed)?;
        }
        seq = end;
        actix_rt::task::yield_now().await;
    }
    client.text("END").map_err(closed)?;
    let reply = actix_rt::time::timeout(WAIT, replies.recv())
        .await?
        .ok_or("ezsockets: no reply")?;
    parse_count(&reply, n)
}

async fn ezsockets_send(url: &str, n: u64, warm: u64) -> Result<Value, BoxError> {
    let (replies_tx, mut replies) = mpsc::unbounded_channel();
    let (connected_tx, connected) = oneshot::channel();
    let config = ezsockets::ClientConfig::new(url);
    // The client runs in tasks of its own; `_running` is its result, held to the end.
    let (client, _running) = ezsockets::connect(
        |_| EzClient {
            replies: replies_tx,
            connected: Some(connected_tx),
        },
        config,
    )
    .await;
    // Messages given to ezsockets before it is connected are dropped: wait for it.
    actix_rt::time::timeout(Duration::from_secs(10), connected)
        .await
        .map_err(|_| "ezsockets did not connect within 10 s")??;
    ezsockets_batch(&client, &mut replies, warm).await?;
    let (cpu0, t0) = (cpu_ns(), Instant::now());
    ezsockets_batch(&client, &mut replies, n).await?;
    Ok(rate(n, t0.elapsed(), cpu_ns() - cpu0))
}
