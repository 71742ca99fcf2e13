//! [`ByteStreamService`]: ByteStream `Read`, `Write` and `QueryWriteStatus`
//! over the CAS, including `compressed-blobs/zstd`.
//!
//! Key decisions:
//! * Every resource name is parsed by `weir_proto::resource_name` before
//!   anything else happens; a malformed one is `INVALID_ARGUMENT`.
//! * An upload accumulates in memory under its resource name (instance,
//!   upload id, compressor, digest) and becomes a blob only when
//!   `finish_write` arrives and the content verifies; until then nothing is
//!   visible in the CAS. A stream cut off midway keeps what was received, so
//!   the client can ask `QueryWriteStatus` and resume at `committed_size`.
//!   Idle partial uploads are dropped after [`UPLOAD_IDLE`].
//! * Compressed uploads count offsets in compressed bytes, and may not grow
//!   past a bound derived from the blob size (no zip bombs, no unbounded
//!   memory).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status, Streaming};
use weir_proto::bytestream::byte_stream_server::ByteStream;
use weir_proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest, WriteResponse,
};
use weir_proto::reapi::digest_function;
use weir_proto::resource_name::{Compressor, ResourceName};
use weir_proto::Digest;

use super::bytestream_routes::WriteChunk;
use super::state::compress_zstd;
use crate::store::{chunked, writer_for, BlobWriter, ChunkStream};
use super::{ServerError, ServerState};

/// Size of the chunks a `Read` streams.
const READ_CHUNK: usize = 2 << 20;
/// A partial upload untouched for this long is discarded.
pub const UPLOAD_IDLE: Duration = Duration::from_secs(3600);

/// How long a write waits for another call still writing the same upload.
const UPLOAD_BUSY_WAIT: Duration = Duration::from_secs(10);

/// Where the bytes of an upload go.
enum Sink {
    /// Uncompressed: streamed into the store, verified on commit.
    Blob(Box<dyn BlobWriter>),
    /// Compressed: buffered, decompressed and verified on commit.
    Compressed(BytesMut),
}

impl Sink {
    fn len(&self) -> u64 {
        match self {
            Sink::Blob(writer) => writer.committed(),
            Sink::Compressed(data) => data.len() as u64,
        }
    }

    async fn append(&mut self, data: Bytes) -> Result<(), ServerError> {
        match self {
            Sink::Blob(writer) => Ok(writer.append(data).await?),
            Sink::Compressed(buffer) => {
                buffer.extend_from_slice(&data);
                Ok(())
            }
        }
    }

    async fn reset(&mut self) -> Result<(), ServerError> {
        match self {
            Sink::Blob(writer) => Ok(writer.reset().await?),
            Sink::Compressed(buffer) => {
                buffer.clear();
                Ok(())
            }
        }
    }
}

/// One upload in progress. `sink` is held by the one call writing it (and
/// emptied by the commit); `committed` and `touched` can be read meanwhile
/// (by QueryWriteStatus and the idle sweep) without waiting for that call.
struct Upload {
    sink: Mutex<Option<Sink>>,
    committed: AtomicU64,
    touched: std::sync::Mutex<Instant>,
}

impl Upload {
    fn new(now: Instant) -> Self {
        Upload { sink: Mutex::new(None), committed: AtomicU64::new(0), touched: std::sync::Mutex::new(now) }
    }

    fn touch(&self) {
        if let Ok(mut touched) = self.touched.lock() {
            *touched = Instant::now();
        }
    }

    fn idle_since(&self, now: Instant) -> Duration {
        self.touched.lock().map(|t| now.saturating_duration_since(*t)).unwrap_or_default()
    }
}

/// The key of an upload: who is uploading what, in which encoding.
#[derive(Clone, PartialEq, Eq, Hash)]
struct UploadKey {
    instance: String,
    upload_id: String,
    compressor: Option<Compressor>,
    digest: Digest,
}

impl UploadKey {
    fn of(name: &ResourceName) -> Self {
        UploadKey {
            instance: name.instance_name().to_string(),
            upload_id: name.upload_id().unwrap_or_default().to_string(),
            compressor: name.compressor(),
            digest: name.digest(),
        }
    }
}

/// The ByteStream service.
pub struct ByteStreamService {
    state: Arc<ServerState>,
    uploads: Mutex<HashMap<UploadKey, Arc<Upload>>>,
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResponse, Status>> + Send>>;

impl ByteStreamService {
    /// A service over the shared state.
    pub fn new(state: Arc<ServerState>) -> Self {
        ByteStreamService { state, uploads: Mutex::default() }
    }

