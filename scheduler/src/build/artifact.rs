//! [`Artifact`] and [`ArtifactCache`]: an element's output tree plus its
//! metadata, stored in the CAS and indexed through Remote Asset (or, on a
//! server without it, the Action Cache: see [`crate::remote::BlobIndex`]).
//!
//! Key decisions: the metadata record is a small JSON blob in the CAS (its
//! fields are Weir's own; compatibility with BuildStream's artifact proto is
//! a later step) and it is pushed under two URIs,
//! `weir:artifact/<artifact name>` for the strong and for the weak key, where
//! the artifact name is BuildStream's `<project>/<normal-name>/<key>`. The
//! push names the output tree and the logs as references, so a server that
//! tracks references keeps them alive as long as the record. A record found
//! by URI counts only if its tree root is still in the CAS.

use serde::{Deserialize, Serialize};
use weir_proto::Digest;

use super::plan::{PlanElement, PublicData};
use super::BuildError;
use crate::cachekey::artifact_name;
use crate::remote::{Blob, BlobSet, References, RemoteClient};

/// Version of the record format; records of another version are ignored.
const RECORD_FORMAT: u32 = 2;

/// An element's artifact record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Record format version.
    pub format: u32,
    /// The element's project.
    pub project: String,
    /// The element.
    pub element: String,
    /// The strong key.
    pub strong_key: String,
    /// The weak key.
    pub weak_key: String,
    /// Root `Directory` of the output tree, as `hash/size`.
    pub files: String,
    /// The command's stdout in the CAS (`hash/size`), for elements that ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// The command's stderr in the CAS (`hash/size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// The action that produced it (`hash/size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The direct build dependencies, as `(element, strong key)`.
    pub dependencies: Vec<(String, String)>,
    /// The element's public data that dependants use (split rules,
    /// integration commands, overlap whitelist).
    #[serde(default)]
    pub public: PublicData,
}

impl Artifact {
    /// A record for `element` whose output tree is `files`.
    pub fn new(element: &PlanElement, files: Digest, dependencies: Vec<(String, String)>) -> Self {
        Artifact {
            format: RECORD_FORMAT,
            project: element.project.clone(),
            element: element.name.clone(),
            strong_key: element.keys.strong.clone(),
            weak_key: element.keys.weak.clone(),
            files: files.to_string(),
            stdout: None,
            stderr: None,
            action: None,
            dependencies,
            public: element.public.clone(),
        }
    }

    /// The output tree's root digest.
    pub fn files_digest(&self) -> Result<Digest, BuildError> {
        self.files.parse().map_err(|e: weir_proto::DigestError| BuildError::Artifact { uri: self.element.clone(), reason: e.to_string() })
    }

    /// The log digests present (stdout, then stderr).
    pub fn log_digests(&self) -> Vec<Digest> {
        [&self.stdout, &self.stderr].into_iter().flatten().filter_map(|text| text.parse().ok()).collect()
    }
}

/// The URI an artifact of `project`/`element` at `key` is indexed under.
pub fn artifact_uri(project: &str, element: &str, key: &str) -> String {
    format!("weir:artifact/{}", artifact_name(project, element, key))
}

/// Index lookups in flight at once in [`ArtifactCache::lookup_many`].
const INDEX_LOOKUPS: usize = 128;

/// The parts of an artifact name, for [`ArtifactCache::lookup_many`].
#[derive(Debug, Clone, Copy)]
pub struct ArtifactName<'a> {
    /// The element's project.
    pub project: &'a str,
    /// The element's full name.
    pub element: &'a str,
    /// The strong or weak key.
    pub key: &'a str,
}

/// Artifact lookup and storage on one remote.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    remote: RemoteClient,
}

impl ArtifactCache {
    /// An artifact cache on `remote` (its CAS and Remote Asset services).
    pub fn new(remote: RemoteClient) -> Self {
        ArtifactCache { remote }
    }

    /// The remote this cache uses.
    pub fn remote(&self) -> &RemoteClient {
        &self.remote
    }

