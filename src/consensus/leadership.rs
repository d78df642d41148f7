//! Who is the server: a pure rule over raft's view plus the quorum lease, and the value the
//! rest of the node watches.
//!
//! A node is *server* only while it is leader, the leader is itself, a quorum acknowledged it
//! within the lease (shorter than the election timeout), and it has been leader for at least
//! the lock delay. A partitioned old leader stops being server when its lease lapses, which is
//! before any other node can be elected; a new leader waits out the lock delay before it
//! claims the role. Pure: time is an argument.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde::Serialize;

/// This node's role as the rest of the node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Leader with a valid lease: runs the server stack.
    Server,
    /// A member following a known leader.
    Proxy,
    /// No leader known (election, partition, not yet in a cluster).
    Unknown,
}

/// The leadership value published on the watch channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// Raft id of the leader this node knows, if any.
    pub leader_id: Option<u64>,
    /// The leader's API address (`host:port`), if known.
    pub leader_addr: Option<String>,
    /// The leader's gossip name, if known.
    pub leader_name: Option<String>,
    pub term: u64,
    pub role: Role,
    /// While `role == Server`: when the lease runs out unless a quorum acknowledges again.
    /// It moves with every acknowledgement; a change of it alone does not notify watchers.
    pub lease_until: Option<Instant>,
    /// Raft ids of the voters and learners in the membership this node knows.
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

impl Leadership {
    pub fn unknown() -> Self {
        Leadership {
            leader_id: None,
            leader_addr: None,
            leader_name: None,
            term: 0,
            role: Role::Unknown,
            lease_until: None,
            voters: BTreeSet::new(),
            learners: BTreeSet::new(),
        }
    }

    /// The fencing token handed to the server stack: raft term and leader id.
    pub fn epoch(&self) -> Option<String> {
        self.leader_id.map(|id| format!("{}-{:016x}", self.term, id))
    }
}

/// What raft reports, reduced to what the rule needs.
#[derive(Debug, Clone, Copy)]
pub struct RaftView {
    pub me: u64,
    pub is_leader: bool,
    pub current_leader: Option<u64>,
    pub last_quorum_acked: Option<Instant>,
    /// When this node last became leader (in this term).
    pub leader_since: Option<Instant>,
    pub voters: usize,
}

/// Lease settings.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    /// How long a quorum acknowledgement keeps the server role.
    pub lease: Duration,
    /// How long a new leader waits before it claims the server role.
    pub lock_delay: Duration,
}

/// The role at `now`, when the lease runs out, and when to look again even if raft reports
/// nothing new.
pub fn role_at(v: &RaftView, l: &Lease, now: Instant) -> (Role, Option<Instant>, Option<Instant>) {
    let leader_is_me = v.is_leader && v.current_leader == Some(v.me);
    if !leader_is_me {
        let role = if v.current_leader.is_some() { Role::Proxy } else { Role::Unknown };
        return (role, None, None);
    }
    let lease_until = if v.voters <= 1 { None } else { v.last_quorum_acked.map(|t| t + l.lease) };
    let lease_ok = v.voters <= 1 || lease_until.is_some_and(|t| t > now);
    let claim_at = v.leader_since.map(|t| t + l.lock_delay);
    let delay_over = claim_at.is_some_and(|t| t <= now);
    let mut recheck = None;
    if let Some(t) = claim_at.filter(|t| *t > now) {
        recheck = Some(t);
    }
    if let Some(t) = lease_until.filter(|t| *t > now) {
        recheck = Some(recheck.map_or(t, |r: Instant| r.min(t)));
    }
    if lease_ok && delay_over {
        (Role::Server, lease_until, recheck)
    } else {
        // A leader whose lease lapsed or whose lock delay runs is nobody's server yet.
        (Role::Unknown, None, recheck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(now: Instant) -> RaftView {
        RaftView {
            me: 1,
            is_leader: true,
            current_leader: Some(1),
            last_quorum_acked: Some(now),
            leader_since: Some(now - Duration::from_secs(10)),
            voters: 3,
        }
    }

    const L: Lease = Lease { lease: Duration::from_millis(450), lock_delay: Duration::from_millis(450) };

    #[test]
    fn a_leader_is_server_only_within_its_lease() {
        // Proves the fencing rule: server while acked within the lease, not a moment after.
        let t = Instant::now();
        let v = view(t);
        assert_eq!(role_at(&v, &L, t).0, Role::Server);
        assert_eq!(role_at(&v, &L, t + Duration::from_millis(449)).0, Role::Server);
        let (role, _, recheck) = role_at(&v, &L, t + Duration::from_millis(450));
        assert_eq!(role, Role::Unknown);
        assert_eq!(recheck, None);
        // Before the lease lapses the watcher is told when to look again.
        assert_eq!(role_at(&v, &L, t).2, Some(t + Duration::from_millis(450)));
    }

    #[test]
    fn a_new_leader_waits_the_lock_delay() {
        // Proves the lock delay: a fresh leader is not server until the delay has passed.
        let t = Instant::now();
        let v = RaftView { leader_since: Some(t), ..view(t) };
        let (role, _, recheck) = role_at(&v, &L, t + Duration::from_millis(100));
        assert_eq!(role, Role::Unknown);
        assert_eq!(recheck, Some(t + Duration::from_millis(450)));
        let v = RaftView { last_quorum_acked: Some(t + Duration::from_millis(400)), ..v };
        assert_eq!(role_at(&v, &L, t + Duration::from_millis(460)).0, Role::Server);
    }

    #[test]
    fn followers_are_proxies_and_a_lone_voter_needs_no_acks() {
        // Proves follower roles and the single-voter case (no quorum acks to wait for).
        let t = Instant::now();
        let f = RaftView { is_leader: false, current_leader: Some(2), ..view(t) };
        assert_eq!(role_at(&f, &L, t).0, Role::Proxy);
        let lost = RaftView { is_leader: false, current_leader: None, ..view(t) };
        assert_eq!(role_at(&lost, &L, t).0, Role::Unknown);
        let alone = RaftView { voters: 1, last_quorum_acked: None, ..view(t) };
        assert_eq!(role_at(&alone, &L, t + Duration::from_secs(60)).0, Role::Server);
    }
}
