//! [`ActionCache`]: action digest → `ActionResult`, in redb.
//!
//! Key decision: a result is returned only when everything it refers to is
//! in the CAS — output files, every file of every output directory tree (and
//! the tree blob itself), stdout and stderr. A result whose outputs were
//! evicted reads as absent, so a client re-runs the action instead of failing
//! to download. The empty blob counts as always present.
//!
//! This is the API the execution service uses: [`ActionCache::get`] and
//! [`ActionCache::put`].

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use redb::{ReadableDatabase, TableDefinition};
use weir_proto::reapi::{ActionResult, Tree};
use weir_proto::Digest;

use super::group_commit::GroupCommit;
use super::{blocking, CacheError};
use crate::store::{Store, StoreError};

/// Action digest (`hash/size`) → encoded `ActionResult`.
const RESULTS: TableDefinition<&str, &[u8]> = TableDefinition::new("action_results");

/// The Action Cache: a cheap-clone handle.
#[derive(Clone)]
pub struct ActionCache {
    db: Arc<redb::Database>,
    writes: Arc<GroupCommit>,
    cas: Store,
}

impl ActionCache {
    /// An Action Cache over an open database, checking completeness in `cas`.
    pub fn new(db: Arc<redb::Database>, cas: Store) -> Self {
        ActionCache { writes: GroupCommit::new(db.clone()), db, cas }
    }

    /// The cached result of `action`, or `None` when there is none or when
    /// some of its outputs are no longer in the CAS.
    pub async fn get(&self, action: &Digest) -> Result<Option<ActionResult>, CacheError> {
        let Some(result) = self.lookup(action).await? else { return Ok(None) };
        let missing = missing_outputs(&self.cas, &result).await?;
        if missing.is_empty() {
            Ok(Some(result))
        } else {
            tracing::debug!(%action, missing = missing.len(), "cached result is incomplete; treated as a miss");
            Ok(None)
        }
    }

    /// Records `result` for `action`, durably; returns once committed.
    /// Concurrent calls share one durable commit ([`GroupCommit`]).
    ///
    /// Fails with [`CacheError::InvalidArgument`] when the result refers to
    /// malformed digests.
    pub async fn put(&self, action: &Digest, result: &ActionResult) -> Result<(), CacheError> {
        referenced_digests(result)?;
        let key = action.to_string();
        let value = result.encode_to_vec();
        self.writes
            .run(Box::new(move |txn| {
                let mut table = txn.open_table(RESULTS).map_err(CacheError::database)?;
                table.insert(key.as_str(), value.as_slice()).map_err(CacheError::database)?;
                Ok(())
            }))
            .await
    }

    /// The stored result, without the completeness check.
    async fn lookup(&self, action: &Digest) -> Result<Option<ActionResult>, CacheError> {
        let key = action.to_string();
        let db = self.db.clone();
        let raw = blocking(move || {
            let txn = db.begin_read().map_err(CacheError::database)?;
            let table = match txn.open_table(RESULTS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(err) => return Err(CacheError::database(err)),
            };
            let value = table.get(key.as_str()).map_err(CacheError::database)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
        .await?;
        match raw {
            None => Ok(None),
            Some(raw) => match ActionResult::decode(raw.as_slice()) {
                Ok(result) => Ok(Some(result)),
                Err(err) => {
                    tracing::error!(%action, %err, "unreadable action result; treated as a miss");
                    Ok(None)
                }
            },
        }
    }
}

/// Every CAS digest `result` refers to directly (not the contents of trees).
fn referenced_digests(result: &ActionResult) -> Result<Vec<Digest>, CacheError> {
    let bad = |what: &str, e: weir_proto::DigestError| CacheError::InvalidArgument(format!("{what}: {e}"));
    let mut out = Vec::new();
    for file in &result.output_files {
        out.push(Digest::try_from(file.digest.as_ref()).map_err(|e| bad(&format!("output file {:?}", file.path), e))?);
    }
    for dir in &result.output_directories {
        out.push(Digest::try_from(dir.tree_digest.as_ref()).map_err(|e| bad(&format!("output directory {:?}", dir.path), e))?);
    }
    for (what, digest) in [("stdout", &result.stdout_digest), ("stderr", &result.stderr_digest)] {
        if let Some(digest) = digest {
            out.push(Digest::try_from(digest).map_err(|e| bad(what, e))?);
        }
    }
    Ok(out)
}

/// The digests `result` needs that the CAS does not hold.
async fn missing_outputs(cas: &Store, result: &ActionResult) -> Result<Vec<Digest>, CacheError> {
    let mut wanted = referenced_digests(result)?;
    for dir in &result.output_directories {
        let tree_digest = Digest::try_from(dir.tree_digest.as_ref())
            .map_err(|e| CacheError::InvalidArgument(format!("output directory {:?}: {e}", dir.path)))?;
        let tree = match cas.read_all(&tree_digest).await {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound(_) | StoreError::Corrupt(_)) if tree_digest.size() > 0 => return Ok(vec![tree_digest]),
            Err(StoreError::NotFound(_)) => Bytes::new(),
            Err(err) => return Err(err.into()),
        };
        let Ok(tree) = Tree::decode(tree) else { return Ok(vec![tree_digest]) };
        for directory in tree.root.iter().chain(tree.children.iter()) {
            for file in &directory.files {
                match Digest::try_from(file.digest.as_ref()) {
                    Ok(digest) => wanted.push(digest),
                    Err(_) => return Ok(vec![tree_digest]),
                }
            }
        }
    }
    let empty = Digest::empty();
    wanted.retain(|d| *d != empty);
    wanted.sort();
    wanted.dedup();
    Ok(cas.find_missing(&wanted).await?)
}

#[cfg(test)]
mod tests {
    use weir_proto::reapi::{Directory, FileNode, OutputDirectory, OutputFile};

