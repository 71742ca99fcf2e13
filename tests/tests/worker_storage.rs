//! End-to-end tests of weir-worker's storage side (issue 6): the real binary
//! on 127.0.0.1 port 0, driven with the tonic clients from weir-proto.
//!
//! Covered: content that does not match its digest is refused; a ByteStream
//! write cut off midway leaves no blob and resumes via QueryWriteStatus;
//! wrong and read-only tokens cannot write; everything acknowledged survives
//! `kill -9` and a restart; malformed digests and resource names are
//! INVALID_ARGUMENT and never crash the server; batches above tonic's 4 MiB
//! default go through; GetTree pages; Remote Asset push/fetch; metrics.

mod worker_process;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request};
use weir_proto::asset::fetch_client::FetchClient;
use weir_proto::asset::push_client::PushClient;
use weir_proto::asset::{FetchBlobRequest, FetchDirectoryRequest, PushBlobRequest, PushDirectoryRequest, Qualifier};
use weir_proto::bytestream::byte_stream_client::ByteStreamClient;
use weir_proto::bytestream::{QueryWriteStatusRequest, ReadRequest, WriteRequest};
use weir_proto::reapi::action_cache_client::ActionCacheClient;
use weir_proto::reapi::capabilities_client::CapabilitiesClient;
use weir_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use weir_proto::reapi::{
    batch_update_blobs_request, ActionResult, BatchReadBlobsRequest, BatchUpdateBlobsRequest, Directory,
    DirectoryNode, FileNode, FindMissingBlobsRequest, GetActionResultRequest, GetCapabilitiesRequest, GetTreeRequest,
    OutputFile, UpdateActionResultRequest,
};
use weir_proto::Digest;
use worker_process::WorkerProcess;

const BIG: usize = 64 << 20;

async fn channel(worker: &WorkerProcess) -> Channel {
    Channel::from_shared(worker.endpoint()).unwrap().connect().await.expect("connects to the worker")
}

fn cas(ch: &Channel) -> ContentAddressableStorageClient<Channel> {
    ContentAddressableStorageClient::new(ch.clone()).max_decoding_message_size(BIG).max_encoding_message_size(BIG)
}

fn bytestream(ch: &Channel) -> ByteStreamClient<Channel> {
    ByteStreamClient::new(ch.clone()).max_decoding_message_size(BIG).max_encoding_message_size(BIG)
}

