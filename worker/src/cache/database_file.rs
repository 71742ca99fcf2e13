//! [`DatabaseFile`]: the redb storage backend of `cache.redb`, which syncs
//! to disk only when the worker is configured to (`sync: always`).
//!
//! Why it exists: a durable redb commit writes its pages and header with
//! `pwrite` and then calls `fsync`. The writes alone already make a commit
//! survive a killed process (they are in the kernel's page cache the moment
//! `pwrite` returns, and the next open recovers from them); the `fsync`
//! only adds survival of a power loss or kernel crash, and costs
//! milliseconds per commit on most disks. With `sync: never` this backend
//! keeps every write and skips the `fsync`. Everything else is forwarded to
//! redb's own [`FileBackend`] (locks included).

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// `cache.redb` on disk (see the module doc).
#[derive(Debug)]
pub struct DatabaseFile {
    inner: FileBackend,
    sync: bool,
    syncs: Arc<AtomicU64>,
}

impl DatabaseFile {
    /// Opens (creating if needed) the database file at `path`; `sync`
    /// says whether redb's syncs reach the disk.
    pub fn open(path: &Path, sync: bool) -> io::Result<Self> {
        let file: File = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        let inner = FileBackend::new(file).map_err(io::Error::other)?;
        Ok(DatabaseFile { inner, sync, syncs: Arc::default() })
    }

    /// A counter of the syncs that reached the disk (for tests and metrics).
    pub fn sync_counter(&self) -> Arc<AtomicU64> {
        self.syncs.clone()
    }
}

impl StorageBackend for DatabaseFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        if !self.sync {
            return Ok(());
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, TableDefinition};

    use super::*;

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    /// Commits `key` durably through a database on `path`; returns the
    /// number of syncs that reached the disk.
    fn commit_one(path: &Path, sync: bool, key: u64) -> u64 {
        let file = DatabaseFile::open(path, sync).unwrap();
        let syncs = file.sync_counter();
        let db = redb::Builder::new().create_with_backend(file).unwrap();
        let before = syncs.load(Ordering::Relaxed);
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(key, key + 1).unwrap();
        txn.commit().unwrap();
        syncs.load(Ordering::Relaxed) - before
    }

    #[test]
    fn syncs_reach_the_disk_only_when_asked_and_commits_persist_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.redb");
        assert_eq!(commit_one(&path, false, 1), 0, "an unsynced database synced");
        assert!(commit_one(&path, true, 2) > 0, "a synced database did not sync its commit");
        assert_eq!(commit_one(&path, false, 3), 0);
        let db = redb::Builder::new().create_with_backend(DatabaseFile::open(&path, false).unwrap()).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(T).unwrap();
        for key in 1..=3u64 {
            assert_eq!(table.get(key).unwrap().map(|v| v.value()), Some(key + 1), "commit {key} lost on reopen");
        }
    }
}
