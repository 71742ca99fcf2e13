//! [`RemoteAsset`]: the Remote Asset API (Fetch and Push) used as an index
//! from names (artifact URIs) to CAS digests.
//!
//! Key decision: "not found" is `Ok(None)`, so a cache miss is never an
//! error; the caller still checks that the digest's content is in the CAS.

use weir_proto::asset::fetch_client::FetchClient;
use weir_proto::asset::push_client::PushClient;
use weir_proto::asset::{FetchBlobRequest, PushBlobRequest, Qualifier};
use weir_proto::Digest;

use super::endpoint::AuthChannel;
use super::RemoteError;

/// The Remote Asset clients of one endpoint.
#[derive(Debug, Clone)]
pub struct RemoteAsset {
    fetch: FetchClient<AuthChannel>,
    push: PushClient<AuthChannel>,
    instance_name: String,
}

/// What a blob pushed under a URI keeps alive in the CAS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct References {
    /// Blobs the pushed blob refers to.
    pub blobs: Vec<Digest>,
    /// Directory trees the pushed blob refers to.
    pub directories: Vec<Digest>,
}

impl RemoteAsset {
    /// Remote Asset clients over `channel`.
    pub fn new(channel: AuthChannel, instance_name: &str) -> Self {
        RemoteAsset { fetch: FetchClient::new(channel.clone()), push: PushClient::new(channel), instance_name: instance_name.to_string() }
    }

    /// The blob indexed under any of `uris` (the first the server knows), if any.
    pub async fn fetch_blob(&self, uris: &[String], qualifiers: &[(String, String)]) -> Result<Option<Digest>, RemoteError> {
        let request = FetchBlobRequest {
            instance_name: self.instance_name.clone(),
            uris: uris.to_vec(),
            qualifiers: to_qualifiers(qualifiers),
            ..Default::default()
        };
        let response = match self.fetch.clone().fetch_blob(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => return Err(RemoteError::rpc("FetchBlob", status)),
        };
        match &response.status {
            Some(status) if status.code == tonic::Code::NotFound as i32 => return Ok(None),
            Some(status) if status.code != 0 => return Err(RemoteError::from_rpc_status("FetchBlob", status)),
            _ => {}
        }
        Ok(Some(Digest::try_from(response.blob_digest.as_ref())?))
    }

    /// Indexes `blob` under each of `uris`.
    pub async fn push_blob(
        &self,
        uris: &[String],
        qualifiers: &[(String, String)],
        blob: Digest,
        references: &References,
    ) -> Result<(), RemoteError> {
        let request = PushBlobRequest {
            instance_name: self.instance_name.clone(),
            uris: uris.to_vec(),
            qualifiers: to_qualifiers(qualifiers),
            blob_digest: Some(blob.to_proto()),
            references_blobs: references.blobs.iter().map(Digest::to_proto).collect(),
            references_directories: references.directories.iter().map(Digest::to_proto).collect(),
            ..Default::default()
        };
        self.push.clone().push_blob(request).await.map_err(|s| RemoteError::rpc("PushBlob", s))?;
        Ok(())
    }
}

fn to_qualifiers(qualifiers: &[(String, String)]) -> Vec<Qualifier> {
    qualifiers.iter().map(|(name, value)| Qualifier { name: name.clone(), value: value.clone() }).collect()
}
