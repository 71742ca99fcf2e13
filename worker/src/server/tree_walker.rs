//! [`walk_tree`]: breadth-first traversal of a `Directory` tree in the CAS,
//! shared by `GetTree` (paged) and `FetchDirectory` (completeness check).
//!
//! Key decision: each directory is visited once (by digest), whatever number
//! of parents refers to it; directories missing from the CAS are reported,
//! not fatal, because `GetTree` must omit them and `FetchDirectory` must
//! treat them as a miss. A level's directories are read concurrently.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use prost::Message;
use weir_proto::reapi::Directory;
use weir_proto::Digest;

use super::ServerError;
use crate::store::{Store, StoreError};

/// Directories read at once.
const PARALLEL_READS: usize = 16;

/// The result of a walk.
#[derive(Debug, Default)]
pub struct TreeWalk {
    /// Directories in breadth-first order, each once.
    pub directories: Vec<(Digest, Directory)>,
    /// Directories referred to but absent from the CAS.
    pub missing: Vec<Digest>,
    /// False when the walk stopped at `max_directories` with more to visit.
    pub complete: bool,
}

impl TreeWalk {
    /// Every file digest of the visited directories.
    pub fn file_digests(&self) -> Vec<Digest> {
        let mut out: Vec<Digest> = self
            .directories
            .iter()
            .flat_map(|(_, d)| d.files.iter())
            .filter_map(|f| Digest::try_from(f.digest.as_ref()).ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Walks the tree under `root`, visiting at most `max_directories`.
pub async fn walk_tree(store: &Store, root: Digest, max_directories: usize) -> Result<TreeWalk, ServerError> {
    let mut walk = TreeWalk { complete: true, ..TreeWalk::default() };
    let mut seen = HashSet::from([root]);
    let mut level = vec![root];
    while !level.is_empty() {
        let room = max_directories.saturating_sub(walk.directories.len());
        if room == 0 {
            walk.complete = false;
            break;
        }
        if level.len() > room {
            level.truncate(room);
            walk.complete = false;
        }
        let read: Vec<(Digest, Option<Directory>)> = futures::stream::iter(level.iter().copied())
            .map(|digest| read_directory(store, digest))
            .buffered(PARALLEL_READS)
            .try_collect()
            .await?;
        let mut next = Vec::new();
        for (digest, directory) in read {
            let Some(directory) = directory else {
                walk.missing.push(digest);
                continue;
            };
            for node in &directory.directories {
                let child = Digest::try_from(node.digest.as_ref()).map_err(|e| {
                    ServerError::InvalidArgument(format!("directory {digest} has an invalid child {:?}: {e}", node.name))
                })?;
                if seen.insert(child) {
                    next.push(child);
                }
            }
            walk.directories.push((digest, directory));
        }
        if !walk.complete {
            break;
        }
        level = next;
    }
    Ok(walk)
}

async fn read_directory(store: &Store, digest: Digest) -> Result<(Digest, Option<Directory>), ServerError> {
    let bytes = match store.read_all(&digest).await {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound(_)) if digest == Digest::empty() => bytes::Bytes::new(),
        Err(StoreError::NotFound(_) | StoreError::Corrupt(_)) => return Ok((digest, None)),
        Err(err) => return Err(err.into()),
    };
    let directory = Directory::decode(bytes)
        .map_err(|e| ServerError::FailedPrecondition(format!("blob {digest} is not a Directory: {e}")))?;
    Ok((digest, Some(directory)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use weir_proto::reapi::DirectoryNode;

    use super::*;
    use crate::store::MemoryStore;

    async fn put(store: &Store, dir: &Directory) -> Digest {
        let bytes = dir.encode_to_vec();
        let digest = Digest::of(&bytes);
        store.write(&digest, Bytes::from(bytes)).await.unwrap();
        digest
    }

    fn node(name: &str, digest: Digest) -> DirectoryNode {
        DirectoryNode { name: name.into(), digest: Some(digest.to_proto()) }
    }

    #[tokio::test]
    async fn visits_shared_children_once_and_reports_missing_ones() {
        let store: Store = Arc::new(MemoryStore::default());
        let leaf = put(&store, &Directory::default()).await;
        let absent = Digest::of(b"not stored");
        let mid = put(&store, &Directory { directories: vec![node("l", leaf)], ..Default::default() }).await;
        let root = Directory { directories: vec![node("a", mid), node("b", leaf), node("c", absent)], ..Default::default() };
        let root = put(&store, &root).await;
        let walk = walk_tree(&store, root, 100).await.unwrap();
        let order: Vec<Digest> = walk.directories.iter().map(|(d, _)| *d).collect();
        assert_eq!(order, vec![root, mid, leaf]);
        assert_eq!(walk.missing, vec![absent]);
        assert!(walk.complete);
        let partial = walk_tree(&store, root, 2).await.unwrap();
        assert_eq!(partial.directories.len(), 2);
        assert!(!partial.complete);
    }
}
