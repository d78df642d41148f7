//! What one client may hold on the API listener: open streams (gRPC `Watch` and `KeepAlive`,
//! WebSocket `/api/v1/ws`, counted together) node-wide and per client IP, and its write rate
//! ([`super::ratelimit`]). Also how a request names its client: the peer address from axum's
//! `ConnectInfo<SocketAddr>` request extension (the listener inserts it), for gRPC falling
//! back to tonic's `remote_addr()`; without either, every such request is the one client
//! `"unknown"`.
//!
//! Streams are counted with [`StreamGuard`]s that give their slot back when dropped, so every
//! way a stream ends (client gone, slow client dropped, node stopping, panic) releases it.
//! Refusals are errors the client reads ([`TooManyStreams`]: gRPC `RESOURCE_EXHAUSTED`, HTTP
//! 429 before the WebSocket upgrade), logged at debug each and at warn at most once per
//! [`REFUSED_WARN_EVERY`].
//!
//! May import `config` (defaults) and `logging`; nothing else of the node.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;

use super::ratelimit::{WriteLimiter, WriteRate};
use crate::config::defaults;
use crate::logging::throttle::Throttle;

/// At most one warning per this long about refused streams.
pub const REFUSED_WARN_EVERY: Duration = Duration::from_secs(10);

/// Who a request comes from, for per-client limits: its IP, or "unknown".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey(String);

impl ClientKey {
    pub fn of_ip(ip: IpAddr) -> ClientKey {
        ClientKey(ip.to_string())
    }

    /// The client of requests whose peer address is not known.
    pub fn unknown() -> ClientKey {
        ClientKey("unknown".to_string())
    }

    /// From a request's extensions (`ConnectInfo<SocketAddr>`), else `fallback`, else unknown.
    pub fn from_extensions(ext: &axum::http::Extensions, fallback: Option<SocketAddr>) -> ClientKey {
        ext.get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| *a)
            .or(fallback)
            .map_or_else(ClientKey::unknown, |a| ClientKey::of_ip(a.ip()))
    }

    /// A gRPC request's client: the `ConnectInfo` extension, else tonic's `remote_addr()`.
    pub fn of_grpc<T>(req: &tonic::Request<T>) -> ClientKey {
        ClientKey::from_extensions(req.extensions(), req.remote_addr())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stream refused for being over a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooManyStreams {
    #[error(
        "too many streams from {client} (limit {limit} per client; Watch, KeepAlive and WebSocket \
         streams count together): close one or retry later"
    )]
    Client { client: ClientKey, limit: usize },
    #[error("too many streams on this node (limit {limit}): retry later or use another node")]
    Node { limit: usize },
}

#[derive(Debug)]
struct Open {
    total: usize,
    /// Only clients with at least one stream: at most `total` entries.
    by_client: HashMap<ClientKey, usize>,
    refused: Throttle,
}

/// Counts open streams node-wide and per client.
#[derive(Debug)]
pub struct StreamLimits {
    max: usize,
    per_client_max: usize,
    open: Mutex<Open>,
}

impl StreamLimits {
    pub fn new(max: usize, per_client_max: usize) -> StreamLimits {
        let open = Open { total: 0, by_client: HashMap::new(), refused: Throttle::new(REFUSED_WARN_EVERY) };
        StreamLimits { max, per_client_max, open: Mutex::new(open) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a stream slot for `client`; the guard gives it back when dropped.
    pub fn acquire(self: &Arc<Self>, client: &ClientKey) -> Result<StreamGuard, TooManyStreams> {
        let mut open = self.lock();
        let mine = open.by_client.get(client).copied().unwrap_or(0);
        let refused = if mine >= self.per_client_max {
            Some(TooManyStreams::Client { client: client.clone(), limit: self.per_client_max })
        } else if open.total >= self.max {
            Some(TooManyStreams::Node { limit: self.max })
        } else {
            None
        };
        if let Some(err) = refused {
            tracing::debug!(client = %client, error = %err, "api: stream refused");
            if let Some(held_back) = open.refused.hit(Instant::now()) {
                tracing::warn!(client = %client, open = open.total, held_back, error = %err, "api: refusing streams over the limit");
            }
            return Err(err);
        }
        open.total += 1;
        *open.by_client.entry(client.clone()).or_insert(0) += 1;
        debug_assert!(open.total <= self.max && open.by_client.len() <= open.total);
        Ok(StreamGuard { limits: Arc::clone(self), client: client.clone() })
    }

    /// Streams open now: node-wide, and `client`'s.
    pub fn open(&self, client: &ClientKey) -> (usize, usize) {
        let open = self.lock();
        (open.total, open.by_client.get(client).copied().unwrap_or(0))
    }

    fn release(&self, client: &ClientKey) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_client.get_mut(client) {
            *n -= 1;
            if *n == 0 {
                open.by_client.remove(client);
            }
        }
    }
}

/// One open stream's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamGuard {
    limits: Arc<StreamLimits>,
    client: ClientKey,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.limits.release(&self.client);
    }
}

