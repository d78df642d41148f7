//! Every metric the node counts, one struct per subsystem, each a process-wide `static`, and
//! how each writes its families. Drivers update them; [`super::render`] writes them, next to
//! the values read from the node's state at scrape time.

use super::encode::{Kind, TextEncoder};
use super::family::{Counter, Gauge, Histogram, Labeled};

/// Seconds: from half a millisecond (a local read) to ten seconds (a write that waits out a
/// failover).
const API_SECONDS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Seconds: an fsync'd commit on one node takes about a millisecond, across a LAN a few.
const COMMIT_SECONDS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Label sets the API families hold at most (routes × codes); more fold into `other`.
const API_SERIES_MAX: usize = 512;

/// How a gossip message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

const TRANSPORTS: [(Transport, &str); 2] = [(Transport::Udp, "udp"), (Transport::Tcp, "tcp")];
const DIRECTIONS: [(Direction, &str); 2] = [(Direction::Sent, "sent"), (Direction::Received, "received")];

fn slot(t: Transport, d: Direction) -> usize {
    (t as usize) * 2 + d as usize
}

/// The gossip driver's counts.
#[derive(Debug)]
pub struct GossipMetrics {
    /// Probe rounds started, failed (no ack by any route) and suspicions raised, copied from
    /// the swim core's tallies.
    pub probes: Counter,
    pub probes_failed: Counter,
    pub suspicions: Counter,
    messages: [Counter; 4],
    bytes: [Counter; 4],
}

impl GossipMetrics {
    /// `messages` memberlist messages in `bytes` bytes on the wire.
    pub fn traffic(&self, t: Transport, d: Direction, messages: u64, bytes: u64) {
        self.messages[slot(t, d)].add(messages);
        self.bytes[slot(t, d)].add(bytes);
    }

    /// The swim core's running totals (see `gossip::swim::ProbeTally`).
    pub fn probe_totals(&self, probes: u64, failed: u64, suspicions: u64) {
        self.probes.set_total(probes);
        self.probes_failed.set_total(failed);
        self.suspicions.set_total(suspicions);
    }

    pub(super) fn write(&self, e: &mut TextEncoder) {
        counter(e, "muster_gossip_probes_total", "Probes of other members this node started.", &self.probes);
        counter(
            e,
            "muster_gossip_probes_failed_total",
            "Probes no direct, indirect or TCP ack answered (the member became suspect).",
            &self.probes_failed,
        );
        counter(
            e,
            "muster_gossip_suspicions_total",
            "Members this node started to suspect (its own failed probes and others' reports).",
            &self.suspicions,
        );
        for (name, help, counters) in [
            ("muster_gossip_messages_total", "Gossip messages by transport and direction.", &self.messages),
            (
                "muster_gossip_bytes_total",
                "Gossip bytes on the wire by transport and direction.",
                &self.bytes,
            ),
        ] {
            e.family(name, help, Kind::Counter);
            for (t, tn) in TRANSPORTS {
                for (d, dn) in DIRECTIONS {
                    let v = counters[slot(t, d)].get() as f64;
                    e.sample(name, &[("transport", tn), ("direction", dn)], v);
                }
            }
        }
    }
}

pub static GOSSIP: GossipMetrics = GossipMetrics {
    probes: Counter::new(),
    probes_failed: Counter::new(),
    suspicions: Counter::new(),
    messages: [const { Counter::new() }; 4],
    bytes: [const { Counter::new() }; 4],
};

/// What the consensus driver sees of raft.
#[derive(Debug)]
pub struct RaftMetrics {
    pub leader_changes: Counter,
    pub is_leader: Gauge,
    pub applied_index: Gauge,
    pub last_log_index: Gauge,
    /// Propose → applied on the leader.
    pub commit_seconds: Histogram<12>,
}

impl RaftMetrics {
    pub(super) fn write(&self, e: &mut TextEncoder) {
        counter(
            e,
            "muster_raft_leader_changes_total",
            "Times this node saw the raft leader change (to another node or to none).",
            &self.leader_changes,
        );
        gauge(e, "muster_raft_is_leader", "1 while raft on this node is leader, else 0.", &self.is_leader);
        gauge(e, "muster_raft_applied_index", "The last raft log index applied here.", &self.applied_index);
        gauge(e, "muster_raft_last_log_index", "The last raft log index stored here.", &self.last_log_index);
        let name = "muster_raft_commit_duration_seconds";
        e.family(name, "Time from proposing an entry to its being applied, on the leader.", Kind::Histogram);
        e.histogram(name, &[], &self.commit_seconds.snapshot());
    }
}

pub static RAFT: RaftMetrics = RaftMetrics {
    leader_changes: Counter::new(),
    is_leader: Gauge::new(),
    applied_index: Gauge::new(),
    last_log_index: Gauge::new(),
    commit_seconds: Histogram::new(COMMIT_SECONDS),
};

