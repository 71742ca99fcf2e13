//! [`FilesystemStore`]: one file per blob under sharded directories.
//!
//! Why it exists: the durable CAS of a worker, and the source of hard links
//! when the runner stages an input root. Layout: `PATH/objects/HH/HASH_SIZE`
//! (HH the first two hex digits), uploads written to `PATH/tmp/` and renamed
//! into place, so a reader or a crash (even `kill -9`) never sees a partial
//! blob: a file under `objects/` is complete or absent. Streamed uploads
//! ([`BlobWriter`]) hash and write each chunk as it arrives. Content is hashed
//! before it is written; reads check the file size always and re-hash the
//! content when `verify_reads` is on, removing a blob that no longer matches.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use weir_proto::Digest;

use super::verify::verify_content;
use super::{BlobStore, BlobWriter, StoreError};

/// Configuration of a [`FilesystemStore`].
///
/// ```yaml
/// filesystem:
///   path: cas            # relative to the worker's --root
///   verify_reads: false
///   fsync: false
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemSpec {
    /// Directory holding the blobs; a relative path is taken relative to the
    /// worker's root directory. Created if absent.
    pub path: PathBuf,
    /// Re-hash every blob on read and remove it when it does not match
    /// (default `false`: only the file size is checked).
    #[serde(default)]
    pub verify_reads: bool,
    /// `fsync` each blob before it becomes visible (default `false`). Not
    /// needed to survive a killed process, only a power loss.
    #[serde(default)]
    pub fsync: bool,
}

/// Blobs as immutable files under sharded directories.
pub struct FilesystemStore {
    objects: PathBuf,
    tmp: PathBuf,
    verify_reads: bool,
    fsync: bool,
    stored: Arc<AtomicU64>,
}

impl FilesystemStore {
    /// Opens (creating if needed) the store at `root` (the already resolved
    /// `spec.path`), discarding uploads left half-written by a previous run.
    pub fn open(spec: &FilesystemSpec, root: &Path) -> Result<Self, StoreError> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        fs::create_dir_all(&objects)?;
        // All 256 shards up front: a write never has to create its directory.
        for shard in 0..=255u8 {
            let dir = objects.join(hex::encode([shard]));
            if !dir.is_dir() {
                fs::create_dir(&dir)?;
            }
        }
        if tmp.exists() {
            fs::remove_dir_all(&tmp)?;
        }
        fs::create_dir_all(&tmp)?;
        let stored = scan(&objects)?.iter().map(Digest::size).sum();
        Ok(FilesystemStore {
            objects,
            tmp,
            verify_reads: spec.verify_reads,
            fsync: spec.fsync,
            stored: Arc::new(AtomicU64::new(stored)),
        })
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        let hash = digest.hash_hex();
        self.objects.join(&hash[..2]).join(format!("{hash}_{}", digest.size()))
    }

    async fn blocking<T: Send + 'static>(
        job: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        tokio::task::spawn_blocking(job).await.map_err(|e| StoreError::Io(std::io::Error::other(e)))?
    }

    async fn drop_corrupt(&self, digest: &Digest) -> StoreError {
        let path = self.path_of(digest);
        if let Err(err) = self.remove(digest).await {
            tracing::warn!(%digest, %err, "could not remove corrupt blob");
        }
        tracing::error!(%digest, path = %path.display(), "stored blob is corrupt; removed");
        StoreError::Corrupt(*digest)
    }
}

/// Every blob under `objects` (file names `HASH_SIZE` in shard directories).
fn scan(objects: &Path) -> Result<Vec<Digest>, StoreError> {
    let mut out = Vec::new();
    for shard in fs::read_dir(objects)? {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(shard.path())? {
            let name = entry?.file_name();
            let parsed = name
                .to_str()
                .and_then(|n| n.split_once('_'))
                .and_then(|(h, s)| format!("{h}/{s}").parse::<Digest>().ok());
            match parsed {
                Some(digest) => out.push(digest),
                None => tracing::warn!(file = ?name, "ignoring a file that is not a blob"),
            }
        }
    }
    Ok(out)
}

/// Reads `limit` bytes from `offset` of `path`, checking its length first.
/// `Ok(None)` means the file has the wrong size (corrupt).
fn read_range(path: &Path, digest: Digest, offset: u64, limit: Option<u64>) -> Result<Option<Vec<u8>>, StoreError> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound(digest)),
        Err(err) => return Err(err.into()),
    };
    let len = file.metadata()?.len();
    if len != digest.size() {
        return Ok(None);
    }
    if offset > len {
        return Err(StoreError::OutOfRange { digest, offset });
    }
    let end = match limit {
        Some(limit) if limit > 0 => offset.saturating_add(limit).min(len),
        _ => len,
    };
    let want = (end - offset) as usize;
    let mut buf = vec![0u8; want];
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(&mut buf)?;
    Ok(Some(buf))
}

