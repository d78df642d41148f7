//! Serf's RPC protocol (what the `serf` CLI and Serf client libraries speak on
//! `--rpc-addr`, default 127.0.0.1:7373), served over the gossip handle so `serf members`,
//! `serf event`, `serf join`, `serf leave` and `serf info` work against a muster node.
//!
//! Layout: `frame` finds whole msgpack values in a byte stream; `proto` holds the messages;
//! `conn` serves one connection; `members` and `regex` answer `members-filtered`; `stream`
//! serves `stream`; `monitor` serves `monitor` from the log tee; `stats` answers `stats`;
//! `client` is a small client for `muster event` and tests. Imports the gossip handle,
//! `membership` and the log tee (`logging::tee`); never the gossip cores or the node.
//!
//! Limits, each refusal an error answer the client reads (see the README's Limits table):
//! [`CONNECTIONS_MAX`] clients at once (a client over it gets one error answer to its first
//! request, then the connection closes; see [`refuse`]), and per connection the request size,
//! streams, one monitor, queries in flight and queries remembered for `respond` (`conn`).
//!
//! Served: every Serf RPC command — handshake, auth, event, force-leave, join, members,
//! members-filtered, tags, stream, monitor, stop, leave, query, respond, install-key, use-key,
//! remove-key, list-keys, stats, get-coordinate. Unknown commands answer "Unsupported command"
//! and close the connection, as in Go.

pub mod client;
mod conn;
pub mod frame;
mod members;
mod monitor;
pub mod proto;
mod stats;
mod stream;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::gossip::net::GossipHandle;
use crate::logging::tee::LogTee;
use crate::logging::throttle::Throttle;

pub use conn::encode_request;
pub use stream::{parse_filters, EventFilter};

/// Client connections served at once; a client over it gets [`too_many_clients`] as the answer
/// to its first request (the `serf` CLI prints "Error connecting to Serf agent: ...").
pub const CONNECTIONS_MAX: usize = 128;
/// Connections over [`CONNECTIONS_MAX`] being answered at once; past that they are closed
/// without an answer (a flood, not a client).
const REFUSING_MAX: usize = 16;
/// How long a refused client gets to send its first request and take the answer.
const REFUSE_WAIT: Duration = Duration::from_secs(2);
/// At most one warning per this long about refused connections.
const REFUSED_WARN_EVERY: Duration = Duration::from_secs(10);
/// How long `serve` waits for connections to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// RPC server settings.
#[derive(Clone)]
pub struct RpcConfig {
    /// The configured `--rpc-addr` (for logs; `serve` serves the listener it is given).
    pub addr: SocketAddr,
    /// `--rpc-auth`: when set, clients must send it with `auth` before other commands.
    pub auth_key: Option<String>,
    /// `--tokens-file`: when set, clients authenticate with `auth` and a token's secret, and
    /// each command needs the token's scope to cover it (`--rpc-auth`'s key counts as an
    /// operator token).
    pub tokens: Option<Arc<crate::tokens::SharedTokens>>,
    /// This node's member name (the `agent` section of `stats`).
    pub node_name: String,
    /// Cancelled after a successful `leave`, so the node stops as a Go agent does.
    pub on_leave: CancellationToken,
    /// Tags the node manages itself; `tags` refuses to set or delete them.
    pub managed_tags: Vec<String>,
    /// The event handlers, `event:name` → script, for `stats`.
    pub event_handlers: BTreeMap<String, String>,
    /// The process's log tee, which `monitor` streams from.
    pub logs: LogTee,
}

impl std::fmt::Debug for RpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcConfig")
            .field("addr", &self.addr)
            .field("auth_key", &self.auth_key.as_ref().map(|_| "<redacted>"))
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

/// What every connection shares.
struct Shared {
    cfg: RpcConfig,
    gossip: GossipHandle,
}

/// The error answer of a connection over the limit.
pub fn too_many_clients(limit: usize) -> String {
    format!("too many RPC clients: {limit} connections are open (the limit); retry later")
}

/// Accepts RPC clients on `listener` until `shutdown`, one task per connection, at most
/// [`CONNECTIONS_MAX`] at once.
pub async fn serve(
    listener: TcpListener,
    cfg: RpcConfig,
    gossip: GossipHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_at_most(listener, cfg, gossip, shutdown, CONNECTIONS_MAX).await
}

/// [`serve`] with another connection limit (tests).
async fn serve_at_most(
    listener: TcpListener,
    cfg: RpcConfig,
    gossip: GossipHandle,
    shutdown: CancellationToken,
    connections_max: usize,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, auth = cfg.auth_key.is_some() || cfg.tokens.is_some(), "serf-rpc: listening");
    let tracker = TaskTracker::new();
    let shared = Arc::new(Shared { cfg, gossip });
    let slots = Arc::new(Semaphore::new(connections_max));
    let refusing = Arc::new(Semaphore::new(REFUSING_MAX));
    let mut refused = Throttle::new(REFUSED_WARN_EVERY);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((socket, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let (shared, shutdown) = (shared.clone(), shutdown.clone());
                    tracker.spawn(async move {
                        conn::run(socket, peer, shared, shutdown).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    tracing::debug!(peer.addr = %peer, max = connections_max, "serf-rpc: too many clients; refusing a connection");
                    if let Some(held_back) = refused.hit(Instant::now()) {
                        tracing::warn!(peer.addr = %peer, max = connections_max, held_back, "serf-rpc: too many clients; refusing connections");
                    }
                    // The answer needs the client's first request; a bounded number of
                    // refusals wait for it, the rest are closed at once.
                    if let Ok(permit) = refusing.clone().try_acquire_owned() {
                        tracker.spawn(async move {
                            refuse(socket, peer, &too_many_clients(connections_max)).await;
                            drop(permit);
                        });
                    }
                }
            },
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "serf-rpc: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("serf-rpc: connections still open after the shutdown grace period");
    }
    tracing::info!(addr = %local, "serf-rpc: stopped");
    Ok(())
}

/// Answers the first request of a connection that will not be served with `error` (its Seq
/// echoed, as every Serf response), then closes. Bounded by [`REFUSE_WAIT`].
async fn refuse(socket: TcpStream, peer: SocketAddr, error: &str) {
    let (rd, mut wr) = socket.into_split();
    let mut reader = frame::FrameReader::new(rd, conn::HEADER_BYTES_MAX, REFUSE_WAIT);
    let answered = async {
        let header = reader.next_value().await.ok()??;
        let header: proto::RequestHeader = rmp_serde::from_slice(&header).ok()?;
        let frame = proto::encode_response::<()>(header.seq, error, None).ok()?;
        use tokio::io::AsyncWriteExt;
        wr.write_all(&frame).await.ok()?;
        let _ = wr.shutdown().await;
        Some(header.command)
    };
    match tokio::time::timeout(REFUSE_WAIT, answered).await {
        Ok(Some(command)) => {
            tracing::debug!(peer.addr = %peer, command = %command, "serf-rpc: refused client answered")
        }
        _ => tracing::debug!(peer.addr = %peer, "serf-rpc: refused client sent no request in time"),
    }
    conn::linger(reader.into_inner()).await;
}
