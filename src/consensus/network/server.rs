//! The receiving side: the `muster.raft.v1.Raft` gRPC service handing each RPC to the local
//! openraft `Raft`. Replies carry `Result<Resp, String>` so a peer sees why a call failed.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use openraft::Raft;
use tonic::{Request, Response, Status};

use super::pb::raft_server::Raft as RaftRpc;
use super::pb::RaftMessage;
use super::{decode, encode, Faults};
use crate::consensus::types::{Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};

/// Serves raft RPCs for one local node.
pub struct RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>,
{
    raft: Raft<TypeConfig, SM>,
    self_id: u64,
    faults: Faults,
}

impl<SM> RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>,
{
    pub fn new(raft: Raft<TypeConfig, SM>, self_id: u64, faults: Faults) -> Self {
        RaftService { raft, self_id, faults }
    }

    /// Decodes the request, checking fault injection first.
    fn open<T: serde::de::DeserializeOwned>(&self, req: Request<RaftMessage>) -> Result<T, Status> {
        let msg = req.into_inner();
        if self.faults.is_cut(msg.from, self.self_id) {
            return Err(Status::unavailable("link cut by fault injection"));
        }
        decode(&msg.payload).map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))
    }
}

/// Wraps a local result into the reply message.
fn reply<T: serde::Serialize, E: std::fmt::Display>(
    self_id: u64,
    r: Result<T, E>,
) -> Result<Response<RaftMessage>, Status> {
    let r: Result<T, String> = r.map_err(|e| e.to_string());
    let payload = encode(&r).map_err(|e| Status::internal(format!("cannot encode raft reply: {e}")))?;
    Ok(Response::new(RaftMessage { from: self_id, payload }))
}

#[tonic::async_trait]
impl<SM> RaftRpc for RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>,
{
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(req)?;
        reply(self.self_id, self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(req)?;
        reply(self.self_id, self.raft.vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(req)?;
        reply(self.self_id, self.raft.pre_vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (vote, meta, data): (Vote, SnapshotMeta, serde_bytes::ByteBuf) = self.open(req)?;
        let snapshot = Snapshot { meta, snapshot: Cursor::new(data.into_vec()) };
        reply(self.self_id, self.raft.install_full_snapshot(vote, snapshot).await)
    }

    async fn transfer_leader(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = self.open(req)?;
        reply(self.self_id, self.raft.handle_transfer_leader(rpc).await)
    }
}
