//! A small in-process REAPI server for the client's and the build queue's
//! unit tests: an in-memory CAS with ByteStream, Capabilities, Action Cache,
//! Remote Asset and an Execution service whose "execution" is a closure.
//!
//! It exists so that the client can be tested over real gRPC on loopback
//! without the worker crate; it checks digests on upload like a real CAS,
//! counts the calls tests assert on, and can cut operation streams to
//! exercise `WaitExecution`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use weir_proto::asset::fetch_server::{Fetch, FetchServer};
use weir_proto::asset::push_server::{Push, PushServer};
use weir_proto::asset::*;
use weir_proto::bytestream::byte_stream_server::{ByteStream, ByteStreamServer};
use weir_proto::bytestream::*;
use weir_proto::longrunning::{operation, Operation};
use weir_proto::reapi::action_cache_server::{ActionCache, ActionCacheServer};
use weir_proto::reapi::capabilities_server::{Capabilities, CapabilitiesServer};
use weir_proto::reapi::content_addressable_storage_server::{ContentAddressableStorage, ContentAddressableStorageServer};
use weir_proto::reapi::execution_server::{Execution, ExecutionServer};
use weir_proto::reapi::*;
use weir_proto::{rpc, Digest};

use super::pack_execute_response;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What the fake does for an `Execute`: given the store, the action and its
/// command, a result or an error status.
pub type RunFn = dyn Fn(&FakeState, &Action, &Command) -> Result<ActionResult, Status> + Send + Sync;

/// The fake server's state, shared with the test.
pub struct FakeState {
    /// The CAS.
    pub blobs: Mutex<HashMap<Digest, Vec<u8>>>,
    /// The Action Cache.
    pub action_cache: Mutex<HashMap<Digest, ActionResult>>,
    /// The Remote Asset index: URI → blob digest.
    pub assets: Mutex<HashMap<String, Digest>>,
    /// `max_batch_total_size_bytes` announced in Capabilities.
    pub max_batch: i64,
    /// Number of `BatchUpdateBlobs` calls.
    pub batch_updates: AtomicUsize,
    /// Number of ByteStream `Write` calls.
    pub writes: AtomicUsize,
    /// Number of ByteStream `Read` calls.
    pub reads: AtomicUsize,
    /// Number of `Execute` calls.
    pub executes: AtomicUsize,
    /// Number of `WaitExecution` calls.
    pub waits: AtomicUsize,
    /// How many of the next `Execute` streams end after the first operation
    /// message, before the result.
    pub cut_streams: AtomicUsize,
    /// How many of the next `Execute` calls fail with UNAVAILABLE.
    pub unavailable: AtomicUsize,
    /// Finished operations by name, for `WaitExecution`.
    operations: Mutex<HashMap<String, Operation>>,
    run: Box<RunFn>,
}

impl FakeState {
    /// Stores a blob and returns its digest.
    pub fn put(&self, data: Vec<u8>) -> Digest {
        let digest = Digest::of(&data);
        self.blobs.lock().unwrap().insert(digest, data);
        digest
    }

    /// A stored blob.
    pub fn get(&self, digest: &Digest) -> Option<Vec<u8>> {
        self.blobs.lock().unwrap().get(digest).cloned()
    }

    /// A stored message, decoded.
    pub fn get_message<M: Message + Default>(&self, digest: &reapi::Digest) -> Option<M> {
        let digest = Digest::try_from(digest).ok()?;
        M::decode(&self.get(&digest)?[..]).ok()
    }
}

use weir_proto::reapi;

/// Which Remote Asset services a fake server serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetApi {
    /// Fetch and Push.
    Full,
    /// Fetch only.
    FetchOnly,
    /// Neither.
    None,
}

/// A running fake server.
pub struct FakeServer {
    /// `grpc://127.0.0.1:PORT`.
    pub url: String,
    /// The shared state.
    pub state: Arc<FakeState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Starts a server on 127.0.0.1:0 whose executions are `run`.
    pub async fn start(max_batch: i64, run: Box<RunFn>) -> FakeServer {
        FakeServer::start_with(max_batch, run, AssetApi::Full).await
    }

