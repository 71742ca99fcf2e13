//! End-to-end tests of weir-worker's execution side (issue 6): the real
//! binary on 127.0.0.1 port 0, inputs uploaded with BatchUpdateBlobs, actions
//! run through the REAPI Execution and longrunning Operations clients.
//!
//! Covered: a trivial action (stages, stdout, outputs); a second run answered
//! from the Action Cache; two concurrent identical actions deduplicated into
//! one run; a failing command's exit code and stderr; a missing input as
//! FAILED_PRECONDITION with a PreconditionFailure; a timeout as
//! DEADLINE_EXCEEDED; CancelOperation killing the process; and the default
//! namespace sandbox hiding the host. Real clients (Bazel, BuildStream)
//! executing through the worker are in `worker_bazel.rs` and `worker_bst.rs`.

mod worker_process;

use std::time::{Duration, Instant};

use prost::Message;
use tonic::transport::Channel;
use weir_proto::longrunning::operations_client::OperationsClient;
use weir_proto::longrunning::{operation, CancelOperationRequest, Operation};
use weir_proto::reapi::capabilities_client::CapabilitiesClient;
use weir_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use weir_proto::reapi::execution_client::ExecutionClient;
use weir_proto::reapi::{
    batch_update_blobs_request, command, Action, ActionResult, BatchReadBlobsRequest, BatchUpdateBlobsRequest,
    Command, Directory, DirectoryNode, ExecuteRequest, ExecuteResponse, FileNode, GetCapabilitiesRequest,
};
use weir_proto::Digest;
use worker_process::WorkerProcess;

const RESPONSE_TYPE: &str = "type.googleapis.com/build.bazel.remote.execution.v2.ExecuteResponse";

struct Client {
    cas: ContentAddressableStorageClient<Channel>,
    exec: ExecutionClient<Channel>,
    ops: OperationsClient<Channel>,
}

async fn connect(worker: &WorkerProcess) -> Client {
    let channel = Channel::from_shared(worker.endpoint()).unwrap().connect().await.expect("connects to the worker");
    Client {
        cas: ContentAddressableStorageClient::new(channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20),
        exec: ExecutionClient::new(channel.clone()),
        ops: OperationsClient::new(channel),
    }
}

impl Client {
    async fn upload(&self, blobs: &[&[u8]]) -> Vec<Digest> {
        let digests: Vec<Digest> = blobs.iter().map(|b| Digest::of(b)).collect();
        let request = BatchUpdateBlobsRequest {
            requests: blobs
                .iter()
                .zip(&digests)
                .map(|(data, digest)| batch_update_blobs_request::Request {
                    digest: Some(digest.to_proto()),
                    data: data.to_vec(),
                    compressor: 0,
                })
                .collect(),
            ..Default::default()
        };
        let response = self.cas.clone().batch_update_blobs(request).await.unwrap().into_inner();
        assert!(response.responses.iter().all(|r| r.status.as_ref().is_none_or(|s| s.code == 0)));
        digests
    }

    async fn read(&self, digest: &weir_proto::reapi::Digest) -> Vec<u8> {
        let request = BatchReadBlobsRequest { digests: vec![digest.clone()], ..Default::default() };
        let mut response = self.cas.clone().batch_read_blobs(request).await.unwrap().into_inner();
        response.responses.remove(0).data
    }

    /// Uploads an action running `args` in `input_root` (an empty root when
    /// `None`) and returns its digest.
    async fn action(&self, args: &[&str], input_root: Option<Digest>, timeout: Option<u64>) -> Digest {
        let empty_root = Directory::default().encode_to_vec();
        let root = match input_root {
            Some(root) => root,
            None => self.upload(&[&empty_root]).await[0],
        };
        let command = Command {
            arguments: args.iter().map(|s| s.to_string()).collect(),
            environment_variables: vec![command::EnvironmentVariable { name: "PATH".into(), value: "/bin:/usr/bin".into() }],
            output_paths: vec!["out.txt".into()],
            ..Default::default()
        }
        .encode_to_vec();
        let command_digest = self.upload(&[&command]).await[0];
        let action = Action {
            command_digest: Some(command_digest.to_proto()),
            input_root_digest: Some(root.to_proto()),
            timeout: timeout.map(|seconds| weir_proto::protobuf::Duration { seconds: seconds as i64, nanos: 0 }),
            ..Default::default()
        }
        .encode_to_vec();
        self.upload(&[&action]).await[0]
    }

