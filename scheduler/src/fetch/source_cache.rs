//! [`SourceCache`]: where downloaded files and staged source trees are kept
//! on the local disk, so that a second build downloads nothing.
//!
//! Layout under `<cache dir>/sources/`: `downloads/<sha256>` (each file
//! whose sha256 was verified, named by it — the `ref` is the key, so the
//! same file under two URLs is kept once), `staged/<kind>-<key>/` (the
//! tree a source stages: an unpacked archive, or the one `remote` file),
//! and `tmp/`. Key decision: everything is written under `tmp/` first and
//! renamed into place, so an interrupted fetch never leaves a partial file
//! or tree where a later run would take it for complete; a cached entry is
//! trusted without re-hashing. The staged key covers what changes the tree
//! (the `ref` and `base-dir`, or `filename` and `executable`), not the URL.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::{DownloadKind, DownloadSource, FetchError};

/// Version of the staged-tree layout; bump when staging changes.
const STAGED_LAYOUT: &str = "weir-staged-source/1";

/// The local source cache.
#[derive(Debug, Clone)]
pub struct SourceCache {
    root: PathBuf,
}

impl SourceCache {
    /// The source cache inside the weir cache directory `cache_dir`.
    pub fn new(cache_dir: &Path) -> SourceCache {
        SourceCache { root: cache_dir.join("sources") }
    }

    /// The cache's own directory (`<cache dir>/sources`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the verified download with this sha256 is kept.
    pub fn download_path(&self, sha256: &str) -> PathBuf {
        self.root.join("downloads").join(sha256)
    }

    /// Where the tree `source` stages is kept.
    pub fn staged_path(&self, source: &DownloadSource) -> PathBuf {
        let mut hasher = Sha256::new();
        let (kind, fields) = match &source.kind {
            DownloadKind::Tar { base_dir } => ("tar", vec![base_dir.as_str()]),
            DownloadKind::Remote { filename, executable } => ("remote", vec![filename.as_str(), if *executable { "x" } else { "-" }]),
        };
        for field in [STAGED_LAYOUT, kind, source.sha256.as_str()].into_iter().chain(fields) {
            hasher.update(field.as_bytes());
            hasher.update([0u8]);
        }
        self.root.join("staged").join(format!("{kind}-{}", hex::encode(hasher.finalize())))
    }

    /// A new temporary file beside the cache entries (removed when dropped).
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, FetchError> {
        let dir = self.tmp_dir()?;
        tempfile::NamedTempFile::new_in(&dir).map_err(|source| FetchError::Cache { path: dir, source })
    }

    /// A new temporary directory beside the cache entries (removed when dropped).
    pub fn temp_dir(&self) -> Result<tempfile::TempDir, FetchError> {
        let dir = self.tmp_dir()?;
        tempfile::TempDir::new_in(&dir).map_err(|source| FetchError::Cache { path: dir, source })
    }

    fn tmp_dir(&self) -> Result<PathBuf, FetchError> {
        let dir = self.root.join("tmp");
        create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Moves a verified download into place under its sha256.
    pub fn store_download(&self, file: tempfile::NamedTempFile, sha256: &str) -> Result<PathBuf, FetchError> {
        let path = self.download_path(sha256);
        if let Some(parent) = path.parent() {
            create_dir_all(parent)?;
        }
        file.persist(&path).map_err(|e| FetchError::Cache { path: path.clone(), source: e.error })?;
        Ok(path)
    }

    /// Moves a complete staged tree into place at `path` (from
    /// [`staged_path`](Self::staged_path)). If another run put one there
    /// first, that one is kept (both have the same content).
    pub fn store_staged(&self, tree: tempfile::TempDir, path: &Path) -> Result<(), FetchError> {
        if let Some(parent) = path.parent() {
            create_dir_all(parent)?;
        }
        let temp = tree.keep();
        match fs::rename(&temp, path) {
            Ok(()) => Ok(()),
            Err(_) if path.is_dir() => {
                let _ = fs::remove_dir_all(&temp);
                Ok(())
            }
            Err(source) => {
                let _ = fs::remove_dir_all(&temp);
                Err(FetchError::Cache { path: path.to_path_buf(), source })
            }
        }
    }
}

fn create_dir_all(dir: &Path) -> Result<(), FetchError> {
    fs::create_dir_all(dir).map_err(|source: io::Error| FetchError::Cache { path: dir.to_path_buf(), source })
}
