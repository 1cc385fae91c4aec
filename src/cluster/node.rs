//! The node controller: heartbeats, the view of leases and live nodes, and for every
//! partition the one decision of `placement.rs` — own, take over, follow, leave — carried
//! out. It runs on the cluster runtime; the serving side (shards, registry actor) is
//! reached through [`Host`], so this module knows nothing of actors or HTTP.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::engine::{Engine, PartitionId};
use super::follower::{Followed, Follower, OnApplied};
use super::lease::{renew_loop, Held, LeaseCell, LeaseError, LeaseStore, LeaseTiming, LeaseValue, Observed};
use super::placement::{self, Action, View};
use super::plog::{self, PlogLimits, ReplicatedJournal, Stopped, TakeoverError};
use crate::domain::registry::Registry;
use crate::state::State;

/// What the serving side of a node does when partitions come and go.
pub trait Host: Send + Sync + 'static {
    /// Starts serving a partition this node now owns: `state` is applied through
    /// `log.last_assigned_lsn()`, new records go to `log`.
    fn install(&self, partition: PartitionId, state: State, log: ReplicatedJournal) -> BoxFuture<'static, ()>;
    /// Stops serving a partition and drops its state (it may hold records that were
    /// never acknowledged; the journal is the truth).
    fn remove(&self, partition: PartitionId) -> BoxFuture<'static, ()>;
    /// The registry as this node's follower applied it (when another node owns it).
    fn registry_followed(&self, registry: &Registry);
}

/// Settings of cluster mode.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    /// This node's HTTP address as other nodes reach it.
    pub advertise: String,
    pub partitions: u32,
    pub standbys: usize,
    pub timing: LeaseTiming,
    pub limits: PlogLimits,
    /// Where partition snapshots are written and read on their way to and from the
    /// object store (`<data-dir>/cluster-snapshots`).
    pub scratch_dir: std::path::PathBuf,
    /// The change feed's retention by age: the journal is purged only below it
    /// (`cluster::purge`).
    pub feed_retention: Duration,
}

/// A partition's owner as this node last saw its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub node: String,
    pub advertise: String,
    pub epoch: u64,
}

/// One partition in the view.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionView {
    pub id: String,
    pub owner: Option<Owner>,
    /// Owned and served by this node now (its lease valid).
    #[serde(skip)]
    pub local: bool,
    /// The nodes that should be following it, best first.
    pub standbys: Vec<String>,
    /// The node it belongs on: the best-ranked live node that is not draining. An
    /// owner elsewhere hands it over there once that node follows it closely.
    pub preferred: Option<String>,
    /// This node's position in its journal: as owner, the last LSN durable; as a
    /// standby, the last applied; otherwise 0.
    pub lsn: u64,
    /// Whether this node follows it as a standby.
    #[serde(skip)]
    pub following: bool,
    /// Entries a standby of this node is behind the journal's end (when following).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub standby_lag_entries: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub id: String,
    pub advertise: String,
    pub partitions_owned: usize,
    pub alive: bool,
    /// An operator is draining it (`zaiko cluster drain`).
    pub draining: bool,
}

/// What `/v1/admin/cluster` shows and the router reads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterView {
    pub node: String,
    pub partitions: Vec<PartitionView>,
    pub nodes: Vec<NodeView>,
}

/// The handle the serving side keeps.
#[derive(Clone)]
pub struct Node {
    pub cfg: Arc<NodeConfig>,
    pub engine: Engine,
    /// The partition snapshots (`cluster::snapshots`).
    pub snapshots: super::snapshots::Snapshots,
    /// The journal's purges after snapshots and the feed's checkpoints (`cluster::purge`).
    pub purger: super::purge::Purger,
    view: Arc<ArcSwap<ClusterView>>,
    /// The registry journal's stream sequence this node has applied (`u64::MAX` while
    /// it owns the registry: its own state is the newest).
    registry_seq: Arc<tokio::sync::watch::Sender<u64>>,
    /// Set once this node has read the registry as it was when the node started (or
    /// owns it): until then it takes no brand partition over and `/readyz` is 503.
    registry_ready: Arc<std::sync::atomic::AtomicBool>,
    /// Set to stop the controller (a clean shutdown).
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    controller: Arc<parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// Where a request for a partition goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Local,
    Forward(Owner),
    /// No owner now (a takeover is under way).
    Unavailable,
}

impl Node {
    pub fn view(&self) -> Arc<ClusterView> {
        self.view.load_full()
    }

