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
use crate::membership::{assign_modes, MemberInfo, MergeRecord, Mode, RaftClusterInfo, RAFT_ID_TAG};
use plan::{
    eligible, manageable, merge_target, next_step, should_bootstrap, Step, CLUSTER_BORN_TAG, CLUSTER_ID_TAG,
    RAFT_ADDR_TAG, ROLE_TAG,
};

/// How often the controller looks at the world (also on every member change).
const TICK: Duration = Duration::from_millis(500);
/// How often the controller of a settled cluster looks (see the end of [`run`]).
const SETTLED_TICK: Duration = Duration::from_secs(30);
/// How long one membership change may take.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one hand-over to a preferred voter per this period (no ping-pong when the
/// preferred node cannot keep leadership).
const PREFER_EVERY: Duration = Duration::from_secs(30);
/// A learner whose matched log index is this close to the leader's last may become a voter.
const PROMOTE_LAG: u64 = 1_000;

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

/// The raft cluster this node belongs to: the bootstrapping node's hex id and when it
/// bootstrapped (unix ms; 0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterId {
    pub id: String,
    pub born_ms: u64,
}

/// Reads the cluster id file (`<id>` then, on a second line, `<born_ms>`), if any.
pub fn load_cluster_id(data_dir: &std::path::Path) -> Option<ClusterId> {
    let text = std::fs::read_to_string(cluster_id_path(data_dir)).ok()?;
    let mut lines = text.lines();
    let id = lines.next()?.trim().to_string();
    let born_ms = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    (!id.is_empty()).then_some(ClusterId { id, born_ms })
}

