//! [`FilesystemStore`]: one file per blob under sharded directories.
//!
//! Why it exists: the durable CAS of a worker, and the source of hard links
//! when the runner stages an input root. Layout: `PATH/objects/HH/HASH_SIZE`
//! (HH the first two hex digits). An upload is written to a temporary file
//! `.tmp*` in its blob's shard directory and renamed into place, so a reader
//! or a crash (even `kill -9`) never sees a partial blob: a file named
//! `HASH_SIZE` is complete or absent, and temporary files left by a crash are
//! deleted at the next start. (Temporary files live beside their blob rather
//! than in one directory so that new inodes are spread over the block
//! groups of the 256 shard directories, and the rename stays within one
//! directory: with one `tmp/` directory, ext4's inode allocation for that
//! directory's group dominated the cost of storing small blobs.) Content is hashed
//! before it is written; streamed uploads ([`FilesystemWriter`]) hash and
//! write chunk by chunk as they arrive.
//!
//! Key decisions:
//! * Existence is answered from a [`BlobIndex`] in memory (filled by a scan
//!   at open, kept by writes and removals, corrected by reads that find a
//!   file gone), so `FindMissingBlobs` makes no system call.
//! * Reads check the file size always and, with `verify_reads`, re-hash the
//!   whole file in a streaming pass *before* the first byte is returned,
//!   removing a blob that no longer matches: no byte of an unverified blob
//!   is ever handed out (the price: a verified read reads the file twice,
//!   the second time from the page cache).
//! * Streamed reads ([`BlobStore::read_chunks`]) read the file chunk by chunk
//!   with positional reads on the blocking pool, one chunk ahead of the
//!   consumer, so a large blob is never held in memory.
//! * Blobs of at least [`DIRECT_MIN`] bytes bypass the page cache: streamed
//!   uploads write them and streamed reads read them with `O_DIRECT`
//!   ([`super::direct_io`] says why), unless [`LargeBlobIo::PageCache`].

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use weir_proto::Digest;

use super::blob_index::BlobIndex;
use super::direct_io::{read_exact_direct, set_direct};
use super::filesystem_writer::{FilesystemWriter, DIRECT_MIN};
use super::{byte_range, BlobStore, BlobWriter, ChunkStream, StoreError};

/// How many chunks a streamed read reads ahead of its consumer (besides the
/// one being consumed) ...
const READ_AHEAD: usize = 1;
/// ... and a direct one, whose reads wait for the device: several in flight
/// keep it busy (a page-cache read is a copy, one ahead is enough).
const DIRECT_READ_AHEAD: usize = 7;

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

/// How a filesystem store moves blobs of at least [`DIRECT_MIN`] bytes
/// (the worker's `large_blob_io` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LargeBlobIo {
    /// `O_DIRECT` for streamed uploads and streamed reads (the default):
    /// writes cost no fresh page-cache pages, reads come from the device.
    #[default]
    Direct,
    /// Through the page cache like small blobs: a read soon after the write
    /// is served from memory, the write fills fresh page-cache pages.
    PageCache,
}

/// Blobs as immutable files under sharded directories.
pub struct FilesystemStore {
    shelf: Arc<Shelf>,
}

/// The store's directories and bookkeeping, shared with its blocking jobs
/// and its upload writers.
pub(super) struct Shelf {
    objects: PathBuf,
    verify_reads: bool,
    fsync: bool,
    large_blob_io: LargeBlobIo,
    stored: AtomicU64,
    index: BlobIndex,
}

