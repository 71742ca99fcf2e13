//! [`StoreSpec`], the typed configuration of a store graph, and [`build`], the
//! one recursive factory that turns it into a [`Store`].
//!
//! Key decision: one `match` with one arm per variant; each arm builds the
//! inner stores first and passes them, already built, to the decorator's
//! `new`. Every node is wrapped in a [`MetricsStore`] labelled with its path
//! in the graph. Stores declared once under `stores:` in the worker config
//! are referenced with `shared: NAME` and built once, however often they are
//! referenced; an unknown name or a reference cycle is an error.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{
    FastSlowSpec, FastSlowStore, FilesystemSpec, FilesystemStore, MemorySpec, MemoryStore, MetricsStore,
    SizeLimitedSpec, SizeLimitedStore, Store, StoreError, StoreMetrics, UpstreamSpec, UpstreamStore, VerifySpec,
    VerifyStore,
};
use super::filesystem::LargeBlobIo;

/// One node of a store graph, as written in the worker configuration.
///
/// ```yaml
/// storage:
///   fast_slow:
///     fast: { size_limited: { max_size: 1GiB, inner: { memory: {} } } }
///     slow: { filesystem: { path: cas } }
/// ```
///
/// In YAML a node is a map with exactly one key, the variant's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "StoreSpecMap", into = "StoreSpecMap")]
pub enum StoreSpec {
    /// Blobs in memory ([`MemoryStore`]).
    Memory(MemorySpec),
    /// Blobs as files under a directory ([`FilesystemStore`]).
    Filesystem(FilesystemSpec),
    /// Least-recently-used eviction under a byte budget ([`SizeLimitedStore`]).
    SizeLimited(SizeLimitedSpec),
    /// A fast tier read through to a slow one ([`FastSlowStore`]).
    FastSlow(FastSlowSpec),
    /// Another REAPI CAS over gRPC ([`UpstreamStore`]).
    Upstream(UpstreamSpec),
    /// Re-hash what the inner store returns ([`VerifyStore`]).
    Verify(VerifySpec),
    /// A store declared by name under the configuration's `stores:` map.
    Shared(String),
}

/// The serde form of a [`StoreSpec`]: a map with exactly one of these keys.
/// (serde's own externally tagged enums read as YAML tags in serde_yaml_ng,
/// not as the single-key maps a configuration file uses.)
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreSpecMap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    memory: Option<MemorySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    filesystem: Option<FilesystemSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size_limited: Option<SizeLimitedSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fast_slow: Option<FastSlowSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upstream: Option<UpstreamSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify: Option<VerifySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shared: Option<String>,
}

impl TryFrom<StoreSpecMap> for StoreSpec {
    type Error = String;

    fn try_from(map: StoreSpecMap) -> Result<Self, String> {
        let StoreSpecMap { memory, filesystem, size_limited, fast_slow, upstream, verify, shared } = map;
        let mut found: Vec<StoreSpec> = Vec::new();
        found.extend(memory.map(StoreSpec::Memory));
        found.extend(filesystem.map(StoreSpec::Filesystem));
        found.extend(size_limited.map(StoreSpec::SizeLimited));
        found.extend(fast_slow.map(StoreSpec::FastSlow));
        found.extend(upstream.map(StoreSpec::Upstream));
        found.extend(verify.map(StoreSpec::Verify));
        found.extend(shared.map(StoreSpec::Shared));
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err("a store needs one of: memory, filesystem, size_limited, fast_slow, upstream, verify, shared".into()),
            _ => Err(format!(
                "a store has exactly one kind, found {}",
                found.iter().map(StoreSpec::kind).collect::<Vec<_>>().join(" and ")
            )),
        }
    }
}

impl From<StoreSpec> for StoreSpecMap {
    fn from(spec: StoreSpec) -> Self {
        let mut map = StoreSpecMap::default();
        match spec {
            StoreSpec::Memory(s) => map.memory = Some(s),
            StoreSpec::Filesystem(s) => map.filesystem = Some(s),
            StoreSpec::SizeLimited(s) => map.size_limited = Some(s),
            StoreSpec::FastSlow(s) => map.fast_slow = Some(s),
            StoreSpec::Upstream(s) => map.upstream = Some(s),
            StoreSpec::Verify(s) => map.verify = Some(s),
            StoreSpec::Shared(s) => map.shared = Some(s),
        }
        map
    }
}

