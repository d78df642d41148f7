//! SWIM failure detection and dissemination, memberlist-compatible, as a pure state machine.
//!
//! Driven by `(input, now)`: [`Swim::handle_message`] for each decoded message,
//! [`Swim::tick`] when [`Swim::next_deadline`] passes, and the results of TCP work the driver
//! did on its behalf. Output is a list of [`Effect`]s (packets to send, TCP exchanges to start,
//! member events, Serf payloads). No sockets, no clock, no tokio: `now` is always an argument.
//! Must not import `gossip::net`, `gossip::serf` or anything above the gossip layer.

mod broadcast;
mod node;
mod probe;
mod state;
mod suspicion;
mod timing;

pub use broadcast::{retransmit_limit, BroadcastQueue};
pub use node::{ip_from_bytes, ip_to_bytes, vsn_from_bytes, Node, NodeState};
pub use suspicion::{suspicion_timeout, Suspicion};
pub use timing::Timing;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::gossip::wire::{Message, PushNodeState};

/// Our protocol versions: memberlist 1..=5 speaking 2, Serf 2..=5 speaking 4 (what the Go agent
/// advertises).
pub const VSN: [u8; 6] = [1, 5, 2, 2, 5, 4];

/// Bytes a compound message adds per part (its u16 length).
const COMPOUND_OVERHEAD: usize = 2;
/// Bytes of the compound header, CRC, label and encryption we leave room for in a UDP packet.
const PACKET_OVERHEAD: usize = 4 + 5 + 2 + 255 + 1 + 12 + 16;
/// Queued broadcasts kept at most (memberlist's queue is unbounded; ours is not).
const BROADCAST_QUEUE_MAX: usize = 4096;
/// Indirect-probe relays we keep open at once.
const RELAYS_MAX: usize = 1024;
/// Largest ack payload we attach (Serf's coordinate is about 100 bytes); a bigger one would
/// crowd gossip out of every ack.
pub const ACK_PAYLOAD_MAX_BYTES: usize = 512;

/// Who we are on the wire.
#[derive(Debug, Clone)]
pub struct LocalNode {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub meta: Vec<u8>,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send these encoded messages to `to` over UDP (one packet, or a compound if several).
    Send { to: SocketAddr, msgs: Vec<Vec<u8>>, crc: bool },
    /// Ping `to` over a TCP stream and report with [`Swim::tcp_ping_result`].
    TcpPing { to: SocketAddr, ping: crate::gossip::wire::Ping, deadline: Instant },
    /// Exchange full state with `to` over TCP (`join` marks a join).
    PushPull { to: SocketAddr, join: bool },
    /// A member joined, changed or went away (dead or left).
    Member(MemberEvent),
    /// A user (Serf) payload arrived.
    User(Vec<u8>),
    /// A direct probe of `node` was acked within the probe timeout: `rtt` runs from sending
    /// the ping to handling the ack, `payload` is what the ack carried (memberlist's
    /// `NotifyPingComplete`; Serf puts its network coordinate there).
    PingComplete { node: String, rtt: Duration, payload: Vec<u8> },
    /// Another member at `other` claims this node's name (memberlist's `NotifyConflict`; Serf
    /// then asks the cluster which of the two it knows).
    NameConflict { other: SocketAddr },
}

/// Member changes for the layer above.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberEvent {
    Join(Node),
    Update(Node),
    /// `node.state` says whether it was declared dead or left.
    Leave(Node),
}

/// Running totals of the probe loop, which the driver copies into the node's metrics (plain
/// numbers: the core keeps no globals and does no I/O).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProbeTally {
    /// Probes of other members started.
    pub probes: u64,
    /// Probes that no direct, indirect or TCP ack answered.
    pub probes_failed: u64,
    /// Members this node started to suspect (by its own probe or another member's report).
    pub suspicions: u64,
}

/// The SWIM state machine.
pub struct Swim {
    local: LocalNode,
    timing: Timing,
    incarnation: u32,
    nodes: BTreeMap<String, Node>,
    probe_order: Vec<String>,
    probe_index: usize,
    probe: Option<probe::Probe>,
    relays: HashMap<u32, probe::Relay>,
    seq: u32,
    suspicions: HashMap<String, Suspicion>,
    awareness: u32,
    broadcasts: BroadcastQueue,
    user_broadcasts: BroadcastQueue,
    next_probe: Instant,
    next_gossip: Instant,
    next_push_pull: Instant,
    leaving: bool,
    /// Attached to the acks we send for UDP pings (memberlist's `AckPayload`).
    ack_payload: Vec<u8>,
    rng: StdRng,
    effects: Vec<Effect>,
    tally: ProbeTally,
}

