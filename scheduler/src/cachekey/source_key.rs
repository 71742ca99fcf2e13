//! Source unique keys of the core source kinds (spec §8).
//!
//! It owns [`SourceKeys`], which computes the unique key of each source.
//! Key decision: the `local` key is the REAPI `Directory` digest of the
//! path, produced by weir-proto's Merkle builder (the one canonical
//! implementation); the distinct local paths of a graph are digested up front,
//! in parallel (it is disk I/O and hashing), and memoised, because many
//! elements import the same directory. `remote`/`tar` keys use the URL as
//! written, so alias values and mirrors never change keys. A source without a
//! `ref` is unresolved: its key is `None`, not an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::element_input::SourceInput;
use super::value::Value;
use super::value_read::{node_bool, node_str};
use super::CacheKeyError;

/// Computes the digest (`hash` hex string) of a file or directory tree as
/// BuildStream's CAS import does (spec §8.1). Called from several threads.
pub trait TreeDigester: Sync {
    /// The hash of the `Directory` digest of `path` (a single file becomes a
    /// directory holding that one file).
    fn tree_hash(&self, path: &Path) -> Result<String, String>;
}

/// The production [`TreeDigester`]: weir-proto's canonical Merkle builder.
#[derive(Debug, Clone, Copy, Default)]
pub struct MerkleDigester;

impl TreeDigester for MerkleDigester {
    fn tree_hash(&self, path: &Path) -> Result<String, String> {
        weir_proto::merkle::MerkleTree::from_path(path)
            .map(|tree| tree.root_digest().hash_hex())
            .map_err(|error| error.to_string())
    }
}

/// Source unique keys with a memo of local tree digests.
pub struct SourceKeys<'a> {
    digester: &'a dyn TreeDigester,
    trees: HashMap<PathBuf, Result<String, String>>,
}

impl<'a> SourceKeys<'a> {
    /// A key computer that digests local trees with `digester`.
    pub fn new(digester: &'a dyn TreeDigester) -> Self {
        SourceKeys { digester, trees: HashMap::new() }
    }

    /// Digests, in parallel, every `local` tree among `sources` that is not
    /// memoised yet; [`unique_key`](Self::unique_key) then only looks them up.
    pub fn digest_local_trees<'s, 'g: 's>(&mut self, sources: impl Iterator<Item = &'s SourceInput<'g>>) {
        let mut paths: Vec<PathBuf> = sources
            .filter(|source| source.kind == "local")
            .filter_map(|source| source.config.get("path").and_then(|path| path.as_str()).map(|p| source.project_dir.join(p)))
            .filter(|path| !self.trees.contains_key(path))
            .collect();
        paths.sort();
        paths.dedup();
        let digester = self.digester;
        let digests: Vec<(PathBuf, Result<String, String>)> = paths
            .into_par_iter()
            .map(|path| {
                let digest = digester.tree_hash(&path);
                (path, digest)
            })
            .collect();
        self.trees.extend(digests);
    }

    /// The unique key of `source` of element `element`; `None` while unresolved.
    pub fn unique_key(&self, element: &str, source: &SourceInput) -> Result<Option<Value>, CacheKeyError> {
        let config = &source.config;
        let field = |name: &str| config.get(name).map(|v| node_str(element, name, v).map(str::to_owned)).transpose();
        match &*source.kind {
            "local" => {
                let path = field("path")?.ok_or_else(|| missing(element, "local", "path"))?;
                let full = source.project_dir.join(&path);
                let digest = match self.trees.get(&full) {
                    Some(memoised) => memoised.clone(),
                    None => self.digester.tree_hash(&full),
                };
                let hash = digest.map_err(|detail| CacheKeyError::LocalSource {
                    element: element.to_owned(),
                    path: full.clone(),
                    detail,
                })?;
                Ok(Some(Value::from(hash)))
            }
            kind @ ("remote" | "tar") => {
                let url = field("url")?.ok_or_else(|| missing(element, kind, "url"))?;
                let Some(reference) = field("ref")? else {
                    return Ok(None);
                };
                let mut key = vec![Value::from(url.as_str()), Value::from(reference)];
                if let Some(version) = field("version")? {
                    key.push(Value::from(version));
                } else if let Some(pattern) = field("version-guess-pattern")? {
                    key.push(Value::from(pattern));
                }
                if kind == "tar" {
                    key.push(Value::from(field("base-dir")?.unwrap_or_else(|| "*".to_owned())));
                } else {
                    let translated = source.translated_url.as_deref().unwrap_or(&url);
                    let filename = match field("filename")? {
                        Some(name) => name,
                        None => python_basename(translated).to_owned(),
                    };
                    let executable =
                        config.get("executable").map(|v| node_bool(element, "executable", v)).transpose()?;
                    key.push(Value::from(filename));
                    key.push(Value::Bool(executable.unwrap_or(false)));
                }
                Ok(Some(Value::List(key)))
            }
            other => match &source.external_key {
                Some(key) => Ok(Some(key.clone())),
                None => Err(CacheKeyError::UnsupportedSourceKind { element: element.to_owned(), kind: other.to_owned() }),
            },
        }
    }
}

