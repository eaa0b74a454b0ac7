//! The fleet's state in Redis, changed only by atomic scripts: members with an expiry, one
//! lease per key (owner node, TTL), a fencing token per key, and the fleet's epoch (which
//! changes when Redis lost its data). One tick is one script call for all of a node's leases.
//!
//! Keys, all under one hash tag so that a cluster keeps them on one slot:
//! `resocket:{FLEET}:nodes` (sorted set, score = expiry in Redis time),
//! `resocket:{FLEET}:epoch`, `resocket:{FLEET}:lease:KEY`, `resocket:{FLEET}:token:KEY`, and
//! the stream of messages to a key, `resocket:{FLEET}:to:KEY` (see `streams.rs`).

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;

/// The names of one fleet's Redis keys.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    pub(crate) fn new(fleet: &str) -> Self {
        Names {
            prefix: format!("resocket:{{{fleet}}}"),
        }
    }

    pub(crate) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    pub(crate) fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    pub(crate) fn lease(&self, key: &str) -> String {
        format!("{}:lease:{key}", self.prefix)
    }

    pub(crate) fn token(&self, key: &str) -> String {
        format!("{}:token:{key}", self.prefix)
    }

    /// Each member's key-list fingerprint.
    pub(crate) fn lists(&self) -> String {
        format!("{}:lists", self.prefix)
    }

    /// The key list with fingerprint `fingerprint`.
    pub(crate) fn key_list(&self, fingerprint: &str) -> String {
        format!("{}:keys:{fingerprint}", self.prefix)
    }

    /// The stream of what every key received (when forwarded).
    pub(crate) fn from(&self) -> String {
        format!("{}:from", self.prefix)
    }

    /// The counter of the sequence numbers of messages to `key`.
    pub(crate) fn seq(&self, key: &str) -> String {
        format!("{}:seq:{key}", self.prefix)
    }

    /// Per key, how far its entries' numbers are above its upstream's numbering (acked mode).
    pub(crate) fn offsets(&self) -> String {
        format!("{}:offsets", self.prefix)
    }

    /// The stream of messages to `key`.
    pub(crate) fn to(&self, key: &str) -> String {
        format!("{}:to:{key}", self.prefix)
    }
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Renewed {
    /// Still ours; its TTL starts again.
    Ours,
    /// Gone (Redis lost it) and taken back at once: nobody else could have taken it while
    /// the fleet's acquisitions wait out an epoch change.
    Reasserted,
    /// Another node holds it: stop the socket now.
    Lost,
}

/// One tick's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tick {
    /// The fleet's epoch: a new one means Redis lost its data since the last tick.
    pub(crate) epoch: String,
    /// The live members, sorted (this node included).
    pub(crate) nodes: Vec<String>,
    /// The fingerprint of each member's key list, in the order of `nodes` (None: a member
    /// that does not say).
    pub(crate) lists: Vec<Option<String>>,
    /// Whether this node's key list is stored under its fingerprint.
    pub(crate) listed: bool,
    /// For each lease renewed, in the order asked.
    pub(crate) renewed: Vec<Renewed>,
    /// How long ago, in Redis's time, the epoch began.
    pub(crate) epoch_age: Duration,
}

/// Heartbeat of this node, pruning of expired members, and renewal of its leases, in one call.
/// KEYS: nodes, epoch, key-list fingerprints, this node's key list, lease... ARGV: node, node
/// TTL ms, lease TTL ms, a random number (for a new epoch: its creation time in Redis
/// milliseconds, a colon, the number), this node's key-list fingerprint. Returns the epoch,
/// the members, the renewals, Redis's time in milliseconds, each member's fingerprint, and
/// whether this node's key list is stored.
const TICK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[3], gone)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[5])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = string.format('%.0f', now) .. ':' .. ARGV[4]
  redis.call('SET', KEYS[2], epoch)
