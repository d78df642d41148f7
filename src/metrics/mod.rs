//! Prometheus metrics for `GET /metrics`: a small registry of our own ([`family`]: counters,
//! gauges, fixed-bucket histograms, bounded label sets, all lock-free atomics on the hot
//! path), the text encoder ([`encode`], exposition format 0.0.4), the catalog of what is
//! counted ([`catalog`]), and [`render`], which writes the counted families next to values read
//! from the node's state at scrape time ([`NodeView`]: members by state, services by status,
//! raft term, the wanted stack).
//!
//! The catalog is process-wide (`static` items): one process is one node in production, so a
//! global is the whole node's count; tests that run several nodes run them as processes.
//! Thin drivers update it (the gossip driver, the consensus wrapper, the registrar, the
//! supervisor's loops, the API middleware [`http::track`]); the pure cores (`gossip::swim`,
//! the `gossip::serf` core, `registry`, `supervisor::plan`) never do.
//!
//! Must not import any other muster module: everything that counts imports this, and the API
//! fills [`NodeView`] from its own state.

pub mod catalog;
pub mod encode;
pub mod family;
pub mod http;
pub mod process;

pub use catalog::{Direction, Transport, API, GOSSIP, RAFT, REGISTRY, SUPERVISOR};
pub use encode::{Kind, TextEncoder, CONTENT_TYPE};

/// Members of the gossip view by state; every state is written, zeros included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberCounts {
    pub alive: u64,
    pub leaving: u64,
    pub left: u64,
    pub failed: u64,
    /// Known but not yet confirmed alive.
    pub none: u64,
}

/// Services in the registry by status; every status is written, zeros included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCounts {
    pub active: u64,
    pub inactive: u64,
    pub expired: u64,
    pub unhealthy: u64,
}

/// What `/metrics` reads from the node's state when it is scraped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeView {
    pub version: String,
    pub members: MemberCounts,
    pub raft_term: u64,
    pub services: ServiceCounts,
    /// The stack this host wants: one of [`catalog::STACKS`].
    pub stack: String,
}

/// The whole exposition: the view's gauges and every counted family, grouped by subsystem.
pub fn render(view: &NodeView) -> String {
    let mut e = TextEncoder::new();
    e.family("muster_build_info", "Always 1; the label is the running version.", Kind::Gauge);
    e.sample("muster_build_info", &[("version", &view.version)], 1.0);
    if let Some(bytes) = process::resident_memory_bytes() {
        e.family("process_resident_memory_bytes", "Resident memory size in bytes.", Kind::Gauge);
        e.sample("process_resident_memory_bytes", &[], bytes);
    }
    if let Some(seconds) = process::start_time_seconds() {
        e.family(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch.",
            Kind::Gauge,
        );
        e.sample("process_start_time_seconds", &[], seconds);
    }

    let m = &view.members;
    e.family(
        "muster_gossip_members",
        "Members of the gossip view by state, this node included.",
        Kind::Gauge,
    );
    for (state, n) in
        [("alive", m.alive), ("leaving", m.leaving), ("left", m.left), ("failed", m.failed), ("none", m.none)]
    {
        e.sample("muster_gossip_members", &[("state", state)], n as f64);
    }
    GOSSIP.write(&mut e);

    e.family("muster_raft_term", "The raft term this node knows.", Kind::Gauge);
    e.sample("muster_raft_term", &[], view.raft_term as f64);
    RAFT.write(&mut e);

    let s = &view.services;
    e.family(
        "muster_registry_services",
        "Services in this node's copy of the registry by status.",
        Kind::Gauge,
    );
    for (status, n) in
        [("active", s.active), ("inactive", s.inactive), ("expired", s.expired), ("unhealthy", s.unhealthy)]
    {
        e.sample("muster_registry_services", &[("status", status)], n as f64);
    }
    REGISTRY.write(&mut e);

    API.write(&mut e);

    e.family(
        "muster_supervisor_stack",
        "1 for the stack this host wants now, 0 for the others.",
        Kind::Gauge,
    );
    for stack in catalog::STACKS {
        let on = if view.stack == stack { 1.0 } else { 0.0 };
        e.sample("muster_supervisor_stack", &[("stack", stack)], on);
    }
    SUPERVISOR.write(&mut e);
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_status_is_written_even_at_zero() {
        // Proves the always-present label values: all member states, all four service
        // statuses and one stack gauge per stack, 1 only for the wanted one.
        let view = NodeView {
            version: "1.2.3".into(),
            members: MemberCounts { alive: 2, ..Default::default() },
            raft_term: 7,
            services: ServiceCounts { active: 3, ..Default::default() },
            stack: "proxy".into(),
        };
        let text = render(&view);
        for line in [
            "muster_build_info{version=\"1.2.3\"} 1",
            "muster_gossip_members{state=\"alive\"} 2",
            "muster_gossip_members{state=\"failed\"} 0",
            "muster_gossip_members{state=\"left\"} 0",
            "muster_gossip_members{state=\"leaving\"} 0",
            "muster_raft_term 7",
            "muster_registry_services{status=\"active\"} 3",
            "muster_registry_services{status=\"unhealthy\"} 0",
            "muster_registry_services{status=\"expired\"} 0",
            "muster_registry_services{status=\"inactive\"} 0",
            "muster_supervisor_stack{stack=\"proxy\"} 1",
            "muster_supervisor_stack{stack=\"server\"} 0",
            "muster_supervisor_stack{stack=\"none\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "want line {line:?} in:\n{text}");
        }
        // Every family is introduced exactly once, before its samples.
        let mut types: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        let n = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), n, "a family typed twice:\n{text}");
    }
}
