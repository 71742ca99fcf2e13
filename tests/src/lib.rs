//! Shared helpers for Weir's end-to-end tests: where the real binaries and the
//! shared conformance data are.
//!
//! The tests start the real `weir` and `weir-worker` executables that
//! `cargo test --workspace` / `cargo nextest run --workspace` build beside the
//! test binaries; `WEIR_BIN` and `WEIR_WORKER_BIN` override the paths.

use std::path::PathBuf;

pub mod events;
pub mod peers;

/// Directory that holds the workspace's binaries (`target/<profile>`).
fn bin_dir() -> PathBuf {
    // A test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("the test executable has a path");
    let deps = exe.parent().expect("test executable is in a directory");
    deps.parent().unwrap_or(deps).to_path_buf()
}

fn binary(env: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} not found; build the workspace first (cargo build --workspace) or set {env}",
        path.display()
    );
    path
}

/// The `weir` executable.
pub fn weir_bin() -> PathBuf {
    binary("WEIR_BIN", "weir")
}

/// The `weir-worker` executable.
pub fn worker_bin() -> PathBuf {
    binary("WEIR_WORKER_BIN", "weir-worker")
}

/// The repository root.
///
/// The test runner's `CARGO_MANIFEST_DIR` is preferred over the one compiled
/// in: cargo may reuse a test binary built from another clone of the same
/// commit that shared the target directory.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().expect("tests/ is inside the repository").to_path_buf()
}

/// `../shared` beside the clone (`WEIR_SHARED` overrides).
pub fn shared_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_SHARED") {
        return PathBuf::from(path);
    }
    repo_root().parent().expect("the repository has a parent directory").join("shared")
}

/// `../shared/conformance`.
pub fn conformance_dir() -> PathBuf {
    shared_dir().join("conformance")
}
