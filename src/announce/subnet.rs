//! This node's subnets and the addresses worth announcing in them. Pure: the driver reads the
//! interfaces (if-addrs) and hands them over as [`Subnet`]s.

use std::net::IpAddr;

/// One interface address with its prefix: the subnet it is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Subnet {
    /// The subnet of `addr` with `netmask` (a mask of the same family; the prefix is the count
    /// of its leading ones). `None` for mixed families.
    pub fn from_netmask(addr: IpAddr, netmask: IpAddr) -> Option<Subnet> {
        let prefix_len = match (addr, netmask) {
            (IpAddr::V4(_), IpAddr::V4(m)) => u32::from(m).leading_ones(),
            (IpAddr::V6(_), IpAddr::V6(m)) => u128::from(m).leading_ones(),
            _ => return None,
        };
        Some(Subnet { addr, prefix_len: prefix_len as u8 })
    }

    /// Whether `ip` is in this subnet (same family, same leading `prefix_len` bits).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = mask_u32(self.prefix_len);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = mask_u128(self.prefix_len);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

fn mask_u32(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        p if p >= 32 => u32::MAX,
        p => u32::MAX << (32 - u32::from(p)),
    }
}

fn mask_u128(prefix_len: u8) -> u128 {
    match prefix_len {
        0 => 0,
        p if p >= 128 => u128::MAX,
        p => u128::MAX << (128 - u32::from(p)),
    }
}

/// Why an address is never announced, or `None` when it may be.
///
/// Loopback addresses are not announced: mdns-sd leaves loopback interfaces out by default,
/// and an address only this host can reach means nothing to anyone else on the link.
pub fn unannounceable(ip: IpAddr) -> Option<&'static str> {
    if ip.is_loopback() {
        Some("a loopback address, reachable from this host only")
    } else if ip.is_unspecified() {
        Some("the unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else {
        None
    }
}

/// Parses a registry `host` as an IP address (IPv6 may come in brackets); `None` for a name.
pub fn host_ip(host: &str) -> Option<IpAddr> {
    let h = host.trim();
    let h = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(h);
    h.parse().ok()
}

/// Whether `ip` is in any of `subnets`.
pub fn on_my_subnets(ip: IpAddr, subnets: &[Subnet]) -> bool {
    subnets.iter().any(|s| s.contains(ip))
}
