//! [`ExecutableCopies`]: one private executable copy of each executable
//! input blob, hard-linked into action roots instead of copied per action.
//!
//! Key decisions: a CAS file never changes mode, so an executable input
//! needs an inode of its own with mode 0755. Before, every action copied
//! every executable input (a static busybox: 2 MB written and deleted per
//! action); now the copy is made once per digest under
//! `<work dir>/executables` — written under a temporary name and renamed,
//! so a concurrent action sees it whole or not at all — and then hard-linked
//! like any other input. A copy that a command changed in place (size,
//! mtime or mode differ after the run) is deleted, so the next action gets a
//! fresh one; the runner's check for changed store files works the same
//! way. The copies are bounded: past `max_bytes`, executables are copied per
//! action again. Leftovers of an earlier process are deleted at start.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use weir_proto::Digest;

/// Default bound on the bytes of executable copies kept.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The executable copies of one runner.
#[derive(Debug)]
pub struct ExecutableCopies {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes of the copies made (reserved before copying).
    used: Mutex<u64>,
    next_temp: AtomicU64,
}

impl ExecutableCopies {
    /// Copies under `dir` (emptied first), at most `max_bytes` of them.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> io::Result<Self> {
        let dir = dir.into();
        super::inode_pool::create_empty_dir(&dir)?;
        Ok(ExecutableCopies { dir, max_bytes, used: Mutex::new(0), next_temp: AtomicU64::new(0) })
    }

    fn path_of(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}-{}", digest.hash_hex(), digest.size()))
    }

    /// The executable copy of `digest`, made with `fill` (which writes the
    /// blob's content to the path it is given) if there is none yet; `None`
    /// when the bound is reached. Blocking.
    pub fn get(&self, digest: &Digest, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<Option<PathBuf>> {
        let path = self.path_of(digest);
        if fs::symlink_metadata(&path).is_ok() {
            return Ok(Some(path));
        }
        let size = digest.size();
        {
            let mut used = self.used.lock().map_err(|_| io::Error::other("executable copies lock poisoned"))?;
            if *used + size > self.max_bytes {
                return Ok(None);
            }
            *used += size;
        }
        let temp = self.dir.join(format!(".tmp-{}", self.next_temp.fetch_add(1, Ordering::Relaxed)));
        let made = fill(&temp)
            .and_then(|()| fs::set_permissions(&temp, fs::Permissions::from_mode(0o755)))
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(e) = made {
            let _ = fs::remove_file(&temp);
            self.release(size);
            return Err(e);
        }
        Ok(Some(path))
    }

    /// Deletes the copy of `digest` (a command changed it); the next action makes a new one.
    pub fn discard(&self, digest: &Digest) {
        if fs::remove_file(self.path_of(digest)).is_ok() {
            self.release(digest.size());
        }
    }

    fn release(&self, size: u64) {
        if let Ok(mut used) = self.used.lock() {
            *used = used.saturating_sub(size);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn write(content: &'static [u8]) -> impl FnOnce(&Path) -> io::Result<()> {
        move |path| fs::write(path, content)
    }

    #[test]
    fn one_executable_copy_per_digest_within_the_bound() {
        let temp = tempfile::tempdir().unwrap();
        let copies = ExecutableCopies::new(temp.path().join("x"), 10).unwrap();
        let tool = Digest::of(b"tool");
        let first = copies.get(&tool, write(b"tool")).unwrap().unwrap();
        let again = copies.get(&tool, |_| panic!("made twice")).unwrap().unwrap();
        assert_eq!(first, again);
        let meta = fs::metadata(&first).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o755);
        assert_eq!(fs::read(&first).unwrap(), b"tool");
        // 4 of 10 bytes used: a 7-byte blob does not fit, a 6-byte one does.
        assert!(copies.get(&Digest::of(b"seven!!"), write(b"seven!!")).unwrap().is_none());
        assert!(copies.get(&Digest::of(b"six!!!"), write(b"six!!!")).unwrap().is_some());
        // Discarding gives the room back.
        copies.discard(&tool);
        assert!(!first.exists());
        assert!(copies.get(&Digest::of(b"seven!!"), write(b"seven!!")).unwrap().is_none(), "6 + 7 > 10");
        copies.discard(&Digest::of(b"six!!!"));
        assert!(copies.get(&Digest::of(b"seven!!"), write(b"seven!!")).unwrap().is_some());
    }

    #[test]
    fn a_failed_copy_leaves_nothing_and_a_restart_starts_empty() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("x");
        let copies = ExecutableCopies::new(&dir, 100).unwrap();
        let tool = Digest::of(b"tool");
        assert!(copies.get(&tool, |_| Err(io::Error::other("source vanished"))).is_err());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        copies.get(&tool, write(b"tool")).unwrap().unwrap();
        drop(copies);
        let _copies = ExecutableCopies::new(&dir, 100).unwrap();
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }
}
