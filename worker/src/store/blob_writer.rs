//! [`BlobWriter`]: an upload in progress, appended chunk by chunk and made
//! visible only by [`BlobWriter::commit`], which verifies the content.
//!
//! Why it exists: a ByteStream upload of hundreds of MiB should not sit in
//! memory and then be hashed and written in one go; a store that can stream
//! (the filesystem store) hashes and writes each chunk as it arrives. A store
//! that cannot returns `None` from [`super::BlobStore::begin_write`], and
//! [`writer_for`] falls back to [`BufferedWriter`], which buffers and calls
//! `write` on commit — so every store supports uploads, and only the fast
//! path needs code.

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use weir_proto::Digest;

use super::{Store, StoreError};

/// An upload in progress.
#[async_trait]
pub trait BlobWriter: Send + Sync {
    /// Bytes appended so far (including appends whose caller was cancelled
    /// after the data was handed over).
    fn committed(&self) -> u64;

    /// Appends `data`.
    async fn append(&mut self, data: Bytes) -> Result<(), StoreError>;

    /// Discards everything appended (a client restarting at offset 0).
    async fn reset(&mut self) -> Result<(), StoreError>;

    /// Verifies the content against the digest and makes the blob visible;
    /// [`StoreError::DigestMismatch`] when it does not match (nothing is stored).
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// A writer for `digest` on `store`: its streaming writer if it has one,
/// otherwise a [`BufferedWriter`].
pub fn writer_for(store: &Store, digest: &Digest) -> Result<Box<dyn BlobWriter>, StoreError> {
    match store.begin_write(digest)? {
        Some(writer) => Ok(writer),
        None => Ok(Box::new(BufferedWriter::new(store.clone(), *digest))),
    }
}

/// Buffers an upload in memory and stores it with `BlobStore::write` on commit.
pub struct BufferedWriter {
    store: Store,
    digest: Digest,
    data: BytesMut,
}

impl BufferedWriter {
    /// An empty upload of `digest` into `store`.
    pub fn new(store: Store, digest: Digest) -> Self {
        BufferedWriter { store, digest, data: BytesMut::new() }
    }
}

#[async_trait]
impl BlobWriter for BufferedWriter {
    fn committed(&self) -> u64 {
        self.data.len() as u64
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        if self.data.capacity() == 0 {
            // Reserve up front, bounded so that a lying digest cannot claim memory.
            self.data.reserve(self.digest.size().min(16 << 20) as usize);
        }
        self.data.extend_from_slice(&data);
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), StoreError> {
        self.data.clear();
        Ok(())
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let BufferedWriter { store, digest, data } = *self;
        store.write(&digest, data.freeze()).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn buffered_writes_commit_only_verified_content() {
        let store: Store = Arc::new(MemoryStore::default());
        let digest = Digest::of(b"hello world");
        let mut writer = writer_for(&store, &digest).unwrap();
        writer.append(Bytes::from_static(b"hello ")).await.unwrap();
        assert_eq!(writer.committed(), 6);
        assert!(!store.has(&digest).await.unwrap());
        writer.append(Bytes::from_static(b"world")).await.unwrap();
        writer.commit().await.unwrap();
        assert!(store.has(&digest).await.unwrap());

        let other = Digest::of(b"other");
        let mut writer = writer_for(&store, &other).unwrap();
        writer.append(Bytes::from_static(b"othe!")).await.unwrap();
        assert!(matches!(writer.commit().await, Err(StoreError::DigestMismatch { .. })));
        assert!(!store.has(&other).await.unwrap());
    }
}
