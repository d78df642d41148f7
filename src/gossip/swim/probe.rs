//! The probe loop: direct ping, then indirect pings with nacks and a TCP fallback, then
//! suspicion; plus relaying indirect pings for others. Lifeguard's awareness scales the
//! probe interval with our own health.

use std::net::SocketAddr;
use std::time::Instant;

use rand::seq::SliceRandom;

use super::{ip_from_bytes, ip_to_bytes, Effect, NodeState, Swim, RELAYS_MAX};
use crate::gossip::wire::{Ack, IndirectPing, Message, Nack, Ping, Suspect};

/// The probe in flight.
#[derive(Debug)]
pub(super) struct Probe {
    target: String,
    incarnation: u32,
    seq: u32,
    /// When the ping went out (the start of the RTT).
    sent: Instant,
    /// When to give up on a direct ack and ask others.
    direct_deadline: Instant,
    /// When the probe fails if nothing acked.
    end: Instant,
    indirect_started: bool,
    expected_nacks: usize,
    nacks: usize,
    tcp_ok: bool,
}

impl Probe {
    pub(super) fn next_deadline(&self) -> Instant {
        if self.indirect_started {
            self.end
        } else {
            self.direct_deadline
        }
    }
}

/// An indirect ping we relay for another member.
#[derive(Debug)]
pub(super) struct Relay {
    orig_seq: u32,
    requester: SocketAddr,
    nack: bool,
    pub(super) deadline: Instant,
}

impl Swim {
    fn apply_awareness(&mut self, delta: i64) {
        let max = self.timing.awareness_max.saturating_sub(1) as i64;
        self.awareness = (self.awareness as i64 + delta).clamp(0, max) as u32;
    }

    fn scaled(&self, d: std::time::Duration) -> std::time::Duration {
        d * (self.awareness + 1)
    }

    fn ping_for(&mut self, target: &str) -> Ping {
        Ping {
            seq_no: self.next_seq(),
            node: target.to_string(),
            source_addr: ip_to_bytes(self.local.addr),
            source_port: self.local.port,
            source_node: self.local.name.clone(),
        }
    }

    /// Picks the next member to probe, round-robin over a shuffled list.
    fn next_probe_target(&mut self) -> Option<String> {
        for _ in 0..2 {
            while self.probe_index < self.probe_order.len() {
                let name = self.probe_order[self.probe_index].clone();
                self.probe_index += 1;
                if name == self.local.name {
                    continue;
                }
                if let Some(n) = self.nodes.get(&name) {
                    if !n.state.dead_or_left() {
                        return Some(name);
                    }
                }
            }
            self.reset_probe_round();
        }
        None
    }

    /// End of a round: reshuffle the probe order.
    fn reset_probe_round(&mut self) {
        self.probe_order = self.nodes.keys().cloned().collect();
        self.probe_order.shuffle(&mut self.rng);
        self.probe_index = 0;
    }

    /// Removes members that have been dead or left longer than the gossip-to-the-dead window.
    pub(super) fn reap_dead(&mut self, now: Instant) {
        let window = self.timing.gossip_to_the_dead;
        let me = self.local.name.clone();
        self.nodes.retain(|name, n| {
            *name == me || !n.state.dead_or_left() || now.saturating_duration_since(n.state_change) <= window
        });
    }

    pub(super) fn tick_probe(&mut self, now: Instant) {
        if let Some(p) = &mut self.probe {
            if !p.indirect_started && now >= p.direct_deadline {
                p.indirect_started = true;
                self.start_indirect(now);
            }
        }
        let expired = matches!(&self.probe, Some(p) if p.indirect_started && now >= p.end);
        if expired {
            self.fail_probe(now);
        }
        if now >= self.next_probe && self.probe.is_none() {
            self.reap_dead(now);
            self.next_probe = now + self.scaled(self.timing.probe_interval);
            if let Some(target) = self.next_probe_target() {
                self.start_probe(target, now);
            }
        }
    }

    fn start_probe(&mut self, target: String, now: Instant) {
        let Some(node) = self.nodes.get(&target).cloned() else { return };
        let ping = self.ping_for(&target);
        let mut msgs = vec![Message::Ping(ping.clone()).encode()];
        if node.state != NodeState::Alive {
            // Tell a suspect it is suspected, so it can refute quickly.
            let s = Suspect {
                incarnation: node.incarnation,
                node: node.name.clone(),
                from: self.local.name.clone(),
            };
            msgs.push(Message::Suspect(s).encode());
        }
        self.send(node.socket(), msgs);
        self.tally.probes += 1;
        self.probe = Some(Probe {
            target,
            incarnation: node.incarnation,
            seq: ping.seq_no,
            sent: now,
            direct_deadline: now + self.timing.probe_timeout,
            end: now + self.scaled(self.timing.probe_interval),
            indirect_started: false,
            expected_nacks: 0,
            nacks: 0,
            tcp_ok: false,
        });
    }

