//! One raft member: openraft started over our redb store and gRPC transport, the leadership
//! watch with the quorum lease, and the few operations the node needs (initialize, propose,
//! membership changes, shutdown).
//!
//! Must not import `registry`, `gossip`, `api` or `node`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use openraft::Instant as _;
use openraft::{Config, Raft, ServerState};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::contact::{plan, LeaderContact, Standing, TickPlan};
use super::leadership::{role_at, Leadership, Lease, RaftView};
use super::network::pb::raft_server::RaftServer;
use super::network::{ClusterTag, CurrentRaft, Faults, NetworkFactory, RaftService};
use super::store::{open, MachineReader, StateMachineStore, StoreError};
use super::types::{Machine, Proposal, RaftNode, TypeConfig};
use crate::metrics::RAFT;

/// Log entries between two snapshots.
const SNAPSHOT_EVERY_ENTRIES: u64 = 50_000;
/// How long `shutdown` waits for openraft to release the storage files.
const RELEASE_WAIT: Duration = Duration::from_secs(3);

/// The openraft instance over muster's store.
pub type MusterRaft<M> = Raft<TypeConfig, StateMachineStore<M>>;

/// Election and lease timing, one preset per `--profile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for a random time in [min, max] starts an election.
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// How long a quorum ack keeps the server role; shorter than `election_min_ms`.
    pub lease_ms: u64,
}

impl RaftTiming {
    /// LAN: a failed leader is replaced in about 1.5 s. (openraft's followers refuse votes for
    /// `election_max_ms` after the last heartbeat, so failover takes that plus one more
    /// randomized election timeout at most.)
    pub fn lan() -> Self {
        RaftTiming { heartbeat_ms: 150, election_min_ms: 500, election_max_ms: 900, lease_ms: 450 }
    }
    /// WAN: slower links, fewer false elections.
    pub fn wan() -> Self {
        RaftTiming { heartbeat_ms: 500, election_min_ms: 2500, election_max_ms: 5000, lease_ms: 2000 }
    }
    /// One host or a very fast network (tests).
    pub fn local() -> Self {
        RaftTiming { heartbeat_ms: 50, election_min_ms: 250, election_max_ms: 500, lease_ms: 180 }
    }

    /// openraft's own `heartbeat_interval`: three of our heartbeat periods (below the election
    /// timeout). It sets openraft's tick (13/64 of it: 91 ms on `lan`), which checks the
    /// election timer; elections start up to one tick after the randomized timeout. The tick
    /// runs only where an election may be due (see [`super::contact`]), so openraft never sends
    /// heartbeats of its own: the leader's come from [`pace_heartbeats`] every
    /// [`RaftTiming::heartbeat_ms`].
    pub fn openraft_heartbeat_ms(&self) -> u64 {
        (self.heartbeat_ms * 3).min(self.election_min_ms.saturating_sub(1)).max(self.heartbeat_ms)
    }

    /// openraft's tick period: 13/64 of its heartbeat interval.
    pub fn tick_ms(&self) -> u64 {
        (self.openraft_heartbeat_ms() * 13 / 64).max(1)
    }

    /// How long a voter may go without hearing its leader before openraft's tick runs again
    /// (see [`super::contact`]): the shortest election timeout less one and a half ticks, so
    /// that the first tick after it (at most one period later) still comes before that
    /// timeout, with half a period to spare for a late wake-up. Never below our heartbeat
    /// period, so that a follower hearing every heartbeat does not run the tick.
    pub fn quiet_ms(&self) -> u64 {
        self.election_min_ms.saturating_sub(self.tick_ms() * 3 / 2).max(self.heartbeat_ms)
    }

    pub fn lease(&self) -> Lease {
        let lease = Duration::from_millis(self.lease_ms);
        Lease { lease, lock_delay: lease }
    }
}

/// What one member needs to start.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub id: u64,
    pub node: RaftNode,
    pub data_dir: PathBuf,
    pub timing: RaftTiming,
    pub faults: Faults,
    /// TLS for raft calls to peers (and the registrar's forwarding); none: h2c.
    pub tls: Option<Arc<crate::tls::live::LiveTls>>,
}

