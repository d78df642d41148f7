//! One RPC client connection: reads `{Command, Seq}` headers and bodies, enforces the
//! handshake and auth order, dispatches commands to the gossip handle, and queues responses on
//! the connection's bounded write queue, drained by its own writer task.
//!
//! Limits per connection, each refused with an error answer that names it: a request value
//! (header or body) of at most [`REQUEST_MAX_BYTES`] (a body over it, or one that stalls or
//! does not decode, is answered with the error under the header's Seq, then the connection
//! closes; a header over it has no Seq to answer and just closes), [`STREAMS_MAX`] streams,
//! one monitor (Go's limit, answered with Go's "Monitor already exists", kept byte for byte),
//! [`QUERIES_MAX`] queries in flight, and the queries remembered for `respond`
//! (`stream::PENDING_QUERIES_MAX`). After an error the connection lingers ([`linger`]) so the
//! answer is read before the close, instead of being lost to a reset.
//!
//! Deliberate differences from the Go agent, each one kinder to clients and invisible to the
//! `serf` CLI: a command refused for want of auth has its body read (Go leaves it in the stream
//! and then reads it as the next header); a bad `members-filtered` regexp gets an error answer
//! (Go closes the connection without one); `force-leave` of a name nobody knows is an error
//! (Go accepts it silently); a query tag filter that is not a valid regexp is refused before
//! the query goes out (Go sends it, and no member answers).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

mod commands;

use super::frame::{FrameReader, ReadError};
use super::members::{self, MemberFilter};
use super::monitor::MonitorSlot;
use super::proto::{self as p, Command, RequestHeader};
use super::stream::PendingQueries;
use super::{stats, stream, Shared};
use crate::gossip::net::{resolve, KeyOp};
use crate::tokens::Scope;