#[async_trait]
impl BlobStore for FilesystemStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        let paths: Vec<(Digest, PathBuf)> = digests.iter().map(|d| (*d, self.path_of(d))).collect();
        Self::blocking(move || {
            Ok(paths
                .into_iter()
                .filter(|(d, p)| fs::metadata(p).map(|m| m.len() != d.size()).unwrap_or(true))
                .map(|(d, _)| d)
                .collect())
        })
        .await
    }

    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        let path = self.path_of(digest);
        let d = *digest;
        if self.verify_reads {
            let whole = Self::blocking(move || read_range(&path, d, 0, None)).await?;
            let Some(whole) = whole else { return Err(self.drop_corrupt(digest).await) };
            let whole = Bytes::from(whole);
            return match verify_content(digest, &whole).await {
                Ok(()) => super::slice_range(digest, &whole, offset, limit),
                Err(StoreError::DigestMismatch { .. }) => Err(self.drop_corrupt(digest).await),
                Err(err) => Err(err),
            };
        }
        match Self::blocking(move || read_range(&path, d, offset, limit)).await? {
            Some(data) => Ok(Bytes::from(data)),
            None => Err(self.drop_corrupt(digest).await),
        }
    }

    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        let path = self.path_of(digest);
        let tmp = self.tmp.clone();
        let fsync = self.fsync;
        let stored = self.stored.clone();
        let digest = *digest;
        // One trip to the blocking pool: existence check, hash, write, rename.
        Self::blocking(move || {
            if fs::metadata(&path).map(|m| m.len() == digest.size()).unwrap_or(false) {
                return Ok(());
            }
            let actual = Digest::of(&data);
            if actual != digest {
                return Err(StoreError::DigestMismatch { expected: digest, actual });
            }
            let mut file = tempfile::NamedTempFile::new_in(&tmp)?;
            file.write_all(&data)?;
            if fsync {
                file.as_file().sync_all()?;
            }
            file.persist(&path).map_err(|e| StoreError::Io(e.error))?;
            stored.fetch_add(digest.size(), Ordering::Relaxed);
            Ok(())
        })
        .await
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.path_of(digest);
        fs::metadata(&path).ok().filter(|m| m.len() == digest.size()).map(|_| path)
    }

    fn stored_bytes(&self) -> Option<u64> {
        Some(self.stored.load(Ordering::Relaxed))
    }

    fn begin_write(&self, digest: &Digest) -> Result<Option<Box<dyn BlobWriter>>, StoreError> {
        let file = tempfile::NamedTempFile::new_in(&self.tmp)?;
        Ok(Some(Box::new(FilesystemWriter {
            digest: *digest,
            path: self.path_of(digest),
            fsync: self.fsync,
            stored: self.stored.clone(),
            committed: Arc::new(AtomicU64::new(0)),
            partial: Arc::new(Mutex::new(Some(Partial { file, hasher: Sha256::new(), len: 0 }))),
        })))
    }

    async fn remove(&self, digest: &Digest) -> Result<bool, StoreError> {
        match tokio::fs::remove_file(self.path_of(digest)).await {
            Ok(()) => {
                let size = digest.size();
                let _ = self.stored.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(size)));
                Ok(true)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let objects = self.objects.clone();
        Self::blocking(move || scan(&objects)).await
    }
}

/// The state of a streamed upload: the temporary file and the running hash.
struct Partial {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    len: u64,
}

/// A streamed upload into a [`FilesystemStore`]: each chunk is written to a
/// temporary file and hashed on the blocking pool as it arrives; commit
/// compares the hash and renames the file into place.
///
/// Cancel-safety: the state lives behind an `Arc`, so a chunk whose caller
/// was cancelled is either fully appended (and counted) or not at all.
struct FilesystemWriter {
    digest: Digest,
    path: PathBuf,
    fsync: bool,
    stored: Arc<AtomicU64>,
    committed: Arc<AtomicU64>,
    partial: Arc<Mutex<Option<Partial>>>,
}

impl FilesystemWriter {
    /// Runs `job` on the partial upload, on the blocking pool.
    async fn with_partial<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Partial) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let partial = self.partial.clone();
        FilesystemStore::blocking(move || {
            let mut guard = partial.lock().map_err(|_| StoreError::Io(std::io::Error::other("upload lock poisoned")))?;
            let partial = guard.as_mut().ok_or_else(|| StoreError::Io(std::io::Error::other("upload already committed")))?;
            job(partial)
        })
        .await
    }
}

