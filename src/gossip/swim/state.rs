//! Alive, suspect and dead: how memberlist updates a member's state from a message, when it
//! re-broadcasts, and how we refute rumours about ourselves with a higher incarnation.

use std::time::Instant;

use super::{
    ip_from_bytes, ip_to_bytes, suspicion_timeout, vsn_from_bytes, Effect, MemberEvent, Node, NodeState,
    Suspicion, Swim, VSN,
};
use crate::gossip::wire::{Alive, Dead, Message, Suspect};

impl Swim {
    pub(super) fn broadcast_alive_self(&mut self) {
        let a = Alive {
            incarnation: self.incarnation,
            node: self.local.name.clone(),
            addr: ip_to_bytes(self.local.addr),
            port: self.local.port,
            meta: self.local.meta.clone(),
            vsn: VSN.to_vec(),
        };
        let key = self.local.name.clone();
        self.broadcasts.queue(Some(key), Message::Alive(a).encode());
    }

    /// Beats an accusation about ourselves with a higher incarnation.
    fn refute(&mut self, accused_incarnation: u32) {
        self.incarnation = self.incarnation.max(accused_incarnation) + 1;
        let inc = self.incarnation;
        if let Some(me) = self.nodes.get_mut(&self.local.name) {
            me.incarnation = inc;
        }
        let delta = 1;
        let max = self.timing.awareness_max.saturating_sub(1);
        self.awareness = (self.awareness + delta).min(max);
        tracing::info!(incarnation = inc, "gossip: refuting a rumour about this node");
        self.broadcast_alive_self();
    }

    pub(super) fn alive_node(&mut self, a: Alive, now: Instant, bootstrap: bool) {
        let is_local = a.node == self.local.name;
        if is_local && self.leaving {
            return;
        }
        let Some(addr) = ip_from_bytes(&a.addr) else {
            tracing::warn!(member = %a.node, addr_len = a.addr.len(), "gossip: ignoring alive with a bad address");
            return;
        };
        if a.meta.len() > 512 {
            tracing::warn!(member = %a.node, meta_len = a.meta.len(), "gossip: ignoring alive with meta over 512 bytes");
            return;
        }
        let vsn = if a.vsn.is_empty() { VSN } else { vsn_from_bytes(&a.vsn) };
        let (old_state, old_meta) = match self.nodes.get(&a.node) {
            None => {
                let node = Node {
                    name: a.node.clone(),
                    addr,
                    port: a.port,
                    meta: a.meta.clone(),
                    incarnation: a.incarnation,
                    state: NodeState::Alive,
                    state_change: now,
                    vsn,
                };
                // Insert at a random place in the probe order, as memberlist does.
                let pos = if self.probe_order.is_empty() {
                    0
                } else {
                    use rand::Rng;
                    self.rng.random_range(0..=self.probe_order.len())
                };
                self.probe_order.insert(pos, a.node.clone());
                self.nodes.insert(a.node.clone(), node.clone());
                self.suspicions.remove(&a.node);
                let key = a.node.clone();
                self.broadcasts.queue(Some(key), Message::Alive(a).encode());
                self.effects.push(Effect::Member(MemberEvent::Join(node)));
                return;
            }
            Some(n) => {
                let moved = n.addr != addr || n.port != a.port;
                if moved && !n.state.dead_or_left() {
                    let other = std::net::SocketAddr::new(addr, a.port);
                    tracing::warn!(
                        member = %a.node, ours = %n.socket(), theirs = %other,
                        "gossip: conflicting address for a member name; ignoring the newcomer"
                    );
                    if is_local {
                        self.effects.push(Effect::NameConflict { other });
                    }
                    return;
                }
                let updates = moved && n.state.dead_or_left();
                if !is_local && a.incarnation <= n.incarnation && !updates {
                    return;
                }
                if is_local && a.incarnation < n.incarnation {
                    return;
                }
                (n.state, n.meta.clone())
            }
        };
        self.suspicions.remove(&a.node);
        if is_local && !bootstrap {
            let same = a.incarnation == self.incarnation
                && a.meta == self.local.meta
                && (a.vsn.is_empty() || vsn == VSN);
            if !same {
                self.refute(a.incarnation);
            }
            return;
        }
        let key = a.node.clone();
        let node = {
            let Some(n) = self.nodes.get_mut(&a.node) else { return };
            n.incarnation = a.incarnation;
            n.meta = a.meta.clone();
            n.addr = addr;
            n.port = a.port;
            n.vsn = vsn;
            if n.state != NodeState::Alive {
                n.state = NodeState::Alive;
                n.state_change = now;
            }
            n.clone()
        };
        self.broadcasts.queue(Some(key), Message::Alive(a).encode());
        if old_state.dead_or_left() {
            self.effects.push(Effect::Member(MemberEvent::Join(node)));
        } else if old_meta != node.meta {
            self.effects.push(Effect::Member(MemberEvent::Update(node)));
        }
    }

