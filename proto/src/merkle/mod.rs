//! The canonical Merkle tree builder: a directory tree (read from disk or
//! assembled in code) → REAPI `Directory` protos, their serialised bytes and
//! digests, the root digest, and the digests of every file blob.
//!
//! Key decision: there is exactly one path from a tree of entries to
//! `Directory` bytes (`MerkleTree::from_arena` over [`encode_directory`]),
//! and it produces what BuildStream's CAS (buildbox-casd) hashes for `local`
//! sources: entries sorted by name in byte order (a `BTreeMap<String, _>`),
//! files / directories / symlinks in proto fields 1 / 2 / 3, the owner
//! execute bit as `is_executable`, symlink targets verbatim, empty
//! directories kept, and no node properties (no mtime, no mode). The bytes
//! are prost's encoding, which writes fields in tag order and omits proto3
//! defaults (`size_bytes: 0`, `is_executable: false`) — the deterministic
//! encoding REAPI asks digests to be taken over. Trees are held flat (see
//! `arena`) and encoded without recursion, so depth never overflows the
//! stack.
//!
//! * [`MerkleTree::from_path`] / [`MerkleTree::from_dir`]: read a tree from
//!   disk (see `filesystem`).
//! * [`TreeBuilder`]: assemble a tree in memory from file digests, symlinks
//!   and empty directories (the worker's collected outputs).

mod arena;
mod filesystem;
mod tree_builder;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use prost::Message;

pub use tree_builder::TreeBuilder;

use arena::{Arena, Node};

use crate::name::NameError;
use crate::{reapi, Digest};

/// Why a Merkle tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MerkleError {
    /// A file, directory or symlink could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A name or symlink target on disk is not valid UTF-8 (REAPI strings
    /// are UTF-8).
    #[error("{path}: name or symlink target is not valid UTF-8")]
    NonUtf8 {
        /// The offending path.
        path: PathBuf,
    },
    /// The entry is neither a regular file, a directory nor a symlink
    /// (a socket, FIFO or device node).
    #[error("{path}: unsupported file type (only regular files, directories and symlinks can be stored)")]
    UnsupportedFileType {
        /// The offending path.
        path: PathBuf,
    },
    /// An entry name is not a single ordinary path segment.
    #[error("invalid entry name in {path:?}: {reason}")]
    InvalidName {
        /// The path (as given, `/`-separated) that holds the bad name.
        path: String,
        /// What is wrong with the name.
        reason: NameError,
    },
    /// Two entries were given the same path, or a path passes through
    /// something that is not a directory.
    #[error("{path:?} conflicts with an entry already in the tree")]
    Conflict {
        /// The path (`/`-separated) that was refused.
        path: String,
    },
}

/// One encoded `Directory` message of a tree.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedDirectory {
    /// The digest of [`bytes`](Self::bytes).
    pub digest: Digest,
    /// The message.
    pub directory: reapi::Directory,
    /// The canonical serialisation that [`digest`](Self::digest) is taken over.
    pub bytes: Vec<u8>,
}

/// A file blob a tree refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileBlob {
    /// The digest of the content.
    pub digest: Digest,
    /// Where the content was read from, for trees read from disk (the first
    /// path seen with this content); `None` for trees built in memory, whose
    /// caller already holds the content.
    pub path: Option<PathBuf>,
}

/// A finished Merkle tree: the root digest, every `Directory` message (each
/// distinct one once) and every distinct file blob.
#[derive(Debug, Clone, PartialEq)]
pub struct MerkleTree {
    /// The root directory.
    root: EncodedDirectory,
    /// Every other distinct directory in post-order (children before
    /// parents). A directory cannot contain itself, so the root is never here.
    children: Vec<EncodedDirectory>,
    /// Distinct file blobs, sorted by digest.
    files: Vec<FileBlob>,
    /// Position of each child directory in `children`, by digest.
    index: HashMap<Digest, usize>,
}