/// The tags this member gossips.
pub fn tags_for(cfg: &ClusterConfig, cluster: Option<&ClusterId>) -> BTreeMap<String, String> {
    let mut t = cfg.tags.clone();
    t.insert(RAFT_ID_TAG.into(), format!("{:x}", cfg.id));
    t.insert(RAFT_ADDR_TAG.into(), cfg.api_addr.clone());
    t.insert(ROLE_TAG.into(), cfg.role.clone());
    if let Some(c) = cluster {
        t.insert(CLUSTER_ID_TAG.into(), c.id.clone());
        t.insert(CLUSTER_BORN_TAG.into(), c.born_ms.to_string());
    }
    t
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where the controller publishes what it sees.
pub struct Outputs {
    /// Members with their modes.
    pub members: watch::Sender<Arc<Vec<MemberInfo>>>,
    /// This node's raft cluster, others in gossip, merges.
    pub raft_cluster: watch::Sender<RaftClusterInfo>,
}

/// Runs until `shutdown`. `fresh` makes the empty state machine a node starts over with when
/// its cluster merges into another.
pub async fn run<M: Machine>(
    cfg: ClusterConfig,
    gossip: GossipHandle,
    consensus: Arc<Consensus<M>>,
    fresh: impl Fn() -> M + Send + 'static,
    out: Outputs,
    shutdown: CancellationToken,
) {
    let started = Instant::now();
    let mut cluster_id = load_cluster_id(&cfg.data_dir);
    consensus.set_cluster(cluster_id.as_ref().map(|c| c.id.clone()));
    let mut members_rx = gossip.members();
    let mut leadership = consensus.leadership();
    let mut missing_since: HashMap<u64, Instant> = HashMap::new();
    let mut last_transfer: Option<Instant> = None;
    let mut merge_seen: Option<(String, Instant)> = None;
    let mut merges: Vec<MergeRecord> = Vec::new();
    loop {
        let members: Vec<MemberInfo> = members_rx.borrow_and_update().as_ref().clone();
        let lead = leadership.borrow_and_update().clone();
        let all = eligible(&members);
        let el = manageable(cluster_id.as_ref().map(|c| c.id.as_str()), &all);
        let initialized = consensus.is_initialized().await;

        if !initialized
            && cfg.role != "agent"
            && started.elapsed() >= cfg.bootstrap_window
            && should_bootstrap(cfg.id, &all)
        {
            let me = BTreeMap::from([(
                cfg.id,
                crate::consensus::RaftNode { api_addr: cfg.api_addr.clone(), name: cfg.name.clone() },
            )]);
            match consensus.initialize(me).await {
                Ok(()) => {
                    let id = ClusterId { id: format!("{:x}", cfg.id), born_ms: unix_ms() };
                    tracing::info!(cluster_id = %id.id, "cluster: bootstrapped a new cluster with this node as its only voter");
                    set_cluster_id(&cfg, &gossip, &consensus, &mut cluster_id, id).await;
                }
                Err(e) => tracing::warn!(error = %e, "cluster: bootstrap failed"),
            }
        }
        if initialized && cluster_id.is_none() {
            let from_leader =
                lead.leader_name.as_ref().and_then(|n| members.iter().find(|m| &m.name == n)).and_then(|m| {
                    let id = m.tags.get(CLUSTER_ID_TAG)?.clone();
                    let born_ms = m.tags.get(CLUSTER_BORN_TAG).and_then(|b| b.parse().ok()).unwrap_or(0);
                    Some(ClusterId { id, born_ms })
                });
            if let Some(id) = from_leader {
                tracing::info!(cluster_id = %id.id, "cluster: joined");
                set_cluster_id(&cfg, &gossip, &consensus, &mut cluster_id, id).await;
            }
        }
        // Two clusters that meet: the one that yields starts over as a member of the other.
        let target = match (&cluster_id, initialized) {
            (Some(mine), true) => merge_target(&mine.id, &all),
            _ => None,
        };
        match target {
            None => merge_seen = None,
            Some(t) => {
                let since = match &merge_seen {
                    Some((id, since)) if *id == t.id => *since,
                    _ => {
                        tracing::info!(other = %t.id, other_members = t.members, "cluster: another raft cluster is in gossip; this one yields to it if it stays");
                        merge_seen = Some((t.id.clone(), Instant::now()));
                        Instant::now()
                    }
                };
                if since.elapsed() >= cfg.bootstrap_window * 2 {
                    if let Some(mine) = cluster_id.clone() {
                        let from = plan::clusters_seen(&all).remove(&mine.id);
                        let from = from.unwrap_or(plan::ClusterSeen {
                            id: mine.id.clone(),
                            members: 0,
                            born_ms: None,
                        });
                        match merge_into(&cfg, &gossip, &consensus, &fresh, &from, &t).await {
                            Ok(record) => {
                                cluster_id = None;
                                merges.push(record);
                            }
                            Err(e) => tracing::error!(error = %e, "cluster: merge failed; retrying"),
                        }
                        merge_seen = None;
                    }
                }
            }
        }
        let mine = cluster_id.as_ref().map(|c| c.id.clone());
        let info = RaftClusterInfo {
            others: plan::clusters_seen(&all)
                .into_values()
                .filter(|c| Some(&c.id) != mine.as_ref())
                .collect(),
            id: mine,
            merges: merges.clone(),
        };
        out.raft_cluster.send_if_modified(|cur| {
            let changed = *cur != info;
            *cur = info;
            changed
        });
        let mut autopilot_settled = false;
        if lead.leader_id == Some(cfg.id) && merge_seen.is_none() {
            autopilot_settled =
                autopilot(&cfg, &consensus, &el, &mut missing_since, &mut last_transfer).await;
        }

        let my_mode = match lead.role {
            RaftRole::Server => Mode::Server,
            RaftRole::Proxy => Mode::Proxy,
            RaftRole::Unknown => Mode::Unknown,
        };
        let mut with_modes = members;
        assign_modes(&mut with_modes, &cfg.name, my_mode, lead.leader_name.as_deref());
        out.members.send_replace(Arc::new(with_modes));

        // A settled cluster has nothing that comes due with time alone: member and leadership
        // changes (voters and learners included) wake the controller. On the leader that takes
        // an autopilot with nothing to do and nothing to wait for.
        let settled = initialized
            && cluster_id.is_some()
            && merge_seen.is_none()
            && lead.leader_id.is_some_and(|l| l != cfg.id || autopilot_settled);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = members_rx.changed() => {}
            _ = leadership.changed() => {}
            _ = tokio::time::sleep(if settled { SETTLED_TICK } else { TICK }) => {}
        }
    }
}

