//! [`SizeLimitedStore`]: keeps an inner store under a byte budget by evicting
//! the least recently used blobs.
//!
//! Why it exists: a fast tier (memory, a local disk) must not grow without
//! bound. Place it directly above a store that supports `remove` (memory,
//! filesystem), typically as the `fast` side of a [`super::FastSlowStore`];
//! never above an upstream CAS. The recency order is a tick counter (a
//! `BTreeMap` from tick to digest plus a map back), so no clock is involved
//! and the order is deterministic in tests. Blobs found in the inner store
//! but not yet tracked (written by another path, or present at start-up) are
//! adopted when seen.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use weir_proto::Digest;

use super::{BlobStore, BlobWriter, ByteSize, ChunkStream, Store, StoreError, StoreSpec};

/// Configuration of a [`SizeLimitedStore`].
///
/// ```yaml
/// size_limited:
///   max_size: 2GiB
///   inner: { memory: {} }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeLimitedSpec {
    /// Most bytes the inner store may hold (e.g. `512MiB`, `10GiB`).
    pub max_size: ByteSize,
    /// The store whose size is limited; it must support removal.
    pub inner: Box<StoreSpec>,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    by_digest: HashMap<Digest, u64>,
    by_tick: BTreeMap<u64, Digest>,
    total: u64,
}

impl Lru {
    fn touch(&mut self, digest: Digest) {
        if digest.size() == 0 {
            return; // costs nothing to keep, and REAPI clients expect the empty blob
        }
        self.tick += 1;
        let tick = self.tick;
        match self.by_digest.insert(digest, tick) {
            Some(old) => {
                self.by_tick.remove(&old);
            }
            None => self.total += digest.size(),
        }
        self.by_tick.insert(tick, digest);
    }

    fn forget(&mut self, digest: &Digest) {
        if let Some(tick) = self.by_digest.remove(digest) {
            self.by_tick.remove(&tick);
            self.total -= digest.size();
        }
    }

    /// Pops least recently used digests until the total fits `max`.
    fn victims(&mut self, max: u64) -> Vec<Digest> {
        let mut out = Vec::new();
        while self.total > max {
            let Some((_, digest)) = self.by_tick.pop_first() else { break };
            self.by_digest.remove(&digest);
            self.total -= digest.size();
            out.push(digest);
        }
        out
    }
}

/// Evicts least recently used blobs from `inner` to stay under `max_size`.
pub struct SizeLimitedStore {
    inner: Store,
    max: u64,
    lru: Arc<Mutex<Lru>>,
}

fn with_lru<T>(lru: &Mutex<Lru>, f: impl FnOnce(&mut Lru) -> T) -> Result<T, StoreError> {
    let mut lru = lru.lock().map_err(|_| StoreError::Io(std::io::Error::other("LRU lock poisoned")))?;
    Ok(f(&mut lru))
}

/// Removes least recently used blobs from `inner` until `lru` is under `max`.
async fn evict(lru: &Mutex<Lru>, inner: &Store, max: u64) -> Result<(), StoreError> {
    let victims = with_lru(lru, |lru| lru.victims(max))?;
    for digest in victims {
        tracing::debug!(%digest, "evicting");
        inner.remove(&digest).await?;
    }
    Ok(())
}

/// A streamed upload through a [`SizeLimitedStore`]: the inner store's
/// writer, with the blob counted and the budget enforced on commit.
struct LimitedWriter {
    inner: Box<dyn BlobWriter>,
    digest: Digest,
    store: Store,
    max: u64,
    lru: Arc<Mutex<Lru>>,
}

#[async_trait]
impl BlobWriter for LimitedWriter {
    fn committed(&self) -> u64 {
        self.inner.committed()
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        self.inner.append(data).await
    }

    async fn reset(&mut self) -> Result<(), StoreError> {
        self.inner.reset().await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let LimitedWriter { inner, digest, store, max, lru } = *self;
        inner.commit().await?;
        with_lru(&lru, |lru| lru.touch(digest))?;
        evict(&lru, &store, max).await
    }
}

impl SizeLimitedStore {
    /// Wraps an already built store, adopting the blobs it lists (if it can
    /// list them) and evicting down to the budget.
    pub async fn new(spec: &SizeLimitedSpec, inner: Store) -> Result<Self, StoreError> {
        let store = SizeLimitedStore { inner, max: spec.max_size.bytes(), lru: Arc::default() };
        match store.inner.list().await {
            Ok(existing) => {
                store.with_lru(|lru| existing.into_iter().for_each(|d| lru.touch(d)))?;
                store.evict().await?;
            }
            Err(StoreError::Unsupported(_)) => {}
            Err(err) => return Err(err),
        }
        Ok(store)
    }

    /// Bytes currently tracked.
    pub fn total_bytes(&self) -> u64 {
        self.lru.lock().map(|l| l.total).unwrap_or(0)
    }

    fn with_lru<T>(&self, f: impl FnOnce(&mut Lru) -> T) -> Result<T, StoreError> {
        with_lru(&self.lru, f)
    }

    /// Updates the recency of `digest` after a read of it: touched when it
    /// was there, forgotten when it was absent or corrupt.
    fn note_read<T>(&self, digest: &Digest, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                self.with_lru(|lru| lru.touch(*digest))?;
                Ok(value)
            }
            Err(err) => {
                if matches!(err, StoreError::NotFound(_) | StoreError::Corrupt(_)) {
                    self.with_lru(|lru| lru.forget(digest))?;
                }
                Err(err)
            }
        }
    }

    async fn evict(&self) -> Result<(), StoreError> {
        evict(&self.lru, &self.inner, self.max).await
    }
}