impl MerkleTree {
    /// Reads `path` from disk as BuildStream's `local` source imports it: a
    /// directory is imported recursively; a single regular file (or a
    /// symlink) becomes a root directory holding just that one entry, named
    /// after the file. `path` itself is followed if it is a symlink to a
    /// directory; symlinks inside the tree are stored, never followed.
    pub fn from_path(path: &Path) -> Result<Self, MerkleError> {
        filesystem::read_path(path)
    }

    /// Reads the directory `dir` recursively from disk (regular files with
    /// their owner execute bit, symlinks with their target, subdirectories
    /// including empty ones).
    pub fn from_dir(dir: &Path) -> Result<Self, MerkleError> {
        filesystem::read_dir_tree(dir)
    }

    /// Encodes a tree; `paths` gives, for each file digest, where its
    /// content lives on disk (empty for in-memory trees).
    pub(crate) fn from_arena(arena: &Arena, paths: &BTreeMap<Digest, PathBuf>) -> Self {
        let mut files = BTreeSet::new();
        // Children have larger ids than their parents: encode from the last.
        let mut digests = vec![Digest::empty(); arena.len()];
        let mut encoded: Vec<Option<EncodedDirectory>> = (0..arena.len()).map(|_| None).collect();
        for id in (1..arena.len()).rev() {
            let directory = encode_entries(arena, id, &digests, &mut files);
            digests[id] = directory.digest;
            encoded[id] = Some(directory);
        }
        let root = encode_entries(arena, Arena::ROOT, &digests, &mut files);
        // Canonical order: the reverse of a pre-order walk in name order
        // (children before parents), each distinct directory once.
        let mut order = Vec::with_capacity(arena.len());
        let mut stack = vec![Arena::ROOT];
        while let Some(id) = stack.pop() {
            order.push(id);
            stack.extend(arena.entries(id).values().rev().filter_map(|node| match node {
                Node::Directory(child) => Some(*child),
                _ => None,
            }));
        }
        let mut index = HashMap::new();
        let mut children = Vec::new();
        for id in order.into_iter().rev() {
            if let Some(directory) = encoded.get_mut(id).and_then(Option::take) {
                if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(directory.digest) {
                    slot.insert(children.len());
                    children.push(directory);
                }
            }
        }
        let files = files.into_iter().map(|digest| FileBlob { digest, path: paths.get(&digest).cloned() }).collect();
        MerkleTree { root, children, files, index }
    }

    /// The digest of the root `Directory` message.
    pub fn root_digest(&self) -> Digest {
        self.root().digest
    }

    /// The root `Directory`.
    pub fn root(&self) -> &EncodedDirectory {
        &self.root
    }

    /// Every distinct `Directory` message of the tree, children before their
    /// parents (an upload order in which no directory refers to one not yet
    /// sent); the root is last.
    pub fn directories(&self) -> impl Iterator<Item = &EncodedDirectory> {
        self.children.iter().chain(std::iter::once(&self.root))
    }

    /// The encoded directory with `digest`, if it is part of this tree.
    pub fn directory(&self, digest: &Digest) -> Option<&EncodedDirectory> {
        if *digest == self.root.digest {
            return Some(&self.root);
        }
        self.index.get(digest).and_then(|&i| self.children.get(i))
    }

    /// Every distinct file blob the tree refers to, sorted by digest.
    pub fn files(&self) -> &[FileBlob] {
        &self.files
    }

    /// The REAPI `Tree` message for this tree (as in an `OutputDirectory`
    /// or a `GetTree` answer): the root and every other distinct directory
    /// once, in a deterministic order.
    pub fn to_tree(&self) -> reapi::Tree {
        reapi::Tree {
            root: Some(self.root.directory.clone()),
            children: self.children.iter().map(|d| d.directory.clone()).collect(),
        }
    }
}

/// Serialises a `Directory` canonically and returns its bytes and digest.
/// This is the one place `Directory` bytes are produced.
pub fn encode_directory(directory: &reapi::Directory) -> (Vec<u8>, Digest) {
    let bytes = directory.encode_to_vec();
    let digest = Digest::of(&bytes);
    (bytes, digest)
}

