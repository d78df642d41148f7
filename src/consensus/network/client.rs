//! The sending side: openraft's `RaftNetworkFactory` / `RaftNetworkV2` over tonic. One lazily
//! connected channel per peer address, reused for every RPC; every call carries openraft's
//! deadline; transport failures become "unreachable" so openraft backs off.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use tonic::transport::{Channel, Endpoint};

use super::pb::raft_client::RaftClient;
use super::pb::RaftMessage;
use super::ClusterTag;
use super::{decode, encode, Faults};
use crate::consensus::types::{RaftNode, Snapshot, SnapshotData, TypeConfig, Vote};

/// Connect timeout for a peer channel.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The raft RPCs, one per method of the `muster.raft.v1.Raft` service.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    PreVote,
    Snapshot,
    Transfer,
}

impl std::fmt::Display for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rpc::Append => "append",
            Rpc::Vote => "vote",
            Rpc::PreVote => "pre_vote",
            Rpc::Snapshot => "snapshot",
            Rpc::Transfer => "transfer_leader",
        })
    }
}

/// Why an RPC did not get an answer.
#[derive(Debug, thiserror::Error)]
#[error("raft rpc {rpc} to node {target} at {addr}: {reason}")]
pub struct TransportError {
    rpc: Rpc,
    target: u64,
    addr: String,
    reason: String,
}

/// Builds a client per peer and shares channels between clients to the same address.
#[derive(Clone)]
pub struct NetworkFactory {
    self_id: u64,
    cluster: ClusterTag,
    faults: Faults,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// TLS for every peer connection; none: h2c.
    tls: Option<Arc<crate::tls::live::LiveTls>>,
}

impl NetworkFactory {
    pub fn new(
        self_id: u64,
        cluster: ClusterTag,
        faults: Faults,
        tls: Option<Arc<crate::tls::live::LiveTls>>,
    ) -> Self {
        NetworkFactory { self_id, cluster, faults, channels: Arc::new(Mutex::new(HashMap::new())), tls }
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let mut map = self.channels.lock().map_err(|_| "channel cache poisoned".to_string())?;
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        if let Some(tls) = &self.tls {
            let ch = crate::tls::dial::TlsDial::node(tls.clone(), CONNECT_TIMEOUT)
                .channel(addr)
                .map_err(|e| format!("bad peer address {addr:?}: {e}"))?;
            map.insert(addr.to_string(), ch.clone());
            return Ok(ch);
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("bad peer address {addr:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        let ch = endpoint.connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: u64, node: &RaftNode) -> PeerClient {
        PeerClient {
            self_id: self.self_id,
            cluster: self.cluster.clone(),
            target,
            addr: node.api_addr.clone(),
            channel: self.channel(&node.api_addr),
            faults: self.faults.clone(),
        }
    }
}

/// RPCs to one peer.
pub struct PeerClient {
    self_id: u64,
    cluster: ClusterTag,
    target: u64,
    addr: String,
    channel: Result<Channel, String>,
    faults: Faults,
}

impl PeerClient {
    fn err(&self, rpc: Rpc, reason: impl ToString) -> TransportError {
        TransportError { rpc, target: self.target, addr: self.addr.clone(), reason: reason.to_string() }
    }

    /// Sends one message and decodes the `Result<Resp, String>` the peer answers with.
    async fn call<Req, Resp>(
        &self,
        rpc: Rpc,
        req: &Req,
        deadline: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        if self.faults.is_cut(self.self_id, self.target) {
            return Err(RPCError::Unreachable(Unreachable::new(
                &self.err(rpc, "link cut by fault injection"),
            )));
        }
        let channel =
            self.channel.clone().map_err(|e| RPCError::Unreachable(Unreachable::new(&self.err(rpc, e))))?;
        let payload = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&self.err(rpc, e))))?;
        let mut request =
            tonic::Request::new(RaftMessage { from: self.self_id, payload, cluster: self.cluster.wire() });
        request.set_timeout(deadline);
        let mut client = RaftClient::new(channel);
        let reply = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::PreVote => client.pre_vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
            Rpc::Transfer => client.transfer_leader(request).await,
        };
        let reply = reply.map_err(|s| {
            let e = self.err(rpc, format!("{}: {}", s.code(), s.message()));
            match s.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                _ => RPCError::Network(NetworkError::new(&e)),
            }
        })?;
        let result: Result<Resp, String> = decode(&reply.into_inner().payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&self.err(rpc, format!("bad reply: {e}")))))?;
        result.map_err(|remote| {
            RPCError::Network(NetworkError::new(&self.err(rpc, format!("peer failed: {remote}"))))
        })
    }
}

fn to_streaming(e: RPCError<TypeConfig>) -> StreamingError<TypeConfig> {
    match e {
        RPCError::Timeout(t) => StreamingError::Timeout(t),
        RPCError::Unreachable(u) => StreamingError::Unreachable(u),
        RPCError::Network(n) => StreamingError::Network(n),
        RPCError::RemoteError(r) => StreamingError::Network(NetworkError::new(&r)),
    }
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Append, &rpc, option.soft_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Vote, &rpc, option.soft_ttl()).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::PreVote, &rpc, option.soft_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let data = snapshot.snapshot.into_inner();
        let msg = (vote, snapshot.meta, serde_bytes::ByteBuf::from(data));
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            r = self.call(Rpc::Snapshot, &msg, option.hard_ttl()) => r.map_err(to_streaming),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.call(Rpc::Transfer, &req, option.soft_ttl()).await
    }
}
