//! Messages to a key from any process: [`FleetSender::send`] appends to the key's Redis
//! stream; the node that owns the key reads it with a consumer group, hands each entry to the
//! key's socket, and acknowledges the entry once the socket reports it written (default mode)
//! or acknowledged by the upstream (acked mode), through [`Delivery::on_written`]. A node that
//! takes a key first claims the entries its previous owner read and never acknowledged, so an
//! entry Redis accepted is delivered even when its owner dies; one written just before the
//! owner died, and not acknowledged yet, is delivered again (at least once) in the default
//! mode. In acked mode each entry carries the sequence number it got when it was published,
//! and the key's offset to the upstream's numbering is kept in Redis: a new owner's socket
//! skips what the upstream already had (exactly once across a failover; the README's
//! "Fleet" section).

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
use crate::delivery::Receipted;
use crate::{Cause, Delivery, Error, GetSocket, SendMessage, SupervisorActor};

/// The consumer group of the owners of a key's stream.
const GROUP: &str = "owners";
/// The field of an entry that holds the message.
const FIELD: &str = "m";
/// The field of an entry that holds its sequence number, assigned at publish time.
const SEQ_FIELD: &str = "s";
/// Appends a message with the key's next sequence number. A key's first number is Redis's
/// clock in microseconds, so numbers keep growing even after Redis lost its data.
const PUBLISH: &str = r"
if redis.call('EXISTS', KEYS[2]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[2], t[1] .. string.rep('0', 6 - #t[2]) .. t[2])
end
local s = redis.call('INCR', KEYS[2])
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[2], 's', s)
";
/// Raises a key's sequence offset (what the numbers of its entries are above the upstream's
/// numbering), never lowers it.
const RAISE_OFFSET: &str = r"
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 0
";

/// A key whose socket runs on this node, as the node tells the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Running {
    /// Which start of the key's socket (a new one: unacknowledged entries go again).
    pub(crate) generation: u64,
    /// Whether the socket is in acked mode (entries then carry their sequence number).
    pub(crate) acked: bool,
}
/// Entries read (or claimed) in one call, per stream.
const BATCH: usize = 256;
/// How often the lag of the streams read is measured ([`FleetStats::stream_lag`]).
pub(crate) const LAG_INTERVAL: Duration = Duration::from_secs(5);

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

    /// Appends `message` to `key`'s stream with the key's next sequence number (one script
    /// call); its owner writes it to the key's socket, now or once a node owns the key.
    /// Returns the entry id. Fails with [`Error::UnknownKey`] for a
    /// key the fleet does not have (from a node), [`Error::Redis`] when Redis did not take it
    /// (nothing was appended, or it is not known whether it was: send again if unsure, the
    /// upstream may then see it twice).
    pub async fn send(&self, key: &str, message: impl AsRef<str>) -> Result<String, Error> {
        if self.keys.as_ref().is_some_and(|keys| !keys.contains(key)) {
            return Err(Error::UnknownKey(key.to_string()));
        }
        let mut redis = self.redis.clone();
        redis::Script::new(PUBLISH)
            .key(self.names.to(key))
            .key(self.names.seq(key))
            .arg(self.max_len)
            .arg(message.as_ref())
            .invoke_async(&mut redis)
            .await
            .map_err(redis_error)
    }
}

/// An entry done with, to acknowledge in its stream.
#[derive(Debug, Clone)]
struct Written {
    key: String,
    id: String,
    /// How it was delivered (`Written` also for an entry refused for good).
    how: Receipted,
    /// Its sequence number, assigned at publish time (acked keys).
    seq: Option<u64>,
}

impl Written {
    /// Entry `id` of `key`'s stream, done with and not numbered (written in the default mode,
    /// or refused for good); a receipt fills in how and the number.
    fn plain(key: &str, id: String) -> Self {
        Written {
            key: key.to_string(),
            id,
            how: Receipted::Written,
            seq: None,
        }
    }
}

