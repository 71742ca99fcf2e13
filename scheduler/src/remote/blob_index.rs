//! [`BlobIndex`]: names (artifact URIs) to CAS digests, through the Remote
//! Asset API where the server serves it and through the Action Cache where it
//! does not.
//!
//! Key decisions: the server decides, not a list of server names. Before its
//! first use on an endpoint the index asks, once, whether the server serves
//! both halves of Remote Asset: a `FetchBlob` and a `PushBlob` with no URIs
//! change nothing, and any answer but `UNIMPLEMENTED` means the call is served
//! (BuildGrid 0.9, for one, serves neither). Only a server serving both gets
//! the index in Remote Asset, so a server that fetches but refuses pushes does
//! not hide what was pushed elsewhere. Otherwise the Action Cache, which every
//! REAPI cache serves, holds it: a name is kept as the result of a synthetic
//! action, an `Action` with no command whose `salt` is the name (its digest is
//! never a real action's), and the `ActionResult` names the indexed blob as
//! its one output file, so a cache that checks output blobs on read (as
//! BuildGrid does) drops the entry when the blob is gone. The choice holds for
//! the endpoint, for every clone of the client; the two stores never mix.

use std::sync::Arc;

use prost::Message;
use tokio::sync::OnceCell;
use weir_proto::reapi::{Action, ActionResult, OutputFile};
use weir_proto::Digest;

use super::{ActionCache, References, RemoteAsset, RemoteError};

/// Path of the indexed blob inside an index entry's `ActionResult`.
const INDEXED_BLOB_PATH: &str = "indexed-blob";

/// Where an endpoint's index lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexStore {
    /// The Remote Asset API (`Fetch`/`Push`).
    RemoteAsset,
    /// The Action Cache, under synthetic action digests.
    ActionCache,
}

/// A name → blob index on one endpoint.
#[derive(Debug, Clone)]
pub struct BlobIndex {
    asset: RemoteAsset,
    action_cache: ActionCache,
    store: Arc<OnceCell<IndexStore>>,
}

impl BlobIndex {
    /// An index over the endpoint's Remote Asset and Action Cache clients.
    pub fn new(asset: RemoteAsset, action_cache: ActionCache) -> Self {
        BlobIndex { asset, action_cache, store: Arc::new(OnceCell::new()) }
    }

    /// Where the index lives, once known (`None` before the first use).
    pub fn known_store(&self) -> Option<IndexStore> {
        self.store.get().copied()
    }

    /// Where the index lives, asking the server on first use.
    pub async fn store(&self) -> Result<IndexStore, RemoteError> {
        self.store.get_or_try_init(|| self.probe()).await.copied()
    }

    /// Asks whether the server serves `FetchBlob` and `PushBlob`.
    async fn probe(&self) -> Result<IndexStore, RemoteError> {
        let fetch = served(self.asset.fetch_blob(&[], &[]).await.map(|_| ()))?;
        let push = served(self.asset.push_blob(&[], &[], Digest::empty(), &References::default()).await)?;
        let store = if fetch && push { IndexStore::RemoteAsset } else { IndexStore::ActionCache };
        if store == IndexStore::ActionCache {
            tracing::info!(fetch, push, "the server does not serve Remote Asset fetch and push; indexing in its Action Cache");
        }
        Ok(store)
    }

    /// The blob indexed under `name`, if any.
    pub async fn fetch(&self, name: &str) -> Result<Option<Digest>, RemoteError> {
        if self.store().await? == IndexStore::RemoteAsset {
            return self.asset.fetch_blob(&[name.to_string()], &[]).await;
        }
        let Some(result) = self.action_cache.get(entry_digest(name)).await? else {
            return Ok(None);
        };
        match result.output_files.iter().find(|file| file.path == INDEXED_BLOB_PATH) {
            Some(file) => Ok(Some(Digest::try_from(file.digest.as_ref())?)),
            None => Ok(None),
        }
    }

    /// Indexes `blob` under each of `names`; `references` are what the blob
    /// keeps alive where the store tracks references (Remote Asset).
    pub async fn push(&self, names: &[String], blob: Digest, references: &References) -> Result<(), RemoteError> {
        if self.store().await? == IndexStore::RemoteAsset {
            return self.asset.push_blob(names, &[], blob, references).await;
        }
        let result = ActionResult {
            output_files: vec![OutputFile { path: INDEXED_BLOB_PATH.into(), digest: Some(blob.to_proto()), ..Default::default() }],
            ..Default::default()
        };
        for name in names {
            self.action_cache.update(entry_digest(name), result.clone()).await?;
        }
        Ok(())
    }
}