    /// Parses a resource name and checks its instance, digest function and compressor.
    fn parse(&self, name: &str, upload: bool) -> Result<ResourceName, ServerError> {
        let parsed = if upload { ResourceName::parse_upload(name)? } else { ResourceName::parse_download(name)? };
        self.state.instances.check(parsed.instance_name())?;
        if let Some(function) = parsed.digest_function() {
            if function != digest_function::Value::Sha256 {
                return Err(ServerError::InvalidArgument(format!("digest function {} is not supported", function.as_str_name())));
            }
        }
        match parsed.compressor() {
            None | Some(Compressor::Identity) | Some(Compressor::Zstd) => Ok(parsed),
            Some(other) => Err(ServerError::InvalidArgument(format!("compressor {} is not supported", other.as_str()))),
        }
    }

    /// The chunks of a read. Uncompressed reads stream from the store
    /// ([`READ_CHUNK`] at a time, never the whole blob in memory); compressed
    /// reads compress the whole blob, then slice it.
    pub(super) async fn inner_read(&self, request: ReadRequest) -> Result<ChunkStream, ServerError> {
        let name = self.parse(&request.resource_name, false)?;
        let digest = name.digest();
        if request.read_offset < 0 {
            return Err(ServerError::OutOfRange(format!("read_offset {} is negative", request.read_offset)));
        }
        if request.read_limit < 0 {
            return Err(ServerError::InvalidArgument(format!("read_limit {} is negative", request.read_limit)));
        }
        let offset = request.read_offset as u64;
        let limit = (request.read_limit > 0).then_some(request.read_limit as u64);
        match name.compressor() {
            None | Some(Compressor::Identity) => {
                if offset > digest.size() {
                    return Err(ServerError::OutOfRange(format!("read_offset {offset} is past the end of {digest}")));
                }
                let chunks = self.state.read_chunks(&digest, offset, limit, READ_CHUNK).await?;
                let len = (digest.size() - offset).min(limit.unwrap_or(u64::MAX));
                // An empty range is answered with one empty message.
                Ok(if len == 0 { futures::stream::iter([Ok(Bytes::new())]).boxed() } else { chunks })
            }
            Some(_) => {
                let compressed = compress_zstd(self.state.read(&digest, 0, None).await?).await?;
                if offset > compressed.len() as u64 {
                    return Err(ServerError::OutOfRange(format!("read_offset {offset} is past the compressed end of {digest}")));
                }
                let end = limit.map_or(compressed.len() as u64, |l| offset.saturating_add(l).min(compressed.len() as u64));
                let range = compressed.slice(offset as usize..end as usize);
                Ok(if range.is_empty() { futures::stream::iter([Ok(Bytes::new())]).boxed() } else { chunked(range, READ_CHUNK) })
            }
        }
    }

    /// The most compressed bytes accepted for a blob of `size` bytes.
    fn upload_bound(key: &UploadKey) -> u64 {
        match key.compressor {
            None | Some(Compressor::Identity) => key.digest.size(),
            // zstd's worst case is a small fraction over the input; be generous.
            Some(_) => key.digest.size() + key.digest.size() / 64 + 1024,
        }
    }

    async fn upload_for(&self, key: &UploadKey) -> Arc<Upload> {
        let mut uploads = self.uploads.lock().await;
        let now = Instant::now();
        uploads.retain(|_, u| u.idle_since(now) < UPLOAD_IDLE);
        uploads.entry(key.clone()).or_insert_with(|| Arc::new(Upload::new(now))).clone()
    }

    async fn forget_upload(&self, key: &UploadKey) {
        self.uploads.lock().await.remove(key);
    }

