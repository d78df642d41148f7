//! [`LogStore`]: the raft log, vote, committed log id and last purged log id in one redb file
//! (`<data_dir>/raft/log.redb`).
//!
//! Writes are pipelined. `append` puts the entries into an in-memory tail of the log (so they
//! are readable at once, as openraft requires) and queues them for the log's writer thread; the
//! writer takes every job queued meanwhile into one redb transaction, commits it and then
//! reports the appends flushed. A batch that must be durable is made so by the write-ahead
//! file (`wal.rs`: one sequential write and one fdatasync) while redb commits without fsync;
//! votes, closing and a checkpoint every few seconds commit redb durably instead. So raft never waits for the disk on its own task: a leader sends new
//! entries to the followers while its own fsync runs, and appends that arrive during one fsync
//! share the next one (group commit).
//!
//! The tail also keeps the most recently flushed entries ([`TAIL_FLUSHED_MAX`]), so
//! replication of fresh entries reads memory, not redb. Jobs run in the order they were queued
//! and redb commits are ordered, so a durable commit also makes every earlier job durable.
//! A vote is durable before `save_vote` returns; truncations, purges and the committed log id
//! take effect in memory at once and on disk with the next commit. Must not import the state
//! machine or anything outside `consensus`.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;
use std::{fmt, io};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use super::wal::{Op as WalOp, Wal};
use super::{blocking, decode, encode, StoreError};
use crate::consensus::types::{Entry, LogId, TypeConfig, Vote};

/// Log entries keyed by index; values are msgpack-encoded [`Entry`]s.
const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Small named records: [`KEY_VOTE`], [`KEY_COMMITTED`], [`KEY_LAST_PURGED`].
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
pub(super) const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
/// The last write-ahead record a durable redb commit covers.
const KEY_WAL_SEQ: &str = "wal_seq";
/// A random number of this log's, which its write-ahead records are checksummed with.
const KEY_WAL_ID: &str = "wal_id";
/// The number of the last durable redb commit that restarted the write-ahead file; the
/// records written after it are checksummed with it.
const KEY_WAL_ROUND: &str = "wal_round";

/// `limited_get_log_entries` stops after this many entries (replication batches stay bounded).
const LIMITED_READ_ENTRIES_MAX: usize = 4096;
/// ... or once this many encoded bytes were read (at least one entry is always returned).
const LIMITED_READ_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Flushed entries kept in the in-memory tail for replication reads.
const TAIL_FLUSHED_MAX: usize = 1024;
/// How long jobs that need no fsync wait for a durable batch to ride along with.
const DEFER_MAX: std::time::Duration = std::time::Duration::from_millis(200);
/// At most this many queued jobs go into one redb transaction.
const BATCH_JOBS_MAX: usize = 1024;
/// A durable redb commit (a checkpoint) once the write-ahead file holds this many bytes ...
const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// ... or this long after the last one, while anything was written ahead meanwhile.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The durable raft log. Cheap to clone: clones share one redb [`Database`], the in-memory
/// tail and the writer's queue, and a clone is also the log reader, so a reader sees every
/// entry appended before its read started. Dropping the last clone lets the writer finish its
/// queue and waits for it, so the file is released when the drop returns.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    mem: Arc<Mutex<Mem>>,
    /// `None` only while dropping.
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what is queued.
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("raft log: the writer thread panicked");
            }
        }
    }
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore").finish_non_exhaustive()
    }
}

/// One log entry in the tail.
struct Cached {
    entry: Entry,
    /// Encoded size, for the byte bound of limited reads.
    bytes: usize,
    /// Committed to redb.
    flushed: bool,
}

/// What memory knows ahead of (or instead of reading) redb.
#[derive(Default)]
struct Mem {
    /// The newest entries, contiguous and ending at the last log entry: every index from the
    /// first one here to the end of the log is here.
    tail: VecDeque<Cached>,
    /// redb entries at or after this index are stale: a truncation is queued and not yet
    /// committed. With the job's sequence number, to clear it once committed.
    hidden_from: Option<(u64, u64)>,
    /// The last purged log id, ahead of redb.
    last_purged: Option<LogId>,
    /// The committed log id last saved, ahead of redb.
    committed: Option<Option<LogId>>,
    /// Sequence number of the last queued job.
    seq: u64,
}