/// Errors from consensus operations.
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("raft storage: {0}")]
    Store(#[from] StoreError),
    #[error("invalid raft config: {0}")]
    Config(String),
    #[error("raft stopped: {0}")]
    Fatal(String),
    #[error("not the leader (leader: {})", leader_addr.as_deref().unwrap_or("unknown"))]
    NotLeader { leader_id: Option<u64>, leader_addr: Option<String> },
    #[error("write outcome unknown after a leader change: {0}")]
    Unknown(String),
    #[error("raft refused: {0}")]
    Refused(String),
}

/// One incarnation of the local raft member: replaced as a whole by [`Consensus::reset`].
struct Member<M: Machine> {
    raft: MusterRaft<M>,
    watcher: JoinHandle<()>,
    /// Sends the leader's heartbeats (see [`pace_heartbeats`]).
    pacer: JoinHandle<()>,
    /// Set once raft says it is initialized, which it then stays: later asks need no call
    /// into raft (the cluster controller asks twice a second).
    initialized: std::sync::atomic::AtomicBool,
}

/// A running raft member. Its raft instance can be replaced (after a cluster merge) while
/// every handle to it (the gRPC service, readers, the leadership watch) stays valid.
pub struct Consensus<M: Machine> {
    id: u64,
    cfg: RaftConfig,
    cluster: ClusterTag,
    current: Arc<RwLock<Option<Arc<Member<M>>>>>,
    reader: RwLock<MachineReader<M>>,
    leadership_tx: Arc<watch::Sender<Leadership>>,
    leadership: watch::Receiver<Leadership>,
    quorum: Arc<QuorumLease>,
    /// When a leader was last heard; decides whether openraft's tick runs.
    contact: Arc<LeaderContact>,
    reset_lock: tokio::sync::Mutex<()>,
}

/// Until when this member holds its quorum lease, as the leadership watcher last computed it
/// from raft's metrics. Read on every heartbeat, so an atomic deadline rather than a look at
/// the metrics (whose lock was a bottleneck with many concurrent heartbeats).
#[derive(Debug)]
struct QuorumLease {
    base: Instant,
    /// Nanoseconds after `base`; 0: not the leader; `u64::MAX`: the only voter.
    until_ns: AtomicU64,
}

impl QuorumLease {
    fn new() -> Self {
        QuorumLease { base: Instant::now(), until_ns: AtomicU64::new(0) }
    }

    fn set(&self, leader_is_me: bool, voters: usize, until: Option<Instant>) {
        let ns = match (leader_is_me, voters <= 1, until) {
            (false, _, _) => 0,
            (true, true, _) => u64::MAX,
            (true, false, Some(t)) => {
                u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1)
            }
            (true, false, None) => 0,
        };
        self.until_ns.store(ns, Ordering::Release);
    }

    fn holds(&self, now: Instant) -> bool {
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX - 1);
        now_ns < self.until_ns.load(Ordering::Acquire)
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
}

fn write<T>(lock: &RwLock<T>, value: T) {
    match lock.write() {
        Ok(mut g) => *g = value,
        Err(p) => *p.into_inner() = value,
    }
}

impl<M: Machine> Consensus<M> {
    /// The TLS this member dials peers with, if any.
    pub fn tls(&self) -> Option<Arc<crate::tls::live::LiveTls>> {
        self.cfg.tls.clone()
    }

