//! muster: one binary per host. Gossip (Serf's wire protocol) finds the hosts; later layers elect
//! one server, replicate a service registry and run the matching Docker stack.
//!
//! Layout (dependencies point down): `config` → `gossip` (`wire`, `swim`, `serf` pure cores,
//! `net` driver) → `discovery` → `membership` → `api` → `node` (the composition root).
//! `supervisor` holds the Docker supervisor's pure cores (compose file → stacks, reconcile plan).

pub mod announce;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod consensus;
pub mod discovery;
pub mod event_handlers;
pub mod go_regexp;
pub mod gossip;
pub mod health;
pub mod logging;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod replicated;
pub mod serf_rpc;
pub mod supervisor;
pub mod tls;
pub mod tokens;

/// Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), and nothing else: hidden from the
/// docs and not part of muster's API. Each item is a thin wrapper around a private function the
/// node itself calls on bytes from the network, so the fuzzers exercise the real decoders, not
/// copies of them. Everything else the targets need is public already.
#[doc(hidden)]
pub mod fuzzing {
    /// The raft transport's payload decoding (MessagePack), exactly as the raft gRPC server
    /// applies it to every request's `RaftMessage.payload` and the client to every reply.
    pub fn raft_decode<T: serde::de::DeserializeOwned>(
        payload: &[u8],
    ) -> Result<T, rmp_serde::decode::Error> {
        crate::consensus::network::decode(payload)
    }

    /// The id the REST and gRPC register handlers give a registration that came without one.
    pub fn random_service_id() -> String {
        crate::api::grpc::convert::random_uuid()
    }
}
