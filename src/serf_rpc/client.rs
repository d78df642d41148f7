//! A small Serf RPC client: connect, handshake, optional auth, then one request at a time
//! (event, members, join, stats, get-coordinate, leave) or a stream of records. Enough for
//! `muster event` and for tests; speaks to a muster node or to a Go `serf agent` alike. Every
//! exchange has a deadline.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_bytes::ByteBuf;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::frame::{FrameReader, ReadError};
use super::proto::{self as p, MemberRecord, ResponseHeader, StatsResponse, StreamRecord};
use crate::gossip::wire::SerfCoordinate;

/// Serf's client default for every exchange.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response value accepted.
const RESPONSE_MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no Serf RPC agent answers at {addr}: {source} (is `muster agent` running with --rpc-addr {addr}?)"
    )]
    NoAgent { addr: SocketAddr, source: std::io::Error },
    #[error("the agent at {addr} did not answer within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connection to {addr} failed: {source}")]
    Io { addr: SocketAddr, source: std::io::Error },
    #[error("the agent at {addr} closed the connection")]
    Closed { addr: SocketAddr },
    #[error("the agent at {addr} sent something unreadable: {reason}")]
    BadAnswer { addr: SocketAddr, reason: String },
    #[error("{0}")]
    Agent(String),
}

/// One connection to an agent's RPC port.
pub struct RpcClient {
    addr: SocketAddr,
    reader: FrameReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    seq: u64,
    timeout: Duration,
}

impl RpcClient {
    /// Connects, handshakes and, with a key, authenticates.
    pub async fn connect(
        addr: SocketAddr,
        auth_key: Option<&str>,
        timeout: Duration,
    ) -> Result<RpcClient, ClientError> {
        let socket = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ClientError::NoAgent { addr, source }),
            Err(_) => return Err(ClientError::Timeout { addr, timeout }),
        };
        let _ = socket.set_nodelay(true);
        let (rd, writer) = socket.into_split();
        let mut c = RpcClient {
            addr,
            reader: FrameReader::new(rd, RESPONSE_MAX_BYTES, timeout),
            writer,
            seq: 0,
            timeout,
        };
        c.call::<_, ()>(p::HANDSHAKE, Some(&p::HandshakeRequest { version: p::IPC_VERSION }), false).await?;
        if let Some(key) = auth_key.filter(|k| !k.is_empty()) {
            c.call::<_, ()>(p::AUTH, Some(&p::AuthRequest { auth_key: key.to_string() }), false).await?;
        }
        Ok(c)
    }

    pub async fn user_event(
        &mut self,
        name: &str,
        payload: &[u8],
        coalesce: bool,
    ) -> Result<(), ClientError> {
        let req = p::EventRequest {
            coalesce,
            name: name.to_string(),
            payload: Some(ByteBuf::from(payload.to_vec())),
        };
        self.call::<_, ()>(p::EVENT, Some(&req), false).await.map(|_| ())
    }

    pub async fn members(&mut self) -> Result<Vec<MemberRecord>, ClientError> {
        let r: Option<p::MembersResponse> = self.call::<(), _>(p::MEMBERS, None, true).await?;
        Ok(r.unwrap_or_default().members)
    }

    pub async fn members_filtered(
        &mut self,
        req: &p::MembersFilteredRequest,
    ) -> Result<Vec<MemberRecord>, ClientError> {
        let r: Option<p::MembersResponse> = self.call(p::MEMBERS_FILTERED, Some(req), true).await?;
        Ok(r.unwrap_or_default().members)
    }

    /// Joins through `addrs`; how many answered.
    pub async fn join(&mut self, addrs: &[String], replay: bool) -> Result<i32, ClientError> {
        let req = p::JoinRequest { existing: Some(addrs.to_vec()), replay };
        let r: Option<p::JoinResponse> = self.call(p::JOIN, Some(&req), true).await?;
        Ok(r.unwrap_or_default().num)
    }

    pub async fn stats(&mut self) -> Result<StatsResponse, ClientError> {
        let r: Option<StatsResponse> = self.call::<(), _>(p::STATS, None, true).await?;
        Ok(r.unwrap_or_default())
    }

    /// The agent's cached coordinate for `node`; `None` when it has none (`Ok: false`).
    pub async fn get_coordinate(&mut self, node: &str) -> Result<Option<SerfCoordinate>, ClientError> {
        let req = p::CoordinateRequest { node: node.to_string() };
        let r: Option<p::CoordinateResponse> = self.call(p::GET_COORDINATE, Some(&req), true).await?;
        Ok(r.filter(|r| r.ok).map(|r| r.coord.into()))
    }

    pub async fn leave(&mut self) -> Result<(), ClientError> {
        self.call::<(), ()>(p::LEAVE, None, false).await.map(|_| ())
    }

    /// Starts a stream; read its records with [`RpcClient::next_record`]. Returns its Seq.
    /// Use one stream per client: this client does not demultiplex.
    pub async fn stream(&mut self, filter: &str) -> Result<u64, ClientError> {
        self.call::<_, ()>(p::STREAM, Some(&p::StreamRequest { kind: filter.to_string() }), false).await?;
        Ok(self.seq)
    }

    /// The next stream record, waiting at most `wait`; `Ok(None)` when none came in time.
    pub async fn next_record(&mut self, wait: Duration) -> Result<Option<StreamRecord>, ClientError> {
        let read = async {
            let _header: ResponseHeader = self.read_value().await?;
            self.read_value::<StreamRecord>().await
        };
        match tokio::time::timeout(wait, read).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Sends one request and reads its answer, with a body when `want_body` (and the agent
    /// did not refuse for want of auth, when Serf sends no body).
    pub async fn call<B: Serialize, R: DeserializeOwned>(
        &mut self,
        command: &str,
        body: Option<&B>,
        want_body: bool,
    ) -> Result<Option<R>, ClientError> {
        self.seq += 1;
        let frame = super::encode_request(command, self.seq, body).map_err(|e| self.bad(e))?;
        let (addr, timeout, seq) = (self.addr, self.timeout, self.seq);
        let exchange = async {
            self.writer.write_all(&frame).await.map_err(|source| ClientError::Io { addr, source })?;
            let header: ResponseHeader = self.read_value().await?;
            if header.seq != seq {
                return Err(ClientError::BadAnswer {
                    addr,
                    reason: format!("answer for seq {} to request {seq}", header.seq),
                });
            }
            let body = if want_body && header.error != p::AUTH_REQUIRED {
                Some(self.read_value::<R>().await?)
            } else {
                None
            };
            if header.error.is_empty() {
                Ok(body)
            } else {
                Err(ClientError::Agent(header.error))
            }
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| ClientError::Timeout { addr, timeout })?
    }

    async fn read_value<T: DeserializeOwned>(&mut self) -> Result<T, ClientError> {
        let addr = self.addr;
        let bytes = match self.reader.next_value().await {
            Ok(Some(b)) => b,
            Ok(None) => return Err(ClientError::Closed { addr }),
            Err(ReadError::Io(source)) => return Err(ClientError::Io { addr, source }),
            Err(e) => return Err(ClientError::BadAnswer { addr, reason: e.to_string() }),
        };
        rmp_serde::from_slice(&bytes).map_err(|e| self.bad(e))
    }

    fn bad(&self, e: impl std::fmt::Display) -> ClientError {
        ClientError::BadAnswer { addr: self.addr, reason: e.to_string() }
    }
}
