//! The batch measurement: `BatchUpdateBlobs` of N random blobs, a
//! `FindMissingBlobs` of (up to) 1000 of them, then `BatchReadBlobs` of all
//! of them in a shuffled order, with C calls in flight.
//!
//! Key decision: the same shapes as `reapi_bench.py`'s `batch` test, so the
//! two clients' rows mean the same thing: blob sizes uniform in
//! `--blob-min..=--blob-max` (1..64 KiB), batches packed up to the server's
//! `max_batch_total_size_bytes` (at most 4 MiB) less 128 KiB, counting 200
//! bytes of framing per blob, 4 calls in flight on one connection. Unlike
//! the Python client, the requests are built before the clock starts and
//! the blobs read back are hashed after it stops (a mismatch fails the
//! run), so the client spends as little of the shared CPU as it can inside
//! the timed part. The present-digest lookup is repeated and its p50
//! reported (the Python client times one call).

use std::time::Instant;

use anyhow::{bail, Context};
use futures::{StreamExt, TryStreamExt};
use tonic::transport::Channel;
use weir_proto::reapi::capabilities_client::CapabilitiesClient;
use weir_proto::reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use weir_proto::reapi::{
    batch_update_blobs_request, BatchReadBlobsRequest, BatchUpdateBlobsRequest, FindMissingBlobsRequest,
    GetCapabilitiesRequest,
};
use weir_proto::Digest;

use crate::latency::Latencies;
use crate::rate;
use crate::xorshift::XorShift;

const KIB: usize = 1024;
const MIB: usize = 1 << 20;
/// Bytes counted per blob for its digest and framing when packing a batch.
const PER_BLOB_OVERHEAD: usize = 200;

/// Options of the `batch` test.
#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// Number of blobs.
    #[arg(long, default_value_t = 10_000)]
    blobs: usize,
    /// Smallest blob in bytes.
    #[arg(long, default_value_t = KIB)]
    blob_min: usize,
    /// Largest blob in bytes.
    #[arg(long, default_value_t = 64 * KIB)]
    blob_max: usize,
    /// Batch calls in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How many times the 1000-present-digests lookup is timed (p50 reported).
    #[arg(long, default_value_t = 20)]
    fmb_repeats: usize,
}

