//! `muster.cluster.v1.Cluster`: the gossip members (from the node's membership watch), the
//! raft view (from the consensus leadership watch), and leadership transfer. Thin: reads
//! watches and calls [`Consensus::transfer_leadership`]; decides nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::pb::cluster as pb;
use super::pb::cluster::cluster_server::Cluster as ClusterRpc;
use crate::cluster::plan::RAFT_ADDR_TAG;
use crate::consensus::leadership::{Leadership, Role};
use crate::consensus::raft::Consensus;
use crate::membership::{MemberInfo, MemberStatus, Mode, RAFT_ID_TAG};
use crate::replicated::RegistryMachine;

/// How long TransferLeadership waits for another voter to take over.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(5);

/// The Cluster service over one node's membership and consensus.
pub struct ClusterApi {
    pub(super) node_name: String,
    pub(super) consensus: Arc<Consensus<RegistryMachine>>,
    pub(super) members: watch::Receiver<Arc<Vec<MemberInfo>>>,
    /// `--allow-crash-drill`: Crash may end this process.
    pub(super) allow_crash: bool,
}

/// How long a crashing node waits for its answer to leave before it ends.
const CRASH_AFTER: Duration = Duration::from_millis(100);

fn status_to_pb(s: MemberStatus) -> pb::MemberStatus {
    match s {
        MemberStatus::None => pb::MemberStatus::Unspecified,
        MemberStatus::Alive => pb::MemberStatus::Alive,
        MemberStatus::Leaving => pb::MemberStatus::Leaving,
        MemberStatus::Left => pb::MemberStatus::Left,
        MemberStatus::Failed => pb::MemberStatus::Failed,
    }
}

fn mode_to_pb(m: Mode) -> pb::Mode {
    match m {
        Mode::Unknown => pb::Mode::Unspecified,
        Mode::Server => pb::Mode::Server,
        Mode::Proxy => pb::Mode::Proxy,
    }
}

fn role_to_pb(r: Role) -> pb::Mode {
    match r {
        Role::Unknown => pb::Mode::Unspecified,
        Role::Server => pb::Mode::Server,
        Role::Proxy => pb::Mode::Proxy,
    }
}

impl ClusterApi {
    /// Raft id → (name, API address) of every member gossip shows with a raft id tag.
    fn raft_names(&self) -> BTreeMap<u64, (String, String)> {
        self.members
            .borrow()
            .iter()
            .filter_map(|m| {
                let id = u64::from_str_radix(m.tags.get(RAFT_ID_TAG)?, 16).ok()?;
                Some((id, (m.name.clone(), m.tags.get(RAFT_ADDR_TAG).cloned().unwrap_or_default())))
            })
            .collect()
    }

    fn raft_member(names: &BTreeMap<u64, (String, String)>, id: u64) -> pb::RaftMember {
        let (name, address) = names.get(&id).cloned().unwrap_or_default();
        pb::RaftMember { id, id_hex: format!("{id:016x}"), name, address }
    }

    fn leader_of(
        &self,
        lead: &Leadership,
        names: &BTreeMap<u64, (String, String)>,
    ) -> Option<pb::RaftMember> {
        let id = lead.leader_id?;
        let mut m = Self::raft_member(names, id);
        if let Some(n) = &lead.leader_name {
            m.name = n.clone();
        }
        if let Some(a) = &lead.leader_addr {
            m.address = a.clone();
        }
        Some(m)
    }
}