    use super::*;
    use crate::store::{BlobStore, MemoryStore};

    async fn fixture() -> (tempfile::TempDir, Arc<MemoryStore>, ActionCache) {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("cache.redb"), false).unwrap();
        let cas = Arc::new(MemoryStore::default());
        (dir, cas.clone(), ActionCache::new(db, cas))
    }

    async fn blob(cas: &MemoryStore, data: &[u8]) -> Digest {
        let digest = Digest::of(data);
        cas.write(&digest, Bytes::copy_from_slice(data)).await.unwrap();
        digest
    }

    #[tokio::test]
    async fn returns_a_result_only_while_its_outputs_exist() {
        let (_dir, cas, ac) = fixture().await;
        let out = blob(&cas, b"output").await;
        let stdout = blob(&cas, b"log").await;
        let action = Digest::of(b"action");
        let result = ActionResult {
            output_files: vec![OutputFile { path: "o".into(), digest: Some(out.to_proto()), ..Default::default() }],
            stdout_digest: Some(stdout.to_proto()),
            stderr_digest: Some(Digest::empty().to_proto()),
            exit_code: 0,
            ..Default::default()
        };
        assert_eq!(ac.get(&action).await.unwrap(), None);
        ac.put(&action, &result).await.unwrap();
        assert_eq!(ac.get(&action).await.unwrap(), Some(result));
        cas.remove(&out).await.unwrap();
        assert_eq!(ac.get(&action).await.unwrap(), None, "incomplete result was returned");
    }

    #[tokio::test]
    async fn checks_files_inside_output_trees() {
        let (_dir, cas, ac) = fixture().await;
        let inner = blob(&cas, b"inner file").await;
        let tree = Tree {
            root: Some(Directory {
                files: vec![FileNode { name: "f".into(), digest: Some(inner.to_proto()), ..Default::default() }],
                ..Default::default()
            }),
            children: vec![],
        };
        let tree_digest = blob(&cas, &tree.encode_to_vec()).await;
        let action = Digest::of(b"tree action");
        let result = ActionResult {
            output_directories: vec![OutputDirectory {
                path: "d".into(),
                tree_digest: Some(tree_digest.to_proto()),
                ..Default::default()
            }],
            ..Default::default()
        };
        ac.put(&action, &result).await.unwrap();
        assert!(ac.get(&action).await.unwrap().is_some());
        cas.remove(&inner).await.unwrap();
        assert!(ac.get(&action).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_results_with_malformed_digests() {
        let (_dir, _cas, ac) = fixture().await;
        let result = ActionResult {
            output_files: vec![OutputFile {
                path: "o".into(),
                digest: Some(weir_proto::reapi::Digest { hash: "zz".into(), size_bytes: 1 }),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(matches!(ac.put(&Digest::of(b"a"), &result).await, Err(CacheError::InvalidArgument(_))));
    }

    #[tokio::test]
    async fn results_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        let cas: Store = Arc::new(MemoryStore::default());
        let action = Digest::of(b"durable");
        let result = ActionResult { exit_code: 3, ..Default::default() };
        ActionCache::new(super::super::open_database(&path, false).unwrap(), cas.clone()).put(&action, &result).await.unwrap();
        let reopened = ActionCache::new(super::super::open_database(&path, false).unwrap(), cas);
        assert_eq!(reopened.get(&action).await.unwrap(), Some(result));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_updates_are_all_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.redb");
        let cas: Store = Arc::new(MemoryStore::default());
        let ac = ActionCache::new(super::super::open_database(&path, false).unwrap(), cas.clone());
        let actions: Vec<Digest> = (0..64).map(|i| Digest::of(format!("action {i}").as_bytes())).collect();
        let puts: Vec<_> = actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                let (ac, action) = (ac.clone(), *action);
                tokio::spawn(async move { ac.put(&action, &ActionResult { exit_code: i as i32, ..Default::default() }).await })
            })
            .collect();
        for put in puts {
            put.await.unwrap().unwrap();
        }
        drop(ac);
        let reopened = ActionCache::new(super::super::open_database(&path, false).unwrap(), cas);
        for (i, action) in actions.iter().enumerate() {
            let got = reopened.get(action).await.unwrap();
            assert_eq!(got.map(|r| r.exit_code), Some(i as i32), "result {i} lost");
        }
    }
}