/// Every per-client limit of the API listener, shared by the gRPC and HTTP handlers.
#[derive(Debug)]
pub struct ApiLimits {
    pub streams: Arc<StreamLimits>,
    /// Per-client write rate; the request middleware calls `writes.check(client, now)`.
    pub writes: Arc<WriteLimiter>,
}

impl ApiLimits {
    pub fn new(streams_max: usize, streams_per_client_max: usize, write_rate: WriteRate) -> ApiLimits {
        ApiLimits {
            streams: Arc::new(StreamLimits::new(streams_max, streams_per_client_max)),
            writes: Arc::new(WriteLimiter::new(write_rate)),
        }
    }
}

impl Default for ApiLimits {
    /// The defaults of `--api-streams-max`, `--api-streams-per-client-max`, `--write-rate`
    /// and `--write-burst`.
    fn default() -> ApiLimits {
        let rate = WriteRate { per_s: defaults::WRITE_RATE_PER_S, burst: 2 * defaults::WRITE_RATE_PER_S };
        ApiLimits::new(defaults::API_STREAMS_MAX, defaults::API_STREAMS_PER_CLIENT_MAX, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> ClientKey {
        ClientKey::of_ip(s.parse().unwrap())
    }

    #[test]
    fn streams_are_bounded_per_client_and_node_wide_and_guards_give_slots_back() {
        // Proves both limits, their messages, and that dropping a guard (any way a stream
        // ends) frees its slot and forgets a client with no streams.
        let limits = Arc::new(StreamLimits::new(3, 2));
        let (a, b, c) = (ip("127.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3"));
        let a1 = limits.acquire(&a).unwrap();
        let a2 = limits.acquire(&a).unwrap();
        let err = limits.acquire(&a).unwrap_err();
        assert_eq!(err, TooManyStreams::Client { client: a.clone(), limit: 2 });
        assert!(err.to_string().starts_with("too many streams from 127.0.0.1 (limit 2 per client;"), "{err}");
        let b1 = limits.acquire(&b).unwrap();
        let err = limits.acquire(&c).unwrap_err();
        assert_eq!(
            err.to_string(),
            "too many streams on this node (limit 3): retry later or use another node"
        );
        drop(a1);
        assert_eq!(limits.open(&a), (2, 1));
        let c1 = limits.acquire(&c).unwrap();
        drop((a2, b1, c1));
        assert_eq!(limits.open(&a), (0, 0));
        assert!(limits.lock().by_client.is_empty(), "no entry is kept for clients without streams");
        // A guard moved into a task that panics still frees its slot.
        let g = limits.acquire(&a).unwrap();
        let _ = std::thread::spawn(move || {
            let _g = g;
            panic!("the stream's task fails");
        })
        .join();
        assert_eq!(limits.open(&a), (0, 0));
    }

    #[test]
    fn the_client_is_the_connect_info_peer_else_the_fallback_else_unknown() {
        // Proves how a request names its client for the per-client limits.
        let mut ext = axum::http::Extensions::new();
        let fallback: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        assert_eq!(ClientKey::from_extensions(&ext, None), ClientKey::unknown());
        assert_eq!(ClientKey::from_extensions(&ext, Some(fallback)).as_str(), "10.1.1.1");
        ext.insert(ConnectInfo("127.0.0.7:4000".parse::<SocketAddr>().unwrap()));
        assert_eq!(ClientKey::from_extensions(&ext, Some(fallback)).as_str(), "127.0.0.7");
        let mut req = tonic::Request::new(());
        assert_eq!(ClientKey::of_grpc(&req).to_string(), "unknown");
        req.extensions_mut().insert(ConnectInfo("[::1]:80".parse::<SocketAddr>().unwrap()));
        assert_eq!(ClientKey::of_grpc(&req).to_string(), "::1");
    }
}