    /// The artifact of `project`/`element` under `key` (strong or weak), if
    /// it is indexed and its output tree is still in the CAS.
    pub async fn lookup(&self, project: &str, element: &str, key: &str) -> Result<Option<Artifact>, BuildError> {
        let uri = artifact_uri(project, element, key);
        let Some(record) = self.remote.index.fetch(&uri).await? else {
            return Ok(None);
        };
        let data = match self.remote.cas.download_one(record).await {
            Ok(data) => data,
            Err(crate::remote::RemoteError::MissingBlob(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let artifact: Artifact = serde_json::from_slice(&data).map_err(|e| BuildError::Artifact { uri: uri.clone(), reason: e.to_string() })?;
        if artifact.format != RECORD_FORMAT {
            return Ok(None);
        }
        let root = artifact.files_digest()?;
        if !self.remote.cas.find_missing(&[root]).await?.is_empty() {
            return Ok(None);
        }
        Ok(Some(artifact))
    }

    /// [`lookup`](Self::lookup) for many artifacts at once, one answer per
    /// name in order: the index is asked per name, `INDEX_LOOKUPS` at a
    /// time, then the records are read and their trees checked in batches,
    /// so a cached graph costs one index round trip per element instead of
    /// three. A record that vanishes between the steps is looked up alone.
    pub async fn lookup_many(&self, names: &[ArtifactName<'_>]) -> Vec<Result<Option<Artifact>, BuildError>> {
        use futures::StreamExt;
        let uris: Vec<String> = names.iter().map(|n| artifact_uri(n.project, n.element, n.key)).collect();
        let index = &self.remote.index;
        let records: Vec<Result<Option<Digest>, BuildError>> = futures::stream::iter(uris)
            .map(|uri: String| async move { Ok(index.fetch(&uri).await?) })
            .buffered(INDEX_LOOKUPS)
            .collect()
            .await;
        let found: Vec<Digest> = records.iter().filter_map(|r| r.as_ref().ok().copied().flatten()).collect();
        let Ok(data) = self.read_records(&found).await else { return self.lookup_each(names).await };
        let mut artifacts: Vec<Result<Option<Artifact>, BuildError>> = records
            .into_iter()
            .zip(names)
            .map(|(record, name)| {
                let Some(record) = record? else { return Ok(None) };
                let Some(bytes) = data.get(&record) else { return Ok(None) };
                let uri = artifact_uri(name.project, name.element, name.key);
                let artifact: Artifact = serde_json::from_slice(bytes).map_err(|e| BuildError::Artifact { uri, reason: e.to_string() })?;
                Ok((artifact.format == RECORD_FORMAT).then_some(artifact))
            })
            .collect();
        let roots: Vec<Digest> = artifacts.iter().filter_map(|a| a.as_ref().ok()?.as_ref()?.files_digest().ok()).collect();
        let Ok(missing) = self.remote.cas.find_missing(&roots).await else { return self.lookup_each(names).await };
        let missing: std::collections::HashSet<Digest> = missing.into_iter().collect();
        for slot in &mut artifacts {
            let gone = match slot {
                Ok(Some(artifact)) => artifact.files_digest().map_or(true, |root| missing.contains(&root)),
                _ => false,
            };
            if gone {
                *slot = Ok(None);
            }
        }
        artifacts
    }

    /// Each name looked up on its own (when a batch step failed: every
    /// element then gets its own answer or error).
    async fn lookup_each(&self, names: &[ArtifactName<'_>]) -> Vec<Result<Option<Artifact>, BuildError>> {
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(self.lookup(name.project, name.element, name.key).await);
        }
        out
    }

    /// The records among `digests` that the CAS still has, read in batches.
    async fn read_records(&self, digests: &[Digest]) -> Result<std::collections::HashMap<Digest, Vec<u8>>, BuildError> {
        let missing: std::collections::HashSet<Digest> = self.remote.cas.find_missing(digests).await?.into_iter().collect();
        let present: Vec<Digest> = digests.iter().filter(|d| !missing.contains(d)).copied().collect();
        Ok(self.remote.cas.download(&present).await?)
    }

    /// Stores the record and indexes it under its strong and weak keys.
    pub async fn store(&self, artifact: &Artifact) -> Result<(), BuildError> {
        let data = serde_json::to_vec(artifact).map_err(|e| BuildError::Artifact { uri: artifact.element.clone(), reason: e.to_string() })?;
        let digest = Digest::of(&data);
        self.remote.cas.upload(&BlobSet::from([(digest, Blob::Data(data))])).await?;
        let uris = vec![
            artifact_uri(&artifact.project, &artifact.element, &artifact.strong_key),
            artifact_uri(&artifact.project, &artifact.element, &artifact.weak_key),
        ];
        let references = References { blobs: artifact.log_digests(), directories: vec![artifact.files_digest()?] };
        self.remote.index.push(&uris, digest, &references).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::plan::tests::element;
    use crate::remote::fake_server::FakeServer;
    use crate::remote::EndpointSpec;

    #[test]
    fn uris_use_buildstream_artifact_names() {
        assert_eq!(artifact_uri("proj", "base/alpine.bst", "abc"), "weir:artifact/proj/base-alpine/abc");
    }

    /// Stores a record on `server` and looks it up by both keys; then takes its tree away.
    async fn round_trip(server: &FakeServer) {
        let cache = ArtifactCache::new(RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap());
        let mut el = element("hello.bst", &[], &[]);
        el.public.integration_commands = vec!["ldconfig".into()];
        el.public.split_rules.domains.insert("devel".into(), vec!["/usr/include/**".into()]);
        assert_eq!(cache.lookup("test", "hello.bst", "hello.bst-strong").await.unwrap(), None);
        let root = server.state.put(prost::Message::encode_to_vec(&weir_proto::reapi::Directory::default()));
        let artifact = Artifact::new(&el, root, vec![("dep.bst".into(), "k".into())]);
        cache.store(&artifact).await.unwrap();
        assert_eq!(cache.lookup("test", "hello.bst", "hello.bst-strong").await.unwrap().as_ref(), Some(&artifact));
        assert_eq!(artifact.public, el.public, "the record carries the public data");
        assert_eq!(cache.lookup("test", "hello.bst", "hello.bst-weak").await.unwrap().as_ref(), Some(&artifact));
        assert_eq!(cache.lookup("test", "other.bst", "hello.bst-strong").await.unwrap(), None);
        // Once the tree is gone from the CAS, the record no longer counts.
        server.state.blobs.lock().unwrap().remove(&root);
        assert_eq!(cache.lookup("test", "hello.bst", "hello.bst-strong").await.unwrap(), None);
    }

    #[tokio::test]
    async fn stored_artifacts_are_found_by_strong_and_weak_key_only_with_their_tree() {
        let server = FakeServer::start_default().await;
        round_trip(&server).await;
        assert_eq!(server.state.assets.lock().unwrap().len(), 2, "indexed through Remote Asset");
        assert!(server.state.action_cache.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn many_lookups_answer_each_name_like_a_single_lookup() {
        let server = FakeServer::start_default().await;
        let cache = ArtifactCache::new(RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap());
        let mut stored = Vec::new();
        for name in ["a.bst", "b.bst", "c.bst"] {
            let root = server.state.put(format!("tree of {name}").into_bytes());
            let artifact = Artifact::new(&element(name, &[], &[]), root, vec![]);
            cache.store(&artifact).await.unwrap();
            stored.push((artifact, root));
        }
        // b's tree is gone, c's record is gone, d was never built.
        server.state.blobs.lock().unwrap().remove(&stored[1].1);
        let c_record = Digest::of(&serde_json::to_vec(&stored[2].0).unwrap());
        server.state.blobs.lock().unwrap().remove(&c_record);
        let names: Vec<String> = ["a.bst", "b.bst", "c.bst", "d.bst"].iter().map(|n| format!("{n}-strong")).collect();
        let query: Vec<ArtifactName<'_>> = ["a.bst", "b.bst", "c.bst", "d.bst"]
            .iter()
            .zip(&names)
            .map(|(element, key)| ArtifactName { project: "test", element, key })
            .collect();
        let many: Vec<Option<Artifact>> = cache.lookup_many(&query).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(many, vec![Some(stored[0].0.clone()), None, None, None]);
        for (name, expected) in query.iter().zip(&many) {
            assert_eq!(&cache.lookup(name.project, name.element, name.key).await.unwrap(), expected, "{}", name.element);
        }
    }

    #[tokio::test]
    async fn without_remote_asset_artifacts_are_indexed_in_the_action_cache() {
        let server = FakeServer::start_default_with(crate::remote::fake_server::AssetApi::None).await;
        round_trip(&server).await;
        assert_eq!(server.state.action_cache.lock().unwrap().len(), 2, "one entry per key");
    }
}
