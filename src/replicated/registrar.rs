//! The registry's write path on a node: [`Registrar`] turns a client's request into a raft
//! proposal stamped with the leader's clock, takes heartbeats into the leader's
//! [`LeaseKeeper`], and [`run_lease_keeper`] is the leader's task that checkpoints heartbeats
//! (`Renew`), decides expiry (`Expire`) and extends every lease when this node becomes leader
//! (`ExtendLeases`).
//!
//! Time comes from a [`Clock`] so tests can hold registry time still while raft runs in real
//! time; every proposal carries the time it was stamped with, so `apply` never reads a clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::forward::{Call, Forwarder, HeartbeatRequest};
use super::lease::LeaseKeeper;
use super::{decode_answer, encode_command, AppliedTx, RegistryMachine};
use crate::consensus::raft::{Consensus, ConsensusError, RaftTiming};
use crate::registry::validate;
use crate::registry::{
    Applied, Command, NewService, Registry, RegistryError, Revision, Service, ServiceId, ServicePatch, Status,
};

/// Registry time: unix milliseconds.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        since.map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock that moves only when told to: registry time held still while raft runs.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(start_ms))
    }
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How long a request that found no reachable leader waits before it tries again, at most (a
/// leadership change wakes it sooner).
const HOLD_RETRY: Duration = Duration::from_millis(100);
/// A request with less time than this left stops waiting for a leader and fails.
const HOLD_RETRY_MIN: Duration = Duration::from_millis(20);

/// How the leader keeps leases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// One `Renew` entry per interval carries every heartbeat since the last one.
    pub checkpoint_every: Duration,
    /// How often the leader looks for lapsed leases (expiry happens at most this late).
    pub check_every: Duration,
    /// What a new leader adds on top of renewing every live lease from its own clock: the time
    /// without a leader and clock skew between leaders.
    pub failover_window: Duration,
    /// How long one proposal may wait for its commit.
    pub propose_timeout: Duration,
}

