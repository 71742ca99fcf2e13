//! [`Staging`]: the input root of an action, assembled from dependency
//! artifact trees and source trees, with overlap detection.
//!
//! Key decisions: trees are merged as flat path maps, later staging wins, and
//! every path staged over an existing non-directory is recorded as an
//! [`Overlap`] naming both elements — BuildStream's rule (the caller decides
//! whether overlaps are a warning or fatal). Directory symlinks already
//! staged are followed for later entries (a dependency installing `bin/foo`
//! over a base whose `bin` is `usr/bin` lands in `usr/bin/foo`), as
//! BuildStream's staging does. The result is encoded by weir-proto's
//! canonical [`TreeBuilder`].

use std::collections::BTreeMap;

use weir_proto::merkle::{MerkleTree, TreeBuilder};
use weir_proto::reapi;
use weir_proto::Digest;

use super::BuildError;

/// One staged entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { digest: Digest, executable: bool },
    Symlink { target: String },
    Directory,
}

/// A path staged twice: `path` from `first` was replaced by `second`'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The path, relative to the input root.
    pub path: String,
    /// The element that staged it first.
    pub first: String,
    /// The element whose file replaced it.
    pub second: String,
}

/// An input root being assembled.
#[derive(Debug, Default)]
pub struct Staging {
    entries: BTreeMap<String, (Entry, String)>,
    overlaps: Vec<Overlap>,
}

/// Most symlinks followed while resolving one path.
const MAX_SYMLINK_HOPS: usize = 40;

impl Staging {
    /// An empty input root.
    pub fn new() -> Self {
        Staging::default()
    }