/// A request carrying `authorization: Bearer TOKEN` when a token is given.
fn req<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// Pseudo-random, incompressible-ish bytes (deterministic per seed).
fn blob(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn upload_name(digest: &Digest) -> String {
    format!("uploads/{}/blobs/{}/{}", uuid::Uuid::new_v4(), digest.hash_hex(), digest.size())
}

fn update_request(entries: &[(Digest, &[u8])]) -> BatchUpdateBlobsRequest {
    BatchUpdateBlobsRequest {
        instance_name: String::new(),
        requests: entries
            .iter()
            .map(|(d, data)| batch_update_blobs_request::Request { digest: Some(d.to_proto()), data: data.to_vec(), compressor: 0 })
            .collect(),
        digest_function: 0,
    }
}

async fn missing(ch: &Channel, digests: &[Digest]) -> Vec<Digest> {
    let request = FindMissingBlobsRequest {
        instance_name: String::new(),
        blob_digests: digests.iter().map(Digest::to_proto).collect(),
        digest_function: 0,
    };
    let response = cas(ch).find_missing_blobs(request).await.unwrap().into_inner();
    response.missing_blob_digests.iter().map(|d| Digest::try_from(d).unwrap()).collect()
}

async fn read_blob(ch: &Channel, digest: &Digest) -> Result<Vec<u8>, tonic::Status> {
    let request = ReadRequest {
        resource_name: format!("blobs/{}/{}", digest.hash_hex(), digest.size()),
        read_offset: 0,
        read_limit: 0,
    };
    let mut stream = bytestream(ch).read(request).await?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await? {
        out.extend_from_slice(&chunk.data);
    }
    Ok(out)
}

/// Writes `data` in one ByteStream call of 1 MiB chunks.
async fn write_blob(ch: &Channel, data: &[u8], token: Option<&str>) -> Result<i64, tonic::Status> {
    let digest = Digest::of(data);
    let name = upload_name(&digest);
    let mut requests = Vec::new();
    let mut offset = 0;
    loop {
        let end = (offset + (1 << 20)).min(data.len());
        requests.push(WriteRequest {
            resource_name: if offset == 0 { name.clone() } else { String::new() },
            write_offset: offset as i64,
            finish_write: end == data.len(),
            data: data[offset..end].to_vec(),
        });
        offset = end;
        if offset == data.len() {
            break;
        }
    }
    let response = bytestream(ch).write(req(futures::stream::iter(requests), token)).await?;
    Ok(response.into_inner().committed_size)
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--role", "cache"]);
    let ch = channel(&worker).await;
    let good = b"the real content".to_vec();
    let digest = Digest::of(&good);
    let forged = b"the fake content".to_vec(); // same length, different hash

    let response = cas(&ch).batch_update_blobs(update_request(&[(digest, &forged)])).await.unwrap().into_inner();
    assert_eq!(response.responses[0].status.as_ref().unwrap().code, Code::InvalidArgument as i32);
    assert_eq!(missing(&ch, &[digest]).await, vec![digest]);

    // Same over ByteStream, and with a wrong length.
    let name = upload_name(&digest);
    let write = WriteRequest { resource_name: name, write_offset: 0, finish_write: true, data: forged.clone() };
    let err = bytestream(&ch).write(futures::stream::iter([write])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let write = WriteRequest { resource_name: upload_name(&digest), write_offset: 0, finish_write: true, data: b"short".to_vec() };
    assert_eq!(bytestream(&ch).write(futures::stream::iter([write])).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(missing(&ch, &[digest]).await, vec![digest]);
    assert_eq!(read_blob(&ch, &digest).await.unwrap_err().code(), Code::NotFound);

    // The genuine content is then accepted and read back.
    let response = cas(&ch).batch_update_blobs(update_request(&[(digest, &good)])).await.unwrap().into_inner();
    assert_eq!(response.responses[0].status.as_ref().unwrap().code, 0);
    assert_eq!(read_blob(&ch, &digest).await.unwrap(), good);
}

#[tokio::test]
async fn a_write_cut_off_midway_leaves_no_blob_and_can_be_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--role", "cache"]);
    let ch = channel(&worker).await;
    let data = blob(7, 3 << 20);
    let digest = Digest::of(&data);
    let name = upload_name(&digest);
    let half = data.len() / 2;

    // Send the first half, then drop the call without finish_write.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut client = bytestream(&ch);
    let call = tokio::spawn(async move { client.write(ReceiverStream::new(rx)).await });
    tx.send(WriteRequest { resource_name: name.clone(), write_offset: 0, finish_write: false, data: data[..half].to_vec() })
        .await
        .unwrap();
    let status_of = |name: String| {
        let mut client = bytestream(&ch);
        async move { client.query_write_status(QueryWriteStatusRequest { resource_name: name }).await.unwrap().into_inner() }
    };
    let mut committed = 0;
    for _ in 0..100 {
        committed = status_of(name.clone()).await.committed_size;
        if committed == half as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(committed, half as i64, "the server did not record the first half");
    call.abort();
    drop(tx);
    let _ = call.await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(missing(&ch, &[digest]).await, vec![digest], "a partial upload became visible");
    let status = status_of(name.clone()).await;
    assert_eq!((status.committed_size, status.complete), (half as i64, false));

    // A write at the wrong offset is refused; the right one resumes and commits.
    let wrong = WriteRequest { resource_name: name.clone(), write_offset: 5, finish_write: true, data: data[5..].to_vec() };
    assert_eq!(bytestream(&ch).write(futures::stream::iter([wrong])).await.unwrap_err().code(), Code::InvalidArgument);
    let status = status_of(name.clone()).await;
    assert_eq!(status.committed_size, half as i64, "a refused write damaged the partial upload");
    let rest = WriteRequest { resource_name: name.clone(), write_offset: half as i64, finish_write: true, data: data[half..].to_vec() };
    let committed = bytestream(&ch).write(futures::stream::iter([rest])).await.unwrap().into_inner().committed_size;
    assert_eq!(committed, data.len() as i64);
    assert!(missing(&ch, &[digest]).await.is_empty());
    assert_eq!(read_blob(&ch, &digest).await.unwrap(), data);
    let status = status_of(name).await;
    assert!(status.complete);
}

#[tokio::test]
async fn wrong_and_read_only_tokens_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("reader.token"), "reader-secret\n").unwrap();
    let config = dir.path().join("worker.yaml");
    std::fs::write(
        &config,
        "role: cache\nauth:\n  tokens:\n    - { token: writer-secret, access: read_write }\n    - { token_file: reader.token, access: read_only }\n",
    )
    .unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);
    let ch = channel(&worker).await;
    let data = b"guarded".to_vec();
    let digest = Digest::of(&data);
    let find = || FindMissingBlobsRequest { instance_name: String::new(), blob_digests: vec![digest.to_proto()], digest_function: 0 };

    for token in [None, Some("writer-secreT"), Some("")] {
        let err = cas(&ch).find_missing_blobs(req(find(), token)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "token {token:?}");
        let err = cas(&ch).batch_update_blobs(req(update_request(&[(digest, &data)]), token)).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "token {token:?}");
    }
    let reader = Some("reader-secret");
    assert!(cas(&ch).find_missing_blobs(req(find(), reader)).await.is_ok());
    let err = cas(&ch).batch_update_blobs(req(update_request(&[(digest, &data)]), reader)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(write_blob(&ch, &data, reader).await.unwrap_err().code(), Code::PermissionDenied);
    let update = UpdateActionResultRequest {
        action_digest: Some(Digest::of(b"action").to_proto()),
        action_result: Some(ActionResult::default()),
        ..Default::default()
    };
    let err = ActionCacheClient::new(ch.clone()).update_action_result(req(update.clone(), reader)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let push = PushBlobRequest { uris: vec!["u".into()], blob_digest: Some(digest.to_proto()), ..Default::default() };
    assert_eq!(PushClient::new(ch.clone()).push_blob(req(push, reader)).await.unwrap_err().code(), Code::PermissionDenied);
    let missing_now = cas(&ch).find_missing_blobs(req(find(), reader)).await.unwrap().into_inner();
    assert_eq!(missing_now.missing_blob_digests.len(), 1, "a refused write stored the blob");

    let writer = Some("writer-secret");
    assert_eq!(write_blob(&ch, &data, writer).await.unwrap(), data.len() as i64);
    assert!(ActionCacheClient::new(ch.clone()).update_action_result(req(update, writer)).await.is_ok());
    let missing_now = cas(&ch).find_missing_blobs(req(find(), reader)).await.unwrap().into_inner();
    assert!(missing_now.missing_blob_digests.is_empty());
}

#[tokio::test]
async fn acknowledged_blobs_and_results_survive_kill_9_and_restart() {
    // The default (`sync: never`): nothing is fsynced, and still nothing acknowledged is lost.
    survive_kill_9(None).await;
}

#[tokio::test]
async fn acknowledged_blobs_and_results_survive_kill_9_with_sync_always() {
    survive_kill_9(Some("sync: always\n")).await;
}

/// Stores small blobs (batch), a large one (ByteStream, past the direct-I/O
/// threshold) and action results, kills the worker with SIGKILL, restarts
/// it and reads everything back.
async fn survive_kill_9(config: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("worker.yaml");
    let mut args = vec!["--role", "cache"];
    if let Some(text) = config {
        std::fs::write(&config_path, text).unwrap();
        args.extend(["--config", config_path.to_str().unwrap()]);
    }
    let mut worker = WorkerProcess::start(dir.path(), &args);
    let ch = channel(&worker).await;
    let small: Vec<Vec<u8>> = (0..50).map(|i| blob(i, 100 + i as usize * 37)).collect();
    let entries: Vec<(Digest, &[u8])> = small.iter().map(|b| (Digest::of(b), b.as_slice())).collect();
    let response = cas(&ch).batch_update_blobs(update_request(&entries)).await.unwrap().into_inner();
    assert!(response.responses.iter().all(|r| r.status.as_ref().unwrap().code == 0));
    let large = blob(99, (9 << 20) + 4097);
    write_blob(&ch, &large, None).await.unwrap();
    let mut ac = ActionCacheClient::new(ch.clone());
    let mut actions = Vec::new();
    for (i, (digest, _)) in entries.iter().enumerate().take(20) {
        let action = Digest::of(format!("action {i}").as_bytes());
        let result = ActionResult {
            output_files: vec![OutputFile { path: format!("out{i}"), digest: Some(digest.to_proto()), ..Default::default() }],
            exit_code: i as i32,
            ..Default::default()
        };
        let request = UpdateActionResultRequest { action_digest: Some(action.to_proto()), action_result: Some(result.clone()), ..Default::default() };
        ac.update_action_result(request).await.unwrap();
        actions.push((action, result));
    }
    drop(ch);
    worker.kill9();

    let worker = WorkerProcess::start(dir.path(), &args);
    let ch = channel(&worker).await;
    let mut all: Vec<Digest> = entries.iter().map(|(d, _)| *d).collect();
    all.push(Digest::of(&large));
    assert!(missing(&ch, &all).await.is_empty(), "acknowledged blobs were lost");
    for (digest, data) in &entries {
        assert_eq!(read_blob(&ch, digest).await.unwrap(), *data);
    }
    assert_eq!(read_blob(&ch, &Digest::of(&large)).await.unwrap(), large);
    let reads = cas(&ch)
        .batch_read_blobs(BatchReadBlobsRequest { digests: all[..50].iter().map(Digest::to_proto).collect(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    for (response, (_, data)) in reads.responses.iter().zip(&entries) {
        assert_eq!(response.data, *data);
    }
    let mut ac = ActionCacheClient::new(ch.clone());
    for (action, result) in actions {
        let request = GetActionResultRequest { action_digest: Some(action.to_proto()), ..Default::default() };
        assert_eq!(ac.get_action_result(request).await.unwrap().into_inner(), result);
    }
}

#[tokio::test]
async fn malformed_digests_and_resource_names_are_invalid_argument() {
    let dir = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--role", "cache"]);
    let ch = channel(&worker).await;
    let hash = Digest::of(b"x").hash_hex();
    let bad_digests = [
        weir_proto::reapi::Digest { hash: "abc".into(), size_bytes: 1 },
        weir_proto::reapi::Digest { hash: hash.to_uppercase(), size_bytes: 1 },
        weir_proto::reapi::Digest { hash: hash.clone(), size_bytes: -1 },
        weir_proto::reapi::Digest { hash: format!("{}\u{e9}", &hash[..62]), size_bytes: 1 },
        weir_proto::reapi::Digest { hash: String::new(), size_bytes: 0 },
    ];
    for bad in &bad_digests {
        let request = FindMissingBlobsRequest { instance_name: String::new(), blob_digests: vec![bad.clone()], digest_function: 0 };
        assert_eq!(cas(&ch).find_missing_blobs(request).await.unwrap_err().code(), Code::InvalidArgument, "{bad:?}");
        let request = GetActionResultRequest { action_digest: Some(bad.clone()), ..Default::default() };
        let err = ActionCacheClient::new(ch.clone()).get_action_result(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        let request = BatchReadBlobsRequest { digests: vec![bad.clone()], ..Default::default() };
        assert_eq!(cas(&ch).batch_read_blobs(request).await.unwrap_err().code(), Code::InvalidArgument);
        let request = GetTreeRequest { root_digest: Some(bad.clone()), ..Default::default() };
        assert_eq!(cas(&ch).get_tree(request).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let request = GetActionResultRequest::default();
    assert_eq!(ActionCacheClient::new(ch.clone()).get_action_result(request).await.unwrap_err().code(), Code::InvalidArgument);

    let bad_names = [
        String::new(),
        "/".into(),
        "blobs".into(),
        "blobs/".into(),
        format!("blobs/{hash}"),
        format!("blobs/{hash}/"),
        format!("blobs/{hash}/-1"),
        format!("blobs/{hash}/1x"),
        format!("blobs/{}/1", &hash[..10]),
        format!("blobs/{hash}/99999999999999999999999"),
        format!("//blobs/{hash}/1"),
        format!("uploads/blobs/{hash}/1"),
        format!("uploads//blobs/{hash}/1"),
        format!("compressed-blobs/lzma/{hash}/1"),
        format!("compressed-blobs/{hash}/1"),
        format!("unknown-instance/blobs/{hash}/1"),
        format!("blobs/../{hash}/1"),
        "\u{0}\u{ffff}".into(),
        "x".repeat(100_000),
    ];
    for name in &bad_names {
        let request = ReadRequest { resource_name: name.clone(), read_offset: 0, read_limit: 0 };
        let code = match bytestream(&ch).read(request).await {
            Ok(mut stream) => stream.get_mut().message().await.unwrap_err().code(),
            Err(status) => status.code(),
        };
        assert_eq!(code, Code::InvalidArgument, "read {:.80}", name);
        let write = WriteRequest { resource_name: name.clone(), write_offset: 0, finish_write: true, data: b"x".to_vec() };
        let err = bytestream(&ch).write(futures::stream::iter([write])).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "write {:.80}", name);
        let err = bytestream(&ch).query_write_status(QueryWriteStatusRequest { resource_name: name.clone() }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "query {:.80}", name);
    }
    // A download name is not an upload name, and the reverse.
    let write = WriteRequest { resource_name: format!("blobs/{hash}/1"), write_offset: 0, finish_write: true, data: b"x".to_vec() };
    assert_eq!(bytestream(&ch).write(futures::stream::iter([write])).await.unwrap_err().code(), Code::InvalidArgument);
    // Negative offsets and limits.
    let request = ReadRequest { resource_name: format!("blobs/{hash}/1"), read_offset: -1, read_limit: 0 };
    let code = match bytestream(&ch).read(request).await {
        Ok(mut stream) => stream.get_mut().message().await.unwrap_err().code(),
        Err(status) => status.code(),
    };
    assert_eq!(code, Code::OutOfRange);

    // The server is still up and answers well-formed requests.
    let data = b"still alive".to_vec();
    write_blob(&ch, &data, None).await.unwrap();
    assert_eq!(read_blob(&ch, &Digest::of(&data)).await.unwrap(), data);
}

#[tokio::test]
async fn batches_above_the_grpc_default_limit_and_capabilities_agree() {
    let dir = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--role", "cache"]);
    let ch = channel(&worker).await;
    let caps = CapabilitiesClient::new(ch.clone()).get_capabilities(GetCapabilitiesRequest::default()).await.unwrap().into_inner();
    let cache = caps.cache_capabilities.unwrap();
    let max = cache.max_batch_total_size_bytes as usize;
    assert!(max > 4 << 20, "max batch {max} is not above tonic's default");
    assert_eq!(cache.digest_functions, vec![weir_proto::reapi::digest_function::Value::Sha256 as i32]);
    assert!(cache.supported_compressors.contains(&(weir_proto::reapi::compressor::Value::Zstd as i32)));
    assert!(!caps.execution_capabilities.unwrap().exec_enabled, "a cache-only worker must not advertise execution");

    // Blobs totalling just under the advertised limit go through in one batch.
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| blob(100 + i, max / 4 - 4096)).collect();
    let entries: Vec<(Digest, &[u8])> = blobs.iter().map(|b| (Digest::of(b), b.as_slice())).collect();
    let response = cas(&ch).batch_update_blobs(update_request(&entries)).await.unwrap().into_inner();
    assert!(response.responses.iter().all(|r| r.status.as_ref().unwrap().code == 0));
    let reads = cas(&ch)
        .batch_read_blobs(BatchReadBlobsRequest { digests: entries.iter().map(|(d, _)| d.to_proto()).collect(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reads.responses.iter().map(|r| r.data.len()).sum::<usize>(), blobs.iter().map(Vec::len).sum::<usize>());
    // Over the limit: refused as a whole.
    let over: Vec<u8> = blob(5, max + 1);
    let err = cas(&ch).batch_update_blobs(update_request(&[(Digest::of(&over), &over)])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn get_tree_pages_and_zstd_bytestream() {
    let dir = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--role", "cache"]);
    let ch = channel(&worker).await;
    // A root with 25 distinct empty-ish children (each holds one named file).
    let mut children = Vec::new();
    let mut uploads: Vec<Vec<u8>> = Vec::new();
    for i in 0..25 {
        let file = format!("content {i}").into_bytes();
        let child = Directory {
            files: vec![FileNode { name: format!("f{i}"), digest: Some(Digest::of(&file).to_proto()), ..Default::default() }],
            ..Default::default()
        };
        let bytes = child.encode_to_vec();
        children.push(DirectoryNode { name: format!("d{i:02}"), digest: Some(Digest::of(&bytes).to_proto()) });
        uploads.push(bytes);
        uploads.push(file);
    }
    let root = Directory { directories: children, ..Default::default() }.encode_to_vec();
    let root_digest = Digest::of(&root);
    uploads.push(root);
    let entries: Vec<(Digest, &[u8])> = uploads.iter().map(|b| (Digest::of(b), b.as_slice())).collect();
    cas(&ch).batch_update_blobs(update_request(&entries)).await.unwrap();

    let mut token = String::new();
    let mut seen = 0;
    let mut calls = 0;
    loop {
        let request = GetTreeRequest { root_digest: Some(root_digest.to_proto()), page_size: 10, page_token: token.clone(), ..Default::default() };
        let mut stream = cas(&ch).get_tree(request).await.unwrap().into_inner();
        let first = stream.message().await.unwrap().unwrap();
        assert!(first.directories.len() <= 10);
        seen += first.directories.len();
        calls += 1;
        token = first.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!((seen, calls), (26, 3));

    // zstd: upload compressed, read back both ways.
    let data = b"compressible ".repeat(10_000);
    let digest = Digest::of(&data);
    let compressed = zstd_compress(&data);
    let name = format!("uploads/{}/compressed-blobs/zstd/{}/{}", uuid::Uuid::new_v4(), digest.hash_hex(), digest.size());
    let write = WriteRequest { resource_name: name, write_offset: 0, finish_write: true, data: compressed };
    bytestream(&ch).write(futures::stream::iter([write])).await.unwrap();
    assert_eq!(read_blob(&ch, &digest).await.unwrap(), data);
    let request = ReadRequest { resource_name: format!("compressed-blobs/zstd/{}/{}", digest.hash_hex(), digest.size()), ..Default::default() };
    let mut stream = bytestream(&ch).read(request).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        out.extend_from_slice(&chunk.data);
    }
    assert!(out.len() < data.len() / 10, "not compressed");
    assert_eq!(zstd_decompress(&out, data.len()), data);
}

fn zstd_compress(data: &[u8]) -> Vec<u8> {
    // The tests crate has no zstd dependency: a frame of raw blocks is valid zstd.
    let mut out = vec![0x28, 0xb5, 0x2f, 0xfd];
    // Frame header: single segment, 8-byte content size.
    out.push(0b1110_0000);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let chunks: Vec<&[u8]> = data.chunks(100_000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = (i + 1 == chunks.len()) as u32;
        let header = last | (chunk.len() as u32) << 3; // block type 0 = raw
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(chunk);
    }
    out
}

fn zstd_decompress(data: &[u8], _size: usize) -> Vec<u8> {
    let mut child = std::process::Command::new("zstd")
        .args(["-d", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the zstd command is installed");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    assert!(child.wait().unwrap().success());
    out
}

#[tokio::test]
async fn remote_asset_push_then_fetch_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--role", "cache", "--metrics-listen", "127.0.0.1:0"]);
    let ch = channel(&worker).await;
    let data = b"a source tarball".to_vec();
    let digest = Digest::of(&data);
    let qualifiers = vec![Qualifier { name: "vcs.commit".into(), value: "abc".into() }];
    let uri = "https://example.invalid/src.tar.gz".to_string();
    let push = PushBlobRequest { uris: vec![uri.clone()], qualifiers: qualifiers.clone(), blob_digest: Some(digest.to_proto()), ..Default::default() };
    // Not in the CAS yet: refused.
    assert_eq!(PushClient::new(ch.clone()).push_blob(push.clone()).await.unwrap_err().code(), Code::FailedPrecondition);
    cas(&ch).batch_update_blobs(update_request(&[(digest, &data)])).await.unwrap();
    PushClient::new(ch.clone()).push_blob(push).await.unwrap();
    let fetch = FetchBlobRequest { uris: vec!["https://other.invalid/x".into(), uri.clone()], qualifiers, ..Default::default() };
    let found = FetchClient::new(ch.clone()).fetch_blob(fetch).await.unwrap().into_inner();
    assert_eq!((found.uri, found.blob_digest), (uri.clone(), Some(digest.to_proto())));
    let fetch = FetchBlobRequest { uris: vec![uri.clone()], ..Default::default() };
    assert_eq!(FetchClient::new(ch.clone()).fetch_blob(fetch).await.unwrap_err().code(), Code::NotFound);

    // A directory whose file is missing cannot be pushed.
    let file = b"inside".to_vec();
    let root = Directory {
        files: vec![FileNode { name: "f".into(), digest: Some(Digest::of(&file).to_proto()), ..Default::default() }],
        ..Default::default()
    }
    .encode_to_vec();
    cas(&ch).batch_update_blobs(update_request(&[(Digest::of(&root), &root)])).await.unwrap();
    let push = PushDirectoryRequest { uris: vec![uri.clone()], root_directory_digest: Some(Digest::of(&root).to_proto()), ..Default::default() };
    assert_eq!(PushClient::new(ch.clone()).push_directory(push.clone()).await.unwrap_err().code(), Code::FailedPrecondition);
    cas(&ch).batch_update_blobs(update_request(&[(Digest::of(&file), &file)])).await.unwrap();
    PushClient::new(ch.clone()).push_directory(push).await.unwrap();
    let fetch = FetchDirectoryRequest { uris: vec![uri], ..Default::default() };
    let found = FetchClient::new(ch.clone()).fetch_directory(fetch).await.unwrap().into_inner();
    assert_eq!(found.root_directory_digest, Some(Digest::of(&root).to_proto()));

    let metrics = http_get(worker.metrics.expect("metrics address printed"), "/metrics");
    assert!(metrics.contains("weir_cas_hit_ratio"), "{metrics}");
    assert!(metrics.contains("weir_execution_queue_depth 0"));
    let stored: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("weir_cas_stored_bytes "))
        .expect("a CAS bytes gauge")
        .parse()
        .unwrap();
    assert!(stored >= (data.len() + file.len() + root.len()) as u64, "{stored}");
    assert!(metrics.contains("weir_store_write_bytes_total{layer=\"filesystem\"}"));
    assert!(http_get(worker.metrics.unwrap(), "/").contains("weir-worker"));
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_with_a_client_connected() {
    let dir = tempfile::tempdir().unwrap();
    let mut worker = WorkerProcess::start(dir.path(), &["--role", "cache"]);
    let ch = channel(&worker).await;
    assert!(missing(&ch, &[Digest::of(b"q")]).await.len() == 1);
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || worker.terminate()).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(ch);

    // A signal right after the address is printed is handled too.
    let again = tempfile::tempdir().unwrap();
    let mut worker = WorkerProcess::start(again.path(), &["--role", "cache"]);
    assert!(worker.terminate().success());
}

#[tokio::test]
async fn an_executor_store_reads_and_writes_through_to_a_cache_node() {
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_config = cache_dir.path().join("cache.yaml");
    std::fs::write(
        &cache_config,
        "role: cache\nauth: { tokens: [ { token: edge-secret, access: read_write } ], anonymous: read_only }\n",
    )
    .unwrap();
    let cache_node = WorkerProcess::start(cache_dir.path(), &["--config", cache_config.to_str().unwrap()]);
    let edge_dir = tempfile::tempdir().unwrap();
    std::fs::write(edge_dir.path().join("cache.token"), "edge-secret\n").unwrap();
    let config = edge_dir.path().join("edge.yaml");
    std::fs::write(
        &config,
        format!(
            "role: cache\nstorage:\n  fast_slow:\n    fast: {{ size_limited: {{ max_size: 1MiB, inner: {{ filesystem: {{ path: local }} }} }} }}\n    \
             slow: {{ upstream: {{ endpoint: \"grpc://{}\", batch_limit: 64KiB, token_file: cache.token }} }}\n",
            cache_node.addr
        ),
    )
    .unwrap();
    let edge = WorkerProcess::start(edge_dir.path(), &["--config", config.to_str().unwrap()]);
    let cache_ch = channel(&cache_node).await;
    let edge_ch = channel(&edge).await;

    // Written at the edge: lands on the cache node (small via batch, large via ByteStream).
    let small = blob(1, 1000);
    let large = blob(2, 300_000);
    cas(&edge_ch).batch_update_blobs(update_request(&[(Digest::of(&small), &small)])).await.unwrap();
    write_blob(&edge_ch, &large, None).await.unwrap();
    assert!(missing(&cache_ch, &[Digest::of(&small), Digest::of(&large)]).await.is_empty());

    // Written at the cache node: read through the edge, then held locally.
    let remote_only = blob(3, 200_000);
    write_blob(&cache_ch, &remote_only, Some("edge-secret")).await.unwrap();
    assert!(missing(&edge_ch, &[Digest::of(&remote_only)]).await.is_empty());
    assert_eq!(read_blob(&edge_ch, &Digest::of(&remote_only)).await.unwrap(), remote_only);
    let local = edge_dir.path().join("local/objects");
    let hash = Digest::of(&remote_only).hash_hex();
    assert!(local.join(&hash[..2]).join(format!("{hash}_{}", remote_only.len())).exists(), "read did not fill the fast tier");
    assert_eq!(read_blob(&edge_ch, &Digest::of(&blob(4, 10))).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn tls_listener_serves_tls_clients_only() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE", "-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(dir.path().join("server.key"))
        .arg("-out")
        .arg(dir.path().join("server.crt"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("the openssl command is installed");
    assert!(status.success());
    let config = dir.path().join("worker.yaml");
    std::fs::write(&config, "role: cache\ntls: { cert: server.crt, key: server.key }\n").unwrap();
    let worker = WorkerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);

    let ca = tonic::transport::Certificate::from_pem(std::fs::read(dir.path().join("server.crt")).unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost");
    let ch = Channel::from_shared(format!("https://{}", worker.addr)).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    let data = b"over tls".to_vec();
    write_blob(&ch, &data, None).await.unwrap();
    assert_eq!(read_blob(&ch, &Digest::of(&data)).await.unwrap(), data);

    // A plaintext client gets nowhere.
    let plain = Channel::from_shared(worker.endpoint()).unwrap().connect().await;
    if let Ok(plain) = plain {
        let request = FindMissingBlobsRequest { instance_name: String::new(), blob_digests: vec![], digest_function: 0 };
        assert!(cas(&plain).find_missing_blobs(request).await.is_err());
    }
}