/// The owner's side: reads the streams of the keys held, delivers, acknowledges.
pub(crate) struct Reader {
    redis: ConnectionManager,
    names: Names,
    node: String,
    supervisor: Addr<SupervisorActor>,
    /// The keys whose socket runs, with its generation (kept by the node's tick).
    held: Arc<Mutex<BTreeMap<String, Running>>>,
    /// The keys this reader reads, with the socket it adopted them for (a new socket: what is
    /// unacknowledged is claimed and delivered again).
    reading: BTreeMap<String, Running>,
    /// Per acked key, how far its entries' sequence numbers are above the upstream's (read
    /// at adoption, raised as acknowledgements show it): an entry numbered `s` was written
    /// upstream as `s - offset`.
    offsets: BTreeMap<String, u64>,
    /// Offsets raised since the last round, to store.
    offsets_raised: BTreeSet<String>,
    /// Keys whose socket refused an entry for now (its outbox full): not read until then.
    paused: BTreeMap<String, std::time::Instant>,
    /// Per key, the last entry handed to its socket: a pause resumes after it.
    last_delivered: BTreeMap<String, String>,
    /// Per key, pauses in a row (reset by a delivery): each twice as long, up to 5 s.
    pause_streak: BTreeMap<String, u32>,
    /// Per key, the entries handed to its socket and not yet reported written: never
    /// delivered twice by this node.
    outstanding: BTreeMap<String, BTreeSet<String>>,
    written: mpsc::UnboundedSender<Written>,
    acks: mpsc::UnboundedReceiver<Written>,
    stats: Arc<Mutex<FleetStats>>,
    poll: Duration,
    /// When the streams' lag is measured next.
    lag_due: std::time::Instant,
}