impl Swim {
    /// Starts alive with incarnation 1 and queues our alive message.
    pub fn new(local: LocalNode, timing: Timing, seed: u64, now: Instant) -> Swim {
        let mut rng = StdRng::seed_from_u64(seed);
        let stagger = |rng: &mut StdRng, d: Duration| -> Duration {
            use rand::Rng;
            d.mul_f64(rng.random_range(0.0..1.0))
        };
        let next_probe = now + stagger(&mut rng, timing.probe_interval);
        let next_gossip = now + stagger(&mut rng, timing.gossip_interval);
        let next_push_pull = now + timing.push_pull_interval + stagger(&mut rng, timing.push_pull_interval);
        let mut swim = Swim {
            broadcasts: BroadcastQueue::new(timing.retransmit_mult, BROADCAST_QUEUE_MAX),
            user_broadcasts: BroadcastQueue::new(timing.retransmit_mult, BROADCAST_QUEUE_MAX),
            local,
            timing,
            incarnation: 0,
            nodes: BTreeMap::new(),
            probe_order: Vec::new(),
            probe_index: 0,
            probe: None,
            relays: HashMap::new(),
            seq: 0,
            suspicions: HashMap::new(),
            awareness: 0,
            next_probe,
            next_gossip,
            next_push_pull,
            leaving: false,
            ack_payload: Vec::new(),
            rng,
            effects: Vec::new(),
            tally: ProbeTally::default(),
        };
        swim.incarnation = 1;
        let me = Node {
            name: swim.local.name.clone(),
            addr: swim.local.addr,
            port: swim.local.port,
            meta: swim.local.meta.clone(),
            incarnation: 1,
            state: NodeState::Alive,
            state_change: now,
            vsn: VSN,
        };
        swim.nodes.insert(me.name.clone(), me.clone());
        swim.effects.push(Effect::Member(MemberEvent::Join(me)));
        swim.broadcast_alive_self();
        swim
    }

