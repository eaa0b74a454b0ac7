//! Messages to a key from any process: [`FleetSender::send`] appends to the key's Redis
//! stream; the node that owns the key reads it with a consumer group, hands each entry to the
//! key's socket, and acknowledges the entry once the socket reports it written (default mode)
//! or acknowledged by the upstream (acked mode), through [`Delivery::on_written`]. A node that
//! takes a key first claims the entries its previous owner read and never acknowledged, so an
//! entry Redis accepted is delivered even when its owner dies; one written just before the
//! owner died, and not acknowledged yet, is delivered again (at least once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use futures_channel::mpsc;
use log::{debug, warn};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};

use super::leases::Names;
use super::FleetStats;
use crate::{Cause, Delivery, Error, GetSocket, SendMessage, SupervisorActor};

/// The consumer group of the owners of a key's stream.
const GROUP: &str = "owners";
/// The field of an entry that holds the message.
const FIELD: &str = "m";
/// Entries read (or claimed) in one call, per stream.
const BATCH: usize = 256;

fn redis_error(e: redis::RedisError) -> Error {
    Error::Redis(Cause::from_error(e))
}

/// Appends messages to keys' streams, from any process (a fleet node or not).
#[derive(Clone)]
pub struct FleetSender {
    redis: ConnectionManager,
    names: Names,
    keys: Option<Arc<BTreeSet<String>>>,
    max_len: usize,
}

impl std::fmt::Debug for FleetSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSender")
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl FleetSender {
    /// The default bound on a key's stream: 100,000 entries (approximately; older entries
    /// are trimmed, read or not).
    pub const DEFAULT_MAX_LEN: usize = 100_000;

    /// A sender to the fleet `fleet` on the Redis at `redis_url`, from a process that is not
    /// a node (a web handler, a job). Keys are not checked against the fleet's.
    pub async fn connect(redis_url: &str, fleet: &str) -> Result<FleetSender, Error> {
        let client = redis::Client::open(redis_url)
            .map_err(|e| Error::config("redis_url", e.to_string()))?;
        let redis = ConnectionManager::new(client).await.map_err(redis_error)?;
        Ok(FleetSender::new(redis, fleet, None))
    }

    pub(crate) fn new(
        redis: ConnectionManager,
        fleet: &str,
        keys: Option<Arc<BTreeSet<String>>>,
    ) -> Self {
        FleetSender {
            redis,
            names: Names::new(fleet),
            keys,
            max_len: Self::DEFAULT_MAX_LEN,
        }
    }

    /// Trims each key's stream to about `max_len` entries on every append.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(1);
        self
    }

    /// Appends `message` to `key`'s stream; its owner writes it to the key's socket, now or
    /// once a node owns the key. Returns the entry id. Fails with [`Error::UnknownKey`] for a
    /// key the fleet does not have (from a node), [`Error::Redis`] when Redis did not take it
    /// (nothing was appended, or it is not known whether it was: send again if unsure, the
    /// upstream may then see it twice).
    pub async fn send(&self, key: &str, message: impl AsRef<str>) -> Result<String, Error> {
        if self.keys.as_ref().is_some_and(|keys| !keys.contains(key)) {
            return Err(Error::UnknownKey(key.to_string()));
        }
        let mut redis = self.redis.clone();
        redis::cmd("XADD")
            .arg(self.names.to(key))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg(FIELD)
            .arg(message.as_ref())
            .query_async(&mut redis)
            .await
            .map_err(redis_error)
    }
}

/// A written (or upstream-acknowledged) entry, to acknowledge in its stream.
type Written = (String, String);

/// The owner's side: reads the streams of the keys held, delivers, acknowledges.
pub(crate) struct Reader {
    redis: ConnectionManager,
    names: Names,
    node: String,
    supervisor: Addr<SupervisorActor>,
    /// The keys held now (kept by the node's tick).
    held: Arc<Mutex<BTreeSet<String>>>,
    /// The keys this reader has claimed the old owners' entries of.
    reading: BTreeSet<String>,
    /// Per key, the entries handed to its socket and not yet reported written: never
    /// delivered twice by this node.
    outstanding: BTreeMap<String, BTreeSet<String>>,
    written: mpsc::UnboundedSender<Written>,
    acks: mpsc::UnboundedReceiver<Written>,
    stats: Arc<Mutex<FleetStats>>,
    poll: Duration,
}

impl Reader {
    pub(crate) fn new(
        redis: ConnectionManager,
        fleet: &str,
        node: &str,
        supervisor: Addr<SupervisorActor>,
        held: Arc<Mutex<BTreeSet<String>>>,
        stats: Arc<Mutex<FleetStats>>,
        poll: Duration,
    ) -> Self {
        let (written, acks) = mpsc::unbounded();
        Reader {
            redis,
            names: Names::new(fleet),
            node: node.to_string(),
            supervisor,
            held,
            reading: BTreeSet::new(),
            outstanding: BTreeMap::new(),
            written,
            acks,
            stats,
            poll,
        }
    }

