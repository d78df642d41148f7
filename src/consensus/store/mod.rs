//! Durable raft storage in redb: [`LogStore`] (log, vote, committed, purged) in
//! `<data_dir>/raft/log.redb` and [`StateMachineStore`] (in-memory [`Machine`] plus persisted
//! snapshots) in `<data_dir>/raft/sm.redb`. [`open`] builds both.
//!
//! Two files, so a large snapshot write never holds redb's single writer lock against log
//! appends. Every redb transaction runs on tokio's blocking pool, never on an async worker.
//! Values are msgpack (`rmp_serde::to_vec_named`). Must not import `registry`, `gossip`, `api`
//! or `node`.

mod error;
mod log;
mod state_machine;
#[cfg(test)]
mod tests;
mod wal;

use std::path::Path;

use redb::Database;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use self::error::StoreError;
pub use self::log::LogStore;
pub use self::state_machine::{MachineReader, SnapshotBuilder, StateMachineStore};
use super::types::Machine;

/// Subdirectory of the data dir that holds the raft files.
pub const RAFT_DIR: &str = "raft";
/// redb page cache per database file.
const CACHE_BYTES: usize = 4 * 1024 * 1024;
/// The log store's file inside [`RAFT_DIR`].
pub const LOG_FILE: &str = "log.redb";
/// The log's write-ahead file inside [`RAFT_DIR`] (see `wal.rs`).
pub const WAL_FILE: &str = "log.wal";
/// The state machine's snapshot file inside [`RAFT_DIR`].
pub const SM_FILE: &str = "sm.redb";

/// Opens (creating on first use) the raft storage under `<data_dir>/raft/` and restores
/// `machine` from the latest persisted snapshot. Hand both halves to `openraft::Raft::new`,
/// which re-applies the committed log after the snapshot.
///
/// Fails if another process (or another `open` in this one) holds the files.
pub async fn open<M: Machine>(
    data_dir: &Path,
    machine: M,
) -> Result<(LogStore, StateMachineStore<M>), StoreError> {
    let dir = data_dir.join(RAFT_DIR);
    blocking(move || {
        std::fs::create_dir_all(&dir)
            .map_err(|source| StoreError::CreateDir { path: dir.clone(), source })?;
        let log = LogStore::new(create_db(&dir.join(LOG_FILE))?, &dir.join(WAL_FILE))?;
        let sm = StateMachineStore::open_blocking(create_db(&dir.join(SM_FILE))?, machine)?;
        Ok((log, sm))
    })
    .await
}

fn create_db(path: &Path) -> Result<Database, StoreError> {
    // A bounded cache: the log is written once and read back mostly while followers catch up;
    // redb's default (1 GiB) would let the cache grow far past what a node needs.
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })
}

/// Runs blocking storage work on tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(StoreError::Task(e.to_string())),
    }
}

fn encode<T: Serialize + ?Sized>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(|source| StoreError::Encode { what, source })
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|source| StoreError::Decode { what, source })
}