    async fn start(&self, action: Digest, skip_cache_lookup: bool) -> tonic::Streaming<Operation> {
        let request = ExecuteRequest { action_digest: Some(action.to_proto()), skip_cache_lookup, ..Default::default() };
        self.exec.clone().execute(request).await.expect("Execute is accepted").into_inner()
    }

    /// Executes and returns the operation name and the final response.
    async fn execute(&self, action: Digest, skip_cache_lookup: bool) -> (String, ExecuteResponse) {
        finish(self.start(action, skip_cache_lookup).await).await
    }
}

async fn finish(mut stream: tonic::Streaming<Operation>) -> (String, ExecuteResponse) {
    let mut last = None;
    while let Some(op) = stream.message().await.expect("the operation stream does not fail") {
        last = Some(op);
    }
    let last = last.expect("at least one Operation");
    assert!(last.done);
    let Some(operation::Result::Response(any)) = &last.result else { panic!("no response in {last:?}") };
    assert_eq!(any.type_url, RESPONSE_TYPE);
    (last.name.clone(), ExecuteResponse::decode(any.value.as_slice()).unwrap())
}

fn status_code(response: &ExecuteResponse) -> i32 {
    response.status.as_ref().map(|s| s.code).unwrap_or(0)
}

fn result(response: ExecuteResponse) -> ActionResult {
    response.result.expect("an ActionResult")
}

fn host_worker() -> (tempfile::TempDir, WorkerProcess) {
    let dir = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--sandbox", "host"]);
    (dir, worker)
}

#[tokio::test]
async fn capabilities_say_execution_is_enabled() {
    let (_dir, worker) = host_worker();
    let channel = Channel::from_shared(worker.endpoint()).unwrap().connect().await.unwrap();
    let caps = CapabilitiesClient::new(channel).get_capabilities(GetCapabilitiesRequest::default()).await.unwrap();
    assert!(caps.into_inner().execution_capabilities.unwrap().exec_enabled);
}

#[tokio::test]
async fn trivial_action_then_cached_second_run() {
    let (dir, worker) = host_worker();
    let client = connect(&worker).await;
    let marker = dir.path().join("runs");
    let script = format!("echo run >> {}; echo hello; echo out > out.txt", marker.display());
    let action = client.action(&["/bin/sh", "-c", &script], None, None).await;

    let (name, first) = client.execute(action, false).await;
    assert!(name.contains("operations/"), "{name}");
    assert_eq!(status_code(&first), 0, "{:?}", first.status);
    assert!(!first.cached_result);
    let first = result(first);
    assert_eq!(first.exit_code, 0);
    assert_eq!(client.read(first.stdout_digest.as_ref().unwrap()).await, b"hello\n");
    assert_eq!(first.output_files.len(), 1);
    assert_eq!(client.read(first.output_files[0].digest.as_ref().unwrap()).await, b"out\n");

    let (_, second) = client.execute(action, false).await;
    assert!(second.cached_result, "the second run comes from the Action Cache");
    assert_eq!(result(second).output_files, first.output_files);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1);
}

#[tokio::test]
async fn concurrent_identical_actions_are_deduplicated() {
    let (dir, worker) = host_worker();
    let client = connect(&worker).await;
    let marker = dir.path().join("runs");
    let script = format!("echo run >> {}; sleep 1", marker.display());
    let action = client.action(&["/bin/sh", "-c", &script], None, None).await;
    let ((name_a, a), (name_b, b)) = tokio::join!(client.execute(action, true), client.execute(action, true));
    assert_eq!(name_a, name_b, "one operation for both requests");
    assert_eq!(a.result, b.result);
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 1, "one run");
}

#[tokio::test]
async fn failing_command_reports_exit_code_and_stderr() {
    let (_dir, worker) = host_worker();
    let client = connect(&worker).await;
    let action = client.action(&["/bin/sh", "-c", "echo broken >&2; exit 7"], None, None).await;
    let (_, response) = client.execute(action, false).await;
    assert_eq!(status_code(&response), 0);
    let result = result(response);
    assert_eq!(result.exit_code, 7);
    assert_eq!(client.read(result.stderr_digest.as_ref().unwrap()).await, b"broken\n");
}