    fn index(&self, p: PartitionId) -> usize {
        match p {
            PartitionId::Brand(n) => n as usize,
            PartitionId::Registry => self.cfg.partitions as usize,
        }
    }

    pub fn route(&self, p: PartitionId) -> Route {
        let view = self.view.load();
        match view.partitions.get(self.index(p)) {
            Some(v) if v.local => Route::Local,
            Some(PartitionView { owner: Some(o), .. }) if o.node != self.cfg.node_id => Route::Forward(o.clone()),
            _ => Route::Unavailable,
        }
    }

    pub fn partition_of(&self, brand: &str) -> PartitionId {
        PartitionId::Brand(super::engine::partition_of(brand, self.cfg.partitions))
    }

    /// Marks `node` as draining (or not): every node hands the partitions it owns on it
    /// over and places nothing on it until it is undrained.
    pub async fn set_draining(&self, node: &str, draining: bool) -> Result<(), String> {
        let key = drain_key(node);
        let kv = &self.engine.cluster;
        let res = if draining {
            kv.put(&key, "1".into()).await.map(|_| ()).map_err(|e| e.to_string())
        } else {
            kv.delete(&key).await.map_err(|e| e.to_string())
        };
        res.map_err(|e| format!("the cluster bucket did not take the change ({e}); retry"))
    }

    /// The stream sequence of the last entry of `p`'s journal now (0 if it has none).
    pub async fn journal_end(&self, p: PartitionId) -> Result<u64, String> {
        tokio::time::timeout(super::engine::API_TIMEOUT, plog::last_seq(&self.engine.journal, &p.subject()))
            .await
            .map_err(|_| "the journal did not answer in time".to_string())?
    }

    /// Whether this node has read the registry as it was when it started.
    pub fn registry_ready(&self) -> bool {
        self.registry_ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits (at most `bound`) until this node has applied the registry's journal up
    /// to its end now — before refusing a token it does not know, which may have just
    /// been created through another node. Returns whether it got there.
    pub async fn catch_up_registry(&self, bound: Duration) -> bool {
        if *self.registry_seq.borrow() == u64::MAX {
            return true;
        }
        let stream = &self.engine.journal;
        let wait = async {
            let target = plog::last_seq(stream, &PartitionId::Registry.subject()).await.ok()?;
            let mut rx = self.registry_seq.subscribe();
            rx.wait_for(|seq| *seq >= target).await.ok().map(|_| ())
        };
        matches!(tokio::time::timeout(bound, wait).await, Ok(Some(())))
    }
}

/// A heartbeat: the node's HTTP address (the revision moving is what says it lives),
/// and the partitions it follows closely enough to be handed them.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Heartbeat {
    advertise: String,
    sent_unix_ms: i64,
    /// Partitions this node follows as a standby at most [`HANDOVER_LAG_MAX`] entries
    /// behind their journal's end.
    #[serde(default)]
    caught_up: Vec<String>,
}

/// A standby at most this many entries behind may be handed its partition: the rest is
/// read in the takeover's catch-up, while the partition answers 503.
pub const HANDOVER_LAG_MAX: u64 = 64;
/// A node is handed partitions only once it has been live this many leases (a node
/// that is starting, or flapping, is not).
const HANDOVER_SETTLE_LEASES: u32 = 2;
/// At most one planned handover per this interval per node, so that a join or a
/// drain moves partitions one after the other, each briefly unavailable.
const HANDOVER_SPACING: Duration = Duration::from_millis(200);
/// The KV key (`ZAIKO_CLUSTER`) that marks a node as draining.
pub fn drain_key(node: &str) -> String {
    format!("drain.{node}")
}

/// A partition this node owns.
struct Owned {
    cell: Arc<LeaseCell>,
    journal: ReplicatedJournal,
    publisher: tokio::task::JoinHandle<Stopped>,
    renewal: tokio::task::JoinHandle<()>,
}

