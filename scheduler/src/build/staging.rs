//! [`Staging`]: the input root of an action, assembled from dependency
//! artifact trees and source trees, with overlap detection.
//!
//! Key decisions: trees are merged as flat path maps and later staging wins,
//! BuildStream's rules: a path staged over an existing file, symlink or empty
//! directory replaces it and is recorded in the [`OverlapCollector`]; a file
//! or symlink is not staged over a non-empty directory (recorded as ignored);
//! the caller turns the records into warnings or errors. Directory symlinks already
//! staged are followed for later entries (a dependency installing `bin/foo`
//! over a base whose `bin` is `usr/bin` lands in `usr/bin/foo`), as
//! BuildStream's staging does. The result is encoded by weir-proto's
//! canonical [`TreeBuilder`].

use std::collections::BTreeMap;

use weir_proto::merkle::{MerkleTree, TreeBuilder};
use weir_proto::reapi;
use weir_proto::Digest;

use super::overlaps::{OverlapCollector, StagingWarning};
use super::BuildError;

/// One staged entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File { digest: Digest, executable: bool },
    Symlink { target: String },
    Directory,
}

/// One staged path: what it is, the element that staged it, in which session.
#[derive(Debug, Clone)]
struct Staged {
    entry: Entry,
    owner: String,
    session: usize,
}

/// An input root being assembled.
#[derive(Debug, Default)]
pub struct Staging {
    entries: BTreeMap<String, Staged>,
    collector: OverlapCollector,
}

/// Most symlinks followed while resolving one path.
const MAX_SYMLINK_HOPS: usize = 40;

impl Staging {
    /// An empty input root.
    pub fn new() -> Self {
        Staging::default()
    }

