//! The Execute measurement: N distinct trivial actions (`CMD reapi-load-RUN-I`
//! with an empty input root, `skip_cache_lookup`), run by C concurrent
//! callers, each timing its Execute call until the final `done` Operation.
//!
//! Key decision: the actions are the ones `reapi_bench.py` sends, uploaded
//! before the clock starts, plus one untimed warm-up action, so the figures
//! compare directly; callers take the next action from a shared counter, so
//! exactly N actions run whatever the concurrency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use prost::Message;
use tonic::transport::Channel;
use weir_proto::longrunning::operation;
use weir_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use weir_proto::reapi::execution_client::ExecutionClient;
use weir_proto::reapi::{
    batch_update_blobs_request, command, platform, Action, BatchUpdateBlobsRequest, Command, Directory, ExecuteRequest,
    ExecuteResponse, Platform,
};
use weir_proto::Digest;

use crate::latency::Latencies;

/// Upload batches stay well under every server's 4 MiB message limit.
const BATCH_BYTES: usize = 1 << 20;

/// Options of the `exec` test.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Number of distinct actions to run (timed).
    #[arg(long, default_value_t = 200)]
    actions: usize,
    /// Concurrent Execute callers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The command each action runs.
    #[arg(long, default_value = "/bin/true")]
    cmd: String,
    /// Platform property KEY=VALUE for the actions (repeatable).
    #[arg(long = "platform", value_name = "KEY=VALUE")]
    platform: Vec<String>,
    /// Seconds one Execute may take.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
}

/// What one action's Execute call ended with.
enum Outcome {
    Ok,
    Failed(String),
}

