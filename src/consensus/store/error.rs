//! [`StoreError`]: everything that can go wrong in the raft storage, and its mapping to the
//! `io::Error` openraft's storage traits speak.
//!
//! Must not import openraft's engine types or anything outside `consensus::store`.

use std::io;
use std::path::PathBuf;

/// A failure of the durable raft storage (the redb files under `<data_dir>/raft/`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage directory could not be created.
    #[error("cannot create raft storage directory {path}: {source}")]
    CreateDir {
        /// The directory that was being created.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },

    /// A redb database file could not be opened or created (e.g. another process holds it).
    #[error("cannot open raft database {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The underlying redb error.
        source: redb::DatabaseError,
    },

    /// A redb transaction, table access or commit failed.
    #[error("raft database operation failed: {0}")]
    Redb(#[from] redb::Error),

    /// A value could not be serialized for storage.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// What was being encoded (`"log entry"`, `"vote"`, ...).
        what: &'static str,
        /// The underlying msgpack error.
        source: rmp_serde::encode::Error,
    },

    /// A stored value could not be deserialized: the file is corrupt or from an incompatible
    /// version.
    #[error("cannot decode stored {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The underlying msgpack error.
        source: rmp_serde::decode::Error,
    },

    /// The stored log violates an invariant (a hole, or an entry under the wrong key).
    #[error("raft log is corrupt: {0}")]
    Corrupt(String),

    /// The state machine rejected snapshot bytes.
    #[error("state machine cannot restore snapshot at {at}: {reason}")]
    Restore {
        /// The snapshot's last log id, for context.
        at: String,
        /// What the machine reported.
        reason: String,
    },

    /// A blocking storage task panicked or was cancelled.
    #[error("raft storage task failed: {0}")]
    Task(String),
    /// The raft log's write-ahead file (`raft/log.wal`) could not be read or written.
    #[error("raft log write-ahead file: {0}")]
    Wal(std::io::Error),
}

macro_rules! from_redb {
    ($($t:ty),* $(,)?) => {
        $(impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(redb::Error::from(e))
            }
        })*
    };
}

from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
);

impl From<StoreError> for io::Error {
    fn from(e: StoreError) -> Self {
        let kind = match &e {
            StoreError::Decode { .. } | StoreError::Corrupt(_) | StoreError::Restore { .. } => {
                io::ErrorKind::InvalidData
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}