#[async_trait]
impl BlobWriter for FilesystemWriter {
    fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        let committed = self.committed.clone();
        self.with_partial(move |p| {
            if let Err(err) = p.file.write_all(&data) {
                // Leave the file as it was before this chunk.
                let _ = p.file.as_file().set_len(p.len);
                let _ = p.file.seek(SeekFrom::Start(p.len));
                return Err(err.into());
            }
            p.hasher.update(&data);
            p.len += data.len() as u64;
            committed.store(p.len, Ordering::Release);
            Ok(())
        })
        .await
    }

    async fn reset(&mut self) -> Result<(), StoreError> {
        let committed = self.committed.clone();
        self.with_partial(move |p| {
            p.file.as_file().set_len(0)?;
            p.file.seek(SeekFrom::Start(0))?;
            p.hasher = Sha256::new();
            p.len = 0;
            committed.store(0, Ordering::Release);
            Ok(())
        })
        .await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let FilesystemWriter { digest, path, fsync, stored, partial, .. } = *self;
        FilesystemStore::blocking(move || {
            let taken = partial.lock().map_err(|_| StoreError::Io(std::io::Error::other("upload lock poisoned")))?.take();
            let p = taken.ok_or_else(|| StoreError::Io(std::io::Error::other("upload already committed")))?;
            let hash: [u8; 32] = p.hasher.finalize().into();
            let actual = Digest::new(hash, p.len);
            if actual != digest {
                return Err(StoreError::DigestMismatch { expected: digest, actual });
            }
            if fsync {
                p.file.as_file().sync_all()?;
            }
            p.file.persist(&path).map_err(|e| StoreError::Io(e.error))?;
            stored.fetch_add(digest.size(), Ordering::Relaxed);
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path, verify_reads: bool) -> FilesystemStore {
        let spec = FilesystemSpec { path: dir.to_path_buf(), verify_reads, fsync: false };
        FilesystemStore::open(&spec, dir).unwrap()
    }

    #[tokio::test]
    async fn round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::of(b"persistent");
        open(dir.path(), false).write(&digest, Bytes::from_static(b"persistent")).await.unwrap();
        let store = open(dir.path(), false);
        assert_eq!(store.read(&digest, 3, Some(4)).await.unwrap(), Bytes::from_static(b"sist"));
        assert_eq!(store.list().await.unwrap(), vec![digest]);
        assert!(store.local_path(&digest).is_some());
        assert_eq!(store.stored_bytes(), Some(10));
        store.remove(&digest).await.unwrap();
        assert_eq!(store.stored_bytes(), Some(0));
    }

    #[tokio::test]
    async fn rejects_bad_upload_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let digest = Digest::of(b"good");
        assert!(matches!(store.write(&digest, Bytes::from_static(b"evil")).await, Err(StoreError::DigestMismatch { .. })));
        assert_eq!(store.find_missing(&[digest]).await.unwrap(), vec![digest]);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn removes_a_blob_that_rotted_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), true);
        let digest = Digest::of(b"pristine");
        store.write(&digest, Bytes::from_static(b"pristine")).await.unwrap();
        let path = store.local_path(&digest).unwrap();
        fs::write(&path, b"pristinE").unwrap();
        assert!(matches!(store.read(&digest, 0, None).await, Err(StoreError::Corrupt(_))));
        assert_eq!(store.find_missing(&[digest]).await.unwrap(), vec![digest]);
    }

    #[tokio::test]
    async fn a_truncated_file_is_corrupt_even_without_verify_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let digest = Digest::of(b"long enough");
        store.write(&digest, Bytes::from_static(b"long enough")).await.unwrap();
        let path = store.local_path(&digest).unwrap();
        fs::write(&path, b"long").unwrap();
        assert!(matches!(store.read(&digest, 0, None).await, Err(StoreError::Corrupt(_))));
    }

    #[tokio::test]
    async fn streamed_uploads_verify_before_they_become_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let data = b"streamed in three chunks".to_vec();
        let digest = Digest::of(&data);
        let mut writer = store.begin_write(&digest).unwrap().expect("the filesystem store streams");
        writer.append(Bytes::copy_from_slice(b"garbage")).await.unwrap();
        writer.reset().await.unwrap();
        for chunk in data.chunks(9) {
            writer.append(Bytes::copy_from_slice(chunk)).await.unwrap();
            assert!(!store.has(&digest).await.unwrap(), "visible before commit");
        }
        assert_eq!(writer.committed(), data.len() as u64);
        writer.commit().await.unwrap();
        assert_eq!(store.read(&digest, 0, None).await.unwrap(), Bytes::from(data.clone()));
        assert_eq!(store.stored_bytes(), Some(data.len() as u64));

        let wanted = Digest::of(b"expected");
        let mut writer = store.begin_write(&wanted).unwrap().unwrap();
        writer.append(Bytes::from_static(b"unexpected")).await.unwrap();
        assert!(matches!(writer.commit().await, Err(StoreError::DigestMismatch { .. })));
        assert!(!store.has(&wanted).await.unwrap());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0, "temporary files left behind");
    }
}