/// google.rpc.PreconditionFailure, decoded independently of the server.
#[derive(Clone, PartialEq, Message)]
struct PreconditionFailure {
    #[prost(message, repeated, tag = "1")]
    violations: Vec<Violation>,
}

#[derive(Clone, PartialEq, Message)]
struct Violation {
    #[prost(string, tag = "1")]
    r#type: String,
    #[prost(string, tag = "2")]
    subject: String,
}

#[tokio::test]
async fn missing_input_is_failed_precondition() {
    let (_dir, worker) = host_worker();
    let client = connect(&worker).await;
    let absent = Digest::of(b"never uploaded input");
    let root = Directory {
        files: vec![FileNode { name: "input".into(), digest: Some(absent.to_proto()), ..Default::default() }],
        ..Default::default()
    }
    .encode_to_vec();
    let root = client.upload(&[&root]).await[0];
    let action = client.action(&["/bin/true"], Some(root), None).await;
    let (_, response) = client.execute(action, false).await;
    let status = response.status.expect("a status");
    assert_eq!(status.code, tonic::Code::FailedPrecondition as i32);
    let detail = status
        .details
        .iter()
        .find(|d| d.type_url == "type.googleapis.com/google.rpc.PreconditionFailure")
        .expect("a PreconditionFailure detail");
    let failure = PreconditionFailure::decode(detail.value.as_slice()).unwrap();
    assert_eq!(failure.violations[0].r#type, "MISSING");
    assert_eq!(failure.violations[0].subject, format!("blobs/{}/{}", absent.hash_hex(), absent.size()));
}

#[tokio::test]
async fn timeout_kills_the_command() {
    let (_dir, worker) = host_worker();
    let client = connect(&worker).await;
    let action = client.action(&["/bin/sh", "-c", "sleep 60"], None, Some(1)).await;
    let started = Instant::now();
    let (_, response) = client.execute(action, false).await;
    assert_eq!(status_code(&response), tonic::Code::DeadlineExceeded as i32);
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn cancel_operation_kills_the_command() {
    let (dir, worker) = host_worker();
    let client = connect(&worker).await;
    let pid_file = dir.path().join("pid");
    let script = format!("echo $$ > {}.tmp && mv {0}.tmp {0}; exec sleep 60", pid_file.display());
    let action = client.action(&["/bin/sh", "-c", &script], None, None).await;
    let mut stream = client.start(action, false).await;
    let name = stream.message().await.unwrap().expect("a first Operation").name;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    client.ops.clone().cancel_operation(CancelOperationRequest { name }).await.unwrap();
    let (_, response) = finish(stream).await;
    assert_eq!(status_code(&response), tonic::Code::Cancelled as i32);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} survived the cancel");
}

#[tokio::test]
async fn default_namespace_sandbox_hides_the_host() {
    let Ok(busybox) = std::fs::read("/usr/bin/busybox") else {
        eprintln!("skipping: no static /usr/bin/busybox");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(dir.path(), &[]);
    let client = connect(&worker).await;
    let busybox = client.upload(&[&busybox]).await[0];
    let bin = Directory {
        files: vec![FileNode { name: "busybox".into(), digest: Some(busybox.to_proto()), is_executable: true, ..Default::default() }],
        ..Default::default()
    }
    .encode_to_vec();
    let bin = client.upload(&[&bin]).await[0];
    let root = Directory {
        directories: vec![DirectoryNode { name: "bin".into(), digest: Some(bin.to_proto()) }],
        ..Default::default()
    }
    .encode_to_vec();
    let root = client.upload(&[&root]).await[0];
    let secret = dir.path().join("host-secret");
    std::fs::write(&secret, "secret").unwrap();
    let script = format!("echo $$; /bin/busybox cat {} || echo hidden", secret.display());
    let action = client.action(&["/bin/busybox", "sh", "-c", &script], Some(root), None).await;
    let (_, response) = client.execute(action, false).await;
    assert_eq!(status_code(&response), 0, "{:?}", response.status);
    let result = result(response);
    let stdout = String::from_utf8(client.read(result.stdout_digest.as_ref().unwrap()).await).unwrap();
    assert_eq!(stdout, "1\nhidden\n", "pid 1, and the worker's own files are not visible");
}

