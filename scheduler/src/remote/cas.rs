//! [`Cas`]: the client side of the Content Addressable Storage and
//! ByteStream: upload and download of blobs and directory trees.
//!
//! Key decisions: an upload always asks `FindMissingBlobs` first and sends
//! only what is missing; blobs that fit go in `BatchUpdateBlobs` requests
//! kept under the server's `max_batch_total_size_bytes`, larger ones through
//! ByteStream `Write` in chunks streamed from their file. Every blob received
//! is hashed and compared with the digest asked for before anyone sees it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use futures::StreamExt;
use prost::Message;
use tokio::io::AsyncReadExt;
use weir_proto::bytestream::byte_stream_client::ByteStreamClient;
use weir_proto::bytestream::{ReadRequest, WriteRequest};
use weir_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use weir_proto::reapi::{self, batch_update_blobs_request, BatchReadBlobsRequest, BatchUpdateBlobsRequest, FindMissingBlobsRequest};
use weir_proto::Digest;

use super::endpoint::AuthChannel;
use super::RemoteError;

/// Largest gRPC message the client accepts (tonic's default is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Batch size used when the server announces none.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Room left in each batch for the request's own framing.
const BATCH_OVERHEAD_BYTES: usize = 64 * 1024;
/// Per-blob framing estimate inside a batch (digest, tags).
const PER_BLOB_OVERHEAD_BYTES: usize = 100;
/// Digests per `FindMissingBlobs` request.
const FIND_MISSING_CHUNK: usize = 10_000;
/// In-memory uploads up to this size skip `FindMissingBlobs` (see [`Cas::upload`]).
const DIRECT_UPLOAD_BYTES: usize = 64 * 1024;
/// Size of each ByteStream `Write`/`Read` chunk.
const STREAM_CHUNK_BYTES: usize = 1024 * 1024;

/// Where the content of a blob to upload comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blob {
    /// Bytes in memory.
    Data(Vec<u8>),
    /// A local file, read when (and only if) the server is missing it.
    File(PathBuf),
}

impl Blob {
    async fn read_all(&self) -> Result<Vec<u8>, RemoteError> {
        match self {
            Blob::Data(data) => Ok(data.clone()),
            Blob::File(path) => {
                tokio::fs::read(path).await.map_err(|source| RemoteError::LocalFile { path: path.clone(), source })
            }
        }
    }
}

/// A set of blobs to upload, keyed by digest (so duplicates collapse).
pub type BlobSet = HashMap<Digest, Blob>;

/// The CAS and ByteStream clients of one endpoint.
#[derive(Debug, Clone)]
pub struct Cas {
    cas: ContentAddressableStorageClient<AuthChannel>,
    bytestream: ByteStreamClient<AuthChannel>,
    instance_name: String,
    max_batch_bytes: usize,
}

impl Cas {
    /// CAS clients over `channel`; `max_batch_bytes` comes from the server's
    /// capabilities (0 means "not announced": 4 MiB is assumed).
    pub fn new(channel: AuthChannel, instance_name: &str, max_batch_bytes: usize) -> Self {
        let max_batch_bytes = if max_batch_bytes == 0 { DEFAULT_MAX_BATCH_BYTES } else { max_batch_bytes };
        Cas {
            cas: ContentAddressableStorageClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            bytestream: ByteStreamClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            instance_name: instance_name.to_string(),
            max_batch_bytes: max_batch_bytes.min(MAX_MESSAGE_BYTES),
        }
    }

    /// The most blob bytes one batch request carries.
    fn batch_budget(&self) -> usize {
        self.max_batch_bytes.saturating_sub(BATCH_OVERHEAD_BYTES).max(self.max_batch_bytes / 2)
    }

    fn fits_in_batch(&self, digest: &Digest) -> bool {
        (digest.size() as usize).saturating_add(PER_BLOB_OVERHEAD_BYTES) <= self.batch_budget()
    }

