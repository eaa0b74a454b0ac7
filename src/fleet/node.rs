//! One fleet node's loop: each tick renews the membership and every lease in one Redis call,
//! places the keys over the live members, hands over what moved away (socket stopped first,
//! lease released after), and takes what is placed here and free (lease first, socket after).
//! A node that cannot renew stops every socket by its renew deadline.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::Addr;
use futures_channel::oneshot;
use futures_util::future::{join_all, select, Either};
use log::{debug, info, warn};

use super::leases::{Leases, Renewed};
use super::placement;
use super::{FleetConfig, FleetStats, Lease};
use crate::backoff::SplitMix64;
use crate::{RandomSource, StartSocket, StopSocket, SupervisorActor};

/// A key whose lease this node holds.
struct Held {
    token: u64,
    /// Whether its socket was started and has not been seen gone since.
    running: bool,
    /// Starts in a row that did not last a tick (a definition that failed, an upstream that
    /// refuses the key): the next start waits longer.
    failures: u32,
    /// When the socket may be started again.
    retry_at: Option<Instant>,
}

impl Held {
    fn new(token: u64) -> Self {
        Held {
            token,
            running: false,
            failures: 0,
            retry_at: None,
        }
    }
}

/// The wait before starting a key's socket again after `failures` starts in a row that
/// did not last: 250 ms doubling, at most 30 s.
fn revive_after(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.min(7)).unwrap_or(128);
    (Duration::from_millis(250) * factor).min(Duration::from_secs(30))
}

pub(crate) struct Node {
    config: FleetConfig,
    leases: Leases,
    supervisor: Addr<SupervisorActor>,
    stats: Arc<Mutex<FleetStats>>,
    held: BTreeMap<String, Held>,
    /// The keys whose socket runs, each with the generation of its socket (a new socket,
    /// a new generation: the stream reader delivers its unacknowledged entries again).
    shared_held: Arc<Mutex<BTreeMap<String, super::streams::Running>>>,
    generation: u64,
    /// Subscribed to every socket when inbound messages are forwarded.
    forward: Option<actix::Recipient<crate::InboundText>>,
    /// When the last tick that reached Redis was sent: every lease held was renewed then
    /// or later.
    renewed_at: Option<Instant>,
    epoch: Option<String>,
    /// No key is taken before this (after an epoch change, old owners reassert theirs).
    quiet_until: Option<Instant>,
    nodes: Vec<String>,
    /// The fingerprint of this node's key list.
    fingerprint: String,
    /// Each member's key-list fingerprint, in the order of `nodes`.
    lists: Vec<Option<String>>,
    /// The key lists of other fingerprints seen among the members.
    known_lists: BTreeMap<String, std::collections::BTreeSet<String>>,
    rng: SplitMix64,
    /// A streak of failed ticks has been logged.
    warned: bool,
    /// When the current tick began: sockets are started for at most a renew interval of it.
    tick_began: Instant,
}

impl Node {
    pub(crate) fn new(
        config: FleetConfig,
        redis: redis::aio::ConnectionManager,
        supervisor: Addr<SupervisorActor>,
        stats: Arc<Mutex<FleetStats>>,
        shared_held: Arc<Mutex<BTreeMap<String, super::streams::Running>>>,
        forward: Option<actix::Recipient<crate::InboundText>>,
    ) -> Self {
        let leases = Leases::new(redis, &config.fleet, &config.node);
        let fingerprint = placement::fingerprint(&config.keys);
        Node {
            fingerprint,
            lists: Vec::new(),
            known_lists: BTreeMap::new(),
            config,
            leases,
            supervisor,
            stats,
            held: BTreeMap::new(),
            shared_held,
            generation: 0,
            forward,
            renewed_at: None,
            epoch: None,
            quiet_until: None,
            nodes: Vec::new(),
            rng: SplitMix64::from_entropy(),
            warned: false,
            tick_began: Instant::now(),
        }
    }

    /// Ticks until asked to leave, then leaves.
    pub(crate) async fn run(mut self, leave: oneshot::Receiver<oneshot::Sender<()>>) {
        let mut leave = leave;
        loop {
            let started = Instant::now();
            self.tick().await;
            let next = started + self.config.renew_interval;
            let wait = actix_rt::time::sleep(next.saturating_duration_since(Instant::now()));
            match select(Box::pin(wait), leave).await {
                Either::Left((_, still)) => leave = still,
                Either::Right((asked, _)) => {
                    self.leave().await;
                    if let Ok(done) = asked {
                        let _ = done.send(());
                    }
                    return;
                }
            }
        }
    }

