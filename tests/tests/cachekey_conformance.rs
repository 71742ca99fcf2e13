//! The cache key conformance suite: every suite of
//! `../shared/conformance/cachekey-cases.yaml` (BuildStream 2.8.1's keys) run
//! through the real `weir show`.
//!
//! Each element of each suite is one case. A case passes when `weir show`
//! prints, for that element, the expected strict key (`%{strict-key}` and
//! `%{full-key}`, strict mode), the upstream `expected_key` where given, the
//! short `%{key}`, the weak key (`%{weak-key}`) and each source's unique key
//! (`%{source-keys}`, a JSON list). Every mismatch is printed on its own line;
//! the run ends with `N passed, N failed` and fails if any case failed.
//!
//! The project is copied to a temporary directory first, because the upstream
//! harness turns `files/local/usr/bin/goodbye` into a symlink to `hello`
//! (suite `preparation`), and the fatal-warnings suite generates its projects.
//!
//! Run it with `cargo test -p weir-tests --test cachekey_conformance --
//! --nocapture` (and `WEIR_BIN=...` for another `weir`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value as Json;
use weir_tests::{conformance_dir, weir_bin};

/// The fields printed per element, tab separated.
const FORMAT: &str = "%{name}\t%{full-key}\t%{key}\t%{strict-key}\t%{weak-key}\t%{source-keys}";

/// BuildStream's default `logging.key-length`.
const SHORT_KEY_LENGTH: usize = 8;

#[derive(Debug, Deserialize)]
struct Manifest {
    suites: Vec<Suite>,
}

#[derive(Debug, Deserialize)]
struct Suite {
    name: String,
    /// Project directory relative to the manifest; absent when each case generates one.
    project: Option<String>,
    command: Commands,
    cases: Vec<Case>,
}

/// One command or several (the key-stability suite runs three).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Commands {
    One(Invocation),
    Many(Vec<Invocation>),
}

#[derive(Debug, Deserialize)]
struct Invocation {
    argv: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Case {
    element: Option<String>,
    expected_key: Option<String>,
    strict_key: String,
    weak_key: String,
    #[serde(default)]
    sources: Vec<ExpectedSource>,
    /// Fatal-warnings suite: the project's `fatal-warnings`.
    fatal_warnings: Option<Vec<String>>,
    /// Fatal-warnings suite: another order of the same list that must give the same keys.
    same_as: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct ExpectedSource {
    unique_key: serde_yaml_ng::Value,
}

/// What `weir show` printed for one element.
#[derive(Debug, Clone)]
struct Printed {
    full_key: String,
    key: String,
    strict_key: String,
    weak_key: String,
    source_keys: String,
}

/// The element targets of a BuildStream `show` command line: what follows `--format FORMAT`.
fn targets_of(argv: &[String]) -> Vec<String> {
    match argv.iter().position(|arg| arg == "--format") {
        Some(at) => argv.iter().skip(at + 2).cloned().collect(),
        None => argv.last().cloned().into_iter().collect(),
    }
}

/// Runs `weir show` on `project` and returns what it printed, by element name.
/// What one `weir show` printed, by element name, or why it failed.
type ShowResult = Result<BTreeMap<String, Printed>, String>;

fn show(project: &Path, targets: &[String]) -> ShowResult {
    let output = Command::new(weir_bin())
        .arg("--directory")
        .arg(project)
        .args(["show", "--format", FORMAT])
        .args(targets)
        .output()
        .map_err(|e| format!("cannot run weir: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "weir show {} exited with {}: {}",
            targets.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut printed = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, full_key, key, strict_key, weak_key, source_keys] = fields[..] else {
            return Err(format!("unexpected output line: {line:?}"));
        };
        printed.insert(
            name.to_owned(),
            Printed {
                full_key: full_key.to_owned(),
                key: key.to_owned(),
                strict_key: strict_key.to_owned(),
                weak_key: weak_key.to_owned(),
                source_keys: source_keys.to_owned(),
            },
        );
    }
    Ok(printed)
}

/// The differences between what a case expects and what was printed.
fn compare(case: &Case, printed: &Printed) -> Vec<String> {
    let mut differences = Vec::new();
    let mut check = |field: &str, expected: &str, actual: &str| {
        if expected != actual {
            differences.push(format!("{field}: expected {expected}, got {actual}"));
        }
    };
    check("strict-key", &case.strict_key, &printed.strict_key);
    check("full-key", &case.strict_key, &printed.full_key);
    if let Some(expected) = &case.expected_key {
        check("upstream expected key", expected, &printed.full_key);
    }
    let short: String = case.strict_key.chars().take(SHORT_KEY_LENGTH).collect();
    check("key", &short, &printed.key);
    check("weak-key", &case.weak_key, &printed.weak_key);
    let expected_sources: Result<Vec<Json>, _> =
        case.sources.iter().map(|s| serde_json::to_value(&s.unique_key)).collect();
    match (expected_sources, serde_json::from_str::<Json>(&printed.source_keys)) {
        (Ok(expected), Ok(actual)) if Json::Array(expected.clone()) == actual => {}
        (Ok(expected), _) => differences.push(format!(
            "source-keys: expected {}, got {}",
            Json::Array(expected),
            printed.source_keys
        )),
        (Err(e), _) => differences.push(format!("manifest: bad unique_key: {e}")),
    }
    differences
}

/// Copies `from` into `to` (files keep their mode bits; directories are made writable).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The upstream project prepared as the upstream harness prepares it.
fn prepare_project(source: &Path, into: &Path) -> std::io::Result<PathBuf> {
    let project = into.join("project");
    copy_tree(source, &project)?;
    let goodbye = project.join("files/local/usr/bin/goodbye");
    if goodbye.exists() || goodbye.symlink_metadata().is_ok() {
        std::fs::remove_file(&goodbye)?;
        std::os::unix::fs::symlink("hello", &goodbye)?;
    }
    Ok(project)
}

/// The generated project of the fatal-warnings suite.
fn fatal_warnings_project(into: &Path, warnings: &[String]) -> std::io::Result<PathBuf> {
    let project = into.join(format!("fatal-{}", warnings.join("-")));
    std::fs::create_dir_all(project.join("elements"))?;
    let list: Vec<String> = warnings.iter().map(|w| format!("- {w}\n")).collect();
    let fatal = if warnings.is_empty() { " []\n".to_owned() } else { format!("\n{}", list.concat()) };
    std::fs::write(
        project.join("project.conf"),
        format!("name: test\nmin-version: \"2.0\"\nelement-path: elements\nfatal-warnings:{fatal}"),
    )?;
    std::fs::write(project.join("elements/stack.bst"), "kind: stack\n")?;
    Ok(project)
}

/// Tallies cases and prints mismatches.
#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn record(&mut self, suite: &str, case: &str, differences: &[String]) {
        if differences.is_empty() {
            self.passed += 1;
        } else {
            self.failed += 1;
            for difference in differences {
                println!("MISMATCH {suite} {case}: {difference}");
            }
        }
    }
}

