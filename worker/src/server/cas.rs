//! [`CasService`]: the REAPI `ContentAddressableStorage` service.
//!
//! Every method parses the request (instance name, digest function, each
//! digest), calls an `inner_*` function returning [`ServerError`], and
//! converts once. Batch calls answer per blob: a malformed or mismatching
//! entry fails alone. A batch whose total exceeds `max_batch_size` is refused
//! whole (clients must use ByteStream). The chunking RPCs (`SplitBlob`,
//! `SpliceBlob`, `GetChunkMapping`, `RegisterChunkMapping`) answer
//! `UNIMPLEMENTED`, and Capabilities says `split_blob_support: false`.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use weir_proto::reapi::content_addressable_storage_server::ContentAddressableStorage;
use weir_proto::reapi::{
    batch_read_blobs_response, batch_update_blobs_request, batch_update_blobs_response, compressor, BatchReadBlobsRequest, BatchReadBlobsResponse,
    BatchUpdateBlobsRequest, BatchUpdateBlobsResponse, FindMissingBlobsRequest, FindMissingBlobsResponse,
    GetChunkMappingRequest, GetChunkMappingResponse, GetTreeRequest, GetTreeResponse, RegisterChunkMappingRequest,
    RegisterChunkMappingResponse, SpliceBlobRequest, SpliceBlobResponse, SplitBlobRequest, SplitBlobResponse,
};
use weir_proto::resource_name::Compressor;
use weir_proto::Digest;

use super::error::ok_status;
use super::state::{compress_zstd, decompress};
use super::tree_walker::walk_tree;
use super::{ServerError, ServerState};

/// Blobs written or read at once in a batch.
const BATCH_PARALLELISM: usize = 16;
/// Default and largest number of directories per `GetTree` page.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;
/// Largest tree `GetTree` walks in one call.
const MAX_TREE: usize = 1_000_000;

/// The CAS service.
pub struct CasService {
    state: Arc<ServerState>,
}

impl CasService {
    /// A service over the shared state.
    pub fn new(state: Arc<ServerState>) -> Self {
        CasService { state }
    }

    async fn inner_find_missing(&self, request: FindMissingBlobsRequest) -> Result<FindMissingBlobsResponse, ServerError> {
        self.state.instances.check_with_function(&request.instance_name, request.digest_function)?;
        let digests = request.blob_digests.iter().map(Digest::try_from).collect::<Result<Vec<_>, _>>()?;
        let missing = self.state.find_missing(&digests).await?;
        // `missing` is a subsequence of `digests`: answer with the client's own
        // (validated) protos rather than formatting each hash again.
        let mut wanted = missing.iter().peekable();
        let missing_blob_digests = digests
            .iter()
            .zip(request.blob_digests)
            .filter_map(|(digest, proto)| {
                if wanted.peek() == Some(&digest) {
                    wanted.next();
                    Some(proto)
                } else {
                    None
                }
            })
            .collect::<Vec<_>>();
        if wanted.next().is_some() {
            // A store answered out of order: fall back to formatting.
            return Ok(FindMissingBlobsResponse { missing_blob_digests: missing.iter().map(Digest::to_proto).collect() });
        }
        Ok(FindMissingBlobsResponse { missing_blob_digests })
    }