impl Mem {
    fn first_tail_index(&self) -> Option<u64> {
        self.tail.front().map(|c| c.entry.index())
    }

    /// Entries of the tail with index in `[start, end)` (`None`: to the end).
    fn tail_range(&self, start: u64, end: Option<u64>) -> Vec<(Entry, usize)> {
        let Some(first) = self.first_tail_index() else { return Vec::new() };
        let skip = usize::try_from(start.saturating_sub(first)).unwrap_or(usize::MAX);
        self.tail
            .iter()
            .skip(skip)
            .take_while(|c| end.is_none_or(|end| c.entry.index() < end))
            .map(|c| (c.entry.clone(), c.bytes))
            .collect()
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Drops flushed entries from the front beyond [`TAIL_FLUSHED_MAX`] (they are in redb).
    fn trim(&mut self) {
        let flushed = self.tail.iter().filter(|c| c.flushed).count();
        let mut excess = flushed.saturating_sub(TAIL_FLUSHED_MAX);
        while excess > 0 && self.tail.front().is_some_and(|c| c.flushed) {
            self.tail.pop_front();
            excess -= 1;
        }
    }
}

/// Work for the writer thread, run in queue order.
enum Job {
    Append {
        entries: Vec<(LogId, Vec<u8>)>,
        callback: IOFlushed<TypeConfig>,
    },
    Meta {
        key: &'static str,
        bytes: Vec<u8>,
        durable: bool,
        done: Option<oneshot::Sender<Result<(), String>>>,
    },
    TruncateFrom {
        from: u64,
        seq: u64,
    },
    Purge {
        log_id: LogId,
        bytes: Vec<u8>,
    },
}

impl Job {
    fn durable(&self) -> bool {
        match self {
            Job::Append { .. } | Job::TruncateFrom { .. } => true,
            Job::Meta { durable, .. } => *durable,
            Job::Purge { .. } => false,
        }
    }

    /// Adds the job's changes to the open transaction.
    fn write(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        match self {
            Job::Append { entries, .. } => {
                let mut table = txn.open_table(LOGS)?;
                for (log_id, bytes) in entries {
                    table.insert(log_id.index(), bytes.as_slice())?;
                }
            }
            Job::Meta { key, bytes, .. } => {
                txn.open_table(META)?.insert(*key, bytes.as_slice())?;
            }
            Job::TruncateFrom { from, .. } => {
                txn.open_table(LOGS)?.retain_in(*from.., |_, _| false)?;
            }
            Job::Purge { log_id, bytes } => {
                let mut meta = txn.open_table(META)?;
                let previous = match meta.get(KEY_LAST_PURGED)? {
                    Some(v) => Some(decode::<LogId>(KEY_LAST_PURGED, v.value())?),
                    None => None,
                };
                if previous.is_none_or(|p| p < *log_id) {
                    meta.insert(KEY_LAST_PURGED, bytes.as_slice())?;
                    txn.open_table(LOGS)?.retain_in(..=log_id.index(), |_, _| false)?;
                }
            }
        }
        Ok(())
    }

    /// What the write-ahead file records of this job (appends and truncations), borrowing
    /// the encoded entries.
    fn wal_op(&self) -> Option<WalOp<&[u8]>> {
        match self {
            Job::Append { entries, .. } => Some(WalOp::Append(
                entries.iter().map(|(id, bytes)| (id.index(), bytes.as_slice())).collect(),
            )),
            Job::TruncateFrom { from, .. } => Some(WalOp::TruncateFrom(*from)),
            Job::Meta { .. } | Job::Purge { .. } => None,
        }
    }

