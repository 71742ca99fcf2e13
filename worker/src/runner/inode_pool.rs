//! [`InodePool`]: empty directories and symlinks kept from finished
//! actions and renamed into the next action's staged tree instead of being
//! created.
//!
//! Key decision: an action root is staged as fresh directories and symlinks
//! (files and executables are hard links, which allocate no inode), and
//! removed when the action ends. On a busy worker that is tens of inodes
//! allocated and freed per action, and allocating an inode gets slower with
//! every inode freed recently (ext4 without a journal, a common set-up of
//! build machines' scratch disks, skips each inode freed in the last 5 to
//! 40 seconds one by one). Reusing them takes both off the path:
//! [`InodePool::create_dir`] and [`InodePool::create_symlink`] rename a
//! pooled directory, or a pooled symlink with the same target, into place
//! (falling back to `mkdir` and `symlink`), and [`InodePool::remove_tree`]
//! empties a tree bottom-up and renames its directories and symlinks back
//! into the pool (up to `capacity`; beyond that they are deleted). A pooled
//! directory is empty and reset to mode 0755 before it is reused; a tree
//! that cannot be emptied that way (a read-only directory, say) is deleted
//! the ordinary way.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Default bound on the directories and symlinks kept.
pub const DEFAULT_CAPACITY: usize = 8192;

/// Subdirectories the pooled entries are spread over.
const SHARDS: u64 = 64;

/// A runner's pool of empty directories and symlinks, under one directory
/// of its own.
#[derive(Debug)]
pub struct InodePool {
    dir: PathBuf,
    capacity: usize,
    free: Mutex<Pooled>,
    next_name: AtomicU64,
}

/// The names (numbers) of the pooled entries.
#[derive(Debug, Default)]
struct Pooled {
    directories: Vec<u64>,
    /// Symlinks by target.
    symlinks: HashMap<OsString, Vec<u64>>,
    count: usize,
}

impl InodePool {
    /// A pool under `dir` (emptied first) keeping at most `capacity`
    /// directories and symlinks.
    pub fn new(dir: impl Into<PathBuf>, capacity: usize) -> io::Result<Self> {
        let dir = dir.into();
        create_empty_dir(&dir)?;
        for shard in 0..SHARDS {
            fs::create_dir(dir.join(shard.to_string()))?;
        }
        Ok(InodePool { dir, capacity, free: Mutex::new(Pooled::default()), next_name: AtomicU64::new(0) })
    }

    /// Where the pooled entry `name` lives: spread over [`SHARDS`] directories
    /// so that no directory grows long (each rename searches its entries).
    fn path_of(&self, name: u64) -> PathBuf {
        self.dir.join((name % SHARDS).to_string()).join(name.to_string())
    }

    /// The number of directories and symlinks pooled now.
    pub fn len(&self) -> usize {
        self.free.lock().map_or(0, |free| free.count)
    }

    /// Whether the pool holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Creates the directory `path` (whose parent exists and which does
    /// not), from the pool when it has one. Blocking.
    pub fn create_dir(&self, path: &Path) -> io::Result<()> {
        let pooled = self.take(|free| free.directories.pop());
        if self.place(pooled, path) {
            return Ok(());
        }
        fs::create_dir(path)
    }

    /// Creates the symlink `path` to `target`, from the pool when it has one
    /// with that target. Blocking.
    pub fn create_symlink(&self, target: &Path, path: &Path) -> io::Result<()> {
        let pooled = self.take(|free| free.symlinks.get_mut(target.as_os_str()).and_then(Vec::pop));
        if self.place(pooled, path) {
            return Ok(());
        }
        std::os::unix::fs::symlink(target, path)
    }

    fn take(&self, pick: impl FnOnce(&mut Pooled) -> Option<u64>) -> Option<u64> {
        let mut free = self.free.lock().ok()?;
        let name = pick(&mut free)?;
        free.count -= 1;
        Some(name)
    }

    /// Renames the pooled entry `name` to `path`; false (and the entry
    /// deleted) when that fails.
    fn place(&self, name: Option<u64>, path: &Path) -> bool {
        let Some(name) = name else { return false };
        let source = self.path_of(name);
        if fs::rename(&source, path).is_ok() {
            return true;
        }
        let _ = fs::remove_dir(&source).or_else(|_| fs::remove_file(&source));
        false
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

    /// Empties `dir` bottom-up and moves it (and every directory and
    /// symlink in it) into the pool, or deletes them when the pool is full.
    fn empty_and_keep(&self, dir: &Path) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                self.empty_and_keep(&path)?;
            } else if file_type.is_symlink() && self.has_room() && !has_attributes(&path) {
                let target = fs::read_link(&path)?;
                self.keep(&path, |free, name| free.symlinks.entry(target.into_os_string()).or_default().push(name))?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        if !self.has_room() || has_attributes(dir) {
            return fs::remove_dir(dir);
        }
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))?;
        self.keep(dir, |free, name| free.directories.push(name))
    }

    fn has_room(&self) -> bool {
        self.free.lock().is_ok_and(|free| free.count < self.capacity)
    }

    /// Moves `path` into the pool under a new name, which `record` files.
    fn keep(&self, path: &Path, record: impl FnOnce(&mut Pooled, u64)) -> io::Result<()> {
        let name = self.next_name.fetch_add(1, Ordering::Relaxed);
        let pooled = self.path_of(name);
        fs::rename(path, &pooled)?;
        match self.free.lock() {
            Ok(mut free) => {
                record(&mut free, name);
                free.count += 1;
                Ok(())
            }
            Err(_) => fs::remove_dir(&pooled).or_else(|_| fs::remove_file(&pooled)),
        }
    }
}