/// Runs the test and returns its JSON fields.
pub async fn run(channel: Channel, instance: &str, args: &BatchArgs) -> anyhow::Result<serde_json::Value> {
    if args.blobs == 0 || args.blob_min == 0 || args.blob_max < args.blob_min || args.concurrency == 0 {
        bail!("--blobs, --blob-min and --concurrency must be positive and --blob-max >= --blob-min");
    }
    let limit = batch_limit(channel.clone(), instance).await?;
    let client =
        ContentAddressableStorageClient::new(channel).max_decoding_message_size(64 * MIB).max_encoding_message_size(64 * MIB);

    let mut random = XorShift::fresh();
    let sizes: Vec<usize> = (0..args.blobs).map(|_| random.in_range(args.blob_min, args.blob_max)).collect();
    let total: usize = sizes.iter().sum();
    let mut digests = Vec::with_capacity(args.blobs);
    let mut updates = Vec::new();
    for group in pack(&sizes, (0..args.blobs).collect(), limit) {
        let requests = group
            .iter()
            .map(|&i| {
                let data = random.bytes(sizes[i]);
                let digest = Digest::of(&data);
                digests.push(digest);
                batch_update_blobs_request::Request { digest: Some(digest.to_proto()), data, ..Default::default() }
            })
            .collect();
        updates.push(BatchUpdateBlobsRequest { instance_name: instance.to_string(), requests, ..Default::default() });
    }
    let batches_up = updates.len();

    let started = Instant::now();
    futures::stream::iter(updates)
        .map(|request| {
            let mut client = client.clone();
            async move {
                let response = client.batch_update_blobs(request).await.context("BatchUpdateBlobs")?.into_inner();
                match response.responses.iter().find(|r| r.status.as_ref().is_some_and(|s| s.code != 0)) {
                    Some(bad) => bail!("BatchUpdateBlobs refused a blob: {:?}", bad.status),
                    None => Ok(()),
                }
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let update_s = started.elapsed().as_secs_f64();

    let present = find_present(client.clone(), instance, &digests[..digests.len().min(1000)], args.fmb_repeats).await?;

    let mut order: Vec<usize> = (0..args.blobs).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, random.in_range(0, i));
    }
    let reads: Vec<BatchReadBlobsRequest> = pack(&sizes, order, limit)
        .into_iter()
        .map(|group| BatchReadBlobsRequest {
            instance_name: instance.to_string(),
            digests: group.iter().map(|&i| digests[i].to_proto()).collect(),
            ..Default::default()
        })
        .collect();
    let batches_read = reads.len();
    let started = Instant::now();
    let answers = futures::stream::iter(reads)
        .map(|request| {
            let mut client = client.clone();
            async move { Ok::<_, anyhow::Error>(client.batch_read_blobs(request).await.context("BatchReadBlobs")?.into_inner()) }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let read_s = started.elapsed().as_secs_f64();
    verify_reads(&digests, answers.into_iter().flat_map(|a| a.responses))?;

    let r = serde_json::json!({
        "blobs": args.blobs,
        "total_mb": rate::round1(total as f64 / 1e6),
        "batches_up": batches_up,
        "batches_read": batches_read,
        "concurrency": args.concurrency,
        "update_s": update_s,
        "update_mb_s": rate::mb_per_s(total, update_s),
        "update_blobs_s": rate::per_s(args.blobs, update_s),
        "read_s": read_s,
        "read_mb_s": rate::mb_per_s(total, read_s),
        "read_blobs_s": rate::per_s(args.blobs, read_s),
        "fmb_1000_present_ms": present.percentile_ms(50.0),
        "fmb_1000_present_repeats": present.len(),
    });
    println!(
        "  Batch {} blobs ({:.1} MB, c={}): update {} MB/s, read {} MB/s, FindMissingBlobs {} present p50 {:.2} ms",
        args.blobs,
        total as f64 / 1e6,
        args.concurrency,
        r["update_mb_s"],
        r["read_mb_s"],
        digests.len().min(1000),
        present.percentile_ms(50.0).unwrap_or(f64::NAN),
    );
    Ok(serde_json::json!({ "batch": r }))
}

/// The byte budget of one batch: the server's limit (at most 4 MiB, 4 MiB
/// when it states none) less 128 KiB, as `reapi_bench.py` packs.
async fn batch_limit(channel: Channel, instance: &str) -> anyhow::Result<usize> {
    let caps = CapabilitiesClient::new(channel)
        .get_capabilities(GetCapabilitiesRequest { instance_name: instance.to_string() })
        .await
        .context("GetCapabilities")?
        .into_inner();
    let stated = caps.cache_capabilities.map_or(0, |c| c.max_batch_total_size_bytes);
    let max = match usize::try_from(stated) {
        Ok(n) if n > 0 => n.min(4 * MIB),
        _ => 4 * MIB,
    };
    match max.checked_sub(128 * KIB) {
        Some(limit) if limit > 0 => Ok(limit),
        _ => bail!("server's max_batch_total_size_bytes {stated} leaves no room for a batch"),
    }
}

/// Groups `items` (indexes into `sizes`), in order, so that each group's
/// sizes plus [`PER_BLOB_OVERHEAD`] each stay within `limit` (a single item
/// over the limit gets a group of its own).
fn pack(sizes: &[usize], items: Vec<usize>, limit: usize) -> Vec<Vec<usize>> {
    let mut groups = Vec::new();
    let (mut group, mut total) = (Vec::new(), 0);
    for i in items {
        let cost = sizes[i] + PER_BLOB_OVERHEAD;
        if !group.is_empty() && total + cost > limit {
            groups.push(std::mem::take(&mut group));
            total = 0;
        }
        group.push(i);
        total += cost;
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// Times `repeats` FindMissingBlobs calls for `present`; every one must
/// report nothing missing.
async fn find_present(
    mut client: ContentAddressableStorageClient<Channel>,
    instance: &str,
    present: &[Digest],
    repeats: usize,
) -> anyhow::Result<Latencies> {
    let mut latencies = Latencies::default();
    for _ in 0..repeats {
        let request = FindMissingBlobsRequest {
            instance_name: instance.to_string(),
            blob_digests: present.iter().map(Digest::to_proto).collect(),
            ..Default::default()
        };
        let started = Instant::now();
        let response = client.find_missing_blobs(request).await.context("FindMissingBlobs (present)")?.into_inner();
        latencies.push(started.elapsed());
        if !response.missing_blob_digests.is_empty() {
            bail!("{} uploaded blobs reported missing", response.missing_blob_digests.len());
        }
    }
    Ok(latencies)
}

/// Checks that every blob came back once, with status OK and its content.
fn verify_reads(
    digests: &[Digest],
    responses: impl Iterator<Item = weir_proto::reapi::batch_read_blobs_response::Response>,
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for response in responses {
        if response.status.as_ref().is_some_and(|s| s.code != 0) {
            bail!("BatchReadBlobs: status {:?}", response.status);
        }
        let Some(asked) = response.digest else { bail!("BatchReadBlobs: a response without a digest") };
        let got = Digest::of(&response.data);
        if got.to_proto() != asked {
            bail!("BatchReadBlobs: content for {}/{} does not match", asked.hash, asked.size_bytes);
        }
        seen.insert(got);
    }
    if seen.len() != digests.len() || digests.iter().any(|d| !seen.contains(d)) {
        bail!("BatchReadBlobs: {} of {} blobs came back", seen.len(), digests.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_within_the_limit_and_keep_order() {
        let sizes = vec![100, 300, 50, 500, 10];
        let groups = pack(&sizes, vec![0, 1, 2, 3, 4], 800);
        // Costs 300, 500, 250, 700, 210: [0, 1] fills 800 exactly, each later pair overflows.
        assert_eq!(groups, vec![vec![0, 1], vec![2], vec![3], vec![4]]);
        for g in &groups {
            let cost: usize = g.iter().map(|&i| sizes[i] + PER_BLOB_OVERHEAD).sum();
            assert!(cost <= 800 || g.len() == 1);
        }
    }

    #[test]
    fn an_oversized_blob_gets_its_own_batch() {
        assert_eq!(pack(&[10, 5000, 10], vec![0, 1, 2], 1000), vec![vec![0], vec![1], vec![2]]);
        assert!(pack(&[], Vec::new(), 1000).is_empty());
    }
}
