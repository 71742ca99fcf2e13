//! [`TreeBuilder`]: assembles a directory tree in code — files by digest,
//! symlinks, empty directories — and encodes it with the same canonical
//! encoder as trees read from disk.
//!
//! Key decision: paths are `/`-separated relative paths whose every segment
//! passes [`validate_name`]; intermediate directories are created on demand
//! (like `mkdir -p`), and any second entry at an occupied path is a
//! [`MerkleError::Conflict`] — never a silent overwrite.

use std::collections::BTreeMap;

use super::arena::{Arena, DirId, Node};
use super::{MerkleError, MerkleTree};
use crate::name::validate_name;
use crate::Digest;

/// Builds a [`MerkleTree`] from entries given in code.
///
/// ```
/// use weir_proto::{merkle::TreeBuilder, Digest};
/// let mut builder = TreeBuilder::new();
/// builder.add_file("usr/bin/hello", Digest::of(b"#!/bin/sh\n"), true)?;
/// builder.add_symlink("usr/bin/goodbye", "hello")?;
/// builder.add_directory("var/empty")?;
/// let tree = builder.build();
/// assert_eq!(tree.files().len(), 1);
/// # Ok::<(), weir_proto::merkle::MerkleError>(())
/// ```
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    arena: Arena,
}

impl Default for TreeBuilder {
    fn default() -> Self {
        TreeBuilder { arena: Arena::new() }
    }
}

impl TreeBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        TreeBuilder::default()
    }

    /// Adds a regular file at `path` with content `digest`.
    pub fn add_file(&mut self, path: &str, digest: Digest, executable: bool) -> Result<&mut Self, MerkleError> {
        self.insert(path, Node::File { digest, executable })
    }

    /// Adds a symlink at `path` pointing to `target` (stored verbatim; the
    /// caller applies its own policy to where it may point, see
    /// [`crate::directory::symlink_stays_within`]).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, MerkleError> {
        self.insert(path, Node::Symlink { target: target.to_owned() })
    }

    /// Makes sure a directory exists at `path` (with its parents). An empty
    /// `path` names the root. Adding an existing directory is not an error.
    pub fn add_directory(&mut self, path: &str) -> Result<&mut Self, MerkleError> {
        if !path.is_empty() {
            let mut dir = Arena::ROOT;
            for segment in split(path)? {
                dir = descend(&mut self.arena, dir, segment, path)?;
            }
        }
        Ok(self)
    }

    /// Encodes the tree.
    pub fn build(&self) -> MerkleTree {
        MerkleTree::from_arena(&self.arena, &BTreeMap::new())
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<&mut Self, MerkleError> {
        let segments = split(path)?;
        let Some((leaf, parents)) = segments.split_last() else {
            return Err(MerkleError::Conflict { path: path.to_owned() });
        };
        let mut dir = Arena::ROOT;
        for segment in parents {
            dir = descend(&mut self.arena, dir, segment, path)?;
        }
        let entries = self.arena.entries_mut(dir);
        if entries.contains_key(*leaf) {
            return Err(MerkleError::Conflict { path: path.to_owned() });
        }
        entries.insert((*leaf).to_owned(), node);
        Ok(self)
    }
}

/// Splits a relative path into validated segments.
fn split(path: &str) -> Result<Vec<&str>, MerkleError> {
    path.split('/')
        .map(|segment| {
            validate_name(segment).map(|()| segment).map_err(|reason| MerkleError::InvalidName {
                path: path.to_owned(),
                reason,
            })
        })
        .collect()
}

/// The subdirectory `name` of `dir`, created if missing.
fn descend(arena: &mut Arena, dir: DirId, name: &str, path: &str) -> Result<DirId, MerkleError> {
    match arena.entries(dir).get(name) {
        Some(Node::Directory(child)) => Ok(*child),
        Some(_) => Err(MerkleError::Conflict { path: path.to_owned() }),
        None => {
            let child = arena.new_dir();
            arena.entries_mut(dir).insert(name.to_owned(), Node::Directory(child));
            Ok(child)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::NameError;

    #[test]
    fn builds_nested_paths_in_sorted_order() {
        let mut builder = TreeBuilder::new();
        builder.add_file("b", Digest::of(b"b"), false).unwrap();
        builder.add_file("a/z", Digest::of(b"z"), true).unwrap();
        builder.add_symlink("a/y", "z").unwrap();
        builder.add_directory("a/x/empty").unwrap();
        let tree = builder.build();
        let root = &tree.root().directory;
        assert_eq!(root.files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["b"]);
        assert_eq!(root.directories.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a"]);
        let a_digest = Digest::try_from(root.directories[0].digest.as_ref()).unwrap();
        let a = &tree.directory(&a_digest).unwrap().directory;
        assert_eq!(a.files[0].name, "z");
        assert!(a.files[0].is_executable);
        assert_eq!(a.symlinks[0].target, "z");
        assert_eq!(a.directories[0].name, "x");
        // root, a, a/x, a/x/empty
        assert_eq!(tree.directories().count(), 4);
    }

    #[test]
    fn order_of_insertion_does_not_change_the_digest() {
        let mut one = TreeBuilder::new();
        one.add_file("d/f", Digest::of(b"1"), false).unwrap();
        one.add_file("e", Digest::of(b"2"), true).unwrap();
        let mut two = TreeBuilder::new();
        two.add_file("e", Digest::of(b"2"), true).unwrap();
        two.add_directory("d").unwrap();
        two.add_file("d/f", Digest::of(b"1"), false).unwrap();
        assert_eq!(one.build().root_digest(), two.build().root_digest());
        // The Tree message (an output directory's digest) is canonical too.
        assert_eq!(one.build().to_tree(), two.build().to_tree());
    }

    #[test]
    fn refuses_conflicts_and_bad_names() {
        let mut builder = TreeBuilder::new();
        builder.add_file("f", Digest::of(b""), false).unwrap();
        assert!(matches!(builder.add_file("f", Digest::of(b""), false), Err(MerkleError::Conflict { .. })));
        assert!(matches!(builder.add_symlink("f/g", "x"), Err(MerkleError::Conflict { .. })));
        assert!(matches!(builder.add_directory("f"), Err(MerkleError::Conflict { .. })));
        assert!(matches!(builder.add_file("", Digest::empty(), false), Err(MerkleError::InvalidName { .. })));
        for (bad, reason) in [("a//b", NameError::Empty), ("/a", NameError::Empty), ("a/../b", NameError::Dots)] {
            match builder.add_file(bad, Digest::empty(), false) {
                Err(MerkleError::InvalidName { reason: got, .. }) => assert_eq!(got, reason, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        builder.add_directory("").unwrap();
        assert_eq!(builder.build().root().directory.files.len(), 1);
    }

    #[test]
    fn very_deep_paths_do_not_overflow_the_stack() {
        // 20,000 levels: a recursive encoder or drop overflowed at 1,000.
        let path = vec!["d"; 20_000].join("/");
        let mut builder = TreeBuilder::new();
        builder.add_file(&format!("{path}/f"), Digest::of(b"x"), false).unwrap();
        let tree = builder.build();
        assert_eq!(tree.directories().count(), 20_001);
        let deepest = tree.directories().next().unwrap();
        assert_eq!(deepest.directory.files[0].name, "f");
    }
}
