//! [`MetricsStore`]: counts what passes through one node of the store graph,
//! and [`StoreMetrics`], the registry of those counters that the status page
//! renders.
//!
//! Why it exists: the factory wraps every node in one, labelled after its
//! variant and position (`filesystem`, `fast_slow.fast.memory`, ...), so each
//! layer reports requests, hits, misses and bytes without any store knowing
//! about metrics. Counters are relaxed atomics: cheap, and exact enough.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use weir_proto::Digest;

use futures::StreamExt;

use super::{BlobStore, BlobWriter, ChunkStream, Store, StoreError};

/// Counters of one store layer.
#[derive(Debug, Default)]
pub struct LayerCounters {
    /// Digests asked about in `find_missing`.
    pub queried: AtomicU64,
    /// Of those, the ones reported missing.
    pub missing: AtomicU64,
    /// Successful reads.
    pub reads: AtomicU64,
    /// Reads of absent blobs.
    pub read_misses: AtomicU64,
    /// Bytes returned by reads.
    pub read_bytes: AtomicU64,
    /// Successful writes.
    pub writes: AtomicU64,
    /// Bytes accepted by writes.
    pub write_bytes: AtomicU64,
    /// Operations that failed for another reason than absence.
    pub errors: AtomicU64,
}

/// Registered layers: name and counters, in registration order.
type Layers = Arc<Mutex<Vec<(String, Arc<LayerCounters>)>>>;

/// One Prometheus series: name, help text, and the counter it reads.
type Series = (&'static str, &'static str, fn(&LayerCounters) -> &AtomicU64);

/// The registry of every layer's counters, shared by the whole store graph.
#[derive(Debug, Default, Clone)]
pub struct StoreMetrics {
    layers: Layers,
}

impl StoreMetrics {
    /// Registers a layer and returns its counters.
    pub fn register(&self, layer: &str) -> Arc<LayerCounters> {
        let counters = Arc::new(LayerCounters::default());
        if let Ok(mut layers) = self.layers.lock() {
            layers.push((layer.to_string(), counters.clone()));
        }
        counters
    }

    /// The counters of the layer named `layer`, if registered.
    pub fn layer(&self, layer: &str) -> Option<Arc<LayerCounters>> {
        let layers = self.layers.lock().ok()?;
        layers.iter().find(|(name, _)| name == layer).map(|(_, c)| c.clone())
    }

    /// Appends every layer's counters in the Prometheus text format.
    pub fn render_prometheus(&self, out: &mut String) {
        let Ok(layers) = self.layers.lock() else { return };
        let series: [Series; 8] = [
            ("weir_store_queried_total", "Digests asked about in FindMissing", |c| &c.queried),
            ("weir_store_missing_total", "Digests reported missing", |c| &c.missing),
            ("weir_store_reads_total", "Successful reads", |c| &c.reads),
            ("weir_store_read_misses_total", "Reads of absent blobs", |c| &c.read_misses),
            ("weir_store_read_bytes_total", "Bytes read", |c| &c.read_bytes),
            ("weir_store_writes_total", "Successful writes", |c| &c.writes),
            ("weir_store_write_bytes_total", "Bytes written", |c| &c.write_bytes),
            ("weir_store_errors_total", "Failed operations", |c| &c.errors),
        ];
        for (name, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (layer, counters) in layers.iter() {
                let _ = writeln!(out, "{name}{{layer=\"{layer}\"}} {}", get(counters).load(Ordering::Relaxed));
            }
        }
    }
}

/// Counts a streamed upload as one write when it commits.
struct CountingWriter {
    inner: Box<dyn BlobWriter>,
    counters: Arc<LayerCounters>,
}

