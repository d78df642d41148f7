//! The cluster view derived from gossip: one [`MemberInfo`] per known member.
//!
//! Pure data: built by the gossip driver, read by the API, the CLI and (later) consensus.
//! Must not import tokio, sockets or clocks.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Serf's member status, as `serf members` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Known but not yet confirmed alive.
    None,
    Alive,
    /// A leave intent was seen; the member is shutting down.
    Leaving,
    /// Left gracefully.
    Left,
    /// Stopped answering probes and was declared dead.
    Failed,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::None => "none",
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }

    /// Parses the names `serf members -status` accepts.
    pub fn parse(s: &str) -> Option<MemberStatus> {
        Some(match s {
            "none" => MemberStatus::None,
            "alive" => MemberStatus::Alive,
            "leaving" => MemberStatus::Leaving,
            "left" => MemberStatus::Left,
            "failed" => MemberStatus::Failed,
            _ => return None,
        })
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role a member plays once leadership exists; `Unknown` until then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Unknown,
    Server,
    Proxy,
}

/// One member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: MemberStatus,
    /// memberlist protocol min, max, current; then the Serf protocol min, max, current.
    pub protocol: [u8; 6],
    pub incarnation: u32,
    /// How long ago this node last heard from (or about) the member alive, in milliseconds.
    pub last_seen_ms_ago: u64,
    pub mode: Mode,
}

/// Counts by status, for `/health`.
pub fn counts(members: &[MemberInfo]) -> BTreeMap<MemberStatus, usize> {
    let mut out = BTreeMap::new();
    for m in members {
        *out.entry(m.status).or_insert(0) += 1;
    }
    out
}

/// Gossip tag carrying a muster node's raft id (hex); plain Serf agents do not have it.
pub const RAFT_ID_TAG: &str = "raft_id";

/// Fills in each member's [`Mode`] from what this node knows about leadership: our own role,
/// and the leader's member name. Other muster nodes (those with a raft id tag) follow the
/// leader and are proxies while a leader is known; everyone else stays `unknown`.
pub fn assign_modes(members: &mut [MemberInfo], me: &str, my_mode: Mode, leader: Option<&str>) {
    for m in members.iter_mut() {
        m.mode = if m.name == me {
            my_mode
        } else if leader == Some(m.name.as_str()) {
            Mode::Server
        } else if leader.is_some() && m.status == MemberStatus::Alive && m.tags.contains_key(RAFT_ID_TAG) {
            Mode::Proxy
        } else {
            Mode::Unknown
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, raft: bool) -> MemberInfo {
        let mut tags = BTreeMap::new();
        if raft {
            tags.insert(RAFT_ID_TAG.to_string(), "1".to_string());
        }
        MemberInfo {
            name: name.into(),
            addr: IpAddr::from([127, 0, 0, 1]),
            port: 7946,
            tags,
            status: MemberStatus::Alive,
            protocol: [1, 5, 2, 2, 5, 4],
            incarnation: 1,
            last_seen_ms_ago: 0,
            mode: Mode::Unknown,
        }
    }

    #[test]
    fn modes_follow_the_known_leader() {
        // Proves mode assignment: the leader is server, other muster nodes proxies, plain Serf
        // agents unknown, and our own mode is what our lease says.
        let mut ms = vec![m("a", true), m("b", true), m("go", false)];
        assign_modes(&mut ms, "b", Mode::Proxy, Some("a"));
        assert_eq!([ms[0].mode, ms[1].mode, ms[2].mode], [Mode::Server, Mode::Proxy, Mode::Unknown]);
        assign_modes(&mut ms, "b", Mode::Unknown, None);
        assert!(ms.iter().all(|x| x.mode == Mode::Unknown));
    }
}

/// One raft cluster as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSeen {
    /// Hex raft id of the node that bootstrapped it.
    pub id: String,
    /// Alive members gossiping this cluster id.
    pub members: usize,
    /// The earliest bootstrap time any member gossips (unix ms); unknown sorts as youngest.
    pub born_ms: Option<u64>,
}

/// A merge this node took part in: its cluster `from` joined `into`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeRecord {
    pub from: ClusterSeen,
    pub into: ClusterSeen,
    /// When this node discarded its raft state to join `into` (unix ms).
    pub at_ms: u64,
    /// Where this node saved its old state machine (the services of `from`), if it could.
    pub saved_state: Option<String>,
}

/// This node's raft cluster, other clusters in gossip, and past merges (for `/discovery`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftClusterInfo {
    /// This node's cluster id, once it bootstrapped or joined one.
    pub id: Option<String>,
    /// Other raft clusters visible in gossip; one of two that meet joins the other.
    pub others: Vec<ClusterSeen>,
    /// Merges this node took part in since it started, oldest first.
    pub merges: Vec<MergeRecord>,
}