    pub fn name(&self) -> &str {
        &self.local.name
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Every member we track, ourselves included.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Members that are alive or suspect (ourselves included).
    pub fn num_live(&self) -> usize {
        self.nodes.values().filter(|n| !n.state.dead_or_left()).count()
    }

    /// Lifeguard's local health score (0 is healthy).
    pub fn awareness(&self) -> u32 {
        self.awareness
    }

    /// The probe loop's totals so far.
    pub fn tally(&self) -> ProbeTally {
        self.tally
    }

    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// Drains the effects produced so far.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The earliest time at which [`Swim::tick`] has work to do. A gossip round with nothing
    /// queued sends nothing, so while both broadcast queues are empty the round is no
    /// deadline: an idle node wakes for its probes alone, and a broadcast queued later goes
    /// out on the round that is due by then (at once, if the node rested past it).
    pub fn next_deadline(&self) -> Instant {
        let mut t = self.next_probe.min(self.next_push_pull);
        if !(self.broadcasts.is_empty() && self.user_broadcasts.is_empty()) {
            t = t.min(self.next_gossip);
        }
        if let Some(p) = &self.probe {
            t = t.min(p.next_deadline());
        }
        for r in self.relays.values() {
            t = t.min(r.deadline);
        }
        for s in self.suspicions.values() {
            t = t.min(s.deadline());
        }
        t
    }

    /// Runs everything due at `now`.
    pub fn tick(&mut self, now: Instant) {
        self.tick_probe(now);
        self.tick_relays(now);
        self.tick_suspicions(now);
        if now >= self.next_gossip {
            self.next_gossip = now + self.timing.gossip_interval;
            self.gossip(now);
        }
        if now >= self.next_push_pull {
            self.next_push_pull = now + self.timing.push_pull_scaled(self.nodes.len());
            self.push_pull_random();
        }
    }

    /// Handles one decoded message that arrived from `from` (over UDP, or a stream's user msg).
    pub fn handle_message(&mut self, from: SocketAddr, msg: Message, now: Instant) {
        match msg {
            Message::Ping(p) => self.handle_ping(from, p),
            Message::IndirectPing(ind) => self.handle_indirect_ping(from, ind, now),
            Message::Ack(a) => self.handle_ack(a, now),
            Message::Nack(n) => self.handle_nack(n.seq_no),
            Message::Suspect(s) => self.suspect_node(s, now),
            Message::Alive(a) => self.alive_node(a, now, false),
            Message::Dead(d) => self.dead_node(d, now),
            Message::User(payload) => self.effects.push(Effect::User(payload)),
            Message::Err(e) => {
                tracing::warn!(peer.addr = %from, error = %e.error, "gossip: peer reported an error")
            }
        }
    }

    /// Queues a Serf payload for piggybacked gossip; `key` replaces an older one with the key.
    pub fn queue_user_broadcast(&mut self, key: Option<String>, payload: Vec<u8>) {
        self.user_broadcasts.queue(key, payload);
    }

    /// Serf's payloads waiting in the broadcast queue.
    pub fn user_broadcasts(&self) -> impl Iterator<Item = &[u8]> {
        self.user_broadcasts.messages()
    }

    /// True while broadcasts (ours or Serf's) still wait to be sent.
    pub fn broadcasts_pending(&self) -> bool {
        !self.broadcasts.is_empty() || !self.user_broadcasts.is_empty()
    }

    /// True once our own leave message has gone out at least its full retransmit count, or
    /// there is nobody to tell.
    pub fn leave_sent(&self) -> bool {
        let others = self.nodes.values().any(|n| n.name != self.local.name && !n.state.dead_or_left());
        !others || !self.broadcasts.contains_key(&self.local.name)
    }

    /// Our full state for a push/pull exchange.
    pub fn local_state(&self) -> Vec<PushNodeState> {
        self.nodes
            .values()
            .map(|n| PushNodeState {
                name: n.name.clone(),
                addr: ip_to_bytes(n.addr),
                port: n.port,
                meta: n.meta.clone(),
                incarnation: n.incarnation,
                state: n.state.wire(),
                vsn: n.vsn.to_vec(),
            })
            .collect()
    }

    /// Starts a join: a push/pull with `to`.
    pub fn join(&mut self, to: SocketAddr) {
        self.effects.push(Effect::PushPull { to, join: true });
    }

    /// Changes our metadata (Serf tags) and tells everyone with a higher incarnation.
    pub fn set_meta(&mut self, meta: Vec<u8>) {
        if self.leaving {
            // A new alive now would undo our leave.
            return;
        }
        self.local.meta = meta.clone();
        self.incarnation += 1;
        let inc = self.incarnation;
        if let Some(me) = self.nodes.get_mut(&self.local.name) {
            me.meta = meta;
            me.incarnation = inc;
        }
        self.broadcast_alive_self();
    }

    /// Sets the payload of the acks we send for pings from now on. One over
    /// [`ACK_PAYLOAD_MAX_BYTES`] is refused: acks then go out empty.
    pub fn set_ack_payload(&mut self, payload: Vec<u8>) {
        if payload.len() > ACK_PAYLOAD_MAX_BYTES {
            tracing::warn!(
                bytes = payload.len(),
                max = ACK_PAYLOAD_MAX_BYTES,
                "gossip: ack payload too large; acks go out empty"
            );
            self.ack_payload.clear();
            return;
        }
        self.ack_payload = payload;
    }

    /// Announces a graceful leave: a dead message about ourselves from ourselves.
    pub fn leave(&mut self, now: Instant) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        let d = crate::gossip::wire::Dead {
            incarnation: self.incarnation,
            node: self.local.name.clone(),
            from: self.local.name.clone(),
        };
        self.dead_node(d, now);
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn crc_for(&self, to: SocketAddr) -> bool {
        self.nodes.values().any(|n| n.socket() == to && n.pmax() >= 5)
    }

    /// Sends `msgs` to `to`, piggybacking queued broadcasts in the room left in the packet, as
    /// memberlist does for every ping, ack and indirect ping: gossip spreads with the probes.
    fn send(&mut self, to: SocketAddr, mut msgs: Vec<Vec<u8>>) {
        let used: usize = msgs.iter().map(|m| m.len() + COMPOUND_OVERHEAD).sum();
        let room = self.timing.udp_buffer_bytes.saturating_sub(PACKET_OVERHEAD + used);
        msgs.extend(self.take_broadcasts(room));
        let crc = self.crc_for(to);
        self.effects.push(Effect::Send { to, msgs, crc });
    }

    /// Queued memberlist and Serf broadcasts that fit in `budget` bytes, framed as messages.
    fn take_broadcasts(&mut self, budget: usize) -> Vec<Vec<u8>> {
        let n = self.nodes.len();
        let mut msgs = self.broadcasts.take(COMPOUND_OVERHEAD, budget, n);
        let used: usize = msgs.iter().map(|m| m.len() + COMPOUND_OVERHEAD).sum();
        for m in self.user_broadcasts.take(COMPOUND_OVERHEAD + 1, budget.saturating_sub(used), n) {
            let mut framed = Vec::with_capacity(m.len() + 1);
            framed.push(crate::gossip::wire::MessageType::User as u8);
            framed.extend_from_slice(&m);
            msgs.push(framed);
        }
        msgs
    }

    /// Up to `k` random members for which `keep` holds.
    fn random_nodes(&mut self, k: usize, keep: impl Fn(&Node) -> bool) -> Vec<Node> {
        let mut pool: Vec<Node> = self.nodes.values().filter(|n| keep(n)).cloned().collect();
        pool.shuffle(&mut self.rng);
        pool.truncate(k);
        pool
    }

    /// One gossip round: piggyback queued broadcasts to a few random members.
    fn gossip(&mut self, now: Instant) {
        let me = self.local.name.clone();
        let dead_window = self.timing.gossip_to_the_dead;
        let targets = self.random_nodes(self.timing.gossip_nodes, |n| {
            n.name != me
                && match n.state {
                    NodeState::Alive | NodeState::Suspect => true,
                    NodeState::Dead => now.saturating_duration_since(n.state_change) <= dead_window,
                    NodeState::Left => false,
                }
        });
        // Live members first: each send spends one of a broadcast's few transmits, and spent
        // on recently dead members alone it could reach no live one (memberlist's order is
        // random, so a small cluster with dead members can lose an intent that way).
        let mut targets = targets;
        targets.sort_by_key(|n| n.state == NodeState::Dead);
        let budget = self.timing.udp_buffer_bytes.saturating_sub(PACKET_OVERHEAD);
        for t in targets {
            let msgs = self.take_broadcasts(budget);
            if msgs.is_empty() {
                return;
            }
            let crc = self.crc_for(t.socket());
            self.effects.push(Effect::Send { to: t.socket(), msgs, crc });
        }
    }

    fn push_pull_random(&mut self) {
        let me = self.local.name.clone();
        if let Some(t) = self.random_nodes(1, |n| n.name != me && n.state == NodeState::Alive).pop() {
            self.effects.push(Effect::PushPull { to: t.socket(), join: false });
        }
    }

    /// Merges the member list received in a push/pull.
    pub fn merge_remote(&mut self, states: Vec<PushNodeState>, now: Instant) {
        for s in states {
            let Some(state) = NodeState::from_wire(s.state) else { continue };
            match state {
                NodeState::Alive => {
                    let a = crate::gossip::wire::Alive {
                        incarnation: s.incarnation,
                        node: s.name,
                        addr: s.addr,
                        port: s.port,
                        meta: s.meta,
                        vsn: s.vsn,
                    };
                    self.alive_node(a, now, false);
                }
                NodeState::Left => {
                    let d = crate::gossip::wire::Dead {
                        incarnation: s.incarnation,
                        node: s.name.clone(),
                        from: s.name,
                    };
                    self.dead_node(d, now);
                }
                // A peer's "dead" is only a reason to suspect: we check for ourselves.
                NodeState::Dead | NodeState::Suspect => {
                    let from = self.local.name.clone();
                    let sus = crate::gossip::wire::Suspect { incarnation: s.incarnation, node: s.name, from };
                    self.suspect_node(sus, now);
                }
            }
        }
    }
}

impl Swim {
    /// True while a user broadcast with this key waits to be sent its full count.
    pub fn user_broadcast_queued(&self, key: &str) -> bool {
        self.user_broadcasts.contains_key(key)
    }
}

#[cfg(test)]
mod tests;