    fn start_indirect(&mut self, _now: Instant) {
        let Some(p) = &self.probe else { return };
        let (target, seq, end) = (p.target.clone(), p.seq, p.end);
        let Some(node) = self.nodes.get(&target).cloned() else { return };
        let me = self.local.name.clone();
        let peers = self.random_nodes(self.timing.indirect_checks, |n| {
            n.name != me && n.name != target && n.state == NodeState::Alive
        });
        let mut expected = 0;
        for peer in peers {
            let nack = peer.pmax() >= 4;
            if nack {
                expected += 1;
            }
            let ind = IndirectPing {
                seq_no: seq,
                target: ip_to_bytes(node.addr),
                port: node.port,
                node: node.name.clone(),
                nack,
                source_addr: ip_to_bytes(self.local.addr),
                source_port: self.local.port,
                source_node: self.local.name.clone(),
            };
            self.send(peer.socket(), vec![Message::IndirectPing(ind).encode()]);
        }
        if let Some(p) = &mut self.probe {
            p.expected_nacks = expected;
        }
        if node.pmax() >= 3 {
            let ping = Ping {
                seq_no: seq,
                node: node.name.clone(),
                source_addr: ip_to_bytes(self.local.addr),
                source_port: self.local.port,
                source_node: self.local.name.clone(),
            };
            self.effects.push(Effect::TcpPing { to: node.socket(), ping, deadline: end });
        }
    }

    /// The driver's answer to an [`Effect::TcpPing`].
    pub fn tcp_ping_result(&mut self, seq: u32, acked: bool, now: Instant) {
        if let Some(p) = &mut self.probe {
            if p.seq == seq && acked {
                p.tcp_ok = true;
                if now >= p.end {
                    self.fail_probe(now);
                }
            }
        }
    }

    fn fail_probe(&mut self, now: Instant) {
        let Some(p) = self.probe.take() else { return };
        if p.tcp_ok {
            tracing::warn!(
                member = %p.target,
                "gossip: reached member over TCP but UDP probes failed; the network may drop UDP"
            );
            self.apply_awareness(-1);
            return;
        }
        let delta = if p.expected_nacks > 0 { p.expected_nacks.saturating_sub(p.nacks) as i64 } else { 1 };
        self.apply_awareness(delta);
        self.tally.probes_failed += 1;
        tracing::info!(member = %p.target, "gossip: suspect member has failed, no acks received");
        let s = Suspect { incarnation: p.incarnation, node: p.target, from: self.local.name.clone() };
        self.suspect_node(s, now);
    }

    pub(super) fn handle_ping(&mut self, from: SocketAddr, p: Ping) {
        if !p.node.is_empty() && p.node != self.local.name {
            tracing::warn!(peer.addr = %from, node = %p.node, "gossip: got a ping for another node name");
            return;
        }
        let to = match ip_from_bytes(&p.source_addr) {
            Some(ip) if p.source_port > 0 => SocketAddr::new(ip, p.source_port),
            _ => from,
        };
        let ack = Ack { seq_no: p.seq_no, payload: self.ack_payload.clone() };
        self.send(to, vec![Message::Ack(ack).encode()]);
    }

    pub(super) fn handle_indirect_ping(&mut self, from: SocketAddr, ind: IndirectPing, now: Instant) {
        let Some(ip) = ip_from_bytes(&ind.target) else { return };
        if self.relays.len() >= RELAYS_MAX {
            return;
        }
        let requester = match ip_from_bytes(&ind.source_addr) {
            Some(sip) if ind.source_port > 0 => SocketAddr::new(sip, ind.source_port),
            _ => from,
        };
        let ping = self.ping_for(&ind.node);
        self.relays.insert(
            ping.seq_no,
            Relay {
                orig_seq: ind.seq_no,
                requester,
                nack: ind.nack,
                deadline: now + self.timing.probe_timeout,
            },
        );
        self.send(SocketAddr::new(ip, ind.port), vec![Message::Ping(ping).encode()]);
    }

    pub(super) fn handle_ack(&mut self, ack: Ack, now: Instant) {
        let seq = ack.seq_no;
        if let Some(r) = self.relays.remove(&seq) {
            // As memberlist: a relayed ack carries no payload.
            let ack = Ack { seq_no: r.orig_seq, payload: Vec::new() };
            self.send(r.requester, vec![Message::Ack(ack).encode()]);
            return;
        }
        let Some(p) = self.probe.take_if(|p| p.seq == seq) else { return };
        self.apply_awareness(-1);
        // Only a direct ack within the probe timeout measures an RTT (memberlist's probeNode).
        if !p.indirect_started && now < p.direct_deadline {
            let rtt = now.saturating_duration_since(p.sent);
            self.effects.push(Effect::PingComplete { node: p.target, rtt, payload: ack.payload });
        }
    }

    pub(super) fn handle_nack(&mut self, seq: u32) {
        if let Some(p) = &mut self.probe {
            if p.seq == seq {
                p.nacks += 1;
            }
        }
    }

    pub(super) fn tick_relays(&mut self, now: Instant) {
        let due: Vec<u32> = self.relays.iter().filter(|(_, r)| now >= r.deadline).map(|(s, _)| *s).collect();
        for s in due {
            if let Some(r) = self.relays.remove(&s) {
                if r.nack {
                    self.send(r.requester, vec![Message::Nack(Nack { seq_no: r.orig_seq }).encode()]);
                }
            }
        }
    }
}
