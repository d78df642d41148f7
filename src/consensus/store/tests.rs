//! Unit tests of the redb raft storage: what survives a reopen, purge/truncate edge cases,
//! corrupt-log detection, and snapshot persistence ordering. The conformance suite lives in
//! `tests/raft_storage.rs`.

use std::collections::BTreeSet;
use std::io;
use std::io::Cursor;
use std::path::Path;

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogStorage, RaftStateMachine};
use openraft::testing::{blank_ent, log_id, membership_ent};
use openraft::type_config::TypeConfigExt;
use openraft::{RaftLogReader, RaftSnapshotBuilder, StorageHelper};

use super::{open, LogStore, StateMachineStore, StoreError};
use crate::consensus::types::{Entry, LogId, Machine, Proposal, SnapshotMeta, TypeConfig, Vote};

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

fn lid(term: u64, index: u64) -> LogId {
    log_id::<TypeConfig>(term, 0, index)
}

fn normal(term: u64, index: u64) -> Entry {
    Entry::new_normal(lid(term, index), Proposal(format!("p{index}").into_bytes()))
}

fn blanks(term: u64, indexes: std::ops::RangeInclusive<u64>) -> Vec<Entry> {
    indexes.map(|i| blank_ent::<TypeConfig>(term, 0, i)).collect()
}

/// Appends and waits for the flush callback, asserting it reports success.
async fn append(log: &mut LogStore, entries: Vec<Entry>) {
    let (tx, rx) = TypeConfig::oneshot();
    log.append(entries, IOFlushed::signal(tx)).await.unwrap();
    rx.await.unwrap().unwrap();
}

async fn apply(sm: &mut StateMachineStore<Recorder>, entries: Vec<Entry>) {
    let stream = futures_util::stream::iter(entries.into_iter().map(|e| Ok((e, None))));
    sm.apply(stream).await.unwrap();
}

async fn reopen(dir: &Path) -> (LogStore, StateMachineStore<Recorder>) {
    open(dir, Recorder::default()).await.unwrap()
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.index()).collect()
}

#[tokio::test]
async fn reopen_keeps_vote_committed_log_purge_and_snapshot() {
    // Proves every durable piece of raft state survives closing and reopening the files.
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = reopen(dir.path()).await;
        log.save_vote(&Vote::new_committed(7, 3)).await.unwrap();
        append(&mut log, (1..=6).map(|i| normal(2, i)).collect()).await;
        log.save_committed(Some(lid(2, 5))).await.unwrap();
        log.purge(lid(2, 1)).await.unwrap();
        apply(&mut sm, (1..=4).map(|i| normal(2, i)).collect()).await;
        let mut builder = sm.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap();
        apply(&mut sm, vec![normal(2, 5)]).await; // applied past the snapshot, not persisted
    }
    let (mut log, mut sm) = reopen(dir.path()).await;
    assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new_committed(7, 3)));
    assert_eq!(log.read_committed().await.unwrap(), Some(lid(2, 5)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(lid(2, 1)));
    assert_eq!(state.last_log_id, Some(lid(2, 6)));
    let entries = log.try_get_log_entries(..).await.unwrap();
    assert_eq!(indexes(&entries), vec![2, 3, 4, 5, 6]);
    assert_eq!(entries[0], normal(2, 2));

    let snap = sm.get_current_snapshot().await.unwrap().expect("snapshot persisted");
    assert_eq!(snap.meta.last_log_id, Some(lid(2, 4)));
    assert_eq!(sm.applied_state().await.unwrap().0, Some(lid(2, 4)), "restored from snapshot");
    let restored: Vec<u64> = sm.reader().read(|m| m.applied.iter().map(|(i, _)| *i).collect());
    assert_eq!(restored, vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn restart_replays_committed_log_after_snapshot() {
    // Proves a restarted node rebuilds its machine: snapshot first, then the committed tail.
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, mut sm) = reopen(dir.path()).await;
        // Index 0 is where openraft starts a log (the initial membership); a blank stands in.
        let mut entries = blanks(1, 0..=0);
        entries.extend((1..=5).map(|i| normal(1, i)));
        append(&mut log, entries.clone()).await;
        log.save_committed(Some(lid(1, 4))).await.unwrap();
        apply(&mut sm, entries[..3].to_vec()).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        log.save_vote(&Vote::new(1, 0)).await.unwrap(); // a durable commit after `committed`
    }
    let (mut log, mut sm) = reopen(dir.path()).await;
    StorageHelper::new(&mut log, &mut sm).with_id(0).get_initial_state().await.unwrap();
    assert_eq!(sm.applied_state().await.unwrap().0, Some(lid(1, 4)));
    let applied: Vec<(u64, Vec<u8>)> = sm.reader().read(|m| m.applied.clone());
    let want: Vec<(u64, Vec<u8>)> = (1..=4).map(|i| (i, format!("p{i}").into_bytes())).collect();
    assert_eq!(applied, want, "entries 1-2 from the snapshot, 3-4 re-applied, 5 not committed");
}

