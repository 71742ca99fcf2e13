//! [`Checkout`]: an artifact tree read from the CAS — listed as paths or
//! written to a local directory.
//!
//! Key decision: the whole tree's `Directory` messages are read first (level
//! by level, batched), then file contents in batches; nothing is written
//! until every directory has been read and every entry name is checked, so
//! a bad tree leaves no partial checkout. Names are validated with
//! weir-proto's rule, so a hostile tree cannot write outside the target.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weir_proto::name::validate_name;
use weir_proto::reapi;
use weir_proto::Digest;

use super::BuildError;
use crate::remote::Cas;

/// Files fetched per download round.
const FILES_PER_ROUND: usize = 1_000;

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntry {
    /// A directory.
    Directory,
    /// A file with its content digest and execute bit.
    File {
        /// Content digest.
        digest: Digest,
        /// Owner execute bit.
        executable: bool,
    },
    /// A symlink.
    Symlink {
        /// Its target.
        target: String,
    },
}

/// A tree flattened to relative paths (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkout {
    /// Every entry by relative path.
    pub entries: BTreeMap<String, TreeEntry>,
}

impl Checkout {
    /// Reads the tree rooted at `root` from the CAS.
    pub async fn read(cas: &Cas, root: Digest) -> Result<Self, BuildError> {
        let directories = cas.read_tree(root).await?;
        let mut entries = BTreeMap::new();
        flatten(&directories, root, "", &mut entries, 0)?;
        Ok(Checkout { entries })
    }

    /// The paths, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Writes the tree under `dir` (created if needed); returns the number of files.
    pub async fn write(&self, cas: &Cas, dir: &Path) -> Result<usize, BuildError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BuildError::Checkout { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (path, entry) in &self.entries {
            if *entry == TreeEntry::Directory {
                let target = dir.join(path);
                std::fs::create_dir_all(&target).map_err(io(&target))?;
            }
        }
        let files: Vec<(&String, Digest, bool)> = self
            .entries
            .iter()
            .filter_map(|(path, entry)| match entry {
                TreeEntry::File { digest, executable } => Some((path, *digest, *executable)),
                _ => None,
            })
            .collect();
        for round in files.chunks(FILES_PER_ROUND) {
            let digests: Vec<Digest> = round.iter().map(|(_, d, _)| *d).collect();
            let contents = cas.download(&digests).await?;
            for (path, digest, executable) in round {
                let target: PathBuf = dir.join(path);
                let data = contents.get(digest).ok_or(crate::remote::RemoteError::MissingBlob(*digest))?;
                std::fs::write(&target, data).map_err(io(&target))?;
                let mode = if *executable { 0o755 } else { 0o644 };
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).map_err(io(&target))?;
            }
        }
        for (path, entry) in &self.entries {
            if let TreeEntry::Symlink { target } = entry {
                let link = dir.join(path);
                std::os::unix::fs::symlink(target, &link).map_err(io(&link))?;
            }
        }
        Ok(files.len())
    }
}

fn flatten(
    directories: &BTreeMap<Digest, reapi::Directory>,
    digest: Digest,
    prefix: &str,
    out: &mut BTreeMap<String, TreeEntry>,
    depth: usize,
) -> Result<(), BuildError> {
    let bad = |reason: String| BuildError::Artifact { uri: digest.to_string(), reason };
    if depth > 512 {
        return Err(bad("tree too deep".into()));
    }
    let directory = directories.get(&digest).ok_or_else(|| bad("directory missing from the tree".into()))?;
    let join = |name: &str| -> Result<String, BuildError> {
        validate_name(name).map_err(|e| bad(format!("entry {name:?}: {e}")))?;
        Ok(if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") })
    };
    for file in &directory.files {
        let content = Digest::try_from(file.digest.as_ref()).map_err(|e| bad(e.to_string()))?;
        out.insert(join(&file.name)?, TreeEntry::File { digest: content, executable: file.is_executable });
    }
    for link in &directory.symlinks {
        out.insert(join(&link.name)?, TreeEntry::Symlink { target: link.target.clone() });
    }
    for child in &directory.directories {
        let path = join(&child.name)?;
        let child_digest = Digest::try_from(child.digest.as_ref()).map_err(|e| bad(e.to_string()))?;
        out.insert(path.clone(), TreeEntry::Directory);
        flatten(directories, child_digest, &path, out, depth + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use weir_proto::merkle::TreeBuilder;

    use super::*;
    use crate::remote::fake_server::FakeServer;
    use crate::remote::{EndpointSpec, RemoteClient};

    #[tokio::test]
    async fn lists_and_writes_a_tree() {
        let server = FakeServer::start_default().await;
        let client = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        let hello = server.state.put(b"#!/bin/sh\necho hi\n".to_vec());
        let readme = server.state.put(b"read me".to_vec());
        let mut builder = TreeBuilder::new();
        builder.add_file("usr/bin/hello", hello, true).unwrap();
        builder.add_file("usr/share/doc/README", readme, false).unwrap();
        builder.add_symlink("bin", "usr/bin").unwrap();
        builder.add_directory("var/empty").unwrap();
        let tree = builder.build();
        for directory in tree.directories() {
            server.state.put(directory.bytes.clone());
        }
        let checkout = Checkout::read(&client.cas, tree.root_digest()).await.unwrap();
        let paths: Vec<_> = checkout.paths().collect();
        assert_eq!(paths, ["bin", "usr", "usr/bin", "usr/bin/hello", "usr/share", "usr/share/doc", "usr/share/doc/README", "var", "var/empty"]);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(checkout.write(&client.cas, dir.path()).await.unwrap(), 2);
        assert_eq!(std::fs::read(dir.path().join("bin/hello")).unwrap(), b"#!/bin/sh\necho hi\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.path().join("usr/bin/hello")).unwrap().permissions().mode() & 0o111, 0o111);
        assert!(dir.path().join("var/empty").is_dir());
    }

    #[tokio::test]
    async fn refuses_names_that_escape() {
        let server = FakeServer::start_default().await;
        let client = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        let file = server.state.put(b"x".to_vec());
        let evil = reapi::Directory {
            files: vec![reapi::FileNode { name: "../escape".into(), digest: Some(file.to_proto()), ..Default::default() }],
            ..Default::default()
        };
        let root = server.state.put(prost::Message::encode_to_vec(&evil));
        assert!(matches!(Checkout::read(&client.cas, root).await, Err(BuildError::Artifact { .. })));
    }
}