    async fn inner_batch_update(&self, request: BatchUpdateBlobsRequest) -> Result<BatchUpdateBlobsResponse, ServerError> {
        self.state.instances.check_with_function(&request.instance_name, request.digest_function)?;
        let total: u64 = request.requests.iter().map(|r| r.data.len() as u64).sum();
        if total > self.state.max_batch {
            return Err(ServerError::InvalidArgument(format!(
                "batch of {total} bytes exceeds max_batch_total_size_bytes {}; use ByteStream",
                self.state.max_batch
            )));
        }
        // Parse and decompress every entry (a bad one fails alone), then
        // store the good ones in one call, so the store can group them.
        let prepared: Vec<PreparedEntry> =
            futures::stream::iter(request.requests)
                .map(|entry| async move {
                    let batch_update_blobs_request::Request { digest: proto, data, compressor } = entry;
                    let prepared = async {
                        let digest = Digest::try_from(proto.as_ref())?;
                        let data = decompress(&digest, Bytes::from(data), batch_compressor(compressor)?).await?;
                        Ok((digest, data))
                    }
                    .await;
                    (proto, prepared)
                })
                .buffered(BATCH_PARALLELISM)
                .collect()
                .await;
        let mut blobs = Vec::with_capacity(prepared.len());
        let mut answers = Vec::with_capacity(prepared.len());
        for (proto, outcome) in prepared {
            match outcome {
                Ok(blob) => {
                    blobs.push(blob);
                    answers.push((proto, None));
                }
                Err(err) => answers.push((proto, Some(err))),
            }
        }
        let mut stored = self.state.write_batch(blobs).await.into_iter();
        let responses = answers
            .into_iter()
            .map(|(digest, failed)| {
                let result = match failed {
                    Some(err) => Err(err),
                    None => stored.next().unwrap_or_else(|| Err(ServerError::Unavailable("batch result lost".into()))),
                };
                batch_update_blobs_response::Response {
                    digest,
                    status: Some(result.map_or_else(|e| e.to_rpc_status(), |()| ok_status())),
                }
            })
            .collect();
        Ok(BatchUpdateBlobsResponse { responses })
    }

    async fn inner_batch_read(&self, request: BatchReadBlobsRequest) -> Result<BatchReadBlobsResponse, ServerError> {
        self.state.instances.check_with_function(&request.instance_name, request.digest_function)?;
        let digests = request.digests.iter().map(Digest::try_from).collect::<Result<Vec<_>, _>>()?;
        let total: u64 = digests.iter().map(Digest::size).sum();
        if total > self.state.max_batch {
            return Err(ServerError::InvalidArgument(format!(
                "batch of {total} bytes exceeds max_batch_total_size_bytes {}; use ByteStream",
                self.state.max_batch
            )));
        }
        let zstd = request.acceptable_compressors.contains(&(compressor::Value::Zstd as i32));
        let read = self.state.read_batch(&digests).await;
        let responses = futures::stream::iter(digests.into_iter().zip(read))
            .map(|(digest, read)| async move {
                let mut response = batch_read_blobs_response::Response {
                    digest: Some(digest.to_proto()),
                    data: Vec::new(),
                    compressor: compressor::Value::Identity as i32,
                    status: Some(ok_status()),
                };
                let encoded = match read {
                    // Compress only where it pays: larger blobs, and only if the client accepts it.
                    Ok(data) if zstd && data.len() >= 4096 => compress_zstd(data).await.map(|c| (c, compressor::Value::Zstd)),
                    Ok(data) => Ok((data, compressor::Value::Identity)),
                    Err(err) => Err(err),
                };
                match encoded {
                    Ok((data, used)) => {
                        // Blobs read from files own their buffer: no copy.
                        response.data = Vec::from(data);
                        response.compressor = used as i32;
                    }
                    Err(err) => response.status = Some(err.to_rpc_status()),
                }
                response
            })
            .buffered(BATCH_PARALLELISM)
            .collect()
            .await;
        Ok(BatchReadBlobsResponse { responses })
    }

