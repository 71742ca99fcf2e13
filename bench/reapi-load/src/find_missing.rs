//! The FindMissingBlobs measurement: R calls, each with N fresh digests that
//! no server can hold, timed one by one (p50/p99).
//!
//! Key decision: the same request `reapi_bench.py`'s `fmb` test sends (the
//! SHA-256 of a fresh UUID, a size of 1 byte to 1 MiB), built before the
//! clock starts, and every answer must list every digest as missing.

use std::time::Instant;

use anyhow::{bail, Context};
use tonic::transport::Channel;
use weir_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use weir_proto::reapi::FindMissingBlobsRequest;
use weir_proto::Digest;

use crate::latency::Latencies;
use crate::xorshift::XorShift;

/// Options of the `fmb` test.
#[derive(Debug, clap::Args)]
pub struct FindMissingArgs {
    /// Digests per call.
    #[arg(long, default_value_t = 1000)]
    digests: usize,
    /// Number of calls (each timed).
    #[arg(long, default_value_t = 20)]
    repeats: usize,
}

/// Runs the test and returns its JSON fields.
pub async fn run(channel: Channel, instance: &str, args: &FindMissingArgs) -> anyhow::Result<serde_json::Value> {
    if args.digests == 0 || args.repeats == 0 {
        bail!("--digests and --repeats must be positive");
    }
    let mut client = ContentAddressableStorageClient::new(channel).max_decoding_message_size(64 << 20);
    let mut sizes = XorShift::fresh();
    let mut latencies = Latencies::default();
    for _ in 0..args.repeats {
        let blob_digests = (0..args.digests)
            .map(|_| {
                let hash = Digest::of(uuid::Uuid::new_v4().as_bytes()).hash_hex();
                Digest::from_parts(&hash, sizes.in_range(1, 1 << 20) as i64).map(|d| d.to_proto())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let request = FindMissingBlobsRequest { instance_name: instance.to_string(), blob_digests, ..Default::default() };
        let started = Instant::now();
        let response = client.find_missing_blobs(request).await.context("FindMissingBlobs")?.into_inner();
        latencies.push(started.elapsed());
        if response.missing_blob_digests.len() != args.digests {
            bail!("FindMissingBlobs: {} of {} fresh digests reported missing", response.missing_blob_digests.len(), args.digests);
        }
    }
    let (p50, p99) = (latencies.percentile_ms(50.0), latencies.percentile_ms(99.0));
    println!(
        "  FindMissingBlobs {} missing x {}: p50 {:.2} ms, p99 {:.2} ms",
        args.digests,
        args.repeats,
        p50.unwrap_or(f64::NAN),
        p99.unwrap_or(f64::NAN)
    );
    Ok(serde_json::json!({
        "fmb": { "digests": args.digests, "repeats": args.repeats, "p50_ms": p50, "p99_ms": p99 }
    }))
}
