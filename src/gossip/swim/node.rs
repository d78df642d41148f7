//! One member's memberlist state, as the probe loop and the broadcasts see it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

/// memberlist's node states, numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    Alive,
    Suspect,
    Dead,
    Left,
}

impl NodeState {
    pub fn wire(self) -> u8 {
        match self {
            NodeState::Alive => 0,
            NodeState::Suspect => 1,
            NodeState::Dead => 2,
            NodeState::Left => 3,
        }
    }

    pub fn from_wire(v: u8) -> Option<NodeState> {
        Some(match v {
            0 => NodeState::Alive,
            1 => NodeState::Suspect,
            2 => NodeState::Dead,
            3 => NodeState::Left,
            _ => return None,
        })
    }

    pub fn dead_or_left(self) -> bool {
        matches!(self, NodeState::Dead | NodeState::Left)
    }
}

/// A member as memberlist tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub addr: IpAddr,
    pub port: u16,
    pub meta: Vec<u8>,
    pub incarnation: u32,
    pub state: NodeState,
    pub state_change: Instant,
    /// Protocol min/max/current, delegate min/max/current.
    pub vsn: [u8; 6],
}

impl Node {
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.addr, self.port)
    }

    /// The highest memberlist protocol the member speaks.
    pub fn pmax(&self) -> u8 {
        self.vsn[1]
    }
}

/// Raw address bytes as memberlist carries them (4 bytes for IPv4, 16 for IPv6).
pub fn ip_to_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Parses memberlist's raw address bytes; `None` for any other length.
pub fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(b);
            let v6 = Ipv6Addr::from(o);
            // Go sends IPv4 addresses in their 16-byte mapped form at times.
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            })
        }
        _ => None,
    }
}

/// Pads or truncates a received version vector to six entries.
pub fn vsn_from_bytes(b: &[u8]) -> [u8; 6] {
    let mut v = [0u8; 6];
    for (i, x) in b.iter().take(6).enumerate() {
        v[i] = *x;
    }
    v
}