    /// Starts a staging session at `location` (relative to the input root):
    /// overlaps are reported per session, as BuildStream does for each
    /// `stage_dependency_artifacts` call. Staging without one uses a session at `/`.
    pub fn begin_session(&mut self, location: &str) {
        self.collector.begin(location);
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
            self.add_directory(owner, prefix)?;
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
            self.insert(owner, &join(&file.name), Entry::File { digest, executable: file.is_executable })?;
        }
        for link in &directory.symlinks {
            self.insert(owner, &join(&link.name), Entry::Symlink { target: link.target.clone() })?;
        }
        for child in &directory.directories {
            let child_digest = Digest::try_from(child.digest.as_ref()).map_err(|e| bad(e.to_string()))?;
            let child_path = self.insert(owner, &join(&child.name), Entry::Directory)?;
            self.stage_directory(owner, &child_path, child_digest, directories, depth + 1)?;
        }
        Ok(())
    }

    /// Makes sure a directory exists at `path` (relative to the input root).
    pub fn add_directory(&mut self, owner: &str, path: &str) -> Result<(), BuildError> {
        let mut current = String::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            let next = if current.is_empty() { segment.to_string() } else { format!("{current}/{segment}") };
            current = self.insert(owner, &next, Entry::Directory)?;
        }
        Ok(())
    }

    /// Inserts one entry, following staged directory symlinks in its parent
    /// path; returns the path it landed at. A directory cannot be staged over
    /// a file (BuildStream's error).
    fn insert(&mut self, owner: &str, path: &str, entry: Entry) -> Result<String, BuildError> {
        let path = self.resolve_parent(path);
        let session = self.collector.current_index();
        let existing = self.entries.get(&path).map(|staged| (staged.entry.clone(), staged.owner.clone(), staged.session));
        match existing {
            Some((Entry::Directory, _, _)) if entry == Entry::Directory => return Ok(path),
            Some((Entry::File { .. }, _, _)) if entry == Entry::Directory => {
                return Err(BuildError::Element {
                    element: owner.to_string(),
                    reason: format!("Destination is a regular file, not a directory: /{path}"),
                })
            }
            Some((Entry::Symlink { .. }, _, _)) if entry == Entry::Directory => {
                // A directory staged over a staged symlink goes where the link points.
                let through = self.resolve_parent(&format!("{path}/."));
                let target = through.trim_end_matches('.').trim_end_matches('/').to_string();
                if target != path && !target.is_empty() {
                    self.add_directory(owner, &target)?;
                    return Ok(target);
                }
            }
            Some((Entry::Directory, _, _)) if self.has_children(&path) => {
                self.collector.ignored(&path, owner);
                return Ok(path);
            }
            Some((_, previous, previous_session)) => self.collector.replaced(&path, owner, &previous, previous_session),
            None => {}
        }
        self.entries.insert(path.clone(), Staged { entry, owner: owner.to_string(), session });
        Ok(path)
    }

    /// Whether anything is staged below the directory `path`.
    fn has_children(&self, path: &str) -> bool {
        let inside = format!("{path}/");
        self.entries.range(inside.clone()..).next().is_some_and(|(p, _)| p.starts_with(&inside))
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
            if let Some(Staged { entry: Entry::Symlink { target }, .. }) = self.entries.get(&so_far) {
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
    pub fn add_file(&mut self, owner: &str, path: &str, digest: Digest, executable: bool) -> Result<(), BuildError> {
        self.insert(owner, path, Entry::File { digest, executable }).map(drop)
    }

    /// Adds a symlink at `path` on behalf of `owner`.
    pub fn add_symlink(&mut self, owner: &str, path: &str, target: &str) -> Result<(), BuildError> {
        self.insert(owner, path, Entry::Symlink { target: target.to_string() }).map(drop)
    }

    /// Every staged path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The element that staged `path` last.
    pub fn owner(&self, path: &str) -> Option<&str> {
        self.entries.get(path).map(|staged| staged.owner.as_str())
    }

    /// Keeps only the entries whose path `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.entries.retain(|path, _| keep(path));
    }

    /// The overlap and unstaged-file warnings so far, in BuildStream's
    /// words; `whitelist(element)` gives an element's `overlap-whitelist`.
    pub fn warnings<'a>(&self, whitelist: impl Fn(&str) -> &'a [String]) -> Vec<StagingWarning> {
        self.collector.warnings(whitelist)
    }

    /// Encodes the input root.
    pub fn build(&self, element: &str) -> Result<MerkleTree, BuildError> {
        let mut builder = TreeBuilder::new();
        let bad = |e: weir_proto::merkle::MerkleError| BuildError::Element { element: element.to_string(), reason: e.to_string() };
        for (path, staged) in &self.entries {
            match &staged.entry {
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
        let warnings = staging.warnings(|_| &[]);
        assert_eq!(warnings.len(), 1);
        assert_eq!(
            warnings[0].detail,
            "Staged files overwrite existing files in staging area: /\n\
             /etc/conf: libc.bst is not permitted to overlap other elements, order libc.bst above base.bst \n"
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
        assert!(staging.warnings(|_| &[]).is_empty());
    }

    #[test]
    fn a_file_does_not_replace_a_non_empty_directory_but_replaces_an_empty_one() {
        let (base, base_dirs) = tree(&[("usr/lib/libc.so", b"libc")], &[]);
        let mut staging = Staging::new();
        staging.stage_tree("base.bst", "", base, &base_dirs).unwrap();
        staging.add_directory("base.bst", "opt").unwrap();
        staging.add_file("bad.bst", "usr/lib", Digest::of(b"file"), false).unwrap();
        staging.add_file("bad.bst", "opt", Digest::of(b"file"), false).unwrap();
        let error = staging.add_directory("worse.bst", "opt/sub").unwrap_err().to_string();
        assert_eq!(error, "worse.bst: Destination is a regular file, not a directory: /opt");
        assert!(paths(&staging).contains(&"usr/lib/libc.so".to_string()), "the directory stays");
        assert_eq!(staging.owner("opt"), Some("bad.bst"), "the empty directory was replaced");
        let warnings = staging.warnings(|_| &[]);
        let tokens: Vec<_> = warnings.iter().map(|w| w.token).collect();
        assert_eq!(tokens, ["overlaps", "unstaged-files"]);
        assert!(warnings[0].detail.contains("/opt: bad.bst is not permitted"), "{}", warnings[0].detail);
        assert!(warnings[1].detail.contains("From bad.bst:\n  /usr/lib\n"), "{}", warnings[1].detail);
    }

    #[test]
    fn stages_under_a_prefix_and_keeps_empty_directories() {
        let (src, src_dirs) = tree(&[("Makefile", b"all:")], &[]);
        let mut staging = Staging::new();
        staging.stage_tree("app.bst", "buildstream/p/app.bst", src, &src_dirs).unwrap();
        staging.add_directory("app.bst", "buildstream-install").unwrap();
        let root = staging.build("app.bst").unwrap();
        let names: Vec<_> = root.root().directory.directories.iter().map(|d| d.name.clone()).collect();
        assert_eq!(names, ["buildstream", "buildstream-install"]);
    }
}
