//! End-to-end tests of the loader on small projects written to temporary
//! directories: junctions, links, includes, sorting and error reports.

use std::path::Path;

use super::{load, LoadOptions};
use crate::graph::Scope;

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, text).unwrap();
    }
}

fn names(root: &Path, targets: &[&str]) -> Vec<String> {
    let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
    let loaded = load(root, &targets, &LoadOptions::default()).unwrap();
    let graph = &loaded.graph;
    graph.select(&graph.targets, Scope::All).into_iter().map(|id| graph.element(id).full_name.clone()).collect()
}

#[test]
fn junctions_links_and_includes_resolve_to_full_names() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("project.conf", "name: top\nmin-version: 2.0\n"),
            ("sub.bst", "kind: junction\nsources:\n- kind: local\n  path: sub\n"),
            ("sub-link.bst", "kind: link\nconfig:\n  target: sub.bst:lib.bst\n"),
            ("app.bst", "kind: manual\n(@): vars.yml\ndepends:\n- sub-link.bst\n- base.bst\n"),
            ("vars.yml", "variables:\n  greeting: hello %{project-name}\n"),
            ("base.bst", "kind: import\nsources:\n- kind: local\n  path: vars.yml\n"),
            ("sub/project.conf", "name: sub\nmin-version: 2.0\n"),
            ("sub/lib.bst", "kind: stack\n"),
        ],
    );
    // Sorted by project-local name: base.bst before lib.bst.
    assert_eq!(names(dir.path(), &["app.bst"]), ["base.bst", "sub.bst:lib.bst", "app.bst"]);
    let loaded = load(dir.path(), &["app.bst".into()], &LoadOptions::default()).unwrap();
    let app = loaded.graph.find("app.bst").unwrap();
    assert_eq!(app.variable("greeting"), Some("hello top"));
    assert_eq!(app.variable("element-name"), Some("app.bst"));
}

#[test]
fn dependencies_sort_by_dependency_then_runtime_then_name() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("project.conf", "name: t\nmin-version: 2.0\n"),
            ("a.bst", "kind: stack\ndepends:\n- z.bst\n"),
            ("z.bst", "kind: stack\n"),
            ("m.bst", "kind: stack\n"),
            ("r.bst", "kind: stack\n"),
            ("top.bst", "kind: manual\nruntime-depends:\n- a.bst\ndepends:\n- r.bst\n- m.bst\n- z.bst\n"),
        ],
    );
    let loaded = load(dir.path(), &["top.bst".into()], &LoadOptions::default()).unwrap();
    let graph = &loaded.graph;
    let top = graph.find("top.bst").unwrap();
    let order: Vec<&str> = top.dependencies.iter().map(|d| graph.element(d.element).full_name.as_str()).collect();
    // z before a (a depends on z); runtime-only a last; the rest by name.
    assert_eq!(order, ["m.bst", "r.bst", "z.bst", "a.bst"]);
}

#[test]
fn cycles_and_missing_files_are_reported_with_reason_and_provenance() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("project.conf", "name: t\nmin-version: 2.0\n"),
            ("a.bst", "kind: stack\ndepends:\n- b.bst\n"),
            ("b.bst", "kind: stack\ndepends:\n- a.bst\n"),
            ("c.bst", "kind: stack\ndepends:\n- missing.bst\n"),
        ],
    );
    let err = load(dir.path(), &["a.bst".into()], &LoadOptions::default()).unwrap_err();
    assert_eq!(err.reason, "CIRCULAR_DEPENDENCY");
    assert!(err.message.contains("a.bst -> b.bst -> a.bst"), "{}", err.message);
    let err = load(dir.path(), &["c.bst".into()], &LoadOptions::default()).unwrap_err();
    assert_eq!(err.reason, "MISSING_FILE");
    assert!(err.message.starts_with("c.bst [line 3 column 2]: "), "{}", err.message);
}

#[test]
fn self_junction_needs_internal() {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        ("self.bst", "kind: junction\nsources:\n- kind: local\n  path: .\nconfig:\n  options:\n    arch: b\n"),
        ("target.bst", "kind: stack\n"),
        ("top.bst", "kind: stack\ndepends:\n- self.bst:target.bst\n"),
    ];
    let options = "options:\n  arch:\n    type: enum\n    description: x\n    values: [a, b]\n    default: a\n";
    write(dir.path(), &base);
    write(dir.path(), &[("project.conf", &format!("name: t\nmin-version: 2.0\n{options}"))]);
    let err = load(dir.path(), &["top.bst".into()], &LoadOptions::default()).unwrap_err();
    assert_eq!(err.reason, "CONFLICTING_JUNCTION");
    write(
        dir.path(),
        &[("project.conf", &format!("name: t\nmin-version: 2.0\n{options}junctions:\n  internal: [self.bst]\n"))],
    );
    assert_eq!(names(dir.path(), &["top.bst"]), ["self.bst:target.bst", "top.bst"]);
}