    /// The digests among `digests` that the server does not have.
    pub async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, RemoteError> {
        let unique: Vec<Digest> = digests.iter().copied().collect::<HashSet<_>>().into_iter().collect();
        let mut missing = Vec::new();
        for chunk in unique.chunks(FIND_MISSING_CHUNK) {
            let request = FindMissingBlobsRequest {
                instance_name: self.instance_name.clone(),
                blob_digests: chunk.iter().map(Digest::to_proto).collect(),
                digest_function: 0,
            };
            let response = self
                .cas
                .clone()
                .find_missing_blobs(request)
                .await
                .map_err(|s| RemoteError::rpc("FindMissingBlobs", s))?
                .into_inner();
            for digest in &response.missing_blob_digests {
                missing.push(Digest::try_from(digest)?);
            }
        }
        Ok(missing)
    }

    /// Uploads the blobs of `blobs` that the server is missing; returns how
    /// many were sent. A small set already in memory goes straight into one
    /// `BatchUpdateBlobs`: a `FindMissingBlobs` round trip costs more than
    /// sending a few KiB that the server already has (it does not rewrite a
    /// blob it holds).
    pub async fn upload(&self, blobs: &BlobSet) -> Result<usize, RemoteError> {
        let in_memory = blobs.values().all(|blob| matches!(blob, Blob::Data(_)));
        let bytes: usize = blobs.keys().map(|d| d.size() as usize + PER_BLOB_OVERHEAD_BYTES).sum();
        if in_memory && !blobs.is_empty() && bytes <= DIRECT_UPLOAD_BYTES.min(self.batch_budget()) {
            let all: Vec<Digest> = blobs.keys().copied().collect();
            self.batch_update(&all, blobs).await?;
            return Ok(all.len());
        }
        let digests: Vec<Digest> = blobs.keys().copied().collect();
        let missing = self.find_missing(&digests).await?;
        let (small, large): (Vec<Digest>, Vec<Digest>) = missing.iter().partition(|d| self.fits_in_batch(d));
        for batch in self.batches(&small) {
            self.batch_update(&batch, blobs).await?;
        }
        for digest in &large {
            let blob = blob_for(blobs, digest)?;
            self.write(*digest, blob).await?;
        }
        Ok(missing.len())
    }

    /// Uploads one message (a `Directory`, `Command`, `Action`, ...) and returns its digest.
    pub async fn upload_message(&self, message: &impl Message) -> Result<Digest, RemoteError> {
        let data = message.encode_to_vec();
        let digest = Digest::of(&data);
        self.upload(&BlobSet::from([(digest, Blob::Data(data))])).await?;
        Ok(digest)
    }