/// Whether a probe's answer shows the call is served: only `UNIMPLEMENTED`
/// says no; a transient failure is passed on (the probe is asked again).
fn served(answer: Result<(), RemoteError>) -> Result<bool, RemoteError> {
    match answer {
        Err(error) if error.code() == Some(tonic::Code::Unimplemented) => Ok(false),
        Err(error) if error.is_retryable() => Err(error),
        _ => Ok(true),
    }
}

/// The Action Cache key of the index entry for `name`: the digest of an
/// `Action` with no command or input root whose salt is the name.
pub fn entry_digest(name: &str) -> Digest {
    let action = Action { salt: name.as_bytes().to_vec(), ..Default::default() };
    Digest::of(&action.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::fake_server::{AssetApi, FakeServer};
    use crate::remote::{EndpointSpec, RemoteClient};

    #[test]
    fn entry_digests_differ_by_name_and_from_an_empty_action() {
        assert_ne!(entry_digest("weir:artifact/p/a/1"), entry_digest("weir:artifact/p/a/2"));
        assert_ne!(entry_digest("x"), Digest::of(&Action::default().encode_to_vec()));
        assert_eq!(entry_digest("x"), entry_digest("x"));
    }

    #[tokio::test]
    async fn remote_asset_is_used_where_the_server_serves_it() {
        let server = FakeServer::start_default().await;
        let client = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        let blob = server.state.put(b"record".to_vec());
        assert_eq!(client.index.fetch("weir:artifact/p/e/k").await.unwrap(), None);
        client.index.push(&["weir:artifact/p/e/k".into()], blob, &References::default()).await.unwrap();
        assert_eq!(client.index.fetch("weir:artifact/p/e/k").await.unwrap(), Some(blob));
        assert_eq!(client.index.known_store(), Some(IndexStore::RemoteAsset));
        assert_eq!(client.action_cache.get(entry_digest("weir:artifact/p/e/k")).await.unwrap(), None, "nothing in the Action Cache");
    }

    #[tokio::test]
    async fn without_remote_asset_the_action_cache_holds_the_index() {
        let server = FakeServer::start_default_with(AssetApi::None).await;
        let client = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        let blob = server.state.put(b"record".to_vec());
        let names = ["weir:artifact/p/e/strong".to_string(), "weir:artifact/p/e/weak".to_string()];
        assert_eq!(client.index.fetch(&names[0]).await.unwrap(), None);
        assert_eq!(client.index.known_store(), Some(IndexStore::ActionCache));
        client.index.push(&names, blob, &References::default()).await.unwrap();
        for name in &names {
            assert_eq!(client.index.fetch(name).await.unwrap(), Some(blob), "{name}");
        }
        // A clone shares the decision, and the entries are real Action Cache entries.
        let clone = client.clone();
        assert_eq!(clone.index.known_store(), Some(IndexStore::ActionCache));
        let entry = client.action_cache.get(entry_digest(&names[1])).await.unwrap().unwrap();
        assert_eq!(entry.output_files[0].digest, Some(blob.to_proto()));
        assert_eq!(client.index.fetch("weir:artifact/p/other/k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_server_that_fetches_but_refuses_pushes_gets_the_action_cache_index() {
        let server = FakeServer::start_default_with(AssetApi::FetchOnly).await;
        let client = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        let blob = server.state.put(b"record".to_vec());
        client.index.push(&["weir:artifact/p/e/k".into()], blob, &References::default()).await.unwrap();
        assert_eq!(client.index.known_store(), Some(IndexStore::ActionCache));
        // A new client (the next run) decides the same way and finds the entry.
        let next = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        assert_eq!(next.index.fetch("weir:artifact/p/e/k").await.unwrap(), Some(blob));
        assert!(server.state.assets.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_retryable_error_and_is_asked_again() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("grpc://{}", listener.local_addr().unwrap());
        drop(listener);
        let spec = EndpointSpec::new(&url).unwrap();
        let channel = spec.connect().unwrap();
        let index = BlobIndex::new(RemoteAsset::new(channel.clone(), ""), ActionCache::new(channel, ""));
        let error = index.fetch("weir:artifact/p/e/k").await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert_eq!(index.known_store(), None, "nothing decided from a failed probe");
    }
}
