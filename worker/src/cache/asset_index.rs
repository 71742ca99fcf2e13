//! [`AssetIndex`]: the Remote Asset index, (URI, qualifiers) → blob or
//! directory digest, in redb.
//!
//! Key decision: the key is the SHA-256 of a canonical encoding of one URI
//! and the qualifiers sorted by name, so qualifier order in a request does not
//! matter and a duplicate qualifier name is refused. A push under several
//! URIs writes one record per URI in one transaction. Whether the referenced
//! content is still in the CAS is checked by the caller (the Fetch service).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use weir_proto::asset::Qualifier;
use weir_proto::Digest;

use super::{blocking, CacheError};

/// Key hash → JSON-encoded [`AssetRecord`].
const ASSETS: TableDefinition<&str, &[u8]> = TableDefinition::new("assets");

/// Whether an asset is a single blob or a directory tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetKind {
    /// A blob (`FetchBlob`/`PushBlob`).
    Blob,
    /// A directory (`FetchDirectory`/`PushDirectory`): the digest is the root `Directory`.
    Directory,
}

/// One entry of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRecord {
    /// The URI the asset was pushed under.
    pub uri: String,
    /// Blob or directory.
    pub kind: AssetKind,
    /// `hash/size` of the blob or root directory.
    pub digest: String,
    /// Seconds since the Unix epoch after which the record is ignored.
    pub expire_at: Option<u64>,
}

impl AssetRecord {
    /// The referenced digest.
    pub fn digest(&self) -> Result<Digest, CacheError> {
        self.digest.parse().map_err(|e| CacheError::Decode { key: self.uri.clone(), reason: format!("{e}") })
    }
}

/// The Remote Asset index: a cheap-clone handle.
#[derive(Clone)]
pub struct AssetIndex {
    db: Arc<redb::Database>,
}

/// The index key of `uri` with `qualifiers`, or an error for duplicate names.
fn key_of(uri: &str, qualifiers: &[Qualifier]) -> Result<String, CacheError> {
    let mut sorted: Vec<&Qualifier> = qualifiers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(pair) = sorted.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(CacheError::InvalidArgument(format!("qualifier {:?} is given twice", pair[0].name)));
    }
    let mut hasher = Sha256::new();
    // Length-prefixed fields: no separator can be forged by a value.
    for part in std::iter::once(uri).chain(sorted.iter().flat_map(|q| [q.name.as_str(), q.value.as_str()])) {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    Ok(hex::encode(hasher.finalize()))
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl AssetIndex {
    /// An index over an open database.
    pub fn new(db: Arc<redb::Database>) -> Self {
        AssetIndex { db }
    }

    /// Records `digest` as the `kind` asset for every URI in `uris` with
    /// `qualifiers`, durably.
    pub async fn push(
        &self,
        uris: &[String],
        qualifiers: &[Qualifier],
        kind: AssetKind,
        digest: &Digest,
        expire_at: Option<u64>,
    ) -> Result<(), CacheError> {
        if uris.is_empty() {
            return Err(CacheError::InvalidArgument("at least one URI is required".into()));
        }
        let mut entries = Vec::with_capacity(uris.len());
        for uri in uris {
            if uri.is_empty() {
                return Err(CacheError::InvalidArgument("a URI is empty".into()));
            }
            let record = AssetRecord { uri: uri.clone(), kind, digest: digest.to_string(), expire_at };
            let value = serde_json::to_vec(&record).map_err(CacheError::database)?;
            entries.push((key_of(uri, qualifiers)?, value));
        }
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(CacheError::database)?;
            {
                let mut table = txn.open_table(ASSETS).map_err(CacheError::database)?;
                for (key, value) in &entries {
                    table.insert(key.as_str(), value.as_slice()).map_err(CacheError::database)?;
                }
            }
            txn.commit().map_err(CacheError::database)
        })
        .await
    }

    /// The unexpired records of kind `kind` for `uris` with `qualifiers`, in
    /// the order of `uris`.
    pub async fn fetch(&self, uris: &[String], qualifiers: &[Qualifier], kind: AssetKind) -> Result<Vec<AssetRecord>, CacheError> {
        let keys = uris.iter().map(|uri| key_of(uri, qualifiers)).collect::<Result<Vec<_>, _>>()?;
        let db = self.db.clone();
        let raws = blocking(move || {
            let txn = db.begin_read().map_err(CacheError::database)?;
            let table = match txn.open_table(ASSETS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(err) => return Err(CacheError::database(err)),
            };
            let mut out = Vec::new();
            for key in &keys {
                if let Some(value) = table.get(key.as_str()).map_err(CacheError::database)? {
                    out.push(value.value().to_vec());
                }
            }
            Ok(out)
        })
        .await?;
        let now = now_secs();
        Ok(raws
            .iter()
            .filter_map(|raw| match serde_json::from_slice::<AssetRecord>(raw) {
                Ok(record) => Some(record),
                Err(err) => {
                    tracing::error!(%err, "unreadable asset record ignored");
                    None
                }
            })
            .filter(|r| r.kind == kind && r.expire_at.is_none_or(|t| t > now))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, value: &str) -> Qualifier {
        Qualifier { name: name.into(), value: value.into() }
    }

    fn index() -> (tempfile::TempDir, AssetIndex) {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_database(&dir.path().join("c.redb"), false).unwrap();
        (dir, AssetIndex::new(db))
    }

    #[tokio::test]
    async fn qualifier_order_does_not_matter_but_values_do() {
        let (_dir, index) = index();
        let digest = Digest::of(b"tarball");
        let uris = vec!["https://example.invalid/a.tar".to_string()];
        index.push(&uris, &[q("a", "1"), q("b", "2")], AssetKind::Blob, &digest, None).await.unwrap();
        let hit = index.fetch(&uris, &[q("b", "2"), q("a", "1")], AssetKind::Blob).await.unwrap();
        assert_eq!(hit.len(), 1);
        assert_eq!(hit[0].digest().unwrap(), digest);
        assert!(index.fetch(&uris, &[q("a", "1"), q("b", "3")], AssetKind::Blob).await.unwrap().is_empty());
        assert!(index.fetch(&uris, &[q("a", "1"), q("b", "2")], AssetKind::Directory).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn expired_records_and_duplicate_qualifiers() {
        let (_dir, index) = index();
        let uris = vec!["u".to_string()];
        index.push(&uris, &[], AssetKind::Blob, &Digest::of(b"x"), Some(1)).await.unwrap();
        assert!(index.fetch(&uris, &[], AssetKind::Blob).await.unwrap().is_empty());
        let dup = [q("a", "1"), q("a", "2")];
        assert!(matches!(index.fetch(&uris, &dup, AssetKind::Blob).await, Err(CacheError::InvalidArgument(_))));
    }
}
