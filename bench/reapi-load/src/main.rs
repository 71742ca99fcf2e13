//! `reapi-load`: a Rust REAPI load generator beside the Python client
//! (`../shared/peers/reapi_bench.py`), which on a small machine competes
//! with the server for the CPU and can be the bottleneck. It has every
//! storage test of the Python client (FindMissingBlobs, batch update and
//! read, ByteStream Write + Read of one big blob, Action Cache updates and
//! reads, one at a time or C at once) and Execute of many trivial actions
//! at a fixed concurrency.
//!
//! Key decision: it measures what the Python client measures, the same way
//! (same resource names, same trivial `/bin/true` actions with an empty input
//! root and `skip_cache_lookup`), so that the two can be read side by side;
//! only the client is faster. It talks to loopback addresses only, and every
//! loop is bounded by the counts given on the command line.
//!
//! Output: one line per measurement, then `REAPI_LOAD_JSON {...}`.
//!
//! | module | owns |
//! |---|---|
//! | [`target`] | the validated loopback endpoint and its gRPC channel |
//! | [`find_missing`] | the FindMissingBlobs (all missing) measurement |
//! | [`batch`] | the BatchUpdateBlobs / BatchReadBlobs measurement |
//! | [`stream`] | the ByteStream Write/Read measurement |
//! | [`execute`] | the Execute measurement |
//! | [`action_cache`] | the concurrent Action Cache measurement |
//! | [`latency`] | percentiles of a set of durations |
//! | [`rate`] | MB/s and operations per second, rounded as the Python client |
//! | [`xorshift`] | random blob contents and sizes |
//! | [`write_chunk`] | a ByteStream Write of slices of a blob held in memory |

mod action_cache;
mod batch;
mod execute;
mod find_missing;
mod latency;
mod rate;
mod stream;
mod target;
mod write_chunk;
mod xorshift;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A REAPI load generator (loopback only).
#[derive(Debug, Parser)]
#[command(name = "reapi-load", version)]
struct Args {
    /// host:port of the REAPI endpoint (127.0.0.0/8, localhost or ::1 only).
    #[arg(long, global = true, default_value = "127.0.0.1:8980")]
    target: String,

    /// REAPI instance name.
    #[arg(long, global = true, default_value = "")]
    instance: String,

    /// Free-form label for the JSON line (e.g. the server's name).
    #[arg(long, global = true, default_value = "")]
    label: String,

    #[command(subcommand)]
    test: Test,
}

#[derive(Debug, Subcommand)]
enum Test {
    /// FindMissingBlobs of N fresh (missing) digests, R times.
    Fmb(find_missing::FindMissingArgs),
    /// BatchUpdateBlobs then BatchReadBlobs of N random small blobs.
    Batch(batch::BatchArgs),
    /// ByteStream Write then Read of one random blob.
    Stream(stream::StreamArgs),
    /// Execute N distinct trivial actions with concurrency C.
    Exec(execute::ExecArgs),
    /// UpdateActionResult then GetActionResult of N actions with concurrency C.
    Ac(action_cache::AcArgs),
}

async fn run(args: Args) -> anyhow::Result<()> {
    let target = target::Target::parse(&args.target)?;
    let channel = target.connect().await?;
    let result = match &args.test {
        Test::Fmb(test) => find_missing::run(channel, &args.instance, test).await?,
        Test::Batch(test) => batch::run(channel, &args.instance, test).await?,
        Test::Stream(test) => stream::run(channel, &args.instance, test).await?,
        Test::Exec(test) => execute::run(channel, &args.instance, test).await?,
        Test::Ac(test) => action_cache::run(channel, &args.instance, test).await?,
    };
    let mut json = serde_json::json!({ "label": args.label, "target": args.target, "instance": args.instance });
    if let (Some(out), serde_json::Value::Object(fields)) = (json.as_object_mut(), result) {
        out.extend(fields);
    }
    println!("REAPI_LOAD_JSON {json}");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("reapi-load: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("reapi-load: {err:#}");
            ExitCode::FAILURE
        }
    }
}