impl Drop for InodePool {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Whether `path` (not followed) carries extended attributes, ACLs
/// included: such an entry is deleted rather than reused, so that nothing an
/// action set on it reaches a later action.
fn has_attributes(path: &Path) -> bool {
    !matches!(rustix::fs::llistxattr_query(path), Ok(0))
}

/// Makes `dir` an empty directory: deletes what is there, then creates it
/// (and its parents).
pub fn create_empty_dir(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs::create_dir_all(dir)
}

/// Creates the directory `path` from `pool` when there is one, else with
/// `mkdir`.
pub fn create_dir(pool: Option<&InodePool>, path: &Path) -> io::Result<()> {
    match pool {
        Some(pool) => pool.create_dir(path),
        None => fs::create_dir(path),
    }
}

/// Creates the symlink `path` to `target` from `pool` when there is one.
pub fn create_symlink(pool: Option<&InodePool>, target: &Path, path: &Path) -> io::Result<()> {
    match pool {
        Some(pool) => pool.create_symlink(target, path),
        None => std::os::unix::fs::symlink(target, path),
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
        let pool = InodePool::new(temp.path().join("pool"), 16).unwrap();
        let first = temp.path().join("first");
        tree(&first);
        fs::set_permissions(first.join("d"), fs::Permissions::from_mode(0o500)).unwrap();
        let inodes: Vec<u64> =
            ["", "a", "a/b", "a/b/c", "d"].iter().map(|p| fs::metadata(first.join(p)).unwrap().ino()).collect();
        let link = fs::symlink_metadata(first.join("a/link")).unwrap().ino();
        pool.remove_tree(&first);
        assert!(!first.exists());
        assert_eq!(pool.len(), 6, "all five directories and the symlink were kept");

        let other = temp.path().join("other");
        pool.create_symlink(Path::new("elsewhere"), &other).unwrap();
        assert_ne!(fs::symlink_metadata(&other).unwrap().ino(), link, "a symlink is reused only for its target");
        let same = temp.path().join("same");
        pool.create_symlink(Path::new("../d"), &same).unwrap();
        assert_eq!(fs::symlink_metadata(&same).unwrap().ino(), link);
        assert_eq!(fs::read_link(&same).unwrap(), Path::new("../d"));

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
        let pool = InodePool::new(temp.path().join("pool"), 2).unwrap();
        let root = temp.path().join("root");
        tree(&root);
        pool.remove_tree(&root);
        assert!(!root.exists());
        assert_eq!(pool.len(), 2, "bounded by the capacity");
        let pooled: usize = fs::read_dir(temp.path().join("pool")).unwrap().map(|shard| fs::read_dir(shard.unwrap().path()).unwrap().count()).sum();
        assert_eq!(pooled, 2, "the rest was deleted");

        let locked = temp.path().join("locked");
        tree(&locked);
        fs::set_permissions(locked.join("a/b"), fs::Permissions::from_mode(0o500)).unwrap();
        pool.remove_tree(&locked);
        assert!(!locked.exists(), "a read-only directory does not keep the tree on disk");
    }

    #[test]
    fn entries_carrying_extended_attributes_are_not_reused() {
        let temp = tempfile::tempdir().unwrap();
        let pool = InodePool::new(temp.path().join("pool"), 16).unwrap();
        let root = temp.path().join("root");
        tree(&root);
        let marked = std::ffi::CString::new(root.join("d").as_os_str().as_encoded_bytes()).unwrap();
        let value = b"left by an action";
        // SAFETY: valid NUL-terminated name and path, and a buffer of the given size.
        let set = unsafe { libc::setxattr(marked.as_ptr(), c"user.weir-test".as_ptr(), value.as_ptr().cast(), value.len(), 0) };
        if set != 0 {
            eprintln!("skipping: this filesystem takes no user xattrs ({})", io::Error::last_os_error());
            return;
        }
        pool.remove_tree(&root);
        assert!(!root.exists());
        assert_eq!(pool.len(), 5, "the four clean directories and the symlink were kept, not the marked one");
    }

    #[test]
    fn dropping_the_pool_removes_its_directory() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("pool");
        let pool = InodePool::new(&dir, 4).unwrap();
        let root = temp.path().join("root");
        tree(&root);
        pool.remove_tree(&root);
        drop(pool);
        assert!(!dir.exists());
    }
}