    /// Reports the commit's outcome to whoever waits for this job.
    fn finish(self, result: &Result<(), String>) {
        match self {
            Job::Append { callback, .. } => {
                callback.io_completed(result.clone().map_err(io::Error::other));
            }
            Job::Meta { done: Some(done), .. } => {
                let _ = done.send(result.clone());
            }
            Job::Meta { done: None, .. } | Job::TruncateFrom { .. } | Job::Purge { .. } => {}
        }
    }
}

fn lock(mem: &Mutex<Mem>) -> MutexGuard<'_, Mem> {
    // Nothing panics while holding the lock; if it did, the tail is still the best we have.
    mem.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer thread: commits queued jobs in order, batching what queued up meanwhile, until
/// every [`LogStore`] clone is gone.
///
/// A batch with nothing durable in it (the committed log id, a purge) is not committed on its
/// own: it rides along with the next durable batch, or is committed after [`DEFER_MAX`] or
/// when the queue closes. Under steady writes that halves the commits: every write would
/// otherwise cost one commit for its entry and one for the committed log id after it.
fn run_writer(db: Arc<Database>, mem: Arc<Mutex<Mem>>, mut ahead: Ahead, jobs: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::new();
    loop {
        let next = if batch.is_empty() {
            jobs.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            jobs.recv_timeout(DEFER_MAX)
        };
        let (closed, timed_out) = match next {
            Ok(job) => {
                batch.push(job);
                (false, false)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => (false, true),
            Err(mpsc::RecvTimeoutError::Disconnected) => (true, false),
        };
        while batch.len() < BATCH_JOBS_MAX {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(Job::durable);
        if !durable && !closed && !timed_out && batch.len() < BATCH_JOBS_MAX {
            continue;
        }
        // Closing: one last durable commit, so the next open has nothing to replay.
        if batch.is_empty() && !(closed && ahead.dirty()) {
            return;
        }
        let batch = std::mem::take(&mut batch);
        let result = commit(&db, &mut ahead, &batch, durable, closed).map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!(error = %e, jobs = batch.len(), "raft log: commit failed");
        } else {
            mark_flushed(&mut lock(&mem), &batch);
        }
        for job in batch {
            job.finish(&result);
        }
        if closed {
            return;
        }
    }
}

/// The write-ahead file and when redb last committed durably.
struct Ahead {
    wal: Wal,
    checkpointed: Instant,
}

impl Ahead {
    /// Records were written since the last durable redb commit.
    fn dirty(&self) -> bool {
        self.wal.written() > 0
    }

    fn checkpoint_due(&self) -> bool {
        self.wal.written() >= CHECKPOINT_BYTES
            || (self.dirty() && self.checkpointed.elapsed() >= CHECKPOINT_EVERY)
    }
}

/// Commits one batch. A durable batch is made durable by the write-ahead file (one write, one
/// fdatasync) with redb committing without fsync, unless it holds a durable record (a vote),
/// a checkpoint is due or the writer is closing: then redb commits durably, noting the last
/// write-ahead record it now covers, and the file is written from its start again.
fn commit(
    db: &Database,
    ahead: &mut Ahead,
    batch: &[Job],
    durable: bool,
    closing: bool,
) -> Result<(), StoreError> {
    let checkpoint = closing
        || batch.iter().any(|j| matches!(j, Job::Meta { durable: true, .. }))
        || (durable && ahead.checkpoint_due());
    let through_wal = durable && !checkpoint;
    if through_wal {
        let ops: Vec<WalOp<&[u8]>> = batch.iter().filter_map(Job::wal_op).collect();
        ahead.wal.write(&ops).map_err(StoreError::Wal)?;
    }
    let mut txn = db.begin_write()?;
    txn.set_durability(if checkpoint { Durability::Immediate } else { Durability::None })?;
    for job in batch {
        job.write(&txn)?;
    }
    if checkpoint {
        note_checkpoint(&txn, ahead.wal.last_seq(), ahead.wal.round() + 1)?;
    }
    txn.commit()?;
    if through_wal {
        ahead.wal.sync().map_err(StoreError::Wal)?;
    }
    if checkpoint {
        ahead.wal.restart(ahead.wal.round() + 1);
        ahead.checkpointed = Instant::now();
    }
    Ok(())
}

/// Notes in a durable commit the last write-ahead record it covers and the round the records
/// after it belong to.
fn note_checkpoint(txn: &WriteTransaction, last_seq: u64, next_round: u64) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META)?;
    meta.insert(KEY_WAL_SEQ, encode(KEY_WAL_SEQ, &last_seq)?.as_slice())?;
    meta.insert(KEY_WAL_ROUND, encode(KEY_WAL_ROUND, &next_round)?.as_slice())?;
    Ok(())
}

