//! Timing presets, one per `--profile`, with the Go agent's values so mixed clusters behave
//! alike. Every field says what it times and which memberlist default it mirrors.

use std::time::Duration;

/// Failure-detection and dissemination timing.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Time between probes of one member (memberlist `ProbeInterval`).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others (`ProbeTimeout`).
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly (`IndirectChecks`).
    pub indirect_checks: usize,
    /// Base suspicion timeout multiplier (`SuspicionMult`).
    pub suspicion_mult: u32,
    /// Upper bound of the suspicion timeout, as a multiple of the base (`SuspicionMaxTimeoutMult`).
    pub suspicion_max_timeout_mult: u32,
    /// Broadcast retransmit multiplier (`RetransmitMult`).
    pub retransmit_mult: u32,
    /// Time between gossip rounds (`GossipInterval`).
    pub gossip_interval: Duration,
    /// Members gossiped to per round (`GossipNodes`).
    pub gossip_nodes: usize,
    /// Keep gossiping to dead members this long, so they learn they were declared dead
    /// (`GossipToTheDeadTime`); also how long dead members stay in the probe list.
    pub gossip_to_the_dead: Duration,
    /// Full state exchange interval over TCP (`PushPullInterval`).
    pub push_pull_interval: Duration,
    /// Deadline for one TCP exchange (`TCPTimeout`).
    pub tcp_timeout: Duration,
    /// Upper bound of the Lifeguard awareness multiplier (`AwarenessMaxMultiplier`).
    pub awareness_max: u32,
    /// Largest UDP packet we send (`UDPBufferSize`).
    pub udp_buffer_bytes: usize,
}

impl Timing {
    /// Go's `DefaultLANConfig`.
    pub fn lan() -> Self {
        Timing {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            indirect_checks: 3,
            suspicion_mult: 4,
            suspicion_max_timeout_mult: 6,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_nodes: 3,
            gossip_to_the_dead: Duration::from_secs(30),
            push_pull_interval: Duration::from_secs(30),
            tcp_timeout: Duration::from_secs(10),
            awareness_max: 8,
            udp_buffer_bytes: 1400,
        }
    }

    /// Go's `DefaultWANConfig`: slower probes, longer suspicion.
    pub fn wan() -> Self {
        Timing {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            gossip_to_the_dead: Duration::from_secs(60),
            push_pull_interval: Duration::from_secs(60),
            tcp_timeout: Duration::from_secs(30),
            ..Timing::lan()
        }
    }

    /// Go's `DefaultLocalConfig`: one host or a very fast network.
    pub fn local() -> Self {
        Timing {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(200),
            indirect_checks: 1,
            suspicion_mult: 3,
            retransmit_mult: 2,
            gossip_interval: Duration::from_millis(100),
            gossip_to_the_dead: Duration::from_secs(15),
            push_pull_interval: Duration::from_secs(15),
            tcp_timeout: Duration::from_secs(1),
            ..Timing::lan()
        }
    }

    /// Push/pull interval scaled for large clusters, as memberlist does past 32 members.
    pub fn push_pull_scaled(&self, nodes: usize) -> Duration {
        const THRESHOLD: usize = 32;
        if nodes <= THRESHOLD {
            return self.push_pull_interval;
        }
        let mult = ((nodes as f64).log2() - (THRESHOLD as f64).log2()).ceil() + 1.0;
        self.push_pull_interval.mul_f64(mult)
    }
}
