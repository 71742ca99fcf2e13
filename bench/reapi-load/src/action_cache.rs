//! The Action Cache measurement: N `UpdateActionResult` calls for distinct
//! actions by C concurrent callers, then a `GetActionResult` of each.
//!
//! Key decision: the result is the one `reapi_bench.py` stores (one output
//! file and stdout, both uploaded before the clock starts, since servers may
//! check that outputs exist), so that the sequential Python row and this
//! concurrent one can be read side by side: the Python client shows the
//! latency of one durable update, this one what a server does with many
//! clients at once (a server that commits each update with its own `fsync`
//! stays near the sequential rate; one that groups commits scales).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use tonic::transport::Channel;
use weir_proto::reapi::action_cache_client::ActionCacheClient;
use weir_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use weir_proto::reapi::{
    batch_update_blobs_request, ActionResult, BatchUpdateBlobsRequest, GetActionResultRequest, OutputFile,
    UpdateActionResultRequest,
};
use weir_proto::Digest;

use crate::latency::Latencies;
use crate::rate;

/// Options of the `ac` test.
#[derive(Debug, clap::Args)]
pub struct AcArgs {
    /// Number of distinct action results to store (timed).
    #[arg(long, default_value_t = 2000)]
    ops: usize,
    /// Concurrent callers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// Runs the test and returns its JSON fields.
pub async fn run(channel: Channel, instance: &str, args: &AcArgs) -> anyhow::Result<serde_json::Value> {
    if args.ops == 0 || args.concurrency == 0 {
        bail!("--ops and --concurrency must be positive");
    }
    let result = Arc::new(upload_outputs(channel.clone(), instance).await?);
    let run_id = uuid::Uuid::new_v4();
    let actions: Arc<Vec<Digest>> =
        Arc::new((0..args.ops).map(|i| Digest::of(format!("reapi-load-ac-{run_id}-{i}").as_bytes())).collect());

    let update = |i: usize, mut client: ActionCacheClient<Channel>, result: Arc<ActionResult>| {
        let request = UpdateActionResultRequest {
            instance_name: instance.to_string(),
            action_digest: Some(actions[i].to_proto()),
            action_result: Some((*result).clone()),
            ..Default::default()
        };
        async move { client.update_action_result(request).await.map(|_| ()) }
    };
    let get = |i: usize, mut client: ActionCacheClient<Channel>, _: Arc<ActionResult>| {
        let request = GetActionResultRequest {
            instance_name: instance.to_string(),
            action_digest: Some(actions[i].to_proto()),
            ..Default::default()
        };
        async move { client.get_action_result(request).await.map(|_| ()) }
    };
    let (update_s, update_lat) = drive(&channel, args, result.clone(), update).await.context("UpdateActionResult")?;
    let (get_s, get_lat) = drive(&channel, args, result, get).await.context("GetActionResult")?;
    let per_s = |seconds: f64| rate::per_s(args.ops, seconds);
    println!(
        "  ActionCache {} ops (c={}): update {:.0}/s (p50 {:.2} ms), get {:.0}/s (p50 {:.2} ms)",
        args.ops,
        args.concurrency,
        per_s(update_s),
        update_lat.percentile_ms(50.0).unwrap_or(f64::NAN),
        per_s(get_s),
        get_lat.percentile_ms(50.0).unwrap_or(f64::NAN),
    );
    Ok(serde_json::json!({
        "ac": {
            "ops": args.ops,
            "concurrency": args.concurrency,
            "update_per_s": per_s(update_s),
            "update_p50_ms": update_lat.percentile_ms(50.0),
            "get_per_s": per_s(get_s),
            "get_p50_ms": get_lat.percentile_ms(50.0),
        }
    }))
}

/// Runs `call(i)` for every i in 0..ops with `concurrency` callers taking
/// the next index from a shared counter; returns the wall time and latencies.
async fn drive<F, Fut>(
    channel: &Channel,
    args: &AcArgs,
    result: Arc<ActionResult>,
    call: F,
) -> anyhow::Result<(f64, Latencies)>
where
    F: Fn(usize, ActionCacheClient<Channel>, Arc<ActionResult>) -> Fut + Clone,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let callers = (0..args.concurrency).map(|_| {
        let (next, client, call, result) =
            (next.clone(), ActionCacheClient::new(channel.clone()), call.clone(), result.clone());
        async move {
            let mut latencies = Latencies::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= args.ops {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let t = Instant::now();
                call(i, client.clone(), result.clone()).await.with_context(|| format!("call {i}"))?;
                latencies.push(t.elapsed());
            }
        }
    });
    let per_caller = futures::future::try_join_all(callers).await?;
    let wall = started.elapsed().as_secs_f64();
    let mut all = Latencies::default();
    for caller in per_caller {
        for sample in caller.into_samples() {
            all.push(sample);
        }
    }
    Ok((wall, all))
}

/// Uploads the result's output file and stdout and returns the result.
async fn upload_outputs(channel: Channel, instance: &str) -> anyhow::Result<ActionResult> {
    let out = uuid::Uuid::new_v4().as_bytes().repeat(7);
    let stdout = b"bench stdout\n".to_vec();
    let (out_d, stdout_d) = (Digest::of(&out), Digest::of(&stdout));
    let requests = [(out_d, out), (stdout_d, stdout)]
        .into_iter()
        .map(|(d, data)| batch_update_blobs_request::Request { digest: Some(d.to_proto()), data, ..Default::default() })
        .collect();
    let response = ContentAddressableStorageClient::new(channel)
        .batch_update_blobs(BatchUpdateBlobsRequest { instance_name: instance.to_string(), requests, ..Default::default() })
        .await
        .context("BatchUpdateBlobs of the outputs")?
        .into_inner();
    if let Some(bad) = response.responses.iter().find(|r| r.status.as_ref().is_some_and(|s| s.code != 0)) {
        bail!("BatchUpdateBlobs of the outputs failed: {:?}", bad.status);
    }
    Ok(ActionResult {
        output_files: vec![OutputFile { path: "out/file.o".into(), digest: Some(out_d.to_proto()), ..Default::default() }],
        stdout_digest: Some(stdout_d.to_proto()),
        ..Default::default()
    })
}