/// After a commit: the batch's entries still in the tail (same log id) are flushed, and a
/// truncation the batch carried no longer hides redb entries.
fn mark_flushed(mem: &mut Mem, batch: &[Job]) {
    let Some(first) = mem.first_tail_index() else {
        clear_hidden(mem, batch);
        return;
    };
    for job in batch {
        let Job::Append { entries, .. } = job else { continue };
        for (log_id, _) in entries {
            let Some(pos) = log_id.index().checked_sub(first).and_then(|p| usize::try_from(p).ok()) else {
                continue;
            };
            if let Some(c) = mem.tail.get_mut(pos) {
                if c.entry.log_id() == *log_id {
                    c.flushed = true;
                }
            }
        }
    }
    clear_hidden(mem, batch);
    mem.trim();
}

fn clear_hidden(mem: &mut Mem, batch: &[Job]) {
    let committed_seq = batch
        .iter()
        .filter_map(|j| if let Job::TruncateFrom { seq, .. } = j { Some(*seq) } else { None })
        .max();
    if let (Some((_, hidden_seq)), Some(done)) = (mem.hidden_from, committed_seq) {
        if hidden_seq <= done {
            mem.hidden_from = None;
        }
    }
}

impl LogStore {
    /// Wraps an opened database, creating the tables on first use, and starts its writer
    /// thread (which ends when the last clone is dropped).
    /// Records of the write-ahead file at `wal_path` that redb does not cover yet (the
    /// appends and truncations since its last durable commit) are applied to it first.
    pub(super) fn new(db: Database, wal_path: &std::path::Path) -> Result<Self, StoreError> {
        // The records redb does not cover yet, and the next round, in one durable commit.
        let txn = db.begin_write()?;
        let (wal_id, wal_seq, round) = {
            let mut meta = txn.open_table(META)?;
            let stored = meta.get(KEY_WAL_ID)?.map(|v| decode::<u64>(KEY_WAL_ID, v.value())).transpose()?;
            let id = match stored {
                Some(id) => id,
                None => {
                    let id: u64 = rand::random();
                    meta.insert(KEY_WAL_ID, encode(KEY_WAL_ID, &id)?.as_slice())?;
                    id
                }
            };
            let seq = meta.get(KEY_WAL_SEQ)?.map(|v| decode::<u64>(KEY_WAL_SEQ, v.value())).transpose()?;
            let round =
                meta.get(KEY_WAL_ROUND)?.map(|v| decode::<u64>(KEY_WAL_ROUND, v.value())).transpose()?;
            (id, seq.unwrap_or(0), round.unwrap_or(0))
        };
        let (mut wal, pending) = Wal::open(wal_path, wal_id, round, wal_seq).map_err(StoreError::Wal)?;
        {
            let mut logs = txn.open_table(LOGS)?;
            for (_, op) in &pending {
                match op {
                    WalOp::Append(entries) => {
                        for (index, bytes) in entries {
                            logs.insert(*index, bytes.as_slice())?;
                        }
                    }
                    WalOp::TruncateFrom(from) => {
                        logs.retain_in(*from.., |_, _| false)?;
                    }
                }
            }
        }
        note_checkpoint(&txn, wal.last_seq(), round + 1)?;
        txn.commit()?;
        wal.restart(round + 1);
        if !pending.is_empty() {
            tracing::info!(
                records = pending.len(),
                "raft log: replayed the write-ahead records redb did not cover"
            );
        }
        let ahead = Ahead { wal, checkpointed: Instant::now() };
        let db = Arc::new(db);
        let mem = Arc::new(Mutex::new(Mem::default()));
        let (tx, rx) = mpsc::channel();
        let (wdb, wmem) = (db.clone(), mem.clone());
        let writer = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(wdb, wmem, ahead, rx))
            .map_err(|e| StoreError::Task(format!("cannot start the raft log writer thread: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { db, mem, jobs: Some(tx), writer: Some(writer) }) })
    }

    fn mem(&self) -> MutexGuard<'_, Mem> {
        lock(&self.inner.mem)
    }

    fn db(&self) -> Arc<Database> {
        self.inner.db.clone()
    }

    fn queue(&self, job: Job) -> Result<(), StoreError> {
        let gone = || StoreError::Task("the raft log writer thread is gone".into());
        self.inner.jobs.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())
    }

