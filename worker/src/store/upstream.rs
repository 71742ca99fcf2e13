//! [`UpstreamStore`]: another REAPI CAS, reached over gRPC.
//!
//! Why it exists: an executor node's slow tier is the shared cache node (or
//! any REAPI CAS: Buildbarn, BuildGrid, NativeLink, another weir-worker).
//! Small blobs travel in `BatchReadBlobs`/`BatchUpdateBlobs`, large ones over
//! ByteStream in chunks. The connection is lazy, so a worker starts even if
//! its upstream is down; every failure is [`StoreError::Upstream`]
//! (retryable). Removal is unsupported: never place a
//! [`super::SizeLimitedStore`] directly above this store.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use weir_proto::bytestream::byte_stream_client::ByteStreamClient;
use weir_proto::bytestream::{ReadRequest, WriteRequest};
use weir_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use weir_proto::reapi::{batch_update_blobs_request, BatchReadBlobsRequest, BatchUpdateBlobsRequest, FindMissingBlobsRequest};
use weir_proto::Digest;

use super::verify::verify_content;
use super::{BlobStore, ByteSize, StoreError};

/// Configuration of an [`UpstreamStore`].
///
/// ```yaml
/// upstream:
///   endpoint: "http://127.0.0.1:8980"
///   instance_name: ""
///   batch_limit: 1MiB
///   token_file: tokens/cache.token
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// URL of the remote CAS (`http://host:port`; `grpc://` is accepted as a
    /// synonym of `http://`).
    pub endpoint: String,
    /// REAPI instance name to use on the remote (default empty).
    #[serde(default)]
    pub instance_name: String,
    /// Blobs up to this size use the batch RPCs, larger ones ByteStream
    /// (default `1MiB`; keep it under the remote's max batch size).
    #[serde(default = "default_batch_limit")]
    pub batch_limit: ByteSize,
    /// A file holding the bearer token sent to the remote (relative to the
    /// worker's root; default: no token).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM CA certificate(s) to trust for an `https://` endpoint (required
    /// for `https://`; relative to the worker's root).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

fn default_batch_limit() -> ByteSize {
    ByteSize::new(1 << 20)
}

/// ByteStream chunk size for uploads.
const CHUNK: usize = 1 << 20;
/// Largest message accepted from the upstream.
const MAX_MESSAGE: usize = 64 << 20;

/// A remote REAPI CAS used as a store.
pub struct UpstreamStore {
    cas: ContentAddressableStorageClient<Channel>,
    bytestream: ByteStreamClient<Channel>,
    instance: String,
    batch_limit: u64,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

fn upstream_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Upstream(err.to_string())
}

