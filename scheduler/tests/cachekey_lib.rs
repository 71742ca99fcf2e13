//! Library-level cache key conformance: the project suites of
//! `../shared/conformance/cachekey-cases.yaml` loaded with `loader::load` and
//! keyed with `cachekey::GraphKeys`, without the `weir` binary (the end-to-end
//! version is `tests/tests/cachekey_conformance.rs` in weir-tests).
//!
//! Compares every case's strict key, weak key and source unique keys; prints
//! one line per mismatch and `N passed, N failed`; fails if any case fails.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use weir_scheduler::cachekey::GraphKeys;
use weir_scheduler::loader::{self, LoadOptions};

#[derive(Deserialize)]
struct Manifest {
    suites: Vec<Suite>,
}

#[derive(Deserialize)]
struct Suite {
    name: String,
    project: Option<String>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    element: Option<String>,
    strict_key: String,
    weak_key: String,
    #[serde(default)]
    sources: Vec<Source>,
}

#[derive(Deserialize)]
struct Source {
    unique_key: serde_json::Value,
}

/// `../shared/conformance` beside the clone (`WEIR_SHARED` overrides), found
/// from the test runner's `CARGO_MANIFEST_DIR` (see `weir_tests::repo_root`).
fn conformance_dir() -> PathBuf {
    if let Some(shared) = std::env::var_os("WEIR_SHARED") {
        return PathBuf::from(shared).join("conformance");
    }
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.join("../../shared/conformance")
}

/// Copies a tree (directories made writable so the copy can be changed).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The differences between a case and the computed keys, or why nothing was computed.
fn check(keys: &GraphKeys, graph: &weir_scheduler::graph::Graph, case: &Case, element: &str) -> Vec<String> {
    let Some(found) = graph.find(element) else { return vec!["element not loaded".to_owned()] };
    let Some(fields) = keys.fields(found.id) else { return vec!["no keys".to_owned()] };
    let mut differences = Vec::new();
    if fields.strict_key != case.strict_key {
        differences.push(format!("strict key: expected {}, got {}", case.strict_key, fields.strict_key));
    }
    if fields.weak_key != case.weak_key {
        differences.push(format!("weak key: expected {}, got {}", case.weak_key, fields.weak_key));
    }
    let expected = serde_json::Value::Array(case.sources.iter().map(|s| s.unique_key.clone()).collect());
    match serde_json::from_str::<serde_json::Value>(&fields.source_keys) {
        Ok(actual) if actual == expected => {}
        _ => differences.push(format!("source keys: expected {expected}, got {}", fields.source_keys)),
    }
    differences
}

#[test]
fn cachekey_cases_through_the_library() {
    let text = std::fs::read_to_string(conformance_dir().join("cachekey-cases.yaml")).expect("manifest readable");
    let manifest: Manifest = serde_yaml_ng::from_str(&text).expect("manifest parses");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let (mut passed, mut failed) = (0, 0);
    for suite in manifest.suites.iter() {
        let Some(project) = &suite.project else { continue };
        let copy = tmp.path().join(&suite.name);
        copy_tree(&conformance_dir().join(project), &copy).expect("project copied");
        let goodbye = copy.join("files/local/usr/bin/goodbye");
        std::fs::remove_file(&goodbye).expect("goodbye removed");
        std::os::unix::fs::symlink("hello", &goodbye).expect("goodbye symlinked");

        let targets: Vec<String> = suite.cases.iter().filter_map(|c| c.element.clone()).collect();
        let loaded = loader::load(&copy, &targets, &LoadOptions::default()).map_err(|f| f.message);
        let outcome = loaded.as_ref().map_err(Clone::clone).and_then(|loaded| {
            GraphKeys::compute(&loaded.graph).map(|keys| (&loaded.graph, keys)).map_err(|e| e.to_string())
        });
        for case in &suite.cases {
            let element = case.element.as_deref().unwrap_or("?");
            let differences = match &outcome {
                Ok((graph, keys)) => check(keys, graph, case, element),
                Err(error) => vec![error.clone()],
            };
            if differences.is_empty() {
                passed += 1;
            } else {
                failed += 1;
                for difference in differences {
                    println!("MISMATCH {} {element}: {difference}", suite.name);
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    assert_eq!(failed, 0);
}

/// CPU time of this process, all threads (wall time is unreliable on a shared machine).
fn cpu_time() -> std::time::Duration {
    let mut spec = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `spec` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut spec) };
    std::time::Duration::new(spec.tv_sec as u64, spec.tv_nsec as u32)
}

/// A measuring tool, not a check: prints `name full-key` for every element of
/// `WEIR_KEYS_PROJECT` (target `target.bst`) in `show` order, to compare with
/// `bst show --format '%{name} %{full-key}'`, and on stderr the graph's shape
/// and the CPU time of each key phase (three runs):
/// `WEIR_KEYS_PROJECT=DIR cargo test --release --test cachekey_lib -- --ignored --nocapture`.
#[test]
#[ignore = "a measuring tool for WEIR_KEYS_PROJECT, not a check"]
fn print_keys_of_project_in_env() {
    use weir_scheduler::cachekey::build_scope::BuildScopes;
    use weir_scheduler::cachekey::from_graph::element_inputs;
    use weir_scheduler::cachekey::{HostPlatform, KeyTable, MerkleDigester};

    let Some(project) = std::env::var_os("WEIR_KEYS_PROJECT") else { return };
    let loaded = loader::load(Path::new(&project), &["target.bst".to_owned()], &LoadOptions::default())
        .unwrap_or_else(|f| panic!("load failed: {}", f.message));
    let inputs = element_inputs(&loaded.graph).expect("inputs");
    let scopes = BuildScopes::compute(&inputs[..]).expect("scopes");
    let entries: usize = scopes.scopes.iter().map(Vec::len).sum();
    eprintln!("{} elements, {entries} build-scope entries", inputs.len());
    for _ in 0..3 {
        let start = cpu_time();
        let wall = std::time::Instant::now();
        let inputs = element_inputs(&loaded.graph).expect("inputs");
        let converted = cpu_time();
        let table = KeyTable::compute(&inputs, &HostPlatform::detect(), &MerkleDigester).expect("keys");
        let computed = cpu_time();
        let wall = wall.elapsed();
        drop((inputs, table));
        let dropped = cpu_time();
        eprintln!(
            "cpu: convert {:?}, table {:?}, drop {:?}; wall: convert + table {wall:?}",
            converted - start,
            computed - converted,
            dropped - computed
        );
    }
    let keys = GraphKeys::compute(&loaded.graph).unwrap_or_else(|e| panic!("keys failed: {e}"));
    let graph = &loaded.graph;
    for id in graph.select(&graph.targets, weir_scheduler::graph::Scope::All) {
        let fields = keys.fields(id).expect("keys of a loaded element");
        println!("{} {}", graph.element(id).full_name, fields.full_key);
    }
}