#[test]
fn downloadable_sources_accept_version_keys_and_refuse_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let sha = "0".repeat(64);
    write(
        dir.path(),
        &[
            ("project.conf", "name: top\nmin-version: 2.0\n"),
            (
                "ok.bst",
                &format!(
                    "kind: import\nsources:\n- kind: tar\n  url: file:///x.tar.gz\n  ref: {sha}\n  version: '1.2'\n  base-dir: ''\n\
                     - kind: remote\n  url: file:///y\n  ref: {sha}\n  version-guess-pattern: '\\d+'\n  filename: y\n  directory: d\n"
                ),
            ),
            ("bad.bst", &format!("kind: import\nsources:\n- kind: tar\n  url: file:///x.tar.gz\n  ref: {sha}\n  verison: '1.2'\n")),
        ],
    );
    assert_eq!(names(dir.path(), &["ok.bst"]), ["ok.bst"]);
    let err = load(dir.path(), &["bad.bst".to_string()], &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("verison"), "{err}");
}

#[test]
fn malformed_yaml_names_the_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("project.conf", "name: top\nmin-version: 2.0\n"), ("e.bst", "kind: import\ndescription: a: b\n")]);
    let err = load(dir.path(), &["e.bst".to_string()], &LoadOptions::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("e.bst [line 2 column"), "{text}");
    assert!(text.contains("Malformed YAML"), "{text}");
}

/// Loads `targets` with `helpers` helper threads (0: everything on the
/// loader's thread); the rendered error, or every element's name and variables.
fn outcome_with_helpers(root: &Path, targets: &[&str], helpers: usize) -> Result<Vec<String>, String> {
    let targets: Vec<String> = targets.iter().map(|s| s.to_string()).collect();
    let options = LoadOptions { helper_threads: Some(helpers), ..LoadOptions::default() };
    match load(root, &targets, &options) {
        Ok(loaded) => {
            let graph = &loaded.graph;
            Ok(graph
                .select(&graph.targets, Scope::All)
                .into_iter()
                .map(|id| {
                    let e = graph.element(id);
                    let vars: Vec<String> = e.variables.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{} {} {:?}", e.full_name, vars.join(","), e.sources.iter().map(|s| &s.config).collect::<Vec<_>>())
                })
                .collect())
        }
        Err(failure) => Err(format!("{failure:?}")),
    }
}

#[test]
fn elements_prepared_on_helper_threads_equal_those_prepared_by_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("project.conf", "name: t\nmin-version: 2.0\naliases:\n  up: https://example.invalid/\nvariables:\n  base: '%{prefix}/x'\n"),
            ("a.bst", "kind: manual\nvariables:\n  own: '%{base}-%{element-name}'\ndepends:\n- b.bst\n- c.bst\n"),
            ("b.bst", "kind: import\nsources:\n- kind: remote\n  url: up:file\n  ref: 0000000000000000000000000000000000000000000000000000000000000000\n"),
            ("c.bst", "kind: stack\ndepends:\n- b.bst\n"),
            // Errors found while preparing: the same report, whichever thread prepared.
            ("cycle.bst", "kind: manual\ndepends:\n- b.bst\nvariables:\n  x: '%{y}'\n  y: '%{x}'\n"),
            ("undefined.bst", "kind: manual\nvariables:\n  x: '%{nowhere}'\n"),
            ("badsource.bst", "kind: import\nsources:\n- kind: nosuchkind\n"),
        ],
    );
    for targets in [&["a.bst"][..], &["cycle.bst"], &["undefined.bst"], &["a.bst", "badsource.bst"]] {
        let sequential = outcome_with_helpers(dir.path(), targets, 0);
        // One helper parses ahead; from two, elements are also prepared on a thread of their own.
        for helpers in [1, 2, 3] {
            assert_eq!(outcome_with_helpers(dir.path(), targets, helpers), sequential, "{targets:?} with {helpers} helpers");
        }
    }
    let loaded = outcome_with_helpers(dir.path(), &["a.bst"], 1).unwrap();
    assert!(loaded.iter().any(|line| line.contains("own=/usr/x-a.bst")), "{loaded:?}");
    let cycle = outcome_with_helpers(dir.path(), &["cycle.bst"], 1).unwrap_err();
    assert!(cycle.contains("cycle.bst [line"), "the cycle's detail names the file and line: {cycle}");
}
