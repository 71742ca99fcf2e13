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
//! trusted without re-hashing; what a killed run left in `tmp/` is swept
//! once it is a day old. The staged key covers what changes the tree
//! (the `ref` and `base-dir`, or `filename` and `executable`), not the URL.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::{DownloadKind, DownloadSource, FetchError};

/// Version of the staged-tree layout; bump when staging changes.
const STAGED_LAYOUT: &str = "weir-staged-source/1";
/// Age after which a temporary entry is taken for the leftover of a killed run.
pub const STALE_TEMPORARY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

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

    /// Removes what runs killed mid-fetch left in `tmp/`: entries older than
    /// [`STALE_TEMPORARY`], so that a concurrent run's work is never touched.
    /// Best effort: errors are ignored.
    pub fn sweep_temporaries(&self) {
        let Ok(entries) = fs::read_dir(self.root.join("tmp")) else { return };
        for entry in entries.flatten() {
            let stale = entry.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age > STALE_TEMPORARY);
            if stale {
                let path = entry.path();
                let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::SourceRef;

    fn source(kind: DownloadKind, sha256: &str) -> DownloadSource {
        let at = SourceRef { element: "e.bst".into(), index: 0, kind: "tar".into(), provenance: String::new() };
        DownloadSource { at, url: "up:a".into(), resolved_url: "file:///a".into(), sha256: sha256.into(), kind }
    }

    #[test]
    fn staged_trees_are_keyed_by_what_changes_them_not_by_url() {
        let cache = SourceCache::new(Path::new("/c"));
        let tar = |base: &str| DownloadKind::Tar { base_dir: base.into() };
        let a = source(tar("*"), "aa");
        let mut moved = a.clone();
        moved.url = "other:a".into();
        moved.resolved_url = "http://127.0.0.1/a".into();
        assert_eq!(cache.staged_path(&a), cache.staged_path(&moved));
        assert_ne!(cache.staged_path(&a), cache.staged_path(&source(tar(""), "aa")));
        assert_ne!(cache.staged_path(&a), cache.staged_path(&source(tar("*"), "bb")));
        let remote = |exec| DownloadKind::Remote { filename: "f".into(), executable: exec };
        assert_ne!(cache.staged_path(&source(remote(true), "aa")), cache.staged_path(&source(remote(false), "aa")));
        assert!(cache.staged_path(&a).to_string_lossy().starts_with("/c/sources/staged/tar-"));
        assert_eq!(cache.download_path("aa"), Path::new("/c/sources/downloads/aa"));
    }

    #[test]
    fn downloads_and_trees_are_moved_into_place_and_old_temporaries_swept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SourceCache::new(dir.path());
        let file = cache.temp_file().unwrap();
        std::fs::write(file.path(), b"content").unwrap();
        let stored = cache.store_download(file, "abc").unwrap();
        assert_eq!(std::fs::read(stored).unwrap(), b"content");
        let staged = cache.staged_path(&source(DownloadKind::Tar { base_dir: "*".into() }, "abc"));
        for round in 0..2 {
            let tree = cache.temp_dir().unwrap();
            std::fs::write(tree.path().join("f"), format!("{round}")).unwrap();
            cache.store_staged(tree, &staged).unwrap();
        }
        assert_eq!(std::fs::read_to_string(staged.join("f")).unwrap(), "0", "the first complete tree is kept");
        // A fresh temporary survives the sweep (it may be another run's).
        let fresh = cache.temp_file().unwrap();
        cache.sweep_temporaries();
        assert!(fresh.path().exists());
        assert_eq!(std::fs::read_dir(dir.path().join("sources/tmp")).unwrap().count(), 1);
    }
}
