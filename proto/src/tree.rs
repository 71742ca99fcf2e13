//! [`ValidTree`]: a REAPI `Tree` (an output directory, a `GetTree` answer)
//! checked whole — every `Directory` valid by [`validate_directory`] and
//! every subdirectory a directory refers to present in the tree, indexed by
//! the digest of its canonical encoding.
//!
//! Key decision: children are identified by the digest Weir computes over
//! the canonical encoding ([`encode_directory`]), never by a digest the
//! sender claims, so a reference resolves only to content that really has
//! that digest (and so no reference cycle can be forged). Children nobody
//! refers to are tolerated and dropped.

use std::collections::{HashMap, HashSet};

use prost::Message;

use crate::directory::{validate_directory, DirectoryError};
use crate::merkle::encode_directory;
use crate::{reapi, Digest};

/// A validated `Tree`: the root and every directory reachable from it.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTree {
    root: Digest,
    directories: HashMap<Digest, reapi::Directory>,
}

impl ValidTree {
    /// Decodes `bytes` as a `Tree` and validates it.
    pub fn decode(bytes: &[u8]) -> Result<Self, DirectoryError> {
        let tree = reapi::Tree::decode(bytes).map_err(|e| DirectoryError::Decode(e.to_string()))?;
        ValidTree::new(tree)
    }

    /// Validates `tree`.
    pub fn new(tree: reapi::Tree) -> Result<Self, DirectoryError> {
        let root = tree.root.ok_or(DirectoryError::MissingRoot)?;
        let mut available: HashMap<Digest, reapi::Directory> =
            tree.children.into_iter().map(|child| (encode_directory(&child).1, child)).collect();
        let (_, root_digest) = encode_directory(&root);
        let mut directories = HashMap::new();
        let mut queued = HashSet::from([root_digest]);
        let mut pending = vec![(root_digest, root)];
        while let Some((digest, directory)) = pending.pop() {
            validate_directory(&directory)
                .map_err(|source| DirectoryError::InTree { digest, source: Box::new(source) })?;
            for node in &directory.directories {
                let child_digest = Digest::try_from(node.digest.as_ref())
                    .map_err(|source| DirectoryError::InvalidDigest { name: node.name.clone(), source })?;
                if queued.contains(&child_digest) {
                    continue;
                }
                let child = available
                    .remove(&child_digest)
                    .ok_or_else(|| DirectoryError::MissingChild { name: node.name.clone(), digest: child_digest })?;
                queued.insert(child_digest);
                pending.push((child_digest, child));
            }
            directories.insert(digest, directory);
        }
        Ok(ValidTree { root: root_digest, directories })
    }

    /// The digest of the root directory's canonical encoding.
    pub fn root_digest(&self) -> Digest {
        self.root
    }

    /// The root directory.
    pub fn root(&self) -> &reapi::Directory {
        // The root is inserted by `new` before it returns successfully.
        &self.directories[&self.root]
    }

    /// The directory with `digest`, if the tree holds it.
    pub fn directory(&self, digest: &Digest) -> Option<&reapi::Directory> {
        self.directories.get(digest)
    }

    /// Every distinct directory of the tree with its digest (root included),
    /// in no particular order.
    pub fn directories(&self) -> impl Iterator<Item = (&Digest, &reapi::Directory)> {
        self.directories.iter()
    }

    /// Every distinct file digest the tree refers to, sorted.
    pub fn file_digests(&self) -> Vec<Digest> {
        let mut digests: Vec<Digest> = self
            .directories
            .values()
            .flat_map(|d| d.files.iter())
            .filter_map(|f| Digest::try_from(f.digest.as_ref()).ok())
            .collect();
        digests.sort_unstable();
        digests.dedup();
        digests
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::TreeBuilder;

    fn sample() -> crate::merkle::MerkleTree {
        let mut builder = TreeBuilder::new();
        builder.add_file("a/b/c", Digest::of(b"c"), false).unwrap();
        builder.add_file("a/d", Digest::of(b"d"), true).unwrap();
        builder.add_directory("e/b").unwrap();
        builder.add_symlink("e/l", "../a").unwrap();
        builder.build()
    }

    #[test]
    fn built_trees_validate_with_the_same_digests() {
        let merkle = sample();
        let valid = ValidTree::decode(&merkle.to_tree().encode_to_vec()).unwrap();
        assert_eq!(valid.root_digest(), merkle.root_digest());
        assert_eq!(valid.directories().count(), merkle.directories().count());
        for encoded in merkle.directories() {
            assert_eq!(valid.directory(&encoded.digest), Some(&encoded.directory));
        }
        assert_eq!(valid.file_digests(), merkle.files().iter().map(|f| f.digest).collect::<Vec<_>>());
    }

    #[test]
    fn a_missing_child_is_refused() {
        let mut tree = sample().to_tree();
        tree.children.remove(0);
        assert!(matches!(ValidTree::new(tree), Err(DirectoryError::MissingChild { .. })));
    }

    #[test]
    fn a_tampered_child_is_missing_not_trusted() {
        let mut tree = sample().to_tree();
        tree.children[0].symlinks.push(reapi::SymlinkNode { name: "zz".into(), target: "x".into(), node_properties: None });
        assert!(matches!(ValidTree::new(tree), Err(DirectoryError::MissingChild { .. })));
    }

    #[test]
    fn an_invalid_child_is_refused_and_extra_children_ignored() {
        let mut tree = sample().to_tree();
        let extra = reapi::Directory { symlinks: vec![reapi::SymlinkNode { name: "..".into(), ..Default::default() }], ..Default::default() };
        tree.children.push(extra);
        assert!(ValidTree::new(tree.clone()).is_ok());
        tree.root.as_mut().unwrap().files.push(reapi::FileNode { name: "zzz".into(), digest: None, ..Default::default() });
        assert!(matches!(ValidTree::new(tree), Err(DirectoryError::InTree { .. })));
        assert_eq!(ValidTree::new(reapi::Tree::default()), Err(DirectoryError::MissingRoot));
    }
}