#[tokio::test]
async fn purge_past_the_last_entry_then_append_continues() {
    // Proves purging beyond the log empties it, reports the purge point as the last log id,
    // and lets the log continue right after it.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = reopen(dir.path()).await;
    append(&mut log, blanks(1, 1..=3)).await;
    log.purge(lid(1, 10)).await.unwrap();
    let state = log.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(lid(1, 10)), Some(lid(1, 10))));
    assert!(log.try_get_log_entries(..).await.unwrap().is_empty());

    append(&mut log, blanks(2, 11..=12)).await;
    assert_eq!(indexes(&log.try_get_log_entries(..).await.unwrap()), vec![11, 12]);
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(lid(2, 12)));
}

#[tokio::test]
async fn purge_never_moves_backwards() {
    // Proves a stale, smaller purge neither lowers the purge mark nor deletes anything.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = reopen(dir.path()).await;
    append(&mut log, blanks(1, 1..=8)).await;
    log.purge(lid(1, 5)).await.unwrap();
    log.purge(lid(1, 3)).await.unwrap();
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(lid(1, 5)));
    assert_eq!(indexes(&log.try_get_log_entries(..).await.unwrap()), vec![6, 7, 8]);
}

#[tokio::test]
async fn truncate_then_overwrite_with_a_new_term() {
    // Proves truncation removes exactly the suffix and a new leader's entries replace it.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = reopen(dir.path()).await;
    log.truncate_after(None).await.unwrap(); // empty log: a no-op
    append(&mut log, blanks(1, 1..=6)).await;
    log.truncate_after(Some(lid(1, 3))).await.unwrap();
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(lid(1, 3)));
    append(&mut log, blanks(2, 4..=5)).await;
    let entries = log.try_get_log_entries(..).await.unwrap();
    let ids: Vec<LogId> = entries.iter().map(|e| e.log_id()).collect();
    assert_eq!(ids, vec![lid(1, 1), lid(1, 2), lid(1, 3), lid(2, 4), lid(2, 5)]);

    log.truncate_after(Some(lid(2, 99))).await.unwrap(); // past the end: nothing to remove
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(lid(2, 5)));
}

#[tokio::test]
async fn odd_ranges_read_what_they_cover() {
    // Proves reversed, empty and u64-edge ranges return the right entries instead of panicking.
    use std::ops::Bound;
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = reopen(dir.path()).await;
    append(&mut log, blanks(1, 0..=4)).await;
    assert!(log.try_get_log_entries((Bound::Included(3), Bound::Excluded(1))).await.unwrap().is_empty());
    assert!(log.try_get_log_entries(2..2).await.unwrap().is_empty());
    let after_max = (Bound::Excluded(u64::MAX), Bound::Unbounded);
    assert!(log.try_get_log_entries(after_max).await.unwrap().is_empty());
    assert_eq!(indexes(&log.try_get_log_entries(3..=u64::MAX).await.unwrap()), vec![3, 4]);
    assert_eq!(
        indexes(&log.try_get_log_entries((Bound::Excluded(1), Bound::Included(2))).await.unwrap()),
        vec![2]
    );
    let limited = log.limited_get_log_entries(1, 100).await.unwrap();
    assert_eq!(indexes(&limited), vec![1, 2, 3, 4]);
}

#[tokio::test]
async fn an_append_that_would_leave_a_hole_is_refused() {
    // Proves the log never gets a hole (openraft forbids them): the append fails loudly and
    // stores nothing, and the entries before it stay readable.
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _sm) = reopen(dir.path()).await;
    append(&mut log, blanks(1, 1..=2)).await;
    let (tx, _rx) = TypeConfig::oneshot();
    let err = log.append(blanks(1, 5..=5), IOFlushed::signal(tx)).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("append of index 5 after 2"), "{err}");
    assert_eq!(indexes(&log.try_get_log_entries(..).await.unwrap()), vec![1, 2]);
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(lid(1, 2)));
}

