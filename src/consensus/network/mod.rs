//! The raft transport: openraft messages as MessagePack inside the `muster.raft.v1.Raft` gRPC
//! service, served on the node's API listener. `client` implements openraft's network traits
//! (one cached HTTP/2 channel per peer, a deadline on every RPC); `server` hands incoming
//! RPCs to the local `Raft`; `faults` lets tests cut links between nodes.
//!
//! Must not import `registry`, `gossip`, `api` or `node`.

mod client;
mod faults;
mod server;

use std::sync::{Arc, RwLock};

pub use client::{NetworkFactory, PeerClient};
pub use faults::Faults;
pub use server::{CurrentRaft, RaftService};

/// The raft cluster this member belongs to or is joining, carried on every raft message: a
/// member refuses requests from another cluster. Shared by the member's client and server.
#[derive(Debug, Clone, Default)]
pub struct ClusterTag(Arc<RwLock<Option<String>>>);

impl ClusterTag {
    pub fn get(&self) -> Option<String> {
        self.0.read().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    pub fn set(&self, cluster: Option<String>) {
        match self.0.write() {
            Ok(mut g) => *g = cluster,
            Err(p) => *p.into_inner() = cluster,
        }
    }

    /// The tag as sent on the wire (empty when unknown).
    pub(crate) fn wire(&self) -> String {
        self.get().unwrap_or_default()
    }

    /// Whether a request tagged `theirs` may reach this member: yes unless both sides know
    /// their cluster and the two differ.
    pub(crate) fn admit(&self, theirs: &str) -> Result<(), String> {
        match self.get() {
            Some(mine) if !theirs.is_empty() && theirs != mine => {
                Err(format!("raft message from cluster {theirs}; this member belongs to cluster {mine}"))
            }
            _ => Ok(()),
        }
    }
}

/// Generated code for `proto/muster/raft/v1/raft.proto`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("muster.raft.v1");
}

/// Encodes an openraft message for the wire.
pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(v)
}

/// Decodes an openraft message from the wire.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(b)
}
