//! [`FastSlowStore`]: a read-through composition of a fast tier over a slow one.
//!
//! Why it exists: an executor keeps a small local CAS (the fast tier, usually
//! a size-limited filesystem store whose files can be hard-linked into
//! sandboxes) in front of the shared cache node (the slow tier, usually an
//! upstream store). Writes go to the slow tier first, so a blob acknowledged
//! to a client is in the durable place, then to the fast one; a read that
//! misses the fast tier copies the whole blob from the slow tier into the
//! fast one. A failure to fill the fast tier is logged, not returned: the
//! slow tier is the source of truth.

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_proto::Digest;

use super::{chunked, slice_range, BlobStore, ChunkStream, Store, StoreError, StoreSpec};

/// Configuration of a [`FastSlowStore`].
///
/// ```yaml
/// fast_slow:
///   fast: { size_limited: { max_size: 10GiB, inner: { filesystem: { path: cas } } } }
///   slow: { upstream: { endpoint: "http://cache.example:8980" } }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastSlowSpec {
    /// The small, local tier; filled on read misses.
    pub fast: Box<StoreSpec>,
    /// The authoritative tier; every write reaches it.
    pub slow: Box<StoreSpec>,
}

/// A fast tier read through to a slow tier.
pub struct FastSlowStore {
    fast: Store,
    slow: Store,
}

impl FastSlowStore {
    /// Composes two already built stores.
    pub fn new(_spec: &FastSlowSpec, fast: Store, slow: Store) -> Self {
        FastSlowStore { fast, slow }
    }

    /// Reads the whole blob from the slow tier, copies it into the fast
    /// tier, and returns the range asked for.
    async fn read_through(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        let whole = self.slow.read(digest, 0, None).await?;
        if let Err(err) = self.fast.write(digest, whole.clone()).await {
            tracing::warn!(%digest, %err, "could not copy a blob into the fast tier");
        }
        slice_range(digest, &whole, offset, limit)
    }
}

#[async_trait]
impl BlobStore for FastSlowStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        let not_fast = self.fast.find_missing(digests).await?;
        if not_fast.is_empty() {
            return Ok(not_fast);
        }
        self.slow.find_missing(&not_fast).await
    }

    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        match self.fast.read(digest, offset, limit).await {
            Ok(data) => return Ok(data),
            Err(StoreError::NotFound(_) | StoreError::Corrupt(_)) => {}
            Err(err) => tracing::warn!(%digest, %err, "fast tier read failed; trying the slow tier"),
        }
        self.read_through(digest, offset, limit).await
    }

    /// Streams from the fast tier when it holds the blob; otherwise the
    /// blob is read whole from the slow tier and copied into the fast one
    /// (as [`BlobStore::read`] does), then streamed from memory.
    async fn read_chunks(
        &self,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
        chunk: usize,
    ) -> Result<ChunkStream, StoreError> {
        match self.fast.read_chunks(digest, offset, limit, chunk).await {
            Ok(stream) => return Ok(stream),
            Err(StoreError::NotFound(_) | StoreError::Corrupt(_)) => {}
            Err(err) => tracing::warn!(%digest, %err, "fast tier read failed; trying the slow tier"),
        }
        Ok(chunked(self.read_through(digest, offset, limit).await?, chunk))
    }

    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        self.slow.write(digest, data.clone()).await?;
        if let Err(err) = self.fast.write(digest, data).await {
            tracing::warn!(%digest, %err, "could not write a blob to the fast tier");
        }
        Ok(())
    }

    fn local_path(&self, digest: &Digest) -> Option<std::path::PathBuf> {
        self.fast.local_path(digest)
    }

    fn stored_bytes(&self) -> Option<u64> {
        self.slow.stored_bytes()
    }

    async fn remove(&self, digest: &Digest) -> Result<bool, StoreError> {
        let fast = self.fast.remove(digest).await?;
        let slow = self.slow.remove(digest).await?;
        Ok(fast || slow)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{MemorySpec, MemoryStore};

    fn tiers() -> (Arc<MemoryStore>, Arc<MemoryStore>, FastSlowStore) {
        let fast = Arc::new(MemoryStore::default());
        let slow = Arc::new(MemoryStore::default());
        let spec = FastSlowSpec {
            fast: Box::new(StoreSpec::Memory(MemorySpec::default())),
            slow: Box::new(StoreSpec::Memory(MemorySpec::default())),
        };
        let store = FastSlowStore::new(&spec, fast.clone(), slow.clone());
        (fast, slow, store)
    }

    #[tokio::test]
    async fn writes_land_in_both_tiers() {
        let (fast, slow, store) = tiers();
        let digest = Digest::of(b"both");
        store.write(&digest, Bytes::from_static(b"both")).await.unwrap();
        assert!(fast.has(&digest).await.unwrap());
        assert!(slow.has(&digest).await.unwrap());
    }

    #[tokio::test]
    async fn a_fast_miss_is_filled_from_the_slow_tier() {
        let (fast, slow, store) = tiers();
        let digest = Digest::of(b"only slow");
        slow.write(&digest, Bytes::from_static(b"only slow")).await.unwrap();
        assert!(store.find_missing(&[digest]).await.unwrap().is_empty());
        assert!(!fast.has(&digest).await.unwrap());
        assert_eq!(store.read(&digest, 5, None).await.unwrap(), Bytes::from_static(b"slow"));
        assert!(fast.has(&digest).await.unwrap(), "read did not fill the fast tier");
    }

    #[tokio::test]
    async fn missing_everywhere_is_not_found() {
        let (_, _, store) = tiers();
        let digest = Digest::of(b"nowhere");
        assert_eq!(store.find_missing(&[digest]).await.unwrap(), vec![digest]);
        assert!(matches!(store.read(&digest, 0, None).await, Err(StoreError::NotFound(_))));
    }
}
