//! (feature `fleet`) Many processes sharing one set of sockets through Redis: every key runs
//! in exactly one process at a time, and a process that dies has its keys taken over within
//! the lease TTL.
//!
//! Every node is given the same socket definitions (the keys, and how to configure a key's
//! socket). A node joins a named fleet in Redis; the live nodes split the keys by rendezvous
//! hashing; a node runs a key's socket (under its own [`SupervisorActor`]) only while it holds
//! that key's lease. Each acquisition gets a [`Lease::token`] that grows per key (a fencing
//! token to send upstream). The README's "Fleet" section states what is guaranteed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), resocket::Error> {
//! use resocket::{Fleet, FleetConfig, SocketConfig};
//! let config = FleetConfig::builder("redis://127.0.0.1:6379", "feeds", "node-a")
//!     .keys((0..300).map(|i| format!("feed-{i}")))
//!     .socket(|lease| {
//!         SocketConfig::builder(format!("ws://127.0.0.1:9000/feeds/{}", lease.key))
//!             .identify(format!(r#"{{"op":"owner","fence":{}}}"#, lease.token))
//!             .build()
//!     })
//!     .build()?;
//! let fleet = Fleet::start(config).await?;
//! println!("{:?}", fleet.stats());
//! fleet.leave().await;
//! # Ok(()) }
//! ```

mod inbound;
mod leases;
mod node;
mod placement;
mod streams;

pub use self::streams::FleetSender;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr};
use futures_channel::oneshot;

use crate::{Error, SocketConfig, SupervisorActor, SupervisorConfig};

/// A key's lease, as given to the socket definition when this node takes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The socket's key.
    pub key: String,
    /// Grows with every acquisition of this key, across nodes and Redis restarts (it starts
    /// above Redis's clock in microseconds): an upstream that remembers the highest token it
    /// saw can refuse a stale owner.
    pub token: u64,
}

/// How a key's socket is configured once this node holds its lease.
type Definition = dyn Fn(&Lease) -> Result<SocketConfig, Error> + Send + Sync;

/// A fleet node's settings; see [`FleetConfig::builder`].
#[derive(Clone)]
pub struct FleetConfig {
    pub(crate) redis_url: String,
    pub(crate) fleet: String,
    pub(crate) node: String,
    /// Sorted, without duplicates.
    pub(crate) keys: Vec<String>,
    pub(crate) socket: Arc<Definition>,
    pub(crate) lease_ttl: Duration,
    pub(crate) renew_interval: Duration,
    pub(crate) renew_deadline: Duration,
    pub(crate) max_keys_per_node: Option<usize>,
    pub(crate) supervisor: SupervisorConfig,
    /// Forward inbound messages to the fleet's inbound stream, trimmed to about this.
    pub(crate) forward_inbound: Option<usize>,
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("fleet", &self.fleet)
            .field("node", &self.node)
            .field("keys", &self.keys.len())
            .field("lease_ttl", &self.lease_ttl)
            .field("renew_interval", &self.renew_interval)
            .field("renew_deadline", &self.renew_deadline)
            .field("max_keys_per_node", &self.max_keys_per_node)
            .finish_non_exhaustive()
    }
}

impl FleetConfig {
    /// The default lease TTL: 10 s. A dead node's keys are taken over within about this.
    pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
    /// The default time between ticks (heartbeat and renewals): 2 s.
    pub const DEFAULT_RENEW_INTERVAL: Duration = Duration::from_secs(2);
    /// The default renew deadline: 6 s. A node that could not renew for this long stops its
    /// sockets, leaving the rest of the TTL for them to close and for clock drift.
    pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(6);
    /// Inbound messages that wait for Redis at most when they are forwarded
    /// ([`FleetConfigBuilder::forward_inbound`]); past it they are dropped and counted.
    pub const INBOUND_BUFFER: usize = 10_000;

