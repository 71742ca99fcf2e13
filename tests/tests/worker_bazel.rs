//! Real Bazel clients against weir-worker (issue 6): `peers/bazel/smoke.sh`
//! in `cache` mode (`--remote_cache`) and `exec` mode (`--remote_executor`),
//! for every client `peers/bazel/setup.sh` installed (Bazel 2.1 from npm;
//! Bazel 4.2 from Debian where apt works).
//!
//! The clients are installed once into
//! `${WEIR_PEER_CACHE:-$HOME/.cache/weir-peers}/bazel`. If they cannot be
//! installed (npm unreachable), the tests fail; they never skip silently.
//! Exec mode uses the `host` sandbox: Bazel's genrules run `/bin/bash` and
//! other host tools that an input root does not contain.

mod worker_process;

use std::path::PathBuf;
use std::process::Command;

use worker_process::WorkerProcess;

/// The installed Bazel clients, installing them first if needed. The
/// returned lock is held for the whole test: the tests run in separate
/// processes, and both install into and share the clients' output roots.
fn bazel_clients() -> (Vec<PathBuf>, std::fs::File) {
    let lock = weir_tests::peers::lock("bazel");
    let dir = weir_tests::peers::peer_cache().join("bazel");
    if !dir.join("bin/bazel2").exists() {
        std::fs::create_dir_all(&dir).expect("creates the peer cache directory");
        let status = Command::new("bash")
            .arg(weir_tests::shared_dir().join("peers/bazel/setup.sh"))
            .arg(&dir)
            .status()
            .expect("runs peers/bazel/setup.sh");
        assert!(status.success(), "peers/bazel/setup.sh failed ({status}): Bazel clients could not be installed");
    }
    let mut clients: Vec<PathBuf> = ["bazel2", "bazel4"].iter().map(|n| dir.join("bin").join(n)).filter(|p| p.exists()).collect();
    clients.sort();
    assert!(!clients.is_empty(), "no Bazel client in {}", dir.display());
    (clients, lock)
}

/// Runs smoke.sh and asserts every check passed.
fn smoke(bazel: &PathBuf, worker: &WorkerProcess, mode: &str, instance: Option<&str>) {
    let mut command = Command::new("bash");
    command
        .arg(weir_tests::shared_dir().join("peers/bazel/smoke.sh"))
        .arg(bazel)
        .arg(worker.addr.to_string())
        .arg(mode);
    if let Some(instance) = instance {
        command.arg(instance);
    }
    let output = command.output().expect("runs peers/bazel/smoke.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let passes = stdout.lines().filter(|l| l.starts_with("PASS")).count();
    assert!(
        output.status.success() && passes == 2 && !stdout.contains("FAIL"),
        "{} {mode} smoke failed ({}):\n{stdout}\n{stderr}",
        bazel.display(),
        output.status
    );
}

#[test]
fn bazel_uses_weir_worker_as_remote_cache() {
    let (clients, _serial) = bazel_clients();
    for bazel in &clients {
        let dir = tempfile::tempdir().unwrap();
        let worker = WorkerProcess::start(dir.path(), &["--role", "cache"]);
        smoke(bazel, &worker, "cache", None);
    }
}

#[test]
fn bazel_uses_weir_worker_as_remote_executor_with_an_instance_name() {
    let (clients, _serial) = bazel_clients();
    for bazel in &clients {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("worker.yaml");
        std::fs::write(&config, "role: both\ninstance_names: ['', weir/main]\nexecution: { sandbox: host }\n").unwrap();
        let worker = WorkerProcess::start(dir.path(), &["--config", config.to_str().unwrap()]);
        smoke(bazel, &worker, "exec", Some("weir/main"));
    }
}
