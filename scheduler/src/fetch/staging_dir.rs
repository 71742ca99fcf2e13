//! [`StagingDir`]: a fresh directory that archive members are written into,
//! never outside it.
//!
//! Key decisions: every path is resolved component by component against what
//! this staging wrote so far (it starts empty, so that record is the whole
//! truth): `..` may not climb above the root, an absolute member name is
//! refused, and a member below a symlink the archive created is written
//! where the link points only if that stays inside (an absolute link
//! target, or one leading out, is an escape — Python's `tar` extraction
//! filter refuses the same). Symlinks themselves are stored as they are,
//! whatever their target: they are only followed inside the sandbox. An
//! existing entry is replaced, never written through. Files get mode 0755
//! or 0644 (only the owner-execute bit of the archive counts, as in
//! BuildStream).

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::ArchiveError;

/// Most symlinks followed while resolving one member name.
const MAX_SYMLINK_HOPS: usize = 40;

/// What this staging wrote at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Written {
    File,
    Directory,
    Symlink(String),
}

/// A directory being filled with archive members.
#[derive(Debug)]
pub struct StagingDir {
    root: PathBuf,
    written: HashMap<String, Written>,
}

impl StagingDir {
    /// Stages into `root`, which must exist and be empty.
    pub fn new(root: &Path) -> StagingDir {
        StagingDir { root: root.to_path_buf(), written: HashMap::new() }
    }

    /// The relative path `name` lands at (`""` for the root itself); with
    /// `follow_last`, a symlink in the last component is followed too.
    pub fn resolve(&self, name: &str, follow_last: bool) -> Result<String, ArchiveError> {
        let escape = || ArchiveError::Escape { member: name.to_string() };
        if name.starts_with('/') {
            return Err(escape());
        }
        let mut queue: VecDeque<String> = name.split('/').map(str::to_string).collect();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(component) = queue.pop_front() {
            match component.as_str() {
                "" | "." => continue,
                ".." => {
                    resolved.pop().ok_or_else(escape)?;
                    continue;
                }
                _ => {}
            }
            resolved.push(component);
            let is_last = queue.iter().all(|c| c.is_empty() || c == ".");
            if is_last && !follow_last {
                break;
            }
            if let Some(Written::Symlink(target)) = self.written.get(&resolved.join("/")) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS || target.starts_with('/') {
                    return Err(escape());
                }
                resolved.pop();
                for (i, part) in target.split('/').enumerate() {
                    queue.insert(i, part.to_string());
                }
            }
        }
        Ok(resolved.join("/"))
    }

    /// Creates the directory `name` (and its parents).
    pub fn create_dir(&mut self, name: &str) -> Result<(), ArchiveError> {
        let path = self.resolve(name, true)?;
        if path.is_empty() {
            return Ok(());
        }
        if matches!(self.written.get(&path), Some(Written::File | Written::Symlink(_))) {
            self.remove(&path)?;
        }
        self.make_parents(&format!("{path}/"))?;
        Ok(())
    }

    /// Writes a regular file `name` with the content of `data`.
    pub fn write_file(&mut self, name: &str, data: &mut dyn Read, executable: bool) -> Result<(), ArchiveError> {
        let path = self.prepare_leaf(name)?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file_mode(executable))
            .open(self.root.join(&path))?;
        io::copy(data, &mut file)?;
        self.written.insert(path, Written::File);
        Ok(())
    }

    /// Creates the symlink `name` → `target` (stored as it is).
    pub fn symlink(&mut self, name: &str, target: &str) -> Result<(), ArchiveError> {
        let path = self.prepare_leaf(name)?;
        std::os::unix::fs::symlink(target, self.root.join(&path))?;
        self.written.insert(path, Written::Symlink(target.to_string()));
        Ok(())
    }

    /// Makes `name` a hard link to the file `target` written earlier, then
    /// gives it the link member's mode — which, the inode being shared, the
    /// target gets too, as with Python's tarfile. `Ok(false)` (nothing
    /// written) when no file was written at `target`. A target outside the
    /// staging directory is an error.
    pub fn hard_link(&mut self, name: &str, target: &str, executable: bool) -> Result<bool, ArchiveError> {
        let refused = |reason| ArchiveError::HardLink { member: name.to_string(), target: target.to_string(), reason };
        let source = self.resolve(target, false).map_err(|_| refused("it points outside the staging directory"))?;
        if self.written.get(&source) != Some(&Written::File) {
            return Ok(false);
        }
        let path = self.resolve(name, false)?;
        if path != source {
            let path = self.prepare_leaf(name)?;
            let (from, to) = (self.root.join(&source), self.root.join(&path));
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to)?;
            }
            self.written.insert(path, Written::File);
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.root.join(&path), fs::Permissions::from_mode(file_mode(executable)))?;
        Ok(true)
    }

    /// Resolves a file or symlink name, creates its parents and removes
    /// whatever is at it; returns the relative path.
    fn prepare_leaf(&mut self, name: &str) -> Result<String, ArchiveError> {
        let path = self.resolve(name, false)?;
        if path.is_empty() {
            return Err(ArchiveError::Escape { member: name.to_string() });
        }
        if self.written.contains_key(&path) {
            self.remove(&path)?;
        }
        self.make_parents(&path)?;
        Ok(path)
    }

    /// Creates every directory above `path` (a trailing `/` includes the last component).
    fn make_parents(&mut self, path: &str) -> Result<(), ArchiveError> {
        let mut segments: Vec<&str> = path.split('/').collect();
        segments.pop();
        let mut current = String::new();
        for segment in segments {
            if !current.is_empty() {
                current.push('/');
            }
            current.push_str(segment);
            match self.written.get(&current) {
                Some(Written::Directory) => continue,
                Some(_) => self.remove(&current)?,
                None => {}
            }
            match fs::create_dir(self.root.join(&current)) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e.into()),
                _ => {}
            }
            self.written.insert(current.clone(), Written::Directory);
        }
        Ok(())
    }

    /// Removes what was written at `path` (a directory with its contents).
    fn remove(&mut self, path: &str) -> Result<(), ArchiveError> {
        let full = self.root.join(path);
        match self.written.remove(path) {
            Some(Written::Directory) => {
                fs::remove_dir_all(&full)?;
                let inside = format!("{path}/");
                self.written.retain(|p, _| !p.starts_with(&inside));
            }
            Some(_) => fs::remove_file(&full)?,
            None => {}
        }
        Ok(())
    }
}