    /// Like [`FakeServer::start`], serving the Remote Asset services `asset`
    /// says (a service not served answers UNIMPLEMENTED, as BuildGrid 0.9 does).
    pub async fn start_with(max_batch: i64, run: Box<RunFn>, asset: AssetApi) -> FakeServer {
        let state = Arc::new(FakeState {
            blobs: Mutex::default(),
            action_cache: Mutex::default(),
            assets: Mutex::default(),
            max_batch,
            batch_updates: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            executes: AtomicUsize::new(0),
            waits: AtomicUsize::new(0),
            cut_streams: AtomicUsize::new(0),
            unavailable: AtomicUsize::new(0),
            operations: Mutex::default(),
            run,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("grpc://{}", listener.local_addr().unwrap());
        let svc = Svc(state.clone());
        let big = 64 * 1024 * 1024;
        let router = tonic::transport::Server::builder()
            .add_service(ContentAddressableStorageServer::new(svc.clone()).max_decoding_message_size(big))
            .add_service(ByteStreamServer::new(svc.clone()))
            .add_service(CapabilitiesServer::new(svc.clone()))
            .add_service(ActionCacheServer::new(svc.clone()))
            .add_optional_service((asset != AssetApi::None).then(|| FetchServer::new(svc.clone())))
            .add_optional_service((asset == AssetApi::Full).then(|| PushServer::new(svc.clone())))
            .add_service(ExecutionServer::new(svc));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let task = tokio::spawn(async move {
            let _ = router.serve_with_incoming(incoming).await;
        });
        FakeServer { url, state, task }
    }

    /// A server whose every action succeeds with an empty result.
    pub async fn start_default() -> FakeServer {
        FakeServer::start(4 * 1024 * 1024, Box::new(|_, _, _| Ok(ActionResult::default()))).await
    }

    /// [`FakeServer::start_default`] serving the Remote Asset services `asset` says.
    pub async fn start_default_with(asset: AssetApi) -> FakeServer {
        FakeServer::start_with(4 * 1024 * 1024, Box::new(|_, _, _| Ok(ActionResult::default())), asset).await
    }
}

#[derive(Clone)]
struct Svc(Arc<FakeState>);

fn digest_of(proto: Option<&reapi::Digest>) -> Result<Digest, Status> {
    Digest::try_from(proto).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn ok_status() -> Option<rpc::Status> {
    Some(rpc::Status { code: 0, message: String::new(), details: vec![] })
}

#[tonic::async_trait]
impl ContentAddressableStorage for Svc {
    async fn find_missing_blobs(&self, r: Request<FindMissingBlobsRequest>) -> Result<Response<FindMissingBlobsResponse>, Status> {
        let blobs = self.0.blobs.lock().unwrap();
        let mut missing = Vec::new();
        for d in &r.get_ref().blob_digests {
            if !blobs.contains_key(&digest_of(Some(d))?) {
                missing.push(d.clone());
            }
        }
        Ok(Response::new(FindMissingBlobsResponse { missing_blob_digests: missing }))
    }
    async fn batch_update_blobs(&self, r: Request<BatchUpdateBlobsRequest>) -> Result<Response<BatchUpdateBlobsResponse>, Status> {
        self.0.batch_updates.fetch_add(1, Ordering::SeqCst);
        let total: usize = r.get_ref().requests.iter().map(|q| q.data.len()).sum();
        if total as i64 > self.0.max_batch {
            return Err(Status::invalid_argument("batch too large"));
        }
        let mut responses = Vec::new();
        for req in r.into_inner().requests {
            let digest = digest_of(req.digest.as_ref())?;
            if Digest::of(&req.data) != digest {
                return Err(Status::invalid_argument("digest mismatch"));
            }
            self.0.blobs.lock().unwrap().insert(digest, req.data);
            responses.push(batch_update_blobs_response::Response { digest: req.digest, status: ok_status() });
        }
        Ok(Response::new(BatchUpdateBlobsResponse { responses }))
    }
    async fn batch_read_blobs(&self, r: Request<BatchReadBlobsRequest>) -> Result<Response<BatchReadBlobsResponse>, Status> {
        let mut responses = Vec::new();
        for d in &r.get_ref().digests {
            let digest = digest_of(Some(d))?;
            let (data, status) = match self.0.get(&digest) {
                Some(data) => (data, ok_status()),
                None => (vec![], Some(rpc::Status { code: tonic::Code::NotFound as i32, message: "missing".into(), details: vec![] })),
            };
            responses.push(batch_read_blobs_response::Response { digest: Some(d.clone()), data, compressor: 0, status });
        }
        Ok(Response::new(BatchReadBlobsResponse { responses }))
    }
    type GetTreeStream = BoxStream<GetTreeResponse>;
    async fn get_tree(&self, _: Request<GetTreeRequest>) -> Result<Response<Self::GetTreeStream>, Status> {
        Err(Status::unimplemented("GetTree"))
    }
    async fn split_blob(&self, _: Request<SplitBlobRequest>) -> Result<Response<SplitBlobResponse>, Status> {
        Err(Status::unimplemented("SplitBlob"))
    }
    type GetChunkMappingStream = BoxStream<GetChunkMappingResponse>;
    async fn get_chunk_mapping(&self, _: Request<GetChunkMappingRequest>) -> Result<Response<Self::GetChunkMappingStream>, Status> {
        Err(Status::unimplemented("GetChunkMapping"))
    }
    async fn splice_blob(&self, _: Request<SpliceBlobRequest>) -> Result<Response<SpliceBlobResponse>, Status> {
        Err(Status::unimplemented("SpliceBlob"))
    }
    async fn register_chunk_mapping(&self, _: Request<Streaming<RegisterChunkMappingRequest>>) -> Result<Response<RegisterChunkMappingResponse>, Status> {
        Err(Status::unimplemented("RegisterChunkMapping"))
    }
}

/// The digest named by the tail `.../blobs/HASH/SIZE` of a resource name.
fn resource_digest(name: &str) -> Result<Digest, Status> {
    let parts: Vec<&str> = name.rsplitn(3, '/').collect();
    if parts.len() < 3 {
        return Err(Status::invalid_argument("bad resource name"));
    }
    format!("{}/{}", parts[1], parts[0]).parse().map_err(|_| Status::invalid_argument("bad resource name"))
}

#[tonic::async_trait]
impl ByteStream for Svc {
    type ReadStream = BoxStream<ReadResponse>;
    async fn read(&self, r: Request<ReadRequest>) -> Result<Response<Self::ReadStream>, Status> {
        self.0.reads.fetch_add(1, Ordering::SeqCst);
        let digest = resource_digest(&r.get_ref().resource_name)?;
        let data = self.0.get(&digest).ok_or_else(|| Status::not_found("missing"))?;
        let chunks: Vec<Result<ReadResponse, Status>> = data.chunks(100_000).map(|c| Ok(ReadResponse { data: c.to_vec() })).collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }
    async fn write(&self, r: Request<Streaming<WriteRequest>>) -> Result<Response<WriteResponse>, Status> {
        self.0.writes.fetch_add(1, Ordering::SeqCst);
        let mut stream = r.into_inner();
        let mut name = String::new();
        let mut data = Vec::new();
        while let Some(req) = stream.next().await {
            let req = req?;
            if name.is_empty() {
                name = req.resource_name.clone();
            }
            if req.write_offset != data.len() as i64 {
                return Err(Status::invalid_argument("bad offset"));
            }
            data.extend_from_slice(&req.data);
            if req.finish_write {
                break;
            }
        }
        let digest = resource_digest(&name)?;
        if Digest::of(&data) != digest {
            return Err(Status::invalid_argument("digest mismatch"));
        }
        let size = data.len() as i64;
        self.0.blobs.lock().unwrap().insert(digest, data);
        Ok(Response::new(WriteResponse { committed_size: size }))
    }
    async fn query_write_status(&self, _: Request<QueryWriteStatusRequest>) -> Result<Response<QueryWriteStatusResponse>, Status> {
        Err(Status::unimplemented("QueryWriteStatus"))
    }
}

#[tonic::async_trait]
impl Capabilities for Svc {
    async fn get_capabilities(&self, _: Request<GetCapabilitiesRequest>) -> Result<Response<ServerCapabilities>, Status> {
        Ok(Response::new(ServerCapabilities {
            cache_capabilities: Some(CacheCapabilities { max_batch_total_size_bytes: self.0.max_batch, ..Default::default() }),
            execution_capabilities: Some(ExecutionCapabilities { exec_enabled: true, ..Default::default() }),
            ..Default::default()
        }))
    }
}

#[tonic::async_trait]
impl ActionCache for Svc {
    async fn get_action_result(&self, r: Request<GetActionResultRequest>) -> Result<Response<ActionResult>, Status> {
        let digest = digest_of(r.get_ref().action_digest.as_ref())?;
        self.0.action_cache.lock().unwrap().get(&digest).cloned().map(Response::new).ok_or_else(|| Status::not_found("miss"))
    }
    async fn update_action_result(&self, r: Request<UpdateActionResultRequest>) -> Result<Response<ActionResult>, Status> {
        let r = r.into_inner();
        let digest = digest_of(r.action_digest.as_ref())?;
        let result = r.action_result.unwrap_or_default();
        self.0.action_cache.lock().unwrap().insert(digest, result.clone());
        Ok(Response::new(result))
    }
}

#[tonic::async_trait]
impl Fetch for Svc {
    async fn fetch_blob(&self, r: Request<FetchBlobRequest>) -> Result<Response<FetchBlobResponse>, Status> {
        let assets = self.0.assets.lock().unwrap();
        for uri in &r.get_ref().uris {
            if let Some(digest) = assets.get(uri) {
                return Ok(Response::new(FetchBlobResponse { status: ok_status(), uri: uri.clone(), blob_digest: Some(digest.to_proto()), ..Default::default() }));
            }
        }
        Err(Status::not_found("no such asset"))
    }
    async fn fetch_directory(&self, _: Request<FetchDirectoryRequest>) -> Result<Response<FetchDirectoryResponse>, Status> {
        Err(Status::unimplemented("FetchDirectory"))
    }
}

#[tonic::async_trait]
impl Push for Svc {
    async fn push_blob(&self, r: Request<PushBlobRequest>) -> Result<Response<PushBlobResponse>, Status> {
        let digest = digest_of(r.get_ref().blob_digest.as_ref())?;
        let mut assets = self.0.assets.lock().unwrap();
        for uri in &r.get_ref().uris {
            assets.insert(uri.clone(), digest);
        }
        Ok(Response::new(PushBlobResponse {}))
    }
    async fn push_directory(&self, _: Request<PushDirectoryRequest>) -> Result<Response<PushDirectoryResponse>, Status> {
        Err(Status::unimplemented("PushDirectory"))
    }
}

#[tonic::async_trait]
impl Execution for Svc {
    type ExecuteStream = BoxStream<Operation>;
    async fn execute(&self, r: Request<ExecuteRequest>) -> Result<Response<Self::ExecuteStream>, Status> {
        let n = self.0.executes.fetch_add(1, Ordering::SeqCst);
        if self.0.unavailable.load(Ordering::SeqCst) > 0 {
            self.0.unavailable.fetch_sub(1, Ordering::SeqCst);
            return Err(Status::unavailable("fake outage"));
        }
        let action_digest = r.get_ref().action_digest.clone().ok_or_else(|| Status::invalid_argument("no action"))?;
        let action: Action = self.0.get_message(&action_digest).ok_or_else(|| Status::failed_precondition("action missing"))?;
        let command: Command = action
            .command_digest
            .as_ref()
            .and_then(|d| self.0.get_message(d))
            .ok_or_else(|| Status::failed_precondition("command missing"))?;
        if let Some(root) = action.input_root_digest.as_ref() {
            if self.0.get(&digest_of(Some(root))?).is_none() {
                return Err(Status::failed_precondition("input root missing"));
            }
        }
        let name = format!("operations/{n}");
        let response = match (self.0.run)(&self.0, &action, &command) {
            Ok(result) => ExecuteResponse { result: Some(result), ..Default::default() },
            Err(status) => ExecuteResponse {
                status: Some(rpc::Status { code: status.code() as i32, message: status.message().into(), details: vec![] }),
                ..Default::default()
            },
        };
        let done = Operation { name: name.clone(), metadata: None, done: true, result: Some(operation::Result::Response(pack_execute_response(&response))) };
        self.0.operations.lock().unwrap().insert(name.clone(), done.clone());
        let first = Operation { name, metadata: None, done: false, result: None };
        let cut = self.0.cut_streams.load(Ordering::SeqCst) > 0;
        let ops: Vec<Result<Operation, Status>> = if cut {
            self.0.cut_streams.fetch_sub(1, Ordering::SeqCst);
            vec![Ok(first)]
        } else {
            vec![Ok(first), Ok(done)]
        };
        Ok(Response::new(Box::pin(futures::stream::iter(ops))))
    }
    type WaitExecutionStream = BoxStream<Operation>;
    async fn wait_execution(&self, r: Request<WaitExecutionRequest>) -> Result<Response<Self::WaitExecutionStream>, Status> {
        self.0.waits.fetch_add(1, Ordering::SeqCst);
        let op = self.0.operations.lock().unwrap().get(&r.get_ref().name).cloned().ok_or_else(|| Status::not_found("no such operation"))?;
        Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(op)]))))
    }
}

