//! Reading a Merkle tree from disk the way buildbox-casd captures a `local`
//! source: regular files (content and the owner execute bit `mode & 0o100`),
//! symlinks (target verbatim, never followed), directories (empty ones
//! kept). Nothing else about an entry — mtime, ownership, other mode bits —
//! reaches the digest.
//!
//! Key decision: anything the REAPI model cannot represent faithfully is an
//! error rather than something skipped: non-UTF-8 names or targets, sockets,
//! FIFOs and device nodes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::arena::{Arena, DirId, Node};
use super::{MerkleError, MerkleTree};
use crate::name::{validate_name, NameError};
use crate::Digest;

/// What a walk gathers: the tree, the content location of each file digest
/// (the first path seen), and the directories still to read.
struct Walk {
    arena: Arena,
    paths: BTreeMap<Digest, PathBuf>,
    pending: Vec<(PathBuf, DirId)>,
}

/// See [`MerkleTree::from_path`].
pub(super) fn read_path(path: &Path) -> Result<MerkleTree, MerkleError> {
    let followed = fs::metadata(path).map_err(|source| io_error(path, source))?;
    if followed.is_dir() {
        return read_dir_tree(path);
    }
    let invalid = |reason| MerkleError::InvalidName { path: path.display().to_string(), reason };
    let name = path.file_name().ok_or(invalid(NameError::Empty))?;
    let name = utf8(name, path)?;
    validate_name(&name).map_err(invalid)?;
    let mut walk = Walk { arena: Arena::new(), paths: BTreeMap::new(), pending: Vec::new() };
    let node = walk.read_entry(path)?;
    walk.arena.entries_mut(Arena::ROOT).insert(name, node);
    Ok(MerkleTree::from_arena(&walk.arena, &walk.paths))
}

/// See [`MerkleTree::from_dir`].
pub(super) fn read_dir_tree(dir: &Path) -> Result<MerkleTree, MerkleError> {
    let mut walk = Walk { arena: Arena::new(), paths: BTreeMap::new(), pending: vec![(dir.to_owned(), Arena::ROOT)] };
    // Iterative, so that directory depth is bounded by memory, not stack.
    while let Some((dir, id)) = walk.pending.pop() {
        walk.read_entries(&dir, id)?;
    }
    Ok(MerkleTree::from_arena(&walk.arena, &walk.paths))
}

impl Walk {
    /// Reads the entries of `dir` into directory `id`; subdirectories are
    /// queued.
    fn read_entries(&mut self, dir: &Path, id: DirId) -> Result<(), MerkleError> {
        for entry in fs::read_dir(dir).map_err(|source| io_error(dir, source))? {
            let entry = entry.map_err(|source| io_error(dir, source))?;
            let path = entry.path();
            let name = utf8(&entry.file_name(), &path)?;
            validate_name(&name)
                .map_err(|reason| MerkleError::InvalidName { path: dir.display().to_string(), reason })?;
            let node = self.read_entry(&path)?;
            self.arena.entries_mut(id).insert(name, node);
        }
        Ok(())
    }

    /// One entry, without following a symlink at `path`; a directory is
    /// created empty and queued for reading.
    fn read_entry(&mut self, path: &Path) -> Result<Node, MerkleError> {
        let meta = fs::symlink_metadata(path).map_err(|source| io_error(path, source))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(path).map_err(|source| io_error(path, source))?;
            Ok(Node::Symlink { target: utf8(target.as_os_str(), path)? })
        } else if kind.is_dir() {
            let id = self.arena.new_dir();
            self.pending.push((path.to_owned(), id));
            Ok(Node::Directory(id))
        } else if kind.is_file() {
            let file = fs::File::open(path).map_err(|source| io_error(path, source))?;
            let digest = Digest::of_reader(file).map_err(|source| io_error(path, source))?;
            self.paths.entry(digest).or_insert_with(|| path.to_owned());
            Ok(Node::File { digest, executable: meta.permissions().mode() & 0o100 != 0 })
        } else {
            Err(MerkleError::UnsupportedFileType { path: path.to_owned() })
        }
    }
}

fn utf8(text: &std::ffi::OsStr, path: &Path) -> Result<String, MerkleError> {
    text.to_str().map(str::to_owned).ok_or_else(|| MerkleError::NonUtf8 { path: path.to_owned() })
}

fn io_error(path: &Path, source: std::io::Error) -> MerkleError {
    MerkleError::Io { path: path.to_owned(), source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, content: &[u8], mode: u32) {
        fs::write(path, content).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn only_owner_execute_bit_counts() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        write(&f, b"data", 0o644);
        let plain = MerkleTree::from_dir(dir.path()).unwrap().root_digest();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o655)).unwrap();
        assert_eq!(MerkleTree::from_dir(dir.path()).unwrap().root_digest(), plain, "group/other x ignored");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o744)).unwrap();
        let exec = MerkleTree::from_dir(dir.path()).unwrap();
        assert_ne!(exec.root_digest(), plain);
        assert!(exec.root().directory.files[0].is_executable);
    }

    #[test]
    fn symlinks_are_stored_not_followed_and_empty_dirs_kept() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("empty")).unwrap();
        symlink("../outside/nowhere", dir.path().join("dangling")).unwrap();
        let tree = MerkleTree::from_dir(dir.path()).unwrap();
        let root = &tree.root().directory;
        assert_eq!(root.symlinks[0].name, "dangling");
        assert_eq!(root.symlinks[0].target, "../outside/nowhere");
        assert_eq!(root.directories[0].name, "empty");
        assert_eq!(root.directories[0].digest, Some(Digest::empty().to_proto()));
        assert!(tree.files().is_empty());
    }

    #[test]
    fn file_blobs_remember_where_their_content_is() {
        let dir = tempfile::tempdir().unwrap();
        write(&dir.path().join("a"), b"same", 0o644);
        write(&dir.path().join("b"), b"same", 0o755);
        let tree = MerkleTree::from_dir(dir.path()).unwrap();
        assert_eq!(tree.files().len(), 1);
        assert_eq!(tree.files()[0].digest, Digest::of(b"same"));
        assert_eq!(fs::read(tree.files()[0].path.as_ref().unwrap()).unwrap(), b"same");
    }

    #[test]
    fn a_single_file_becomes_a_one_entry_root() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("only.txt");
        write(&f, b"content", 0o600);
        let tree = MerkleTree::from_path(&f).unwrap();
        let root = &tree.root().directory;
        assert_eq!(root.files.len(), 1);
        assert_eq!(root.files[0].name, "only.txt");
        assert_eq!(root.files[0].digest, Some(Digest::of(b"content").to_proto()));
        assert_eq!(MerkleTree::from_path(dir.path()).unwrap().root_digest(), tree.root_digest());
    }

    #[test]
    fn deep_directories_are_read_without_recursion() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join(vec!["d"; 1100].join("/"));
        fs::create_dir_all(&deep).unwrap();
        write(&deep.join("f"), b"bottom", 0o644);
        let tree = MerkleTree::from_dir(dir.path()).unwrap();
        assert_eq!(tree.directories().count(), 1101);
        assert_eq!(tree.files()[0].digest, Digest::of(b"bottom"));
    }

    #[test]
    fn missing_paths_and_sockets_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(MerkleTree::from_path(&dir.path().join("nope")), Err(MerkleError::Io { .. })));
        let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("socket")).unwrap();
        assert!(matches!(MerkleTree::from_dir(dir.path()), Err(MerkleError::UnsupportedFileType { .. })));
    }
}