impl Shelf {
    /// The file of `digest`.
    pub(super) fn path_of(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.objects, digest)
    }

    /// Whether `digest` is written and streamed with `O_DIRECT`.
    pub(super) fn direct(&self, digest: &Digest) -> bool {
        self.large_blob_io == LargeBlobIo::Direct && digest.size() >= DIRECT_MIN
    }

    /// Whether uploads are synced to disk before they become visible.
    pub(super) fn fsync(&self) -> bool {
        self.fsync
    }

    /// A new temporary file beside the blob `digest` (see the module doc).
    pub(super) fn temp_file_for(&self, digest: &Digest) -> Result<tempfile::NamedTempFile, StoreError> {
        let path = self.path_of(digest);
        let shard = path.parent().unwrap_or(&self.objects);
        Ok(tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(shard)?)
    }

    /// Records that `digest` was just made visible: counted once, then indexed.
    pub(super) fn record_stored(&self, digest: Digest) {
        if !self.index.contains(&digest) {
            self.stored.fetch_add(digest.size(), Ordering::Relaxed);
        }
        self.index.insert(digest);
    }

    /// Stores one blob (blocking): hash, write to a temporary file, rename.
    fn put(&self, digest: Digest, data: &[u8]) -> Result<(), StoreError> {
        let path = self.path_of(&digest);
        // The index may only say "held" wrongly if a file was deleted behind
        // the store's back: confirm before skipping the write.
        if self.index.contains(&digest) && fs::metadata(&path).map(|m| m.len() == digest.size()).unwrap_or(false) {
            return Ok(());
        }
        let actual = Digest::of(data);
        if actual != digest {
            return Err(StoreError::DigestMismatch { expected: digest, actual });
        }
        if !self.put_unnamed(&path, data)? {
            let mut file = self.temp_file_for(&digest)?;
            file.write_all(data)?;
            if self.fsync {
                file.as_file().sync_all()?;
            }
            file.persist(&path).map_err(|e| StoreError::Io(e.error))?;
        }
        self.record_stored(digest);
        Ok(())
    }

    /// Writes `data` into an unnamed file of `path`'s shard directory
    /// (`O_TMPFILE`) and then gives it the name `path` (`linkat`): the blob is
    /// never visible half-written, a crash leaves nothing behind, and it
    /// costs one directory entry instead of a temporary name and a rename.
    /// `Ok(false)` where the filesystem has no unnamed files or the link
    /// fails (the caller then uses a named temporary file).
    fn put_unnamed(&self, path: &Path, data: &[u8]) -> Result<bool, StoreError> {
        use std::os::unix::fs::OpenOptionsExt;
        let shard = path.parent().unwrap_or(&self.objects);
        let mut file = match fs::OpenOptions::new().write(true).mode(0o600).custom_flags(libc::O_TMPFILE).open(shard) {
            Ok(file) => file,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        file.write_all(data)?;
        if self.fsync {
            file.sync_all()?;
        }
        let unnamed = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        let linked = rustix::fs::linkat(rustix::fs::CWD, unnamed.as_str(), rustix::fs::CWD, path, rustix::fs::AtFlags::SYMLINK_FOLLOW);
        // EEXIST: another writer stored the same blob first (same digest,
        // same content). Any other failure (no `/proc`, say): the caller
        // writes the blob again through a named temporary file.
        Ok(matches!(linked, Ok(()) | Err(rustix::io::Errno::EXIST)))
    }
}

/// Blobs of a batch go to the blocking pool in groups of about this many bytes
/// (one trip per group rather than per blob) ...
const BATCH_GROUP: usize = 256 << 10;
/// ... and this many groups at a time (writes to a busy disk block: several
/// in flight keep it and the cores busy).
const BATCH_GROUPS_IN_FLIGHT: usize = 8;

impl FilesystemStore {
    /// Opens (creating if needed) the store at `root` (the already resolved
    /// `spec.path`), discarding uploads left half-written by a previous run;
    /// large blobs use the default [`LargeBlobIo`].
    pub fn open(spec: &FilesystemSpec, root: &Path) -> Result<Self, StoreError> {
        Self::open_with(spec, root, LargeBlobIo::default())
    }

    /// [`FilesystemStore::open`] with the given handling of large blobs.
    pub fn open_with(spec: &FilesystemSpec, root: &Path, large_blob_io: LargeBlobIo) -> Result<Self, StoreError> {
        let objects = root.join("objects");
        fs::create_dir_all(&objects)?;
        spread_subdirectories(&objects);
        // All 256 shards up front: a write never has to create its directory.
        for shard in 0..=255u8 {
            let dir = objects.join(hex::encode([shard]));
            if !dir.is_dir() {
                fs::create_dir(&dir)?;
            }
        }
        // Uploads of earlier versions went to `tmp/`: discard any left there.
        let old_tmp = root.join("tmp");
        if old_tmp.exists() {
            fs::remove_dir_all(&old_tmp)?;
        }
        let held = scan(&objects, Leftovers::Delete)?;
        let stored = held.iter().map(Digest::size).sum();
        Ok(FilesystemStore {
            shelf: Arc::new(Shelf {
                objects,
                verify_reads: spec.verify_reads,
                fsync: spec.fsync,
                large_blob_io,
                stored: AtomicU64::new(stored),
                index: BlobIndex::new(held),
            }),
        })
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        self.shelf.path_of(digest)
    }

