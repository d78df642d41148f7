//! Jepsen-style tests of muster (issue #6): real muster nodes as Docker containers on a private
//! bridge network, faults injected from the host, client operations recorded, histories checked.
//!
//! Layout, one concept per file:
//! - [`cmd`]: running a host command with a timeout (the only place that spawns processes).
//! - [`cluster`]: the nodes, their network and volumes, through the `docker` CLI; cleanup on drop.
//! - [`nemesis`]: faults (iptables partitions inside a node's namespace, kill, pause) and their
//!   timeline.
//! - [`history`]: the record of client operations (invoke, complete, outcome) as JSONL.
//! - [`workload`]: concurrent gRPC clients producing that history.
//! - [`check`]: pure checkers over a history and the final state; each returns a [`check::Verdict`].
//! - [`check_linear`]: registry operations linearizable, id by id (a Wing–Gong search).
//! - [`watch`]: watch clients following `Registry/Watch` through breaks, recording what they saw.
//! - [`check_watch`]: watch streams ordered, gap-free and consistent with the final state.
//! - [`heartbeat`]: TTL clients heartbeating services of their own type, and a watch observer
//!   recording every lease event.
//! - [`check_ttl`]: leases end neither early (no acknowledged heartbeat lost) nor late.
//! - [`check_stacks`]: at most one server stack at any instant, from Docker's event stream.
//! - [`schedule`]: the named faults, one fault as an apply–hold–heal step, random schedules.
//! - [`leaders`]: polls every node's Cluster/Status during a run: who each believed led, in which term.
//! - [`timeline`]: the run's picture (faults, leadership lanes, op latencies, verdicts) as one HTML page.
//! - [`run`]: one whole run (cluster, clients, schedule, heal, checkers, report), shared by the
//!   smoke set and the long runs.
//! - [`report`]: the run directory (`target/cluster-tests/<seed>-<time>/`).
//!
//! Nothing here is imported by muster itself; this crate uses muster only for its generated gRPC
//! types.

pub mod check;
pub mod check_linear;
pub mod check_stacks;
pub mod check_ttl;
pub mod check_watch;
pub mod cluster;
pub mod cmd;
pub mod heartbeat;
pub mod history;
pub mod leaders;
pub mod nemesis;
pub mod report;
pub mod run;
pub mod schedule;
pub mod timeline;
pub mod watch;
pub mod workload;
