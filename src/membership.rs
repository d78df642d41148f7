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
