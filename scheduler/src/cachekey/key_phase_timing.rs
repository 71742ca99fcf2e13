//! A measuring harness for the key phase of `weir show` (test-only, ignored).
//!
//! It owns one ignored test that loads the project named by
//! `WEIR_KEYS_BENCH_PROJECT` (target `target.bst`) once and then computes its
//! keys `WEIR_KEYS_BENCH_RUNS` times (default 5), printing the wall and
//! process CPU time of the input conversion, the build scopes and the whole
//! key phase, and the number of dependency entries hashed. Key decision: the
//! loader runs once, so repeated runs time the key phase alone and a profiler
//! attached to the test binary sees little else. Run it with
//! `cargo test --release -p weir-scheduler --lib key_phase_timing -- --ignored --nocapture`.

use std::time::{Duration, Instant};

use super::build_scope::BuildScopes;
use super::from_graph::{element_inputs, GraphKeys};
use super::prefix_states::entries_hashed;
use super::sandbox::HostPlatform;
use super::source_key::MerkleDigester;

/// The allocator the `weir` binary uses, so that the figures are comparable.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Process CPU time (user + system) and minor page faults so far.
fn process_usage() -> (Duration, i64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (Duration::ZERO, 0);
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (time(usage.ru_utime) + time(usage.ru_stime), usage.ru_minflt)
}

/// Runs `f`, printing its wall and CPU time and page faults under `label`.
fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let (wall, (cpu, faults)) = (Instant::now(), process_usage());
    let value = f();
    let (cpu_after, faults_after) = process_usage();
    println!(
        "{label:>14}: wall {:7.1} ms, cpu {:7.1} ms, {} page faults",
        ms(wall.elapsed()),
        ms(cpu_after - cpu),
        faults_after - faults
    );
    value
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[test]
#[ignore = "a benchmark: needs WEIR_KEYS_BENCH_PROJECT"]
fn key_phase_timing() {
    let Some(project) = std::env::var_os("WEIR_KEYS_BENCH_PROJECT") else {
        println!("WEIR_KEYS_BENCH_PROJECT is not set: nothing measured");
        return;
    };
    let runs: usize = std::env::var("WEIR_KEYS_BENCH_RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(5);
    let loaded = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            crate::loader::load(std::path::Path::new(&project), &["target.bst".to_owned()], &Default::default())
        })
        .expect("spawn the loader thread")
        .join()
        .expect("the loader thread")
        .expect("the project loads");
    let graph = &loaded.graph;
    let host = HostPlatform::detect();
    for run in 0..runs {
        println!("run {run}: {} elements", graph.elements.len());
        let inputs = timed("inputs", || element_inputs(graph).expect("inputs"));
        let scopes = timed("build scopes", || BuildScopes::compute(&inputs[..]).expect("scopes"));
        let total = |lists: &[Vec<u32>]| lists.iter().map(Vec::len).sum::<usize>();
        println!("{:>14}: {} in scopes, {} in closures", "entries", total(&scopes.scopes), total(&scopes.closures));
        let before = entries_hashed();
        let keys = timed("key phase", || GraphKeys::compute_with(graph, &host, &MerkleDigester).expect("keys"));
        println!("{:>14}: {}", "entries hashed", entries_hashed() - before);
        std::mem::forget(keys);
    }
}