/// An execution for [`FakeServer::start`] that really runs the command, as
/// the worker's `host` sandbox does: the input root is written to a temporary
/// directory, the command runs there, and the output paths that are
/// directories are collected as `Tree`s.
pub fn host_run(state: &FakeState, action: &Action, command: &Command) -> Result<ActionResult, Status> {
    let root = tempfile::tempdir().map_err(|e| Status::internal(e.to_string()))?;
    let input = action.input_root_digest.as_ref().ok_or_else(|| Status::invalid_argument("no input root"))?;
    write_tree(state, input, root.path())?;
    let program = command.arguments.first().ok_or_else(|| Status::invalid_argument("no arguments"))?;
    let output = std::process::Command::new(program)
        .args(&command.arguments[1..])
        .env_clear()
        .envs(command.environment_variables.iter().map(|v| (&v.name, &v.value)))
        .current_dir(root.path().join(&command.working_directory))
        .output()
        .map_err(|e| Status::internal(e.to_string()))?;
    let mut result = ActionResult {
        exit_code: output.status.code().unwrap_or(-1),
        stdout_digest: Some(state.put(output.stdout).to_proto()),
        stderr_raw: output.stderr,
        ..Default::default()
    };
    for path in &command.output_paths {
        let dir = root.path().join(&command.working_directory).join(path);
        if !dir.is_dir() {
            continue;
        }
        let tree = weir_proto::merkle::MerkleTree::from_dir(&dir).map_err(|e| Status::internal(e.to_string()))?;
        for file in tree.files() {
            if let Some(path) = &file.path {
                state.put(std::fs::read(path).map_err(|e| Status::internal(e.to_string()))?);
            }
        }
        let tree_digest = state.put(tree.to_tree().encode_to_vec());
        result.output_directories.push(OutputDirectory { path: path.clone(), tree_digest: Some(tree_digest.to_proto()), ..Default::default() });
    }
    Ok(result)
}

fn write_tree(state: &FakeState, digest: &reapi::Digest, dir: &std::path::Path) -> Result<(), Status> {
    let directory: Directory = state.get_message(digest).ok_or_else(|| Status::failed_precondition("directory missing"))?;
    std::fs::create_dir_all(dir).map_err(|e| Status::internal(e.to_string()))?;
    for file in &directory.files {
        let digest = digest_of(file.digest.as_ref())?;
        let data = state.get(&digest).ok_or_else(|| Status::failed_precondition("file missing"))?;
        let path = dir.join(&file.name);
        std::fs::write(&path, data).map_err(|e| Status::internal(e.to_string()))?;
        if file.is_executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).map_err(|e| Status::internal(e.to_string()))?;
        }
    }
    for link in &directory.symlinks {
        std::os::unix::fs::symlink(&link.target, dir.join(&link.name)).map_err(|e| Status::internal(e.to_string()))?;
    }
    for child in &directory.directories {
        write_tree(state, child.digest.as_ref().ok_or_else(|| Status::invalid_argument("no digest"))?, &dir.join(&child.name))?;
    }
    Ok(())
}
