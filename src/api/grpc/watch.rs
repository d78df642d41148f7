//! The registry's two streams: `Watch` (events from a start revision, then live, with progress
//! notifications while idle) and `KeepAlive` (heartbeats over one bidirectional stream).
//!
//! Each stream holds a [`StreamGuard`] (taken by the handler, node-wide and per-client limits)
//! for as long as its task runs. Each stream has its own task and a bounded channel to the client. A watcher that does not
//! take its messages within [`SLOW_WATCHER`] is dropped (logged), so no client holds a task or
//! memory forever; nothing here ever blocks the registry's apply path (watchers only read
//! the applied-revision watch and this node's copy). Streams end when the client goes away or
//! the API stops.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::convert::{self, service_to_pb};
use super::errors::{self, Access};
use super::pb::registry as pb;
use super::registry::RegistryApi;
use crate::api::limits::StreamGuard;
use crate::registry::{RegistryError, Revision};
use crate::replicated::registrar::Registrar;

/// The stream type both streaming RPCs answer with.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Messages buffered per stream before the sender waits.
pub const STREAM_BUFFER: usize = 64;
/// How long a stream's task waits for room in a full buffer before it drops the client.
pub const SLOW_WATCHER: Duration = Duration::from_secs(10);
/// A watch that sent nothing for this long sends a progress notification.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);

fn stream_of<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> BoxStream<T> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }))
}

/// Sends one message, waiting at most [`SLOW_WATCHER`] for room; false when the stream is over.
async fn send<T>(tx: &mpsc::Sender<Result<T, Status>>, msg: Result<T, Status>, what: &str) -> bool {
    match tx.send_timeout(msg, SLOW_WATCHER).await {
        Ok(()) => true,
        Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
            tracing::warn!(stream = what, buffer = STREAM_BUFFER, "grpc: client too slow; stream dropped");
            false
        }
        Err(mpsc::error::SendTimeoutError::Closed(_)) => false,
    }
}

/// One heartbeat, bounded; the renewed service.
pub async fn heartbeat(
    registrar: &Registrar,
    limit: Duration,
    hb: pb::HeartbeatRequest,
) -> Result<pb::Service, Status> {
    let id = convert::service_id(hb.service_id)?;
    match tokio::time::timeout(limit, registrar.heartbeat(&id, hb.ttl_seconds)).await {
        Ok(r) => r.map(service_to_pb).map_err(errors::status),
        Err(_) => Err(errors::deadline(Access::Read, "the heartbeat", limit)),
    }
}

/// Answers each heartbeat on `incoming` with the renewed service or an error message.
pub fn keep_alive(
    api: &RegistryApi,
    mut incoming: Streaming<pb::HeartbeatRequest>,
    slot: StreamGuard,
) -> BoxStream<pb::KeepAliveResponse> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let (registrar, limit, shutdown) = (api.registrar.clone(), api.deadlines.write, api.shutdown.clone());
    tokio::spawn(async move {
        let _slot = slot;
        loop {
            let next = tokio::select! {
                m = incoming.message() => m,
                _ = shutdown.cancelled() => break,
                _ = tx.closed() => break,
            };
            let hb = match next {
                Ok(Some(hb)) => hb,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "grpc: keep-alive stream ended by the client");
                    break;
                }
            };
            let service_id = hb.service_id.clone();
            let answer = match heartbeat(&registrar, limit, hb).await {
                Ok(service) => pb::KeepAliveResponse { service_id, service: Some(service), error: None },
                Err(s) => pb::KeepAliveResponse {
                    service_id,
                    service: None,
                    error: Some(pb::KeepAliveError {
                        code: errors::code_name(s.code()).to_owned(),
                        message: s.message().to_owned(),
                    }),
                },
            };
            if !send(&tx, Ok(answer), "keep_alive").await {
                break;
            }
        }
    });
    stream_of(rx)
}

/// Starts a watch: events after `start_revision - 1` (or from now for 0) on this node's copy.
pub fn watch(api: &RegistryApi, req: pb::WatchRequest, slot: StreamGuard) -> BoxStream<pb::WatchResponse> {
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    let registrar = api.registrar.clone();
    let shutdown = api.shutdown.clone();
    tokio::spawn(async move {
        let _slot = slot;
        tokio::select! {
            _ = run_watch(registrar, req, &tx) => {}
            _ = shutdown.cancelled() => {}
        }
    });
    stream_of(rx)
}

async fn run_watch(
    registrar: Arc<Registrar>,
    req: pb::WatchRequest,
    tx: &mpsc::Sender<Result<pb::WatchResponse, Status>>,
) {
    // Subscribe before the first read, so no change between the two is missed.
    let mut applied = registrar.subscribe();
    let mut after = match req.start_revision {
        0 => registrar.read_local(|r| r.revision()),
        n => Revision(n - 1),
    };
    let type_filter = req.r#type;
    let mut idle_since = tokio::time::Instant::now();
    loop {
        applied.borrow_and_update();
        let batch = registrar.read_local(|r| r.events_since(after).map(|events| (events, r.revision())));
        match batch {
            Ok((events, revision)) => {
                for e in events {
                    if type_filter.as_ref().is_some_and(|t| *t != e.service.service_type) {
                        continue;
                    }
                    let msg = pb::WatchResponse {
                        revision: revision.0,
                        event: Some(convert::event_to_pb(e)),
                        progress: false,
                        compacted: None,
                    };
                    if !send(tx, Ok(msg), "watch").await {
                        return;
                    }
                    idle_since = tokio::time::Instant::now();
                }
                after = after.max(revision);
            }
            Err(RegistryError::Compacted { oldest_available, .. }) => {
                let revision = registrar.read_local(|r| r.revision()).0;
                let msg = pb::WatchResponse {
                    revision,
                    event: None,
                    progress: false,
                    compacted: Some(oldest_available.0),
                };
                send(tx, Ok(msg), "watch").await;
                return;
            }
            Err(other) => {
                send(tx, Err(errors::registry_status(other)), "watch").await;
                return;
            }
        }
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return; // the node is stopping
                }
            }
            _ = tokio::time::sleep_until(idle_since + PROGRESS_EVERY) => {
                let msg = pb::WatchResponse { revision: after.0, event: None, progress: true, compacted: None };
                if !send(tx, Ok(msg), "watch").await {
                    return;
                }
                idle_since = tokio::time::Instant::now();
            }
            _ = tx.closed() => return,
        }
    }
}