/// The controller's own state.
struct Controller {
    node: Node,
    host: Arc<dyn Host>,
    leases: LeaseStore,
    started: Instant,
    observed: HashMap<PartitionId, Observed>,
    /// Heartbeats: node → (revision, first seen at, advertise).
    nodes: HashMap<String, (u64, Instant, String)>,
    owned: HashMap<PartitionId, Owned>,
    following: HashMap<PartitionId, Follower>,
    /// Takeovers running now.
    taking: HashMap<PartitionId, tokio::task::JoinHandle<()>>,
    done_tx: mpsc::UnboundedSender<(PartitionId, Result<Owned, String>)>,
    /// Whether this node has applied the registry as it was when the node started (or
    /// owns it). Until then it takes no brand partition over: their commands check
    /// locations and brands against the registry, and a node that has not read it yet
    /// would refuse what the old owner accepted.
    registry_ready: bool,
    /// The registry journal's last stream sequence when this node first asked.
    registry_target: Option<u64>,
    /// What each node's last heartbeat said it follows closely.
    caught_up: HashMap<String, Vec<String>>,
    /// Since when each live node has been live (for [`HANDOVER_SETTLE_LEASES`]).
    live_since: HashMap<String, Instant>,
    /// Nodes an operator is draining: they own nothing, take nothing over and follow
    /// nothing once their partitions are handed over.
    draining: std::collections::BTreeSet<String>,
    /// When this node last handed a partition over.
    handed_at: Option<Instant>,
    /// Set when a direct read found a lease newer than the lease watch said: the watch
    /// is made again.
    lease_watch_behind: bool,
    /// The nodes partitions were placed on at the last step (what the view is
    /// published over).
    eligible: Vec<String>,
    /// The partitions this node follows closely, for the heartbeat task.
    caught_up_tx: tokio::sync::watch::Sender<Vec<String>>,
}

/// How often the controller looks at everything.
const TICK: Duration = Duration::from_millis(100);
/// A new node waits this many leases before taking partitions nobody ever owned, so
/// that nodes started together see each other and share them.
const FIRST_START_GRACE_LEASES: u32 = 2;

impl Node {
    /// Starts the controller on the current (cluster) runtime.
    pub fn start(cfg: NodeConfig, engine: Engine, host: Arc<dyn Host>) -> Node {
        let snapshots = super::snapshots::Snapshots::new(engine.snapshots.clone(), engine.journal.clone(), cfg.scratch_dir.clone());
        let checkpoints = super::purge::Checkpoints { kv: engine.cluster.clone(), objects: engine.snapshots.clone() };
        let purger = super::purge::Purger::new(checkpoints, engine.journal.clone(), snapshots.clone(), cfg.feed_retention);
        let node = Node {
            cfg: Arc::new(cfg),
            engine,
            snapshots,
            purger,
            view: Arc::default(),
            registry_seq: Arc::new(tokio::sync::watch::channel(0).0),
            registry_ready: Arc::default(),
            stop: Arc::new(tokio::sync::watch::channel(false).0),
            controller: Arc::default(),
        };
        let leases = LeaseStore { kv: node.engine.leases.clone(), timing: node.cfg.timing };
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let controller = Controller {
            node: node.clone(),
            host,
            leases,
            started: Instant::now(),
            observed: HashMap::new(),
            nodes: HashMap::new(),
            owned: HashMap::new(),
            following: HashMap::new(),
            taking: HashMap::new(),
            done_tx,
            registry_ready: false,
            registry_target: None,
            caught_up: HashMap::new(),
            live_since: HashMap::new(),
            draining: Default::default(),
            handed_at: None,
            lease_watch_behind: false,
            eligible: Vec::new(),
            caught_up_tx: tokio::sync::watch::channel(Vec::new()).0,
        };
        let task = tokio::spawn(controller.run(done_rx));
        *node.controller.lock() = Some(task);
        node
    }

    /// Stops the controller: every owned partition's publisher stops and its lease is
    /// given back, so that the partition's standby takes over at once instead of after
    /// a lease. Call it once the HTTP server has finished its in-flight requests.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let task = self.controller.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Controller {
    fn partitions(&self) -> impl Iterator<Item = PartitionId> {
        (0..self.node.cfg.partitions).map(PartitionId::Brand).chain(std::iter::once(PartitionId::Registry))
    }