    /// Stages the tree `root` (whose directories are in `directories`) under
    /// `prefix` (`""` for the input root), on behalf of `owner`.
    pub fn stage_tree(
        &mut self,
        owner: &str,
        prefix: &str,
        root: Digest,
        directories: &BTreeMap<Digest, reapi::Directory>,
    ) -> Result<(), BuildError> {
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            self.add_directory(owner, prefix);
        }
        self.stage_directory(owner, prefix, root, directories, 0)
    }

    fn stage_directory(
        &mut self,
        owner: &str,
        path: &str,
        digest: Digest,
        directories: &BTreeMap<Digest, reapi::Directory>,
        depth: usize,
    ) -> Result<(), BuildError> {
        let bad = |reason: String| BuildError::Element { element: owner.to_string(), reason };
        if depth > 512 {
            return Err(bad(format!("directory tree under {path:?} is too deep")));
        }
        let directory = directories.get(&digest).ok_or_else(|| bad(format!("directory {digest} of the artifact tree is missing")))?;
        let join = |name: &str| if path.is_empty() { name.to_string() } else { format!("{path}/{name}") };
        for file in &directory.files {
            let digest = Digest::try_from(file.digest.as_ref()).map_err(|e| bad(e.to_string()))?;
            self.insert(owner, &join(&file.name), Entry::File { digest, executable: file.is_executable });
        }
        for link in &directory.symlinks {
            self.insert(owner, &join(&link.name), Entry::Symlink { target: link.target.clone() });
        }
        for child in &directory.directories {
            let child_digest = Digest::try_from(child.digest.as_ref()).map_err(|e| bad(e.to_string()))?;
            let child_path = self.insert(owner, &join(&child.name), Entry::Directory);
            self.stage_directory(owner, &child_path, child_digest, directories, depth + 1)?;
        }
        Ok(())
    }

    /// Makes sure a directory exists at `path` (relative to the input root).
    pub fn add_directory(&mut self, owner: &str, path: &str) {
        let mut current = String::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            let next = if current.is_empty() { segment.to_string() } else { format!("{current}/{segment}") };
            current = self.insert(owner, &next, Entry::Directory);
        }
    }

    /// Inserts one entry, following staged directory symlinks in its parent
    /// path; returns the path it landed at.
    fn insert(&mut self, owner: &str, path: &str, entry: Entry) -> String {
        let path = self.resolve_parent(path);
        let existing = self.entries.get(&path).map(|(entry, first)| (entry.clone(), first.clone()));
        match existing {
            Some((Entry::Directory, _)) if entry == Entry::Directory => return path,
            Some((Entry::Symlink { .. }, _)) if entry == Entry::Directory => {
                // A directory staged over a staged symlink goes where the link points.
                let through = self.resolve_parent(&format!("{path}/."));
                let target = through.trim_end_matches('.').trim_end_matches('/').to_string();
                if target != path && !target.is_empty() {
                    self.add_directory(owner, &target);
                    return target;
                }
            }
            Some((old, first)) => {
                if old == Entry::Directory {
                    let inside = format!("{path}/");
                    self.entries.retain(|p, _| !p.starts_with(&inside));
                }
                self.overlaps.push(Overlap { path: path.clone(), first, second: owner.to_string() });
            }
            None => {}
        }
        self.entries.insert(path.clone(), (entry, owner.to_string()));
        path
    }

    /// `path` with every symlink among its parents replaced by its target.
    fn resolve_parent(&self, path: &str) -> String {
        let mut segments: Vec<String> = path.split('/').map(str::to_string).collect();
        let name = segments.pop().unwrap_or_default();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        let mut queue: std::collections::VecDeque<String> = segments.into();
        while let Some(segment) = queue.pop_front() {
            match segment.as_str() {
                "" | "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(segment);
            let so_far = resolved.join("/");
            if let Some((Entry::Symlink { target }, _)) = self.entries.get(&so_far) {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    break;
                }
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                for (i, part) in target.split('/').enumerate() {
                    queue.insert(i, part.to_string());
                }
            }
        }
        resolved.push(name);
        resolved.join("/")
    }

    /// Adds a file at `path` on behalf of `owner` (staging rules apply).
    pub fn add_file(&mut self, owner: &str, path: &str, digest: Digest, executable: bool) {
        self.insert(owner, path, Entry::File { digest, executable });
    }

    /// Adds a symlink at `path` on behalf of `owner`.
    pub fn add_symlink(&mut self, owner: &str, path: &str, target: &str) {
        self.insert(owner, path, Entry::Symlink { target: target.to_string() });
    }

    /// Every staged path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The element that staged `path` last.
    pub fn owner(&self, path: &str) -> Option<&str> {
        self.entries.get(path).map(|(_, owner)| owner.as_str())
    }

    /// Keeps only the entries whose path `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|path, _| keep(path));
    }

    /// The overlaps recorded so far, in staging order.
    pub fn overlaps(&self) -> &[Overlap] {
        &self.overlaps
    }

    /// Encodes the input root.
    pub fn build(&self, element: &str) -> Result<MerkleTree, BuildError> {
        let mut builder = TreeBuilder::new();
        let bad = |e: weir_proto::merkle::MerkleError| BuildError::Element { element: element.to_string(), reason: e.to_string() };
        for (path, (entry, _)) in &self.entries {
            match entry {
                Entry::File { digest, executable } => builder.add_file(path, *digest, *executable).map_err(bad)?,
                Entry::Symlink { target } => builder.add_symlink(path, target).map_err(bad)?,
                Entry::Directory => builder.add_directory(path).map_err(bad)?,
            };
        }
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree as the directories map a CAS read gives, built with the canonical builder.
    pub(crate) fn tree(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> (Digest, BTreeMap<Digest, reapi::Directory>) {
        let mut builder = TreeBuilder::new();
        for (path, content) in files {
            builder.add_file(path, Digest::of(content), false).unwrap();
        }
        for (path, target) in links {
            builder.add_symlink(path, target).unwrap();
        }
        let tree = builder.build();
        let dirs = tree.directories().map(|d| (d.digest, d.directory.clone())).collect();
        (tree.root_digest(), dirs)
    }

    fn paths(staging: &Staging) -> Vec<String> {
        staging.entries.keys().cloned().collect()
    }

    #[test]
    fn merges_trees_and_reports_overlaps_later_wins() {
        let (a, a_dirs) = tree(&[("usr/bin/sh", b"sh"), ("etc/conf", b"one")], &[]);
        let (b, b_dirs) = tree(&[("usr/lib/libc.so", b"libc"), ("etc/conf", b"two")], &[]);
        let mut staging = Staging::new();
        staging.stage_tree("base.bst", "", a, &a_dirs).unwrap();
        staging.stage_tree("libc.bst", "", b, &b_dirs).unwrap();
        assert_eq!(paths(&staging), ["etc", "etc/conf", "usr", "usr/bin", "usr/bin/sh", "usr/lib", "usr/lib/libc.so"]);
        assert_eq!(
            staging.overlaps(),
            &[Overlap { path: "etc/conf".into(), first: "base.bst".into(), second: "libc.bst".into() }]
        );
        let merged = staging.build("app.bst").unwrap();
        // The later dependency's content won.
        let expected = tree(&[("usr/bin/sh", b"sh"), ("usr/lib/libc.so", b"libc"), ("etc/conf", b"two")], &[]).0;
        assert_eq!(merged.root_digest(), expected);
    }

    #[test]
    fn follows_staged_directory_symlinks() {
        let (base, base_dirs) = tree(&[("usr/bin/busybox", b"bb")], &[("bin", "usr/bin")]);
        let (tool, tool_dirs) = tree(&[("bin/tool", b"tool")], &[]);
        let mut staging = Staging::new();
        staging.stage_tree("base.bst", "", base, &base_dirs).unwrap();
        staging.stage_tree("tool.bst", "", tool, &tool_dirs).unwrap();
        assert!(paths(&staging).contains(&"usr/bin/tool".to_string()), "{:?}", paths(&staging));
        assert!(staging.overlaps().is_empty());
    }

    #[test]
    fn stages_under_a_prefix_and_keeps_empty_directories() {
        let (src, src_dirs) = tree(&[("Makefile", b"all:")], &[]);
        let mut staging = Staging::new();
        staging.stage_tree("app.bst", "buildstream/p/app.bst", src, &src_dirs).unwrap();
        staging.add_directory("app.bst", "buildstream-install");
        let root = staging.build("app.bst").unwrap();
        let names: Vec<_> = root.root().directory.directories.iter().map(|d| d.name.clone()).collect();
        assert_eq!(names, ["buildstream", "buildstream-install"]);
    }
}
