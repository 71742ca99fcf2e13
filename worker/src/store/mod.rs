//! Content-addressed blob storage: the [`BlobStore`] trait, the cheap-clone
//! [`Store`] handle that callers hold, and the store implementations and
//! decorators (one file each).
//!
//! Key decision: three required methods (`find_missing`, `read`, `write`);
//! everything else is a documented default built on them, so a new backend or
//! decorator implements little and forwards explicitly. Capabilities such as a
//! hard-linkable local path are methods that default to `None`, never
//! downcasts through layers.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use weir_proto::Digest;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The blob is not in the store.
    #[error("blob {0} not found")]
    NotFound(Digest),
    /// Data offered for `digest` does not hash to it (a bad upload).
    #[error("content does not match digest {expected}: got {actual}")]
    DigestMismatch {
        /// The digest the caller claimed.
        expected: Digest,
        /// The digest of the data received.
        actual: Digest,
    },
    /// A stored blob no longer matches its digest (corruption; the blob is dropped).
    #[error("stored blob {0} is corrupt and was removed")]
    Corrupt(Digest),
    /// A read range lies outside the blob.
    #[error("read offset {offset} is beyond the end of blob {digest}")]
    OutOfRange {
        /// The blob.
        digest: Digest,
        /// The offset asked for.
        offset: u64,
    },
    /// The store is full and cannot evict enough to hold the blob.
    #[error("store is full: cannot hold {0}")]
    Full(Digest),
    /// An I/O error in a backend.
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A failure of an upstream store (another REAPI CAS).
    #[error("upstream store: {0}")]
    Upstream(String),
}

/// A content-addressed blob store.
///
/// Implementations must never return a blob whose content does not match its
/// digest, and must never make a partially written blob visible.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Returns the digests among `digests` that the store does not hold.
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError>;

    /// Reads up to `limit` bytes (all when `None`) from `offset` of the blob.
    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError>;

    /// Stores `data` as the blob `digest`; fails with
    /// [`StoreError::DigestMismatch`] when the data does not match.
    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError>;

    /// Whether the store holds the blob.
    async fn has(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.find_missing(std::slice::from_ref(digest)).await?.is_empty())
    }

    /// Reads the whole blob.
    async fn read_all(&self, digest: &Digest) -> Result<Bytes, StoreError> {
        self.read(digest, 0, None).await
    }

    /// A path to an immutable local file holding the blob, if the store keeps
    /// blobs as files that may be hard-linked (used to stage input roots).
    fn local_path(&self, _digest: &Digest) -> Option<PathBuf> {
        None
    }
}

/// A cheap-clone handle on a shared blob store.
pub type Store = Arc<dyn BlobStore>;