async fn set_cluster_id<M: Machine>(
    cfg: &ClusterConfig,
    gossip: &GossipHandle,
    consensus: &Consensus<M>,
    current: &mut Option<ClusterId>,
    id: ClusterId,
) {
    let path = cluster_id_path(&cfg.data_dir);
    if let Err(e) = std::fs::write(&path, format!("{}\n{}\n", id.id, id.born_ms)) {
        tracing::warn!(path = %path.display(), error = %e, "cluster: cannot persist the cluster id");
    }
    consensus.set_cluster(Some(id.id.clone()));
    let tags = tags_for(cfg, Some(&id));
    let unchanged = gossip.members().borrow().iter().any(|m| m.name == cfg.name && m.tags == tags);
    if !unchanged {
        if let Err(e) = gossip.set_tags(tags).await {
            tracing::warn!(error = %e, "cluster: cannot update gossip tags");
        }
    }
    *current = Some(id);
}

/// This node's cluster `from` yields to `into`: save the old state machine beside the data
/// dir's raft state, discard the raft state, start over empty as a member-to-be of `into`
/// (its leader's autopilot adds us, seeing its cluster id in our tags).
async fn merge_into<M: Machine>(
    cfg: &ClusterConfig,
    gossip: &GossipHandle,
    consensus: &Consensus<M>,
    fresh: &impl Fn() -> M,
    from: &plan::ClusterSeen,
    into: &plan::ClusterSeen,
) -> Result<MergeRecord, crate::consensus::raft::ConsensusError> {
    let at_ms = unix_ms();
    tracing::warn!(
        from = %from.id, from_members = from.members, from_born_ms = ?from.born_ms,
        into = %into.id, into_members = into.members, into_born_ms = ?into.born_ms,
        "cluster: merging: this raft cluster is smaller (or as large and younger) than another in gossip; \
         this node discards its raft state and joins the other"
    );
    let bytes = consensus.reader().read(|m| m.snapshot());
    let dir = cfg.data_dir.join("merged");
    let path = dir.join(format!("{}-{at_ms}.snapshot", from.id));
    let saved_state = match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &bytes)) {
        Ok(()) => {
            tracing::warn!(path = %path.display(), bytes = bytes.len(), "cluster: the old cluster's state machine is saved here");
            Some(path.display().to_string())
        }
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cluster: cannot save the old cluster's state machine");
            None
        }
    };
    let _ = std::fs::remove_file(cluster_id_path(&cfg.data_dir));
    consensus.reset(fresh(), Some(into.id.clone())).await?;
    // Gossip the cluster we join right away: its leader's autopilot adds members carrying its
    // id, and the tags change once per merge instead of twice.
    let joining = ClusterId { id: into.id.clone(), born_ms: into.born_ms.unwrap_or(0) };
    if let Err(e) = gossip.set_tags(tags_for(cfg, Some(&joining))).await {
        tracing::warn!(error = %e, "cluster: cannot update gossip tags");
    }
    tracing::info!(into = %into.id, "cluster: raft state discarded; waiting for the other cluster's leader to add this node");
    Ok(MergeRecord { from: from.clone(), into: into.clone(), at_ms, saved_state })
}

