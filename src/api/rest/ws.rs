//! `GET /api/v1/ws`: Beacon's WebSocket event stream over this node's copy of the registry.
//! Every registry event goes out as one JSON text message, in revision order:
//! `{"type": "service_registered", "revision": R, "service": {..as the REST API returns it..},
//! "timestamp": "<RFC 3339>"}`. `?revision=N` resumes after revision N (default: from now);
//! when N is compacted the client gets `{"type": "compacted", "oldest_available": N}` and a
//! close; resuming after `oldest_available` works. After `?progress_ms=` (default
//! [`PROGRESS_EVERY`], bounded by [`PROGRESS_MS_MIN`]..=[`PROGRESS_MS_MAX`]) without events it
//! gets `{"type": "progress", "revision": R}`: nothing changed through R.
//!
//! Like the gRPC `Watch`, each connection has a producer (reads the applied-revision watch and
//! the history, never blocks the apply path) and a bounded buffer of [`STREAM_BUFFER`]
//! messages to the socket; a client that leaves it full for [`SLOW_WATCHER`] is dropped with
//! a log line and a close frame (1008, [`slow_reason`]) that it can read once it catches up
//! within [`SLOW_CLOSE_WAIT`]. The stream ends when the client closes, the node stops, or the
//! API shuts down (close code 1001).
//!
//! Limits: each connection holds a stream slot ([`crate::api::limits::StreamLimits`], shared
//! with gRPC's Watch and KeepAlive) from before the upgrade until the socket ends; a client
//! over the node-wide or its per-IP limit gets `429 {"error": "too many streams", ..}` instead
//! of the upgrade. Clients only send control messages, so a message or frame from the client
//! over [`CLIENT_MESSAGE_BYTES_MAX`] ends the stream with close code 1009 and
//! [`too_big_reason`]; any other protocol error with 1002.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::Extensions;
use axum::response::Response;
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::errors::RestError;
use super::handlers::ServiceView;
use crate::api::grpc::watch::{SLOW_WATCHER, STREAM_BUFFER};
use crate::api::limits::{ClientKey, StreamGuard};
use crate::api::ApiState;
use crate::logging::{format_rfc3339, unix_ms_now, Precision};
use crate::registry::{Event, RegistryError, Revision};
use crate::replicated::registrar::Registrar;

/// A stream that sent nothing for this long sends a progress message, unless the client asks
/// for another interval with `?progress_ms=`.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// The shortest `?progress_ms=` a client may ask for: more often only burns the socket.
pub const PROGRESS_MS_MIN: u64 = 100;
/// The longest `?progress_ms=`: a proxy's idle timeout is often a minute.
pub const PROGRESS_MS_MAX: u64 = 60_000;
/// How long a close handshake may take before the socket is just dropped.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// How long a client dropped for being slow gets to take what was sent before the close frame
/// and the close frame itself, before the socket is just dropped.
pub const SLOW_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Largest message (and frame) a client may send: clients only send pings and a close.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// The close reason for a client message over [`CLIENT_MESSAGE_BYTES_MAX`] (close code 1009).
pub fn too_big_reason() -> String {
    format!("message too big: this stream takes client messages of at most {CLIENT_MESSAGE_BYTES_MAX} bytes")
}

/// The API's shutdown token, put on the router by `api::serve_with` so upgraded sockets (which
/// outlive axum's graceful shutdown) close with the API.
#[derive(Clone)]
pub struct WsShutdown(pub CancellationToken);

#[derive(Debug, Default, Deserialize)]
pub(super) struct WsQuery {
    revision: Option<u64>,
    progress_ms: Option<u64>,
}

/// The interval between progress messages a client asked for, within the bounds.
fn progress_every(progress_ms: Option<u64>) -> Result<Duration, RestError> {
    match progress_ms {
        None => Ok(PROGRESS_EVERY),
        Some(ms) if (PROGRESS_MS_MIN..=PROGRESS_MS_MAX).contains(&ms) => Ok(Duration::from_millis(ms)),
        Some(ms) => Err(RestError::Query(format!(
            "progress_ms must be {PROGRESS_MS_MIN}–{PROGRESS_MS_MAX} milliseconds (got {ms})"
        ))),
    }
}

/// The close reason of a client dropped for being slow (at most 123 bytes, as RFC 6455 allows).
pub fn slow_reason() -> String {
    format!(
        "client too slow: it took no message for {}s; reconnect with ?revision=<last revision received>",
        SLOW_WATCHER.as_secs()
    )
}