    pub(super) async fn blocking<T: Send + 'static>(
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

    /// Runs `job` on the blob's opened and checked file (see [`open_blob`])
    /// in one trip to the blocking pool; keeps the index right when the file
    /// is gone and removes a corrupt blob.
    async fn with_blob<T: Send + 'static>(
        &self,
        digest: &Digest,
        job: impl FnOnce(fs::File) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path_of(digest);
        let (d, verify) = (*digest, self.shelf.verify_reads);
        let outcome = Self::blocking(move || match open_blob(&path, d, verify)? {
            Some(file) => job(file).map(Some),
            None => Ok(None),
        })
        .await;
        self.settle(digest, outcome).await
    }

    /// What reading `digest` gave, as the caller gets it: a damaged file
    /// (`Ok(None)`) is dropped and reported missing, and a file gone from
    /// under the index leaves the index.
    async fn settle<T>(&self, digest: &Digest, outcome: Result<Option<T>, StoreError>) -> Result<T, StoreError> {
        match outcome {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(self.drop_corrupt(digest).await),
            Err(err) => {
                if matches!(err, StoreError::NotFound(_)) {
                    self.shelf.index.remove(digest);
                }
                Err(err)
            }
        }
    }
}

/// Marks `dir` as a top of a directory hierarchy (`FS_TOPDIR_FL`, `chattr
/// +T`), so that ext2/3/4 place its subdirectories (the shards, created
/// next) in block groups spread over the disk, as for top-level
/// directories, instead of next to `dir`.
///
/// Why: a new blob's inode is taken from its shard directory's block group,
/// and ext4 without a journal skips recently freed inodes (still measurable
/// 40 s after a deletion here), looking each one up. Shards
/// created next to a store that was just deleted (a wiped cache directory,
/// a benchmark's previous run) land in the groups full of such inodes, and
/// every new blob then pays a scan of them: measured here, 55–68 MB/s of
/// `BatchUpdateBlobs` instead of 390–415 MB/s. Other filesystems ignore or
/// refuse the flag; a refusal is only logged.
fn spread_subdirectories(dir: &Path) {
    use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
    let outcome = fs::File::open(dir).and_then(|file| {
        let flags = ioctl_getflags(&file)?;
        if flags.contains(IFlags::TOPDIR) {
            return Ok(());
        }
        Ok(ioctl_setflags(&file, flags | IFlags::TOPDIR)?)
    });
    if let Err(err) = outcome {
        tracing::debug!(dir = %dir.display(), %err, "cannot mark the blob directory as a top directory");
    }
}

/// `OBJECTS/HH/HASH_SIZE`, the file of `digest`.
fn blob_path(objects: &Path, digest: &Digest) -> PathBuf {
    let mut hex_hash = [0u8; 64];
    // Cannot fail: the buffer is exactly twice the hash length.
    let _ = hex::encode_to_slice(digest.hash_bytes(), &mut hex_hash);
    let hash = std::str::from_utf8(&hex_hash).unwrap_or_default();
    let mut path = PathBuf::with_capacity(objects.as_os_str().len() + 90);
    path.push(objects);
    path.push(&hash[..2]);
    path.push(format!("{hash}_{}", digest.size()));
    path
}

/// The name prefix of temporary upload files.
const TEMP_PREFIX: &str = ".tmp";

/// What [`scan`] does with temporary upload files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Leftovers {
    /// Delete them (at start-up: they are what a crash left).
    Delete,
    /// Skip them (while serving: uploads in progress).
    Skip,
}