    /// Opens the store under `data_dir`, restores the machine and starts raft.
    pub async fn start(cfg: RaftConfig, machine: M) -> Result<Self, ConsensusError> {
        let cluster = ClusterTag::default();
        let (tx, leadership) = watch::channel(Leadership::unknown());
        let leadership_tx = Arc::new(tx);
        let quorum = Arc::new(QuorumLease::new());
        let contact = Arc::new(LeaderContact::new(Duration::from_millis(cfg.timing.quiet_ms())));
        let (member, reader) =
            start_member(&cfg, &cluster, &leadership_tx, &quorum, &contact, machine).await?;
        Ok(Consensus {
            id: cfg.id,
            cfg,
            cluster,
            current: Arc::new(RwLock::new(Some(Arc::new(member)))),
            reader: RwLock::new(reader),
            leadership_tx,
            leadership,
            quorum,
            contact,
            reset_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The current raft instance (`None` while a reset is replacing it).
    pub fn raft(&self) -> Option<MusterRaft<M>> {
        read(&self.current).map(|m| m.raft.clone())
    }

    fn member(&self) -> Result<Arc<Member<M>>, ConsensusError> {
        read(&self.current).ok_or_else(|| ConsensusError::Fatal("raft member is restarting".into()))
    }

    /// Reads of the local state machine copy (stale on followers).
    pub fn reader(&self) -> MachineReader<M> {
        read(&self.reader)
    }

    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// Whether this member is the leader and a quorum acknowledged it within the lease (so no
    /// other leader can have been elected meanwhile); always true for a lone voter. Unlike the
    /// published [`Leadership`], it does not wait out the lock delay.
    pub fn holds_quorum_lease(&self) -> bool {
        self.quorum.holds(Instant::now())
    }

    /// [`Consensus::holds_quorum_lease`] as a cheap closure others can keep and ask at the
    /// moment they act.
    pub fn quorum_lease_check(&self) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let quorum = self.quorum.clone();
        Arc::new(move || quorum.holds(Instant::now()))
    }

    /// The raft cluster this member belongs to or is joining; raft messages from any other
    /// cluster are refused.
    pub fn set_cluster(&self, cluster: Option<String>) {
        self.cluster.set(cluster);
    }

    pub fn cluster(&self) -> Option<String> {
        self.cluster.get()
    }

    /// The gRPC service peers call; mount it on the API listener.
    pub fn grpc_service(&self) -> RaftServer<RaftService<StateMachineStore<M>>> {
        let current = self.current.clone();
        let find: CurrentRaft<StateMachineStore<M>> =
            Arc::new(move || read(&current).map(|m| m.raft.clone()));
        RaftServer::new(RaftService::new(
            find,
            self.id,
            self.cluster.clone(),
            self.cfg.faults.clone(),
            self.contact.clone(),
        ))
    }

    /// True once this member has a membership (bootstrapped or added by a leader).
    pub async fn is_initialized(&self) -> bool {
        let Ok(m) = self.member() else { return false };
        if m.initialized.load(Ordering::Acquire) {
            return true;
        }
        let yes = m.raft.is_initialized().await.unwrap_or(false);
        m.initialized.fetch_or(yes, Ordering::AcqRel);
        yes
    }

    /// Bootstraps a new cluster whose voters are `members`.
    pub async fn initialize(&self, members: BTreeMap<u64, RaftNode>) -> Result<(), ConsensusError> {
        self.member()?.raft.initialize(members).await.map_err(|e| ConsensusError::Refused(e.to_string()))
    }

    /// Proposes one command; on the leader, returns its log index and the machine's answer.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<(u64, Vec<u8>), ConsensusError> {
        let proposed = Instant::now();
        match self.member()?.raft.client_write(Proposal(payload)).await {
            Ok(resp) => {
                // client_write answers once the entry is applied here, on the leader.
                RAFT.commit_seconds.observe(proposed.elapsed().as_secs_f64());
                Ok((resp.log_id.index, resp.data.0))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ConsensusError::NotLeader {
                    leader_id: f.leader_id,
                    leader_addr: f.leader_node.map(|n| n.api_addr),
                })
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => {
                Err(ConsensusError::Unknown(f.to_string()))
            }
            Err(RaftError::APIError(e)) => Err(ConsensusError::Refused(e.to_string())),
            // The entry may have been appended and replicated before raft stopped (a node
            // shutting down while it led): a retry could apply it twice.
            Err(RaftError::Fatal(e)) => Err(ConsensusError::Unknown(format!(
                "raft stopped while the write was in flight ({e}); it may still be applied"
            ))),
        }
    }

    /// A read barrier on the leader (raft's ReadIndex): confirms leadership with a quorum and
    /// returns the log index a linearizable read must see applied.
    pub async fn read_index(&self) -> Result<u64, ConsensusError> {
        let raft = self.member()?.raft.clone();
        match raft.get_read_log_id(openraft::ReadPolicy::ReadIndex).await {
            Ok((read, _)) => Ok(read.index()),
            Err(RaftError::APIError(openraft::error::LinearizableReadError::ForwardToLeader(f))) => {
                Err(ConsensusError::NotLeader {
                    leader_id: f.leader_id,
                    leader_addr: f.leader_node.map(|n| n.api_addr),
                })
            }
            Err(RaftError::APIError(e)) => Err(ConsensusError::Refused(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(ConsensusError::Fatal(e.to_string())),
        }
    }

    /// Waits until this member applied the log up to `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), ConsensusError> {
        let raft = self.member()?.raft.clone();
        raft.wait(Some(timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map(|_| ())
            .map_err(|e| ConsensusError::Refused(format!("log index {index} not applied here in time: {e}")))
    }

    /// Adds a non-voting member that receives the log.
    pub async fn add_learner(&self, id: u64, node: RaftNode) -> Result<(), ConsensusError> {
        self.member()?
            .raft
            .add_learner(id, node, true)
            .await
            .map(|_| ())
            .map_err(|e| ConsensusError::Refused(e.to_string()))
    }

    /// Sets the voters (every voter must already be a member); one change at a time, and
    /// only while the membership is still the one at `based_on` (the one the caller decided
    /// from): a concurrent change makes this one fail instead of overwriting it.
    pub async fn set_voters(
        &self,
        voters: BTreeSet<u64>,
        based_on: Option<super::types::LogId>,
    ) -> Result<(), ConsensusError> {
        let guard = openraft::Precondition::LastMembershipLogId { last_membership_log_id: based_on };
        self.member()?
            .raft
            .change_membership_if(voters, false, [guard])
            .await
            .map(|_| ())
            .map_err(|e| ConsensusError::Refused(e.to_string()))
    }

    /// Removes learners from the membership, only while it is still the one at `based_on`.
    pub async fn remove_learners(
        &self,
        ids: BTreeSet<u64>,
        based_on: Option<super::types::LogId>,
    ) -> Result<(), ConsensusError> {
        let guard = openraft::Precondition::LastMembershipLogId { last_membership_log_id: based_on };
        self.member()?
            .raft
            .change_membership_if(openraft::ChangeMembers::RemoveNodes(ids), false, [guard])
            .await
            .map(|_| ())
            .map_err(|e| ConsensusError::Refused(e.to_string()))
    }

    /// Asks the leader (this member) to hand leadership to `to`; returns once another member
    /// leads or `timeout` passes.
    pub async fn transfer_leadership(&self, to: u64, timeout: Duration) -> Result<(), ConsensusError> {
        let raft = self.member()?.raft.clone();
        raft.trigger().transfer_leader(to).await.map_err(|e| ConsensusError::Fatal(e.to_string()))?;
        let mut rx = self.leadership();
        let moved = tokio::time::timeout(timeout, async {
            loop {
                let l = rx.borrow_and_update().clone();
                if l.leader_id.is_some() && l.leader_id != Some(self.id) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        moved
            .await
            .map_err(|_| ConsensusError::Refused(format!("leadership did not move within {timeout:?}")))
    }

    /// Throws away this member's raft state (log, vote, machine, snapshots) and starts again
    /// empty with `machine`, as a member joining `cluster`. The node keeps its id; its old
    /// cluster's messages are refused from now on. Used when this node's cluster merges into
    /// another.
    pub async fn reset(&self, machine: M, cluster: Option<String>) -> Result<(), ConsensusError> {
        let _one_at_a_time = self.reset_lock.lock().await;
        self.cluster.set(cluster);
        let old = match self.current.write() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(old) = old {
            stop_member(&old, &self.cfg.data_dir).await;
        }
        let dir = self.cfg.data_dir.join(super::store::RAFT_DIR);
        for file in [super::store::LOG_FILE, super::store::WAL_FILE, super::store::SM_FILE] {
            match std::fs::remove_file(dir.join(file)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConsensusError::Fatal(format!(
                        "cannot remove {}: {e}",
                        dir.join(file).display()
                    )))
                }
            }
        }
        self.leadership_tx.send_replace(Leadership::unknown());
        let (member, reader) =
            start_member(&self.cfg, &self.cluster, &self.leadership_tx, &self.quorum, &self.contact, machine)
                .await?;
        write(&self.reader, reader);
        write(&self.current, Some(Arc::new(member)));
        Ok(())
    }

    /// Stops raft and returns once its storage files are released (openraft's tasks drop
    /// their handles shortly after `shutdown`), so the same data dir can be opened again.
    pub async fn shutdown(&self) {
        let _one_at_a_time = self.reset_lock.lock().await;
        if let Ok(m) = self.member() {
            stop_member(&m, &self.cfg.data_dir).await;
        }
    }
}

/// Opens the store and starts one raft incarnation with its leadership watcher.
async fn start_member<M: Machine>(
    cfg: &RaftConfig,
    cluster: &ClusterTag,
    tx: &Arc<watch::Sender<Leadership>>,
    quorum: &Arc<QuorumLease>,
    contact: &Arc<LeaderContact>,
    machine: M,
) -> Result<(Member<M>, MachineReader<M>), ConsensusError> {
    let (log, sm) = open(&cfg.data_dir, machine).await?;
    let reader = sm.reader();
    let t = cfg.timing;
    let config = Config {
        cluster_name: "muster".to_string(),
        heartbeat_interval: t.openraft_heartbeat_ms(),
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        enable_pre_vote: Some(true),
        // A snapshot encodes the whole registry, so its cost grows with the registry: taken every
        // 5000 entries (openraft's default) a busy leader spent a large share of its CPU encoding
        // and writing snapshots. etcd takes one every 100,000; a restart then replays at most this
        // many entries.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY_ENTRIES),
        // Must exceed the snapshot interval, or a snapshot cannot cure a lagging follower.
        replication_lag_threshold: SNAPSHOT_EVERY_ENTRIES + 10_000,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ConsensusError::Config(e.to_string()))?;
    let network = NetworkFactory::new(cfg.id, cluster.clone(), cfg.faults.clone(), cfg.tls.clone());
    let raft = Raft::new(cfg.id, Arc::new(config), network, log, sm)
        .await
        .map_err(|e| ConsensusError::Fatal(e.to_string()))?;
    let (leading_tx, leading_rx) = watch::channel(false);
    let watcher = tokio::spawn(watch_leadership(
        raft.clone(),
        cfg.id,
        t,
        tx.clone(),
        quorum.clone(),
        leading_tx,
        contact.clone(),
    ));
    let pacer =
        tokio::spawn(pace_heartbeats(raft.clone(), Duration::from_millis(t.heartbeat_ms), leading_rx));
    Ok((Member { raft, watcher, pacer, initialized: Default::default() }, reader))
}

/// Stops one raft incarnation and waits (bounded) until its storage files are released.
async fn stop_member<M: Machine>(m: &Member<M>, data_dir: &std::path::Path) {
    m.watcher.abort();
    m.pacer.abort();
    if let Err(e) = m.raft.shutdown().await {
        tracing::warn!(error = %e, "raft: shutdown failed");
    }
    let dir = data_dir.join(super::store::RAFT_DIR);
    let deadline = Instant::now() + RELEASE_WAIT;
    for file in [super::store::LOG_FILE, super::store::SM_FILE] {
        let path = dir.join(file);
        loop {
            let p = path.clone();
            let open = tokio::task::spawn_blocking(move || redb::Database::open(&p).map(drop)).await;
            match open {
                Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => break,
            }
        }
    }
}

/// Copies raft's own numbers into the node's metrics; a change of the known leader (to
/// another node or to none) counts once.
fn publish_metrics(m: &openraft::RaftMetrics<TypeConfig>, me: u64, seen_leader: &mut Option<u64>) {
    let leading = m.state == ServerState::Leader && m.current_leader == Some(me);
    RAFT.is_leader.set(if leading { 1.0 } else { 0.0 });
    RAFT.applied_index.set(m.last_applied.as_ref().map_or(0.0, |l| l.index() as f64));
    RAFT.last_log_index.set(m.last_log_index.unwrap_or(0) as f64);
    if m.current_leader != *seen_leader {
        *seen_leader = m.current_leader;
        RAFT.leader_changes.inc();
    }
}

/// While this member leads, asks openraft for a heartbeat round every `every` (openraft's own
/// heartbeats come from its tick, which rests on a leader: see [`super::contact`]). The quorum
/// acknowledgements of these rounds keep the leader's lease; a member that does not lead
/// sleeps until it does.
async fn pace_heartbeats<M: Machine>(
    raft: MusterRaft<M>,
    every: Duration,
    mut leading: watch::Receiver<bool>,
) {
    loop {
        if leading.wait_for(|l| *l).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                r = leading.changed() => {
                    if r.is_err() { return }
                    if !*leading.borrow_and_update() { break }
                    continue;
                }
            }
            if let Err(e) = raft.trigger().heartbeat().await {
                tracing::debug!(error = %e, "raft: the heartbeat round was refused");
            }
        }
    }
}

/// Where this member stands for openraft's tick (see [`super::contact`]). A member that is
/// not in the membership yet (waiting to join, or bootstrapping) counts as unknown, and one
/// that is a voter in any part of a joint configuration as a voter.
fn standing(m: &openraft::RaftMetrics<TypeConfig>, me: u64) -> Standing {
    let membership = m.membership_config.membership();
    if !membership.nodes().any(|(id, _)| *id == me) {
        return Standing::Unknown;
    }
    match m.state {
        ServerState::Leader => Standing::Leader,
        _ if !membership.voter_ids().any(|id| id == me) => Standing::Learner,
        ServerState::Candidate => Standing::Candidate,
        _ => Standing::Follower,
    }
}

/// Republishes [`Leadership`] on every raft metrics change and when a lease or lock delay
/// runs out.
async fn watch_leadership<M: Machine>(
    raft: MusterRaft<M>,
    me: u64,
    timing: RaftTiming,
    tx: Arc<watch::Sender<Leadership>>,
    quorum: Arc<QuorumLease>,
    leading: watch::Sender<bool>,
    contact: Arc<LeaderContact>,
) {
    let lease = timing.lease();
    let quiet = contact.quiet_span();
    let mut metrics = raft.metrics();
    let mut leader_since: Option<Instant> = None;
    let mut led_term: Option<u64> = None;
    let mut seen_leader: Option<u64> = None;
    let mut ticking = true;
    loop {
        let m = metrics.borrow_and_update().clone();
        let now = Instant::now();
        let is_leader = m.state == ServerState::Leader;
        publish_metrics(&m, me, &mut seen_leader);
        leading.send_if_modified(|l| std::mem::replace(l, is_leader) != is_leader);
        let ticks = plan(standing(&m, me), contact.last(), now, quiet);
        if ticks.ticks() != ticking {
            ticking = ticks.ticks();
            raft.runtime_config().tick(ticking);
            tracing::debug!(tick = ?ticks, "raft: the tick {}", if ticking { "runs" } else { "rests" });
        }
        if is_leader && led_term != Some(m.current_term) {
            led_term = Some(m.current_term);
            leader_since = Some(now);
        } else if !is_leader {
            led_term = None;
            leader_since = None;
        }
        let membership = m.membership_config.membership();
        // During a change the membership is joint (old and new voters); publish where it is
        // going, so nobody sees the transient union (an even count, a removed voter).
        let target: BTreeSet<u64> = membership.get_joint_config().last().cloned().unwrap_or_default();
        let view = RaftView {
            me,
            is_leader,
            current_leader: m.current_leader,
            last_quorum_acked: m
                .last_quorum_acked
                .as_ref()
                .map(|i| now.checked_sub(i.elapsed()).unwrap_or(now)),
            leader_since,
            voters: membership.voter_ids().count(),
        };
        let (role, lease_until, recheck) = role_at(&view, &lease, now);
        quorum.set(
            is_leader && m.current_leader == Some(me),
            view.voters,
            view.last_quorum_acked.map(|t| t + lease.lease),
        );
        let leader_node = m.current_leader.and_then(|id| membership.get_node(&id).cloned());
        let next = Leadership {
            leader_id: m.current_leader,
            leader_addr: leader_node.as_ref().map(|n| n.api_addr.clone()),
            leader_name: leader_node.map(|n| n.name),
            term: m.current_term,
            role,
            lease_until,
            learners: membership.nodes().map(|(id, _)| *id).filter(|id| !target.contains(id)).collect(),
            voters: target,
        };
        tx.send_if_modified(|cur| {
            if cur.role != next.role || cur.leader_id != next.leader_id || cur.term != next.term || cur.voters != next.voters {
                tracing::info!(raft.term = next.term, raft.leader = %next.leader_id.map_or_else(|| "none".to_string(), |i| format!("{i:x}")), role = ?next.role, voters = next.voters.len(), "raft: leadership changed");
            }
            // `lease_until` moves with every quorum acknowledgement (each heartbeat, each
            // commit): readers see it, but only a change of anything else wakes subscribers.
            // The role still flips on time: `recheck` re-runs this at the lease's end.
            let changed = Leadership { lease_until: cur.lease_until, ..next.clone() } != *cur;
            *cur = next;
            changed
        });
        let sleep = async {
            match recheck {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let look_again = async {
            match ticks {
                TickPlan::RestUntil(t) => contact.quiet(t).await,
                TickPlan::RunUntilHeard => contact.next().await,
                TickPlan::Run | TickPlan::Rest => std::future::pending().await,
            }
        };
        tokio::select! {
            r = metrics.changed() => if r.is_err() { return },
            _ = sleep => {}
            _ = look_again => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use openraft::{Membership, RaftMetrics, ServerState, StoredMembership};

    use super::{standing, RaftTiming, Standing, TypeConfig};

    fn metrics(
        me: u64,
        configs: Vec<BTreeSet<u64>>,
        all: &[u64],
        state: ServerState,
    ) -> RaftMetrics<TypeConfig> {
        let mut m = RaftMetrics::<TypeConfig>::new_initial(me);
        m.membership_config = Arc::new(StoredMembership::new(
            None,
            Membership::new_with_defaults(configs, all.iter().copied()),
        ));
        m.state = state;
        m
    }

    #[test]
    fn openraft_heartbeats_run_at_three_of_ours_below_the_election_timeout() {
        for (t, want) in [(RaftTiming::lan(), 450), (RaftTiming::local(), 150), (RaftTiming::wan(), 1500)] {
            assert_eq!(t.openraft_heartbeat_ms(), want, "{t:?}");
            assert!(t.openraft_heartbeat_ms() < t.election_min_ms, "{t:?}");
        }
        let tight =
            RaftTiming { heartbeat_ms: 100, election_min_ms: 250, election_max_ms: 400, lease_ms: 200 };
        assert_eq!(tight.openraft_heartbeat_ms(), 249);
    }

    #[test]
    fn a_follower_goes_quiet_before_the_shortest_election_timeout_less_a_tick() {
        for (t, quiet) in [(RaftTiming::lan(), 364), (RaftTiming::local(), 205), (RaftTiming::wan(), 2044)] {
            assert_eq!(t.quiet_ms(), quiet, "{t:?}");
            assert!(t.quiet_ms() + t.tick_ms() < t.election_min_ms, "{t:?}");
            assert!(t.quiet_ms() >= t.heartbeat_ms, "{t:?}");
        }
    }

    #[test]
    fn standing_follows_the_membership_and_the_state() {
        let voters = || vec![BTreeSet::from([1, 2, 3])];
        let all = &[1, 2, 3, 4];
        assert_eq!(standing(&metrics(1, voters(), all, ServerState::Leader), 1), Standing::Leader);
        assert_eq!(standing(&metrics(2, voters(), all, ServerState::Follower), 2), Standing::Follower);
        assert_eq!(standing(&metrics(2, voters(), all, ServerState::Candidate), 2), Standing::Candidate);
        assert_eq!(standing(&metrics(4, voters(), all, ServerState::Learner), 4), Standing::Learner);
        // Not in the membership (waiting to join, or removed).
        assert_eq!(standing(&metrics(9, voters(), all, ServerState::Learner), 9), Standing::Unknown);
        assert_eq!(standing(&metrics(9, vec![], &[], ServerState::Learner), 9), Standing::Unknown);
        // A voter in either half of a joint configuration (being promoted) is a voter.
        let joint = vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2, 4])];
        assert_eq!(standing(&metrics(4, joint, all, ServerState::Learner), 4), Standing::Follower);
    }
}
