//! [`MemoryStore`]: blobs in a hash map.
//!
//! Why it exists: the reference backend for tests of every decorator, and a
//! fast tier under a [`super::SizeLimitedStore`]. Contents are lost on exit;
//! never use it as the only tier of a cache that must survive a restart.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_proto::Digest;

use super::verify::verify_content;
use super::{slice_range, BlobStore, StoreError};

/// Configuration of a [`MemoryStore`] (it has no options).
///
/// ```yaml
/// memory: {}
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {}

/// Blobs held in memory, verified on write.
#[derive(Default)]
pub struct MemoryStore {
    blobs: RwLock<HashMap<Digest, Bytes>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new(_spec: &MemorySpec) -> Self {
        MemoryStore::default()
    }

    /// Total bytes held.
    pub fn total_bytes(&self) -> u64 {
        self.blobs.read().map(|b| b.values().map(|v| v.len() as u64).sum()).unwrap_or(0)
    }

    /// Puts `data` under `digest` without checking it: a test hook to simulate
    /// corruption beneath a verifying layer.
    #[cfg(test)]
    pub(crate) fn insert_unchecked(&self, digest: Digest, data: Bytes) {
        if let Ok(mut blobs) = self.blobs.write() {
            blobs.insert(digest, data);
        }
    }

    fn poisoned() -> StoreError {
        StoreError::Io(std::io::Error::other("memory store lock poisoned"))
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        let blobs = self.blobs.read().map_err(|_| Self::poisoned())?;
        Ok(digests.iter().filter(|d| !blobs.contains_key(d)).copied().collect())
    }

    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        let data = {
            let blobs = self.blobs.read().map_err(|_| Self::poisoned())?;
            blobs.get(digest).cloned().ok_or(StoreError::NotFound(*digest))?
        };
        slice_range(digest, &data, offset, limit)
    }

    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        verify_content(digest, &data).await?;
        self.blobs.write().map_err(|_| Self::poisoned())?.insert(*digest, data);
        Ok(())
    }

    async fn remove(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.blobs.write().map_err(|_| Self::poisoned())?.remove(digest).is_some())
    }

    fn stored_bytes(&self) -> Option<u64> {
        Some(self.total_bytes())
    }

    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        Ok(self.blobs.read().map_err(|_| Self::poisoned())?.keys().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_reads_and_ranges() {
        let store = MemoryStore::default();
        let digest = Digest::of(b"abcdef");
        assert_eq!(store.find_missing(&[digest]).await.unwrap(), vec![digest]);
        store.write(&digest, Bytes::from_static(b"abcdef")).await.unwrap();
        assert!(store.find_missing(&[digest]).await.unwrap().is_empty());
        assert_eq!(store.read(&digest, 2, Some(3)).await.unwrap(), Bytes::from_static(b"cde"));
        assert_eq!(store.read(&digest, 6, None).await.unwrap(), Bytes::new());
        assert!(matches!(store.read(&digest, 7, None).await, Err(StoreError::OutOfRange { .. })));
    }

    #[tokio::test]
    async fn refuses_mismatched_content() {
        let store = MemoryStore::default();
        let digest = Digest::of(b"abc");
        assert!(matches!(store.write(&digest, Bytes::from_static(b"abd")).await, Err(StoreError::DigestMismatch { .. })));
        assert!(!store.has(&digest).await.unwrap());
    }
}
