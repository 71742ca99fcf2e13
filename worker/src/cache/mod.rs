//! The Action Cache and the Remote Asset index, both kept in one embedded
//! transactional database (redb) under the worker's root.
//!
//! Key decision: every update is a redb write transaction committed before
//! the call is answered, so an acknowledged action result or asset survives
//! `kill -9` and a restart; a crash mid-commit leaves the previous state.
//! Whether a commit is also synced to disk (survives a power loss) is the
//! worker's `sync` setting ([`database_file::DatabaseFile`]). Action results
//! written concurrently share one commit ([`group_commit::GroupCommit`]), so
//! a busy cache pays one commit (and `fsync`, when syncing) per batch.
//! Blob contents live in the CAS ([`crate::store`]); this module keeps only
//! the small records that point at them, and checks on every lookup that what
//! they point at is still in the CAS.
//!
//! | module | type |
//! |---|---|
//! | [`action_cache`] | [`ActionCache`]: `get`/`put` of `ActionResult`s by action digest |
//! | [`asset_index`] | [`AssetIndex`]: URI + qualifiers → blob or directory digest |
//! | [`database_file`] | [`DatabaseFile`]: the file backend, syncing only when configured |
//! | [`group_commit`] | [`group_commit::GroupCommit`]: concurrent writes, one durable commit |

pub mod action_cache;
pub mod asset_index;
pub mod database_file;
pub mod group_commit;

use std::path::Path;
use std::sync::Arc;

pub use action_cache::ActionCache;
pub use asset_index::{AssetIndex, AssetKind, AssetRecord};
pub use database_file::DatabaseFile;

use crate::store::StoreError;

/// Why an Action Cache or Remote Asset operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The embedded database failed (open, transaction, commit, I/O).
    #[error("cache database: {0}")]
    Database(String),
    /// A stored record could not be decoded (the entry is ignored).
    #[error("cache record for {key} is unreadable: {reason}")]
    Decode {
        /// The record's key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// The request carried invalid data (a bad digest in a result, duplicate
    /// qualifiers, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The CAS failed while checking that outputs are present.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CacheError {
    /// The gRPC code a client should see for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            CacheError::Database(_) | CacheError::Decode { .. } => tonic::Code::Internal,
            CacheError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            CacheError::Store(err) => err.code(),
        }
    }

    fn database(err: impl std::fmt::Display) -> Self {
        CacheError::Database(err.to_string())
    }
}

/// Opens (creating if needed) the cache database at `path`. With `sync`,
/// every commit is synced to disk before it is acknowledged (survives a
/// power loss); without, commits reach the kernel but not necessarily the
/// disk (they survive a killed process, see [`DatabaseFile`]). Without
/// `sync`, a database that a power loss left unreadable is moved aside
/// (`cache.redb.corrupt-SECONDS`) and a fresh one started: it is a cache.
pub fn open_database(path: &Path, sync: bool) -> Result<Arc<redb::Database>, CacheError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(CacheError::database)?;
    }
    let create = || -> Result<redb::Database, redb::DatabaseError> {
        let file = DatabaseFile::open(path, sync)?;
        redb::Builder::new().create_with_backend(file)
    };
    match create() {
        Ok(db) => Ok(Arc::new(db)),
        Err(reason) if !sync && unreadable(&reason) => {
            let seconds = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let aside = path.with_extension(format!("redb.corrupt-{seconds}"));
            tracing::error!(path = %path.display(), aside = %aside.display(), %reason, "cache database is corrupt; starting a fresh one");
            std::fs::rename(path, &aside).map_err(CacheError::database)?;
            create().map(Arc::new).map_err(CacheError::database)
        }
        Err(err) => Err(CacheError::database(err)),
    }
}

/// Whether `err` says the file's content is damaged (not that it could not
/// be opened, is locked by another process, or needs an upgrade).
fn unreadable(err: &redb::DatabaseError) -> bool {
    match err {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// Runs a blocking database job off the async threads.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(job).await.map_err(CacheError::database)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_unsynced_database_is_moved_aside_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        drop(open_database(&path, false).unwrap());
        // What a power loss without fsync could leave: a damaged header.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..512].iter_mut().for_each(|b| *b ^= 0x5a);
        std::fs::write(&path, &bytes).unwrap();
        let result = open_database(&path, false);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| name.starts_with("cache.redb.corrupt-"))
            .collect();
        assert!(result.is_ok(), "a damaged cache database stopped the worker: {:?}", result.err());
        assert_eq!(aside.len(), 1, "the damaged file was not kept aside: {aside:?}");
    }
}
