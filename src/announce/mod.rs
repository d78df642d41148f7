//! mDNS/DNS-SD announcement of the registry's services (Bitsperity Beacon's behaviour) and of
//! the node itself (`_muster._tcp` and `_beacon._tcp`, pointing at the API port).
//!
//! Layout: `names` (service types, instance and host names), `txt` (TXT records within DNS
//! limits), `subnet` (who announces what), `resolve` (the host-name cache) and `plan` (the
//! desired records and the diff to them) are pure cores; `driver` follows the registry and
//! talks to mdns-sd. Owns the announcing mdns-sd daemon; must not import the API, the gossip
//! layer or discovery (the gossip discovery's mDNS daemon is a separate one).

pub mod driver;
pub mod names;
pub mod plan;
pub mod resolve;
pub mod subnet;
pub mod txt;

#[cfg(test)]
mod tests;

pub use driver::{run, AnnounceConfig};
pub use plan::{
    desired, node_announcements, plan, Announcement, Desired, Effect, NodeInfo, ANNOUNCED_SERVICES_MAX,
};

/// Why one announcement step failed (logged and retried, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// mdns-sd refused to build the record.
    #[error("cannot build the mDNS record {fullname}: {reason}")]
    Record { fullname: String, reason: String },
    /// The mdns-sd daemon refused a command or is gone.
    #[error("mDNS daemon: {0}")]
    Daemon(String),
}
