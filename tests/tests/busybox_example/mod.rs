//! `examples/busybox` for end-to-end tests: a prepared private copy, and a
//! snapshot of a checked-out tree to compare two builds' files.
//!
//! Key decision: the example is copied into a temporary directory (without
//! its generated `files/base`) and prepared there by its own `prepare.sh`,
//! so tests never write into the repository and run in parallel.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// A prepared copy of `examples/busybox` (`prepare.sh` put the host's static
/// busybox into `files/base`).
pub fn prepared() -> tempfile::TempDir {
    let source = weir_tests::repo_root().join("examples/busybox");
    let dir = tempfile::tempdir().expect("creates a temporary directory");
    copy_tree(&source, dir.path(), &source.join("files/base"));
    let prepare = Command::new("sh").arg(dir.path().join("prepare.sh")).output().expect("runs prepare.sh");
    assert!(prepare.status.success(), "prepare.sh: {}", String::from_utf8_lossy(&prepare.stderr));
    dir
}

/// Copies regular files and directories of `from` into `to`, except `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &Path) {
    std::fs::create_dir_all(to).expect("creates the copy's directory");
    for entry in std::fs::read_dir(from).expect("reads the example") {
        let entry = entry.expect("reads a directory entry");
        let path = entry.path();
        if path == skip {
            continue;
        }
        if entry.file_type().expect("has a file type").is_dir() {
            copy_tree(&path, &to.join(entry.file_name()), skip);
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copies a file");
        }
    }
}

/// Every path under `root` with what it is: a file's mode bits and SHA-256,
/// a symlink's target, or `dir`.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    use sha2::Digest as _;
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("reads a checked-out directory") {
            let path = entry.expect("reads a directory entry").path();
            let name = path.strip_prefix(root).expect("is under the root").display().to_string();
            let meta = std::fs::symlink_metadata(&path).expect("has metadata");
            let value = if meta.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&path).expect("reads a link").display())
            } else if meta.is_dir() {
                pending.push(path);
                "dir".to_string()
            } else {
                let bytes = std::fs::read(&path).expect("reads a file");
                format!("{:o} {}", meta.permissions().mode() & 0o111, hex::encode(sha2::Sha256::digest(&bytes)))
            };
            out.insert(name, value);
        }
    }
    out
}
