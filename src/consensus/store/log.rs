//! [`LogStore`]: the raft log, vote, committed log id and last purged log id in one redb file
//! (`<data_dir>/raft/log.redb`).
//!
//! Every write is its own redb transaction run on tokio's blocking pool; a redb commit with
//! `Durability::Immediate` fsyncs, and redb commits are ordered, so a durable commit also makes
//! every earlier one durable. Must not import the state machine or anything outside `consensus`.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::{fmt, io};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{blocking, decode, encode, StoreError};
use crate::consensus::types::{Entry, LogId, TypeConfig, Vote};

/// Log entries keyed by index; values are msgpack-encoded [`Entry`]s.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Small named records: [`KEY_VOTE`], [`KEY_COMMITTED`], [`KEY_LAST_PURGED`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// `limited_get_log_entries` stops after this many entries (replication batches stay bounded).
const LIMITED_READ_ENTRIES_MAX: usize = 4096;
/// ... or once this many encoded bytes were read (at least one entry is always returned).
const LIMITED_READ_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The durable raft log. Cheap to clone: clones share one redb [`Database`], and a clone is also
/// the log reader, so a reader always sees every entry appended before its read started.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

impl LogStore {
    /// Wraps an opened database, creating the tables on first use.
    pub(super) fn new(db: Database) -> Result<Self, StoreError> {
        let txn = db.begin_write()?;
        txn.open_table(LOGS)?;
        txn.open_table(META)?;
        txn.commit()?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs `f` in one write transaction on the blocking pool and commits it with `durability`.
    async fn write<F>(&self, durability: Durability, f: F) -> Result<(), StoreError>
    where
        F: FnOnce(&WriteTransaction) -> Result<(), StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            f(&txn)?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(META)?;
            let value = table.get(key)?;
            value.map(|v| decode(key, v.value())).transpose()
        })
        .await
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let bytes = encode(key, value)?;
        self.write(durability, move |txn| {
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Reads entries with index in `[start, end)` (`end == None`: to the last entry), at most
    /// `entries_max` of them and stopping after `bytes_max` encoded bytes.
    async fn read_entries(
        &self,
        start: u64,
        end: Option<u64>,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if end.is_some_and(|end| start >= end) {
            return Ok(Vec::new());
        }
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(LOGS)?;
            let range = match end {
                Some(end) => table.range(start..end)?,
                None => table.range(start..)?,
            };
            let mut entries: Vec<Entry> = Vec::new();
            let mut bytes_read = 0usize;
            for item in range {
                let (key, value) = item?;
                let index = key.value();
                if let Some(prev) = entries.last() {
                    if index != prev.index() + 1 {
                        let msg = format!("hole between index {} and {index}", prev.index());
                        return Err(StoreError::Corrupt(msg));
                    }
                }
                let entry: Entry = decode("log entry", value.value())?;
                if entry.index() != index {
                    let msg = format!("entry {} stored under index {index}", entry.log_id());
                    return Err(StoreError::Corrupt(msg));
                }
                bytes_read += value.value().len();
                entries.push(entry);
                if entries.len() >= entries_max || bytes_read >= bytes_max {
                    break;
                }
            }
            Ok(entries)
        })
        .await
    }

    /// `(last purged, last present)` log ids, read in one transaction.
    async fn log_ids(&self) -> Result<(Option<LogId>, Option<LogId>), StoreError> {
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read()?;
            let purged = match txn.open_table(META)?.get(KEY_LAST_PURGED)? {
                Some(v) => Some(decode::<LogId>(KEY_LAST_PURGED, v.value())?),
                None => None,
            };
            let last = match txn.open_table(LOGS)?.last()? {
                Some((_, v)) => Some(decode::<Entry>("log entry", v.value())?.log_id()),
                None => None,
            };
            Ok((purged, last))
        })
        .await
    }
}

/// Converts any index range into `[start, end)` with `end == None` meaning unbounded. A range
/// that cannot contain any index comes back with `end == Some(start)`.
fn index_bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, Option<u64>) {
    let start = match range.start_bound() {
        Bound::Included(&i) => Some(i),
        Bound::Excluded(&i) => i.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let Some(start) = start else {
        return (u64::MAX, Some(u64::MAX));
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => i.checked_add(1),
        Bound::Excluded(&i) => Some(i),
        Bound::Unbounded => None,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let (start, end) = index_bounds(&range);
        Ok(self.read_entries(start, end, usize::MAX, usize::MAX).await?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.read_meta(KEY_VOTE).await?)
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        let (entries_max, bytes_max) = (LIMITED_READ_ENTRIES_MAX, LIMITED_READ_BYTES_MAX);
        Ok(self.read_entries(start, Some(end), entries_max, bytes_max).await?)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let (last_purged_log_id, last_present) = self.log_ids().await?;
        // With every entry purged, the last log id is the purge point.
        let last_log_id = last_present.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable before returning (fsync).
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        Ok(self.write_meta(KEY_VOTE, vote, Durability::Immediate).await?)
    }

    /// Not fsynced on its own: the next durable commit (append, vote) persists it. A committed
    /// log id lost in a crash only means re-applying less on restart, which is safe.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        Ok(self.write_meta(KEY_COMMITTED, &committed, Durability::None).await?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED).await?.flatten())
    }

    /// Commits the entries durably, then reports them flushed. When this returns they are both
    /// readable and on disk, so the callback fires before the return.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|entry| Ok((entry.index(), encode("log entry", &entry)?)))
            .collect::<Result<Vec<(u64, Vec<u8>)>, StoreError>>();
        let result = match encoded {
            Ok(encoded) => {
                self.write(Durability::Immediate, move |txn| {
                    let mut table = txn.open_table(LOGS)?;
                    for (index, bytes) in &encoded {
                        table.insert(*index, bytes.as_slice())?;
                    }
                    Ok(())
                })
                .await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let msg = e.to_string();
                callback.io_completed(Err(io::Error::other(msg)));
                Err(e.into())
            }
        }
    }

    /// Removes every entry after `last_log_id` (all of them for `None`), durably.
    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = match &last_log_id {
            Some(log_id) => log_id.index().saturating_add(1),
            None => 0,
        };
        tracing::debug!(raft.truncate_from = from, "truncating raft log");
        Ok(self
            .write(Durability::Immediate, move |txn| {
                txn.open_table(LOGS)?.retain_in(from.., |_, _| false)?;
                Ok(())
            })
            .await?)
    }

    /// Records `log_id` as purged and removes every entry up to it, in one durable commit. The
    /// purged mark never moves backwards.
    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        tracing::debug!(raft.purge_upto = %log_id, "purging raft log");
        let bytes = encode(KEY_LAST_PURGED, &log_id)?;
        let upto = log_id.index();
        Ok(self
            .write(Durability::Immediate, move |txn| {
                let mut meta = txn.open_table(META)?;
                let previous = match meta.get(KEY_LAST_PURGED)? {
                    Some(v) => Some(decode::<LogId>(KEY_LAST_PURGED, v.value())?),
                    None => None,
                };
                if previous.is_some_and(|p| p >= log_id) {
                    return Ok(());
                }
                meta.insert(KEY_LAST_PURGED, bytes.as_slice())?;
                txn.open_table(LOGS)?.retain_in(..=upto, |_, _| false)?;
                Ok(())
            })
            .await?)
    }
}
