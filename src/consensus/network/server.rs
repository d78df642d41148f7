//! The receiving side: the `muster.raft.v1.Raft` gRPC service handing each RPC to the local
//! openraft `Raft`. Replies carry `Result<Resp, String>` so a peer sees why a call failed.

use std::io::Cursor;
use std::sync::Arc;

use openraft::raft::AppendEntriesResponse;
use openraft::storage::RaftStateMachine;
use openraft::Raft;
use tonic::{Request, Response, Status};

use super::pb::raft_server::Raft as RaftRpc;
use super::pb::RaftMessage;
use super::{decode, encode, ClusterTag, Faults};
use crate::consensus::contact::LeaderContact;
use crate::consensus::types::{Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};

/// The local `Raft` an RPC goes to right now: `None` while the member is being reset (after a
/// cluster merge) and has none.
pub type CurrentRaft<SM> = Arc<dyn Fn() -> Option<Raft<TypeConfig, SM>> + Send + Sync>;

/// Serves raft RPCs for one local node.
pub struct RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>,
{
    current: CurrentRaft<SM>,
    self_id: u64,
    cluster: ClusterTag,
    faults: Faults,
    /// Noted at every leader message the local raft accepts.
    contact: Arc<LeaderContact>,
}

impl<SM> RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>,
{
    pub fn new(
        current: CurrentRaft<SM>,
        self_id: u64,
        cluster: ClusterTag,
        faults: Faults,
        contact: Arc<LeaderContact>,
    ) -> Self {
        RaftService { current, self_id, cluster, faults, contact }
    }

    /// Decodes the request after fault injection and the cluster check, and finds the raft
    /// it goes to.
    fn open<T: serde::de::DeserializeOwned>(
        &self,
        req: Request<RaftMessage>,
    ) -> Result<(Raft<TypeConfig, SM>, T), Status> {
        let msg = req.into_inner();
        if self.faults.is_cut(msg.from, self.self_id) {
            return Err(Status::unavailable("link cut by fault injection"));
        }
        self.cluster.admit(&msg.cluster).map_err(Status::failed_precondition)?;
        let raft = (self.current)().ok_or_else(|| Status::unavailable("raft member is restarting"))?;
        let rpc = decode(&msg.payload)
            .map_err(|e| Status::invalid_argument(format!("undecodable raft message: {e}")))?;
        Ok((raft, rpc))
    }
}

/// Wraps a local result into the reply message.
fn reply<T: serde::Serialize, E: std::fmt::Display>(
    self_id: u64,
    r: Result<T, E>,
) -> Result<Response<RaftMessage>, Status> {
    let r: Result<T, String> = r.map_err(|e| e.to_string());
    let payload = encode(&r).map_err(|e| Status::internal(format!("cannot encode raft reply: {e}")))?;
    Ok(Response::new(RaftMessage { from: self_id, payload, cluster: String::new() }))
}

#[tonic::async_trait]
impl<SM> RaftRpc for RaftService<SM>
where
    SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>,
{
    async fn append_entries(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (raft, rpc) = self.open(req)?;
        let r = raft.append_entries(rpc).await;
        // Anything but a higher vote means raft took the sender as its leader (and reset its
        // election timer).
        if matches!(r, Ok(ref resp) if !matches!(resp, AppendEntriesResponse::HigherVote(_))) {
            self.contact.heard(std::time::Instant::now());
        }
        reply(self.self_id, r)
    }

    async fn vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (raft, rpc) = self.open(req)?;
        reply(self.self_id, raft.vote(rpc).await)
    }

    async fn pre_vote(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (raft, rpc) = self.open(req)?;
        reply(self.self_id, raft.pre_vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (raft, (vote, meta, data)): (_, (Vote, SnapshotMeta, serde_bytes::ByteBuf)) = self.open(req)?;
        let snapshot = Snapshot { meta, snapshot: Cursor::new(data.into_vec()) };
        let sent = vote;
        let r = raft.install_full_snapshot(vote, snapshot).await;
        if matches!(r, Ok(ref resp) if resp.vote == sent) {
            self.contact.heard(std::time::Instant::now());
        }
        reply(self.self_id, r)
    }

    async fn transfer_leader(&self, req: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let (raft, rpc) = self.open(req)?;
        reply(self.self_id, raft.handle_transfer_leader(rpc).await)
    }
}