/// Runs the test and returns its JSON fields.
pub async fn run(channel: Channel, instance: &str, args: &ExecArgs) -> anyhow::Result<serde_json::Value> {
    if args.actions == 0 || args.concurrency == 0 {
        bail!("--actions and --concurrency must be positive");
    }
    let platform = parse_platform(&args.platform)?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let empty_root = Directory::default().encode_to_vec();
    let mut blobs = vec![empty_root.clone()];
    let mut actions = Vec::with_capacity(args.actions + 1);
    for i in 0..=args.actions {
        let tag = if i == 0 { format!("reapi-load-warmup-{run_id}") } else { format!("reapi-load-{run_id}-{i}") };
        // Command.platform is deprecated in v2.2 but still set, as
        // reapi_bench.py does, for servers that read it from there.
        #[allow(deprecated)]
        let command = Command {
            arguments: vec![args.cmd.clone(), tag],
            environment_variables: vec![command::EnvironmentVariable {
                name: "PATH".into(),
                value: "/usr/bin:/bin".into(),
            }],
            platform: Some(platform.clone()),
            ..Command::default()
        }
        .encode_to_vec();
        let action = Action {
            command_digest: Some(Digest::of(&command).to_proto()),
            input_root_digest: Some(Digest::of(&empty_root).to_proto()),
            platform: Some(platform.clone()),
            ..Action::default()
        }
        .encode_to_vec();
        actions.push(Digest::of(&action));
        blobs.push(command);
        blobs.push(action);
    }
    upload(ContentAddressableStorageClient::new(channel.clone()), instance, blobs).await?;

    let exec = ExecutionClient::new(channel);
    let timeout = Duration::from_secs(args.timeout_s);
    let (warmup, outcome) = execute_one(exec.clone(), instance, actions[0], timeout).await;
    if let Outcome::Failed(why) = outcome {
        bail!("warm-up action failed: {why}");
    }
    println!("  Execute warm-up action: {:.1} ms", warmup.as_secs_f64() * 1000.0);

    let timed = Arc::new(actions[1..].to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut callers = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let (exec, timed, next, instance) = (exec.clone(), timed.clone(), next.clone(), instance.to_string());
        callers.push(tokio::spawn(async move {
            let mut latencies = Latencies::default();
            let mut errors = Vec::new();
            while let Some(action) = timed.get(next.fetch_add(1, Ordering::Relaxed)).copied() {
                let (took, outcome) = execute_one(exec.clone(), &instance, action, timeout).await;
                latencies.push(took);
                if let Outcome::Failed(why) = outcome {
                    errors.push(why);
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Latencies::default();
    let mut errors = Vec::new();
    for caller in callers {
        let (l, e) = caller.await.context("an Execute caller panicked")?;
        for sample in l.into_samples() {
            latencies.push(sample);
        }
        errors.extend(e);
    }
    let wall = started.elapsed().as_secs_f64();
    if latencies.len() != args.actions {
        bail!("{} of {} actions were timed", latencies.len(), args.actions);
    }
    let per_s = args.actions as f64 / wall;
    let p50 = latencies.percentile_ms(50.0).unwrap_or(f64::NAN);
    let p99 = latencies.percentile_ms(99.0).unwrap_or(f64::NAN);
    println!(
        "  Execute {} x {} (c={}): {per_s:.1} actions/s, p50 {p50:.2} ms, p99 {p99:.2} ms, errors {}",
        args.actions,
        args.cmd,
        args.concurrency,
        errors.len()
    );
    if let Some(first) = errors.first() {
        println!("  first error: {first}");
    }
    Ok(serde_json::json!({
        "exec": {
            "actions": args.actions,
            "concurrency": args.concurrency,
            "wall_s": (wall * 1000.0).round() / 1000.0,
            "actions_per_s": (per_s * 100.0).round() / 100.0,
            "p50_ms": (p50 * 100.0).round() / 100.0,
            "p99_ms": (p99 * 100.0).round() / 100.0,
            "errors": errors.len(),
            "first_error": errors.first(),
        }
    }))
}

/// One Execute call, timed until the `done` Operation (or the failure).
async fn execute_one(
    mut exec: ExecutionClient<Channel>,
    instance: &str,
    action: Digest,
    timeout: Duration,
) -> (Duration, Outcome) {
    let started = Instant::now();
    let request = ExecuteRequest {
        instance_name: instance.to_string(),
        action_digest: Some(action.to_proto()),
        skip_cache_lookup: true,
        ..ExecuteRequest::default()
    };
    let outcome = match tokio::time::timeout(timeout, finish(&mut exec, request)).await {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(why)) => Outcome::Failed(why),
        Err(_) => Outcome::Failed(format!("no result within {timeout:?}")),
    };
    (started.elapsed(), outcome)
}

async fn finish(exec: &mut ExecutionClient<Channel>, request: ExecuteRequest) -> Result<(), String> {
    let mut stream = exec.execute(request).await.map_err(|s| format!("Execute: {s}"))?.into_inner();
    while let Some(op) = stream.message().await.map_err(|s| format!("Execute stream: {s}"))? {
        if !op.done {
            continue;
        }
        return match op.result {
            Some(operation::Result::Response(any)) => {
                let response =
                    ExecuteResponse::decode(any.value.as_slice()).map_err(|e| format!("bad response: {e}"))?;
                match (response.status, response.result) {
                    (Some(status), _) if status.code != 0 => Err(format!("status {}: {}", status.code, status.message)),
                    (_, Some(result)) if result.exit_code != 0 => Err(format!("exit code {}", result.exit_code)),
                    (_, Some(_)) => Ok(()),
                    (_, None) => Err("ExecuteResponse without a result".into()),
                }
            }
            Some(operation::Result::Error(status)) => {
                Err(format!("operation error {}: {}", status.code, status.message))
            }
            None => Err("done Operation without a result".into()),
        };
    }
    Err("stream ended before the Operation was done".into())
}

/// Uploads blobs with BatchUpdateBlobs in batches under [`BATCH_BYTES`].
async fn upload(
    mut cas: ContentAddressableStorageClient<Channel>,
    instance: &str,
    blobs: Vec<Vec<u8>>,
) -> anyhow::Result<()> {
    let mut batch: Vec<batch_update_blobs_request::Request> = Vec::new();
    let mut bytes = 0;
    let mut pending = blobs.into_iter().peekable();
    while let Some(data) = pending.next() {
        bytes += data.len() + 100;
        batch.push(batch_update_blobs_request::Request {
            digest: Some(Digest::of(&data).to_proto()),
            data,
            compressor: 0,
        });
        if bytes >= BATCH_BYTES || pending.peek().is_none() {
            let request = BatchUpdateBlobsRequest {
                instance_name: instance.to_string(),
                requests: std::mem::take(&mut batch),
                ..BatchUpdateBlobsRequest::default()
            };
            bytes = 0;
            let response = cas.batch_update_blobs(request).await.context("BatchUpdateBlobs")?.into_inner();
            if let Some(bad) = response.responses.iter().find(|r| r.status.as_ref().is_some_and(|s| s.code != 0)) {
                bail!("BatchUpdateBlobs refused a blob: {:?}", bad.status);
            }
        }
    }
    Ok(())
}

/// `KEY=VALUE` strings as a Platform with properties sorted by name.
fn parse_platform(pairs: &[String]) -> anyhow::Result<Platform> {
    let mut properties = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else { bail!("--platform {pair:?} is not KEY=VALUE") };
        properties.push(platform::Property { name: name.to_string(), value: value.to_string() });
    }
    properties.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value)));
    Ok(Platform { properties })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_properties_are_parsed_and_sorted() {
        let p = parse_platform(&["OSFamily=linux".into(), "ISA=x86-64".into()]).expect("valid pairs");
        let names: Vec<&str> = p.properties.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["ISA", "OSFamily"]);
        assert_eq!(p.properties[0].value, "x86-64");
    }

    #[test]
    fn a_pair_without_equals_is_refused() {
        assert!(parse_platform(&["OSFamily".into()]).is_err());
    }
}