    /// Every page of the tree from `page_token` on: each page holds up to
    /// `page_size` directories and the token of the next page, so a client
    /// may either read the whole stream or call again with a token.
    async fn inner_get_tree(&self, request: GetTreeRequest) -> Result<Vec<GetTreeResponse>, ServerError> {
        self.state.instances.check_with_function(&request.instance_name, request.digest_function)?;
        let root = Digest::try_from(request.root_digest.as_ref())?;
        let page_size = match request.page_size {
            n if n < 0 => return Err(ServerError::InvalidArgument("page_size is negative".into())),
            0 => DEFAULT_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let offset: usize = if request.page_token.is_empty() {
            0
        } else {
            request
                .page_token
                .parse()
                .map_err(|_| ServerError::InvalidArgument(format!("invalid page_token {:?}", request.page_token)))?
        };
        let walk = walk_tree(&self.state.store, root, offset.saturating_add(MAX_TREE)).await?;
        if offset > walk.directories.len() {
            return Err(ServerError::InvalidArgument(format!("page_token {offset} is past the end of the tree")));
        }
        if !walk.complete {
            return Err(ServerError::InvalidArgument(format!("tree {root} has more than {MAX_TREE} directories")));
        }
        let total = walk.directories.len();
        let mut pages = Vec::new();
        let mut directories = walk.directories.into_iter().skip(offset).map(|(_, d)| d).peekable();
        let mut position = offset;
        loop {
            let page: Vec<_> = directories.by_ref().take(page_size).collect();
            position += page.len();
            let next_page_token = if position < total { position.to_string() } else { String::new() };
            pages.push(GetTreeResponse { directories: page, next_page_token });
            if directories.peek().is_none() {
                break;
            }
        }
        Ok(pages)
    }
}

/// A batch upload entry as the client named it, and its parsed, decompressed
/// blob (or why it could not be).
type PreparedEntry = (Option<weir_proto::reapi::Digest>, Result<(Digest, Bytes), ServerError>);

/// The compressor of a batch entry (identity and zstd are accepted).
fn batch_compressor(value: i32) -> Result<Option<Compressor>, ServerError> {
    match compressor::Value::try_from(value) {
        Ok(compressor::Value::Identity) => Ok(None),
        Ok(compressor::Value::Zstd) => Ok(Some(Compressor::Zstd)),
        _ => Err(ServerError::InvalidArgument(format!("compressor {value} is not supported"))),
    }
}

fn unimplemented_chunking() -> Status {
    Status::unimplemented("blob splitting and splicing are not supported (split_blob_support is false)")
}

type TreeStream = Pin<Box<dyn Stream<Item = Result<GetTreeResponse, Status>> + Send>>;
type ChunkMappingStream = Pin<Box<dyn Stream<Item = Result<GetChunkMappingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ContentAddressableStorage for CasService {
    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name, n = request.get_ref().blob_digests.len()))]
    async fn find_missing_blobs(
        &self,
        request: Request<FindMissingBlobsRequest>,
    ) -> Result<Response<FindMissingBlobsResponse>, Status> {
        Ok(Response::new(self.inner_find_missing(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name, n = request.get_ref().requests.len()))]
    async fn batch_update_blobs(
        &self,
        request: Request<BatchUpdateBlobsRequest>,
    ) -> Result<Response<BatchUpdateBlobsResponse>, Status> {
        Ok(Response::new(self.inner_batch_update(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name, n = request.get_ref().digests.len()))]
    async fn batch_read_blobs(
        &self,
        request: Request<BatchReadBlobsRequest>,
    ) -> Result<Response<BatchReadBlobsResponse>, Status> {
        Ok(Response::new(self.inner_batch_read(request.into_inner()).await?))
    }

    type GetTreeStream = TreeStream;

    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name))]
    async fn get_tree(&self, request: Request<GetTreeRequest>) -> Result<Response<TreeStream>, Status> {
        let pages = self.inner_get_tree(request.into_inner()).await?;
        Ok(Response::new(Box::pin(futures::stream::iter(pages.into_iter().map(Ok)))))
    }

    async fn split_blob(&self, _request: Request<SplitBlobRequest>) -> Result<Response<SplitBlobResponse>, Status> {
        Err(unimplemented_chunking())
    }

    type GetChunkMappingStream = ChunkMappingStream;

    async fn get_chunk_mapping(
        &self,
        _request: Request<GetChunkMappingRequest>,
    ) -> Result<Response<ChunkMappingStream>, Status> {
        Err(unimplemented_chunking())
    }

    async fn splice_blob(&self, _request: Request<SpliceBlobRequest>) -> Result<Response<SpliceBlobResponse>, Status> {
        Err(unimplemented_chunking())
    }

    async fn register_chunk_mapping(
        &self,
        _request: Request<Streaming<RegisterChunkMappingRequest>>,
    ) -> Result<Response<RegisterChunkMappingResponse>, Status> {
        Err(unimplemented_chunking())
    }
}