    pub(super) async fn read_meta<T>(&self, key: &'static str) -> Result<Option<T>, StoreError>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let db = self.db();
        blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(META)?;
            let value = table.get(key)?;
            value.map(|v| decode(key, v.value())).transpose()
        })
        .await
    }

    /// Reads entries with index in `[start, end)` (`end == None`: to the last entry), at most
    /// `entries_max` of them and stopping after `bytes_max` encoded bytes. The tail's part
    /// comes from memory; only what lies before it is read from redb.
    async fn read_entries(
        &self,
        start: u64,
        end: Option<u64>,
        entries_max: usize,
        bytes_max: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        // Memory first, then redb: an entry flushed (and trimmed from the tail) in between is
        // then in redb's newer read transaction.
        let (from_tail, start, redb_end) = {
            let mem = self.mem();
            // Purged entries are gone even while their removal from redb is still queued.
            let start = match mem.last_purged {
                Some(p) => start.max(p.index().saturating_add(1)),
                None => start,
            };
            let mut redb_end = end;
            for bound in [mem.first_tail_index(), mem.hidden_from.map(|(i, _)| i)].into_iter().flatten() {
                redb_end = Some(redb_end.map_or(bound, |e| e.min(bound)));
            }
            (mem.tail_range(start, end), start, redb_end)
        };
        if end.is_some_and(|end| start >= end) {
            return Ok(Vec::new());
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut bytes_read = 0usize;
        let full = |n: usize, b: usize| n >= entries_max || b >= bytes_max;
        if redb_end.is_none_or(|e| start < e) {
            let db = self.db();
            let (read, bytes) =
                blocking(move || read_redb(&db, start, redb_end, entries_max, bytes_max)).await?;
            entries = read;
            bytes_read = bytes;
            if full(entries.len(), bytes_read) {
                return Ok(entries);
            }
        }
        for (entry, bytes) in from_tail {
            if let Some(prev) = entries.last() {
                if entry.index() != prev.index() + 1 {
                    let msg = format!("hole between index {} and {}", prev.index(), entry.index());
                    return Err(StoreError::Corrupt(msg));
                }
            }
            entries.push(entry);
            bytes_read += bytes;
            if full(entries.len(), bytes_read) {
                break;
            }
        }
        Ok(entries)
    }

    /// `(last purged, last present)` log ids.
    async fn log_ids(&self) -> Result<(Option<LogId>, Option<LogId>), StoreError> {
        let (mem_purged, tail_last, hidden) = {
            let mem = self.mem();
            (mem.last_purged, mem.tail.back().map(|c| c.entry.log_id()), mem.hidden_from.map(|(i, _)| i))
        };
        let db = self.db();
        let (purged, last) = blocking(move || {
            let txn = db.begin_read()?;
            let purged = match txn.open_table(META)?.get(KEY_LAST_PURGED)? {
                Some(v) => Some(decode::<LogId>(KEY_LAST_PURGED, v.value())?),
                None => None,
            };
            let logs = txn.open_table(LOGS)?;
            let last = match hidden {
                Some(h) => logs.range(..h)?.next_back().transpose()?,
                None => logs.last()?,
            };
            let last = match last {
                Some((_, v)) => Some(decode::<Entry>("log entry", v.value())?.log_id()),
                None => None,
            };
            Ok((purged, last))
        })
        .await?;
        let purged = purged.max(mem_purged);
        // An entry at or before the purge point is gone, even while its removal is queued.
        let last = tail_last.or(last).filter(|l| purged.is_none_or(|p| l.index() > p.index()));
        Ok((purged, last))
    }
}

