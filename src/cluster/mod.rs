//! The cluster controller: turns the gossip view into raft membership and raft leadership into
//! member modes. It bootstraps a lone or lowest-id node, lets the leader's autopilot add
//! learners and keep 1/3/5 voters, tags this member (`raft_id`, `raft_addr`, `role`,
//! `cluster_id`), and publishes the member list with each member's mode.
//!
//! Composes `gossip` and `consensus` (which never import each other); decisions are in `plan`.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::consensus::leadership::Role as RaftRole;
use crate::consensus::raft::Consensus;
use crate::consensus::Machine;
use crate::gossip::net::GossipHandle;
use crate::membership::{assign_modes, MemberInfo, Mode, RAFT_ID_TAG};
use plan::{eligible, next_step, should_bootstrap, Step, CLUSTER_ID_TAG, RAFT_ADDR_TAG, ROLE_TAG};

/// How often the controller looks at the world (also on every member change).
const TICK: Duration = Duration::from_millis(500);
/// How long one membership change may take.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the controller needs to know about this node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub id: u64,
    pub name: String,
    pub api_addr: String,
    /// `auto`, `server` or `agent`.
    pub role: String,
    /// The user's tags; the controller adds its own.
    pub tags: BTreeMap<String, String>,
    /// How long a node without raft state watches gossip before it may bootstrap.
    pub bootstrap_window: Duration,
    /// A voter missing from gossip this long is replaced.
    pub grace: Duration,
    pub data_dir: PathBuf,
}

fn cluster_id_path(dir: &std::path::Path) -> PathBuf {
    dir.join("raft").join("cluster-id")
}

/// The tags this member gossips.
pub fn tags_for(cfg: &ClusterConfig, cluster_id: Option<&str>) -> BTreeMap<String, String> {
    let mut t = cfg.tags.clone();
    t.insert(RAFT_ID_TAG.into(), format!("{:x}", cfg.id));
    t.insert(RAFT_ADDR_TAG.into(), cfg.api_addr.clone());
    t.insert(ROLE_TAG.into(), cfg.role.clone());
    if let Some(c) = cluster_id {
        t.insert(CLUSTER_ID_TAG.into(), c.to_string());
    }
    t
}

/// Runs until `shutdown`.
pub async fn run<M: Machine>(
    cfg: ClusterConfig,
    gossip: GossipHandle,
    consensus: Arc<Consensus<M>>,
    members_out: watch::Sender<Arc<Vec<MemberInfo>>>,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let mut cluster_id =
        std::fs::read_to_string(cluster_id_path(&cfg.data_dir)).ok().map(|s| s.trim().to_string());
    let mut members_rx = gossip.members();
    let mut leadership = consensus.leadership();
    let mut missing_since: HashMap<u64, Instant> = HashMap::new();
    loop {
        let members: Vec<MemberInfo> = members_rx.borrow_and_update().as_ref().clone();
        let lead = leadership.borrow_and_update().clone();
        let el = eligible(&members);
        let initialized = consensus.is_initialized().await;

        if !initialized
            && cfg.role != "agent"
            && started.elapsed() >= cfg.bootstrap_window
            && should_bootstrap(cfg.id, &el)
        {
            let me = BTreeMap::from([(
                cfg.id,
                crate::consensus::RaftNode { api_addr: cfg.api_addr.clone(), name: cfg.name.clone() },
            )]);
            match consensus.initialize(me).await {
                Ok(()) => {
                    let id = format!("{:x}", cfg.id);
                    tracing::info!(cluster_id = %id, "cluster: bootstrapped a new cluster with this node as its only voter");
                    set_cluster_id(&cfg, &gossip, &mut cluster_id, id).await;
                }
                Err(e) => tracing::warn!(error = %e, "cluster: bootstrap failed"),
            }
        }
        if initialized && cluster_id.is_none() {
            let from_leader = lead
                .leader_name
                .as_ref()
                .and_then(|n| members.iter().find(|m| &m.name == n))
                .and_then(|m| m.tags.get(CLUSTER_ID_TAG).cloned());
            if let Some(id) = from_leader {
                tracing::info!(cluster_id = %id, "cluster: joined");
                set_cluster_id(&cfg, &gossip, &mut cluster_id, id).await;
            }
        }
        if lead.leader_id == Some(cfg.id) {
            autopilot(&cfg, &consensus, &el, &mut missing_since).await;
        }

        let my_mode = match lead.role {
            RaftRole::Server => Mode::Server,
            RaftRole::Proxy => Mode::Proxy,
            RaftRole::Unknown => Mode::Unknown,
        };
        let mut with_modes = members;
        assign_modes(&mut with_modes, &cfg.name, my_mode, lead.leader_name.as_deref());
        members_out.send_replace(Arc::new(with_modes));

        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = members_rx.changed() => {}
            _ = leadership.changed() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn set_cluster_id(
    cfg: &ClusterConfig,
    gossip: &GossipHandle,
    current: &mut Option<String>,
    id: String,
) {
    let path = cluster_id_path(&cfg.data_dir);
    if let Err(e) = std::fs::write(&path, &id) {
        tracing::warn!(path = %path.display(), error = %e, "cluster: cannot persist the cluster id");
    }
    if let Err(e) = gossip.set_tags(tags_for(cfg, Some(&id))).await {
        tracing::warn!(error = %e, "cluster: cannot update gossip tags");
    }
    *current = Some(id);
}

async fn autopilot<M: Machine>(
    cfg: &ClusterConfig,
    consensus: &Consensus<M>,
    el: &BTreeMap<u64, plan::Eligible>,
    missing_since: &mut HashMap<u64, Instant>,
) {
    let (voters, learners) = {
        let m = consensus.raft().metrics();
        let m = openraft::async_runtime::WatchReceiver::borrow_watched(&m).clone();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<u64> = mem.voter_ids().collect();
        let learners: BTreeSet<u64> = mem.learner_ids().collect();
        (voters, learners)
    };
    let now = Instant::now();
    missing_since.retain(|id, _| voters.contains(id) && !el.contains_key(id));
    for v in &voters {
        if !el.contains_key(v) {
            missing_since.entry(*v).or_insert(now);
        }
    }
    let gone: BTreeSet<u64> = missing_since
        .iter()
        .filter(|(_, t)| now.duration_since(**t) >= cfg.grace)
        .map(|(id, _)| *id)
        .collect();
    let step = next_step(cfg.id, &voters, &learners, el, &gone);
    let r = match &step {
        Step::Nothing => return,
        Step::AddLearner(id, node) => {
            tracing::info!(raft.id = %format!("{id:x}"), member = %node.name, "autopilot: adding a learner");
            tokio::time::timeout(CHANGE_TIMEOUT, consensus.add_learner(*id, node.clone())).await
        }
        Step::SetVoters(v) => {
            tracing::info!(voters = ?v.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>(), "autopilot: changing voters");
            tokio::time::timeout(CHANGE_TIMEOUT, consensus.set_voters(v.clone())).await
        }
    };
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, step = ?step, "autopilot: change failed"),
        Err(_) => tracing::warn!(step = ?step, "autopilot: change timed out"),
    }
}