#[tokio::test]
async fn a_stale_builder_does_not_replace_a_newer_installed_snapshot() {
    // Proves the persisted snapshot only moves forward, whichever of build/install lands last.
    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = reopen(dir.path()).await;
    apply(&mut sm, vec![normal(1, 1)]).await;
    let mut stale = sm.get_snapshot_builder().await; // view at index 1

    let installed: Vec<(u64, Vec<u8>)> = vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"c".to_vec())];
    let voters: BTreeSet<u64> = [1, 2].into_iter().collect();
    let membership = membership_ent::<TypeConfig>(1, 0, 2, vec![voters]);
    let meta = SnapshotMeta {
        last_log_id: Some(lid(1, 3)),
        last_membership: openraft::StoredMembership::new(
            Some(lid(1, 2)),
            membership.get_membership().unwrap(),
        ),
    };
    let bytes = serde_json::to_vec(&installed).unwrap();
    sm.install_snapshot(&meta, Cursor::new(bytes)).await.unwrap();
    assert_eq!(sm.applied_state().await.unwrap(), (meta.last_log_id, meta.last_membership.clone()));
    assert_eq!(sm.reader().read(|m| m.applied.clone()), installed);

    let built = stale.build_snapshot().await.unwrap();
    assert_eq!(built.meta.last_log_id, Some(lid(1, 1)), "the builder still returns its own view");
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, meta, "but the newer installed snapshot stays current");
}

#[tokio::test]
async fn a_snapshot_the_machine_rejects_fails_open_with_context() {
    // Proves undecodable snapshot bytes surface as a Restore error naming the snapshot position.
    let dir = tempfile::tempdir().unwrap();
    {
        let (_log, mut sm) = reopen(dir.path()).await;
        apply(&mut sm, vec![normal(1, 1)]).await;
        sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    }
    struct Picky;
    impl Machine for Picky {
        fn apply(&mut self, _: u64, _: &[u8]) -> Vec<u8> {
            Vec::new()
        }
        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }
        fn restore(&mut self, _: &[u8]) -> Result<(), String> {
            Err("unknown snapshot version".to_string())
        }
    }
    let err = open(dir.path(), Picky).await.unwrap_err();
    assert!(matches!(err, StoreError::Restore { .. }), "{err}");
    assert!(err.to_string().contains("unknown snapshot version"), "{err}");
}

#[tokio::test]
async fn a_second_open_of_the_same_dir_is_refused() {
    // Proves two raft instances can never share one data dir.
    let dir = tempfile::tempdir().unwrap();
    let _first = reopen(dir.path()).await;
    let err = open(dir.path(), Recorder::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
}

#[tokio::test]
async fn appended_entries_are_readable_before_their_flush_and_durable_after_it() {
    // Proves the pipelined writer: entries read back at once (from memory) while their commits
    // are still queued, every append is reported flushed, reads keep working once the tail
    // has dropped the older flushed entries (they come from redb), and all of it survives a
    // reopen.
    let dir = tempfile::tempdir().unwrap();
    let total: u64 = 3000;
    {
        let (mut log, _sm) = reopen(dir.path()).await;
        let mut flushed = Vec::new();
        for chunk in (1..=total).collect::<Vec<_>>().chunks(7) {
            let (tx, rx) = TypeConfig::oneshot();
            let entries: Vec<Entry> = chunk.iter().map(|&i| normal(3, i)).collect();
            log.append(entries, IOFlushed::signal(tx)).await.unwrap();
            flushed.push(rx);
            let last = *chunk.last().unwrap();
            let read = log.try_get_log_entries(last..=last).await.unwrap();
            assert_eq!(read, vec![normal(3, last)], "entry {last} readable right after its append");
        }
        for rx in flushed {
            rx.await.unwrap().unwrap();
        }
        let all = log.try_get_log_entries(1..=total).await.unwrap();
        assert_eq!(all.len() as u64, total, "every entry, from redb and memory");
        assert!(all.iter().zip(1..).all(|(e, i)| *e == normal(3, i)), "in order, unchanged");
        let limited = log.limited_get_log_entries(1, total + 1).await.unwrap();
        assert_eq!(indexes(&limited), (1..=total).collect::<Vec<_>>());
    }
    let (mut log, _sm) = reopen(dir.path()).await;
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(lid(3, total)));
    assert_eq!(log.try_get_log_entries(..).await.unwrap().len() as u64, total);
}

