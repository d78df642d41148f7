//! muster: one binary per host. Gossip (Serf's wire protocol) finds the hosts; later layers elect
//! one server, replicate a service registry and run the matching Docker stack.
//!
//! Layout (dependencies point down): `config` → `gossip` (`wire`, `swim`, `serf` pure cores,
//! `net` driver) → `discovery` → `membership` → `api` → `node` (the composition root).
//! `supervisor` holds the Docker supervisor's pure cores (compose file → stacks, reconcile plan).

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod consensus;
pub mod discovery;
pub mod event_handlers;
pub mod go_regexp;
pub mod gossip;
pub mod logging;
pub mod membership;
pub mod node;
pub mod registry;
pub mod replicated;
pub mod serf_rpc;
pub mod supervisor;
pub mod tls;
pub mod tokens;