fn run_project_suite(suite: &Suite, project: &Path, tally: &mut Tally) {
    let invocations = match &suite.command {
        Commands::One(invocation) => vec![invocation],
        Commands::Many(invocations) => invocations.iter().collect(),
    };
    let runs: Vec<(Vec<String>, ShowResult)> = invocations
        .iter()
        .map(|invocation| {
            let targets = targets_of(&invocation.argv);
            let printed = show(project, &targets);
            (targets, printed)
        })
        .collect();
    for case in &suite.cases {
        let Some(element) = case.element.as_deref() else {
            tally.record(&suite.name, "?", &["manifest: case without element".to_owned()]);
            continue;
        };
        // An element is compared in every invocation that prints it (the
        // key-stability suite also runs with targets that do not reach every
        // element); it must be printed at least once.
        let mut differences = Vec::new();
        let mut printed_somewhere = false;
        for (targets, printed) in &runs {
            let context = targets.join(" ");
            match printed {
                Err(error) => differences.push(format!("[{context}] {error}")),
                Ok(printed) => {
                    if let Some(printed) = printed.get(element) {
                        printed_somewhere = true;
                        differences.extend(compare(case, printed).into_iter().map(|d| format!("[{context}] {d}")));
                    }
                }
            }
        }
        if !printed_somewhere && differences.is_empty() {
            differences.push("element not printed by any invocation".to_owned());
        }
        tally.record(&suite.name, element, &differences);
    }
}

fn run_generated_suite(suite: &Suite, tmp: &Path, tally: &mut Tally) {
    let targets = match &suite.command {
        Commands::One(invocation) => targets_of(&invocation.argv),
        Commands::Many(invocations) => invocations.first().map(|i| targets_of(&i.argv)).unwrap_or_default(),
    };
    for case in &suite.cases {
        let warnings = case.fatal_warnings.clone().unwrap_or_default();
        let label = format!("fatal-warnings {warnings:?}");
        let mut lists = vec![warnings];
        lists.extend(case.same_as.clone());
        let mut differences = Vec::new();
        for list in &lists {
            let printed = fatal_warnings_project(tmp, list)
                .map_err(|e| format!("cannot write project: {e}"))
                .and_then(|project| show(&project, &targets));
            match printed {
                Err(error) => differences.push(format!("[{list:?}] {error}")),
                Ok(printed) => match printed.values().next() {
                    None => differences.push(format!("[{list:?}] nothing printed")),
                    Some(printed) => {
                        differences.extend(compare(case, printed).into_iter().map(|d| format!("[{list:?}] {d}")))
                    }
                },
            }
        }
        tally.record(&suite.name, &label, &differences);
    }
}

#[test]
fn cachekey_conformance() {
    let manifest_path = conformance_dir().join("cachekey-cases.yaml");
    let text = std::fs::read_to_string(&manifest_path).expect("the cache key manifest is readable");
    let manifest: Manifest = serde_yaml_ng::from_str(&text).expect("the cache key manifest parses");
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mut tally = Tally::default();
    for suite in &manifest.suites {
        match &suite.project {
            Some(project) => match prepare_project(&conformance_dir().join(project), &tmp.path().join(&suite.name)) {
                Ok(project) => run_project_suite(suite, &project, &mut tally),
                Err(error) => {
                    for case in &suite.cases {
                        let name = case.element.as_deref().unwrap_or("?");
                        tally.record(&suite.name, name, &[format!("cannot prepare project: {error}")]);
                    }
                }
            },
            None => run_generated_suite(suite, tmp.path(), &mut tally),
        }
    }
    println!("{} passed, {} failed", tally.passed, tally.failed);
    assert_eq!(tally.failed, 0, "{} of {} cache key cases failed", tally.failed, tally.passed + tally.failed);
}