/// `GET /api/v1/ws[?revision=N][&progress_ms=M]`: upgrades to the event stream.
pub(super) async fn ws(
    State(state): State<Arc<ApiState>>,
    q: Result<Query<WsQuery>, QueryRejection>,
    shutdown: Option<Extension<WsShutdown>>,
    extensions: Extensions,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, RestError> {
    let registrar = state.registrar.clone().ok_or(RestError::NoRegistry)?;
    let Query(q) = q?;
    let progress_every = progress_every(q.progress_ms)?;
    let upgrade = upgrade.map_err(|r| RestError::Upgrade { status: r.status(), detail: r.body_text() })?;
    let slot = state.limits.streams.acquire(&ClientKey::from_extensions(&extensions, None))?;
    let shutdown = shutdown.map(|Extension(WsShutdown(t))| t).unwrap_or_default();
    // Fix the start now, so "from now" means the revision when the request arrived.
    let after = match q.revision {
        Some(n) => Revision(n),
        None => registrar.read_local(|r| r.revision()),
    };
    let upgrade = upgrade.max_message_size(CLIENT_MESSAGE_BYTES_MAX).max_frame_size(CLIENT_MESSAGE_BYTES_MAX);
    Ok(upgrade.on_upgrade(move |socket| run(socket, registrar, after, progress_every, shutdown, slot)))
}

/// Why the producer stopped.
enum End {
    /// Everything is in the buffer (compacted, or the node stopping): drain it, then close.
    Drain(u16),
    /// The client did not take its messages: drop it now.
    Slow,
}

async fn run(
    mut socket: WebSocket,
    registrar: Arc<Registrar>,
    after: Revision,
    progress_every: Duration,
    shutdown: CancellationToken,
    _slot: StreamGuard,
) {
    let (tx, mut rx) = mpsc::channel::<String>(STREAM_BUFFER);
    let producer = produce(registrar, after, progress_every, tx);
    tokio::pin!(producer);
    let mut close = close_code::NORMAL;
    let mut producing = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                close_with(&mut socket, close_code::AWAY, "the node is stopping", CLOSE_WAIT).await;
                return;
            }
            end = &mut producer, if producing => match end {
                End::Drain(code) => { producing = false; close = code; }
                End::Slow => {
                    close_slow(&mut socket).await;
                    return;
                }
            },
            msg = rx.recv() => match msg {
                Some(text) => {
                    match tokio::time::timeout(SLOW_WATCHER, socket.send(Message::Text(text.into()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "ws: send failed; stream ended");
                            return;
                        }
                        Err(_) => {
                            close_slow(&mut socket).await;
                            return;
                        }
                    }
                }
                None => {
                    close_with(&mut socket, close, "", CLOSE_WAIT).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                // The client closed (tungstenite answers the close frame on the next read) or
                // went away.
                Some(Ok(Message::Close(_))) => {
                    let _ = tokio::time::timeout(CLOSE_WAIT, socket.recv()).await;
                    return;
                }
                None => return,
                Some(Err(e)) => {
                    close_unreadable(&mut socket, e).await;
                    return;
                }
                Some(Ok(_)) => {} // pings are answered by the socket; other input is ignored
            },
        }
    }
}

/// Drops a client that left its buffer full: a log line, and a close frame (1008) saying why,
/// which reaches the client if it catches up within [`SLOW_CLOSE_WAIT`].
async fn close_slow(socket: &mut WebSocket) {
    tracing::warn!(
        buffer = STREAM_BUFFER,
        wait = ?SLOW_WATCHER,
        "ws: client too slow; closing the stream with 1008"
    );
    close_with(socket, close_code::POLICY, &slow_reason(), SLOW_CLOSE_WAIT).await;
}

/// Ends a stream whose client sent something unreadable: 1009 and [`too_big_reason`] for a
/// message or frame over [`CLIENT_MESSAGE_BYTES_MAX`], 1002 for other protocol errors (the
/// close frame is lost when the connection itself failed).
async fn close_unreadable(socket: &mut WebSocket, e: axum::Error) {
    let e = e.into_inner();
    let Some(ws) = e.downcast_ref::<tungstenite::Error>() else {
        tracing::debug!(error = %e, "ws: read failed; stream ended");
        return;
    };
    match ws {
        tungstenite::Error::Capacity(why) => {
            tracing::debug!(error = %why, max = CLIENT_MESSAGE_BYTES_MAX, "ws: client message too big; closing with 1009");
            close_with(socket, close_code::SIZE, &too_big_reason(), CLOSE_WAIT).await;
        }
        tungstenite::Error::Protocol(why) => {
            tracing::debug!(error = %why, "ws: client broke the protocol; closing with 1002");
            close_with(socket, close_code::PROTOCOL, "protocol error", CLOSE_WAIT).await;
        }
        other => tracing::debug!(error = %other, "ws: read failed; stream ended"),
    }
}