    /// A node `node` of fleet `fleet` on the Redis at `redis_url` (`redis://host:port/db`).
    /// Node ids must be unique in the fleet and stable across restarts of the same node.
    pub fn builder(
        redis_url: impl Into<String>,
        fleet: impl Into<String>,
        node: impl Into<String>,
    ) -> FleetConfigBuilder {
        FleetConfigBuilder {
            redis_url: redis_url.into(),
            fleet: fleet.into(),
            node: node.into(),
            keys: Vec::new(),
            socket: None,
            lease_ttl: Self::DEFAULT_LEASE_TTL,
            renew_interval: Self::DEFAULT_RENEW_INTERVAL,
            renew_deadline: Self::DEFAULT_RENEW_DEADLINE,
            max_keys_per_node: None,
            supervisor: SupervisorConfig::default(),
            forward_inbound: None,
        }
    }

    /// The stream every key's inbound messages go to with
    /// [`forward_inbound`](FleetConfigBuilder::forward_inbound): `resocket:{FLEET}:from`,
    /// entries with fields `k` (the key) and `m` (the message).
    pub fn inbound_stream(&self) -> String {
        leases::Names::new(&self.fleet).from()
    }

    /// How long a Close waits for the upstream when this node gives a key up: the socket must
    /// be gone well before its lease can expire.
    pub(crate) fn close_bound(&self) -> Duration {
        (self.lease_ttl.saturating_sub(self.renew_deadline) / 4).min(Duration::from_secs(1))
    }
}

/// Builds a [`FleetConfig`]; [`build`](FleetConfigBuilder::build) checks it.
#[must_use]
pub struct FleetConfigBuilder {
    redis_url: String,
    fleet: String,
    node: String,
    keys: Vec<String>,
    socket: Option<Arc<Definition>>,
    lease_ttl: Duration,
    renew_interval: Duration,
    renew_deadline: Duration,
    max_keys_per_node: Option<usize>,
    supervisor: SupervisorConfig,
    forward_inbound: Option<usize>,
}

impl std::fmt::Debug for FleetConfigBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfigBuilder")
            .field("fleet", &self.fleet)
            .field("node", &self.node)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl FleetConfigBuilder {
    /// The keys of the fleet's sockets (the same on every node).
    pub fn keys<K: Into<String>>(mut self, keys: impl IntoIterator<Item = K>) -> Self {
        self.keys.extend(keys.into_iter().map(Into::into));
        self
    }

    /// How to configure a key's socket when this node takes its lease (the same on every
    /// node). The [`Lease`] carries the key and its fencing token. It runs on the node's
    /// thread, once per key taken (and again when a key's socket is restarted): keep it quick
    /// (no blocking I/O). The node checks its renew deadline between calls, and stops every
    /// socket if slow definitions carried it past.
    pub fn socket(
        mut self,
        define: impl Fn(&Lease) -> Result<SocketConfig, Error> + Send + Sync + 'static,
    ) -> Self {
        self.socket = Some(Arc::new(define));
        self
    }

    /// How long a lease lasts without renewal; also how long a silent node stays a member.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Time between ticks: one Redis call renews the membership and every lease.
    pub fn renew_interval(mut self, interval: Duration) -> Self {
        self.renew_interval = interval;
        self
    }

    /// A node that has not renewed for this long (since the last tick that succeeded was
    /// sent) stops all its sockets. Shorter than the TTL by the time sockets take to close
    /// plus the clock drift allowed.
    pub fn renew_deadline(mut self, deadline: Duration) -> Self {
        self.renew_deadline = deadline;
        self
    }

    /// At most this many keys on one node; keys that fit nowhere stay unowned (and counted).
    pub fn max_keys_per_node(mut self, max: usize) -> Self {
        self.max_keys_per_node = Some(max);
        self
    }

    /// Append every text message the node's sockets receive to the fleet's inbound stream
    /// ([`FleetConfig::inbound_stream`]), trimmed to about `max_len` entries, for consumers
    /// anywhere to read with their own consumer groups. At most once: see the module.
    pub fn forward_inbound(mut self, max_len: usize) -> Self {
        self.forward_inbound = Some(max_len.max(1));
        self
    }

    /// The settings of the node's own [`SupervisorActor`] (arbiters, restart intensity).
    pub fn supervisor(mut self, config: SupervisorConfig) -> Self {
        self.supervisor = config;
        self
    }

    /// Checks the settings.
    pub fn build(self) -> Result<FleetConfig, Error> {
        let invalid = |field, reason: &str| Err(Error::config(field, reason));
        if self.node.is_empty() || self.fleet.is_empty() {
            return invalid("builder", "fleet and node names must not be empty");
        }
        let Some(socket) = self.socket else {
            return invalid("socket", "say how a key's socket is configured");
        };
        if self.renew_interval.is_zero() || self.renew_interval >= self.renew_deadline {
            return invalid(
                "renew_interval",
                "must be above zero and shorter than the renew deadline",
            );
        }
        if self.renew_deadline >= self.lease_ttl {
            return invalid(
                "renew_deadline",
                "must be shorter than the lease TTL: a node must stop its sockets before its leases can expire",
            );
        }
        if self.max_keys_per_node == Some(0) {
            return invalid("max_keys_per_node", "must be at least 1");
        }
        let mut keys = self.keys;
        keys.sort();
        keys.dedup();
        Ok(FleetConfig {
            redis_url: self.redis_url,
            fleet: self.fleet,
            node: self.node,
            keys,
            socket,
            lease_ttl: self.lease_ttl,
            renew_interval: self.renew_interval,
            renew_deadline: self.renew_deadline,
            max_keys_per_node: self.max_keys_per_node,
            supervisor: self.supervisor,
            forward_inbound: self.forward_inbound,
        })
    }
}