#[async_trait]
impl BlobWriter for CountingWriter {
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
        let len = self.inner.committed();
        let counters = self.counters;
        let result = self.inner.commit().await;
        match &result {
            Ok(()) => {
                counters.writes.fetch_add(1, Ordering::Relaxed);
                counters.write_bytes.fetch_add(len, Ordering::Relaxed);
            }
            Err(_) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

/// Counts the operations on an inner store.
pub struct MetricsStore {
    inner: Store,
    counters: Arc<LayerCounters>,
}

impl MetricsStore {
    /// Wraps `inner`, registering its counters under `layer`.
    pub fn new(layer: &str, inner: Store, registry: &StoreMetrics) -> Self {
        MetricsStore { inner, counters: registry.register(layer) }
    }

    /// Counts one whole-blob read (a call, its bytes or its miss).
    fn note_read(&self, result: &Result<Bytes, StoreError>) {
        self.count(result);
        match result {
            Ok(data) => {
                self.counters.reads.fetch_add(1, Ordering::Relaxed);
                self.counters.read_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            Err(StoreError::NotFound(_)) => {
                self.counters.read_misses.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {}
        }
    }

    fn count<T>(&self, result: &Result<T, StoreError>) {
        if let Err(err) = result {
            if !matches!(err, StoreError::NotFound(_)) {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[async_trait]
impl BlobStore for MetricsStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        let result = self.inner.find_missing(digests).await;
        self.count(&result);
        if let Ok(missing) = &result {
            self.counters.queried.fetch_add(digests.len() as u64, Ordering::Relaxed);
            self.counters.missing.fetch_add(missing.len() as u64, Ordering::Relaxed);
        }
        result
    }

    async fn has(&self, digest: &Digest) -> Result<bool, StoreError> {
        let result = self.inner.has(digest).await;
        self.count(&result);
        if let Ok(held) = &result {
            self.counters.queried.fetch_add(1, Ordering::Relaxed);
            self.counters.missing.fetch_add(u64::from(!held), Ordering::Relaxed);
        }
        result
    }

    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        let result = self.inner.read(digest, offset, limit).await;
        self.note_read(&result);
        result
    }

    async fn read_batch(&self, digests: &[Digest]) -> Vec<Result<Bytes, StoreError>> {
        let results = self.inner.read_batch(digests).await;
        results.iter().for_each(|result| self.note_read(result));
        results
    }

    async fn read_chunks(
        &self,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
        chunk: usize,
    ) -> Result<ChunkStream, StoreError> {
        let result = self.inner.read_chunks(digest, offset, limit, chunk).await;
        self.count(&result);
        match result {
            Ok(stream) => {
                self.counters.reads.fetch_add(1, Ordering::Relaxed);
                let counters = self.counters.clone();
                Ok(stream
                    .inspect(move |item| match item {
                        Ok(data) => {
                            counters.read_bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                        }
                        Err(_) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .boxed())
            }
            Err(err) => {
                if matches!(err, StoreError::NotFound(_)) {
                    self.counters.read_misses.fetch_add(1, Ordering::Relaxed);
                }
                Err(err)
            }
        }
    }

    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        let len = data.len() as u64;
        let result = self.inner.write(digest, data).await;
        self.count(&result);
        if result.is_ok() {
            self.counters.writes.fetch_add(1, Ordering::Relaxed);
            self.counters.write_bytes.fetch_add(len, Ordering::Relaxed);
        }
        result
    }

    async fn write_batch(&self, blobs: Vec<(Digest, Bytes)>) -> Vec<Result<(), StoreError>> {
        let sizes: Vec<u64> = blobs.iter().map(|(_, data)| data.len() as u64).collect();
        let results = self.inner.write_batch(blobs).await;
        for (result, len) in results.iter().zip(sizes) {
            self.count(result);
            if result.is_ok() {
                self.counters.writes.fetch_add(1, Ordering::Relaxed);
                self.counters.write_bytes.fetch_add(len, Ordering::Relaxed);
            }
        }
        results
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

    fn begin_write(&self, digest: &Digest) -> Result<Option<Box<dyn BlobWriter>>, StoreError> {
        let counters = self.counters.clone();
        Ok(self.inner.begin_write(digest)?.map(|inner| Box::new(CountingWriter { inner, counters }) as Box<dyn BlobWriter>))
    }

    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        self.inner.list().await
    }
}