    /// Splits digests into groups whose sizes fit in one batch.
    fn batches(&self, digests: &[Digest]) -> Vec<Vec<Digest>> {
        let budget = self.batch_budget();
        let mut batches = Vec::new();
        let mut current = Vec::new();
        let mut current_bytes = 0usize;
        for digest in digests {
            let cost = digest.size() as usize + PER_BLOB_OVERHEAD_BYTES;
            if !current.is_empty() && current_bytes + cost > budget {
                batches.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
            current.push(*digest);
            current_bytes += cost;
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }

    async fn batch_update(&self, batch: &[Digest], blobs: &BlobSet) -> Result<(), RemoteError> {
        let mut requests = Vec::with_capacity(batch.len());
        for digest in batch {
            let blob = blob_for(blobs, digest)?;
            requests.push(batch_update_blobs_request::Request { digest: Some(digest.to_proto()), data: blob.read_all().await?, compressor: 0 });
        }
        let request = BatchUpdateBlobsRequest { instance_name: self.instance_name.clone(), requests, digest_function: 0 };
        let response = self
            .cas
            .clone()
            .batch_update_blobs(request)
            .await
            .map_err(|s| RemoteError::rpc("BatchUpdateBlobs", s))?
            .into_inner();
        for entry in &response.responses {
            if let Some(status) = &entry.status {
                if status.code != 0 {
                    return Err(RemoteError::from_rpc_status("BatchUpdateBlobs", status));
                }
            }
        }
        Ok(())
    }

    fn resource_prefix(&self) -> String {
        if self.instance_name.is_empty() {
            String::new()
        } else {
            format!("{}/", self.instance_name)
        }
    }

    /// Streams one blob through ByteStream `Write`.
    async fn write(&self, digest: Digest, blob: &Blob) -> Result<(), RemoteError> {
        let resource_name = format!(
            "{}uploads/{}/blobs/{}/{}",
            self.resource_prefix(),
            uuid::Uuid::new_v4(),
            digest.hash_hex(),
            digest.size()
        );
        let (sender, receiver) = tokio::sync::mpsc::channel::<WriteRequest>(4);
        let reader = {
            let blob = blob.clone();
            tokio::spawn(async move { feed_write_requests(blob, resource_name, sender).await })
        };
        let response = self.bytestream.clone().write(tokio_stream::wrappers::ReceiverStream::new(receiver)).await;
        let fed = reader.await.map_err(|e| RemoteError::Protocol { rpc: "Write", reason: e.to_string() })?;
        fed?;
        let committed = response.map_err(|s| RemoteError::rpc("Write", s))?.into_inner().committed_size;
        if committed != digest.size() as i64 {
            return Err(RemoteError::Protocol {
                rpc: "Write",
                reason: format!("server committed {committed} bytes of {digest}"),
            });
        }
        Ok(())
    }

    /// Downloads blobs, verifying each; fails with [`RemoteError::MissingBlob`]
    /// if the server lacks one.
    pub async fn download(&self, digests: &[Digest]) -> Result<HashMap<Digest, Vec<u8>>, RemoteError> {
        let unique: Vec<Digest> = digests.iter().copied().collect::<HashSet<_>>().into_iter().collect();
        let (small, large): (Vec<Digest>, Vec<Digest>) = unique.iter().partition(|d| self.fits_in_batch(d));
        let mut out = HashMap::with_capacity(unique.len());
        for batch in self.batches(&small) {
            let request = BatchReadBlobsRequest {
                instance_name: self.instance_name.clone(),
                digests: batch.iter().map(Digest::to_proto).collect(),
                acceptable_compressors: vec![],
                digest_function: 0,
            };
            let response = self
                .cas
                .clone()
                .batch_read_blobs(request)
                .await
                .map_err(|s| RemoteError::rpc("BatchReadBlobs", s))?
                .into_inner();
            for entry in response.responses {
                let expected = Digest::try_from(entry.digest.as_ref())?;
                if let Some(status) = &entry.status {
                    if status.code == tonic::Code::NotFound as i32 {
                        return Err(RemoteError::MissingBlob(expected));
                    }
                    if status.code != 0 {
                        return Err(RemoteError::from_rpc_status("BatchReadBlobs", status));
                    }
                }
                verify(expected, &entry.data)?;
                out.insert(expected, entry.data);
            }
        }
        for digest in large {
            out.insert(digest, self.read(digest).await?);
        }
        if let Some(absent) = unique.iter().find(|d| !out.contains_key(d)) {
            return Err(RemoteError::MissingBlob(*absent));
        }
        Ok(out)
    }

    /// Downloads one blob.
    pub async fn download_one(&self, digest: Digest) -> Result<Vec<u8>, RemoteError> {
        let mut blobs = self.download(&[digest]).await?;
        blobs.remove(&digest).ok_or(RemoteError::MissingBlob(digest))
    }

    /// Downloads and decodes one message.
    pub async fn download_message<M: Message + Default>(&self, digest: Digest) -> Result<M, RemoteError> {
        let data = self.download_one(digest).await?;
        M::decode(&data[..]).map_err(|e| RemoteError::Protocol { rpc: "BatchReadBlobs", reason: format!("{digest} is not a valid message: {e}") })
    }

    /// Streams one blob through ByteStream `Read`.
    async fn read(&self, digest: Digest) -> Result<Vec<u8>, RemoteError> {
        let request = ReadRequest {
            resource_name: format!("{}blobs/{}/{}", self.resource_prefix(), digest.hash_hex(), digest.size()),
            read_offset: 0,
            read_limit: 0,
        };
        let mut stream = match self.bytestream.clone().read(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Err(RemoteError::MissingBlob(digest)),
            Err(status) => return Err(RemoteError::rpc("Read", status)),
        };
        let mut data = Vec::with_capacity(digest.size() as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|s| RemoteError::rpc("Read", s))?;
            data.extend_from_slice(&chunk.data);
            if data.len() as u64 > digest.size() {
                break;
            }
        }
        verify(digest, &data)?;
        Ok(data)
    }

    /// Every `Directory` of the tree rooted at `root`, by digest, read level by
    /// level with batched reads (works on any CAS, `GetTree` or not).
    pub async fn read_tree(&self, root: Digest) -> Result<BTreeMap<Digest, reapi::Directory>, RemoteError> {
        let mut tree = BTreeMap::new();
        let mut level = vec![root];
        while !level.is_empty() {
            let blobs = self.download(&level).await?;
            let mut next = Vec::new();
            for (digest, data) in blobs {
                let directory = reapi::Directory::decode(&data[..]).map_err(|e| RemoteError::Protocol {
                    rpc: "BatchReadBlobs",
                    reason: format!("{digest} is not a Directory: {e}"),
                })?;
                for child in &directory.directories {
                    let child = Digest::try_from(child.digest.as_ref())?;
                    if !tree.contains_key(&child) {
                        next.push(child);
                    }
                }
                tree.insert(digest, directory);
            }
            next.sort();
            next.dedup();
            level = next;
        }
        Ok(tree)
    }
}

/// The blob the server reported missing, which must be one asked about.
fn blob_for<'a>(blobs: &'a BlobSet, digest: &Digest) -> Result<&'a Blob, RemoteError> {
    blobs.get(digest).ok_or_else(|| RemoteError::Protocol {
        rpc: "FindMissingBlobs",
        reason: format!("server reported {digest} missing, which was not asked about"),
    })
}