/// What one node knows about the fleet, as of its last tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetStats {
    /// Live members seen at the last tick that reached Redis.
    pub nodes: usize,
    /// Keys whose socket runs here.
    pub owned: usize,
    /// Keys placed on this node that it does not hold yet (handed over by another node, or
    /// waiting out an epoch change).
    pub waiting: usize,
    /// Keys placed on no node (every node at `max_keys_per_node`, or no node).
    pub unplaced: usize,
    /// Ticks that did not reach Redis (or got no answer in time).
    pub renewals_failed: u64,
    /// Keys given up to another node because placement moved them.
    pub handoffs: u64,
    /// Keys found held by another node at renewal (this node had been cut off too long).
    pub lost: u64,
    /// Times this node stopped every socket because it could not renew in time.
    pub deadline_stops: u64,
    /// Times Redis was found to have lost the fleet's data (a new epoch).
    pub epoch_changes: u64,
    /// Whether the last tick reached Redis.
    pub redis_ok: bool,
    /// Stream entries handed to this node's sockets.
    pub messages_delivered: u64,
    /// Stream entries acknowledged (written, or acknowledged upstream in acked mode).
    pub messages_acked: u64,
    /// Of those delivered, entries claimed rather than read anew: read earlier and never
    /// acknowledged, by the key's previous owner or by this node before a pause or a
    /// restart of the key's socket.
    pub messages_claimed: u64,
    /// Claimed entries not written again in acked mode: the upstream already had them from
    /// the key's previous owner (their sequence number, assigned at publish time, was at or
    /// below its welcome's `acked`). Acknowledged in the stream, counted in `messages_acked`.
    pub messages_already_delivered: u64,
    /// Stream entries the key's socket refused for good (larger than its outbox, say):
    /// acknowledged without being delivered, so the key's later messages still flow.
    pub messages_refused: u64,
    /// Entries waiting in the streams of the keys this node reads: not read yet, or read and
    /// not yet acknowledged (written, or acknowledged upstream in acked mode). Measured every
    /// 5 s (one pipelined `XINFO GROUPS`); the unread part needs Redis 7.
    pub stream_lag: u64,
    /// Inbound messages appended to the fleet's inbound stream.
    pub inbound_forwarded: u64,
    /// Inbound messages not appended (Redis unreachable past the buffer).
    pub inbound_dropped: u64,
}

/// Changes one node's stats (a panic elsewhere does not stop the counting).
pub(crate) fn update_stats(stats: &Mutex<FleetStats>, change: impl FnOnce(&mut FleetStats)) {
    let mut stats = match stats.lock() {
        Ok(stats) => stats,
        Err(poisoned) => poisoned.into_inner(),
    };
    change(&mut stats);
}

