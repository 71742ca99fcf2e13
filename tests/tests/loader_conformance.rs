//! The loader conformance suite: every case of
//! `../shared/conformance/loader-cases.yaml` (BuildStream 2.8's answers) run
//! through the real `weir` binary.
//!
//! One `#[test]` runs every case (in parallel, each with a timeout), never
//! stopping at a failing one, prints each skip with its reason and each
//! failure with what differed and the tail of stderr, and ends with
//! `N passed, N failed, N skipped`. It fails only when a case listed in
//! `tests/conformance/loader-pass.txt` fails (a regression);
//! `WEIR_UPDATE_PASS_LIST=1` rewrites that list from the run.
//!
//! Environment: `WEIR_CONFORMANCE_FILTER=SUBSTR` runs only matching case ids
//! (the pass list is then neither rewritten nor fully enforced),
//! `WEIR_CONFORMANCE_JOBS=N` (default 3) and `WEIR_CONFORMANCE_TIMEOUT=SECS`
//! (default 30).
//!
//! `checkout_*` and `sources` expectations are printed as NOT EVALUATED
//! (see `expectation`): `weir show` prints no element sources. The runner's
//! own judgement was checked against BuildStream itself with
//! `WEIR_BIN=tests/conformance/bst-stand-in.sh`: every case bst can answer in
//! that form (no JSON error line, no host faking, no stub plugins) passes.

#[path = "loader_conformance/expectation.rs"]
mod expectation;
#[path = "loader_conformance/harness_error.rs"]
mod harness_error;
#[path = "loader_conformance/invocation.rs"]
mod invocation;
#[path = "loader_conformance/manifest.rs"]
mod manifest;
#[path = "loader_conformance/pass_list.rs"]
mod pass_list;
#[path = "loader_conformance/printed_yaml.rs"]
mod printed_yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use expectation::{evaluate, Outcome, Verdict};
use invocation::{run_case, RunEnv};
use manifest::{load_own_skips, Case, Manifest};

/// One case's result.
struct CaseResult {
    /// The judgement (a harness error becomes a difference).
    verdict: Verdict,
    /// What the process produced, when it ran.
    outcome: Option<Outcome>,
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// Runs `cases` on `jobs` threads; results are in the cases' order.
fn run_all(cases: &[&Case], env: &RunEnv, jobs: usize) -> Vec<CaseResult> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<CaseResult>>> = Mutex::new((0..cases.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(index) else { break };
                let result = match run_case(case, env) {
                    Ok(outcome) => CaseResult { verdict: evaluate(&case.expect, &outcome), outcome: Some(outcome) },
                    Err(e) => CaseResult {
                        verdict: Verdict { differences: vec![format!("harness: {e}")], unevaluated: Vec::new() },
                        outcome: None,
                    },
                };
                if let Ok(mut all) = results.lock() {
                    all[index] = Some(result);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    // A slot stays empty only if a worker thread panicked: keep it aligned as a failure.
    results
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| CaseResult {
                verdict: Verdict { differences: vec!["harness: the worker thread panicked".into()], unevaluated: Vec::new() },
                outcome: None,
            })
        })
        .collect()
}

/// `differs_from`: the case's output must differ from the named case's.
fn judge_differs_from(cases: &[&Case], results: &mut [CaseResult]) {
    let stdout_of: BTreeMap<&str, Option<String>> = cases
        .iter()
        .zip(results.iter())
        .map(|(case, r)| {
            let ok = r.outcome.as_ref().filter(|o| o.status == Some(0)).map(|o| o.stdout.clone());
            (case.id.as_str(), ok)
        })
        .collect();
    for (case, result) in cases.iter().zip(results.iter_mut()) {
        let Some(other) = &case.expect.differs_from else { continue };
        let Some(mine) = result.outcome.as_ref().filter(|o| o.status == Some(0)) else { continue };
        match stdout_of.get(other.as_str()) {
            Some(Some(theirs)) if *theirs == mine.stdout => {
                result.verdict.differences.push(format!("output {:?} equals that of {other}", mine.stdout));
            }
            Some(Some(_)) => {}
            Some(None) => result.verdict.differences.push(format!("cannot compare: {other} did not succeed")),
            None => result.verdict.differences.push(format!("cannot compare: {other} was not run")),
        }
    }
}

