//! One fleet node's loop: each tick renews the membership and every lease in one Redis call,
//! places the keys over the live members, hands over what moved away (socket stopped first,
//! lease released after), and takes what is placed here and free (lease first, socket after).
//! A node that cannot renew stops every socket by its renew deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::Addr;
use futures_channel::oneshot;
use futures_util::future::{join_all, select, Either};
use log::{debug, info, warn};

use super::leases::{Leases, Renewed};
use super::placement;
use super::{FleetConfig, FleetStats, Lease};
use crate::backoff::SplitMix64;
use crate::{RandomSource, StartSocket, StopSocket, SupervisorActor};

/// A key whose socket runs here.
struct Held {
    token: u64,
}

pub(crate) struct Node {
    config: FleetConfig,
    leases: Leases,
    supervisor: Addr<SupervisorActor>,
    stats: Arc<Mutex<FleetStats>>,
    held: BTreeMap<String, Held>,
    /// The keys held, for the stream reader.
    shared_held: Arc<Mutex<BTreeSet<String>>>,
    /// Subscribed to every socket when inbound messages are forwarded.
    forward: Option<actix::Recipient<crate::InboundText>>,
    /// When the last tick that reached Redis was sent: every lease held was renewed then
    /// or later.
    renewed_at: Option<Instant>,
    epoch: Option<String>,
    /// No key is taken before this (after an epoch change, old owners reassert theirs).
    quiet_until: Option<Instant>,
    nodes: Vec<String>,
    rng: SplitMix64,
    /// A streak of failed ticks has been logged.
    warned: bool,
}

impl Node {
    pub(crate) fn new(
        config: FleetConfig,
        redis: redis::aio::ConnectionManager,
        supervisor: Addr<SupervisorActor>,
        stats: Arc<Mutex<FleetStats>>,
        shared_held: Arc<Mutex<BTreeSet<String>>>,
        forward: Option<actix::Recipient<crate::InboundText>>,
    ) -> Self {
        let leases = Leases::new(redis, &config.fleet, &config.node);
        Node {
            config,
            leases,
            supervisor,
            stats,
            held: BTreeMap::new(),
            shared_held,
            forward,
            renewed_at: None,
            epoch: None,
            quiet_until: None,
            nodes: Vec::new(),
            rng: SplitMix64::from_entropy(),
            warned: false,
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

    async fn tick(&mut self) {
        let sent = Instant::now();
        // First of all (a process that was paused may wake up past its deadline).
        self.enforce_deadline().await;
        let owned: Vec<String> = self.held.keys().cloned().collect();
        let owned_refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        // Bounded by the time left before the deadline, so a hung Redis cannot hold the
        // sockets past it.
        let budget = match (self.deadline(), owned.is_empty()) {
            (Some(deadline), false) => deadline
                .saturating_duration_since(sent)
                .min(self.config.renew_interval),
            _ => self.config.renew_interval,
        };
        let fresh_epoch = format!("{:016x}", self.rng.next_u64());
        let ticked = actix_rt::time::timeout(
            budget,
            self.leases.tick(
                &owned_refs,
                self.config.lease_ttl,
                self.config.lease_ttl,
                &fresh_epoch,
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
        self.place().await;
    }

    /// Hands over what moved away, takes what is placed here and free.
    async fn place(&mut self) {
        let placed = placement::place(
            &self.config.keys,
            &self.nodes,
            self.config.max_keys_per_node,
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
            if let Err(e) = self.leases.release(&refs).await {
                // They expire within the TTL all the same.
                debug!("resocket fleet {}: release failed: {e}", self.config.node);
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
        let budget = self.config.renew_interval;
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
            let lease = Lease {
                key: key.to_string(),
                token,
            };
            let config = match (self.config.socket)(&lease) {
                Ok(config) => config,
                Err(e) => {
                    warn!(
                        "resocket fleet {}: key {key}: socket definition failed: {e}",
                        self.config.node
                    );
                    continue; // the lease is held unused and renewed: no one else runs it
                }
            };
            let mut start = StartSocket::new(*key, config);
            if let Some(forward) = &self.forward {
                start = start.subscribe(crate::Subscribe::text(forward.clone()));
            }
            match self.supervisor.send(start).await {
                Ok(Ok(_)) => started += 1,
                Ok(Err(e)) => warn!("resocket fleet {}: key {key}: {e}", self.config.node),
                Err(e) => warn!("resocket fleet {}: supervisor: {e}", self.config.node),
            }
            self.held.insert(key.to_string(), Held { token });
        }
        self.share_held();
        if started > 0 {
            info!("resocket fleet {}: took {started} key(s)", self.config.node);
        }
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

    /// Tells the stream reader which keys are held now.
    fn share_held(&self) {
        let keys: BTreeSet<String> = self.held.keys().cloned().collect();
        match self.shared_held.lock() {
            Ok(mut held) => *held = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    fn update(&self, change: impl FnOnce(&mut FleetStats)) {
        let mut stats = match self.stats.lock() {
            Ok(stats) => stats,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut stats);
    }
}
