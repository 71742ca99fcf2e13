//! Content-addressed blob storage: the [`BlobStore`] trait, the cheap-clone
//! [`Store`] handle that callers hold, and the store implementations and
//! decorators (one file each).
//!
//! Key decision: three required methods (`find_missing`, `read`, `write`);
//! everything else is a documented default built on them, so a new backend or
//! decorator implements little and forwards explicitly. Capabilities such as a
//! hard-linkable local path are methods that default to `None`, never
//! downcasts through layers.
//!
//! | module | type | why |
//! |---|---|---|
//! | [`memory`] | [`MemoryStore`] | blobs in a hash map: tests, small fast tiers |
//! | [`filesystem`] | [`FilesystemStore`] | sharded files, temp-then-rename, verified |
//! | [`filesystem_writer`] | [`filesystem_writer::FilesystemWriter`] | a streamed upload into a filesystem store |
//! | [`direct_io`] | functions | `O_DIRECT` on and off, aligned buffers and reads |
//! | [`upload_file`] | [`upload_file::UploadFile`] | an upload's temporary file; `O_DIRECT` for large blobs |
//! | [`blob_index`] | [`blob_index::BlobIndex`] | the filesystem store's in-memory set of held digests |
//! | [`size_limited`] | [`SizeLimitedStore`] | least-recently-used eviction under a byte budget |
//! | [`fast_slow`] | [`FastSlowStore`] | read-through: misses in the fast tier are filled from the slow one |
//! | [`upstream`] | [`UpstreamStore`] | another REAPI CAS over gRPC |
//! | [`verify`] | [`VerifyStore`] | re-hashes what an inner store returns, evicting corrupt blobs |
//! | [`metrics`] | [`MetricsStore`] | counters per layer; the factory wraps every node in one |
//! | [`spec`] | [`StoreSpec`], [`build`] | the typed configuration and the one recursive factory |
//!
//! To add a store: implement [`BlobStore`] in `store/<purpose>.rs` with a
//! `<Purpose>Spec`, add a [`StoreSpec`] variant and one arm in [`build`].

pub mod blob_index;
pub mod blob_writer;
pub mod direct_io;
pub mod byte_size;
pub mod fast_slow;
pub mod filesystem;
pub mod filesystem_writer;
pub mod memory;
pub mod metrics;
pub mod size_limited;
pub mod spec;
pub mod upload_file;
pub mod upstream;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use weir_proto::Digest;

pub use blob_writer::{writer_for, BlobWriter, BufferedWriter};
pub use byte_size::ByteSize;
pub use fast_slow::{FastSlowSpec, FastSlowStore};
pub use filesystem::{FilesystemSpec, FilesystemStore, LargeBlobIo};
pub use memory::{MemorySpec, MemoryStore};
pub use metrics::{MetricsStore, StoreMetrics};
pub use size_limited::{SizeLimitedSpec, SizeLimitedStore};
pub use spec::{build, BuildContext, StoreSpec};
pub use upstream::{UpstreamSpec, UpstreamStore};
pub use verify::{VerifySpec, VerifyStore};

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
    /// The store does not support the operation (e.g. removal on an upstream CAS).
    #[error("operation not supported by the {0} store")]
    Unsupported(&'static str),
    /// The storage configuration is invalid (unknown shared store, cycle, bad path).
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// The gRPC code a client should see for this error.
    ///
    /// A bad upload is the caller's fault (`INVALID_ARGUMENT`); a corrupt
    /// stored blob is the server's (`INTERNAL`, and the blob is gone, so a
    /// retry re-uploads it).
    pub fn code(&self) -> tonic::Code {
        match self {
            StoreError::NotFound(_) => tonic::Code::NotFound,
            StoreError::DigestMismatch { .. } => tonic::Code::InvalidArgument,
            StoreError::Corrupt(_) => tonic::Code::Internal,
            StoreError::OutOfRange { .. } => tonic::Code::OutOfRange,
            StoreError::Full(_) => tonic::Code::ResourceExhausted,
            StoreError::Io(_) => tonic::Code::Internal,
            StoreError::Upstream(_) => tonic::Code::Unavailable,
            StoreError::Unsupported(_) => tonic::Code::Unimplemented,
            StoreError::Config(_) => tonic::Code::FailedPrecondition,
        }
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Upstream(_) | StoreError::Io(_) | StoreError::Full(_))
    }
}

