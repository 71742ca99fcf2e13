//! [`VerifyStore`]: re-hashes whatever its inner store hands back and drops
//! blobs that no longer match, plus [`verify_content`], the one place a blob
//! is checked against its digest.
//!
//! Why it exists: a backend that cannot vouch for its bytes (a memory tier
//! after a bug, an upstream CAS run by someone else, a disk that rots) must not
//! pass a wrong blob to a build. Place it directly above such a store; it costs
//! one SHA-256 per whole-blob read. Ranged reads are checked by reading the
//! whole blob once and slicing, so a partial read is never served unverified.

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_proto::Digest;

use super::{chunked, slice_range, BlobStore, ChunkStream, Store, StoreError, StoreSpec};

/// Blobs at least this large are hashed on the blocking pool rather than on
/// an async worker thread.
const INLINE_HASH_LIMIT: usize = 256 * 1024;

/// Hashes `data` and checks it against `digest`, off the async threads when
/// the blob is large.
///
/// Returns [`StoreError::DigestMismatch`] with the actual digest when it
/// does not match.
pub async fn verify_content(digest: &Digest, data: &Bytes) -> Result<(), StoreError> {
    let actual = if data.len() < INLINE_HASH_LIMIT {
        Digest::of(data)
    } else {
        let data = data.clone();
        tokio::task::spawn_blocking(move || Digest::of(&data))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    };
    if actual == *digest {
        Ok(())
    } else {
        Err(StoreError::DigestMismatch { expected: *digest, actual })
    }
}

/// Configuration of a [`VerifyStore`].
///
/// ```yaml
/// verify:
///   inner: { memory: {} }
///   verify_reads: true
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySpec {
    /// The store whose blobs are checked.
    pub inner: Box<StoreSpec>,
    /// Re-hash every blob read from `inner` (default `true`). Uploads are
    /// always checked before they reach `inner`.
    #[serde(default = "default_true")]
    pub verify_reads: bool,
}

fn default_true() -> bool {
    true
}

/// Checks uploads before they reach the inner store and, when configured,
/// every blob read back from it; a corrupt blob is removed from the inner
/// store and reported as [`StoreError::Corrupt`].
pub struct VerifyStore {
    inner: Store,
    verify_reads: bool,
}

impl VerifyStore {
    /// Wraps an already built store.
    pub fn new(spec: &VerifySpec, inner: Store) -> Self {
        VerifyStore { inner, verify_reads: spec.verify_reads }
    }

    async fn drop_corrupt(&self, digest: &Digest) -> StoreError {
        if let Err(err) = self.inner.remove(digest).await {
            tracing::warn!(%digest, %err, "could not remove corrupt blob");
        }
        tracing::error!(%digest, "stored blob is corrupt");
        StoreError::Corrupt(*digest)
    }
}

#[async_trait]
impl BlobStore for VerifyStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        self.inner.find_missing(digests).await
    }

    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        if !self.verify_reads {
            return self.inner.read(digest, offset, limit).await;
        }
        let data = self.inner.read(digest, 0, None).await?;
        match verify_content(digest, &data).await {
            Ok(()) => slice_range(digest, &data, offset, limit),
            Err(StoreError::DigestMismatch { .. }) => Err(self.drop_corrupt(digest).await),
            Err(err) => Err(err),
        }
    }

    /// With `verify_reads`, the whole blob is read and verified before the
    /// first chunk is yielded (the blob is held in memory while it streams);
    /// otherwise the inner store streams directly.
    async fn read_chunks(
        &self,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
        chunk: usize,
    ) -> Result<ChunkStream, StoreError> {
        if !self.verify_reads {
            return self.inner.read_chunks(digest, offset, limit, chunk).await;
        }
        Ok(chunked(self.read(digest, offset, limit).await?, chunk))
    }

    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        verify_content(digest, &data).await?;
        self.inner.write(digest, data).await
    }

    fn local_path(&self, digest: &Digest) -> Option<std::path::PathBuf> {
        self.inner.local_path(digest)
    }

    async fn remove(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.inner.remove(digest).await
    }

    fn stored_bytes(&self) -> Option<u64> {
        self.inner.stored_bytes()
    }

    fn begin_write(&self, digest: &Digest) -> Result<Option<Box<dyn super::BlobWriter>>, StoreError> {
        // A streamed writer verifies on commit by contract.
        self.inner.begin_write(digest)
    }

    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        self.inner.list().await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{MemorySpec, MemoryStore};

    fn verify_over(inner: Arc<MemoryStore>) -> VerifyStore {
        let spec = VerifySpec { inner: Box::new(StoreSpec::Memory(MemorySpec::default())), verify_reads: true };
        VerifyStore::new(&spec, inner)
    }

    #[tokio::test]
    async fn rejects_an_upload_that_does_not_match() {
        let inner = Arc::new(MemoryStore::new(&MemorySpec::default()));
        let store = verify_over(inner.clone());
        let digest = Digest::of(b"hello");
        let err = store.write(&digest, Bytes::from_static(b"hellp")).await.unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { expected, .. } if expected == digest));
        assert_eq!(inner.find_missing(&[digest]).await.unwrap(), vec![digest]);
    }

    #[tokio::test]
    async fn evicts_a_corrupt_blob_on_read() {
        let inner = Arc::new(MemoryStore::new(&MemorySpec::default()));
        let digest = Digest::of(b"hello");
        inner.insert_unchecked(digest, Bytes::from_static(b"jello"));
        let store = verify_over(inner.clone());
        let err = store.read(&digest, 1, Some(2)).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(d) if d == digest));
        assert!(!inner.has(&digest).await.unwrap(), "corrupt blob was not removed");
    }

    #[tokio::test]
    async fn serves_ranges_of_good_blobs() {
        let inner = Arc::new(MemoryStore::new(&MemorySpec::default()));
        let store = verify_over(inner);
        let digest = Digest::of(b"hello world");
        store.write(&digest, Bytes::from_static(b"hello world")).await.unwrap();
        assert_eq!(store.read(&digest, 6, Some(3)).await.unwrap(), Bytes::from_static(b"wor"));
    }
}
