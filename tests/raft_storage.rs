//! openraft's storage conformance suite (`openraft::testing::log::Suite`) against muster's redb
//! raft storage (`muster::consensus::store`), each case in a fresh temp dir, with a trivial
//! [`Machine`] that records what it applied; then a one-node openraft cluster on the same storage,
//! restarted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use muster::consensus::store::open;
use muster::consensus::types::{Snapshot, SnapshotData, Vote};
use muster::consensus::{
    LogStore, Machine, MachineReader, Proposal, ProposalResult, RaftNode, StateMachineStore, StoreError,
    TypeConfig,
};
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{Config, ErrorSubject, ErrorVerb, Raft, RaftMetrics, ServerState, StorageError};
use tempfile::TempDir;

/// Records every applied `(index, payload)`; its snapshot is that list as JSON.
#[derive(Default)]
struct Recorder {
    applied: Vec<(u64, Vec<u8>)>,
}

impl Machine for Recorder {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        self.applied.push((index, payload.to_vec()));
        index.to_be_bytes().to_vec()
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.applied).unwrap()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.applied = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// Opens a fresh store in a new temp dir; the dir lives as long as the returned guard.
struct TempDirBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<Recorder>, TempDir> for TempDirBuilder {
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore, StateMachineStore<Recorder>), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let (log, sm) = open(dir.path(), Recorder::default())
            .await
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e.into()))?;
        Ok((dir, log, sm))
    }
}

/// Proves the redb log store and state machine store meet every contract openraft's
/// conformance suite checks (log state, purge, truncate, vote, committed re-apply, membership,
/// snapshot build/transfer/install).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_conformance_suite() {
    Suite::test_all(TempDirBuilder).await.unwrap();
}

/// A network for a cluster of one: there is never anyone to call.
struct NoPeers;

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeers;

    async fn new_client(&mut self, _target: u64, _node: &RaftNode) -> NoPeers {
        NoPeers
    }
}

fn unreachable() -> Unreachable<TypeConfig> {
    Unreachable::from_string("single-node test cluster has no peers")
}

impl RaftNetworkV2<TypeConfig> for NoPeers {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(RPCError::Unreachable(unreachable()))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        Err(StreamingError::Unreachable(unreachable()))
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// Opens the store, waiting (bounded) for a previous in-process owner to let go: after
/// `Raft::shutdown()` returns, openraft's tasks drop their storage handles a moment later, and
/// redb's file lock is held until the last handle is dropped.
async fn open_when_released(dir: &Path) -> (LogStore, StateMachineStore<Recorder>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match open(dir, Recorder::default()).await {
            Ok(stores) => return stores,
            Err(StoreError::Open { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("storage still locked {WAIT:?} after shutdown: {e}"),
        }
    }
}

async fn start(dir: &Path) -> (Raft<TypeConfig, StateMachineStore<Recorder>>, MachineReader<Recorder>) {
    let config = Config { cluster_name: "raft-storage-test".to_string(), ..Default::default() };
    let (log, sm) = open_when_released(dir).await;
    let reader = sm.reader();
    let raft = Raft::new(1, Arc::new(config.validate().unwrap()), NoPeers, log, sm).await.unwrap();
    (raft, reader)
}

/// Proves openraft itself runs on this storage: a one-node cluster commits proposals and returns
/// the machine's answers, snapshots, and after a restart rebuilds the machine from the snapshot
/// plus the committed log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_raft_writes_snapshots_and_recovers_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = RaftNode { api_addr: "127.0.0.1:9999".to_string(), name: "one".to_string() };
    let mut want = Vec::new();
    let last_index;
    {
        let (raft, reader) = start(dir.path()).await;
        raft.initialize(BTreeMap::from([(1u64, node)])).await.unwrap();
        raft.wait(Some(WAIT)).state(ServerState::Leader, "becomes leader").await.unwrap();

        for i in 0..3u8 {
            let resp = raft.client_write(Proposal(vec![i])).await.unwrap();
            assert_eq!(resp.data, ProposalResult(resp.log_id.index.to_be_bytes().to_vec()));
            want.push((resp.log_id.index, vec![i]));
        }
        raft.trigger().snapshot().await.unwrap();
        let snap_at = want.last().unwrap().0;
        let built = |m: &RaftMetrics<TypeConfig>| m.snapshot.is_some_and(|s| s.index >= snap_at);
        raft.wait(Some(WAIT)).metrics(built, "snapshot built").await.unwrap();

        let resp = raft.client_write(Proposal(vec![9])).await.unwrap();
        want.push((resp.log_id.index, vec![9]));
        last_index = resp.log_id.index;
        assert_eq!(reader.read(|m| m.applied.clone()), want);
        raft.shutdown().await.unwrap();
    }

    let (raft, reader) = start(dir.path()).await;
    raft.wait(Some(WAIT)).applied_index_at_least(Some(last_index), "re-applied after restart").await.unwrap();
    assert_eq!(reader.read(|m| m.applied.clone()), want, "snapshot restored, then the log tail re-applied");
    raft.shutdown().await.unwrap();
}