/// Every blob under `objects` (file names `HASH_SIZE` in shard directories).
fn scan(objects: &Path, leftovers: Leftovers) -> Result<Vec<Digest>, StoreError> {
    let mut out = Vec::new();
    for shard in fs::read_dir(objects)? {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(shard.path())? {
            let entry = entry?;
            let name = entry.file_name();
            if name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
                if leftovers == Leftovers::Delete {
                    fs::remove_file(entry.path())?;
                }
                continue;
            }
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

/// Splits `items` into runs of about [`BATCH_GROUP`] bytes (by `size`), in
/// order: a batch call costs one trip to the blocking pool per run.
fn batch_groups<T>(items: impl IntoIterator<Item = T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut group_bytes = 0;
    for item in items {
        if groups.is_empty() || group_bytes >= BATCH_GROUP {
            groups.push(Vec::new());
            group_bytes = 0;
        }
        group_bytes += size(&item);
        if let Some(group) = groups.last_mut() {
            group.push(item);
        }
    }
    groups
}

/// Runs `job` on every item, each group in one trip to the blocking pool,
/// [`BATCH_GROUPS_IN_FLIGHT`] groups at a time; one result per item, in order.
async fn in_groups<T, R>(
    groups: Vec<Vec<T>>,
    job: impl Fn(T) -> Result<R, StoreError> + Clone + Send + 'static,
) -> Vec<Result<R, StoreError>>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let results: Vec<Vec<Result<R, StoreError>>> = futures::stream::iter(groups)
        .map(|group| {
            let job = job.clone();
            let count = group.len();
            async move {
                let done = tokio::task::spawn_blocking(move || group.into_iter().map(job).collect::<Vec<_>>()).await;
                done.unwrap_or_else(|e| {
                    let message = e.to_string();
                    (0..count).map(|_| Err(StoreError::Io(std::io::Error::other(message.clone())))).collect()
                })
            }
        })
        .buffered(BATCH_GROUPS_IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// Opens the file of `digest` and checks its length and, with `verify`, its
/// content (one streaming hash pass). `Ok(None)` means the file is corrupt.
fn open_blob(path: &Path, digest: Digest, verify: bool) -> Result<Option<fs::File>, StoreError> {
    let file = match fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::NotFound(digest)),
        Err(err) => return Err(err.into()),
    };
    if file.metadata()?.len() != digest.size() {
        return Ok(None);
    }
    if verify && Digest::of_reader(&file)? != digest {
        return Ok(None);
    }
    Ok(Some(file))
}

/// Reads `len` bytes at `position` of `file`.
fn read_at(file: &fs::File, position: u64, len: usize) -> Result<Bytes, StoreError> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, position)?;
    Ok(Bytes::from(buf))
}

/// The bytes `start..end` of `file` as a stream of chunks of at most `chunk`
/// bytes, each read on the blocking pool, [`READ_AHEAD`] (direct:
/// [`DIRECT_READ_AHEAD`]) chunks ahead;
/// with `direct`, `file` is open with `O_DIRECT` (see [`super::direct_io`]).
fn file_chunks(file: fs::File, start: u64, end: u64, chunk: usize, direct: bool) -> ChunkStream {
    let file = Arc::new(file);
    let chunk = chunk.max(1) as u64;
    let positions = std::iter::successors(Some(start), move |p| Some(p + chunk)).take_while(move |p| *p < end);
    futures::stream::iter(positions)
        .map(move |position| {
            let file = file.clone();
            let len = (end - position).min(chunk) as usize;
            FilesystemStore::blocking(move || {
                if direct {
                    Ok(read_exact_direct(&file, position, len)?)
                } else {
                    read_at(&file, position, len)
                }
            })
        })
        .buffered(if direct { DIRECT_READ_AHEAD } else { READ_AHEAD } + 1)
        .boxed()
}