/// Python's `os.path.basename`: the text after the last `/`.
fn python_basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn missing(element: &str, kind: &str, key: &str) -> CacheKeyError {
    CacheKeyError::InvalidConfig {
        element: element.to_owned(),
        detail: format!("{kind} source: dictionary did not contain expected key '{key}'"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::canonical::to_canonical;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct CountingDigester(AtomicUsize);

    impl TreeDigester for CountingDigester {
        fn tree_hash(&self, path: &Path) -> Result<String, String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(format!("digest-of-{}", path.display()))
        }
    }

    fn source(kind: &str, pairs: &[(&str, &str)]) -> SourceInput<'static> {
        let mut config = crate::yaml::Map::default();
        for (key, value) in pairs {
            config.insert(*key, crate::yaml::Node::scalar(*value, config.span));
        }
        SourceInput {
            kind: kind.to_owned().into(),
            config: std::borrow::Cow::Owned(config),
            project_dir: std::sync::Arc::new(PathBuf::from("/p")),
            ..Default::default()
        }
    }

    fn key(kind: &str, pairs: &[(&str, &str)]) -> Option<String> {
        let digester = CountingDigester(AtomicUsize::new(0));
        SourceKeys::new(&digester).unique_key("e", &source(kind, pairs)).unwrap().map(|v| to_canonical(&v))
    }

    #[test]
    fn remote_key_uses_untranslated_url_and_translated_basename() {
        let mut remote = source("remote", &[("url", "upstream:dir/foo.bar"), ("ref", "abc")]);
        remote.translated_url = Some("https://up.stream.org/dir/foo.bar".into());
        let digester = CountingDigester(AtomicUsize::new(0));
        let value = SourceKeys::new(&digester).unique_key("e", &remote).unwrap().unwrap();
        assert_eq!(to_canonical(&value), r#"["upstream:dir/foo.bar","abc","foo.bar",false]"#);
        assert_eq!(
            key("remote", &[("url", "https://x/y"), ("ref", "r"), ("filename", "z"), ("executable", "true")]),
            Some(r#"["https://x/y","r","z",true]"#.to_owned())
        );
    }

    #[test]
    fn tar_key_with_version_and_base_dir() {
        assert_eq!(
            key("tar", &[("url", "upstream:releases/foo.tar.gz"), ("ref", "r"), ("version", "9.9"), ("base-dir", "")]),
            Some(r#"["upstream:releases/foo.tar.gz","r","9.9",""]"#.to_owned())
        );
        assert_eq!(
            key("tar", &[("url", "u"), ("ref", "r"), ("version-guess-pattern", "\\d+")]),
            Some(r#"["u","r","\\d+","*"]"#.to_owned())
        );
    }

    #[test]
    fn missing_ref_is_unresolved() {
        assert_eq!(key("tar", &[("url", "u")]), None);
    }

    #[test]
    fn local_trees_are_digested_once_per_path() {
        let digester = CountingDigester(AtomicUsize::new(0));
        let mut keys = SourceKeys::new(&digester);
        let local = source("local", &[("path", "files/local")]);
        let other = source("local", &[("path", "files/other")]);
        keys.digest_local_trees([&local, &other, &local].into_iter());
        assert_eq!(digester.0.load(Ordering::SeqCst), 2);
        let first = keys.unique_key("a", &local).unwrap();
        let second = keys.unique_key("b", &local).unwrap();
        assert_eq!(first, second);
        assert_eq!(first, Some(Value::from("digest-of-/p/files/local")));
        assert_eq!(digester.0.load(Ordering::SeqCst), 2, "memoised trees are not digested again");
    }

    #[test]
    fn unknown_kinds_are_refused() {
        let digester = CountingDigester(AtomicUsize::new(0));
        let result = SourceKeys::new(&digester).unique_key("e", &source("git", &[]));
        assert!(matches!(result, Err(CacheKeyError::UnsupportedSourceKind { .. })));
    }
}

#[cfg(test)]
mod merkle_tests {
    use super::*;

    /// Spec §8.1: the upstream `files/local` tree, with `goodbye` a symlink to `hello`.
    #[test]
    fn local_tree_digest_matches_buildstream() {
        let shared = crate::manifest_dir().join("../../shared/conformance/data/cachekey/project/files/local");
        let Ok(tmp) = tempfile::tempdir() else { return };
        let root = tmp.path().join("local");
        copy_tree(&shared, &root);
        let goodbye = root.join("usr/bin/goodbye");
        std::fs::remove_file(&goodbye).unwrap();
        std::os::unix::fs::symlink("hello", &goodbye).unwrap();
        assert_eq!(
            MerkleDigester.tree_hash(&root).unwrap(),
            "b14708535e0cc5cc97cb5b3dd218d176e00051273518d818ff55a5db8bbaee3c"
        );
    }

    fn copy_tree(from: &Path, to: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                copy_tree(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).unwrap();
                let mode = std::fs::metadata(entry.path()).unwrap().permissions().mode() | 0o200;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
}