    /// The instant by which every socket must be stopping: the renew deadline after the
    /// last tick that reached Redis.
    fn deadline(&self) -> Option<Instant> {
        self.renewed_at.map(|at| at + self.config.renew_deadline)
    }

    /// How long a Redis call may take from `now`: until the deadline while keys are held,
    /// else the renew deadline.
    fn budget(&self, now: Instant) -> Duration {
        match self.deadline() {
            Some(deadline) if !self.held.is_empty() => deadline
                .saturating_duration_since(now)
                .max(Duration::from_millis(1)),
            _ => self.config.renew_deadline,
        }
    }

    async fn tick(&mut self) {
        let sent = Instant::now();
        self.tick_began = sent;
        // First of all (a process that was paused may wake up past its deadline).
        self.enforce_deadline().await;
        let owned: Vec<String> = self.held.keys().cloned().collect();
        let owned_refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        // Bounded by the time left before the deadline, so a hung Redis cannot hold the
        // sockets past it; a slow answer within it still counts (the next tick waits).
        let budget = self.budget(sent);
        let fresh_epoch = format!("{:016x}", self.rng.next_u64());
        let ticked = actix_rt::time::timeout(
            budget,
            self.leases.tick(
                &owned_refs,
                self.config.lease_ttl,
                self.config.lease_ttl,
                &fresh_epoch,
                &self.fingerprint,
            ),
        )
        .await;
        let tick = match ticked {
            Ok(Ok(tick)) => tick,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {budget:?}"),
                };
                self.update(|s| {
                    s.renewals_failed += 1;
                    s.redis_ok = false;
                });
                if !std::mem::replace(&mut self.warned, true) {
                    warn!(
                        "resocket fleet {}: Redis unreachable: {why}",
                        self.config.node
                    );
                } else {
                    debug!(
                        "resocket fleet {}: Redis unreachable: {why}",
                        self.config.node
                    );
                }
                self.enforce_deadline().await;
                return;
            }
        };
        if std::mem::replace(&mut self.warned, false) {
            info!("resocket fleet {}: Redis reachable again", self.config.node);
        }
        self.renewed_at = Some(sent);
        if self.epoch.as_deref() != Some(tick.epoch.as_str()) {
            if self.epoch.is_some() {
                warn!(
                    "resocket fleet {}: Redis lost the fleet's data (new epoch); keys are taken again after {:?}",
                    self.config.node, self.config.lease_ttl
                );
                self.update(|s| s.epoch_changes += 1);
            }
            // Old owners reassert their leases at their next tick, or stop by their deadline:
            // until then, a free lease is not proof that nobody runs the key.
            let left = self.config.lease_ttl.saturating_sub(tick.epoch_age);
            self.quiet_until = Some(sent + left);
            self.epoch = Some(tick.epoch);
        }
        let lost: Vec<String> = owned
            .iter()
            .zip(&tick.renewed)
            .filter(|(_, r)| **r == Renewed::Lost)
            .map(|(k, _)| k.clone())
            .collect();
        if !lost.is_empty() {
            warn!(
                "resocket fleet {}: {} key(s) held by another node now; their sockets stop",
                self.config.node,
                lost.len()
            );
            self.stop(&lost).await;
            self.update(|s| s.lost += lost.len() as u64);
        }
        self.nodes = tick.nodes;
        self.lists = tick.lists;
        self.learn_key_lists(tick.listed, sent).await;
        self.place().await;
        self.revive().await;
    }

    /// Stores this node's key list if Redis does not have it, and reads those of members
    /// given other lists (a rolling deploy): a key is placed only among the nodes that know it.
    async fn learn_key_lists(&mut self, listed: bool, sent: Instant) {
        let others: std::collections::BTreeSet<String> = self
            .lists
            .iter()
            .flatten()
            .filter(|fp| **fp != self.fingerprint)
            .cloned()
            .collect();
        self.known_lists.retain(|fp, _| others.contains(fp));
        let unknown: Vec<String> = others
            .into_iter()
            .filter(|fp| !self.known_lists.contains_key(fp))
            .collect();
        if listed && unknown.is_empty() {
            return;
        }
        let budget = self.budget(sent);
        let learned = actix_rt::time::timeout(budget, async {
            if !listed {
                self.leases
                    .store_keys(&self.fingerprint, &self.config.keys)
                    .await?;
            }
            for fp in unknown {
                let keys = self.leases.keys_of(&fp).await?;
                if !keys.is_empty() {
                    self.known_lists.insert(fp, keys);
                }
            }
            Ok::<(), redis::RedisError>(())
        })
        .await;
        if !matches!(learned, Ok(Ok(()))) {
            debug!(
                "resocket fleet {}: key lists not exchanged this tick",
                self.config.node
            );
        }
    }

    /// Hands over what moved away, takes what is placed here and free.
    async fn place(&mut self) {
        let (lists, known) = (&self.lists, &self.known_lists);
        let mine = &self.fingerprint;
        // A member with another key list (or one not read yet) gets only the keys it knows.
        let know = |i: usize, key: &str| match lists.get(i).and_then(Option::as_ref) {
            None => true,
            Some(fp) if fp == mine => true,
            Some(fp) => known.get(fp).is_some_and(|keys| keys.contains(key)),
        };
        let placed = placement::place(
            &self.config.keys,
            &self.nodes,
            self.config.max_keys_per_node,
            know,
        );
        let me = self.nodes.iter().position(|n| *n == self.config.node);
        let mut mine = Vec::new();
        let mut unplaced = 0;
        for (key, owner) in self.config.keys.iter().zip(&placed) {
            match owner {
                Some(i) if Some(*i) == me => mine.push(key.clone()),
                Some(_) => {}
                None => unplaced += 1,
            }
        }
        // Away: the socket first, the lease after, so the next owner never overlaps.
        let away: Vec<String> = self
            .held
            .keys()
            .filter(|k| mine.binary_search(k).is_err())
            .cloned()
            .collect();
        if !away.is_empty() {
            self.stop(&away).await;
            let refs: Vec<&str> = away.iter().map(String::as_str).collect();
            let budget = self.budget(Instant::now());
            match actix_rt::time::timeout(budget, self.leases.release(&refs)).await {
                Ok(Ok(_)) => {}
                // They expire within the TTL all the same.
                Ok(Err(e)) => debug!("resocket fleet {}: release failed: {e}", self.config.node),
                Err(_) => debug!("resocket fleet {}: release timed out", self.config.node),
            }
            info!(
                "resocket fleet {}: handed over {} key(s)",
                self.config.node,
                away.len()
            );
            self.update(|s| s.handoffs += away.len() as u64);
        }
        let free: Vec<&str> = mine
            .iter()
            .map(String::as_str)
            .filter(|k| !self.held.contains_key(*k))
            .collect();
        let quiet = self.quiet_until.is_some_and(|q| Instant::now() < q);
        if !free.is_empty() && !quiet {
            self.take(&free).await;
        }
        let waiting = mine.iter().filter(|k| !self.held.contains_key(*k)).count();
        let (nodes, owned) = (self.nodes.len(), self.held.len());
        self.update(|s| {
            s.nodes = nodes;
            s.owned = owned;
            s.waiting = waiting;
            s.unplaced = unplaced;
            s.redis_ok = true;
        });
    }

    /// Acquires the free leases among `keys` and starts their sockets.
    async fn take(&mut self, keys: &[&str]) {
        let budget = self.budget(Instant::now());
        let acquired =
            actix_rt::time::timeout(budget, self.leases.acquire(keys, self.config.lease_ttl)).await;
        let tokens = match acquired {
            Ok(Ok(tokens)) => tokens,
            Ok(Err(e)) => {
                return debug!("resocket fleet {}: acquire failed: {e}", self.config.node)
            }
            // The script may have run: what it took expires unrenewed, as it is not held.
            Err(_) => return debug!("resocket fleet {}: acquire timed out", self.config.node),
        };
        let mut started = 0;
        for (key, token) in keys.iter().zip(tokens) {
            let Some(token) = token else { continue };
            self.held.insert(key.to_string(), Held::new(token));
            // Definitions run on this thread: many slow ones must not carry the node past
            // its deadline. Past a renew interval the rest wait, held (so nobody else runs
            // them), for the next ticks to start.
            if self.past_deadline() {
                self.enforce_deadline().await;
                return;
            }
            if self.tick_too_long() {
                continue;
            }
            if self.start(key).await {
                started += 1;
            }
        }
        self.share_held();
        if started > 0 {
            info!("resocket fleet {}: took {started} key(s)", self.config.node);
        }
    }

    /// Starts `key`'s socket (its lease is held): the definition, then the supervisor. The
    /// socket is not restarted by the supervisor (policy Temporary) but by [`revive`], which
    /// calls the definition again and has the stream reader deliver what is unacknowledged.
    async fn start(&mut self, key: &str) -> bool {
        let Some(held) = self.held.get(key) else {
            return false;
        };
        let lease = Lease {
            key: key.to_string(),
            token: held.token,
        };
        let failed = |node: &Node, why: String| {
            warn!("resocket fleet {}: key {key}: {why}", node.config.node);
        };
        let mut acked = false;
        let started = match (self.config.socket)(&lease) {
            Err(e) => {
                failed(self, format!("socket definition failed: {e}"));
                false
            }
            Ok(config) => {
                acked = config.acked.is_some();
                let mut start =
                    StartSocket::new(key, config).policy(crate::RestartPolicy::Temporary);
                if let Some(forward) = &self.forward {
                    start = start.subscribe(crate::Subscribe::text(forward.clone()));
                }
                match self.supervisor.send(start).await {
                    Ok(Ok(_)) => true,
                    Ok(Err(e)) => {
                        failed(self, e.to_string());
                        false
                    }
                    Err(e) => {
                        failed(self, format!("supervisor: {e}"));
                        false
                    }
                }
            }
        };
        self.generation += 1;
        let generation = self.generation;
        if let Some(held) = self.held.get_mut(key) {
            held.running = started;
            if started {
                held.retry_at = None;
                if let Ok(mut shared) = self.shared_held.lock() {
                    let running = super::streams::Running { generation, acked };
                    shared.insert(key.to_string(), running);
                }
            } else {
                held.failures = held.failures.saturating_add(1);
                held.retry_at = Some(Instant::now() + revive_after(held.failures));
            }
        }
        started
    }

    /// Keys held whose socket is gone (it closed for good: a fatal error, given up, a panic)
    /// or never started: started again, after a wait that grows while they keep failing.
    async fn revive(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let Ok(running) = self.supervisor.send(crate::ListSockets).await else {
            return;
        };
        let now = Instant::now();
        let mut due = Vec::new();
        for (key, held) in &mut self.held {
            let alive = running.binary_search(key).is_ok();
            match (held.running, alive) {
                (true, true) => held.failures = 0, // it lasted a tick
                (true, false) => {
                    held.running = false;
                    held.failures = held.failures.saturating_add(1);
                    held.retry_at = Some(now + revive_after(held.failures));
                }
                (false, _) if held.retry_at.is_none_or(|at| at <= now) => due.push(key.clone()),
                (false, _) => {}
            }
        }
        if due.is_empty() {
            return;
        }
        if let Ok(mut shared) = self.shared_held.lock() {
            for key in &due {
                shared.remove(key);
            }
        }
        for key in &due {
            if self.past_deadline() {
                return self.enforce_deadline().await;
            }
            if self.tick_too_long() {
                return; // the next tick goes on
            }
            self.start(key).await;
        }
    }

    fn past_deadline(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Whether this tick has started sockets for a renew interval already.
    fn tick_too_long(&self) -> bool {
        self.tick_began.elapsed() >= self.config.renew_interval
    }

    /// Stops the sockets of `keys`, each Close bounded, and forgets them.
    async fn stop(&mut self, keys: &[String]) {
        // The reader stops delivering to them first.
        for key in keys {
            if let Some(held) = self.held.remove(key) {
                debug!(
                    "resocket fleet {}: key {key} (token {}) stopping",
                    self.config.node, held.token
                );
            }
        }
        self.share_held();
        let within = self.config.close_bound();
        let stops = keys.iter().map(|key| {
            self.supervisor
                .send(StopSocket::new(key.as_str()).within(within))
        });
        let _ = join_all(stops).await;
    }

    /// Past the renew deadline, every socket stops: its lease may be about to expire.
    async fn enforce_deadline(&mut self) {
        let past = self.deadline().is_some_and(|d| Instant::now() >= d);
        if past && !self.held.is_empty() {
            let keys: Vec<String> = self.held.keys().cloned().collect();
            warn!(
                "resocket fleet {}: no renewal for {:?}: stopping {} socket(s) before their leases expire",
                self.config.node,
                self.config.renew_deadline,
                keys.len()
            );
            self.stop(&keys).await;
            self.update(|s| {
                s.deadline_stops += 1;
                s.owned = 0;
            });
        }
    }

    /// Stops everything, gives the leases and the membership back.
    async fn leave(&mut self) {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        self.stop(&keys).await;
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let bound = self.config.renew_interval;
        let _ = actix_rt::time::timeout(bound, self.leases.release(&refs)).await;
        let _ = actix_rt::time::timeout(bound, self.leases.leave()).await;
        self.update(|s| s.owned = 0);
        info!("resocket fleet {}: left", self.config.node);
    }

    /// Tells the stream reader which keys are held now (those whose socket runs keep their
    /// generation).
    fn share_held(&self) {
        let mut shared = match self.shared_held.lock() {
            Ok(shared) => shared,
            Err(poisoned) => poisoned.into_inner(),
        };
        shared.retain(|key, _| self.held.get(key).is_some_and(|h| h.running));
    }

    fn update(&self, change: impl FnOnce(&mut FleetStats)) {
        super::update_stats(&self.stats, change);
    }
}
