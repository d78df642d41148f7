//! Pure decisions about raft membership from the gossip view: who is eligible, whether to
//! bootstrap, and the autopilot's next single step (add a learner, or set the voters).
//! No I/O, no clock: failure durations arrive as arguments.

use std::collections::{BTreeMap, BTreeSet};

use crate::consensus::RaftNode;
use crate::membership::{MemberInfo, MemberStatus, RAFT_ID_TAG};

/// Tag with the member's raft API address (`host:port`).
pub const RAFT_ADDR_TAG: &str = "raft_addr";
/// Tag with the raft cluster a member belongs to (hex id of the bootstrapping node).
pub const CLUSTER_ID_TAG: &str = "cluster_id";
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
    Nothing,
}

/// One step towards: every eligible member in the cluster, `voters_wanted` voters (preferred
/// first), and voters gone longer than the grace period (`gone`) removed. `me` (the leader)
/// always stays a voter.
pub fn next_step(
    me: u64,
    voters: &BTreeSet<u64>,
    learners: &BTreeSet<u64>,
    eligible: &BTreeMap<u64, Eligible>,
    gone: &BTreeSet<u64>,
) -> Step {
    if let Some(e) = eligible.values().find(|e| !voters.contains(&e.id) && !learners.contains(&e.id)) {
        return Step::AddLearner(e.id, e.node.clone());
    }
    let wanted = voters_wanted(eligible.values().filter(|e| e.can_vote).count().max(1));
    let mut next: BTreeSet<u64> = voters.iter().copied().filter(|v| *v == me || !gone.contains(v)).collect();
    let mut candidates: Vec<&Eligible> = eligible
        .values()
        .filter(|e| e.can_vote && learners.contains(&e.id) && !next.contains(&e.id))
        .collect();
    candidates.sort_by_key(|e| (!e.preferred, e.id));
    for c in candidates {
        if next.len() >= wanted {
            break;
        }
        next.insert(c.id);
    }
    if next != *voters {
        Step::SetVoters(next)
    } else {
        Step::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(ids: &[u64]) -> BTreeMap<u64, Eligible> {
        ids.iter()
            .map(|id| {
                let e = Eligible {
                    id: *id,
                    node: RaftNode { api_addr: format!("127.0.0.1:{id}"), name: format!("n{id}") },
                    preferred: false,
                    can_vote: true,
                    cluster_id: None,
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
        assert_eq!(
            next_step(1, &set(&[1]), &set(&[]), &e, &set(&[])),
            Step::AddLearner(2, e[&2].node.clone())
        );
        assert_eq!(next_step(1, &set(&[1]), &set(&[2]), &el(&[1, 2]), &set(&[])), Step::Nothing);
        assert_eq!(next_step(1, &set(&[1]), &set(&[2, 3]), &e, &set(&[])), Step::SetVoters(set(&[1, 2, 3])));
        let e5 = el(&[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            next_step(1, &set(&[1, 2, 3]), &set(&[4, 5, 6]), &e5, &set(&[])),
            Step::SetVoters(set(&[1, 2, 3, 4, 5]))
        );
        assert_eq!(next_step(1, &set(&[1, 2, 3, 4, 5]), &set(&[6]), &e5, &set(&[])), Step::Nothing);
    }

    #[test]
    fn a_voter_gone_past_the_grace_period_is_replaced_by_a_learner() {
        // Proves replacement: voter 3 gone → removed and learner 4 promoted; preferred first.
        let mut e = el(&[1, 2, 4, 5]);
        e.get_mut(&5).unwrap().preferred = true;
        assert_eq!(
            next_step(1, &set(&[1, 2, 3]), &set(&[4, 5]), &e, &set(&[3])),
            Step::SetVoters(set(&[1, 2, 5]))
        );
        // The leader never removes itself.
        assert_eq!(next_step(1, &set(&[1, 2, 4]), &set(&[5]), &e, &set(&[1])), Step::Nothing);
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
        assert_eq!(next_step(10, &[10].into(), &[11].into(), &e, &BTreeSet::new()), Step::Nothing);
    }
}
