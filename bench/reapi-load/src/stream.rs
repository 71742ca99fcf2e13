//! The ByteStream measurement: Write one fresh random blob in chunks, then
//! Read it back, each timed separately, repeated `--repeats` times.
//!
//! Key decision: the client does as little as possible inside the timed
//! part. The blob and its digest are made before the clock starts (a real
//! client knows the digest before it uploads); the read-back is hashed after
//! the clock stops, and a mismatch fails the run. Every repeat uses a new
//! blob, so the server cannot answer from an earlier upload.

use std::time::Instant;

use anyhow::{bail, Context};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tonic::transport::Channel;
use weir_proto::bytestream::byte_stream_client::ByteStreamClient;
use weir_proto::bytestream::ReadRequest;
use weir_proto::resource_name::ResourceName;
use weir_proto::Digest;

use crate::write_chunk::{self, WriteChunk};
use crate::rate::round1;
use crate::xorshift::XorShift;

const MIB: usize = 1 << 20;

/// Options of the `stream` test.
#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    /// Blob size in MiB.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Write chunk size in KiB.
    #[arg(long, default_value_t = 1024)]
    chunk_kib: usize,
    /// How many fresh blobs to write and read (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

/// One write+read round's throughput in MB/s (10^6 bytes).
struct Round {
    write_mb_s: f64,
    read_mb_s: f64,
}

/// Runs the test and returns its JSON fields.
pub async fn run(channel: Channel, instance: &str, args: &StreamArgs) -> anyhow::Result<serde_json::Value> {
    if args.mib == 0 || args.chunk_kib == 0 || args.repeats == 0 {
        bail!("--mib, --chunk-kib and --repeats must be positive");
    }
    let mut client =
        ByteStreamClient::new(channel.clone()).max_decoding_message_size(64 * MIB).max_encoding_message_size(64 * MIB);
    let mut rounds = Vec::with_capacity(args.repeats);
    for _ in 0..args.repeats {
        let round = one_round(&channel, &mut client, instance, args).await?;
        println!(
            "  ByteStream {} MiB (chunk {} KiB): write {:.1} MB/s, read {:.1} MB/s",
            args.mib, args.chunk_kib, round.write_mb_s, round.read_mb_s
        );
        rounds.push(round);
    }
    let write = median(rounds.iter().map(|r| r.write_mb_s).collect());
    let read = median(rounds.iter().map(|r| r.read_mb_s).collect());
    println!("  ByteStream {} MiB median of {}: write {write:.1} MB/s, read {read:.1} MB/s", args.mib, args.repeats);
    Ok(serde_json::json!({
        "stream": {
            "mib": args.mib,
            "chunk_kib": args.chunk_kib,
            "repeats": args.repeats,
            "write_mb_s": round1(write),
            "read_mb_s": round1(read),
            "write_mb_s_all": rounds.iter().map(|r| round1(r.write_mb_s)).collect::<Vec<_>>(),
            "read_mb_s_all": rounds.iter().map(|r| round1(r.read_mb_s)).collect::<Vec<_>>(),
        }
    }))
}

async fn one_round(
    channel: &Channel,
    client: &mut ByteStreamClient<Channel>,
    instance: &str,
    args: &StreamArgs,
) -> anyhow::Result<Round> {
    let size = args.mib * MIB;
    let data = bytes::Bytes::from(XorShift::fresh().bytes(size));
    let digest = Digest::of(&data);
    let upload = ResourceName::upload(instance, &uuid::Uuid::new_v4().to_string(), digest)?.to_string();
    let download = ResourceName::download(instance, digest)?.to_string();

    let chunk = args.chunk_kib * 1024;
    let offsets: Vec<usize> = (0..size).step_by(chunk).collect();
    let body = data.clone();
    // Each message carries a slice of the blob, not a copy (see write_chunk).
    let requests = futures::stream::iter(offsets).map(move |offset| {
        let end = (offset + chunk).min(size);
        WriteChunk {
            resource_name: if offset == 0 { upload.clone() } else { String::new() },
            write_offset: offset as i64,
            finish_write: end == size,
            data: body.slice(offset..end),
        }
    });
    let started = Instant::now();
    let response = write_chunk::write(channel.clone(), requests).await.context("ByteStream.Write")?;
    let write_s = started.elapsed().as_secs_f64();
    if response.committed_size != size as i64 && response.committed_size != -1 {
        bail!("ByteStream.Write committed_size {} for a {size}-byte blob", response.committed_size);
    }

    let started = Instant::now();
    let mut stream = client
        .read(ReadRequest { resource_name: download, read_offset: 0, read_limit: 0 })
        .await
        .context("ByteStream.Read")?
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(message) = stream.next().await {
        chunks.push(message.context("ByteStream.Read stream")?.data);
    }
    let read_s = started.elapsed().as_secs_f64();

    let mut hasher = Sha256::new();
    let mut got = 0usize;
    for c in &chunks {
        hasher.update(c);
        got += c.len();
    }
    if got != size || hex::encode(hasher.finalize()) != digest.hash_hex() {
        bail!("ByteStream.Read returned {got} bytes that do not match the blob written");
    }
    Ok(Round { write_mb_s: size as f64 / 1e6 / write_s, read_mb_s: size as f64 / 1e6 / read_s })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert!(median(Vec::new()).is_nan());
    }
}