impl Reader {
    pub(crate) fn new(
        redis: ConnectionManager,
        fleet: &str,
        node: &str,
        supervisor: Addr<SupervisorActor>,
        held: Arc<Mutex<BTreeMap<String, Running>>>,
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
            reading: BTreeMap::new(),
            offsets: BTreeMap::new(),
            offsets_raised: BTreeSet::new(),
            paused: BTreeMap::new(),
            last_delivered: BTreeMap::new(),
            pause_streak: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            written,
            acks,
            stats,
            poll,
            lag_due: std::time::Instant::now(),
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
                    // A stream or its group gone (deleted, or Redis lost its data): every
                    // key is adopted again, which creates them.
                    if e.code() == Some("NOGROUP") {
                        self.reading.clear();
                    }
                    actix_rt::time::sleep(self.poll).await;
                }
            }
        }
    }

    fn update(&self, change: impl FnOnce(&mut FleetStats)) {
        super::update_stats(&self.stats, change);
    }

    /// The keys whose socket runs now, as the node says.
    fn held_now(&self) -> BTreeMap<String, Running> {
        match self.held.lock() {
            Ok(held) => held.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    async fn round(&mut self) -> redis::RedisResult<()> {
        self.acknowledge().await?;
        if std::time::Instant::now() >= self.lag_due {
            self.lag_due = std::time::Instant::now() + LAG_INTERVAL;
            // (A stream not created yet, or deleted: measured next time.)
            if let Err(e) = self.measure_lag().await {
                debug!("resocket fleet {}: stream lag: {e}", self.node);
            }
        }
        let held = self.held_now();
        // A key whose socket changed (or that is no longer held) starts afresh: what its
        // old socket held unacknowledged is claimed and delivered again.
        self.reading
            .retain(|k, generation| held.get(k) == Some(generation));
        let reading = &self.reading;
        self.outstanding.retain(|k, _| reading.contains_key(k));
        self.offsets.retain(|k, _| reading.contains_key(k));
        self.paused.retain(|k, _| reading.contains_key(k));
        self.last_delivered.retain(|k, _| reading.contains_key(k));
        self.pause_streak.retain(|k, _| reading.contains_key(k));
        let now = std::time::Instant::now();
        let resumed: Vec<String> = self
            .paused
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in resumed {
            self.paused.remove(&key);
            // (Skips what its socket already holds.) Not adopted, it is not read either: its
            // pending entries would be overtaken by newer ones.
            if let Err(e) = self.adopt(&key).await {
                self.paused.insert(key, now);
                return Err(e);
            }
        }
        let new: Vec<(String, Running)> = held
            .iter()
            .filter(|(k, _)| !self.reading.contains_key(*k))
            .map(|(k, g)| (k.clone(), *g))
            .collect();
        for (key, generation) in new {
            // Not at once: a read the previous owner blocked in just before it let the key go
            // can still take the next entry for a poll; once it is surely over, the claim
            // takes that entry too, and everything goes out in order.
            self.reading.insert(key.clone(), generation);
            self.paused.insert(key, now + 2 * self.poll);
        }
        let keys: Vec<String> = self
            .reading
            .keys()
            .filter(|k| !self.paused.contains_key(*k))
            .cloned()
            .collect();
        if keys.is_empty() {
            actix_rt::time::sleep(self.poll).await;
            return Ok(());
        }
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
        let reply: Option<StreamReadReply> = match read.query_async(&mut self.redis).await {
            Ok(reply) => reply,
            Err(e) => {
                // Redis may have run the read and its reply been lost (a timeout, a broken
                // connection): its entries are then pending for this node, and `>` never
                // returns them. Paused, each key is adopted again when it resumes, which
                // claims them before anything newer is read.
                let until = std::time::Instant::now() + self.poll;
                for key in keys {
                    self.paused.insert(key, until);
                }
                return Err(e);
            }
        };
        let prefix = self.names.to("");
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let key = stream
                .key
                .strip_prefix(&prefix)
                .unwrap_or(&stream.key)
                .to_string();
            self.deliver(&key, stream.ids, false).await;
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
        if self.reading.get(key).is_some_and(|r| r.acked) {
            let offset: Option<u64> = redis::cmd("HGET")
                .arg(self.names.offsets())
                .arg(key)
                .query_async(&mut self.redis)
                .await?;
            let known = self.offsets.entry(key.to_string()).or_insert(0);
            *known = (*known).max(offset.unwrap_or(0));
        }
        // After a pause, from the last entry the socket took (what it holds is not claimed
        // again); for a new socket, from the start of what is pending.
        let mut start = self
            .last_delivered
            .get(key)
            .cloned()
            .unwrap_or_else(|| "0-0".to_string());
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
            if !reply.claimed.is_empty() {
                // (Entries the socket already holds are skipped: only what is delivered now
                // counts.)
                let claimed = self.deliver(key, reply.claimed, true).await;
                debug!(
                    "resocket fleet {}: key {key}: {claimed} claimed entries delivered",
                    self.node
                );
                self.update(|s| s.messages_claimed += claimed);
                if self.paused.contains_key(key) {
                    break; // refused again: the rest wait for the next resume
                }
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
    ///
    /// In acked mode a `claimed` entry (read before, by this node or a previous owner) carries
    /// the number the upstream knows it by, to be skipped if the upstream has it; an entry
    /// read for the first time cannot have been written by anyone, and is never skipped.
    async fn deliver(&mut self, key: &str, entries: Vec<StreamId>, claimed: bool) -> u64 {
        let Ok(Some(socket)) = self.supervisor.send(GetSocket(key.to_string())).await else {
            // Read but not delivered: claimed again (in order) once the key runs again.
            self.pause(key);
            return 0;
        };
        let acked = self.reading.get(key).is_some_and(|r| r.acked);
        let offset = self.offsets.get(key).copied().unwrap_or(0);
        let mut delivered = 0u64;
        for entry in entries {
            let outstanding = self.outstanding.entry(key.to_string()).or_default();
            if outstanding.contains(&entry.id) {
                continue; // claimed again, but already in the socket
            }
            let text = entry.get::<String>(FIELD);
            let seq = entry.get::<u64>(SEQ_FIELD);
            let Some(text) = text.filter(|_| !acked || seq.is_some()) else {
                // Not ours to read (no message field, not UTF-8, or in acked mode no sequence
                // number: it would shift the numbering a next owner relies on): acknowledged
                // so it does not block the key, and counted.
                warn!(
                    "resocket fleet {}: key {key}: stream entry {} has no text field `{FIELD}`{}: dropped",
                    self.node,
                    entry.id,
                    if acked { " or no sequence number" } else { "" }
                );
                let _ = self.written.unbounded_send(Written::plain(key, entry.id));
                self.update(|s| s.messages_refused += 1);
                continue;
            };
            let written = self.written.clone();
            let id = entry.id;
            let done = Written::plain(key, id.clone());
            let mut receipt = Delivery::new().on_receipt(move |how| {
                let seq = seq.filter(|_| acked);
                let _ = written.unbounded_send(Written {
                    how,
                    seq,
                    ..done.clone()
                });
            });
            if acked && claimed {
                // What the upstream numbered it, if the previous owner wrote it.
                receipt = receipt.known_seq(seq.and_then(|s| s.checked_sub(offset)));
            }
            match socket.send(SendMessage::text(text).with(receipt)).await {
                Ok(Ok(())) => {
                    delivered += 1;
                    self.last_delivered.insert(key.to_string(), id.clone());
                    self.pause_streak.remove(key);
                    if let Some(outstanding) = self.outstanding.get_mut(key) {
                        outstanding.insert(id);
                    }
                }
                Ok(Err(refused))
                    if !matches!(refused.error, Error::OutboxFull { .. } | Error::Closed) =>
                {
                    // Never deliverable (larger than the outbox, say): acknowledged, so the
                    // key's later messages still flow.
                    warn!(
                        "resocket fleet {}: key {key}: a stream entry dropped: {}",
                        self.node, refused.error
                    );
                    let _ = self.written.unbounded_send(Written::plain(key, id));
                    self.update(|s| s.messages_refused += 1);
                }
                _ => {
                    // Full or stopping: the rest stay pending, claimed again in order after a
                    // pause.
                    self.pause(key);
                    break;
                }
            }
        }
        self.update(|s| s.messages_delivered += delivered);
        delivered
    }

    /// Stops reading `key` for a while; after it, its pending entries not already in its
    /// socket are claimed again, in order.
    fn pause(&mut self, key: &str) {
        let streak = self.pause_streak.entry(key.to_string()).or_insert(0);
        let wait = (5 * self.poll * (1u32 << (*streak).min(5))).min(Duration::from_secs(5));
        *streak = streak.saturating_add(1);
        self.paused
            .insert(key.to_string(), std::time::Instant::now() + wait);
    }

    /// Measures how many entries of the streams read wait (unread, or read and not yet
    /// acknowledged): one pipeline of `XINFO GROUPS`, every [`LAG_INTERVAL`].
    async fn measure_lag(&mut self) -> redis::RedisResult<()> {
        if self.reading.is_empty() {
            self.update(|s| s.stream_lag = 0);
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for key in self.reading.keys() {
            pipe.cmd("XINFO").arg("GROUPS").arg(self.names.to(key));
        }
        let replies: Vec<redis::streams::StreamInfoGroupsReply> =
            pipe.query_async(&mut self.redis).await?;
        let lag: usize = replies
            .iter()
            .flat_map(|r| r.groups.iter().filter(|g| g.name == GROUP))
            .map(|g| g.pending + g.lag.unwrap_or(0))
            .sum();
        self.update(|s| s.stream_lag = lag as u64);
        Ok(())
    }

    /// Acknowledges every entry written since the last round, one XACK per stream, after
    /// storing the offsets the upstream's acknowledgements raised.
    async fn acknowledge(&mut self) -> redis::RedisResult<()> {
        let mut by_key: BTreeMap<String, Vec<Written>> = BTreeMap::new();
        let (mut already, mut given_up) = (0u64, 0u64);
        while let Ok(done) = self.acks.try_recv() {
            if let Some(outstanding) = self.outstanding.get_mut(&done.key) {
                outstanding.remove(&done.id);
            }
            match (done.how, done.seq) {
                (Receipted::AlreadyDelivered, _) => already += 1,
                (Receipted::GivenUp, _) => given_up += 1,
                (Receipted::Acked(upstream), Some(seq)) if seq >= upstream => {
                    if let Some(offset) = self.offsets.get_mut(&done.key) {
                        if seq - upstream > *offset {
                            *offset = seq - upstream;
                            self.offsets_raised.insert(done.key.clone());
                        }
                    }
                }
                _ => {}
            }
            by_key.entry(done.key.clone()).or_default().push(done);
        }
        // Only a key's current owner stores its offset: one that lost the key while Redis
        // was out of reach (its raise waited here) would overwrite the next owner's.
        let held = self.held_now();
        self.offsets_raised.retain(|k| held.contains_key(k));
        if by_key.is_empty() && self.offsets_raised.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        // Offsets first: an entry acknowledged in its stream has its offset stored.
        for key in &self.offsets_raised {
            if let Some(offset) = self.offsets.get(key) {
                pipe.cmd("EVAL")
                    .arg(RAISE_OFFSET)
                    .arg(1)
                    .arg(self.names.offsets())
                    .arg(key)
                    .arg(*offset)
                    .ignore();
            }
        }
        let mut count = 0u64;
        for (key, done) in &by_key {
            count += done.len() as u64;
            let ids: Vec<&str> = done.iter().map(|d| d.id.as_str()).collect();
            pipe.cmd("XACK")
                .arg(self.names.to(key))
                .arg(GROUP)
                .arg(ids)
                .ignore();
        }
        let acked = pipe.query_async::<()>(&mut self.redis).await;
        if acked.is_err() {
            // Put them back: acknowledged at the next round that reaches Redis (the offsets
            // stay marked raised).
            for done in by_key.into_values().flatten() {
                let _ = self.written.unbounded_send(done);
            }
            return acked;
        }
        self.offsets_raised.clear();
        self.update(|s| {
            s.messages_acked += count;
            s.messages_already_delivered += already;
            s.messages_refused += given_up;
        });
        Ok(())
    }
}