impl UpstreamStore {
    /// Prepares a lazy connection to the remote (nothing is dialled yet),
    /// reading the token and CA files relative to `root`.
    pub fn new(spec: &UpstreamSpec, root: &Path) -> Result<Self, StoreError> {
        let config_err = |what: String| StoreError::Config(format!("upstream {:?}: {what}", spec.endpoint));
        let url = match spec.endpoint.strip_prefix("grpc://") {
            Some(rest) => format!("http://{rest}"),
            None => spec.endpoint.clone(),
        };
        let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| config_err(e.to_string()))?;
        if url.starts_with("https://") {
            let ca = spec.ca_cert.as_ref().ok_or_else(|| config_err("an https endpoint needs `ca_cert`".into()))?;
            let pem = std::fs::read(root.join(ca)).map_err(|e| config_err(format!("cannot read {}: {e}", ca.display())))?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
                .map_err(|e| config_err(e.to_string()))?;
        }
        let authorization = match &spec.token_file {
            Some(file) => {
                let token = std::fs::read_to_string(root.join(file))
                    .map_err(|e| config_err(format!("cannot read {}: {e}", file.display())))?;
                let value = format!("Bearer {}", token.trim());
                Some(value.parse().map_err(|_| config_err("the token is not valid header text".into()))?)
            }
            None => None,
        };
        let channel = endpoint.connect_lazy();
        Ok(UpstreamStore {
            cas: ContentAddressableStorageClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
            bytestream: ByteStreamClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
            instance: spec.instance_name.clone(),
            batch_limit: spec.batch_limit.bytes(),
            authorization,
        })
    }

    /// A request carrying the configured bearer token.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        request
    }

    fn prefix(&self) -> String {
        if self.instance.is_empty() { String::new() } else { format!("{}/", self.instance) }
    }

    async fn read_bytestream(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        let request = ReadRequest {
            resource_name: format!("{}blobs/{}/{}", self.prefix(), digest.hash_hex(), digest.size()),
            read_offset: offset as i64,
            read_limit: limit.unwrap_or(0) as i64,
        };
        let mut stream = match self.bytestream.clone().read(self.request(request)).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Err(StoreError::NotFound(*digest)),
            Err(status) if status.code() == tonic::Code::OutOfRange => {
                return Err(StoreError::OutOfRange { digest: *digest, offset })
            }
            Err(status) => return Err(upstream_err(status)),
        };
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => out.extend_from_slice(&chunk.data),
                Err(status) if status.code() == tonic::Code::NotFound => return Err(StoreError::NotFound(*digest)),
                Err(status) => return Err(upstream_err(status)),
            }
        }
        Ok(Bytes::from(out))
    }

    async fn write_bytestream(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        let resource = format!(
            "{}uploads/{}/blobs/{}/{}",
            self.prefix(),
            uuid::Uuid::new_v4(),
            digest.hash_hex(),
            digest.size()
        );
        let total = data.len();
        let mut requests = Vec::with_capacity(total / CHUNK + 1);
        let mut offset = 0;
        loop {
            let end = (offset + CHUNK).min(total);
            requests.push(WriteRequest {
                resource_name: if offset == 0 { resource.clone() } else { String::new() },
                write_offset: offset as i64,
                finish_write: end == total,
                data: data.slice(offset..end).to_vec(),
            });
            offset = end;
            if offset == total {
                break;
            }
        }
        self.bytestream.clone().write(self.request(futures::stream::iter(requests))).await.map_err(upstream_err)?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for UpstreamStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, StoreError> {
        let request = FindMissingBlobsRequest {
            instance_name: self.instance.clone(),
            blob_digests: digests.iter().map(Digest::to_proto).collect(),
            digest_function: 0,
        };
        let response = self.cas.clone().find_missing_blobs(self.request(request)).await.map_err(upstream_err)?.into_inner();
        response
            .missing_blob_digests
            .iter()
            .map(|d| Digest::try_from(d).map_err(|e| StoreError::Upstream(format!("bad digest from upstream: {e}"))))
            .collect()
    }

    async fn read(&self, digest: &Digest, offset: u64, limit: Option<u64>) -> Result<Bytes, StoreError> {
        let data = if digest.size() <= self.batch_limit {
            let request = BatchReadBlobsRequest {
                instance_name: self.instance.clone(),
                digests: vec![digest.to_proto()],
                acceptable_compressors: vec![],
                digest_function: 0,
            };
            let response = self.cas.clone().batch_read_blobs(self.request(request)).await.map_err(upstream_err)?.into_inner();
            let entry = response.responses.into_iter().next().ok_or_else(|| upstream_err("empty batch response"))?;
            match entry.status.as_ref().map(|s| s.code).unwrap_or(0) {
                0 => Bytes::from(entry.data),
                5 => return Err(StoreError::NotFound(*digest)),
                code => return Err(upstream_err(format!("batch read failed with code {code}"))),
            }
        } else {
            return self.read_bytestream(digest, offset, limit).await;
        };
        verify_content(digest, &data).await.map_err(|_| upstream_err(format!("upstream returned wrong content for {digest}")))?;
        super::slice_range(digest, &data, offset, limit)
    }

    async fn write(&self, digest: &Digest, data: Bytes) -> Result<(), StoreError> {
        verify_content(digest, &data).await?;
        if digest.size() > self.batch_limit {
            return self.write_bytestream(digest, data).await;
        }
        let request = BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: vec![batch_update_blobs_request::Request {
                digest: Some(digest.to_proto()),
                data: data.to_vec(),
                compressor: 0,
            }],
            digest_function: 0,
        };
        let response = self.cas.clone().batch_update_blobs(self.request(request)).await.map_err(upstream_err)?.into_inner();
        match response.responses.first().and_then(|r| r.status.as_ref()) {
            Some(status) if status.code != 0 => Err(upstream_err(format!("batch update failed: {}", status.message))),
            _ => Ok(()),
        }
    }
}
