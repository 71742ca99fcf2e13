//! [`FetchStep`]: the step before a build that makes every `tar` and
//! `remote` source of the elements to build available as a local tree, and
//! [`FetchedSources`], what it hands to the plan.
//!
//! Key decisions: sources are deduplicated twice — by staged tree (many
//! elements staging the same archive the same way share one tree) and by
//! sha256 (one download per file) — and a source whose staged tree is
//! already in the [`SourceCache`] needs neither download nor unpacking.
//! Downloads run a few at a time; each is verified against the `ref` before
//! it is stored, and reported as a [`BuildEvent::Fetched`]. Unpacking runs
//! on the blocking pool. The staged trees are then ordinary local
//! directories: the build reads them into the CAS as it reads `local`
//! sources.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};

use crate::build::{BuildEvent, EventSink};
use crate::graph::{ElementId, Graph, Scope};

use super::{ArchiveError, DownloadKind, DownloadSource, Downloader, FetchError, SourceCache, TarUnpacker};

/// Downloads running at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// The local tree of each fetched source, by element and source position.
#[derive(Debug, Clone, Default)]
pub struct FetchedSources {
    trees: HashMap<(ElementId, usize), PathBuf>,
}

impl FetchedSources {
    /// The staged tree of source `index` of `element`, if it was fetched.
    pub fn tree(&self, element: ElementId, index: usize) -> Option<&Path> {
        self.trees.get(&(element, index)).map(PathBuf::as_path)
    }

    /// Records the staged tree of source `index` of `element`.
    pub fn insert(&mut self, element: ElementId, index: usize, tree: PathBuf) {
        self.trees.insert((element, index), tree);
    }

    /// How many sources were fetched (or found in the cache).
    pub fn len(&self) -> usize {
        self.trees.len()
    }

    /// Whether no source was fetched.
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }
}

/// Fetches and stages the downloadable sources of a build.
#[derive(Debug)]
pub struct FetchStep {
    cache: SourceCache,
    downloader: Downloader,
}

impl FetchStep {
    /// A fetch step keeping its files in the source cache of the weir cache
    /// directory `cache_dir` (`<cache_dir>/sources`).
    pub fn new(cache_dir: &Path) -> FetchStep {
        FetchStep { cache: SourceCache::new(cache_dir), downloader: Downloader::new() }
    }

    /// The source cache used.
    pub fn cache(&self) -> &SourceCache {
        &self.cache
    }

    /// Where the staged tree of every `tar`/`remote` source of `targets` and
    /// everything they depend on (the elements a build plans) is, whether
    /// or not it has been fetched yet; no download happens here (malformed
    /// sources and unknown aliases are reported).
    pub fn locate(&self, graph: &Graph, targets: &[ElementId]) -> Result<FetchedSources, FetchError> {
        let mut fetched = FetchedSources::default();
        for (id, source) in collect(graph, targets)? {
            fetched.insert(id, source.at.index, self.cache.staged_path(&source));
        }
        Ok(fetched)
    }

    /// Fetches every `tar`/`remote` source of `targets` and everything they
    /// depend on, reporting each download on `sink`.
    pub async fn run(&self, graph: &Graph, targets: &[ElementId], sink: &dyn EventSink) -> Result<FetchedSources, FetchError> {
        self.fetch(graph, targets, sink, |_| true).await?;
        self.locate(graph, targets)
    }

