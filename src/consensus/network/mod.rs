//! The raft transport: openraft messages as MessagePack inside the `muster.raft.v1.Raft` gRPC
//! service, served on the node's API listener. `client` implements openraft's network traits
//! (one cached HTTP/2 channel per peer, a deadline on every RPC); `server` hands incoming
//! RPCs to the local `Raft`; `faults` lets tests cut links between nodes.
//!
//! Must not import `registry`, `gossip`, `api` or `node`.

mod client;
mod faults;
mod server;

pub use client::{NetworkFactory, PeerClient};
pub use faults::Faults;
pub use server::RaftService;

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
