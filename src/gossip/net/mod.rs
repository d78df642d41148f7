//! The gossip driver: UDP and TCP sockets feeding the pure `swim` and `serf` cores from one
//! task that owns them, plus the handle the rest of the node uses (join, user events, leave,
//! the member view, the event stream).
//!
//! Everything that touches the network lives here or in `stream`; the cores never do.

mod coords;
mod driver;
mod stream;

pub use driver::{
    start, write_keyring, GossipConfig, GossipHandle, GossipStats, KeyOp, KeyOpResult, QueryStream,
};

use std::net::SocketAddr;

/// Errors from the gossip driver.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("gossip i/o: {0}")]
    Io(#[source] std::io::Error),
    #[error("cannot bind gossip to {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("gossip wire: {0}")]
    Wire(#[source] crate::gossip::wire::WireError),
    #[error("timed out {what}")]
    Timeout { what: &'static str },
    #[error(
        "peer closed the stream after {bytes} bytes without a complete answer \
         (a different or missing gossip encryption key looks like this)"
    )]
    StreamClosed { bytes: usize },
    #[error("stream message over the limit ({bytes} bytes)")]
    StreamTooLarge { bytes: usize },
    #[error("peer answered with an error: {error}")]
    Remote { error: String },
    #[error("peer answered with something other than a {expected}")]
    Unexpected { expected: &'static str },
    #[error("cannot resolve join address {addr:?}: {reason}")]
    Resolve { addr: String, reason: String },
    #[error("failed to join any of {tried} address(es): {errors}")]
    JoinFailed { tried: usize, errors: String },
    #[error("{0}")]
    Serf(#[from] crate::gossip::serf::SerfError),
    #[error("network coordinates: {0}")]
    Coordinate(#[from] crate::gossip::coordinate::CoordinateError),
    #[error("gossip has shut down")]
    Closed,
}

/// Resolves "host" or "host:port" (default port 7946) to socket addresses.
pub async fn resolve(addr: &str, default_port: u16) -> Result<Vec<SocketAddr>, GossipError> {
    let with_port = if addr.parse::<SocketAddr>().is_ok() {
        addr.to_string()
    } else if let Ok(ip) = addr.trim_matches(|c| c == '[' || c == ']').parse::<std::net::IpAddr>() {
        SocketAddr::new(ip, default_port).to_string()
    } else if addr.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        addr.to_string()
    } else {
        format!("{addr}:{default_port}")
    };
    let found: Vec<SocketAddr> = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| GossipError::Resolve { addr: addr.to_string(), reason: e.to_string() })?
        .collect();
    if found.is_empty() {
        return Err(GossipError::Resolve { addr: addr.to_string(), reason: "no addresses".into() });
    }
    Ok(found)
}