/// A running fleet node. Dropping it leaves the node running; [`leave`](Fleet::leave) stops it.
#[derive(Debug)]
pub struct Fleet {
    stats: Arc<Mutex<FleetStats>>,
    supervisor: Addr<SupervisorActor>,
    sender: FleetSender,
    reader: actix_rt::task::JoinHandle<()>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
}

impl Fleet {
    /// Starts the node on the current actix system: its supervisor, its Redis connection
    /// (reconnected with backoff), and its tick. Fails only if the Redis URL is invalid;
    /// an unreachable Redis is retried every tick.
    pub async fn start(config: FleetConfig) -> Result<Fleet, Error> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| Error::config("redis_url", e.to_string()))?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.renew_interval))
            // (Each call has its own bound, up to the renew deadline: a slow answer that
            // still lands in time counts.)
            .set_response_timeout(Some(config.renew_deadline))
            .set_max_delay(config.renew_interval);
        let redis =
            redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())
                .map_err(|e| Error::config("redis_url", e.to_string()))?;
        // The application's messages (sends, forwarded inbound messages) on a connection of
        // their own: a burst of large ones must not delay a tick.
        let app_redis =
            redis::aio::ConnectionManager::new_lazy_with_config(client.clone(), manager.clone())
                .map_err(|e| Error::config("redis_url", e.to_string()))?;
        // Its own connection: its reads block for up to a poll, the ticks must not wait.
        let poll = config
            .renew_interval
            .min(std::time::Duration::from_millis(200));
        let reading = manager.set_response_timeout(Some(config.renew_deadline + poll));
        let reader_redis = redis::aio::ConnectionManager::new_lazy_with_config(client, reading)
            .map_err(|e| Error::config("redis_url", e.to_string()))?;
        let supervisor = SupervisorActor::new(config.supervisor).start();
        let stats = Arc::new(Mutex::new(FleetStats::default()));
        let held = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let keys: Arc<BTreeSet<String>> = Arc::new(config.keys.iter().cloned().collect());
        let sender = FleetSender::new(app_redis.clone(), &config.fleet, Some(keys));
        let reader = streams::Reader::new(
            reader_redis,
            &config.fleet,
            &config.node,
            supervisor.clone(),
            Arc::clone(&held),
            Arc::clone(&stats),
            poll,
        );
        let reader = actix_rt::spawn(reader.run());
        let forwarder = config
            .forward_inbound
            .map(|max_len| inbound::start(app_redis, &config.fleet, max_len, Arc::clone(&stats)));
        let (leave, leave_rx) = oneshot::channel();
        let node = node::Node::new(
            config,
            redis,
            supervisor.clone(),
            Arc::clone(&stats),
            held,
            forwarder.map(|f| f.recipient()),
        );
        actix_rt::spawn(node.run(leave_rx));
        Ok(Fleet {
            stats,
            supervisor,
            sender,
            reader,
            leave: Some(leave),
        })
    }

    /// The node's view of the fleet as of its last tick.
    pub fn stats(&self) -> FleetStats {
        self.stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The supervisor that runs this node's sockets (to subscribe to them, send to a key).
    pub fn supervisor(&self) -> &Addr<SupervisorActor> {
        &self.supervisor
    }

    /// Appends `message` to `key`'s stream, for whichever node owns the key
    /// ([`FleetSender::send`]).
    pub async fn send(&self, key: &str, message: impl AsRef<str>) -> Result<String, Error> {
        self.sender.send(key, message).await
    }

    /// A sender to the fleet's keys, to hand to other tasks.
    pub fn sender(&self) -> FleetSender {
        self.sender.clone()
    }

    /// Leaves the fleet: stops every socket, releases its leases and its membership, so the
    /// other nodes take its keys at their next tick instead of after the TTL. Stream entries
    /// read and not yet written are claimed by the keys' next owners.
    pub async fn leave(mut self) {
        if let Some(leave) = self.leave.take() {
            let (done, finished) = oneshot::channel();
            if leave.send(done).is_ok() {
                let _ = finished.await;
            }
        }
        self.reader.abort();
    }
}
