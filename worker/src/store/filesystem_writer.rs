//! [`FilesystemWriter`]: a streamed upload into a [`super::FilesystemStore`],
//! written to a temporary file and hashed as it arrives, renamed into place
//! by [`BlobWriter::commit`] once the content matches the digest.
//!
//! Key decisions:
//! * Pipelined on two lanes: appends are handed to the blocking pool in
//!   batches of at least [`WRITE_BATCH`] bytes (small client messages are
//!   gathered first), and each batch is written by one job while another
//!   hashes it, so writing and SHA-256 overlap each other and the receipt
//!   of the next messages. At most one batch is in flight per lane (order
//!   is kept, memory is bounded by about two batches).
//! * The temporary file is created by the first job, never on the async
//!   threads (creating a file can take milliseconds on a busy ext4).
//! * Blobs of at least [`DIRECT_MIN`] bytes are written with `O_DIRECT`
//!   where the filesystem allows it ([`super::upload_file`] says why) and
//!   the store is not configured for the page cache
//!   ([`super::filesystem::LargeBlobIo`]).
//! * A failed write discards the upload (the file is emptied, the hash
//!   restarted, [`BlobWriter::committed`] becomes 0): the hash may already
//!   cover the failed batch, and a client that asks `QueryWriteStatus`
//!   simply starts again. A client whose stream is merely cut off keeps
//!   everything that arrived.
//! * One `fsync` at commit when the store is configured to sync.
//!
//! Cancel-safety: the only awaits before an append takes effect are on the
//! jobs in flight; a call cancelled there has changed nothing, and a call
//! that got past them has handed its data over completely.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;
use weir_proto::Digest;

use super::filesystem::Shelf;
use super::upload_file::UploadFile;
use super::{BlobWriter, StoreError};

/// Appended bytes are handed to the blocking pool in batches of at least this many.
pub const WRITE_BATCH: usize = 1 << 20;
/// Batches of uploads written with `O_DIRECT` (larger writes suit the device).
const DIRECT_BATCH: usize = 4 << 20;
/// Uploads of blobs at least this large bypass the page cache (where allowed).
pub const DIRECT_MIN: u64 = 8 << 20;

/// The temporary file, created by the first job that needs it.
type SharedFile = Arc<Mutex<Option<UploadFile>>>;

fn io_error(message: &str) -> StoreError {
    StoreError::Io(std::io::Error::other(message.to_string()))
}

fn join_error(err: tokio::task::JoinError) -> StoreError {
    StoreError::Io(std::io::Error::other(err))
}

/// A streamed upload into a filesystem store (see the module doc).
pub struct FilesystemWriter {
    digest: Digest,
    shelf: Arc<Shelf>,
    file: SharedFile,
    /// The running hash when no hashing job holds it.
    hasher: Option<Sha256>,
    /// Bytes handed over: written, in flight or pending.
    appended: u64,
    /// Appends not yet handed to the blocking pool.
    pending: Vec<Bytes>,
    pending_len: usize,
    batch: usize,
    writing: Option<JoinHandle<Result<(), StoreError>>>,
    hashing: Option<JoinHandle<Sha256>>,
}

impl FilesystemWriter {
    /// An upload of `digest` into the store `shelf`.
    pub(super) fn new(digest: Digest, shelf: Arc<Shelf>) -> Self {
        let batch = if shelf.direct(&digest) { DIRECT_BATCH } else { WRITE_BATCH };
        FilesystemWriter {
            digest,
            shelf,
            file: Arc::default(),
            hasher: Some(Sha256::new()),
            appended: 0,
            pending: Vec::new(),
            pending_len: 0,
            batch,
            writing: None,
            hashing: None,
        }
    }