/// Sends a close frame (after what is queued before it) and waits for the client's, all
/// within `wait`.
async fn close_with(socket: &mut WebSocket, code: u16, reason: &str, wait: Duration) {
    let frame = CloseFrame { code, reason: reason.into() };
    let closing = async {
        if socket.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(m)) = socket.recv().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(wait, closing).await;
}

/// One event as Beacon's JSON message.
fn event_message(e: &Event) -> String {
    let service = serde_json::to_value(ServiceView::from(e.service.clone())).unwrap_or(Value::Null);
    let timestamp = format_rfc3339(unix_ms_now(), Precision::Millis);
    json!({"type": e.kind.as_str(), "revision": e.revision.0, "service": service, "timestamp": timestamp})
        .to_string()
}

/// Puts one message in the buffer, waiting at most [`SLOW_WATCHER`] for room; `Err` ends the
/// producer.
async fn push(tx: &mpsc::Sender<String>, msg: String) -> Result<(), End> {
    match tx.send_timeout(msg, SLOW_WATCHER).await {
        Ok(()) => Ok(()),
        // The writer logs it and closes the socket.
        Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(End::Slow),
        // The writer is gone; it has already decided how the socket ends.
        Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(End::Slow),
    }
}

async fn produce(
    registrar: Arc<Registrar>,
    after: Revision,
    progress_every: Duration,
    tx: mpsc::Sender<String>,
) -> End {
    match produce_until_end(registrar, after, progress_every, &tx).await {
        Ok(code) | Err(End::Drain(code)) => End::Drain(code),
        Err(End::Slow) => End::Slow,
    }
}

async fn produce_until_end(
    registrar: Arc<Registrar>,
    mut after: Revision,
    progress_every: Duration,
    tx: &mpsc::Sender<String>,
) -> Result<u16, End> {
    // Subscribe before the first read, so no change between the two is missed.
    let mut applied = registrar.subscribe();
    let mut idle_since = tokio::time::Instant::now();
    loop {
        applied.borrow_and_update();
        let batch = registrar.read_local(|r| r.events_since(after).map(|events| (events, r.revision())));
        match batch {
            Ok((events, revision)) => {
                for e in &events {
                    push(tx, event_message(e)).await?;
                    idle_since = tokio::time::Instant::now();
                }
                after = after.max(revision);
            }
            Err(RegistryError::Compacted { oldest_available, .. }) => {
                let msg = json!({"type": "compacted", "oldest_available": oldest_available.0});
                push(tx, msg.to_string()).await?;
                return Ok(close_code::NORMAL);
            }
            Err(other) => {
                tracing::warn!(error = %other, "ws: cannot read the registry's events; stream ended");
                return Ok(close_code::ERROR);
            }
        }
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    return Ok(close_code::AWAY); // the node is stopping
                }
            }
            _ = tokio::time::sleep_until(idle_since + progress_every) => {
                push(tx, json!({"type": "progress", "revision": after.0}).to_string()).await?;
                idle_since = tokio::time::Instant::now();
            }
            _ = tx.closed() => return Err(End::Slow),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_interval_is_bounded_and_the_slow_reason_fits_a_close_frame() {
        // Proves ?progress_ms= takes its bounds and default, names the bound when refused
        // (422), and that the slow client's close reason fits RFC 6455's 123 bytes.
        assert_eq!(progress_every(None).unwrap(), PROGRESS_EVERY);
        assert_eq!(progress_every(Some(PROGRESS_MS_MIN)).unwrap(), Duration::from_millis(100));
        assert_eq!(progress_every(Some(PROGRESS_MS_MAX)).unwrap(), Duration::from_secs(60));
        for bad in [0, PROGRESS_MS_MIN - 1, PROGRESS_MS_MAX + 1] {
            let err = progress_every(Some(bad)).unwrap_err();
            assert_eq!(err.status().as_u16(), 422, "{err}");
            assert_eq!(err.to_string(), format!("progress_ms must be 100–60000 milliseconds (got {bad})"));
        }
        let reason = slow_reason();
        assert!(reason.len() <= 123, "a close reason is at most 123 bytes, got {}: {reason}", reason.len());
        let big = too_big_reason();
        assert!(big.len() <= 123 && big.contains("65536 bytes"), "{big}");
        assert!(reason.starts_with("client too slow: it took no message for 10s;"), "{reason}");
    }
}
