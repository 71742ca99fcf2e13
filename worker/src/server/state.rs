//! [`ServerState`]: what every gRPC service shares — the store graph, the
//! Action Cache, the asset index, the served instances, limits and metrics —
//! plus the CAS operations that several services need with REAPI's
//! conventions applied (the empty blob is always present).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use weir_proto::resource_name::Compressor;
use weir_proto::Digest;

use super::{Instances, ServerError, ServerMetrics};
use crate::cache::{ActionCache, AssetIndex};
use crate::store::{ChunkStream, Store, StoreError};

/// State shared by the services.
pub struct ServerState {
    /// The CAS.
    pub store: Store,
    /// The Action Cache.
    pub action_cache: ActionCache,
    /// The Remote Asset index.
    pub assets: AssetIndex,
    /// Served instance names.
    pub instances: Instances,
    /// Largest total size of a batch request, in bytes.
    pub max_batch: u64,
    /// Counters.
    pub metrics: Arc<ServerMetrics>,
}

impl ServerState {
    /// The digests among `digests` that are not in the CAS.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, ServerError> {
        let empty = Digest::empty();
        let wanted: Vec<Digest> = digests.iter().filter(|d| **d != empty).copied().collect();
        let missing = if wanted.is_empty() { Vec::new() } else { self.store.find_missing(&wanted).await? };
        ServerMetrics::add(&self.metrics.cas_queried, digests.len() as u64);
        ServerMetrics::add(&self.metrics.cas_present, (digests.len() - missing.len()) as u64);
        Ok(missing)
    }

    /// Reads a range of a blob.
    pub async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, ServerError> {
        if digest.size() == 0 && *digest == Digest::empty() {
            if offset > 0 {
                return Err(StoreError::OutOfRange { digest: *digest, offset }.into());
            }
            return Ok(Bytes::new());
        }
        let data = self.store.read(digest, offset, limit).await?;
        ServerMetrics::add(&self.metrics.bytes_downloaded, data.len() as u64);
        Ok(data)
    }

    /// Reads several whole blobs (a `BatchReadBlobs`), one result per
    /// digest, in order (see [`crate::store::BlobStore::read_batch`]).
    pub async fn read_batch(&self, digests: &[Digest]) -> Vec<Result<Bytes, ServerError>> {
        let empty = Digest::empty();
        let stored: Vec<Digest> = digests.iter().filter(|d| **d != empty).copied().collect();
        let mut read = self.store.read_batch(&stored).await.into_iter();
        digests
            .iter()
            .map(|digest| {
                if *digest == empty {
                    return Ok(Bytes::new());
                }
                let data = read.next().unwrap_or_else(|| Err(StoreError::Io(std::io::Error::other("the store answered for fewer blobs than asked"))))?;
                ServerMetrics::add(&self.metrics.bytes_downloaded, data.len() as u64);
                Ok(data)
            })
            .collect()
    }

    /// Streams a range of a blob in chunks of at most `chunk` bytes (see
    /// [`crate::store::BlobStore::read_chunks`]), counting the bytes as
    /// they are sent.
    pub async fn read_chunks(
        &self,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
        chunk: usize,
    ) -> Result<ChunkStream, ServerError> {
        if digest.size() == 0 && *digest == Digest::empty() {
            if offset > 0 {
                return Err(StoreError::OutOfRange { digest: *digest, offset }.into());
            }
            return Ok(futures::stream::empty().boxed());
        }
        let stream = self.store.read_chunks(digest, offset, limit, chunk).await?;
        let metrics = self.metrics.clone();
        Ok(stream
            .inspect(move |item| {
                if let Ok(data) = item {
                    ServerMetrics::add(&metrics.bytes_downloaded, data.len() as u64);
                }
            })
            .boxed())
    }

    /// Stores a blob received from a client (`data` is compressed with
    /// `compressor`), verifying it.
    pub async fn write(&self, digest: &Digest, data: Bytes, compressor: Option<Compressor>) -> Result<(), ServerError> {
        let data = decompress(digest, data, compressor).await?;
        self.account(digest, self.store.write(digest, data).await)
    }

    /// Stores blobs received in one batch (already decompressed), verifying
    /// each; answers for each, in order.
    pub async fn write_batch(&self, blobs: Vec<(Digest, Bytes)>) -> Vec<Result<(), ServerError>> {
        let digests: Vec<Digest> = blobs.iter().map(|(digest, _)| *digest).collect();
        let results = self.store.write_batch(blobs).await;
        digests.iter().zip(results).map(|(digest, result)| self.account(digest, result)).collect()
    }

    /// Commits a streamed upload (see [`crate::store::BlobWriter`]).
    pub async fn commit(&self, digest: &Digest, writer: Box<dyn crate::store::BlobWriter>) -> Result<(), ServerError> {
        self.account(digest, writer.commit().await)
    }

    /// Counts the outcome of storing an upload.
    fn account(&self, digest: &Digest, result: Result<(), StoreError>) -> Result<(), ServerError> {
        match result {
            Ok(()) => {
                ServerMetrics::add(&self.metrics.bytes_uploaded, digest.size());
                Ok(())
            }
            Err(err @ StoreError::DigestMismatch { .. }) => {
                ServerMetrics::add(&self.metrics.digest_mismatches, 1);
                Err(err.into())
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// Undoes `compressor` on data that must decompress to `digest.size()` bytes.
pub async fn decompress(digest: &Digest, data: Bytes, compressor: Option<Compressor>) -> Result<Bytes, ServerError> {
    match compressor {
        None | Some(Compressor::Identity) => Ok(data),
        Some(Compressor::Zstd) => {
            let size = usize::try_from(digest.size())
                .map_err(|_| ServerError::InvalidArgument(format!("blob {digest} is too large")))?;
            let digest = *digest;
            tokio::task::spawn_blocking(move || {
                let out = zstd::bulk::decompress(&data, size)
                    .map_err(|e| ServerError::InvalidArgument(format!("zstd data for {digest} does not decompress: {e}")))?;
                if out.len() != size {
                    return Err(ServerError::InvalidArgument(format!(
                        "zstd data for {digest} decompresses to {} bytes, not {size}",
                        out.len()
                    )));
                }
                Ok(Bytes::from(out))
            })
            .await
            .map_err(|e| ServerError::Store(StoreError::Io(std::io::Error::other(e))))?
        }
        Some(other) => Err(ServerError::InvalidArgument(format!("compressor {} is not supported", other.as_str()))),
    }
}

/// Compresses `data` with zstd (level 1: fast), off the async threads.
pub async fn compress_zstd(data: Bytes) -> Result<Bytes, ServerError> {
    tokio::task::spawn_blocking(move || zstd::bulk::compress(&data, 1).map(Bytes::from))
        .await
        .map_err(|e| ServerError::Store(StoreError::Io(std::io::Error::other(e))))?
        .map_err(|e| ServerError::Store(StoreError::Io(e)))
}
