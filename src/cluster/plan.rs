//! Pure decisions about raft membership from the gossip view: who is eligible, whether to
//! bootstrap, and the autopilot's next single step (add a learner, or set the voters).
//! No I/O, no clock: failure durations arrive as arguments.

use std::collections::{BTreeMap, BTreeSet};

use crate::consensus::RaftNode;
pub use crate::membership::ClusterSeen;
use crate::membership::{MemberInfo, MemberStatus, RAFT_ID_TAG};

/// Tag with the member's raft API address (`host:port`).
pub const RAFT_ADDR_TAG: &str = "raft_addr";
/// Tag with the raft cluster a member belongs to (hex id of the bootstrapping node).
pub const CLUSTER_ID_TAG: &str = "cluster_id";
/// Tag with when the member's raft cluster was bootstrapped (unix milliseconds).
pub const CLUSTER_BORN_TAG: &str = "cluster_born";
/// Tag with the member's `--role`. Not `role`: that is Serf's conventional user tag, and a
/// user's `--tag role=web` must survive.
pub const ROLE_TAG: &str = "muster_role";

/// A member that may vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligible {
    pub id: u64,
    pub node: RaftNode,
    /// `--role server`: promoted to voter first.
    pub preferred: bool,
    /// `--role agent` members follow the log as learners but never vote.
    pub can_vote: bool,
    pub cluster_id: Option<String>,
    /// When that cluster was bootstrapped (unix ms), as the member gossips it.
    pub cluster_born_ms: Option<u64>,
}

/// Parses a raft id as written in tags.
pub fn parse_id(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim(), 16).ok()
}

/// Alive muster members (those with raft tags), by raft id.
pub fn eligible(members: &[MemberInfo]) -> BTreeMap<u64, Eligible> {
    members
        .iter()
        .filter(|m| m.status == MemberStatus::Alive)
        .filter_map(|m| {
            let id = parse_id(m.tags.get(RAFT_ID_TAG)?)?;
            let addr = m.tags.get(RAFT_ADDR_TAG)?.clone();
            Some((
                id,
                Eligible {
                    id,
                    node: RaftNode { api_addr: addr, name: m.name.clone() },
                    preferred: m.tags.get(ROLE_TAG).map(String::as_str) == Some("server"),
                    can_vote: m.tags.get(ROLE_TAG).map(String::as_str) != Some("agent"),
                    cluster_id: m.tags.get(CLUSTER_ID_TAG).cloned().filter(|c| !c.is_empty()),
                    cluster_born_ms: m.tags.get(CLUSTER_BORN_TAG).and_then(|b| b.trim().parse().ok()),
                },
            ))
        })
        .collect()
}

/// Bootstrap rule for a node with no raft state: nobody visible is in a cluster yet, and we
/// have the lowest id among the eligible members we see (so exactly one node bootstraps).
pub fn should_bootstrap(me: u64, eligible: &BTreeMap<u64, Eligible>) -> bool {
    let any_cluster = eligible.values().any(|e| e.cluster_id.is_some());
    let lowest =
        eligible.values().filter(|e| e.can_vote).map(|e| e.id).next().is_none_or(|lowest| lowest >= me);
    !any_cluster && lowest
}

/// The members the autopilot of cluster `mine` may manage: its own and those in no cluster
/// yet. Members of another cluster are never added (they merge first, see [`merge_target`]).
pub fn manageable(mine: Option<&str>, eligible: &BTreeMap<u64, Eligible>) -> BTreeMap<u64, Eligible> {
    eligible
        .iter()
        .filter(|(_, e)| e.cluster_id.is_none() || e.cluster_id.as_deref() == mine)
        .map(|(id, e)| (*id, e.clone()))
        .collect()
}

