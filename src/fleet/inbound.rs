//! Messages from a key to consumers anywhere: with
//! [`FleetConfigBuilder::forward_inbound`](super::FleetConfigBuilder::forward_inbound), the
//! owner appends every text message its sockets receive to the fleet's inbound stream
//! (`resocket:{FLEET}:from`, fields `k` the key, `m` the message), trimmed to about the
//! configured length; consumers read it with their own consumer groups. At most once: while
//! Redis is unreachable, up to 64 MiB and
//! [`FleetConfig::INBOUND_BUFFER`](super::FleetConfig::INBOUND_BUFFER) messages wait, and those past it are counted in
//! [`FleetStats::inbound_dropped`](super::FleetStats::inbound_dropped).

use std::sync::{Arc, Mutex};

use actix::{Actor, Context, Handler};
use futures_channel::mpsc;
use futures_util::StreamExt;
use log::warn;
use redis::aio::ConnectionManager;

use super::leases::Names;
use super::{update_stats, FleetStats};
use crate::InboundText;

/// Messages appended in one pipeline at most.
const BATCH: usize = 512;
/// Bytes of inbound messages that wait for Redis at most (besides the count bound).
const BUFFERED_BYTES: usize = 64 * 1024 * 1024;

/// Subscribed to every socket of the node: hands what they receive to the appender.
pub(crate) struct Forwarder {
    queue: mpsc::Sender<(String, String)>,
    stats: Arc<Mutex<FleetStats>>,
    /// Bytes queued and not yet appended.
    bytes: Arc<std::sync::atomic::AtomicUsize>,
}

impl Actor for Forwarder {
    type Context = Context<Self>;
}

impl Handler<InboundText> for Forwarder {
    type Result = ();

    fn handle(&mut self, InboundText(text, socket): InboundText, _ctx: &mut Context<Self>) {
        use std::sync::atomic::Ordering;
        let len = text.len();
        // Counted before it is queued, so the appender never takes away more than was added.
        let before = self.bytes.fetch_add(len, Ordering::AcqRel);
        let message = (socket.as_str().to_string(), text.to_string());
        if before + len > BUFFERED_BYTES || self.queue.try_send(message).is_err() {
            self.bytes.fetch_sub(len, Ordering::AcqRel);
            update_stats(&self.stats, |s| s.inbound_dropped += 1);
        }
    }
}

/// The forwarder, and the task that appends what it forwards (in order, in batches).
pub(crate) fn start(
    mut redis: ConnectionManager,
    fleet: &str,
    max_len: usize,
    stats: Arc<Mutex<FleetStats>>,
) -> actix::Addr<Forwarder> {
    let (queue, mut waiting) =
        mpsc::channel::<(String, String)>(super::FleetConfig::INBOUND_BUFFER);
    let stream = Names::new(fleet).from();
    let counts = Arc::clone(&stats);
    let bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let queued = Arc::clone(&bytes);
    actix_rt::spawn(async move {
        let mut warned = false;
        while let Some(first) = waiting.next().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match waiting.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            let size: usize = batch.iter().map(|(_, text)| text.len()).sum();
            queued.fetch_sub(size, std::sync::atomic::Ordering::AcqRel);
            let mut pipe = redis::pipe();
            for (key, text) in &batch {
                pipe.cmd("XADD")
                    .arg(&stream)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(max_len)
                    .arg("*")
                    .arg("k")
                    .arg(key)
                    .arg("m")
                    .arg(text)
                    .ignore();
            }
            match pipe.query_async::<()>(&mut redis).await {
                Ok(()) => {
                    warned = false;
                    update_stats(&counts, |s| s.inbound_forwarded += batch.len() as u64);
                }
                Err(e) => {
                    if !std::mem::replace(&mut warned, true) {
                        warn!("resocket fleet: inbound messages not appended: {e}");
                    }
                    update_stats(&counts, |s| s.inbound_dropped += batch.len() as u64);
                }
            }
        }
    });
    Forwarder {
        queue,
        stats,
        bytes,
    }
    .start()
}
