//! [`FilesystemWriter`]: a streamed upload into a [`super::FilesystemStore`],
//! written to a temporary file and hashed as it arrives, renamed into place
//! by [`BlobWriter::commit`] once the content matches the digest.
//!
//! Key decisions:
//! * Pipelined: appends are handed to the blocking pool as one job per
//!   batch of at least [`WRITE_BATCH`] bytes and the caller returns at once,
//!   so the next message is received and decoded while the previous batch is
//!   written and hashed. One job is in flight at a time (order is kept, and
//!   memory is bounded by about two batches).
//! * Small appends (clients that send 16–64 KiB messages) are gathered in
//!   memory up to [`WRITE_BATCH`] before they cost a trip to the blocking pool.
//! * A batch is written whole before any of it is hashed; a failed write
//!   truncates the file back, so the file and the hash always agree, and
//!   [`BlobWriter::committed`] falls back to what the file holds.
//! * One `fsync` at commit (when the store is configured with `fsync`).
//!
//! Cancel-safety: the only await before an append takes effect is on the
//! previous job; a call cancelled there has changed nothing, and a call that
//! got past it has handed its data over completely.

use std::io::{Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::task::JoinHandle;
use weir_proto::Digest;

use super::filesystem::Shelf;
use super::{BlobWriter, StoreError};

/// Appended bytes are handed to the blocking pool in batches of at least this many.
pub const WRITE_BATCH: usize = 1 << 20;

/// The temporary file and the running hash of what it holds.
struct Partial {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    len: u64,
}

impl Partial {
    /// Writes `chunks`, then hashes them; on a failed write the file is cut
    /// back to where it was and the hash is untouched.
    fn append(&mut self, chunks: &[Bytes]) -> Result<(), StoreError> {
        for chunk in chunks {
            if let Err(err) = self.file.write_all(chunk) {
                let _ = self.file.as_file().set_len(self.len);
                let _ = self.file.seek(SeekFrom::Start(self.len));
                return Err(err.into());
            }
        }
        for chunk in chunks {
            self.hasher.update(chunk);
            self.len += chunk.len() as u64;
        }
        Ok(())
    }

    fn reset(&mut self) -> Result<(), StoreError> {
        self.file.as_file().set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.hasher = Sha256::new();
        self.len = 0;
        Ok(())
    }
}

/// The shared upload state; `None` once committed.
type SharedPartial = Arc<Mutex<Option<Partial>>>;

fn with_partial<T>(
    partial: &Mutex<Option<Partial>>,
    job: impl FnOnce(&mut Partial) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut guard = partial.lock().map_err(|_| StoreError::Io(std::io::Error::other("upload lock poisoned")))?;
    let partial = guard.as_mut().ok_or_else(|| StoreError::Io(std::io::Error::other("upload already committed")))?;
    job(partial)
}

fn join_error(err: tokio::task::JoinError) -> StoreError {
    StoreError::Io(std::io::Error::other(err))
}

/// A streamed upload into a filesystem store (see the module doc).
pub struct FilesystemWriter {
    digest: Digest,
    shelf: Arc<Shelf>,
    partial: SharedPartial,
    /// Bytes handed over: written, in flight or pending.
    appended: u64,
    /// Appends not yet handed to the blocking pool.
    pending: Vec<Bytes>,
    pending_len: usize,
    in_flight: Option<JoinHandle<Result<(), StoreError>>>,
}

impl FilesystemWriter {
    /// An upload of `digest` into the temporary `file`, renamed into the
    /// store `shelf` on commit.
    pub(super) fn new(digest: Digest, file: tempfile::NamedTempFile, shelf: Arc<Shelf>) -> Self {
        FilesystemWriter {
            digest,
            shelf,
            partial: Arc::new(Mutex::new(Some(Partial { file, hasher: Sha256::new(), len: 0 }))),
            appended: 0,
            pending: Vec::new(),
            pending_len: 0,
            in_flight: None,
        }
    }

    /// Waits for the job in flight. When it failed, what it and the pending
    /// appends carried is forgotten: [`BlobWriter::committed`] becomes what
    /// the file holds, where the client can resume.
    async fn settle(&mut self) -> Result<(), StoreError> {
        let Some(job) = self.in_flight.as_mut() else { return Ok(()) };
        let result = job.await.map_err(join_error).and_then(|r| r);
        self.in_flight = None;
        if let Err(err) = result {
            self.pending.clear();
            self.pending_len = 0;
            self.appended = with_partial(&self.partial, |p| Ok(p.len)).unwrap_or(0);
            return Err(err);
        }
        Ok(())
    }

    /// Hands the pending appends to the blocking pool (none may be in flight).
    fn dispatch(&mut self) {
        let chunks = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let partial = self.partial.clone();
        self.in_flight = Some(tokio::task::spawn_blocking(move || with_partial(&partial, |p| p.append(&chunks))));
    }
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
        if self.pending_len + data.len() >= WRITE_BATCH {
            self.settle().await?;
        }
        self.appended += data.len() as u64;
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= WRITE_BATCH && self.in_flight.is_none() {
            self.dispatch();
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), StoreError> {
        if let Err(err) = self.settle().await {
            tracing::debug!(%err, "a write failed before the upload was restarted");
        }
        self.pending.clear();
        self.pending_len = 0;
        self.appended = 0;
        let partial = self.partial.clone();
        tokio::task::spawn_blocking(move || with_partial(&partial, Partial::reset)).await.map_err(join_error)?
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.settle().await?;
        let pending = std::mem::take(&mut self.pending);
        let FilesystemWriter { digest, shelf, partial, .. } = *self;
        tokio::task::spawn_blocking(move || {
            let taken = partial.lock().map_err(|_| StoreError::Io(std::io::Error::other("upload lock poisoned")))?.take();
            let mut p = taken.ok_or_else(|| StoreError::Io(std::io::Error::other("upload already committed")))?;
            p.append(&pending)?;
            let hash: [u8; 32] = p.hasher.finalize().into();
            let actual = Digest::new(hash, p.len);
            if actual != digest {
                return Err(StoreError::DigestMismatch { expected: digest, actual });
            }
            if shelf.fsync() {
                p.file.as_file().sync_all()?;
            }
            p.file.persist(shelf.path_of(&digest)).map_err(|e| StoreError::Io(e.error))?;
            shelf.record_stored(digest);
            Ok(())
        })
        .await
        .map_err(join_error)?
    }
}