    pub(super) fn suspect_node(&mut self, s: Suspect, now: Instant) {
        let Some(n) = self.nodes.get(&s.node) else { return };
        if s.incarnation < n.incarnation {
            return;
        }
        if let Some(t) = self.suspicions.get_mut(&s.node) {
            if t.confirm(&s.from) {
                let key = s.node.clone();
                self.broadcasts.queue(Some(key), Message::Suspect(s).encode());
            }
            return;
        }
        if n.state != NodeState::Alive {
            return;
        }
        if s.node == self.local.name {
            self.refute(s.incarnation);
            return;
        }
        let key = s.node.clone();
        let (incarnation, from) = (s.incarnation, s.from.clone());
        self.broadcasts.queue(Some(key.clone()), Message::Suspect(s).encode());
        if let Some(n) = self.nodes.get_mut(&key) {
            n.incarnation = incarnation;
            n.state = NodeState::Suspect;
            n.state_change = now;
        }
        let n_nodes = self.nodes.len();
        let mut k = self.timing.suspicion_mult.saturating_sub(2);
        if (n_nodes as u32).saturating_sub(2) < k {
            k = 0;
        }
        let min = suspicion_timeout(self.timing.suspicion_mult, n_nodes, self.timing.probe_interval);
        let max = min * self.timing.suspicion_max_timeout_mult;
        self.suspicions.insert(key, Suspicion::new(incarnation, &from, k, min, max, now));
        self.tally.suspicions += 1;
    }

    pub(super) fn tick_suspicions(&mut self, now: Instant) {
        let due: Vec<String> =
            self.suspicions.iter().filter(|(_, s)| now >= s.deadline()).map(|(n, _)| n.clone()).collect();
        for name in due {
            let Some(s) = self.suspicions.remove(&name) else { continue };
            let still = matches!(self.nodes.get(&name), Some(n) if n.state == NodeState::Suspect && n.incarnation == s.incarnation);
            if still {
                tracing::info!(member = %name, "gossip: marking suspect member as failed");
                let d = Dead { incarnation: s.incarnation, node: name, from: self.local.name.clone() };
                self.dead_node(d, now);
            }
        }
    }

    pub(super) fn dead_node(&mut self, d: Dead, now: Instant) {
        let Some(n) = self.nodes.get(&d.node) else { return };
        if d.incarnation < n.incarnation {
            return;
        }
        self.suspicions.remove(&d.node);
        if n.state.dead_or_left() {
            return;
        }
        if d.node == self.local.name && !self.leaving {
            self.refute(d.incarnation);
            return;
        }
        let key = d.node.clone();
        let left = d.node == d.from;
        let incarnation = d.incarnation;
        self.broadcasts.queue(Some(key.clone()), Message::Dead(d).encode());
        let node = {
            let Some(n) = self.nodes.get_mut(&key) else { return };
            n.incarnation = incarnation;
            n.state = if left { NodeState::Left } else { NodeState::Dead };
            n.state_change = now;
            n.clone()
        };
        if key != self.local.name {
            self.effects.push(Effect::Member(MemberEvent::Leave(node)));
        }
    }
}
