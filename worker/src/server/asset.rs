//! [`AssetService`]: the Remote Asset API v1 (`Fetch` and `Push`) over the
//! [`crate::cache::AssetIndex`].
//!
//! Key decisions: this server never downloads anything itself — `Fetch`
//! answers only from what was pushed, and `NOT_FOUND` otherwise (as a gRPC
//! error, which BuildStream and Bazel both treat as a miss). A pushed asset
//! is only served while its content is in the CAS: the blob for
//! `FetchBlob`, the whole tree (every directory and file) for
//! `FetchDirectory`. `Push` refuses content that is not in the CAS yet
//! (`FAILED_PRECONDITION`), so the index never points at nothing.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::asset::fetch_server::Fetch;
use weir_proto::asset::push_server::Push;
use weir_proto::asset::{
    FetchBlobRequest, FetchBlobResponse, FetchDirectoryRequest, FetchDirectoryResponse, PushBlobRequest,
    PushBlobResponse, PushDirectoryRequest, PushDirectoryResponse, Qualifier,
};
use weir_proto::protobuf::Timestamp;
use weir_proto::Digest;

use super::error::ok_status;
use super::tree_walker::walk_tree;
use super::{ServerError, ServerState};
use crate::cache::{AssetKind, AssetRecord};

/// Largest directory tree checked for completeness.
const MAX_TREE: usize = 1_000_000;

/// The Remote Asset Fetch and Push services.
pub struct AssetService {
    state: Arc<ServerState>,
}

fn expiry(timestamp: Option<&Timestamp>) -> Option<u64> {
    timestamp.filter(|t| t.seconds > 0).map(|t| t.seconds as u64)
}

fn timestamp(seconds: Option<u64>) -> Option<Timestamp> {
    seconds.map(|s| Timestamp { seconds: s.min(i64::MAX as u64) as i64, nanos: 0 })
}

impl AssetService {
    /// A service over the shared state.
    pub fn new(state: Arc<ServerState>) -> Self {
        AssetService { state }
    }

    /// The first record whose content is complete in the CAS.
    async fn find(&self, uris: &[String], qualifiers: &[Qualifier], kind: AssetKind) -> Result<(AssetRecord, Digest), ServerError> {
        if uris.is_empty() {
            return Err(ServerError::InvalidArgument("at least one URI is required".into()));
        }
        for record in self.state.assets.fetch(uris, qualifiers, kind).await? {
            let digest = record.digest()?;
            if self.is_complete(&digest, kind).await? {
                return Ok((record, digest));
            }
        }
        Err(ServerError::NotFound("no asset for these URIs and qualifiers".into()))
    }

    async fn is_complete(&self, digest: &Digest, kind: AssetKind) -> Result<bool, ServerError> {
        match kind {
            AssetKind::Blob => Ok(self.state.find_missing(std::slice::from_ref(digest)).await?.is_empty()),
            AssetKind::Directory => {
                let walk = walk_tree(&self.state.store, *digest, MAX_TREE).await?;
                if !walk.missing.is_empty() || !walk.complete {
                    return Ok(false);
                }
                Ok(self.state.find_missing(&walk.file_digests()).await?.is_empty())
            }
        }
    }

    /// Records an asset after checking that its content is in the CAS.
    async fn record(
        &self,
        uris: &[String],
        qualifiers: &[Qualifier],
        expire_at: Option<&Timestamp>,
        digest: Option<&weir_proto::reapi::Digest>,
        kind: AssetKind,
    ) -> Result<(), ServerError> {
        let digest = Digest::try_from(digest)?;
        if !self.is_complete(&digest, kind).await? {
            return Err(ServerError::FailedPrecondition(format!("the content {digest} of the asset is not in the CAS")));
        }
        self.state.assets.push(uris, qualifiers, kind, &digest, expiry(expire_at)).await?;
        Ok(())
    }

    async fn inner_push_blob(&self, r: PushBlobRequest) -> Result<PushBlobResponse, ServerError> {
        self.state.instances.check_with_function(&r.instance_name, r.digest_function)?;
        self.record(&r.uris, &r.qualifiers, r.expire_at.as_ref(), r.blob_digest.as_ref(), AssetKind::Blob).await?;
        Ok(PushBlobResponse {})
    }

    async fn inner_push_directory(&self, r: PushDirectoryRequest) -> Result<PushDirectoryResponse, ServerError> {
        self.state.instances.check_with_function(&r.instance_name, r.digest_function)?;
        let root = r.root_directory_digest.as_ref();
        self.record(&r.uris, &r.qualifiers, r.expire_at.as_ref(), root, AssetKind::Directory).await?;
        Ok(PushDirectoryResponse {})
    }

    async fn inner_fetch_blob(&self, request: FetchBlobRequest) -> Result<FetchBlobResponse, ServerError> {
        self.state.instances.check_with_function(&request.instance_name, request.digest_function)?;
        let (record, digest) = self.find(&request.uris, &request.qualifiers, AssetKind::Blob).await?;
        Ok(FetchBlobResponse {
            status: Some(ok_status()),
            uri: record.uri,
            qualifiers: request.qualifiers,
            expires_at: timestamp(record.expire_at),
            blob_digest: Some(digest.to_proto()),
            digest_function: request.digest_function,
        })
    }

    async fn inner_fetch_directory(&self, request: FetchDirectoryRequest) -> Result<FetchDirectoryResponse, ServerError> {
        self.state.instances.check_with_function(&request.instance_name, request.digest_function)?;
        let (record, digest) = self.find(&request.uris, &request.qualifiers, AssetKind::Directory).await?;
        Ok(FetchDirectoryResponse {
            status: Some(ok_status()),
            uri: record.uri,
            qualifiers: request.qualifiers,
            expires_at: timestamp(record.expire_at),
            root_directory_digest: Some(digest.to_proto()),
            digest_function: request.digest_function,
        })
    }
}

#[tonic::async_trait]
impl Fetch for AssetService {
    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name))]
    async fn fetch_blob(&self, request: Request<FetchBlobRequest>) -> Result<Response<FetchBlobResponse>, Status> {
        Ok(Response::new(self.inner_fetch_blob(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name))]
    async fn fetch_directory(
        &self,
        request: Request<FetchDirectoryRequest>,
    ) -> Result<Response<FetchDirectoryResponse>, Status> {
        Ok(Response::new(self.inner_fetch_directory(request.into_inner()).await?))
    }
}

#[tonic::async_trait]
impl Push for AssetService {
    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name))]
    async fn push_blob(&self, request: Request<PushBlobRequest>) -> Result<Response<PushBlobResponse>, Status> {
        Ok(Response::new(self.inner_push_blob(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name))]
    async fn push_directory(
        &self,
        request: Request<PushDirectoryRequest>,
    ) -> Result<Response<PushDirectoryResponse>, Status> {
        Ok(Response::new(self.inner_push_directory(request.into_inner()).await?))
    }
}