/// Responses and stream records queued per connection before streams are dropped.
const WRITE_QUEUE_MAX: usize = 256;
/// Largest request value accepted (a user event is at most 9 KiB).
const REQUEST_MAX_BYTES: usize = 256 * 1024;
/// A client that does not take a queued frame within this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the request loop ends, queued answers get this long to go out.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Once a request value has started, or after a header that announces a body, the rest must
/// come within this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Open streams per connection.
pub(super) const STREAMS_MAX: usize = 32;
/// `query` commands whose answers are still streaming, per connection.
pub(super) const QUERIES_MAX: usize = 64;
/// Largest first request header a refused connection may send (a header is a few bytes).
pub(super) const HEADER_BYTES_MAX: usize = 4096;
/// After an error, how long (and how many bytes) the connection keeps reading and discarding
/// what the client still sends, so closing does not reset the connection before the client
/// has read the error answer.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES_MAX: usize = 1024 * 1024;
/// Serf's default gossip port, for join addresses without one.
const GOSSIP_PORT: u16 = 7946;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("cannot decode {what}: {source}")]
    Decode { what: &'static str, source: rmp_serde::decode::Error },
    #[error("cannot encode a response: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("connection closed before the body of {command:?} arrived")]
    MissingBody { command: String },
    #[error("{0}")]
    Refused(&'static str),
    #[error("unknown command {0:?}")]
    Unknown(String),
    #[error("write queue closed")]
    WriterGone,
}

/// What to do after a request.
enum Next {
    Continue,
    Close(ConnError),
}

/// Serves one client until it leaves, misbehaves or the node shuts down.
pub async fn run(socket: TcpStream, peer: SocketAddr, shared: Arc<Shared>, shutdown: CancellationToken) {
    let _ = socket.set_nodelay(true);
    let (rd, wr) = socket.into_split();
    let cancel = shutdown.child_token();
    let (out, out_rx) = mpsc::channel(WRITE_QUEUE_MAX);
    let writer = tokio::spawn(write_loop(wr, out_rx, peer, cancel.clone()));
    let mut conn = Conn {
        peer,
        shared,
        reader: FrameReader::new(rd, REQUEST_MAX_BYTES, REQUEST_TIMEOUT),
        out,
        cancel: cancel.clone(),
        handshaken: false,
        scope: None,
        streams: HashMap::new(),
        pending: PendingQueries::default(),
        queries: Arc::new(Semaphore::new(QUERIES_MAX)),
        monitor: MonitorSlot::default(),
        left: false,
    };
    tracing::debug!(peer.addr = %peer, "serf-rpc: client connected");
    let result = tokio::select! {
        _ = cancel.cancelled() => Ok(()),
        r = conn.serve() => r,
    };
    let failed = result.is_err();
    match result {
        Ok(()) => tracing::debug!(peer.addr = %peer, "serf-rpc: client disconnected"),
        Err(e) => tracing::warn!(peer.addr = %peer, error = %e, "serf-rpc: closing client connection"),
    }
    conn.stop_streams();
    let (left, shared) = (conn.left, conn.shared.clone());
    let reader = conn.into_reader();
    if tokio::time::timeout(DRAIN_TIMEOUT, writer).await.is_err() {
        tracing::debug!(peer.addr = %peer, "serf-rpc: answers not drained in time");
    }
    if failed && !cancel.is_cancelled() {
        linger(reader.into_inner()).await;
    }
    cancel.cancel();
    if left {
        shared.cfg.on_leave.cancel();
    }
}

/// Reads and discards what the client still sends, until it closes, [`LINGER`] passes or
/// [`LINGER_BYTES_MAX`] were read: closing a socket with unread input resets the connection,
/// and the client may then lose the error answer it has not read yet.
pub(super) async fn linger<R: tokio::io::AsyncRead + Unpin>(mut rd: R) {
    let drain = async {
        let mut buf = [0u8; 8192];
        let mut total = 0usize;
        while total < LINGER_BYTES_MAX {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Writes queued frames in order until every sender is gone or the connection is cancelled.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    peer: SocketAddr,
    cancel: CancellationToken,
) {
    loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => return,
            f = rx.recv() => f,
        };
        let Some(frame) = frame else { break };
        let written = tokio::select! {
            _ = cancel.cancelled() => return,
            w = tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&frame)) => w,
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(peer.addr = %peer, error = %e, "serf-rpc: write failed");
                cancel.cancel();
                return;
            }
            Err(_) => {
                tracing::warn!(peer.addr = %peer, "serf-rpc: client stopped reading; disconnecting it");
                cancel.cancel();
                return;
            }
        }
    }
    let _ = wr.shutdown().await;
}

struct Conn {
    peer: SocketAddr,
    shared: Arc<Shared>,
    reader: FrameReader<OwnedReadHalf>,
    out: mpsc::Sender<Vec<u8>>,
    cancel: CancellationToken,
    handshaken: bool,
    /// What an `auth` granted: the `--rpc-auth` key or an operator token everything, another
    /// token its scope. Without auth configured, everything.
    scope: Option<Scope>,
    /// Open streams by the Seq of their `stream` request.
    streams: HashMap<u64, CancellationToken>,
    /// Queries this connection's streams showed, by the id `respond` names them with.
    pending: PendingQueries,
    /// Slots for `query` commands still streaming answers ([`QUERIES_MAX`]).
    queries: Arc<Semaphore>,
    /// The `monitor` log stream, at most one (as in Go).
    monitor: MonitorSlot,
    /// A `leave` succeeded: the connection closes once the answer is written, then the node
    /// is told to stop (as a Go agent does).
    left: bool,
}

