//! [`DirectoryPool`]: empty directories kept from finished actions and
//! renamed into the next action's staged tree instead of being created.
//!
//! Key decision: an action root is staged as fresh directories (files and
//! executables are hard links, which allocate no inode), and removed when
//! the action ends. On a busy worker that is tens of directory inodes
//! allocated and freed per action, and allocating an inode gets slower with
//! every inode freed recently (ext4 without a journal, the usual set-up of
//! build machines' scratch disks, skips each inode freed in the last 5 to
//! 40 seconds one by one). Reusing directories takes both off the path:
//! [`DirectoryPool::create_dir`] renames a pooled directory into place (it
//! falls back to `mkdir`), and [`DirectoryPool::remove_tree`] empties a tree
//! bottom-up and renames its directories back into the pool (up to
//! `capacity`; beyond that they are deleted). A pooled directory is empty
//! and reset to mode 0755 before it is reused; a tree that cannot be
//! emptied that way (a read-only directory, say) is deleted the ordinary
//! way.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Default bound on the directories kept.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A runner's pool of empty directories, under one directory of its own.
#[derive(Debug)]
pub struct DirectoryPool {
    dir: PathBuf,
    capacity: usize,
    /// Names (numbers) of the pooled directories.
    free: Mutex<Vec<u64>>,
    next_name: AtomicU64,
}

impl DirectoryPool {
    /// A pool under `dir` (emptied first) keeping at most `capacity`
    /// directories.
    pub fn new(dir: impl Into<PathBuf>, capacity: usize) -> io::Result<Self> {
        let dir = dir.into();
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(&dir)?;
        Ok(DirectoryPool { dir, capacity, free: Mutex::new(Vec::new()), next_name: AtomicU64::new(0) })
    }

    /// The number of directories pooled now.
    pub fn len(&self) -> usize {
        self.free.lock().map_or(0, |free| free.len())
    }

    /// Whether the pool holds no directory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates the directory `path` (whose parent exists and which does
    /// not), from the pool when it has one. Blocking.
    pub fn create_dir(&self, path: &Path) -> io::Result<()> {
        let pooled = self.free.lock().ok().and_then(|mut free| free.pop());
        if let Some(name) = pooled {
            let source = self.dir.join(name.to_string());
            if fs::rename(&source, path).is_ok() {
                return Ok(());
            }
            let _ = fs::remove_dir(&source);
        }
        fs::create_dir(path)
    }

    /// Deletes the tree at `root` (a directory), keeping its directories for
    /// reuse while there is room. Blocking; never fails (what cannot be
    /// removed is reported in the log).
    pub fn remove_tree(&self, root: &Path) {
        match self.empty_and_keep(root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => remove_tree_plainly(root),
        }
    }

    /// Empties `dir` bottom-up and moves it (and every directory in it) into
    /// the pool, or deletes it when the pool is full.
    fn empty_and_keep(&self, dir: &Path) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                self.empty_and_keep(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        self.keep(dir)
    }

    /// Moves the empty directory `dir` into the pool, or deletes it.
    fn keep(&self, dir: &Path) -> io::Result<()> {
        let has_room = self.free.lock().is_ok_and(|free| free.len() < self.capacity);
        if !has_room {
            return fs::remove_dir(dir);
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        let name = self.next_name.fetch_add(1, Ordering::Relaxed);
        fs::rename(dir, self.dir.join(name.to_string()))?;
        match self.free.lock() {
            Ok(mut free) => free.push(name),
            Err(_) => fs::remove_dir(self.dir.join(name.to_string()))?,
        }
        Ok(())
    }
}

impl Drop for DirectoryPool {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Creates `path` from `pool` when there is one, else with `mkdir`.
pub fn create_dir(pool: Option<&DirectoryPool>, path: &Path) -> io::Result<()> {
    match pool {
        Some(pool) => pool.create_dir(path),
        None => fs::create_dir(path),
    }
}

/// Removes a tree, making read-only directories writable first.
pub fn remove_tree_plainly(dir: &Path) {
    match fs::remove_dir_all(dir) {
        Ok(()) => return,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(_) => {}
    }
    make_writable(dir);
    if let Err(e) = fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "could not remove action directory");
    }
}

fn make_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else { return };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(meta.permissions().mode() | 0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("a/b/c")).unwrap();
        fs::create_dir_all(root.join("d")).unwrap();
        fs::write(root.join("a/b/file"), b"x").unwrap();
        std::os::unix::fs::symlink("../d", root.join("a/link")).unwrap();
    }

    #[test]
    fn removed_directories_are_reused_empty_and_writable() {
        let temp = tempfile::tempdir().unwrap();
        let pool = DirectoryPool::new(temp.path().join("pool"), 16).unwrap();
        let first = temp.path().join("first");
        tree(&first);
        fs::set_permissions(first.join("d"), fs::Permissions::from_mode(0o500)).unwrap();
        let inodes: Vec<u64> =
            ["", "a", "a/b", "a/b/c", "d"].iter().map(|p| fs::metadata(first.join(p)).unwrap().ino()).collect();
        pool.remove_tree(&first);
        assert!(!first.exists());
        assert_eq!(pool.len(), 5, "all five directories were kept");

        let second = temp.path().join("second");
        pool.create_dir(&second).unwrap();
        for name in ["x", "y", "z", "w", "v"] {
            pool.create_dir(&second.join(name)).unwrap();
        }
        assert!(pool.is_empty());
        let reused: Vec<u64> = ["", "x", "y", "z", "w"].iter().map(|p| fs::metadata(second.join(p)).unwrap().ino()).collect();
        for ino in &reused {
            assert!(inodes.contains(ino), "a pooled directory was renamed into place");
        }
        for name in ["", "x", "y", "z", "w", "v"] {
            let meta = fs::metadata(second.join(name)).unwrap();
            assert_eq!(meta.mode() & 0o777, 0o755, "{name}: reset to 0755");
        }
        assert_eq!(fs::read_dir(&second).unwrap().count(), 5, "reused directories arrive empty");
        assert_eq!(fs::read_dir(second.join("x")).unwrap().count(), 0);
    }

    #[test]
    fn a_full_pool_deletes_and_an_unremovable_tree_is_deleted_plainly() {
        let temp = tempfile::tempdir().unwrap();
        let pool = DirectoryPool::new(temp.path().join("pool"), 2).unwrap();
        let root = temp.path().join("root");
        tree(&root);
        pool.remove_tree(&root);
        assert!(!root.exists());
        assert_eq!(pool.len(), 2, "bounded by the capacity");

        let locked = temp.path().join("locked");
        tree(&locked);
        fs::set_permissions(locked.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        pool.remove_tree(&locked);
        assert!(!locked.exists(), "a read-only directory does not keep the tree on disk");
    }

    #[test]
    fn dropping_the_pool_removes_its_directory() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("pool");
        let pool = DirectoryPool::new(&dir, 4).unwrap();
        let root = temp.path().join("root");
        tree(&root);
        pool.remove_tree(&root);
        drop(pool);
        assert!(!dir.exists());
    }
}