impl LeaseConfig {
    /// Checkpoint and check once a second; the failover window covers two election timeouts
    /// and a second of clock skew.
    pub fn for_timing(t: RaftTiming) -> LeaseConfig {
        let checkpoint_every = Duration::from_secs(1);
        LeaseConfig {
            checkpoint_every,
            check_every: Duration::from_secs(1),
            failover_window: Duration::from_secs(1) + Duration::from_millis(2 * t.election_max_ms),
            propose_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a registry request was not done. Serde, so a leader's answer travels back to the
/// follower that forwarded the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrarError {
    /// The registry refused it (validation, not found, already registered, ...).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Writes and heartbeats go to the leader.
    #[error("not the leader (leader: {})", leader_addr.as_deref().unwrap_or("unknown"))]
    NotLeader { leader_id: Option<u64>, leader_addr: Option<String> },
    /// No commit within the deadline, or raft is stopped.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The leader changed while the write was in flight: it may or may not have been applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// Too many heartbeats wait for their checkpoint; retry shortly.
    #[error("busy: {pending} heartbeats wait for their checkpoint; retry shortly")]
    Busy { pending: usize },
}

impl From<ConsensusError> for RegistrarError {
    fn from(e: ConsensusError) -> Self {
        match e {
            ConsensusError::NotLeader { leader_id, leader_addr } => {
                RegistrarError::NotLeader { leader_id, leader_addr }
            }
            ConsensusError::Unknown(m) => RegistrarError::Unknown(m),
            other => RegistrarError::Unavailable(other.to_string()),
        }
    }
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Sees every write acknowledged before the read began (a ReadIndex barrier through the
    /// leader, then this node's copy once it caught up). The default.
    #[default]
    Linearizable,
    /// This node's copy as it is: fast, possibly behind the leader.
    Stale,
}

/// The registry's write and read path on one node. Any node serves any call: on a follower,
/// writes, heartbeats and read barriers are forwarded to the leader.
pub struct Registrar {
    consensus: Arc<Consensus<RegistryMachine>>,
    keeper: Mutex<LeaseKeeper>,
    flush: Notify,
    clock: Arc<dyn Clock>,
    cfg: LeaseConfig,
    applied: AppliedTx,
    forwarder: Forwarder,
}

impl Registrar {
    /// `applied` must be the sender the consensus' [`RegistryMachine`] announces on.
    pub fn new(
        consensus: Arc<Consensus<RegistryMachine>>,
        clock: Arc<dyn Clock>,
        cfg: LeaseConfig,
        applied: AppliedTx,
    ) -> Self {
        let forwarder = Forwarder::new(consensus.tls());
        Registrar {
            consensus,
            keeper: Mutex::new(LeaseKeeper::default()),
            flush: Notify::new(),
            clock,
            cfg,
            applied,
            forwarder,
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn config(&self) -> LeaseConfig {
        self.cfg
    }

    /// The registry's revision after each applied command on this node (for watchers).
    pub fn subscribe(&self) -> watch::Receiver<Revision> {
        self.applied.subscribe()
    }

    /// Reads this node's copy of the registry as it is (stale on a follower).
    /// The leadership as this node's raft sees it.
    pub fn leadership(&self) -> watch::Receiver<crate::consensus::leadership::Leadership> {
        self.consensus.leadership()
    }

    /// True while this node is the leader as its raft sees it.
    pub fn leads(&self) -> bool {
        self.consensus.leadership().borrow().leader_id == Some(self.consensus.id())
    }

    /// True while this node leads and a quorum acknowledged it within the lease: the only time
    /// it may act for the cluster from its own memory (leases, health checks).
    pub fn leads_with_lease(&self) -> bool {
        self.leads() && self.consensus.holds_quorum_lease()
    }

    pub fn read_local<R>(&self, f: impl FnOnce(&Registry) -> R) -> R {
        self.consensus.reader().read(|m| f(&m.registry))
    }

    /// Reads the registry with the given consistency.
    pub async fn read<R>(&self, c: Consistency, f: impl FnOnce(&Registry) -> R) -> Result<R, RegistrarError> {
        if c == Consistency::Linearizable {
            let index = self
                .hold("read barrier", |left| async move {
                    match self.read_index_local().await {
                        Err(RegistrarError::NotLeader { leader_addr: Some(addr), .. }) => {
                            self.forwarder.call::<(), u64>(&addr, Call::ReadIndex, &(), left).await
                        }
                        other => other,
                    }
                })
                .await?;
            self.consensus.wait_applied(index, self.cfg.propose_timeout).await?;
        }
        Ok(self.read_local(f))
    }

    /// The read barrier on this node as leader.
    pub async fn read_index_local(&self) -> Result<u64, RegistrarError> {
        self.require_leader_known()?;
        let r = tokio::time::timeout(self.cfg.propose_timeout, self.consensus.read_index()).await;
        let index = r.map_err(|_| self.no_quorum())??;
        Ok(index)
    }

    /// Proposes one command (forwarded to the leader from a follower) and waits (bounded) for
    /// the registry's answer.
    pub async fn propose(&self, cmd: &Command) -> Result<Applied, RegistrarError> {
        self.hold("write", |left| async move {
            match self.propose_local(cmd).await {
                Err(RegistrarError::NotLeader { leader_addr: Some(addr), .. }) => {
                    self.forwarder.call(&addr, Call::Propose, cmd, left).await
                }
                other => other,
            }
        })
        .await
    }

    /// Runs `attempt` (given the time left) until it is done, fails for a reason other than
    /// "no reachable leader", or `propose_timeout` has passed. Between attempts it waits for the
    /// leadership to change, or [`HOLD_RETRY`]: a write that reaches a follower while the leader
    /// is gone waits for the next leader instead of failing at once. Only answers that prove
    /// the request was not done are retried (`NotLeader`, `Unavailable`); `Unknown`, `Busy`
    /// and the registry's own answers return at once.
    async fn hold<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, RegistrarError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistrarError>>,
    {
        let began = tokio::time::Instant::now();
        let until = began + self.cfg.propose_timeout;
        let mut leadership = self.consensus.leadership();
        loop {
            leadership.borrow_and_update();
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            let e = match attempt(left).await {
                Err(e @ (RegistrarError::NotLeader { .. } | RegistrarError::Unavailable(_))) => e,
                other => return other,
            };
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left < HOLD_RETRY_MIN {
                return Err(match e {
                    RegistrarError::Unavailable(m) if began.elapsed() >= HOLD_RETRY_MIN => {
                        RegistrarError::Unavailable(format!(
                            "{m} (the {what} waited {:.1?} for a reachable leader)",
                            began.elapsed()
                        ))
                    }
                    e => e,
                });
            }
            tracing::debug!(what, error = %e, "no reachable leader yet; the request waits for one");
            tokio::select! {
                r = leadership.changed() => if r.is_err() { return Err(e) },
                _ = tokio::time::sleep(HOLD_RETRY.min(left)) => {}
            }
        }
    }

    /// Proposes on this node as leader; `NotLeader` otherwise.
    pub async fn propose_local(&self, cmd: &Command) -> Result<Applied, RegistrarError> {
        self.require_leader_known()?;
        let bytes = encode_command(cmd);
        let r = tokio::time::timeout(self.cfg.propose_timeout, self.consensus.propose(bytes)).await;
        let (_, answer) = r.map_err(|_| {
            RegistrarError::Unknown(format!(
                "no commit within {:?} (is a quorum of voters reachable?); the write may still be applied",
                self.cfg.propose_timeout
            ))
        })??;
        let applied = decode_answer(&answer)?;
        super::count_committed(&applied.outcome);
        Ok(applied)
    }

    fn require_leader_known(&self) -> Result<(), RegistrarError> {
        let lead = self.consensus.leadership().borrow().clone();
        match lead.leader_id {
            Some(id) if id == self.consensus.id() => Ok(()),
            Some(_) => {
                Err(RegistrarError::NotLeader { leader_id: lead.leader_id, leader_addr: lead.leader_addr })
            }
            None => Err(RegistrarError::Unavailable(
                "no leader is known (an election is running or a quorum of voters is unreachable); retry"
                    .into(),
            )),
        }
    }

    fn no_quorum(&self) -> RegistrarError {
        RegistrarError::Unavailable(format!(
            "the leader could not confirm its leadership within {:?} (is a quorum of voters reachable?)",
            self.cfg.propose_timeout
        ))
    }

    pub async fn register(&self, service: NewService) -> Result<Applied, RegistrarError> {
        self.propose(&Command::Register { service, now_ms: self.now_ms() }).await
    }

    pub async fn update(&self, id: ServiceId, patch: ServicePatch) -> Result<Applied, RegistrarError> {
        self.propose(&Command::Update { id, patch, now_ms: self.now_ms() }).await
    }

    pub async fn deregister(&self, id: ServiceId) -> Result<Applied, RegistrarError> {
        self.propose(&Command::Deregister { id, now_ms: self.now_ms() }).await
    }

    /// Removes expired services whose lease ended before now.
    pub async fn cleanup(&self) -> Result<Applied, RegistrarError> {
        self.propose(&Command::Cleanup { at_ms: self.now_ms() }).await
    }

    /// A heartbeat from any node: taken by the leader (forwarded from a follower).
    pub async fn heartbeat(
        &self,
        id: &ServiceId,
        ttl_override: Option<u32>,
    ) -> Result<Service, RegistrarError> {
        self.hold("heartbeat", |left| async move {
            match self.heartbeat_local(id, ttl_override) {
                Err(RegistrarError::NotLeader { leader_addr: Some(addr), .. }) => {
                    let req = HeartbeatRequest { id: id.clone(), ttl: ttl_override };
                    self.forwarder.call(&addr, Call::Heartbeat, &req, left).await
                }
                other => other,
            }
        })
        .await
    }

    /// A heartbeat on this node as leader, taken into memory and checkpointed within
    /// `checkpoint_every`. Returns the service as it will be once checkpointed. A heartbeat
    /// for an expired service is checkpointed at once, so its return to `active` shows soon.
    pub fn heartbeat_local(
        &self,
        id: &ServiceId,
        ttl_override: Option<u32>,
    ) -> Result<Service, RegistrarError> {
        self.require_leader_known()?;
        // A leader cut off from its quorum may not know yet that another one was elected; a
        // heartbeat it took from memory would be lost with it. Only a leader a quorum
        // acknowledged within the lease takes heartbeats.
        if !self.consensus.holds_quorum_lease() {
            return Err(RegistrarError::Unavailable(
                "this leader has no quorum acknowledgement within its lease (cut off from the voters?); \
                 heartbeats go to a leader that holds one; retry"
                    .into(),
            ));
        }
        if let Some(ttl) = ttl_override {
            validate::ttl_seconds(ttl).map_err(|reason| RegistryError::InvalidCommand { reason })?;
        }
        let now = self.now_ms();
        let mut service = self
            .read_local(|r| r.get(id).cloned())
            .ok_or_else(|| RegistryError::NotFound { id: id.clone() })?;
        let was_expired = service.status == Status::Expired;
        {
            let mut keeper = self.keeper();
            if !keeper.heartbeat(id.clone(), ttl_override) {
                let pending = keeper.pending();
                drop(keeper);
                self.flush.notify_one();
                return Err(RegistrarError::Busy { pending });
            }
        }
        if was_expired {
            self.flush.notify_one();
        }
        // An override sets this lease only; the service's own ttl stays (as `Renew` applies it).
        let ttl = ttl_override.unwrap_or(service.ttl_seconds);
        service.last_heartbeat_ms = now;
        service.expires_at_ms = now + u64::from(ttl) * 1000;
        if was_expired {
            service.status = Status::Active;
        }
        crate::metrics::REGISTRY.heartbeats.inc();
        Ok(service)
    }

    fn keeper(&self) -> MutexGuard<'_, LeaseKeeper> {
        self.keeper.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Proposes `cmd` from the lease keeper; logs and reports whether it committed.
    async fn keeper_propose(&self, cmd: Command) -> bool {
        let name = cmd.name();
        match self.propose_local(&cmd).await {
            Ok(applied) => {
                tracing::debug!(command = name, revision = applied.revision.0, "leases: committed");
                true
            }
            Err(e) => {
                tracing::warn!(command = name, error = %e, "leases: proposal failed");
                false
            }
        }
    }
}

/// The leader's lease task: on election, `ExtendLeases` first; then every `check_every`
/// checkpoint pending heartbeats (at once when a heartbeat revives an expired service) and
/// expire lapsed leases. Followers hold no heartbeats. Runs until `shutdown`.
pub async fn run_lease_keeper(registrar: Arc<Registrar>, shutdown: CancellationToken) {
    let me = registrar.consensus.id();
    let cfg = registrar.cfg;
    let mut leadership = registrar.consensus.leadership();
    // The term in which this node extended every lease; expiry waits until that committed.
    let mut extended_in: Option<u64> = None;
    let mut last_checkpoint = tokio::time::Instant::now();
    let mut flush_now = false;
    loop {
        let lead = leadership.borrow_and_update().clone();
        let leading = lead.leader_id == Some(me);
        if !leading {
            if extended_in.take().is_some() {
                let dropped = registrar.keeper().clear();
                tracing::info!(
                    dropped_heartbeats = dropped,
                    "leases: no longer leader; the next leader extends every lease"
                );
            }
        } else if extended_in != Some(lead.term) {
            let window = cfg.failover_window.as_millis() as u64;
            let cmd = registrar.keeper().on_elected(window, registrar.now_ms());
            if registrar.keeper_propose(cmd).await {
                tracing::info!(
                    term = lead.term,
                    by_ms = window,
                    "leases: leader; every live lease extended by the failover window"
                );
                extended_in = Some(lead.term);
                last_checkpoint = tokio::time::Instant::now();
            }
        } else {
            if flush_now || last_checkpoint.elapsed() >= cfg.checkpoint_every {
                flush_now = false;
                last_checkpoint = tokio::time::Instant::now();
                let cmd = registrar.keeper().checkpoint(registrar.now_ms());
                if let Some(cmd) = cmd {
                    if !registrar.keeper_propose(cmd.clone()).await {
                        registrar.keeper().requeue(&cmd);
                    }
                }
            }
            let now = registrar.now_ms();
            let expire = registrar.read_local(|r| registrar.keeper().expiries(r, now));
            if let Some(cmd) = expire {
                registrar.keeper_propose(cmd).await;
            }
        }
        // A leader whose extension did not commit retries soon; a follower has nothing to do
        // until the leadership changes, which wakes it.
        let tick = if !leading {
            Duration::from_secs(60)
        } else if extended_in.is_none() {
            cfg.check_every.min(Duration::from_millis(200))
        } else {
            cfg.check_every
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = leadership.changed() => if r.is_err() { return },
            _ = registrar.flush.notified() => flush_now = true,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}