#[async_trait]
impl BlobStore for SizeLimitedStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        let missing = self.inner.find_missing(digests).await?;
        self.with_lru(|lru| {
            for digest in digests {
                if missing.contains(digest) {
                    lru.forget(digest);
                } else {
                    lru.touch(*digest);
                }
            }
        })?;
        self.evict().await?;
        Ok(missing)
    }

    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        let result = self.inner.read(digest, offset, limit).await;
        self.note_read(digest, result)
    }

    async fn read_chunks(
        &self,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
        chunk: usize,
    ) -> Result<ChunkStream, StoreError> {
        let result = self.inner.read_chunks(digest, offset, limit, chunk).await;
        self.note_read(digest, result)
    }

    async fn read_batch(&self, digests: &[Digest]) -> Vec<Result<Bytes, StoreError>> {
        let results = self.inner.read_batch(digests).await;
        digests.iter().zip(results).map(|(digest, result)| self.note_read(digest, result)).collect()
    }

    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        if digest.size() > self.max {
            return Err(StoreError::Full(*digest));
        }
        self.inner.write(digest, data).await?;
        self.with_lru(|lru| lru.touch(*digest))?;
        self.evict().await
    }

    fn local_path(&self, digest: &Digest) -> Option<std::path::PathBuf> {
        self.inner.local_path(digest)
    }

    /// Streams into the inner store's writer when it has one (so an upload
    /// through this store is not buffered in memory); counted on commit.
    fn begin_write(&self, digest: &Digest) -> Result<Option<Box<dyn BlobWriter>>, StoreError> {
        if digest.size() > self.max {
            return Err(StoreError::Full(*digest));
        }
        Ok(self.inner.begin_write(digest)?.map(|inner| {
            Box::new(LimitedWriter {
                inner,
                digest: *digest,
                store: self.inner.clone(),
                max: self.max,
                lru: self.lru.clone(),
            }) as Box<dyn BlobWriter>
        }))
    }

    async fn remove(&self, digest: &Digest) -> Result<bool, StoreError> {
        self.with_lru(|lru| lru.forget(digest))?;
        self.inner.remove(digest).await
    }

    fn stored_bytes(&self) -> Option<u64> {
        Some(self.total_bytes())
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

    async fn limited(max: u64, inner: Arc<MemoryStore>) -> SizeLimitedStore {
        let spec = SizeLimitedSpec {
            max_size: ByteSize::new(max),
            inner: Box::new(StoreSpec::Memory(MemorySpec::default())),
        };
        SizeLimitedStore::new(&spec, inner).await.unwrap()
    }

    async fn put(store: &dyn BlobStore, data: &'static [u8]) -> Digest {
        let digest = Digest::of(data);
        store.write(&digest, Bytes::from_static(data)).await.unwrap();
        digest
    }

    #[tokio::test]
    async fn evicts_least_recently_used_first() {
        let inner = Arc::new(MemoryStore::default());
        let store = limited(10, inner.clone()).await;
        let a = put(&store, b"aaaa").await;
        let b = put(&store, b"bbbb").await;
        store.read(&a, 0, None).await.unwrap(); // a is now more recent than b
        let c = put(&store, b"cccc").await;
        assert_eq!(inner.find_missing(&[a, b, c]).await.unwrap(), vec![b]);
        assert_eq!(store.total_bytes(), 8);
        assert!(inner.total_bytes() <= 10);
    }

    #[tokio::test]
    async fn refuses_a_blob_larger_than_the_budget() {
        let store = limited(3, Arc::new(MemoryStore::default())).await;
        let digest = Digest::of(b"toolarge");
        assert!(matches!(store.write(&digest, Bytes::from_static(b"toolarge")).await, Err(StoreError::Full(_))));
    }

    #[tokio::test]
    async fn adopts_existing_blobs_at_start_up() {
        let inner = Arc::new(MemoryStore::default());
        for data in [&b"1111"[..], b"2222", b"3333"] {
            inner.write(&Digest::of(data), Bytes::copy_from_slice(data)).await.unwrap();
        }
        let store = limited(8, inner.clone()).await;
        assert_eq!(store.total_bytes(), 8);
        assert_eq!(inner.list().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn streamed_uploads_are_counted_and_evict() {
        let dir = tempfile::tempdir().unwrap();
        let fs_spec = crate::store::FilesystemSpec { path: dir.path().to_path_buf(), verify_reads: false, fsync: false };
        let inner: Store = Arc::new(crate::store::FilesystemStore::open(&fs_spec, dir.path()).unwrap());
        let spec = SizeLimitedSpec { max_size: ByteSize::new(100), inner: Box::new(StoreSpec::Memory(MemorySpec::default())) };
        let store: Store = Arc::new(SizeLimitedStore::new(&spec, inner.clone()).await.unwrap());
        let (a, b) = (vec![b'a'; 60], vec![b'b'; 60]);
        let (da, db) = (Digest::of(&a), Digest::of(&b));
        for (digest, data) in [(da, &a), (db, &b)] {
            let mut writer = store.begin_write(&digest).unwrap().expect("the filesystem store streams");
            writer.append(Bytes::copy_from_slice(data)).await.unwrap();
            writer.commit().await.unwrap();
        }
        assert_eq!(inner.find_missing(&[da, db]).await.unwrap(), vec![da], "the older blob was not evicted");
        assert_eq!(store.stored_bytes(), Some(60));
        let too_big = Digest::new(*da.hash_bytes(), 101);
        assert!(matches!(store.begin_write(&too_big), Err(StoreError::Full(_))));
    }
}