end
local nodes = redis.call('ZRANGE', KEYS[1], 0, -1)
local lists = redis.call('HMGET', KEYS[3], unpack(nodes))
local renewed = {}
for i = 5, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[3])
    renewed[#renewed + 1] = 1
  elseif not owner then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[3])
    renewed[#renewed + 1] = 2
  else
    renewed[#renewed + 1] = 0
  end
end
return {epoch, nodes, renewed, string.format('%.0f', now), lists, redis.call('EXISTS', KEYS[4])}
";

/// Takes every lease that is free. KEYS: lease, token, lease, token... ARGV: node, lease TTL
/// ms. Returns the fencing token of each (0: held by another node). Tokens grow per key, and
/// start above the current time in microseconds, so they keep growing after Redis lost them.
const ACQUIRE: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tokens = {}
for i = 1, #KEYS, 2 do
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    local token = math.max((tonumber(redis.call('GET', KEYS[i + 1])) or 0) + 1, now_us)
    redis.call('SET', KEYS[i + 1], string.format('%.0f', token))
    tokens[#tokens + 1] = string.format('%.0f', token)
  else
    tokens[#tokens + 1] = '0'
  end
end
return tokens
";

/// Gives up leases that are still ours. KEYS: lease... ARGV: node. Returns how many.
const RELEASE: &str = r"
local released = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    released = released + 1
  end
end
return released
";

/// Leaves the fleet: the member is removed at once (its leases are released separately).
const LEAVE: &str = r"
return redis.call('ZREM', KEYS[1], ARGV[1])
";

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// One fleet's scripts over one Redis connection.
pub(crate) struct Leases {
    redis: ConnectionManager,
    names: Names,
    node: String,
    tick: Script,
    acquire: Script,
    release: Script,
    leave: Script,
}

impl Leases {
    pub(crate) fn new(redis: ConnectionManager, fleet: &str, node: &str) -> Self {
        Leases {
            redis,
            names: Names::new(fleet),
            node: node.to_string(),
            tick: Script::new(TICK),
            acquire: Script::new(ACQUIRE),
            release: Script::new(RELEASE),
            leave: Script::new(LEAVE),
        }
    }

    /// Heartbeat, prune, renew `owned`.
    pub(crate) async fn tick(
        &mut self,
        owned: &[&str],
        node_ttl: Duration,
        lease_ttl: Duration,
        fresh_epoch: &str,
        fingerprint: &str,
    ) -> redis::RedisResult<Tick> {
        let mut call = self.tick.key(self.names.nodes());
        call.key(self.names.epoch())
            .key(self.names.lists())
            .key(self.names.key_list(fingerprint));
        for key in owned {
            call.key(self.names.lease(key));
        }
        call.arg(&self.node)
            .arg(millis(node_ttl))
            .arg(millis(lease_ttl))
            .arg(fresh_epoch)
            .arg(fingerprint);
        type Reply = (
            String,
            Vec<String>,
            Vec<u8>,
            String,
            Vec<Option<String>>,
            u8,
        );
        let (epoch, nodes, renewed, now, lists, listed): Reply =
            call.invoke_async(&mut self.redis).await?;
        let born = epoch
            .split(':')
            .next()
            .and_then(|ms| ms.parse::<u64>().ok());
        let now = now.parse::<u64>().ok();
        let epoch_age = match (born, now) {
            (Some(born), Some(now)) => Duration::from_millis(now.saturating_sub(born)),
            _ => Duration::ZERO, // not ours to read: treat as new
        };
        let renewed = renewed
            .into_iter()
            .map(|r| match r {
                1 => Renewed::Ours,
                2 => Renewed::Reasserted,
                _ => Renewed::Lost,
            })
            .collect();
        Ok(Tick {
            epoch,
            nodes,
            lists,
            listed: listed == 1,
            renewed,
            epoch_age,
        })
    }

    /// Stores this node's key list under its fingerprint (for nodes given other lists).
    pub(crate) async fn store_keys(
        &mut self,
        fingerprint: &str,
        keys: &[String],
    ) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        for chunk in keys.chunks(1000) {
            pipe.cmd("SADD")
                .arg(self.names.key_list(fingerprint))
                .arg(chunk)
                .ignore();
        }
        pipe.query_async(&mut self.redis).await
    }

    /// The key list stored under `fingerprint` (empty: not stored yet).
    pub(crate) async fn keys_of(
        &mut self,
        fingerprint: &str,
    ) -> redis::RedisResult<std::collections::BTreeSet<String>> {
        redis::cmd("SMEMBERS")
            .arg(self.names.key_list(fingerprint))
            .query_async(&mut self.redis)
            .await
    }

    /// Takes what is free among `keys`: the fencing token of each, or None.
    pub(crate) async fn acquire(
        &mut self,
        keys: &[&str],
        lease_ttl: Duration,
    ) -> redis::RedisResult<Vec<Option<u64>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut call = self.acquire.prepare_invoke();
        for key in keys {
            call.key(self.names.lease(key)).key(self.names.token(key));
        }
        call.arg(&self.node).arg(millis(lease_ttl));
        let tokens: Vec<String> = call.invoke_async(&mut self.redis).await?;
        Ok(tokens
            .into_iter()
            .map(|t| t.parse::<u64>().ok().filter(|t| *t > 0))
            .collect())
    }

    /// Gives up `keys` where they are still ours.
    pub(crate) async fn release(&mut self, keys: &[&str]) -> redis::RedisResult<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut call = self.release.prepare_invoke();
        for key in keys {
            call.key(self.names.lease(key));
        }
        call.arg(&self.node);
        call.invoke_async(&mut self.redis).await
    }

    /// Leaves the fleet's members.
    pub(crate) async fn leave(&mut self) -> redis::RedisResult<u64> {
        self.leave
            .key(self.names.nodes())
            .arg(&self.node)
            .invoke_async(&mut self.redis)
            .await
    }
}