/// Hands leadership to a preferred (`--role server`) voter once the membership is settled, at
/// most once per [`PREFER_EVERY`], so that a preferred node that cannot take it is not asked
/// over and over.
async fn prefer<M: Machine>(
    consensus: &Consensus<M>,
    voters: &BTreeSet<u64>,
    el: &BTreeMap<u64, plan::Eligible>,
    me: u64,
    last_transfer: &mut Option<Instant>,
) {
    let Some(to) = plan::preferred_leader(me, voters, el) else { return };
    if last_transfer.is_some_and(|t| t.elapsed() < PREFER_EVERY) {
        return;
    }
    *last_transfer = Some(Instant::now());
    let name = el.get(&to).map(|e| e.node.name.clone()).unwrap_or_default();
    tracing::info!(to = %name, raft.id = %format!("{to:x}"), "autopilot: handing leadership to a --role server voter");
    if let Err(e) = consensus.transfer_leadership(to, CHANGE_TIMEOUT).await {
        tracing::warn!(to = %name, error = %e, "autopilot: leadership hand-over to the preferred voter failed");
    }
}

async fn autopilot<M: Machine>(
    cfg: &ClusterConfig,
    consensus: &Consensus<M>,
    el: &BTreeMap<u64, plan::Eligible>,
    missing_since: &mut HashMap<u64, Instant>,
    last_transfer: &mut Option<Instant>,
) -> bool {
    let Some(raft) = consensus.raft() else { return false };
    let (voters, learners, based_on, caught_up) = {
        let m = raft.metrics();
        let m = openraft::async_runtime::WatchReceiver::borrow_watched(&m).clone();
        let mem = m.membership_config.membership();
        let voters: BTreeSet<u64> = mem.voter_ids().collect();
        let learners: BTreeSet<u64> = mem.learner_ids().collect();
        // Learners whose matched log is within PROMOTE_LAG of ours.
        let last = m.last_log_index.unwrap_or(0);
        let caught_up: BTreeSet<u64> = m
            .replication
            .iter()
            .flatten()
            .filter(|(_, matched)| matched.as_ref().is_some_and(|l| l.index + PROMOTE_LAG >= last))
            .map(|(id, _)| *id)
            .collect();
        (voters, learners, *m.membership_config.log_id(), caught_up)
    };
    let now = Instant::now();
    let members: BTreeSet<u64> = voters.union(&learners).copied().collect();
    missing_since.retain(|id, _| members.contains(id) && !el.contains_key(id));
    for v in &members {
        if !el.contains_key(v) {
            missing_since.entry(*v).or_insert(now);
        }
    }
    let gone: BTreeSet<u64> = missing_since
        .iter()
        .filter(|(_, t)| now.duration_since(**t) >= cfg.grace)
        .map(|(id, _)| *id)
        .collect();
    let step = next_step(cfg.id, &voters, &learners, el, &gone, &caught_up);
    let r = match &step {
        Step::Nothing => {
            prefer(consensus, &voters, el, cfg.id, last_transfer).await;
            // Settled: no member missing (its grace would run out), no learner still catching
            // up (it would be promoted), and no hand-over to a preferred voter pending.
            return missing_since.is_empty()
                && learners.iter().all(|l| caught_up.contains(l))
                && plan::preferred_leader(cfg.id, &voters, el).is_none();
        }
        Step::AddLearner(id, node) => {
            tracing::info!(raft.id = %format!("{id:x}"), member = %node.name, "autopilot: adding a learner");
            tokio::time::timeout(CHANGE_TIMEOUT, consensus.add_learner(*id, node.clone())).await
        }
        Step::SetVoters(v) => {
            tracing::info!(voters = ?v.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>(), "autopilot: changing voters");
            tokio::time::timeout(CHANGE_TIMEOUT, consensus.set_voters(v.clone(), based_on)).await
        }
        Step::RemoveLearners(ids) => {
            tracing::info!(learners = ?ids.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>(), "autopilot: removing learners gone from gossip");
            tokio::time::timeout(CHANGE_TIMEOUT, consensus.remove_learners(ids.clone(), based_on)).await
        }
    };
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, step = ?step, "autopilot: change failed"),
        Err(_) => tracing::warn!(step = ?step, "autopilot: change timed out"),
    }
    false
}