    async fn run(mut self, mut done_rx: mpsc::UnboundedReceiver<(PartitionId, Result<Owned, String>)>) {
        let mut stop = self.node.stop.subscribe();
        // With history: each key's current value first (the leases and heartbeats written
        // before this node started), then every change.
        let mut lease_watch = self.node.engine.leases.watch_with_history(">").await.ok();
        let mut node_watch = self.node.engine.cluster.watch_with_history("node.*").await.ok();
        let mut drain_watch = self.node.engine.cluster.watch_with_history("drain.*").await.ok();
        let mut tick = tokio::time::interval(TICK);
        // Heartbeats go out on their own task: a put that waits out a stream leader
        // election must not hold the steps back.
        let beats = tokio::spawn(heartbeats(self.node.clone(), self.caught_up_tx.subscribe()));
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tick.tick() => self.step().await,
                Some(done) = done_rx.recv() => self.took_over(done.0, done.1).await,
                e = next(&mut lease_watch) => match e {
                    Some(entry) => self.saw_lease(entry),
                    None => lease_watch = self.node.engine.leases.watch_with_history(">").await.ok(),
                },
                e = next(&mut node_watch) => match e {
                    Some(entry) => self.saw_node(entry),
                    None => node_watch = self.node.engine.cluster.watch_with_history("node.*").await.ok(),
                },
                e = next(&mut drain_watch) => match e {
                    Some(entry) => self.saw_drain(entry),
                    None => drain_watch = self.node.engine.cluster.watch_with_history("drain.*").await.ok(),
                },
            }
            if std::mem::take(&mut self.lease_watch_behind) {
                lease_watch = self.node.engine.leases.watch_with_history(">").await.ok();
            }
        }
        self.stop_all().await;
        beats.abort();
    }

    /// The partitions this node follows closely (what its heartbeat says, for planned
    /// handovers).
    fn caught_up(&self) -> Vec<String> {
        let mut caught_up: Vec<String> = self
            .following
            .iter()
            .filter(|(_, f)| {
                let s = f.status();
                s.failed.is_none() && s.applied_at.is_some() && s.lag_entries <= HANDOVER_LAG_MAX
            })
            .map(|(p, _)| p.to_string())
            .collect();
        caught_up.sort();
        caught_up
    }

    fn saw_lease(&mut self, e: async_nats::jetstream::kv::Entry) {
        tracing::debug!(key = %e.key, revision = e.revision, "lease seen");
        let Some(p) = parse_lease_key(&e.key) else { return };
        let value = (e.operation == async_nats::jetstream::kv::Operation::Put).then(|| serde_json::from_slice(&e.value).ok()).flatten();
        let now = Instant::now();
        self.observed.entry(p).or_insert_with(|| Observed { value: None, revision: 0, at: now }).update(value, e.revision, now);
    }

    fn saw_node(&mut self, e: async_nats::jetstream::kv::Entry) {
        let Some(id) = e.key.strip_prefix("node.") else { return };
        let Ok(hb) = serde_json::from_slice::<Heartbeat>(&e.value) else { return };
        let now = Instant::now();
        // A heartbeat first seen now may be old (the watch starts with each key's last
        // value): it counts from when it was sent, by the sender's clock.
        let age_ms = u64::try_from(chrono::Utc::now().timestamp_millis().saturating_sub(hb.sent_unix_ms)).unwrap_or(0);
        let seen = now.checked_sub(Duration::from_millis(age_ms)).unwrap_or(now);
        let entry = self.nodes.entry(id.to_string()).or_insert((0, seen, hb.advertise.clone()));
        if entry.0 != e.revision {
            *entry = (e.revision, if entry.0 == 0 { seen } else { now }, hb.advertise);
        }
        self.caught_up.insert(id.to_string(), hb.caught_up);
    }

    fn saw_drain(&mut self, e: async_nats::jetstream::kv::Entry) {
        let Some(id) = e.key.strip_prefix("drain.") else { return };
        if e.operation == async_nats::jetstream::kv::Operation::Put {
            if self.draining.insert(id.to_string()) {
                tracing::info!(node = id, "node draining: its partitions are handed over and it takes none");
            }
        } else if self.draining.remove(id) {
            tracing::info!(node = id, "node no longer draining: it takes its share of partitions again");
        }
    }

    /// The live nodes partitions may be placed on: not the draining ones (unless every
    /// live node drains).
    fn eligible(&self, live: &[String]) -> Vec<String> {
        let eligible: Vec<String> = live.iter().filter(|n| !self.draining.contains(*n)).cloned().collect();
        if eligible.is_empty() {
            live.to_vec()
        } else {
            eligible
        }
    }

    /// A planned handover: hands one owned partition (at most one per
    /// [`HANDOVER_SPACING`]) to the node it should be on — the best-ranked eligible node —
    /// once that node has been live a while and follows it closely. This node stops
    /// serving it (in-flight entries finish), releases the lease, and the other node
    /// takes it over at once. Moves partitions to a node that joins (or comes back),
    /// and away from a draining one.
    async fn rebalance(&mut self, eligible: &[String], now: Instant) {
        if self.handed_at.is_some_and(|at| now.duration_since(at) < HANDOVER_SPACING) {
            return;
        }
        let settle = self.node.cfg.timing.lease * HANDOVER_SETTLE_LEASES;
        let refs: Vec<&str> = eligible.iter().map(String::as_str).collect();
        let mut owned: Vec<PartitionId> = self.owned.keys().copied().collect();
        owned.sort();
        for p in owned {
            let Some(best) = placement::rank(p, &refs).first().map(|n| n.to_string()) else { continue };
            if best == self.node.cfg.node_id {
                continue;
            }
            let settled = self.live_since.get(&best).is_some_and(|at| now.duration_since(*at) >= settle);
            let close = self.caught_up.get(&best).is_some_and(|c| c.iter().any(|x| *x == p.to_string()));
            if !(settled && close) {
                continue;
            }
            self.handed_at = Some(now);
            let Some(o) = self.owned.remove(&p) else { continue };
            tracing::info!(partition = %p, to = %best, "handing the partition over (planned)");
            self.give_up(p, o).await;
            metrics::counter!("zaiko_cluster_handovers_total").increment(1);
            return;
        }
    }

    /// Stops serving an owned partition: its publisher stops after what it has in
    /// flight, the actors drop it, and the lease is released so that the next owner need
    /// not wait for it to expire.
    async fn give_up(&mut self, p: PartitionId, o: Owned) {
        let (held, _) = self.retire(p, o).await;
        if let Err(e) = self.leases.release(&held).await {
            tracing::warn!(partition = %p, error = %e, "could not release the lease; it expires by itself");
        }
    }

    /// Stops serving a partition already taken out of `owned`, and says why its
    /// publisher ended. The view says so first, so that requests stop coming here
    /// while the rest waits on JetStream. The journal is given up, not only stopped:
    /// the renewal task is stopped here, and a publisher waiting for it to revive a
    /// lapsed lease (an ack that came late, in a stream leader election) would wait
    /// for ever — and this controller with it, its view saying "local" for a
    /// partition whose journal had stopped.
    async fn retire(&mut self, p: PartitionId, o: Owned) -> (Held, String) {
        self.publish_view(&self.eligible, Instant::now());
        o.journal.give_up();
        o.renewal.abort();
        let why = match o.publisher.await {
            Ok(why) => why.to_string(),
            Err(e) => e.to_string(),
        };
        self.host.remove(p).await;
        (o.cell.held(), why)
    }

    fn live(&self, now: Instant) -> Vec<String> {
        let lease = self.node.cfg.timing.lease;
        let mut live: Vec<String> =
            self.nodes.iter().filter(|(_, (_, at, _))| now.duration_since(*at) < lease).map(|(id, _)| id.clone()).collect();
        if !live.contains(&self.node.cfg.node_id) {
            live.push(self.node.cfg.node_id.clone());
        }
        live.sort();
        live
    }

    /// One look at every partition.
    async fn step(&mut self) {
        let now = Instant::now();
        self.reap_owned().await;
        let live = self.live(now);
        self.live_since.retain(|n, _| live.contains(n));
        for n in &live {
            self.live_since.entry(n.clone()).or_insert(now);
        }
        // Decisions are made over the eligible nodes: a draining node is nobody's
        // candidate (it keeps what it owns until `rebalance` hands it over).
        let eligible = self.eligible(&live);
        self.eligible.clone_from(&eligible);
        let live_refs: Vec<&str> = eligible.iter().map(String::as_str).collect();
        let first_grace = self.node.cfg.timing.lease * FIRST_START_GRACE_LEASES;
        let partitions: Vec<PartitionId> = self.partitions().collect();
        for p in partitions {
            let observed = self.observed.get(&p).cloned().unwrap_or(Observed { value: None, revision: 0, at: self.started });
            // The registry is followed by every node: its tokens authenticate everywhere.
            let standbys = if p == PartitionId::Registry { usize::MAX } else { self.node.cfg.standbys };
            let view = View {
                me: &self.node.cfg.node_id,
                partition: p,
                live: &live_refs,
                lease: &observed,
                owned_here: self.owned.contains_key(&p) || self.taking.contains_key(&p),
                standbys,
                timing: &self.node.cfg.timing,
                now,
            };
            let mut action = placement::decide(&view);
            if p == PartitionId::Registry && action == Action::Leave {
                // A draining node still follows the registry: its tokens authenticate
                // what it forwards.
                action = Action::Follow;
            }
            match action {
                Action::Own => {}
                Action::TakeOver if observed.value.is_none() && now.duration_since(self.started) < first_grace => {}
                Action::TakeOver if p != PartitionId::Registry && !self.registry_ready => {}
                Action::TakeOver => self.start_takeover(p, observed).await,
                Action::Follow => self.follow(p),
                Action::Leave => {
                    if let Some(f) = self.following.remove(&p) {
                        drop(f.stop().await);
                    }
                }
            }
            // A follower that stopped (consumer gone, error) is started again next tick.
            if self.following.get(&p).is_some_and(Follower::is_finished) {
                if let Some(f) = self.following.remove(&p) {
                    tracing::warn!(partition = %p, failed = ?f.status().failed, "standby stopped; restarting it from the start of the journal");
                }
            }
        }
        let caught_up = self.caught_up();
        self.caught_up_tx.send_if_modified(|c| std::mem::replace(c, caught_up.clone()) != caught_up);
        if self.registry_ready {
            self.rebalance(&eligible, now).await;
        }
        self.publish_view(&eligible, now);
        let registry_seq = if self.owned.contains_key(&PartitionId::Registry) {
            u64::MAX
        } else {
            self.following.get(&PartitionId::Registry).map_or(0, |f| f.status().last_seq)
        };
        self.node.registry_seq.send_if_modified(|seq| std::mem::replace(seq, registry_seq) != registry_seq);
        if !self.registry_ready {
            if self.registry_target.is_none() {
                self.registry_target = plog::last_seq(&self.node.engine.journal, &PartitionId::Registry.subject()).await.ok();
            }
            if self.registry_target.is_some_and(|target| registry_seq >= target) {
                tracing::info!("the registry is read up to where it was at start; taking partitions over from now on");
                self.registry_ready = true;
                self.node.registry_ready.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// A clean stop: takeovers abandoned, followers stopped, every owned partition's
    /// publisher stopped (after what it has in flight) and its lease released.
    async fn stop_all(&mut self) {
        for (_, t) in self.taking.drain() {
            t.abort();
        }
        for (_, f) in self.following.drain() {
            drop(f.stop().await);
        }
        let owned: Vec<(PartitionId, Owned)> = self.owned.drain().collect();
        for (p, o) in owned {
            self.give_up(p, o).await;
        }
        tracing::info!("cluster node stopped; its partitions' leases are released");
    }

    /// Gives up owned partitions whose publisher stopped or whose lease was lost.
    async fn reap_owned(&mut self) {
        let gone: Vec<PartitionId> =
            self.owned.iter().filter(|(_, o)| o.publisher.is_finished() || o.cell.is_lost()).map(|(p, _)| *p).collect();
        for p in gone {
            let o = self.owned.remove(&p).expect("listed above");
            let (_, why) = self.retire(p, o).await;
            tracing::warn!(partition = %p, reason = %why, "gave the partition up");
            metrics::counter!("zaiko_cluster_stepdowns_total").increment(1);
        }
    }

    fn follow(&mut self, p: PartitionId) {
        if self.following.contains_key(&p) {
            return;
        }
        let on_applied: Option<OnApplied> = (p == PartitionId::Registry).then(|| {
            let host = self.host.clone();
            Box::new(move |s: &State| host.registry_followed(&s.registry)) as OnApplied
        });
        let seed = Some(self.node.snapshots.clone());
        let f = Follower::start(self.node.engine.journal.clone(), p, Followed::default(), on_applied, seed);
        self.following.insert(p, f);
    }

    async fn start_takeover(&mut self, p: PartitionId, observed: Observed) {
        let from = match self.following.remove(&p) {
            Some(f) => f.stop().await,
            None => Followed::default(),
        };
        let node = self.node.clone();
        let leases = self.leases.clone();
        let host = self.host.clone();
        let done = self.done_tx.clone();
        tracing::info!(partition = %p, epoch = observed.next_epoch(), "taking the partition over");
        let task = tokio::spawn(async move {
            let started = Instant::now();
            // Nothing applied yet: start from the partition's newest snapshot, if any.
            let from = match from.rule.last_seq {
                0 => match node.snapshots.newest(p).await {
                    Ok(found) => found.unwrap_or(from),
                    Err(e) => {
                        tracing::warn!(partition = %p, error = %e, "cannot read the partition's snapshots; replaying its whole journal");
                        from
                    }
                },
                _ => from,
            };
            let res = take_over(&node, &leases, p, observed, from).await;
            if let Ok((state, owned)) = res {
                host.install(p, state, owned.journal.clone()).await;
                metrics::histogram!("zaiko_cluster_takeover_seconds").record(started.elapsed().as_secs_f64());
                let _ = done.send((p, Ok(owned)));
            } else if let Err(e) = res {
                let _ = done.send((p, Err(e)));
            }
        });
        self.taking.insert(p, task);
    }

    async fn took_over(&mut self, p: PartitionId, res: Result<Owned, String>) {
        tracing::debug!(partition = %p, ok = res.is_ok(), "takeover finished");
        self.taking.remove(&p);
        match res {
            Ok(owned) => {
                tracing::info!(partition = %p, epoch = owned.cell.epoch(), "now the owner");
                self.owned.insert(p, owned);
            }
            Err(e) => {
                tracing::info!(partition = %p, reason = %e, "takeover did not happen");
                self.reread_lease(p).await;
            }
        }
    }

    /// After a takeover that did not happen: the lease as the bucket has it now. A KV
    /// watch can fall silent without an error (seen once in the tests, a node started
    /// while the cluster's streams were being created): a node that only listened to
    /// it tried the same takeover every tick for minutes, on a view that never moved.
    async fn reread_lease(&mut self, p: PartitionId) {
        let Ok((value, revision)) = self.leases.read(&p.lease_key()).await else { return };
        let seen = self.observed.get(&p).map_or(0, |o| o.revision);
        if revision > seen {
            tracing::warn!(partition = %p, seen, revision, "the lease watch is behind the bucket; watching again");
            self.observed.insert(p, Observed { value, revision, at: Instant::now() });
            self.lease_watch_behind = true;
        }
    }

    /// Publishes what this node sees; standbys are ranked over `eligible`.
    fn publish_view(&self, eligible: &[String], now: Instant) {
        let live_refs: Vec<&str> = eligible.iter().map(String::as_str).collect();
        let mut owned_by: BTreeMap<String, usize> = BTreeMap::new();
        let partitions: Vec<PartitionView> = self
            .partitions()
            .map(|p| {
                let owner = self.observed.get(&p).and_then(|o| o.owner().cloned()).map(|v| Owner {
                    node: v.node,
                    advertise: v.advertise,
                    epoch: v.epoch,
                });
                if let Some(o) = &owner {
                    *owned_by.entry(o.node.clone()).or_default() += 1;
                }
                let mine = self.owned.get(&p);
                let local = mine.is_some_and(|o| o.cell.valid_at(now) && !o.journal.is_stopped());
                // Our own write may not have come back through the watch yet.
                let owner = match (mine, owner) {
                    (Some(o), _) => Some(Owner {
                        node: self.node.cfg.node_id.clone(),
                        advertise: self.node.cfg.advertise.clone(),
                        epoch: o.cell.epoch(),
                    }),
                    (None, owner) => owner,
                };
                let follower = self.following.get(&p);
                let lsn = mine.map(|o| o.journal.durable_lsn()).or(follower.map(|f| f.status().lsn)).unwrap_or(0);
                let standbys: Vec<String> = placement::rank(p, &live_refs)
                    .into_iter()
                    .filter(|n| owner.as_ref().is_none_or(|o| o.node != *n))
                    .take(if p == PartitionId::Registry { usize::MAX } else { self.node.cfg.standbys })
                    .map(str::to_string)
                    .collect();
                let standby_lag_entries = follower.map(|f| f.status().lag_entries);
                let preferred = placement::rank(p, &live_refs).first().map(|n| n.to_string());
                let label = p.to_string();
                metrics::gauge!("zaiko_cluster_partition_owned", "partition" => label.clone()).set(if local { 1.0 } else { 0.0 });
                metrics::gauge!("zaiko_cluster_partition_epoch", "partition" => label.clone())
                    .set(owner.as_ref().map_or(0.0, |o| o.epoch as f64));
                metrics::gauge!("zaiko_cluster_partition_lsn", "partition" => label.clone()).set(lsn as f64);
                if let Some(status) = follower.map(Follower::status) {
                    // Seconds behind: how long ago the standby applied its last entry,
                    // while entries after it are waiting (0 when it has read them all).
                    let behind = match status.applied_at {
                        Some(at) if status.lag_entries > 0 => now.saturating_duration_since(at).as_secs_f64(),
                        _ => 0.0,
                    };
                    metrics::gauge!("zaiko_cluster_standby_lag_entries", "partition" => label.clone()).set(status.lag_entries as f64);
                    metrics::gauge!("zaiko_cluster_standby_lag_seconds", "partition" => label).set(behind);
                }
                PartitionView {
                    id: p.to_string(),
                    owner,
                    local,
                    standbys,
                    preferred,
                    lsn,
                    following: follower.is_some(),
                    standby_lag_entries,
                }
            })
            .collect();
        let nodes = self
            .nodes
            .iter()
            .map(|(id, (_, at, advertise))| NodeView {
                id: id.clone(),
                advertise: advertise.clone(),
                partitions_owned: owned_by.get(id).copied().unwrap_or(0),
                alive: now.duration_since(*at) < self.node.cfg.timing.lease || *id == self.node.cfg.node_id,
                draining: self.draining.contains(id),
            })
            .collect();
        self.node.view.store(Arc::new(ClusterView { node: self.node.cfg.node_id.clone(), partitions, nodes }));
    }
}

/// Puts this node's heartbeat every renewal interval, with the partitions it follows
/// closely as the controller's last step saw them.
async fn heartbeats(node: Node, caught_up: tokio::sync::watch::Receiver<Vec<String>>) {
    let mut beat = tokio::time::interval(node.cfg.timing.renew_every());
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let key = format!("node.{}", node.cfg.node_id);
    loop {
        beat.tick().await;
        let caught_up = caught_up.borrow().clone();
        let hb = Heartbeat { advertise: node.cfg.advertise.clone(), sent_unix_ms: chrono::Utc::now().timestamp_millis(), caught_up };
        if let Err(e) = node.engine.cluster.put(&key, serde_json::to_vec(&hb).expect("heartbeat").into()).await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
    }
}

async fn next(w: &mut Option<async_nats::jetstream::kv::Watch>) -> Option<async_nats::jetstream::kv::Entry> {
    match w {
        Some(w) => match w.next().await {
            Some(Ok(e)) => Some(e),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "a KV watch failed; watching again");
                None
            }
            None => None,
        },
        // No watch (the bucket was unreachable): try again after a pause.
        None => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            None
        }
    }
}