/// Registry events, counted once in the cluster: where the leader committed or took them.
#[derive(Debug)]
pub struct RegistryMetrics {
    pub registrations: Counter,
    pub heartbeats: Counter,
    pub expirations: Counter,
    /// Health checks the leader ran, and how many of them failed.
    pub health_checks: Counter,
    pub health_checks_failed: Counter,
    /// `active` ↔ `unhealthy` changes the leader's check results committed.
    pub health_changes: Counter,
}

impl RegistryMetrics {
    pub(super) fn write(&self, e: &mut TextEncoder) {
        counter(
            e,
            "muster_registry_registrations_total",
            "Services registered, counted on the leader that committed them.",
            &self.registrations,
        );
        counter(
            e,
            "muster_registry_heartbeats_total",
            "Heartbeats taken, counted on the leader that took them.",
            &self.heartbeats,
        );
        counter(
            e,
            "muster_registry_expirations_total",
            "Services whose lease lapsed, counted on the leader that expired them.",
            &self.expirations,
        );
        counter(
            e,
            "muster_registry_health_checks_total",
            "Health checks run by the leader.",
            &self.health_checks,
        );
        counter(
            e,
            "muster_registry_health_checks_failed_total",
            "Health checks run by the leader that failed (error, non-2xx, refused, timeout).",
            &self.health_checks_failed,
        );
        counter(
            e,
            "muster_registry_health_status_changes_total",
            "Services turned unhealthy or active again by committed check results.",
            &self.health_changes,
        );
    }
}

pub static REGISTRY: RegistryMetrics = RegistryMetrics {
    registrations: Counter::new(),
    heartbeats: Counter::new(),
    expirations: Counter::new(),
    health_checks: Counter::new(),
    health_checks_failed: Counter::new(),
    health_changes: Counter::new(),
};

/// API requests, gRPC and HTTP, by method label (see [`super::http`]).
#[derive(Debug)]
pub struct ApiMetrics {
    /// Labels `method`, `code`.
    pub requests: Labeled<Counter>,
    /// Label `method`.
    pub seconds: Labeled<Histogram<14>>,
}

impl ApiMetrics {
    /// One request that answered `code` after `seconds`.
    pub fn request(&self, method: &str, code: &str, seconds: f64) {
        self.requests.with(&[method, code], Counter::inc);
        self.seconds.with(&[method], |h| h.observe(seconds));
    }

    pub(super) fn write(&self, e: &mut TextEncoder) {
        let name = "muster_api_requests_total";
        e.family(name, "API requests by method (gRPC path or HTTP route) and code.", Kind::Counter);
        for (labels, v) in self.requests.collect(Counter::get) {
            let (method, code) = (label(&labels, 0), label(&labels, 1));
            e.sample(name, &[("method", method), ("code", code)], v as f64);
        }
        let name = "muster_api_request_duration_seconds";
        e.family(name, "Time from a request's arrival to its response head, by method.", Kind::Histogram);
        for (labels, h) in self.seconds.collect(|h| h.snapshot()) {
            e.histogram(name, &[("method", label(&labels, 0))], &h);
        }
    }
}

fn new_api_histogram() -> Histogram<14> {
    Histogram::new(API_SECONDS)
}

pub static API: ApiMetrics = ApiMetrics {
    requests: Labeled::new(Counter::new, API_SERIES_MAX),
    seconds: Labeled::new(new_api_histogram, API_SERIES_MAX),
};

/// The stack supervisor's driver counts.
#[derive(Debug)]
pub struct SupervisorMetrics {
    /// By the stack moved to: none, server, proxy.
    transitions: [Counter; 3],
    pub docker_errors: Counter,
}

/// The stacks a host can want, in the order of [`SupervisorMetrics`]' counters.
pub const STACKS: [&str; 3] = ["none", "server", "proxy"];

impl SupervisorMetrics {
    /// A transition to `stack` (one of [`STACKS`]; anything else counts as `none`).
    pub fn transition(&self, stack: &str) {
        let i = STACKS.iter().position(|s| *s == stack).unwrap_or(0);
        self.transitions[i].inc();
    }

    pub(super) fn write(&self, e: &mut TextEncoder) {
        let name = "muster_supervisor_transitions_total";
        e.family(name, "Changes of the stack this host wants, by the stack wanted after.", Kind::Counter);
        for (stack, c) in STACKS.iter().zip(&self.transitions) {
            e.sample(name, &[("to", stack)], c.get() as f64);
        }
        counter(
            e,
            "muster_supervisor_docker_errors_total",
            "Docker errors: failed reconcile rounds and failed network clean-ups.",
            &self.docker_errors,
        );
    }
}

pub static SUPERVISOR: SupervisorMetrics =
    SupervisorMetrics { transitions: [const { Counter::new() }; 3], docker_errors: Counter::new() };

fn label(values: &[String], i: usize) -> &str {
    values.get(i).map_or("", String::as_str)
}

fn counter(e: &mut TextEncoder, name: &str, help: &str, c: &Counter) {
    e.family(name, help, Kind::Counter);
    e.sample(name, &[], c.get() as f64);
}

fn gauge(e: &mut TextEncoder, name: &str, help: &str, g: &Gauge) {
    e.family(name, help, Kind::Gauge);
    e.sample(name, &[], g.get());
}