/// Every cluster visible in gossip, by id.
pub fn clusters_seen(eligible: &BTreeMap<u64, Eligible>) -> BTreeMap<String, ClusterSeen> {
    let mut out: BTreeMap<String, ClusterSeen> = BTreeMap::new();
    for e in eligible.values() {
        let Some(id) = &e.cluster_id else { continue };
        let c = out.entry(id.clone()).or_insert_with(|| ClusterSeen {
            id: id.clone(),
            members: 0,
            born_ms: None,
        });
        c.members += 1;
        c.born_ms = match (c.born_ms, e.cluster_born_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    out
}

/// Whether cluster `a` gives way to `b` when they meet: the smaller one yields; at equal size
/// the younger; at equal age the larger id. A strict order, so exactly one of two yields.
pub fn yields_to(a: &ClusterSeen, b: &ClusterSeen) -> bool {
    let key = |c: &ClusterSeen| (std::cmp::Reverse(c.members), c.born_ms.unwrap_or(u64::MAX), c.id.clone());
    key(a) > key(b)
}

/// The cluster this node's cluster (`mine`) should join, if another one it yields to is in
/// gossip: the strongest such cluster.
pub fn merge_target(mine: &str, eligible: &BTreeMap<u64, Eligible>) -> Option<ClusterSeen> {
    let seen = clusters_seen(eligible);
    let me = seen.get(mine)?;
    seen.values()
        .filter(|c| c.id != mine && yields_to(me, c))
        .min_by(|a, b| if yields_to(a, b) { std::cmp::Ordering::Greater } else { std::cmp::Ordering::Less })
        .cloned()
}

/// Voters wanted for this many eligible members: 1, 3 or 5 (never an even count).
pub fn voters_wanted(eligible: usize) -> usize {
    match eligible {
        0..=2 => 1,
        3 | 4 => 3,
        _ => 5,
    }
}

/// The autopilot's next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    AddLearner(u64, RaftNode),
    SetVoters(BTreeSet<u64>),
    /// Learners gone from gossip longer than the grace period leave the membership.
    RemoveLearners(BTreeSet<u64>),
    Nothing,
}

/// One step towards: every eligible member in the cluster, `voters_wanted` voters (preferred
/// first), and voters and learners gone longer than the grace period (`gone`) removed. `me`
/// (the leader) always stays a voter. Voters come first: a gone voter is replaced before gone
/// learners are dropped. Only learners in `caught_up` (the leader replicates to them) become
/// voters: one the leader cannot reach would count against the quorum.
pub fn next_step(
    me: u64,
    voters: &BTreeSet<u64>,
    learners: &BTreeSet<u64>,
    eligible: &BTreeMap<u64, Eligible>,
    gone: &BTreeSet<u64>,
    caught_up: &BTreeSet<u64>,
) -> Step {
    if let Some(e) = eligible.values().find(|e| !voters.contains(&e.id) && !learners.contains(&e.id)) {
        return Step::AddLearner(e.id, e.node.clone());
    }
    let wanted = voters_wanted(eligible.values().filter(|e| e.can_vote).count().max(1));
    let mut next: BTreeSet<u64> = voters.iter().copied().filter(|v| *v == me || !gone.contains(v)).collect();
    let mut candidates: Vec<&Eligible> = eligible
        .values()
        .filter(|e| {
            e.can_vote && learners.contains(&e.id) && caught_up.contains(&e.id) && !next.contains(&e.id)
        })
        .collect();
    candidates.sort_by_key(|e| (!e.preferred, e.id));
    for c in candidates {
        if next.len() >= wanted {
            break;
        }
        next.insert(c.id);
    }
    if next != *voters {
        return Step::SetVoters(next);
    }
    let gone_learners: BTreeSet<u64> = learners.intersection(gone).copied().collect();
    if !gone_learners.is_empty() {
        return Step::RemoveLearners(gone_learners);
    }
    Step::Nothing
}

/// The voter leadership should move to, if any: a leader without `--role server` hands it to
/// the lowest-id voter that has the role and is alive in gossip (`eligible`), so the server
/// stack runs where the operator prefers it. A preferred leader keeps it.
pub fn preferred_leader(me: u64, voters: &BTreeSet<u64>, eligible: &BTreeMap<u64, Eligible>) -> Option<u64> {
    if eligible.get(&me).is_some_and(|e| e.preferred) {
        return None;
    }
    voters.iter().copied().find(|v| *v != me && eligible.get(v).is_some_and(|e| e.preferred && e.can_vote))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`next_step`] with every learner caught up.
    fn step(
        me: u64,
        v: &BTreeSet<u64>,
        l: &BTreeSet<u64>,
        e: &BTreeMap<u64, Eligible>,
        g: &BTreeSet<u64>,
    ) -> Step {
        next_step(me, v, l, e, g, l)
    }

    #[test]
    fn only_caught_up_learners_become_voters() {
        // Proves a learner the leader cannot replicate to (say, it fails the TLS handshake)
        // is never promoted, and the one that replicates is.
        let e = el(&[1, 2, 3, 4]);
        let (voters, learners) = ([1].into(), [2, 3, 4].into());
        let got = next_step(1, &voters, &learners, &e, &BTreeSet::new(), &[4].into());
        assert_eq!(got, Step::SetVoters([1, 4].into()));
        let got = next_step(1, &voters, &learners, &e, &BTreeSet::new(), &BTreeSet::new());
        assert_eq!(got, Step::Nothing);
    }

    fn el(ids: &[u64]) -> BTreeMap<u64, Eligible> {
        ids.iter()
            .map(|id| {
                let e = Eligible {
                    id: *id,
                    node: RaftNode { api_addr: format!("127.0.0.1:{id}"), name: format!("n{id}") },
                    preferred: false,
                    can_vote: true,
                    cluster_id: None,
                    cluster_born_ms: None,
                };
                (*id, e)
            })
            .collect()
    }

    fn set(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn only_the_lowest_id_bootstraps_and_never_next_to_a_cluster() {
        // Proves the bootstrap rule: lowest id among visible eligible members, and not when
        // anyone already belongs to a cluster.
        let mut e = el(&[3, 5, 9]);
        assert!(should_bootstrap(3, &e));
        assert!(!should_bootstrap(5, &e));
        assert!(should_bootstrap(7, &BTreeMap::new()));
        e.get_mut(&9).unwrap().cluster_id = Some("abc".into());
        assert!(!should_bootstrap(3, &e));
    }

    #[test]
    fn autopilot_grows_one_to_three_to_five_voters_one_step_at_a_time() {
        // Proves growth: learners first, then voters up to 3, then 5; never an even count.
        let e = el(&[1, 2, 3]);
        assert_eq!(step(1, &set(&[1]), &set(&[]), &e, &set(&[])), Step::AddLearner(2, e[&2].node.clone()));
        assert_eq!(step(1, &set(&[1]), &set(&[2]), &el(&[1, 2]), &set(&[])), Step::Nothing);
        assert_eq!(step(1, &set(&[1]), &set(&[2, 3]), &e, &set(&[])), Step::SetVoters(set(&[1, 2, 3])));
        let e5 = el(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            step(1, &set(&[1, 2, 3]), &set(&[4, 5, 6]), &e5, &set(&[])),
            Step::SetVoters(set(&[1, 2, 3, 4, 5]))
        );
        assert_eq!(step(1, &set(&[1, 2, 3, 4, 5]), &set(&[6]), &e5, &set(&[])), Step::Nothing);
    }

    #[test]
    fn a_voter_gone_past_the_grace_period_is_replaced_by_a_learner() {
        // Proves replacement: voter 3 gone → removed and learner 4 promoted; preferred first.
        let mut e = el(&[1, 2, 4, 5]);
        e.get_mut(&5).unwrap().preferred = true;
        assert_eq!(
            step(1, &set(&[1, 2, 3]), &set(&[4, 5]), &e, &set(&[3])),
            Step::SetVoters(set(&[1, 2, 5]))
        );
        // The leader never removes itself.
        assert_eq!(step(1, &set(&[1, 2, 4]), &set(&[5]), &e, &set(&[1])), Step::Nothing);
        // A learner gone past the grace period leaves once the voters are settled.
        assert_eq!(step(1, &set(&[1, 2, 4]), &set(&[5, 6]), &e, &set(&[6])), Step::RemoveLearners(set(&[6])));
    }

    #[test]
    fn agents_learn_but_never_vote_and_plain_serf_members_are_not_eligible() {
        // Proves eligibility: role=agent members are learners only; members without raft
        // tags are not in raft at all.
        let mk = |name: &str, tags: &[(&str, &str)]| MemberInfo {
            name: name.into(),
            addr: std::net::IpAddr::from([127, 0, 0, 1]),
            port: 7946,
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            status: MemberStatus::Alive,
            protocol: [1, 5, 2, 2, 5, 4],
            incarnation: 1,
            last_seen_ms_ago: 0,
            mode: crate::membership::Mode::Unknown,
        };
        let ms = vec![
            mk("a", &[(RAFT_ID_TAG, "a"), (RAFT_ADDR_TAG, "127.0.0.1:1"), (ROLE_TAG, "server")]),
            mk("b", &[(RAFT_ID_TAG, "b"), (RAFT_ADDR_TAG, "127.0.0.1:2"), (ROLE_TAG, "agent")]),
            mk("go", &[("role", "web")]),
        ];
        let e = eligible(&ms);
        assert_eq!(e.keys().copied().collect::<Vec<_>>(), vec![10, 11]);
        assert!(e[&10].preferred && e[&10].can_vote);
        assert!(!e[&11].can_vote);
        // An agent learner is never promoted.
        assert_eq!(step(10, &[10].into(), &[11].into(), &e, &BTreeSet::new()), Step::Nothing);
    }

    fn in_cluster(ids: &[u64], cluster: &str, born: u64) -> BTreeMap<u64, Eligible> {
        let mut e = el(ids);
        for v in e.values_mut() {
            v.cluster_id = Some(cluster.into());
            v.cluster_born_ms = Some(born);
        }
        e
    }

    #[test]
    fn when_two_clusters_meet_the_smaller_then_the_younger_joins_the_other() {
        // Proves the merge rule: size first, then age, then id; exactly one side yields, both
        // sides compute the same answer, and a lone cluster merges nowhere.
        let mut e = in_cluster(&[1, 2, 3], "a", 500);
        e.extend(in_cluster(&[4, 5], "b", 100));
        assert_eq!(merge_target("b", &e).map(|c| c.id), Some("a".into()), "smaller yields");
        assert_eq!(merge_target("a", &e), None);
        let mut e = in_cluster(&[1, 2], "a", 500);
        e.extend(in_cluster(&[4, 5], "b", 100));
        assert_eq!(merge_target("a", &e).map(|c| c.id), Some("b".into()), "younger yields");
        assert_eq!(merge_target("b", &e), None);
        let mut e = in_cluster(&[1], "a", 100);
        e.extend(in_cluster(&[4], "b", 100));
        assert_eq!(merge_target("b", &e).map(|c| c.id), Some("a".into()), "larger id yields");
        assert_eq!(merge_target("a", &e), None);
        assert_eq!(merge_target("a", &in_cluster(&[1, 2], "a", 1)), None);
        // Three clusters: the weakest joins the strongest directly.
        let mut e = in_cluster(&[1, 2, 3], "a", 9);
        e.extend(in_cluster(&[4, 5], "b", 1));
        e.extend(in_cluster(&[6], "c", 1));
        assert_eq!(merge_target("c", &e).map(|c| c.id), Some("a".into()));
        assert_eq!(merge_target("b", &e).map(|c| c.id), Some("a".into()));
        // Members of another cluster are never managed by this one's autopilot.
        let mut e = in_cluster(&[1, 2], "a", 9);
        e.extend(in_cluster(&[4], "b", 1));
        e.extend(el(&[7]));
        assert_eq!(manageable(Some("a"), &e).keys().copied().collect::<Vec<_>>(), vec![1, 2, 7]);
    }

    #[test]
    fn leadership_moves_to_a_preferred_voter_only() {
        // Proves the preference rule: an auto leader names the lowest preferred live voter; a
        // preferred leader, a preferred learner or a preferred member gone from gossip do not
        // move leadership.
        let mut e = el(&[1, 2, 3, 4]);
        assert_eq!(preferred_leader(1, &set(&[1, 2, 3]), &e), None, "nobody is preferred");
        e.get_mut(&3).unwrap().preferred = true;
        e.get_mut(&4).unwrap().preferred = true;
        assert_eq!(preferred_leader(1, &set(&[1, 2, 3]), &e), Some(3));
        assert_eq!(preferred_leader(1, &set(&[1, 2]), &e), None, "4 is only a learner");
        assert_eq!(preferred_leader(3, &set(&[1, 2, 3]), &e), None, "a preferred leader keeps it");
        e.remove(&3);
        assert_eq!(preferred_leader(1, &set(&[1, 2, 3]), &e), None, "3 is gone from gossip");
    }
}