impl StoreSpec {
    /// The variant's name, used to label metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreSpec::Memory(_) => "memory",
            StoreSpec::Filesystem(_) => "filesystem",
            StoreSpec::SizeLimited(_) => "size_limited",
            StoreSpec::FastSlow(_) => "fast_slow",
            StoreSpec::Upstream(_) => "upstream",
            StoreSpec::Verify(_) => "verify",
            StoreSpec::Shared(_) => "shared",
        }
    }

    /// Sets `fsync` on every filesystem store in this graph (the worker's
    /// `sync: always`); shared stores are reached through their own specs.
    pub fn sync_filesystems(&mut self) {
        match self {
            StoreSpec::Filesystem(spec) => spec.fsync = true,
            StoreSpec::SizeLimited(spec) => spec.inner.sync_filesystems(),
            StoreSpec::Verify(spec) => spec.inner.sync_filesystems(),
            StoreSpec::FastSlow(spec) => {
                spec.fast.sync_filesystems();
                spec.slow.sync_filesystems();
            }
            StoreSpec::Memory(_) | StoreSpec::Upstream(_) | StoreSpec::Shared(_) => {}
        }
    }
}

/// What building a store graph needs besides the spec.
pub struct BuildContext {
    root: PathBuf,
    shared: BTreeMap<String, StoreSpec>,
    metrics: StoreMetrics,
    large_blob_io: LargeBlobIo,
    built: Mutex<HashMap<String, Store>>,
    building: Mutex<Vec<String>>,
}

impl BuildContext {
    /// A context resolving relative paths against `root` and `shared:`
    /// references against `shared`, registering counters in `metrics`.
    pub fn new(root: PathBuf, shared: BTreeMap<String, StoreSpec>, metrics: StoreMetrics) -> Self {
        BuildContext {
            root,
            shared,
            metrics,
            large_blob_io: LargeBlobIo::default(),
            built: Mutex::default(),
            building: Mutex::default(),
        }
    }

    /// Filesystem stores built in this context move large blobs with `io`.
    pub fn with_large_blob_io(mut self, io: LargeBlobIo) -> Self {
        self.large_blob_io = io;
        self
    }

    fn lock_err() -> StoreError {
        StoreError::Config("store factory lock poisoned".into())
    }
}

type BuildFuture<'a> = Pin<Box<dyn Future<Output = Result<Store, StoreError>> + Send + 'a>>;

/// Builds the store graph described by `spec`.
pub async fn build(spec: &StoreSpec, ctx: &BuildContext) -> Result<Store, StoreError> {
    build_node(spec, ctx, String::new()).await
}

fn build_node<'a>(spec: &'a StoreSpec, ctx: &'a BuildContext, parent: String) -> BuildFuture<'a> {
    Box::pin(async move {
        let label = if parent.is_empty() { spec.kind().to_string() } else { format!("{parent}.{}", spec.kind()) };
        let child = |side: &str| format!("{label}.{side}");
        let store: Store = match spec {
            StoreSpec::Memory(s) => Arc::new(MemoryStore::new(s)),
            StoreSpec::Filesystem(s) => {
                let path = ctx.root.join(&s.path);
                Arc::new(FilesystemStore::open_with(s, &path, ctx.large_blob_io)?)
            }
            StoreSpec::SizeLimited(s) => {
                let inner = build_node(&s.inner, ctx, label.clone()).await?;
                Arc::new(SizeLimitedStore::new(s, inner).await?)
            }
            StoreSpec::FastSlow(s) => {
                let fast = build_node(&s.fast, ctx, child("fast")).await?;
                let slow = build_node(&s.slow, ctx, child("slow")).await?;
                Arc::new(FastSlowStore::new(s, fast, slow))
            }
            StoreSpec::Upstream(s) => Arc::new(UpstreamStore::new(s, &ctx.root)?),
            StoreSpec::Verify(s) => {
                let inner = build_node(&s.inner, ctx, label.clone()).await?;
                Arc::new(VerifyStore::new(s, inner))
            }
            StoreSpec::Shared(name) => return build_shared(name, ctx).await,
        };
        Ok(Arc::new(MetricsStore::new(&label, store, &ctx.metrics)))
    })
}