    /// Waits for both lanes. When the write failed, the upload is discarded
    /// (see the module doc) and the error returned.
    ///
    /// Cancel-safe: a job is forgotten only once it has been awaited to the
    /// end, so a call cancelled here leaves both lanes as they were.
    async fn settle(&mut self) -> Result<(), StoreError> {
        let written = match self.writing.as_mut() {
            Some(job) => job.await.map_err(join_error).and_then(|r| r),
            None => Ok(()),
        };
        self.writing = None;
        let hashed = match self.hashing.as_mut() {
            Some(job) => job.await.map(|hasher| self.hasher = Some(hasher)).map_err(join_error),
            None => Ok(()),
        };
        self.hashing = None;
        match written.and(hashed) {
            Ok(()) => Ok(()),
            Err(err) => {
                if let Err(again) = self.discard().await {
                    tracing::warn!(%again, "could not empty a failed upload");
                }
                Err(err)
            }
        }
    }

    /// Forgets everything appended (no job may be in flight).
    async fn discard(&mut self) -> Result<(), StoreError> {
        self.pending.clear();
        self.pending_len = 0;
        self.appended = 0;
        self.hasher = Some(Sha256::new());
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || match lock(&file)?.as_mut() {
            Some(file) => file.truncate(),
            None => Ok(()),
        })
        .await
        .map_err(join_error)?
    }

    /// Hands the pending appends to both lanes (none may be in flight).
    fn dispatch(&mut self) -> Result<(), StoreError> {
        let chunks = Arc::new(std::mem::take(&mut self.pending));
        self.pending_len = 0;
        let mut hasher = self.hasher.take().ok_or_else(|| io_error("upload hash lost"))?;
        let to_hash = chunks.clone();
        self.hashing = Some(tokio::task::spawn_blocking(move || {
            to_hash.iter().for_each(|chunk| hasher.update(chunk));
            hasher
        }));
        let (file, shelf, digest) = (self.file.clone(), self.shelf.clone(), self.digest);
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let mut guard = lock(&file)?;
            open_file(&mut guard, &shelf, &digest)?.append(&chunks)
        }));
        Ok(())
    }
}

fn lock(file: &SharedFile) -> Result<std::sync::MutexGuard<'_, Option<UploadFile>>, StoreError> {
    file.lock().map_err(|_| io_error("upload lock poisoned"))
}

/// The upload's file, created on first use.
fn open_file<'a>(slot: &'a mut Option<UploadFile>, shelf: &Shelf, digest: &Digest) -> Result<&'a mut UploadFile, StoreError> {
    if slot.is_none() {
        *slot = Some(UploadFile::new(shelf.temp_file_for(digest)?, shelf.direct(digest)));
    }
    slot.as_mut().ok_or_else(|| io_error("upload file lost"))
}

#[async_trait]
impl BlobWriter for FilesystemWriter {
    fn committed(&self) -> u64 {
        self.appended
    }

    async fn append(&mut self, data: Bytes) -> Result<(), StoreError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.pending_len + data.len() >= self.batch {
            self.settle().await?;
        }
        self.appended += data.len() as u64;
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= self.batch {
            self.dispatch()?;
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), StoreError> {
        if let Err(err) = self.settle().await {
            tracing::debug!(%err, "a write failed before the upload was restarted");
        }
        self.discard().await
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.settle().await?;
        let pending = std::mem::take(&mut self.pending);
        let mut hasher = self.hasher.take().ok_or_else(|| io_error("upload hash lost"))?;
        let FilesystemWriter { digest, shelf, file, .. } = *self;
        tokio::task::spawn_blocking(move || {
            pending.iter().for_each(|chunk| hasher.update(chunk));
            let mut guard = lock(&file)?;
            let len = guard.as_ref().map_or(0, UploadFile::len) + pending.iter().map(|c| c.len() as u64).sum::<u64>();
            let actual = Digest::new(hasher.finalize().into(), len);
            if actual != digest {
                return Err(StoreError::DigestMismatch { expected: digest, actual });
            }
            let upload = open_file(&mut guard, &shelf, &digest)?;
            upload.append(&pending)?;
            let Some(upload) = guard.take() else { return Err(io_error("upload file lost")) };
            let done = upload.finish()?;
            if shelf.fsync() {
                done.as_file().sync_all()?;
            }
            done.persist(shelf.path_of(&digest)).map_err(|e| StoreError::Io(e.error))?;
            shelf.record_stored(digest);
            Ok(())
        })
        .await
        .map_err(join_error)?
    }
}