    /// Reads, delivers and acknowledges until the node stops (the task is dropped with it).
    pub(crate) async fn run(mut self) {
        let mut warned = false;
        loop {
            match self.round().await {
                Ok(()) => warned = false,
                Err(e) => {
                    if !std::mem::replace(&mut warned, true) {
                        warn!("resocket fleet {}: streams: {e}", self.node);
                    }
                    actix_rt::time::sleep(self.poll).await;
                }
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut FleetStats)) {
        let mut stats = match self.stats.lock() {
            Ok(stats) => stats,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut stats);
    }

    async fn round(&mut self) -> redis::RedisResult<()> {
        self.acknowledge().await?;
        let held: BTreeSet<String> = match self.held.lock() {
            Ok(held) => held.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        self.reading.retain(|k| held.contains(k));
        self.outstanding.retain(|k, _| held.contains(k));
        for key in held
            .iter()
            .filter(|k| !self.reading.contains(*k))
            .cloned()
            .collect::<Vec<_>>()
        {
            self.adopt(&key).await?;
            self.reading.insert(key);
        }
        if held.is_empty() {
            actix_rt::time::sleep(self.poll).await;
            return Ok(());
        }
        let keys: Vec<&String> = held.iter().collect();
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(&self.node)
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(u64::try_from(self.poll.as_millis()).unwrap_or(100))
            .arg("STREAMS");
        for key in &keys {
            read.arg(self.names.to(key));
        }
        for _ in &keys {
            read.arg(">");
        }
        let reply: Option<StreamReadReply> = read.query_async(&mut self.redis).await?;
        let prefix = self.names.to("");
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let key = stream
                .key
                .strip_prefix(&prefix)
                .unwrap_or(&stream.key)
                .to_string();
            self.deliver(&key, stream.ids).await;
        }
        Ok(())
    }

    /// A key newly held: its group exists, and the entries its old owner read and never
    /// acknowledged are claimed and delivered first (they are older than anything new).
    async fn adopt(&mut self, key: &str) -> redis::RedisResult<()> {
        let stream = self.names.to(key);
        let created: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.redis)
            .await;
        if let Err(e) = created {
            if e.code() != Some("BUSYGROUP") {
                return Err(e);
            }
        }
        let mut start = "0-0".to_string();
        // Bounded: each call claims up to BATCH entries, and a stream holds at most its max.
        for _ in 0..10_000 {
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(GROUP)
                .arg(&self.node)
                .arg(0)
                .arg(&start)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(&mut self.redis)
                .await?;
            let claimed = reply.claimed.len();
            if claimed > 0 {
                debug!(
                    "resocket fleet {}: key {key}: {claimed} entries claimed",
                    self.node
                );
                self.update(|s| s.messages_claimed += claimed as u64);
                self.deliver(key, reply.claimed).await;
            }
            start = reply.next_stream_id;
            if start == "0-0" {
                break;
            }
        }
        Ok(())
    }

    /// Hands entries to the key's socket, in order. An entry the socket does not take (it
    /// is stopping: the key moved) stays pending, for the next owner to claim.
    async fn deliver(&mut self, key: &str, entries: Vec<StreamId>) {
        let Ok(Some(socket)) = self.supervisor.send(GetSocket(key.to_string())).await else {
            // Read but not delivered: claimed again (in order) at the next round.
            self.reading.remove(key);
            return;
        };
        let mut delivered = 0u64;
        for entry in entries {
            let outstanding = self.outstanding.entry(key.to_string()).or_default();
            if outstanding.contains(&entry.id) {
                continue; // claimed again, but already in the socket
            }
            let Some(text) = entry.get::<String>(FIELD) else {
                // Not ours to read (no message field): acknowledged so it does not block.
                let _ = self.written.unbounded_send((key.to_string(), entry.id));
                continue;
            };
            let written = self.written.clone();
            let id = entry.id;
            let ack = (key.to_string(), id.clone());
            let receipt = Delivery::new().on_written(move || {
                let _ = written.unbounded_send(ack.clone());
            });
            match socket.send(SendMessage::text(text).with(receipt)).await {
                Ok(Ok(())) => {
                    delivered += 1;
                    if let Some(outstanding) = self.outstanding.get_mut(key) {
                        outstanding.insert(id);
                    }
                }
                _ => {
                    // The rest stay pending and are claimed again, in order, next round.
                    self.reading.remove(key);
                    break;
                }
            }
        }
        self.update(|s| s.messages_delivered += delivered);
    }

    /// Acknowledges every entry written since the last round, one XACK per stream.
    async fn acknowledge(&mut self) -> redis::RedisResult<()> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        while let Ok((key, id)) = self.acks.try_recv() {
            if let Some(outstanding) = self.outstanding.get_mut(&key) {
                outstanding.remove(&id);
            }
            by_key.entry(key).or_default().push(id);
        }
        if by_key.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        let mut count = 0u64;
        for (key, ids) in &by_key {
            count += ids.len() as u64;
            pipe.cmd("XACK")
                .arg(self.names.to(key))
                .arg(GROUP)
                .arg(ids)
                .ignore();
        }
        let acked = pipe.query_async::<()>(&mut self.redis).await;
        if acked.is_err() {
            // Put them back: acknowledged at the next round that reaches Redis.
            for (key, ids) in by_key {
                for id in ids {
                    let _ = self.written.unbounded_send((key.clone(), id));
                }
            }
            return acked;
        }
        self.update(|s| s.messages_acked += count);
        Ok(())
    }
}
