//! [`StateMachineStore`]: the caller's [`Machine`] kept in memory, the applied log id and last
//! membership beside it, and its snapshots persisted in redb (`<data_dir>/raft/sm.redb`).
//!
//! `apply` does not write to disk: the machine is rebuilt on restart from the latest persisted
//! snapshot plus the committed log after it (the log store persists the committed log id).
//! Must not import the log store or anything outside `consensus`.

use std::fmt::Debug;
use std::io::Cursor;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::{fmt, io};

use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{blocking, decode, encode, StoreError};
use crate::consensus::types::{
    LogId, Machine, ProposalResult, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig,
};

/// The one current snapshot: [`KEY_META`] (msgpack [`SnapshotMeta`]) and [`KEY_DATA`] (the
/// machine's bytes), always written together in one transaction.
const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_snapshot");
const KEY_META: &str = "meta";
const KEY_DATA: &str = "data";

/// The replicated state machine as openraft drives it. Not `Clone`: openraft owns it; queries
/// read the machine through a [`MachineReader`].
pub struct StateMachineStore<M: Machine> {
    machine: Arc<RwLock<M>>,
    applied: Option<LogId>,
    membership: StoredMembership,
    db: Arc<Database>,
}

impl<M: Machine> Debug for StateMachineStore<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("applied", &self.applied)
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}

/// Shared read access to the in-memory [`Machine`], for queries. Writes happen only through
/// raft (`apply`, `install_snapshot`).
pub struct MachineReader<M> {
    machine: Arc<RwLock<M>>,
}

impl<M> Clone for MachineReader<M> {
    fn clone(&self) -> Self {
        Self { machine: self.machine.clone() }
    }
}

impl<M> MachineReader<M> {
    /// Runs `f` with the machine read-locked. Keep `f` short: `apply` waits for it.
    pub fn read<R>(&self, f: impl FnOnce(&M) -> R) -> R {
        f(&read_lock(&self.machine))
    }
}

/// A point-in-time view taken by [`RaftStateMachine::get_snapshot_builder`]: the machine's
/// bytes and the meta they correspond to. Building persists it.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    data: Vec<u8>,
    db: Arc<Database>,
}

// `Machine::apply` never panics by contract; if it did, the state behind the lock is still the
// best we have, so poisoning is ignored rather than turned into a second panic.
fn read_lock<M>(m: &RwLock<M>) -> RwLockReadGuard<'_, M> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<M>(m: &RwLock<M>) -> RwLockWriteGuard<'_, M> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

fn display_log_id(log_id: &Option<LogId>) -> String {
    log_id.as_ref().map_or_else(|| "none".to_string(), ToString::to_string)
}

impl<M: Machine> StateMachineStore<M> {
    /// Wraps an opened database and restores `machine` from the latest persisted snapshot, if
    /// any. Blocking: call it off the async workers.
    pub(super) fn open_blocking(db: Database, mut machine: M) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(SNAPSHOT)?;
        txn.commit()?;
        let db = Arc::new(db);

        let (applied, membership) = match load_snapshot(&db)? {
            Some((meta, data)) => {
                machine.restore(&data).map_err(|reason| StoreError::Restore {
                    at: display_log_id(&meta.last_log_id),
                    reason,
                })?;
                tracing::info!(raft.snapshot = %display_log_id(&meta.last_log_id), "state machine restored from snapshot");
                (meta.last_log_id, meta.last_membership)
            }
            None => (None, StoredMembership::default()),
        };
        Ok(Self { machine: Arc::new(RwLock::new(machine)), applied, membership, db })
    }

    /// A handle for reading the machine from elsewhere (queries, watches).
    pub fn reader(&self) -> MachineReader<M> {
        MachineReader { machine: self.machine.clone() }
    }
}

/// The persisted snapshot, if one was ever built or installed.
fn load_snapshot(db: &Database) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(SNAPSHOT)?;
    let Some(meta) = table.get(KEY_META)? else {
        return Ok(None);
    };
    let meta: SnapshotMeta = decode("snapshot meta", meta.value())?;
    let data = table
        .get(KEY_DATA)?
        .ok_or_else(|| StoreError::Corrupt("snapshot meta without data".to_string()))?
        .value()
        .to_vec();
    Ok(Some((meta, data)))
}

/// Durably replaces the persisted snapshot with `(meta, data)` unless the stored one covers more
/// of the log (a slow builder must not overwrite a newer installed snapshot). Gives `data` back.
async fn persist_snapshot(
    db: Arc<Database>,
    meta: SnapshotMeta,
    data: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    let meta_bytes = encode("snapshot meta", &meta)?;
    blocking(move || {
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(SNAPSHOT)?;
            let stored = match table.get(KEY_META)? {
                Some(v) => Some(decode::<SnapshotMeta>("snapshot meta", v.value())?),
                None => None,
            };
            if stored.is_some_and(|s| s.last_log_id > meta.last_log_id) {
                tracing::info!(raft.snapshot = %display_log_id(&meta.last_log_id), "newer snapshot already stored; not persisting");
                return Ok(data);
            }
            table.insert(KEY_META, meta_bytes.as_slice())?;
            table.insert(KEY_DATA, data.as_slice())?;
        }
        txn.commit()?;
        Ok(data)
    })
    .await
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let data = std::mem::take(&mut self.data);
        let data = persist_snapshot(self.db.clone(), self.meta.clone(), data).await?;
        tracing::info!(raft.snapshot = %display_log_id(&self.meta.last_log_id), bytes = data.len(), "snapshot built");
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Cursor::new(data) })
    }
}

impl<M: Machine> RaftStateMachine<TypeConfig> for StateMachineStore<M> {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    /// Normal entries go to [`Machine::apply`]; blank entries only advance the applied log id;
    /// membership entries also become the last membership. Each answer is sent right away.
    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            tracing::trace!(raft.applied = %log_id, "applying");
            let response = match entry.payload {
                EntryPayload::Blank => ProposalResult::default(),
                EntryPayload::Normal(proposal) => {
                    let mut machine = write_lock(&self.machine);
                    ProposalResult(machine.apply(log_id.index(), &proposal.0))
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(log_id), membership);
                    ProposalResult::default()
                }
            };
            self.applied = Some(log_id);
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let data = read_lock(&self.machine).snapshot();
        SnapshotBuilder {
            meta: SnapshotMeta { last_log_id: self.applied, last_membership: self.membership.clone() },
            data,
            db: self.db.clone(),
        }
    }

    /// Restores the machine from the snapshot, then persists the snapshot durably.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        write_lock(&self.machine)
            .restore(&data)
            .map_err(|reason| StoreError::Restore { at: display_log_id(&meta.last_log_id), reason })?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        persist_snapshot(self.db.clone(), meta.clone(), data).await?;
        tracing::info!(raft.snapshot = %display_log_id(&meta.last_log_id), "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let db = self.db.clone();
        let stored = blocking(move || load_snapshot(&db)).await?;
        Ok(stored.map(|(meta, data)| Snapshot { meta, snapshot: Cursor::new(data) }))
    }
}