/// A content-addressed blob store.
///
/// Implementations must never return a blob whose content does not match its
/// digest, and must never make a partially written blob visible.
///
/// Only `find_missing`, `read` and `write` are required; the others are
/// defaults an implementation may override.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Returns the digests among `digests` that the store does not hold.
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError>;

    /// Reads up to `limit` bytes (all when `None`) from `offset` of the blob.
    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError>;

    /// Stores `data` as the blob `digest`; fails with
    /// [`StoreError::DigestMismatch`] when the data does not match.
    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError>;

    /// Stores several blobs (a `BatchUpdateBlobs`), answering for each, in
    /// order. The default writes them with `write`, up to 16 at a time; a
    /// store that can do better overrides it (the filesystem store stores a
    /// group of blobs per trip to the blocking pool).
    async fn write_batch(&self, blobs: Vec<(Digest, Bytes)>) -> Vec<Result<(), StoreError>> {
        futures::stream::iter(blobs)
            .map(|(digest, data)| async move { self.write(&digest, data).await })
            .buffered(16)
            .collect()
            .await
    }

    /// Reads several whole blobs (a `BatchReadBlobs`), answering for each,
    /// in order. The default reads them with `read_all`, up to 16 at a time;
    /// a store that can do better overrides it (the filesystem store reads a
    /// group of blobs per trip to the blocking pool). Decorators that watch
    /// reads (metrics, eviction) forward it and note each result.
    async fn read_batch(&self, digests: &[Digest]) -> Vec<Result<Bytes, StoreError>> {
        futures::stream::iter(digests.iter().copied())
            .map(|digest| async move { self.read_all(&digest).await })
            .buffered(16)
            .collect()
            .await
    }

    /// Whether the store holds the blob.
    async fn has(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.find_missing(std::slice::from_ref(digest)).await?.is_empty())
    }

    /// Streams up to `limit` bytes (all when `None`) from `offset` of the
    /// blob, in chunks of at most `chunk` bytes.
    ///
    /// Errors known before any byte is sent (an absent blob, an offset past
    /// the end, a corrupt blob in a store that verifies reads) are returned
    /// by this call; a failure later on ends the stream with an error. A
    /// store that verifies reads checks the whole blob before the stream
    /// yields its first chunk, so no byte of an unverified blob is handed
    /// out. The default reads the range with `read` (the whole range in
    /// memory) and slices it; stores that keep blobs in files override it
    /// to read chunk by chunk.
    async fn read_chunks(
        &self,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
        chunk: usize,
    ) -> Result<ChunkStream, StoreError> {
        Ok(chunked(self.read(digest, offset, limit).await?, chunk))
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

    /// A streaming writer for `digest`, if the store can take an upload
    /// chunk by chunk (see [`BlobWriter`]); `None` (the default) means callers
    /// buffer and use `write` ([`writer_for`] does this).
    fn begin_write(&self, _digest: &Digest) -> Result<Option<Box<dyn BlobWriter>>, StoreError> {
        Ok(None)
    }

    /// Removes the blob; returns whether it was there. Used by eviction and
    /// to drop corrupt blobs. Defaults to [`StoreError::Unsupported`].
    async fn remove(&self, _digest: &Digest) -> Result<bool, StoreError> {
        Err(StoreError::Unsupported("this"))
    }

    /// Bytes of blob content held, for stores that keep count (memory,
    /// filesystem, size-limited); decorators report their inner store's.
    /// An approximation under concurrent writes of the same blob.
    fn stored_bytes(&self) -> Option<u64> {
        None
    }

    /// Every blob the store holds (used to seed eviction state at start-up).
    /// Defaults to [`StoreError::Unsupported`].
    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        Err(StoreError::Unsupported("this"))
    }
}

/// A cheap-clone handle on a shared blob store.
pub type Store = Arc<dyn BlobStore>;

/// The chunks of a streamed read ([`BlobStore::read_chunks`]).
pub type ChunkStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// The byte range `start..end` that a read of `offset` and `limit` asks for
/// in a blob of `len` bytes ([`StoreError::OutOfRange`] past the end; a
/// limit of `None` or 0 means to the end).
pub(crate) fn byte_range(digest: &Digest, len: u64, offset: u64, limit: Option<u64>) -> Result<(u64, u64), StoreError> {
    if offset > len {
        return Err(StoreError::OutOfRange { digest: *digest, offset });
    }
    let end = match limit {
        Some(limit) if limit > 0 => offset.saturating_add(limit).min(len),
        _ => len,
    };
    Ok((offset, end))
}

/// The part of a whole blob that a ranged read asks for.
///
/// Shared by the stores that hold whole blobs in memory.
pub(crate) fn slice_range(digest: &Digest, data: &Bytes, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
    let (start, end) = byte_range(digest, data.len() as u64, offset, limit)?;
    Ok(data.slice(start as usize..end as usize))
}

/// The content of the blob `digest` read straight from the store's local
/// file ([`BlobStore::local_path`]), when it has one whose content hashes to
/// the digest; `None` otherwise (the caller then reads through the store,
/// which reports what is wrong). Blocking: for callers that already are on
/// the blocking pool and want no further trip to it.
pub fn read_local_file(store: &dyn BlobStore, digest: &Digest) -> Option<Vec<u8>> {
    let bytes = std::fs::read(store.local_path(digest)?).ok()?;
    (Digest::of(&bytes) == *digest).then_some(bytes)
}

/// `data` as a [`ChunkStream`] of slices of at most `chunk` bytes (none when empty).
pub fn chunked(data: Bytes, chunk: usize) -> ChunkStream {
    let chunk = chunk.max(1);
    let starts = (0..data.len()).step_by(chunk);
    futures::stream::iter(starts.map(move |start| Ok(data.slice(start..(start + chunk).min(data.len()))))).boxed()
}