/// Checks that `data` is the blob `expected` names.
fn verify(expected: Digest, data: &[u8]) -> Result<(), RemoteError> {
    let actual = Digest::of(data);
    if actual != expected {
        return Err(RemoteError::Corrupt { expected, actual });
    }
    Ok(())
}

/// Sends `blob` as a sequence of `WriteRequest`s on `sender`.
async fn feed_write_requests(
    blob: Blob,
    resource_name: String,
    sender: tokio::sync::mpsc::Sender<WriteRequest>,
) -> Result<(), RemoteError> {
    let mut offset = 0i64;
    let mut first = true;
    let send = |data: Vec<u8>, finish: bool, offset: i64, first: bool| {
        let request = WriteRequest {
            resource_name: if first { resource_name.clone() } else { String::new() },
            write_offset: offset,
            finish_write: finish,
            data,
        };
        let sender = sender.clone();
        async move { sender.send(request).await.is_ok() }
    };
    match blob {
        Blob::Data(data) => {
            let chunks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(STREAM_CHUNK_BYTES).collect() };
            let count = chunks.len();
            for (index, chunk) in chunks.into_iter().enumerate() {
                if !send(chunk.to_vec(), index + 1 == count, offset, first).await {
                    return Ok(());
                }
                offset += chunk.len() as i64;
                first = false;
            }
        }
        Blob::File(path) => {
            let io = |source| RemoteError::LocalFile { path: path.clone(), source };
            let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
            let total = file.metadata().await.map_err(io)?.len() as i64;
            loop {
                let mut buf = vec![0u8; STREAM_CHUNK_BYTES];
                let n = file.read(&mut buf).await.map_err(io)?;
                buf.truncate(n);
                let finish = n == 0 || offset + n as i64 >= total;
                if !send(buf, finish, offset, first).await {
                    return Ok(());
                }
                offset += n as i64;
                first = false;
                if finish {
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::remote::fake_server::FakeServer;
    use crate::remote::{EndpointSpec, RemoteClient};

    async fn client(max_batch: i64) -> (FakeServer, RemoteClient) {
        let server = FakeServer::start(max_batch, Box::new(|_, _, _| Ok(reapi::ActionResult::default()))).await;
        let client = RemoteClient::connect(EndpointSpec::new(&server.url).unwrap()).await.unwrap();
        (server, client)
    }

    fn blob(seed: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[tokio::test]
    async fn uploads_only_missing_blobs_in_batches_under_the_limit() {
        let (server, client) = client(300_000).await;
        let mut set = BlobSet::new();
        for seed in 0..10u8 {
            let data = blob(seed, 50_000);
            set.insert(Digest::of(&data), Blob::Data(data));
        }
        assert_eq!(client.cas.upload(&set).await.unwrap(), 10);
        // 10 × 50 kB under a 300 kB limit (less overhead) needs at least two batches.
        let batches = server.state.batch_updates.load(Ordering::SeqCst);
        assert!(batches >= 2, "{batches} batches");
        assert_eq!(server.state.blobs.lock().unwrap().len(), 10);
        // A second upload sends nothing.
        assert_eq!(client.cas.upload(&set).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn large_blobs_go_through_bytestream_both_ways() {
        let (server, client) = client(200_000).await;
        let data = blob(7, 3 * 1024 * 1024 + 17);
        let digest = Digest::of(&data);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, &data).unwrap();
        client.cas.upload(&BlobSet::from([(digest, Blob::File(path))])).await.unwrap();
        assert_eq!(server.state.writes.load(Ordering::SeqCst), 1);
        assert_eq!(server.state.get(&digest).as_deref(), Some(&data[..]));
        let back = client.cas.download_one(digest).await.unwrap();
        assert_eq!(back, data);
        assert_eq!(server.state.reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn downloads_are_verified_and_missing_blobs_reported() {
        let (server, client) = client(4 << 20).await;
        let good = server.state.put(b"good".to_vec());
        assert_eq!(client.cas.download(&[good]).await.unwrap()[&good], b"good");
        let absent = Digest::of(b"absent");
        assert!(matches!(client.cas.download(&[good, absent]).await, Err(RemoteError::MissingBlob(d)) if d == absent));
        // A server that returns other content under a digest is caught.
        let liar = Digest::of(b"expected");
        server.state.blobs.lock().unwrap().insert(liar, b"something else".to_vec());
        assert!(matches!(client.cas.download(&[liar]).await, Err(RemoteError::Corrupt { expected, .. }) if expected == liar));
    }

    #[tokio::test]
    async fn reads_a_whole_tree_level_by_level() {
        let (server, client) = client(4 << 20).await;
        let file = server.state.put(b"hi".to_vec());
        let leaf = reapi::Directory {
            files: vec![reapi::FileNode { name: "f".into(), digest: Some(file.to_proto()), ..Default::default() }],
            ..Default::default()
        };
        let leaf_digest = server.state.put(leaf.encode_to_vec());
        let root = reapi::Directory {
            directories: vec![
                reapi::DirectoryNode { name: "a".into(), digest: Some(leaf_digest.to_proto()) },
                reapi::DirectoryNode { name: "b".into(), digest: Some(leaf_digest.to_proto()) },
            ],
            ..Default::default()
        };
        let root_digest = server.state.put(root.encode_to_vec());
        let tree = client.cas.read_tree(root_digest).await.unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(tree[&leaf_digest], leaf);
    }

    #[test]
    fn batches_respect_the_budget() {
        let channel = EndpointSpec::new("grpc://127.0.0.1:1").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = rt.enter();
        let cas = Cas::new(channel.connect().unwrap(), "", 1_000_000);
        let digests: Vec<Digest> = (0..30u8).map(|i| Digest::new([i; 32], 100_000)).collect();
        let batches = cas.batches(&digests);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 30);
        for batch in &batches {
            let bytes: u64 = batch.iter().map(Digest::size).sum();
            assert!(bytes as usize <= cas.batch_budget(), "{bytes}");
        }
        assert!(!cas.fits_in_batch(&Digest::new([0; 32], 2_000_000)));
    }
}