    /// Fetches the `tar`/`remote` sources of the elements among `targets`
    /// and their dependencies that `wanted` selects (those a build will
    /// actually build: a cached element needs no sources, as in BuildStream),
    /// reporting each download on `sink`.
    pub async fn fetch(
        &self,
        graph: &Graph,
        targets: &[ElementId],
        sink: &dyn EventSink,
        wanted: impl Fn(&crate::graph::Element) -> bool,
    ) -> Result<(), FetchError> {
        self.cache.sweep_temporaries();
        let sources: Vec<(ElementId, DownloadSource)> =
            collect(graph, targets)?.into_iter().filter(|(id, _)| wanted(graph.element(*id))).collect();
        // One representative per staged tree that is not in the cache yet.
        let mut to_stage: BTreeMap<PathBuf, &DownloadSource> = BTreeMap::new();
        for (_, source) in &sources {
            let staged = self.cache.staged_path(source);
            if !staged.is_dir() {
                to_stage.entry(staged).or_insert(source);
            }
        }
        // One download per sha256 that is not in the cache yet.
        let mut to_download: BTreeMap<&str, &DownloadSource> = BTreeMap::new();
        for source in to_stage.values() {
            if !self.cache.download_path(&source.sha256).is_file() {
                to_download.entry(source.sha256.as_str()).or_insert(source);
            }
        }
        futures::stream::iter(to_download.into_values().map(|source| self.download(source, sink)))
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .try_collect::<Vec<()>>()
            .await?;
        for (staged, source) in to_stage {
            self.stage(source, staged).await?;
        }
        Ok(())
    }

    /// Downloads one file, verifies it against the `ref` and stores it.
    async fn download(&self, source: &DownloadSource, sink: &dyn EventSink) -> Result<(), FetchError> {
        let temp = self.cache.temp_file()?;
        let downloaded = self.downloader.download(&source.resolved_url, temp.path()).await.map_err(|reason| FetchError::Download {
            at: Box::new(source.at.clone()),
            url: source.resolved_url.clone(),
            reason,
        })?;
        if downloaded.sha256 != source.sha256 {
            return Err(FetchError::Checksum {
                at: Box::new(source.at.clone()),
                url: source.resolved_url.clone(),
                expected: source.sha256.clone(),
                actual: downloaded.sha256,
            });
        }
        self.cache.store_download(temp, &source.sha256)?;
        sink.emit(BuildEvent::Fetched {
            element: source.at.element.clone(),
            url: source.resolved_url.clone(),
            bytes: downloaded.bytes,
            millis: u64::try_from(downloaded.elapsed.as_millis()).unwrap_or(u64::MAX),
        });
        Ok(())
    }

    /// Builds the staged tree of `source` from its download and stores it at `staged`.
    async fn stage(&self, source: &DownloadSource, staged: PathBuf) -> Result<(), FetchError> {
        let download = self.cache.download_path(&source.sha256);
        let tree = self.cache.temp_dir()?;
        let into = tree.path().to_path_buf();
        let kind = source.kind.clone();
        let result = tokio::task::spawn_blocking(move || stage_file(&kind, &download, &into))
            .await
            .map_err(|e| ArchiveError::Io(std::io::Error::other(e.to_string())));
        result.and_then(|inner| inner).map_err(|e| FetchError::Archive {
            at: Box::new(source.at.clone()),
            url: source.resolved_url.clone(),
            source: e,
        })?;
        self.cache.store_staged(tree, &staged)
    }
}

/// Stages the downloaded file `download` into the empty directory `into`.
fn stage_file(kind: &DownloadKind, download: &Path, into: &Path) -> Result<(), ArchiveError> {
    match kind {
        DownloadKind::Tar { base_dir } => TarUnpacker::new(download).unpack(base_dir, into).map(|_| ()),
        DownloadKind::Remote { filename, executable } => {
            use std::os::unix::fs::PermissionsExt;
            let dest = into.join(filename);
            std::fs::copy(download, &dest)?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(if *executable { 0o755 } else { 0o644 }))?;
            Ok(())
        }
    }
}

/// The downloadable sources of the elements a build of `targets` plans.
fn collect(graph: &Graph, targets: &[ElementId]) -> Result<Vec<(ElementId, DownloadSource)>, FetchError> {
    let mut out = Vec::new();
    for id in graph.select(targets, Scope::All) {
        let element = graph.element(id);
        let Some(project) = graph.projects.get(element.project.0 as usize) else { continue };
        for index in 0..element.sources.len() {
            if let Some(source) = DownloadSource::from_element(element, index, project, &graph.sources)? {
                out.push((id, source));
            }
        }
    }
    Ok(out)
}