#[tonic::async_trait]
impl ClusterRpc for ClusterApi {
    async fn members(
        &self,
        _req: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        let mut members: Vec<pb::Member> = self
            .members
            .borrow()
            .iter()
            .map(|m| pb::Member {
                name: m.name.clone(),
                addr: m.addr.to_string(),
                port: u32::from(m.port),
                tags: m.tags.clone().into_iter().collect(),
                status: status_to_pb(m.status) as i32,
                mode: mode_to_pb(m.mode) as i32,
                last_seen_ms_ago: m.last_seen_ms_ago,
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(pb::MembersResponse { members }))
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        let lead = self.consensus.leadership().borrow().clone();
        let names = self.raft_names();
        Ok(Response::new(pb::StatusResponse {
            node_name: self.node_name.clone(),
            node_id: self.consensus.id(),
            mode: role_to_pb(lead.role) as i32,
            leader: self.leader_of(&lead, &names),
            term: lead.term,
            voters: lead.voters.iter().map(|id| Self::raft_member(&names, *id)).collect(),
            learners: lead.learners.iter().map(|id| Self::raft_member(&names, *id)).collect(),
        }))
    }

    async fn transfer_leadership(
        &self,
        req: Request<pb::TransferLeadershipRequest>,
    ) -> Result<Response<pb::TransferLeadershipResponse>, Status> {
        let lead = self.consensus.leadership().borrow().clone();
        let me = self.consensus.id();
        if lead.leader_id != Some(me) {
            let at = lead.leader_addr.as_deref().unwrap_or("unknown (no leader is known)");
            return Err(Status::failed_precondition(format!(
                "this node is not the leader; call TransferLeadership on the leader at {at}"
            )));
        }
        let alive = crate::cluster::plan::eligible(&self.members.borrow());
        let target =
            match req.into_inner().target_id {
                Some(id) if id == me => {
                    return Err(Status::invalid_argument(
                        "invalid argument: target_id is this node, which leads already",
                    ))
                }
                Some(id) if !lead.voters.contains(&id) => {
                    return Err(Status::invalid_argument(format!(
                        "invalid argument: target_id {id:016x} is not a voter (voters: {})",
                        lead.voters.iter().map(|v| format!("{v:016x}")).collect::<Vec<_>>().join(", ")
                    )))
                }
                Some(id) => id,
                None => lead.voters.iter().copied().find(|v| *v != me && alive.contains_key(v)).ok_or_else(
                    || Status::failed_precondition("no other voter is alive in gossip to hand leadership to"),
                )?,
            };
        // transfer_leadership bounds its own wait by TRANSFER_TIMEOUT; this guards the trigger.
        let r = tokio::time::timeout(
            TRANSFER_TIMEOUT * 2,
            self.consensus.transfer_leadership(target, TRANSFER_TIMEOUT),
        )
        .await
        .map_err(|_| {
            Status::unavailable(format!("unavailable: leadership did not move within {TRANSFER_TIMEOUT:?}"))
        })?;
        r.map_err(|e| Status::unavailable(format!("unavailable: {e}")))?;
        let lead = self.consensus.leadership().borrow().clone();
        let names = self.raft_names();
        Ok(Response::new(pb::TransferLeadershipResponse { leader: self.leader_of(&lead, &names) }))
    }

    async fn leave(&self, _req: Request<pb::LeaveRequest>) -> Result<Response<pb::LeaveResponse>, Status> {
        Err(Status::unimplemented(
            "Leave is not served over gRPC yet; send SIGTERM to the node or run `serf leave -rpc-addr=<its --rpc-addr>` \
             (a leaving leader hands leadership over first)",
        ))
    }

    async fn crash(&self, _req: Request<pb::CrashRequest>) -> Result<Response<pb::CrashResponse>, Status> {
        if !self.allow_crash {
            return Err(Status::failed_precondition(format!(
                "{} was not started with --allow-crash-drill (MUSTER_ALLOW_CRASH_DRILL=true); \
                 crash drills are for test clusters",
                self.node_name
            )));
        }
        tracing::warn!(node.id = %self.node_name, "crash drill: this process ends now, as a crash would");
        std::thread::spawn(|| {
            std::thread::sleep(CRASH_AFTER);
            // No destructors, no leave, no drain: what kill -9 leaves behind.
            std::process::abort();
        });
        Ok(Response::new(pb::CrashResponse { pid: std::process::id() }))
    }
}
