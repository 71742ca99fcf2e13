//! BuildStream's implicit fatal warnings (cachekeys spec §5.6): the
//! deprecated `fail-on-overlap: true` makes `overlaps` fatal, and
//! `junctions: disallow-subproject-uris: true` makes `unaliased-url` fatal in
//! every subproject below, at any depth. Both are part of the element keys,
//! so each project here is compared with a twin that spells the warning out
//! in `fatal-warnings`.

use std::fs;
use std::path::Path;

use weir_scheduler::cachekey::GraphKeys;
use weir_scheduler::loader::{self, LoadOptions};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
}

/// Strict keys of every element, by full name.
fn keys(project: &Path, target: &str) -> (Vec<Vec<String>>, Vec<(String, String)>) {
    let loaded = loader::load(project, &[target.to_owned()], &LoadOptions::default())
        .unwrap_or_else(|f| panic!("load of {} failed: {}", project.display(), f.message));
    let keys = GraphKeys::compute(&loaded.graph).expect("keys");
    let mut out: Vec<(String, String)> = loaded
        .graph
        .elements
        .iter()
        .filter_map(|e| keys.keys(e.id).and_then(|k| k.strict.clone()).map(|k| (e.full_name.to_string(), k)))
        .collect();
    out.sort();
    let warnings = loaded.graph.projects.iter().map(|p| p.fatal_warnings.clone()).collect();
    (warnings, out)
}

const ELEMENT: &str = "kind: manual\nconfig:\n  install-commands: [\"true\"]\n";

#[test]
fn fail_on_overlap_true_makes_overlaps_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let implicit = dir.path().join("implicit");
    let explicit = dir.path().join("explicit");
    let off = dir.path().join("off");
    write(&implicit, &[("project.conf", "name: p\nmin-version: 2.0\nfail-on-overlap: true\n"), ("e.bst", ELEMENT)]);
    write(&explicit, &[("project.conf", "name: p\nmin-version: 2.0\nfatal-warnings: [overlaps]\n"), ("e.bst", ELEMENT)]);
    write(&off, &[("project.conf", "name: p\nmin-version: 2.0\nfail-on-overlap: false\n"), ("e.bst", ELEMENT)]);
    let (implicit_warnings, implicit_keys) = keys(&implicit, "e.bst");
    let (_, explicit_keys) = keys(&explicit, "e.bst");
    let (off_warnings, off_keys) = keys(&off, "e.bst");
    assert_eq!(implicit_warnings, vec![vec!["overlaps".to_string()]]);
    assert_eq!(implicit_keys, explicit_keys);
    assert_eq!(off_warnings, vec![Vec::<String>::new()]);
    assert_ne!(off_keys, implicit_keys);
}

#[test]
fn disallow_subproject_uris_makes_unaliased_url_fatal_at_every_depth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junction = "kind: junction\nsources:\n- kind: local\n  path: sub\n";
    let project = |root: &Path, top_conf: &str, sub_conf: &str, subsub_conf: &str| {
        write(
            root,
            &[
                ("project.conf", top_conf),
                ("top.bst", "kind: stack\ndepends:\n- sub.bst:mid.bst\n"),
                ("sub.bst", junction),
                ("sub/project.conf", sub_conf),
                ("sub/mid.bst", "kind: stack\ndepends:\n- sub.bst:leaf.bst\n"),
                ("sub/sub.bst", junction),
                ("sub/sub/project.conf", subsub_conf),
                ("sub/sub/leaf.bst", ELEMENT),
            ],
        )
    };
    let implicit = dir.path().join("implicit");
    let explicit = dir.path().join("explicit");
    project(
        &implicit,
        "name: top\nmin-version: 2.0\njunctions:\n  disallow-subproject-uris: true\n",
        "name: sub\nmin-version: 2.0\n",
        "name: subsub\nmin-version: 2.0\n",
    );
    project(
        &explicit,
        "name: top\nmin-version: 2.0\njunctions:\n  disallow-subproject-uris: true\n",
        "name: sub\nmin-version: 2.0\nfatal-warnings: [unaliased-url]\n",
        "name: subsub\nmin-version: 2.0\nfatal-warnings: [unaliased-url]\n",
    );
    let (warnings, implicit_keys) = keys(&implicit, "top.bst");
    let (_, explicit_keys) = keys(&explicit, "top.bst");
    // The toplevel project itself is not affected; both subprojects are.
    assert_eq!(warnings[0], Vec::<String>::new());
    assert_eq!(warnings.iter().filter(|w| *w == &vec!["unaliased-url".to_string()]).count(), 2, "{warnings:?}");
    assert_eq!(implicit_keys, explicit_keys);
}