#[tokio::test]
async fn a_truncation_hides_flushed_entries_at_once_and_on_disk_after_reopen() {
    // Proves a truncation takes effect for readers before its commit reaches redb, that the
    // new term's entries replace the old ones, and that the result is what a reopen reads.
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = reopen(dir.path()).await;
        append(&mut log, blanks(1, 1..=10)).await; // flushed: in redb and the tail
        log.truncate_after(Some(lid(1, 4))).await.unwrap();
        assert_eq!(indexes(&log.try_get_log_entries(..).await.unwrap()), vec![1, 2, 3, 4]);
        assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(lid(1, 4)));
        let (tx, rx) = TypeConfig::oneshot();
        log.append(blanks(2, 5..=6), IOFlushed::signal(tx)).await.unwrap();
        let ids: Vec<LogId> =
            log.try_get_log_entries(3..).await.unwrap().iter().map(|e| e.log_id()).collect();
        assert_eq!(ids, vec![lid(1, 3), lid(1, 4), lid(2, 5), lid(2, 6)]);
        rx.await.unwrap().unwrap();
    }
    let (mut log, _sm) = reopen(dir.path()).await;
    let ids: Vec<LogId> = log.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id()).collect();
    assert_eq!(ids, vec![lid(1, 1), lid(1, 2), lid(1, 3), lid(1, 4), lid(2, 5), lid(2, 6)]);
    assert_eq!(log.get_log_state().await.unwrap().last_log_id, Some(lid(2, 6)));
}

#[tokio::test]
async fn the_committed_log_id_rides_with_the_next_fsync_or_is_written_on_its_own_soon() {
    // Proves the writer's deferral: a committed log id (no fsync needed) is readable at once,
    // reaches redb with the next durable append, and without one is committed on its own
    // within the deferral bound; a reopen reads the last one saved.
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut log, _sm) = reopen(dir.path()).await;
        append(&mut log, blanks(1, 1..=3)).await;
        log.save_committed(Some(lid(1, 2))).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), Some(lid(1, 2)), "readable at once");
        append(&mut log, blanks(1, 4..=4)).await;
        let on_disk: Option<Option<LogId>> = log.read_meta(super::log::KEY_COMMITTED).await.unwrap();
        assert_eq!(on_disk, Some(Some(lid(1, 2))), "written with the next durable append");

        log.save_committed(Some(lid(1, 4))).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let on_disk: Option<Option<LogId>> = log.read_meta(super::log::KEY_COMMITTED).await.unwrap();
            if on_disk == Some(Some(lid(1, 4))) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "committed on its own within 5 s: {on_disk:?}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        log.save_committed(Some(lid(1, 3))).await.unwrap();
    }
    let (mut log, _sm) = reopen(dir.path()).await;
    assert_eq!(log.read_committed().await.unwrap(), Some(lid(1, 3)), "the last one saved, written at close");
}

/// Copies the raft files of `from` as they are on disk now (the store still open) to `to`:
/// what a crash at this moment would leave.
fn copy_as_crashed(from: &Path, to: &Path) {
    let (from, to) = (from.join(super::RAFT_DIR), to.join(super::RAFT_DIR));
    std::fs::create_dir_all(&to).unwrap();
    for file in [super::LOG_FILE, super::WAL_FILE, super::SM_FILE] {
        std::fs::copy(from.join(file), to.join(file)).unwrap();
    }
}

#[tokio::test]
async fn flushed_appends_and_truncations_survive_a_crash_between_checkpoints() {
    // Proves the write-ahead file: an append is reported flushed once its record is synced,
    // before redb commits durably, and the files a crash leaves behind (redb without those
    // commits, the write-ahead file with them) reopen to exactly the flushed log, the
    // truncation included. Without the file's records the copy has lost them.
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    let lost = tempfile::tempdir().unwrap();
    let (mut log, _sm) = reopen(dir.path()).await;
    log.save_vote(&Vote::new(1, 0)).await.unwrap(); // a durable redb commit: a checkpoint
    append(&mut log, blanks(1, 1..=10)).await;
    log.truncate_after(Some(lid(1, 6))).await.unwrap();
    append(&mut log, blanks(2, 7..=8)).await;
    copy_as_crashed(dir.path(), crashed.path());
    copy_as_crashed(dir.path(), lost.path());
    std::fs::write(lost.path().join(super::RAFT_DIR).join(super::WAL_FILE), b"").unwrap();
    drop(log);

    let want: Vec<LogId> = (1..=6).map(|i| lid(1, i)).chain([lid(2, 7), lid(2, 8)]).collect();
    for _ in 0..2 {
        // The second time the replay has been committed durably: the same log.
        let (mut log, _sm) = reopen(crashed.path()).await;
        let ids: Vec<LogId> = log.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id()).collect();
        assert_eq!(ids, want);
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(1, 0)));
    }
    let (mut log, _sm) = reopen(lost.path()).await;
    let ids: Vec<LogId> = log.try_get_log_entries(..).await.unwrap().iter().map(|e| e.log_id()).collect();
    assert_ne!(ids, want, "redb alone already had the flushed log: the test proves nothing");
}