#[async_trait]
impl BlobStore for FilesystemStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        Ok(self.shelf.index.missing(digests))
    }

    /// Confirms an index hit with a `stat` (one blob: cheap), so that an
    /// upload is never skipped for a file deleted behind the store's back.
    async fn has(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.shelf.index.contains(digest) && self.local_path(digest).is_some())
    }

    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        let d = *digest;
        self.with_blob(digest, move |file| {
            let (start, end) = byte_range(&d, d.size(), offset, limit)?;
            read_at(&file, start, (end - start) as usize)
        })
        .await
    }

    async fn read_chunks(
        &self,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
        chunk: usize,
    ) -> Result<ChunkStream, StoreError> {
        // Large blobs were written past the page cache and are read past it
        // too (unless a verifying read has just pulled the file into it).
        let want_direct = self.shelf.direct(digest) && !self.shelf.verify_reads;
        let file = self.with_blob(digest, Ok).await?;
        let direct = want_direct && set_direct(&file, true).is_ok();
        let (start, end) = byte_range(digest, digest.size(), offset, limit)?;
        Ok(file_chunks(file, start, end, chunk, direct))
    }

    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        let shelf = self.shelf.clone();
        let digest = *digest;
        // One trip to the blocking pool: existence check, hash, write, rename.
        Self::blocking(move || shelf.put(digest, &data)).await
    }

    /// Groups the blobs into runs of about [`BATCH_GROUP`] bytes, each stored
    /// in one trip to the blocking pool, [`BATCH_GROUPS_IN_FLIGHT`] at a time.
    async fn write_batch(&self, blobs: Vec<(Digest, Bytes)>) -> Vec<Result<(), StoreError>> {
        let shelf = self.shelf.clone();
        in_groups(batch_groups(blobs, |(_, data)| data.len()), move |(digest, data)| shelf.put(digest, &data)).await
    }

    /// Reads the blobs in runs of about [`BATCH_GROUP`] bytes, each in one
    /// trip to the blocking pool, [`BATCH_GROUPS_IN_FLIGHT`] at a time (a
    /// trip per blob made thread hand-offs a fifth of a batch read's CPU);
    /// each blob is checked as [`BlobStore::read`] checks it.
    async fn read_batch(&self, digests: &[Digest]) -> Vec<Result<Bytes, StoreError>> {
        let shelf = self.shelf.clone();
        let groups = batch_groups(digests.iter().copied(), |digest| digest.size() as usize);
        let read = in_groups(groups, move |digest| match open_blob(&shelf.path_of(&digest), digest, shelf.verify_reads)? {
            Some(file) => read_at(&file, 0, digest.size() as usize).map(Some),
            None => Ok(None),
        })
        .await;
        let mut out = Vec::with_capacity(read.len());
        for (digest, result) in digests.iter().zip(read) {
            out.push(self.settle(digest, result).await);
        }
        out
    }

    fn local_path(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.path_of(digest);
        match fs::metadata(&path) {
            Ok(meta) if meta.len() == digest.size() => Some(path),
            Ok(_) => None,
            Err(_) => {
                self.shelf.index.remove(digest);
                None
            }
        }
    }

    fn stored_bytes(&self) -> Option<u64> {
        Some(self.shelf.stored.load(Ordering::Relaxed))
    }

    fn begin_write(&self, digest: &Digest) -> Result<Option<Box<dyn BlobWriter>>, StoreError> {
        Ok(Some(Box::new(FilesystemWriter::new(*digest, self.shelf.clone()))))
    }

    async fn remove(&self, digest: &Digest) -> Result<bool, StoreError> {
        // Out of the index first: a concurrent FindMissingBlobs may then
        // report it missing a moment early, never present after removal.
        self.shelf.index.remove(digest);
        match tokio::fs::remove_file(self.path_of(digest)).await {
            Ok(()) => {
                let size = digest.size();
                let _ =
                    self.shelf.stored.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(size)));
                Ok(true)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    async fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let objects = self.shelf.objects.clone();
        Self::blocking(move || scan(&objects, Leftovers::Skip)).await
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    /// Temporary upload files anywhere under the store's directory.
    fn temp_files(dir: &Path) -> usize {
        fs::read_dir(dir.join("objects"))
            .unwrap()
            .flat_map(|shard| fs::read_dir(shard.unwrap().path()).unwrap())
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .count()
    }

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

    #[test]
    fn a_small_blob_is_written_unnamed_then_linked_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let digest = Digest::of(b"small");
        let path = store.shelf.path_of(&digest);
        assert!(store.shelf.put_unnamed(&path, b"small").unwrap(), "this filesystem has O_TMPFILE");
        assert_eq!(fs::read(&path).unwrap(), b"small");
        // A second writer of the same blob finds it there: no error, no change.
        assert!(store.shelf.put_unnamed(&path, b"small").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"small");
        let shard: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(shard, vec![path], "nothing but the blob in its shard");
    }

    #[tokio::test]
    async fn rejects_bad_upload_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let digest = Digest::of(b"good");
        assert!(matches!(store.write(&digest, Bytes::from_static(b"evil")).await, Err(StoreError::DigestMismatch { .. })));
        assert_eq!(store.find_missing(&[digest]).await.unwrap(), vec![digest]);
        assert_eq!(temp_files(dir.path()), 0, "temporary files left behind");
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
        assert_eq!(temp_files(dir.path()), 0, "temporary files left behind");
    }

    /// Deterministic bytes that differ at every offset (for range checks).
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    async fn collect(stream: ChunkStream) -> Result<Vec<Bytes>, StoreError> {
        stream.collect::<Vec<_>>().await.into_iter().collect()
    }

    #[tokio::test]
    async fn streams_ranges_of_a_blob_larger_than_one_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let data = pattern(10_000);
        let digest = Digest::of(&data);
        store.write(&digest, Bytes::from(data.clone())).await.unwrap();
        for (offset, limit) in [(0u64, None), (1234, Some(5000u64)), (9_999, None), (10_000, None), (3000, Some(1))] {
            let chunks = collect(store.read_chunks(&digest, offset, limit, 1000).await.unwrap()).await.unwrap();
            assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= 1000), "chunk sizes {:?}", chunks.iter().map(Bytes::len).collect::<Vec<_>>());
            let got: Vec<u8> = chunks.concat();
            let end = limit.map_or(data.len(), |l| (offset + l) as usize);
            assert_eq!(got, &data[offset as usize..end], "offset {offset} limit {limit:?}");
        }
        assert!(matches!(store.read_chunks(&digest, 10_001, None, 1000).await, Err(StoreError::OutOfRange { .. })));
        assert!(matches!(store.read_chunks(&Digest::of(b"absent"), 0, None, 1000).await, Err(StoreError::NotFound(_))));
    }

    #[tokio::test]
    async fn a_verifying_store_refuses_to_stream_a_corrupt_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), true);
        let data = pattern(50_000);
        let digest = Digest::of(&data);
        store.write(&digest, Bytes::from(data.clone())).await.unwrap();
        // Intact: streams, ranges included.
        let got = collect(store.read_chunks(&digest, 100, Some(20_000), 4096).await.unwrap()).await.unwrap().concat();
        assert_eq!(got, &data[100..20_100]);
        // One byte flipped near the end, outside the range asked for: still
        // refused before any chunk, and the blob is gone.
        let path = store.local_path(&digest).unwrap();
        let mut rotten = data.clone();
        rotten[49_000] ^= 1;
        fs::write(&path, &rotten).unwrap();
        assert!(matches!(store.read_chunks(&digest, 0, Some(10), 4096).await, Err(StoreError::Corrupt(_))));
        assert_eq!(store.find_missing(&[digest]).await.unwrap(), vec![digest]);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn batch_reads_answer_each_blob_in_order_across_groups() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        // Enough bytes for several groups of BATCH_GROUP.
        let blobs: Vec<Bytes> = (0..40u8).map(|i| Bytes::from(vec![i; 20_000 + i as usize])).collect();
        let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of(b)).collect();
        let stored = store.write_batch(digests.iter().copied().zip(blobs.iter().cloned()).collect()).await;
        assert!(stored.iter().all(Result::is_ok));
        let (gone, rotten, absent) = (digests[3], digests[17], Digest::of(b"never stored"));
        fs::remove_file(store.local_path(&gone).unwrap()).unwrap();
        fs::write(store.local_path(&rotten).unwrap(), b"short").unwrap();

        let mut asked = digests.clone();
        asked.push(absent);
        let read = store.read_batch(&asked).await;
        assert_eq!(read.len(), asked.len());
        for (i, result) in read.iter().enumerate() {
            match asked[i] {
                d if d == gone || d == absent => assert!(matches!(result, Err(StoreError::NotFound(_))), "blob {i}"),
                d if d == rotten => assert!(matches!(result, Err(StoreError::Corrupt(_))), "blob {i}"),
                _ => assert_eq!(result.as_ref().unwrap(), &blobs[i], "blob {i}"),
            }
        }
        // The deleted and the corrupt blob are no longer reported present.
        assert_eq!(store.find_missing(&[gone, rotten, digests[0]]).await.unwrap(), vec![gone, rotten]);
    }

    #[tokio::test]
    async fn the_index_forgets_a_file_deleted_behind_its_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let digest = Digest::of(b"short-lived");
        store.write(&digest, Bytes::from_static(b"short-lived")).await.unwrap();
        let path = store.local_path(&digest).unwrap();
        fs::remove_file(&path).unwrap();
        assert!(matches!(store.read(&digest, 0, None).await, Err(StoreError::NotFound(_))));
        assert_eq!(store.find_missing(&[digest]).await.unwrap(), vec![digest]);
        // Uploading it again stores it again (the write does not trust the index alone).
        store.write(&digest, Bytes::from_static(b"short-lived")).await.unwrap();
        assert_eq!(store.read(&digest, 0, None).await.unwrap(), Bytes::from_static(b"short-lived"));
        // A reopened store finds what is on disk.
        let reopened = open(dir.path(), false);
        assert!(reopened.find_missing(&[digest]).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_stale_index_entry_does_not_swallow_an_upload() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let digest = Digest::of(b"vanishing");
        store.write(&digest, Bytes::from_static(b"vanishing")).await.unwrap();
        fs::remove_file(store.path_of(&digest)).unwrap();
        assert!(!store.has(&digest).await.unwrap(), "has() trusted a stale index entry");
        store.write(&digest, Bytes::from_static(b"vanishing")).await.unwrap();
        assert_eq!(store.read(&digest, 0, None).await.unwrap(), Bytes::from_static(b"vanishing"));
    }

    #[tokio::test]
    async fn streamed_uploads_of_mixed_chunk_sizes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let data = pattern(3 * super::super::filesystem_writer::WRITE_BATCH + 12_345);
        let digest = Digest::of(&data);
        let mut writer = store.begin_write(&digest).unwrap().unwrap();
        let mut offset = 0;
        // Small appends (gathered) and large ones (dispatched at once), interleaved.
        for (i, size) in [100_000usize, 1_600_000, 7, 64 * 1024].iter().cycle().enumerate() {
            if offset == data.len() || i > 1000 {
                break;
            }
            let end = (offset + size).min(data.len());
            writer.append(Bytes::copy_from_slice(&data[offset..end])).await.unwrap();
            offset = end;
            assert_eq!(writer.committed(), offset as u64);
        }
        assert!(!store.has(&digest).await.unwrap());
        writer.commit().await.unwrap();
        let back = collect(store.read_chunks(&digest, 0, None, 1 << 20).await.unwrap()).await.unwrap().concat();
        assert!(back == data, "content differs after a streamed upload");
        assert_eq!(temp_files(dir.path()), 0, "temporary files left behind");
    }

    #[tokio::test]
    async fn large_blobs_round_trip_direct_and_through_the_page_cache() {
        for io in [LargeBlobIo::Direct, LargeBlobIo::PageCache] {
            large_blob_round_trip(io).await;
        }
    }

    async fn large_blob_round_trip(io: LargeBlobIo) {
        let dir = tempfile::tempdir().unwrap();
        let spec = FilesystemSpec { path: dir.path().to_path_buf(), verify_reads: false, fsync: false };
        let store = FilesystemStore::open_with(&spec, dir.path(), io).unwrap();
        assert_eq!(store.shelf.direct(&Digest::new([0; 32], DIRECT_MIN)), io == LargeBlobIo::Direct);
        // Past the direct-I/O threshold, and not a whole number of blocks.
        let data = pattern(DIRECT_MIN as usize + 3 * 4096 + 1001);
        let digest = Digest::of(&data);
        let mut writer = store.begin_write(&digest).unwrap().unwrap();
        for chunk in data.chunks(1_000_003) {
            writer.append(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        writer.commit().await.unwrap();
        assert_eq!(fs::metadata(store.local_path(&digest).unwrap()).unwrap().len(), data.len() as u64);
        let end = data.len() as u64;
        for (offset, limit) in [(0u64, None), (4095, Some(3_000_000u64)), (end - 1001, None), (12_345, Some(1))] {
            let got = collect(store.read_chunks(&digest, offset, limit, 2 << 20).await.unwrap()).await.unwrap().concat();
            let stop = limit.map_or(data.len(), |l| (offset + l) as usize);
            assert!(got == data[offset as usize..stop], "offset {offset} limit {limit:?}: content differs");
        }
        // A reopened store sees the same blob.
        assert!(open(dir.path(), false).find_missing(&[digest]).await.unwrap().is_empty());
        assert_eq!(temp_files(dir.path()), 0, "temporary files left behind");
    }

    #[tokio::test]
    async fn shard_directories_are_spread_where_the_filesystem_can() {
        use rustix::fs::{ioctl_getflags, ioctl_setflags, IFlags};
        let dir = tempfile::tempdir().unwrap();
        // Whether this filesystem takes the flag at all (ext4 does, tmpfs does not).
        let probe = dir.path().join("probe");
        fs::create_dir(&probe).unwrap();
        let probe = fs::File::open(&probe).unwrap();
        let supported = ioctl_getflags(&probe).and_then(|f| ioctl_setflags(&probe, f | IFlags::TOPDIR)).is_ok();
        let _store = open(dir.path(), false);
        let objects = fs::File::open(dir.path().join("objects")).unwrap();
        let marked = ioctl_getflags(&objects).map(|f| f.contains(IFlags::TOPDIR)).unwrap_or(false);
        assert_eq!(marked, supported, "objects/ should carry FS_TOPDIR_FL exactly where the filesystem allows it");
    }

    #[tokio::test]
    async fn appends_cancelled_while_waiting_for_the_previous_batch_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let data = pattern(DIRECT_MIN as usize + 777);
        let digest = Digest::of(&data);
        let mut writer = store.begin_write(&digest).unwrap().unwrap();
        let mut cancelled = 0;
        for chunk in data.chunks(1 << 20) {
            loop {
                let before = writer.committed();
                // Polled once: when a batch is still being written and hashed,
                // the append is dropped while it waits for it.
                match tokio::time::timeout(std::time::Duration::ZERO, writer.append(Bytes::copy_from_slice(chunk))).await {
                    Ok(result) => {
                        result.unwrap();
                        break;
                    }
                    Err(_) => {
                        cancelled += 1;
                        assert_eq!(writer.committed(), before, "a cancelled append changed the upload");
                    }
                }
            }
        }
        // Hashing a batch takes milliseconds, copying the next chunks far less.
        assert!(cancelled > 0, "no append was ever cancelled: the test did not test anything");
        writer.commit().await.unwrap();
        let back = collect(store.read_chunks(&digest, 0, None, 1 << 20).await.unwrap()).await.unwrap().concat();
        assert!(back == data, "content differs after cancelled appends ({cancelled} cancelled)");
    }

    #[tokio::test]
    async fn batch_writes_answer_per_blob_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        // Enough bytes for several groups; every fifth blob lies about its content.
        let blobs: Vec<(Digest, Bytes)> = (0..40usize)
            .map(|i| {
                let data = Bytes::from(pattern(100_000 + i));
                let digest = if i % 5 == 0 { Digest::of(b"something else") } else { Digest::of(&data) };
                (digest, data)
            })
            .collect();
        let digests: Vec<Digest> = blobs.iter().map(|(d, _)| *d).collect();
        let results = store.write_batch(blobs).await;
        assert_eq!(results.len(), 40);
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), i % 5 != 0, "blob {i}: {result:?}");
        }
        let missing = store.find_missing(&digests).await.unwrap();
        assert_eq!(missing, vec![Digest::of(b"something else"); 8]);
        assert_eq!(store.read(&digests[1], 0, None).await.unwrap(), Bytes::from(pattern(100_001)));
    }

    #[tokio::test]
    async fn temporary_files_left_by_a_crash_are_deleted_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), false);
        let batch = super::super::filesystem_writer::WRITE_BATCH;
        let data = pattern(3 * batch);
        let digest = Digest::of(&data);
        let mut writer = store.begin_write(&digest).unwrap().unwrap();
        // The second batch waits for the first to be written: the file exists.
        writer.append(Bytes::copy_from_slice(&data[..batch])).await.unwrap();
        writer.append(Bytes::copy_from_slice(&data[batch..2 * batch])).await.unwrap();
        // A crash: the writer is never committed nor dropped.
        std::mem::forget(writer);
        assert_eq!(temp_files(dir.path()), 1);
        assert!(store.list().await.unwrap().is_empty(), "a temporary file listed as a blob");
        let reopened = open(dir.path(), false);
        assert_eq!(temp_files(dir.path()), 0);
        assert_eq!(reopened.find_missing(&[digest]).await.unwrap(), vec![digest]);
    }
}
