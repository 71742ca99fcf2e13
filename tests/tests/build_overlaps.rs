//! Overlapping dependencies, reported like BuildStream (issue 7): the same
//! project is built by `weir build` (embedded worker) and by BuildStream
//! 2.8.1 itself, and the warnings each prints while staging the compose
//! element's dependencies must be the same, token, message and detail.
//!
//! The project: `one.bst` and `two.bst` both install `/etc/conf` (an
//! overlap), `three.bst` replaces `/etc/other` but whitelists it through
//! `%{sysconfdir}/other` (no warning), `zz.bst` installs a file where
//! `one.bst` has a non-empty directory (`unstaged-files`). With
//! `fatal-warnings: [overlaps]` both tools must fail the compose element.
//! BuildStream is installed once by `../shared/peers/bst/setup.sh`
//! ([`weir_tests::peers::bst`]).

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// A warning: token, brief and detail lines (blank lines and trailing blanks dropped).
type Warning = (String, String, Vec<String>);

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    fs::write(path, text).expect("write");
}

fn project(root: &Path, fatal: bool) {
    let conf = if fatal { "name: ov\nmin-version: 2.0\nfatal-warnings: [overlaps]\n" } else { "name: ov\nmin-version: 2.0\n" };
    write(root, "project.conf", conf);
    for (file, text) in [
        ("one/etc/conf", "1"),
        ("one/etc/other", "o"),
        ("one/usr/lib/libx/a", "x"),
        ("two/etc/conf", "2"),
        ("three/etc/other", "t"),
        ("zz/usr/lib", "a file over a directory"),
    ] {
        write(root, file, text);
    }
    for name in ["one", "two", "zz"] {
        write(root, &format!("{name}.bst"), &format!("kind: import\nsources:\n- kind: local\n  path: {name}\n"));
    }
    write(
        root,
        "three.bst",
        "kind: import\nsources:\n- kind: local\n  path: three\npublic:\n  bst:\n    overlap-whitelist:\n    - '%{sysconfdir}/other'\n",
    );
    write(root, "comp.bst", "kind: compose\nbuild-depends:\n- one.bst\n- two.bst\n- three.bst\n- zz.bst\n");
}

fn lines(detail: &str) -> Vec<String> {
    detail.lines().map(|l| l.trim_end().to_string()).filter(|l| !l.trim().is_empty()).collect()
}

fn weir_build(project: &Path, cache: &Path) -> Output {
    Command::new(weir_tests::weir_bin())
        .current_dir(project)
        .args(["build", "--json", "comp.bst"])
        .env_remove("WEIR_REMOTE")
        .env_remove("WEIR_CACHE_DIR")
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null())
        .output()
        .expect("weir runs")
}

/// The `warning` events of a `weir build --json` run.
fn weir_warnings(output: &Output) -> Vec<Warning> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "warning" && e["element"] == "comp.bst")
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (text("token"), text("brief"), lines(&text("detail")))
        })
        .collect()
}

fn bst_build(project: &Path, home: &Path) -> Output {
    weir_tests::peers::bst_command(home, project, "").args(["build", "comp.bst"]).output().expect("bst runs")
}

/// The `WARNING [token]: brief` messages bst printed for comp.bst, with
/// their indented detail lines.
fn bst_warnings(output: &Output) -> Vec<Warning> {
    let text = String::from_utf8_lossy(&output.stderr).to_string() + &String::from_utf8_lossy(&output.stdout);
    let mut out: Vec<Warning> = Vec::new();
    let mut current: Option<Warning> = None;
    for line in text.lines() {
        if let Some(rest) = line.split_once("build:comp.bst").and_then(|(_, r)| r.split_once("] WARNING [")).map(|(_, r)| r) {
            out.extend(current.take());
            let (token, brief) = rest.split_once("]: ").unwrap_or((rest, ""));
            current = Some((token.to_string(), brief.trim_end().to_string(), Vec::new()));
        } else if line.starts_with('[') {
            out.extend(current.take());
        } else if let Some((_, _, detail)) = current.as_mut() {
            if let Some(stripped) = line.strip_prefix("    ") {
                if !stripped.trim().is_empty() {
                    detail.push(stripped.trim_end().to_string());
                }
            }
        }
    }
    out.extend(current);
    out
}

#[test]
fn overlap_warnings_are_the_same_as_buildstreams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("project");
    project(&root, false);
    let weir = weir_build(&root, &dir.path().join("weir-cache"));
    assert!(weir.status.success(), "weir build failed:\n{}", String::from_utf8_lossy(&weir.stderr));
    let bst = bst_build(&root, &dir.path().join("bst-home"));
    assert!(bst.status.success(), "bst build failed:\n{}", String::from_utf8_lossy(&bst.stderr));

    let ours = weir_warnings(&weir);
    let theirs = bst_warnings(&bst);
    assert_eq!(ours, theirs, "weir's warnings differ from BuildStream's");
    // Not vacuous: both tokens are there, the whitelisted file is not.
    let tokens: Vec<&str> = ours.iter().map(|w| w.0.as_str()).collect();
    assert_eq!(tokens, ["overlaps", "unstaged-files"]);
    assert!(ours[0].2.iter().any(|l| l.starts_with("/etc/conf: two.bst is not permitted")), "{ours:?}");
    assert!(!ours.iter().flat_map(|w| &w.2).any(|l| l.contains("/etc/other")), "{ours:?}");

    // The plain output shows the same warning to a person.
    let plain = Command::new(weir_tests::weir_bin())
        .current_dir(&root)
        .args(["build", "comp.bst"])
        .env_remove("WEIR_REMOTE")
        .env_remove("WEIR_CACHE_DIR")
        .env("XDG_CACHE_HOME", dir.path().join("weir-cache-2"))
        .output()
        .expect("weir runs");
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(stderr.contains("[WARNING] comp.bst: [overlaps]: Non-whitelisted overlaps detected"), "{stderr}");
}

#[test]
fn fatal_overlaps_fail_the_element_in_both_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("project");
    project(&root, true);
    let weir = weir_build(&root, &dir.path().join("weir-cache"));
    assert!(!weir.status.success(), "weir build succeeded despite fatal overlaps");
    let stdout = String::from_utf8_lossy(&weir.stdout);
    let failed: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert_eq!(failed[0]["element"], "comp.bst");
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("[overlaps]: Non-whitelisted overlaps detected"), "{error}");
    assert!(error.contains("/etc/conf: two.bst is not permitted to overlap other elements"), "{error}");

    let bst = bst_build(&root, &dir.path().join("bst-home"));
    assert!(!bst.status.success(), "bst build succeeded despite fatal overlaps");
    let text = String::from_utf8_lossy(&bst.stderr);
    assert!(text.contains("[overlaps]: Non-whitelisted overlaps detected"), "{text}");
}