    /// One `Write` call: the messages of `stream` (see [`WriteChunk`] for
    /// why they are not the generated `WriteRequest`).
    pub(super) async fn inner_write(
        &self,
        mut stream: impl Stream<Item = Result<WriteChunk, Status>> + Unpin + Send,
    ) -> Result<WriteResponse, ServerError> {
        let first = match stream.next().await {
            Some(Ok(first)) => first,
            Some(Err(status)) => return Err(ServerError::InvalidArgument(format!("write stream failed: {status}"))),
            None => return Err(ServerError::InvalidArgument("empty write stream".into())),
        };
        let name = self.parse(&first.resource_name, true)?;
        let key = UploadKey::of(&name);
        let complete_size = match key.compressor {
            None | Some(Compressor::Identity) => key.digest.size() as i64,
            Some(_) => -1,
        };
        if key.digest == Digest::empty() || self.state.store.has(&key.digest).await? {
            // Already stored (by this or another client): the upload is complete.
            self.forget_upload(&key).await;
            return Ok(WriteResponse { committed_size: complete_size });
        }
        let upload = self.upload_for(&key).await;
        let Ok(mut guard) = tokio::time::timeout(UPLOAD_BUSY_WAIT, upload.sink.lock()).await else {
            return Err(ServerError::Unavailable(format!("another call is still writing upload {}", key.upload_id)));
        };
        if guard.is_none() {
            *guard = Some(match key.compressor {
                None | Some(Compressor::Identity) => Sink::Blob(writer_for(&self.state.store, &key.digest)?),
                Some(_) => Sink::Compressed(BytesMut::new()),
            });
        }
        let Some(sink) = guard.as_mut() else {
            return Err(ServerError::Unavailable("upload state lost".into()));
        };
        // A call cancelled mid-chunk may have appended after its last update.
        upload.committed.store(sink.len(), Ordering::Release);
        let bound = Self::upload_bound(&key);
        let mut message = first;
        loop {
            if !message.resource_name.is_empty() && message.resource_name != name.to_string() {
                let other = ResourceName::parse_upload(&message.resource_name)?;
                if UploadKey::of(&other) != key {
                    return Err(ServerError::InvalidArgument("resource_name changed within one write".into()));
                }
            }
            let committed = sink.len() as i64;
            if message.write_offset == 0 && committed > 0 {
                sink.reset().await?; // the client restarts the upload
            } else if message.write_offset != committed {
                return Err(ServerError::InvalidArgument(format!(
                    "write_offset {} does not match the committed size {committed}",
                    message.write_offset
                )));
            }
            if sink.len() + message.data.len() as u64 > bound {
                drop(guard);
                self.forget_upload(&key).await;
                return Err(ServerError::InvalidArgument(format!("upload is larger than blob {}", key.digest)));
            }
            sink.append(message.data).await?;
            upload.committed.store(sink.len(), Ordering::Release);
            upload.touch();
            if message.finish_write {
                break;
            }
            message = match stream.next().await {
                Some(Ok(message)) => message,
                // Cut off: keep what arrived so the client can resume.
                Some(Err(status)) => return Err(ServerError::InvalidArgument(format!("write stream failed: {status}"))),
                None => {
                    return Err(ServerError::InvalidArgument(format!(
                        "write stream ended at {} bytes without finish_write",
                        sink.len()
                    )))
                }
            };
        }
        let received = sink.len() as i64;
        let finished = guard.take();
        drop(guard);
        self.forget_upload(&key).await;
        match finished {
            Some(Sink::Blob(writer)) => self.state.commit(&key.digest, writer).await?,
            Some(Sink::Compressed(data)) => self.state.write(&key.digest, data.freeze(), key.compressor).await?,
            None => return Err(ServerError::Unavailable("upload state lost".into())),
        }
        Ok(WriteResponse { committed_size: received })
    }

    async fn inner_query_write_status(&self, request: QueryWriteStatusRequest) -> Result<QueryWriteStatusResponse, ServerError> {
        let name = self.parse(&request.resource_name, true)?;
        let key = UploadKey::of(&name);
        if key.digest == Digest::empty() || self.state.store.has(&key.digest).await? {
            let committed_size = match key.compressor {
                None | Some(Compressor::Identity) => key.digest.size() as i64,
                Some(_) => -1,
            };
            return Ok(QueryWriteStatusResponse { committed_size, complete: true });
        }
        let upload = self.uploads.lock().await.get(&key).cloned();
        let committed_size = match upload {
            // Idle upload: ask the sink itself (exact even after a cancelled call).
            Some(upload) => match upload.sink.try_lock() {
                Ok(sink) => sink.as_ref().map_or(0, Sink::len) as i64,
                Err(_) => upload.committed.load(Ordering::Acquire) as i64,
            },
            None => 0,
        };
        Ok(QueryWriteStatusResponse { committed_size, complete: false })
    }
}

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = ReadStream;

    #[tracing::instrument(skip_all, fields(resource = %request.get_ref().resource_name.chars().take(200).collect::<String>()))]
    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadStream>, Status> {
        let chunks = self.inner_read(request.into_inner()).await?;
        // A chunk read from a file owns its buffer: `Vec::from` does not copy it.
        let responses =
            chunks.map(|chunk| chunk.map(|data| ReadResponse { data: Vec::from(data) }).map_err(|e| ServerError::from(e).into()));
        Ok(Response::new(Box::pin(responses)))
    }

    #[tracing::instrument(skip_all)]
    async fn write(&self, request: Request<Streaming<WriteRequest>>) -> Result<Response<WriteResponse>, Status> {
        // Served by `ByteStreamRoutes` with a copy-free decoder; kept for
        // completeness of the trait (and any caller of the generated server).
        let messages = request.into_inner().map(|message| message.map(WriteChunk::from));
        Ok(Response::new(self.inner_write(messages).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn query_write_status(
        &self,
        request: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        Ok(Response::new(self.inner_query_write_status(request.into_inner()).await?))
    }
}
