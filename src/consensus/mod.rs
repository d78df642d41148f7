//! Consensus: openraft (`=0.10.0-alpha.37`, pinned) wired to muster. This module is the only
//! place that names openraft, so an upgrade touches one directory.
//!
//! - [`types`]: [`TypeConfig`], the opaque [`Proposal`] / [`ProposalResult`], [`RaftNode`], and
//!   the [`Machine`] trait the registry implements.
//! - [`store`]: durable storage in redb: [`LogStore`] and [`StateMachineStore`], built by
//!   [`open`]; passes openraft's storage conformance suite (`tests/raft_storage.rs`).
//!
//! Must not import `registry`, `gossip`, `membership`, `api` or `node`: they depend on
//! consensus, never the reverse.

pub mod contact;
pub mod leadership;
pub mod network;
pub mod raft;
pub mod store;
pub mod types;

pub use self::store::{open, LogStore, MachineReader, StateMachineStore, StoreError};
pub use self::types::{Machine, Proposal, ProposalResult, RaftNode, TypeConfig};
