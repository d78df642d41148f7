//! The raft type configuration and the data types consensus carries: [`TypeConfig`],
//! [`Proposal`] / [`ProposalResult`] (opaque bytes), [`RaftNode`] and the [`Machine`] trait the
//! replicated state machine implements.
//!
//! Owns no I/O. Must not import `registry`, `gossip`, `api` or `node`: the registry plugs in
//! through [`Machine`], never the other way round.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// muster's raft types: opaque byte proposals, `u64` node ids, [`RaftNode`] addresses, and
    /// openraft's defaults (tokio runtime, advanced leader id, default entry) for the rest.
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = u64,
        Node = RaftNode,
);

/// What a snapshot is carried as between the state machine, openraft and the network: the
/// serialized [`Machine::snapshot`] bytes.
pub type SnapshotData = Cursor<Vec<u8>>;

/// An opaque, serialized state-machine command; consensus never looks inside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Contents are opaque (and may be large): log the size only.
        write!(f, "proposal({} bytes)", self.0.len())
    }
}

/// The state machine's answer to one [`Proposal`], as opaque bytes. Blank and membership entries
/// answer with the empty (default) result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProposalResult(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// What a raft member needs to reach another: its API address (raft RPC rides the :9999
/// listener) and gossip name.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RaftNode {
    /// `host:port` of the member's API listener, where raft RPCs are served.
    pub api_addr: String,
    /// The member's gossip (Serf) name.
    pub name: String,
}

/// The replicated state machine's pure core, supplied by the caller (the registry implements it
/// later).
///
/// Consensus keeps it in memory, calls [`Machine::apply`] for every committed proposal in log
/// order, and persists [`Machine::snapshot`] bytes; after a restart it calls
/// [`Machine::restore`] with the latest snapshot and re-applies the committed log after it.
pub trait Machine: Send + Sync + 'static {
    /// Applies one committed proposal at `index`; deterministic; returns the response bytes
    /// (errors are encoded inside the response, never panics).
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8>;

    /// Serializes the whole state; `restore` of these bytes must yield an equal machine.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with a snapshot's. On error the machine should be left as it was.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String>;
}

/// A raft log id (committed leader id + index) under [`TypeConfig`].
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// A raft log entry under [`TypeConfig`].
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// A raft vote under [`TypeConfig`].
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// A membership config together with the log id that introduced it.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// What a snapshot covers: last log id and last membership.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
/// A snapshot: its [`SnapshotMeta`] and the [`SnapshotData`] bytes.
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;