fn parse_lease_key(key: &str) -> Option<PartitionId> {
    if key == "registry" {
        return Some(PartitionId::Registry);
    }
    key.strip_prefix("p.")?.parse().ok().map(PartitionId::Brand)
}

/// Takes a partition over: the lease, the catch-up, the takeover marker; then starts
/// the publisher and the renewals.
async fn take_over(
    node: &Node,
    leases: &LeaseStore,
    p: PartitionId,
    observed: Observed,
    mut from: Followed,
) -> Result<(State, Owned), String> {
    let held: Held = leases.take(&p.lease_key(), &observed, &node.cfg.node_id, &node.cfg.advertise).await.map_err(|e| e.to_string())?;
    let cell = LeaseCell::new(held);
    let renewal = tokio::spawn(renew_loop(leases.clone(), cell.clone(), std::future::pending()));
    let result = async {
        loop {
            if !cell.valid_at(Instant::now()) {
                return Err("the lease lapsed during the catch-up".to_string());
            }
            from.catch_up(&node.engine.journal, p).await.map_err(|e| e.to_string())?;
            match plog::publish_takeover(&node.engine.js, &p.subject(), cell.epoch(), from.rule.next_lsn, from.rule.last_seq).await {
                Ok(seq) => return Ok(seq),
                Err(TakeoverError::Moved) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    .await;
    let marker_seq = match result {
        Ok(seq) => seq,
        Err(e) => {
            renewal.abort();
            // Give the lease back so the next candidate need not wait for it to expire.
            if let Err(LeaseError::Unavailable { .. }) = leases.release(&cell.held()).await {
                tracing::debug!(partition = %p, "could not release the lease after a failed takeover");
            }
            return Err(e);
        }
    };
    let next_lsn = from.rule.next_lsn;
    let journal = ReplicatedJournal::new(p.subject(), node.cfg.limits, next_lsn, cell.clone());
    let publisher = tokio::spawn(journal.clone().publish_loop(node.engine.js.clone(), node.engine.journal.clone(), marker_seq));
    Ok((from.state, Owned { cell, journal, publisher, renewal }))
}

/// The lease's value as an [`Owner`].
impl From<LeaseValue> for Owner {
    fn from(v: LeaseValue) -> Owner {
        Owner { node: v.node, advertise: v.advertise, epoch: v.epoch }
    }
}