async fn build_shared(name: &str, ctx: &BuildContext) -> Result<Store, StoreError> {
    if let Some(store) = ctx.built.lock().map_err(|_| BuildContext::lock_err())?.get(name) {
        return Ok(store.clone());
    }
    let spec = ctx
        .shared
        .get(name)
        .ok_or_else(|| StoreError::Config(format!("shared store {name:?} is not declared under `stores:`")))?;
    {
        let mut building = ctx.building.lock().map_err(|_| BuildContext::lock_err())?;
        if building.iter().any(|n| n == name) {
            return Err(StoreError::Config(format!("shared stores refer to each other in a cycle: {} -> {name}", building.join(" -> "))));
        }
        building.push(name.to_string());
    }
    let store = build_node(spec, ctx, format!("shared:{name}")).await?;
    ctx.building.lock().map_err(|_| BuildContext::lock_err())?.retain(|n| n != name);
    ctx.built.lock().map_err(|_| BuildContext::lock_err())?.insert(name.to_string(), store.clone());
    Ok(store)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use weir_proto::Digest;

    use super::*;

    fn parse(yaml: &str) -> StoreSpec {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[tokio::test]
    async fn builds_a_layered_graph_with_metrics_per_node() {
        let dir = tempfile::tempdir().unwrap();
        let spec = parse(
            "fast_slow:\n  fast: { size_limited: { max_size: 1KiB, inner: { memory: {} } } }\n  slow: { verify: { inner: { filesystem: { path: cas } } } }\n",
        );
        let metrics = StoreMetrics::default();
        let ctx = BuildContext::new(dir.path().to_path_buf(), BTreeMap::new(), metrics.clone());
        let store = build(&spec, &ctx).await.unwrap();
        let digest = Digest::of(b"layered");
        store.write(&digest, Bytes::from_static(b"layered")).await.unwrap();
        assert!(dir.path().join("cas/objects").join(&digest.hash_hex()[..2]).exists());
        let slow_fs = metrics.layer("fast_slow.slow.verify.filesystem").unwrap();
        assert_eq!(slow_fs.writes.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(metrics.layer("fast_slow.fast.size_limited.memory").is_some());
    }

    #[tokio::test]
    async fn shared_stores_are_built_once_and_cycles_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut shared = BTreeMap::new();
        shared.insert("disk".to_string(), parse("memory: {}"));
        let ctx = BuildContext::new(dir.path().to_path_buf(), shared, StoreMetrics::default());
        let a = build(&parse("shared: disk"), &ctx).await.unwrap();
        let b = build(&parse("shared: disk"), &ctx).await.unwrap();
        let digest = Digest::of(b"x");
        a.write(&digest, Bytes::from_static(b"x")).await.unwrap();
        assert!(b.has(&digest).await.unwrap());
        assert!(matches!(build(&parse("shared: nope"), &ctx).await, Err(StoreError::Config(_))));

        let mut cyclic = BTreeMap::new();
        cyclic.insert("a".to_string(), parse("verify: { inner: { shared: b } }"));
        cyclic.insert("b".to_string(), parse("shared: a"));
        let ctx = BuildContext::new(dir.path().to_path_buf(), cyclic, StoreMetrics::default());
        assert!(matches!(build(&parse("shared: a"), &ctx).await, Err(StoreError::Config(_))));
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_yaml_ng::from_str::<StoreSpec>("memory: { size: 3 }").is_err());
        assert!(serde_yaml_ng::from_str::<StoreSpec>("filesystem: { path: x, verify: true }").is_err());
        assert!(serde_yaml_ng::from_str::<StoreSpec>("tape: {}").is_err());
        assert!(serde_yaml_ng::from_str::<StoreSpec>("{ memory: {}, shared: x }").is_err());
        assert!(serde_yaml_ng::from_str::<StoreSpec>("{}").is_err());
    }
}
