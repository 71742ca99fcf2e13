//! The Action Cache and the Remote Asset index, both kept in one embedded
//! transactional database (redb) under the worker's root.
//!
//! Key decision: every update is a redb write transaction committed with
//! immediate durability, so an acknowledged action result or asset survives
//! `kill -9` and a restart; a crash mid-commit leaves the previous state.
//! Action results written concurrently share one such commit
//! ([`group_commit::GroupCommit`]), so a busy cache pays one `fsync` per
//! batch rather than per update.
//! Blob contents live in the CAS ([`crate::store`]); this module keeps only
//! the small records that point at them, and checks on every lookup that what
//! they point at is still in the CAS.
//!
//! | module | type |
//! |---|---|
//! | [`action_cache`] | [`ActionCache`]: `get`/`put` of `ActionResult`s by action digest |
//! | [`asset_index`] | [`AssetIndex`]: URI + qualifiers → blob or directory digest |
//! | [`group_commit`] | [`group_commit::GroupCommit`]: concurrent writes, one durable commit |

pub mod action_cache;
pub mod asset_index;
pub mod group_commit;

use std::path::Path;
use std::sync::Arc;

pub use action_cache::ActionCache;
pub use asset_index::{AssetIndex, AssetKind, AssetRecord};

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

/// Opens (creating if needed) the cache database at `path`.
pub fn open_database(path: &Path) -> Result<Arc<redb::Database>, CacheError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(CacheError::database)?;
    }
    redb::Database::create(path).map(Arc::new).map_err(CacheError::database)
}

/// Runs a blocking database job off the async threads.
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T, CacheError> + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(job).await.map_err(CacheError::database)?
}