/// Encodes directory `id` of `arena`, whose subdirectories' digests are
/// already in `digests`; records the file digests it refers to in `files`.
fn encode_entries(
    arena: &Arena,
    id: arena::DirId,
    digests: &[Digest],
    files: &mut BTreeSet<Digest>,
) -> EncodedDirectory {
    let mut directory = reapi::Directory::default();
    for (name, node) in arena.entries(id) {
        match node {
            Node::File { digest, executable } => {
                files.insert(*digest);
                directory.files.push(reapi::FileNode {
                    name: name.clone(),
                    digest: Some(digest.to_proto()),
                    is_executable: *executable,
                    node_properties: None,
                });
            }
            Node::Symlink { target } => directory.symlinks.push(reapi::SymlinkNode {
                name: name.clone(),
                target: target.clone(),
                node_properties: None,
            }),
            Node::Directory(child) => {
                // Arena ids grow from parent to child, so the child is done.
                let digest = digests.get(*child).map(Digest::to_proto);
                directory.directories.push(reapi::DirectoryNode { name: name.clone(), digest });
            }
        }
    }
    let (bytes, digest) = encode_directory(&directory);
    EncodedDirectory { digest, directory, bytes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8], executable: bool) -> Node {
        Node::File { digest: Digest::of(content), executable }
    }

    fn tree(arena: &Arena) -> MerkleTree {
        MerkleTree::from_arena(arena, &BTreeMap::new())
    }

    #[test]
    fn empty_tree_is_the_empty_blob() {
        let tree = tree(&Arena::new());
        assert_eq!(tree.root_digest(), Digest::empty());
        assert_eq!(tree.directories().count(), 1);
        assert!(tree.files().is_empty());
        assert!(tree.root().bytes.is_empty());
    }

    #[test]
    fn encoding_is_the_documented_wire_form() {
        // One executable file "a" with content "x": a Directory holding
        // FileNode{name: "a", digest, is_executable: true} encodes as
        // 0a LEN (0a 01 'a') (12 LEN (0a 40 hash) (10 01)) (20 01).
        let mut arena = Arena::new();
        arena.entries_mut(Arena::ROOT).insert("a".into(), file(b"x", true));
        let tree = tree(&arena);
        let hash = Digest::of(b"x").hash_hex();
        let mut digest_msg = vec![0x0a, 0x40];
        digest_msg.extend_from_slice(hash.as_bytes());
        digest_msg.extend_from_slice(&[0x10, 0x01]);
        let mut node = vec![0x0a, 0x01, b'a', 0x12, digest_msg.len() as u8];
        node.extend_from_slice(&digest_msg);
        node.extend_from_slice(&[0x20, 0x01]);
        let mut expected = vec![0x0a, node.len() as u8];
        expected.extend_from_slice(&node);
        assert_eq!(tree.root().bytes, expected);
        assert_eq!(tree.root_digest(), Digest::of(&expected));
    }

    #[test]
    fn identical_subdirectories_are_listed_once_children_first() {
        let mut arena = Arena::new();
        for name in ["one", "two"] {
            let sub = arena.new_dir();
            arena.entries_mut(sub).insert("f".into(), file(b"same", false));
            arena.entries_mut(Arena::ROOT).insert(name.into(), Node::Directory(sub));
        }
        arena.entries_mut(Arena::ROOT).insert("link".into(), Node::Symlink { target: "one/f".into() });
        let tree = tree(&arena);
        assert_eq!(tree.directories().count(), 2);
        assert_eq!(tree.files().len(), 1);
        let root_dir = &tree.root().directory;
        assert_eq!(root_dir.directories.len(), 2);
        assert_eq!(root_dir.directories[0].digest, root_dir.directories[1].digest);
        assert_eq!(root_dir.symlinks[0].target, "one/f");
        let child = tree.directories().next().unwrap().digest;
        assert_eq!(Some(child.to_proto()), root_dir.directories[0].digest);
        let proto_tree = tree.to_tree();
        assert_eq!(proto_tree.root.as_ref(), Some(root_dir));
        assert_eq!(proto_tree.children.len(), 1);
    }
}