/// Reads `[start, end)` from redb under the same bounds as [`LogStore::read_entries`];
/// the entries and their encoded size.
fn read_redb(
    db: &Database,
    start: u64,
    end: Option<u64>,
    entries_max: usize,
    bytes_max: usize,
) -> Result<(Vec<Entry>, usize), StoreError> {
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
    Ok((entries, bytes_read))
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

    /// Durable before returning (fsync, shared with whatever else the writer commits).
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = encode(KEY_VOTE, vote)?;
        let (done, wait) = oneshot::channel();
        self.queue(Job::Meta { key: KEY_VOTE, bytes, durable: true, done: Some(done) })?;
        match wait.await {
            Ok(result) => result.map_err(io::Error::other),
            Err(_) => Err(StoreError::Task("the raft log writer thread is gone".into()).into()),
        }
    }

    /// Not waited for, and not fsynced on its own: the next durable commit persists it. A
    /// committed log id lost in a crash only means re-applying less on restart, which is safe.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let bytes = encode(KEY_COMMITTED, &committed)?;
        self.mem().committed = Some(committed);
        Ok(self.queue(Job::Meta { key: KEY_COMMITTED, bytes, durable: false, done: None })?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        if let Some(committed) = self.mem().committed {
            return Ok(committed);
        }
        Ok(self.read_meta::<Option<LogId>>(KEY_COMMITTED).await?.flatten())
    }

    /// The entries are readable when this returns; `callback` fires once the writer committed
    /// them durably.
    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        let mut cached = Vec::new();
        for entry in entries {
            let bytes = encode("log entry", &entry)?;
            encoded.push((entry.log_id(), bytes.clone()));
            cached.push(Cached { bytes: bytes.len(), entry, flushed: false });
        }
        {
            let mut mem = self.mem();
            for c in cached {
                if let Some(last) = mem.tail.back() {
                    if c.entry.index() != last.entry.index() + 1 {
                        let msg = format!("append of index {} after {}", c.entry.index(), last.entry.index());
                        return Err(StoreError::Corrupt(msg).into());
                    }
                }
                mem.tail.push_back(c);
            }
            // Queued under the lock, so queue order matches the tail's order.
            self.queue(Job::Append { entries: encoded, callback })?;
        }
        Ok(())
    }

    /// Removes every entry after `last_log_id` (all of them for `None`): from memory at once,
    /// from redb with the next commit.
    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = match &last_log_id {
            Some(log_id) => log_id.index().saturating_add(1),
            None => 0,
        };
        tracing::debug!(raft.truncate_from = from, "truncating raft log");
        let mut mem = self.mem();
        while mem.tail.back().is_some_and(|c| c.entry.index() >= from) {
            mem.tail.pop_back();
        }
        let seq = mem.next_seq();
        let hidden = mem.hidden_from.map_or(from, |(h, _)| h.min(from));
        mem.hidden_from = Some((hidden, seq));
        Ok(self.queue(Job::TruncateFrom { from, seq })?)
    }

    /// Records `log_id` as purged and removes every entry up to it (one commit; the purged
    /// mark never moves backwards).
    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        tracing::debug!(raft.purge_upto = %log_id, "purging raft log");
        let bytes = encode(KEY_LAST_PURGED, &log_id)?;
        let mut mem = self.mem();
        if mem.last_purged.is_some_and(|p| p >= log_id) {
            return Ok(());
        }
        mem.last_purged = Some(log_id);
        while mem.tail.front().is_some_and(|c| c.entry.index() <= log_id.index()) {
            mem.tail.pop_front();
        }
        Ok(self.queue(Job::Purge { log_id, bytes })?)
    }
}