#[test]
fn loader_conformance() {
    let conformance = weir_tests::conformance_dir();
    let manifest = Manifest::load(&conformance.join("loader-cases.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let ours = weir_tests::repo_root().join("tests/conformance");
    let own_skips = load_own_skips(&ours.join("loader-skips.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let pass_path = ours.join("loader-pass.txt");
    let listed = pass_list::read(&pass_path).unwrap_or_else(|e| panic!("{e}"));
    let filter = std::env::var("WEIR_CONFORMANCE_FILTER").ok().filter(|f| !f.is_empty());

    let mut skipped = 0usize;
    for skip in &manifest.skipped {
        println!("SKIP {} (manifest): {}", skip.source, skip.reason);
        skipped += 1;
    }
    let skip_reason: BTreeMap<&str, &str> = own_skips.iter().map(|s| (s.id.as_str(), s.reason.as_str())).collect();
    let mut cases: Vec<&Case> = Vec::new();
    for case in &manifest.cases {
        if filter.as_ref().is_some_and(|f| !case.id.contains(f.as_str())) {
            continue;
        }
        match skip_reason.get(case.id.as_str()) {
            Some(reason) => {
                println!("SKIP {} (tests/conformance/loader-skips.yaml): {reason}", case.id);
                skipped += 1;
            }
            None => cases.push(case),
        }
    }
    for case in &cases {
        for stub in case.plugin_stubs.iter().filter(|s| !manifest.plugin_stubs.contains_key(*s)) {
            println!("WARNING: {} names plugin stub {stub}, which the manifest does not describe", case.id);
        }
    }
    for id in skip_reason.keys().filter(|id| !manifest.cases.iter().any(|c| c.id == **id)) {
        println!("WARNING: loader-skips.yaml names {id}, which is not a manifest case");
    }

    let env = RunEnv {
        weir: weir_tests::weir_bin(),
        data_root: conformance.join(&manifest.data_root),
        stubs_dir: weir_tests::repo_root().join("tests/plugin-stubs"),
        timeout: Duration::from_secs(env_number("WEIR_CONFORMANCE_TIMEOUT", 30)),
    };
    let jobs = env_number("WEIR_CONFORMANCE_JOBS", 3) as usize;
    let mut results = run_all(&cases, &env, jobs);
    judge_differs_from(&cases, &mut results);

    let mut passed: BTreeSet<String> = BTreeSet::new();
    let mut failed: BTreeSet<&str> = BTreeSet::new();
    let mut unevaluated: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (case, result) in cases.iter().zip(&results) {
        for note in &result.verdict.unevaluated {
            unevaluated.entry(note.as_str()).or_default().push(case.id.as_str());
        }
        if result.verdict.differences.is_empty() {
            passed.insert(case.id.clone());
            continue;
        }
        failed.insert(case.id.as_str());
        let tail = result.outcome.as_ref().map(|o| o.stderr_tail(3)).unwrap_or_default();
        println!("FAIL {}: {} -- stderr: {tail}", case.id, result.verdict.differences.join("; "));
    }
    for (note, ids) in &unevaluated {
        println!("NOT EVALUATED in {} cases: {note}", ids.len());
    }
    for stale in listed.iter().filter(|id| skip_reason.contains_key(id.as_str())) {
        println!("WARNING: {stale} is in the pass list and in loader-skips.yaml");
    }

    if std::env::var("WEIR_UPDATE_PASS_LIST").is_ok_and(|v| v == "1") {
        if filter.is_some() {
            println!("WEIR_UPDATE_PASS_LIST ignored: WEIR_CONFORMANCE_FILTER is set (the list needs a full run)");
        } else {
            pass_list::write(&pass_path, &passed).unwrap_or_else(|e| panic!("{e}"));
            println!("wrote {} ids to {}", passed.len(), pass_path.display());
        }
    }
    println!("{} passed, {} failed, {} skipped", passed.len(), failed.len(), skipped);

    let regressions = pass_list::regressions(&listed, &failed);
    assert!(regressions.is_empty(), "{} cases of loader-pass.txt regressed: {regressions:?}", regressions.len());
}