impl Conn {
    async fn serve(&mut self) -> Result<(), ConnError> {
        while let Some(bytes) = self.reader.next_value().await? {
            let header: RequestHeader = rmp_serde::from_slice(&bytes)
                .map_err(|source| ConnError::Decode { what: "request header", source })?;
            tracing::debug!(peer.addr = %self.peer, command = %header.command, seq = header.seq, "serf-rpc: request");
            let seq = header.seq;
            match self.request(header).await {
                Ok(Next::Continue) => {}
                Ok(Next::Close(why)) => return Err(why),
                // The body could not be read or decoded: say why under the request's Seq
                // before closing (the stream's framing cannot be trusted after it).
                Err(e @ (ConnError::Read(_) | ConnError::Decode { .. })) => {
                    let error = match &e {
                        ConnError::Read(r) => format!("request body: {r}; closing the connection"),
                        other => format!("{other}; closing the connection"),
                    };
                    let _ = self.reply(seq, &error).await;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            if self.left {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The reader, once the connection is over (everything else is dropped, so the writer
    /// ends after the queued answers).
    fn into_reader(self) -> FrameReader<OwnedReadHalf> {
        self.reader
    }

    async fn request(&mut self, header: RequestHeader) -> Result<Next, ConnError> {
        let seq = header.seq;
        let command = Command::parse(&header.command);
        if command != Command::Handshake && !self.handshaken {
            self.reply(seq, p::HANDSHAKE_REQUIRED).await?;
            return Ok(Next::Close(ConnError::Refused("command before handshake")));
        }
        let cfg = &self.shared.cfg;
        let auth_configured = cfg.auth_key.is_some() || cfg.tokens.is_some();
        let granted = if auth_configured { self.scope } else { Some(Scope::Operator) };
        if !matches!(command, Command::Handshake | Command::Auth) {
            let refusal = match granted {
                None => {
                    tracing::warn!(peer.addr = %self.peer, command = %header.command, "serf-rpc: client sent a command before auth");
                    Some(p::AUTH_REQUIRED.to_string())
                }
                Some(scope) if !scope.covers(command.needs()) => {
                    tracing::warn!(peer.addr = %self.peer, command = %header.command, scope = %scope,
                        "serf-rpc: a token's scope does not cover the command");
                    Some(format!(
                        "Permission denied: the token's scope is {scope}; {} needs {}",
                        header.command,
                        command.needs()
                    ))
                }
                Some(_) => None,
            };
            if let Some(error) = refusal {
                if command.has_body() {
                    self.body_bytes(&header.command).await?;
                }
                self.reply(seq, &error).await?;
                return Ok(Next::Continue);
            }
        }
        match command {
            Command::Handshake => self.handshake(seq).await?,
            Command::Auth => self.auth(seq).await?,
            Command::Event => self.event(seq).await?,
            Command::Join => self.join(seq).await?,
            Command::Members => self.members(seq, None).await?,
            Command::MembersFiltered => {
                let req: p::MembersFilteredRequest = self.body(&header.command).await?;
                self.members(seq, Some(req)).await?;
            }
            Command::Stream => self.stream(seq).await?,
            Command::Monitor => self.monitor(seq).await?,
            Command::Stop => self.stop(seq).await?,
            Command::Leave => self.leave(seq).await?,
            Command::Stats => {
                let members = self.shared.gossip.members().borrow().clone();
                let g = self.shared.gossip.stats().await.unwrap_or_default();
                let s =
                    stats::build(&self.shared.cfg.node_name, &members, &g, &self.shared.cfg.event_handlers);
                self.send(p::encode_response(seq, "", Some(&s))?).await?;
            }
            Command::ForceLeave => self.force_leave(seq).await?,
            Command::Tags => self.tags(seq).await?,
            Command::Query => self.query(seq).await?,
            Command::Respond => self.respond(seq).await?,
            Command::InstallKey => self.key(seq, KeyOp::Install).await?,
            Command::UseKey => self.key(seq, KeyOp::Use).await?,
            Command::RemoveKey => self.key(seq, KeyOp::Remove).await?,
            Command::ListKeys => self.key(seq, KeyOp::List).await?,
            Command::GetCoordinate => {
                let req: p::CoordinateRequest = self.body(p::GET_COORDINATE).await?;
                let resp = p::CoordinateResponse::new(self.shared.gossip.coordinate(&req.node));
                self.send(p::encode_response(seq, "", Some(&resp))?).await?;
            }
            Command::Unknown => {
                self.reply(seq, p::UNSUPPORTED_COMMAND).await?;
                return Ok(Next::Close(ConnError::Unknown(header.command)));
            }
        }
        Ok(Next::Continue)
    }

    async fn handshake(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::HandshakeRequest = self.body(p::HANDSHAKE).await?;
        let error = if req.version != p::IPC_VERSION {
            p::UNSUPPORTED_IPC_VERSION
        } else if self.handshaken {
            p::DUPLICATE_HANDSHAKE
        } else {
            self.handshaken = true;
            ""
        };
        self.reply(seq, error).await
    }

    async fn auth(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::AuthRequest = self.body(p::AUTH).await?;
        // With no key configured, Go compares against "": only an empty token passes.
        let cfg = &self.shared.cfg;
        let by_key = match &cfg.auth_key {
            Some(key) => constant_time_eq(key.as_bytes(), req.auth_key.as_bytes()).then_some(Scope::Operator),
            None if cfg.tokens.is_none() && req.auth_key.is_empty() => Some(Scope::Operator),
            None => None,
        };
        let by_token = cfg.tokens.as_ref().and_then(|t| t.current().find(&req.auth_key).map(|t| t.scope));
        let granted = by_key.or(by_token);
        if granted.is_some() {
            self.scope = granted.max(self.scope);
        } else {
            tracing::warn!(peer.addr = %self.peer, "serf-rpc: client sent a wrong auth token");
        }
        self.reply(seq, if granted.is_some() { "" } else { p::INVALID_AUTH_TOKEN }).await
    }

    async fn event(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::EventRequest = self.body(p::EVENT).await?;
        let payload = req.payload.map(|b| b.into_vec()).unwrap_or_default();
        let result = self.shared.gossip.user_event(&req.name, &payload, req.coalesce).await;
        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        self.reply(seq, &error).await
    }

    async fn join(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::JoinRequest = self.body(p::JOIN).await?;
        let existing = req.existing.unwrap_or_default();
        if req.replay {
            tracing::debug!(peer.addr = %self.peer, "serf-rpc: join -replay is not supported; old events are not replayed");
        }
        let mut addrs = Vec::new();
        let mut errors = Vec::new();
        for a in &existing {
            match resolve(a, GOSSIP_PORT).await {
                Ok(found) => addrs.extend(found),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let (num, error) = if addrs.is_empty() {
            let why = if errors.is_empty() { "no addresses to join".to_string() } else { errors.join("; ") };
            (0, why)
        } else {
            match self.shared.gossip.join(addrs).await {
                Ok(n) => (i32::try_from(n).unwrap_or(i32::MAX), String::new()),
                Err(e) => (0, e.to_string()),
            }
        };
        tracing::info!(peer.addr = %self.peer, addrs = ?existing, joined = num, error = %error, "serf-rpc: join");
        self.send(p::encode_response(seq, &error, Some(&p::JoinResponse { num }))?).await
    }

    async fn members(
        &mut self,
        seq: u64,
        filter: Option<p::MembersFilteredRequest>,
    ) -> Result<(), ConnError> {
        let members = self.shared.gossip.members().borrow().clone();
        let filter = match filter {
            None => None,
            Some(req) => match MemberFilter::new(&req.tags.unwrap_or_default(), &req.status, &req.name) {
                Ok(f) => Some(f),
                Err(e) => {
                    let error = format!("Failed to compile regex: {e}");
                    let empty = p::MembersResponse::default();
                    return self.send(p::encode_response(seq, &error, Some(&empty))?).await;
                }
            },
        };
        let resp = members::response(&members, filter.as_ref());
        self.send(p::encode_response(seq, "", Some(&resp))?).await
    }

    async fn stream(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::StreamRequest = self.body(p::STREAM).await?;
        self.streams.retain(|_, stop| !stop.is_cancelled());
        let filters = match stream::parse_filters(&req.kind) {
            Ok(f) => f,
            Err(bad) => {
                tracing::debug!(peer.addr = %self.peer, filter = %bad, "serf-rpc: invalid stream filter");
                return self.reply(seq, p::INVALID_FILTER).await;
            }
        };
        if self.streams.contains_key(&seq) {
            return self.reply(seq, p::STREAM_EXISTS).await;
        }
        if self.streams.len() >= STREAMS_MAX {
            let error = format!("Too many streams on this connection (limit {STREAMS_MAX}); stop one first");
            return self.reply(seq, &error).await;
        }
        // Subscribe before answering so no event between the answer and the stream is lost;
        // the answer is queued before the stream task can queue any record.
        let events = self.shared.gossip.subscribe();
        self.reply(seq, "").await?;
        let stop = self.cancel.child_token();
        self.streams.insert(seq, stop.clone());
        let pending = self.pending.clone();
        tokio::spawn(stream::run(self.peer, seq, filters, events, self.out.clone(), pending, stop));
        tracing::debug!(peer.addr = %self.peer, seq, filter = %req.kind, "serf-rpc: stream started");
        Ok(())
    }

    /// `monitor`: the checks and the forwarding task are `monitor.rs`'s; the tee subscription
    /// (with the replayed lines) is taken before the answer, the task started after it.
    async fn monitor(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::MonitorRequest = self.body(p::MONITOR).await?;
        match self.monitor.open(&req.log_level, &self.shared.cfg.logs) {
            Err(error) => self.reply(seq, &error).await,
            Ok(sub) => {
                self.reply(seq, "").await?;
                self.monitor.start(self.peer, seq, sub, self.out.clone(), self.cancel.child_token());
                tracing::debug!(peer.addr = %self.peer, seq, level = %req.log_level, "serf-rpc: monitor started");
                Ok(())
            }
        }
    }

    async fn stop(&mut self, seq: u64) -> Result<(), ConnError> {
        let req: p::StopRequest = self.body(p::STOP).await?;
        self.monitor.stop(req.stop);
        if let Some(stop) = self.streams.remove(&req.stop) {
            stop.cancel();
        }
        self.reply(seq, "").await
    }

    async fn leave(&mut self, seq: u64) -> Result<(), ConnError> {
        tracing::info!(peer.addr = %self.peer, "serf-rpc: graceful leave requested");
        let error = match self.shared.gossip.leave().await {
            Ok(()) => String::new(),
            Err(e) => {
                tracing::warn!(error = %e, "serf-rpc: leave failed");
                e.to_string()
            }
        };
        self.left = error.is_empty();
        self.reply(seq, &error).await
    }

    fn stop_streams(&mut self) {
        self.monitor.close();
        for (_, stop) in self.streams.drain() {
            stop.cancel();
        }
    }

    /// Reads and decodes the body that follows a header.
    async fn body<T: DeserializeOwned>(&mut self, command: &str) -> Result<T, ConnError> {
        let bytes = self.body_bytes(command).await?;
        rmp_serde::from_slice(&bytes).map_err(|source| ConnError::Decode { what: "request body", source })
    }

    async fn body_bytes(&mut self, command: &str) -> Result<Vec<u8>, ConnError> {
        let missing = || ConnError::MissingBody { command: command.to_string() };
        match tokio::time::timeout(REQUEST_TIMEOUT, self.reader.next_value()).await {
            Ok(value) => value?.ok_or_else(missing),
            Err(_) => Err(ConnError::Read(ReadError::Stalled { timeout: REQUEST_TIMEOUT })),
        }
    }

    /// A header-only answer.
    async fn reply(&self, seq: u64, error: &str) -> Result<(), ConnError> {
        self.send(p::encode_response::<()>(seq, error, None)?).await
    }

    async fn send(&self, frame: Vec<u8>) -> Result<(), ConnError> {
        self.out.send(frame).await.map_err(|_| ConnError::WriterGone)
    }
}

/// Compares secrets without an early exit that would leak how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Encodes a request: header, then the body when there is one (used by clients and tests).
pub fn encode_request<B: Serialize>(
    command: &str,
    seq: u64,
    body: Option<&B>,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let mut out = rmp_serde::to_vec_named(&RequestHeader { command: command.to_string(), seq })?;
    if let Some(b) = body {
        out.extend(rmp_serde::to_vec_named(b)?);
    }
    Ok(out)
}