/// The mode a staged file gets: only the owner-execute bit of the archive counts.
fn file_mode(executable: bool) -> u32 {
    if executable {
        0o755
    } else {
        0o644
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staging() -> (tempfile::TempDir, StagingDir) {
        let dir = tempfile::tempdir().unwrap();
        let staging = StagingDir::new(dir.path());
        (dir, staging)
    }

    fn escapes(result: Result<impl std::fmt::Debug, ArchiveError>) -> bool {
        matches!(result, Err(ArchiveError::Escape { .. }))
    }

    #[test]
    fn dot_dot_absolute_and_escaping_symlinks_are_refused() {
        let (dir, mut staging) = staging();
        assert!(escapes(staging.write_file("../escape", &mut &b"x"[..], false)));
        assert!(escapes(staging.write_file("a/../../escape", &mut &b"x"[..], false)));
        assert!(escapes(staging.write_file("/etc/passwd", &mut &b"x"[..], false)));
        staging.symlink("up", "..").unwrap();
        staging.symlink("abs", "/tmp").unwrap();
        assert!(escapes(staging.write_file("up/escape", &mut &b"x"[..], false)));
        assert!(escapes(staging.write_file("abs/escape", &mut &b"x"[..], false)));
        assert!(escapes(staging.create_dir("up/d")));
        // A chain of links that loops is refused, not followed forever.
        staging.symlink("loop1", "loop2").unwrap();
        staging.symlink("loop2", "loop1").unwrap();
        assert!(escapes(staging.write_file("loop1/x", &mut &b"x"[..], false)));
        assert!(!dir.path().parent().unwrap().join("escape").exists());
        // The links themselves were stored unchanged.
        assert_eq!(fs::read_link(dir.path().join("abs")).unwrap(), Path::new("/tmp"));
    }

    #[test]
    fn inner_dot_dot_and_symlinks_inside_are_followed() {
        let (dir, mut staging) = staging();
        staging.create_dir("usr/lib").unwrap();
        staging.symlink("lib", "usr/lib").unwrap();
        staging.write_file("lib/libc.so", &mut &b"libc"[..], true).unwrap();
        staging.write_file("a/../b.txt", &mut &b"b"[..], false).unwrap();
        assert_eq!(fs::read(dir.path().join("usr/lib/libc.so")).unwrap(), b"libc");
        assert_eq!(fs::read(dir.path().join("b.txt")).unwrap(), b"b");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(dir.path().join("usr/lib/libc.so")).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::metadata(dir.path().join("b.txt")).unwrap().permissions().mode() & 0o777, 0o644);
    }

    #[test]
    fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
        let (dir, mut staging) = staging();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        staging.symlink("f", victim.to_str().unwrap()).unwrap();
        staging.write_file("f", &mut &b"new"[..], false).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(fs::read_to_string(dir.path().join("f")).unwrap(), "new");
    }

    #[test]
    fn hard_links_copy_earlier_files_and_refuse_outside_targets() {
        let (dir, mut staging) = staging();
        staging.write_file("a/file", &mut &b"data"[..], false).unwrap();
        assert!(staging.hard_link("b/link", "a/file", true).unwrap());
        assert_eq!(fs::read(dir.path().join("b/link")).unwrap(), b"data");
        // The link's mode is the file's too (one inode), as Python's tarfile leaves it.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(dir.path().join("a/file")).unwrap().permissions().mode() & 0o777, 0o755);
        assert!(!staging.hard_link("c", "not/extracted", false).unwrap());
        assert!(matches!(staging.hard_link("d", "../../outside", false), Err(ArchiveError::HardLink { .. })));
        assert!(matches!(staging.hard_link("d", "/etc/passwd", false), Err(ArchiveError::HardLink { .. })));
    }
}
