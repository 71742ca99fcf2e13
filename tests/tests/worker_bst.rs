//! BuildStream 2.8.1 against weir-worker (issue 6): the real `bst` uses a
//! real `weir-worker` on 127.0.0.1 port 0 as its artifact cache, its source
//! cache and its remote execution service.
//!
//! Each test writes a small project in a temp dir — `base.bst` (an import of
//! Debian's static busybox as `/bin/sh` and friends), `data.bst` (an import
//! of local files) and `hello.bst` (a manual element whose `remote` source is
//! a `file://` URL under an alias and whose commands run with busybox `sh`) —
//! and drives `bst` with user configurations written next to it.
//!
//! Key decision: every claim is proven by taking the alternative away. The
//! clean client that must *pull* has a fresh cache directory and the
//! upstream file deleted, so it can only succeed through the worker; a
//! control client with the same setup and no remote must fail. Remote
//! execution runs in the worker's `namespace` sandbox and is asserted from
//! bst's own "remote build" activity and from the content of the artifact
//! it checks out; a second clean client must then be answered from the
//! worker's Action Cache without executing.
//!
//! The peer is installed once by `../shared/peers/bst/setup.sh` into
//! `${WEIR_PEER_CACHE:-$HOME/.cache/weir-peers}/bst-venv` and reused
//! ([`weir_tests::peers::bst`]); an empty cache installs it (Debian and PyPI
//! registries only). Every server
//! a test starts is killed when the test ends ([`WorkerProcess`] kills on
//! drop; bst stops its own buildbox-casd).

mod worker_process;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use worker_process::WorkerProcess;

/// How long one `bst` invocation may take before the test kills it.
const BST_TIMEOUT: Duration = Duration::from_secs(300);

/// Busybox applets the project's commands (and bst's own checks) use.
const APPLETS: &[&str] = &["sh", "cat", "mkdir", "echo", "ls", "cp", "true"];

const DATA_TEXT: &str = "hello from data.bst\n";
const PAYLOAD_TEXT: &str = "payload fetched from upstream\n";

/// What `hello.bst` installs as `out/greeting.txt`.
fn expected_greeting() -> String {
    format!("{DATA_TEXT}{PAYLOAD_TEXT}built-by-manual\n")
}

/// Where a bst client sends artifacts, sources and builds.
#[derive(Default)]
struct Remotes<'a> {
    /// Artifact cache server and whether to push to it.
    artifacts: Option<(&'a WorkerProcess, bool)>,
    /// Source cache server and whether to push to it.
    sources: Option<(&'a WorkerProcess, bool)>,
    /// Remote execution service (execution, storage and action cache).
    execution: Option<&'a WorkerProcess>,
}

impl Remotes<'_> {
    /// The BuildStream 2 user-configuration sections for these remotes.
    fn to_yaml(&self) -> String {
        let mut yaml = String::new();
        let cache_section = |key: &str, (worker, push): (&WorkerProcess, bool)| {
            format!("{key}:\n  servers:\n  - url: {}\n    push: {push}\n", worker.endpoint())
        };
        if let Some(remote) = self.artifacts {
            yaml.push_str(&cache_section("artifacts", remote));
        }
        if let Some(remote) = self.sources {
            yaml.push_str(&cache_section("source-caches", remote));
        }
        if let Some(worker) = self.execution {
            let url = worker.endpoint();
            yaml.push_str(&format!(
                "remote-execution:\n  execution-service:\n    url: {url}\n  storage-service:\n    url: {url}\n  \
                 action-cache-service:\n    url: {url}\n"
            ));
        }
        yaml
    }
}

/// One finished `bst` invocation.
struct BstRun {
    status: ExitStatus,
    /// stdout and stderr (bst writes its messages to stderr).
    log: String,
}

impl BstRun {
    fn assert_success(&self, what: &str) {
        assert!(self.status.success(), "{what}: bst failed ({}):\n{}", self.status, self.tail());
    }

    /// The last lines of the log, for assertion messages.
    fn tail(&self) -> String {
        last_lines(&self.log, 60)
    }

    /// `processed` count of a queue in bst's pipeline summary ("Build Queue: processed 1, ...").
    fn processed(&self, queue: &str) -> Option<u32> {
        let prefix = format!("{queue} Queue:");
        let line = self.log.lines().rev().find(|l| l.trim_start().starts_with(&prefix))?;
        let rest = line.split("processed").nth(1)?;
        rest.trim().split(',').next()?.trim().parse().ok()
    }

    /// Whether a message line for `element` contains `text`.
    fn element_says(&self, element: &str, text: &str) -> bool {
        self.log.lines().any(|l| l.contains(&format!(":{element}")) && l.contains(text))
    }
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A BuildStream project in a temp dir, plus the "upstream" directory its
/// `remote` source is fetched from and one cache directory per client.
struct BstProject {
    dir: tempfile::TempDir,
}

impl BstProject {
    fn write() -> BstProject {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        let project = root.join("project");
        let upstream = root.join("upstream");
        let base_bin = project.join("files/base/bin");
        for d in [&base_bin, &project.join("files/data/data"), &project.join("elements"), &upstream] {
            fs::create_dir_all(d).expect("create project dirs");
        }
        fs::copy("/bin/busybox", base_bin.join("busybox")).expect("copy /bin/busybox (Debian busybox-static)");
        for applet in APPLETS {
            symlink("busybox", base_bin.join(applet)).expect("applet symlink");
        }
        fs::write(project.join("files/data/data/hello.txt"), DATA_TEXT).expect("write data");
        fs::write(upstream.join("payload.txt"), PAYLOAD_TEXT).expect("write payload");
        let payload_sha = hex::encode(Sha256::digest(PAYLOAD_TEXT.as_bytes()));

        let files = [
            (
                "project.conf",
                format!(
                    "name: weirtest\nmin-version: 2.0\nelement-path: elements\naliases:\n  upstream: file://{}/\n",
                    upstream.display()
                ),
            ),
            ("elements/base.bst", "kind: import\nsources:\n- kind: local\n  path: files/base\n".to_string()),
            ("elements/data.bst", "kind: import\nsources:\n- kind: local\n  path: files/data\n".to_string()),
            (
                "elements/hello.bst",
                format!(
                    "kind: manual\nbuild-depends:\n- base.bst\n- data.bst\nsources:\n- kind: remote\n  \
                     url: upstream:payload.txt\n  ref: {payload_sha}\nconfig:\n  install-commands:\n  \
                     - mkdir -p %{{install-root}}/out\n  \
                     - cat /data/hello.txt payload.txt > %{{install-root}}/out/greeting.txt\n  \
                     - echo built-by-manual >> %{{install-root}}/out/greeting.txt\n"
                ),
            ),
        ];
        for (path, text) in files {
            fs::write(project.join(path), text).expect("write project file");
        }
        BstProject { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Deletes the upstream file, so only a cache can provide the source.
    fn remove_upstream(&self) {
        fs::remove_dir_all(self.root().join("upstream")).expect("remove upstream");
    }

    /// Runs `bst ARGS` as client `client` (its own fresh cache directory
    /// and user configuration) with the given remotes.
    fn bst(&self, client: &str, remotes: &Remotes<'_>, args: &[&str]) -> BstRun {
        let home = self.root().join("clients").join(client);
        fs::create_dir_all(&home).expect("client dir");
        let cache = home.join("cache");
        let config = home.join("buildstream.conf");
        let yaml = format!(
            "cachedir: {cache}\nsourcedir: {cache}/sources\nlogdir: {cache}/logs\n{}",
            remotes.to_yaml(),
            cache = cache.display()
        );
        fs::write(&config, yaml).expect("write user config");

        let log_path = home.join(format!("bst-{}.log", args.first().copied().unwrap_or("run")));
        let log = fs::File::create(&log_path).expect("log file");
        let mut child = Command::new(weir_tests::peers::bst())
            .args(["--no-colors", "--no-interactive", "-c"])
            .arg(&config)
            .arg("-C")
            .arg(self.root().join("project"))
            .args(args)
            .env("XDG_CACHE_HOME", home.join("xdg-cache"))
            .env("XDG_CONFIG_HOME", home.join("xdg-config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("bst starts");
        let deadline = Instant::now() + BST_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for bst") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                // The temp dir goes away with the test: show the log here.
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                panic!(
                    "bst {args:?} ran over {BST_TIMEOUT:?} (a full disk makes bst hang while resolving \
                     elements); last lines:\n{}",
                    last_lines(&log, 60)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        BstRun { status, log: fs::read_to_string(&log_path).unwrap_or_default() }
    }

    /// `bst artifact checkout` of hello.bst as `client`; returns out/greeting.txt.
    fn checkout_greeting(&self, client: &str, remotes: &Remotes<'_>) -> String {
        let target = self.root().join("checkouts").join(client);
        let target_arg = target.to_string_lossy().into_owned();
        let run = self.bst(client, remotes, &["artifact", "checkout", "--directory", &target_arg, "hello.bst"]);
        run.assert_success("artifact checkout");
        fs::read_to_string(target.join("out/greeting.txt")).expect("checkout has out/greeting.txt")
    }
}

/// A worker serving the cache services only (a cache node).
fn cache_worker(project: &BstProject) -> WorkerProcess {
    let root = project.root().join("worker");
    WorkerProcess::start(&root, &["--role", "cache"])
}

/// Asserts that this machine can make the user, mount and pid namespaces the
/// worker's default `namespace` sandbox needs. bst's actions use absolute
/// paths inside their input root (`/data`, `/buildstream-install`), which
/// the `host` sandbox (no isolation) cannot give them, so there is no
/// fallback: without namespaces this test cannot say anything.
fn require_namespaces() {
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--pid", "--fork", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "remote execution of bst actions needs Linux user namespaces (`unshare -Urmpf true` failed here)"
    );
}

#[test]
fn artifact_cache_push_then_clean_client_pulls_instead_of_building() {
    let project = BstProject::write();
    let worker = cache_worker(&project);

    let pusher = Remotes { artifacts: Some((&worker, true)), ..Remotes::default() };
    let run = project.bst("pusher", &pusher, &["build", "hello.bst"]);
    run.assert_success("build and push");
    assert_eq!(run.processed("Build"), Some(3), "the first client builds all three elements:\n{}", run.tail());
    assert!(run.element_says("hello.bst", "Pushed artifact"), "hello.bst was not pushed:\n{}", run.tail());

    project.remove_upstream();

    let control = project.bst("control", &Remotes::default(), &["build", "hello.bst"]);
    assert!(
        !control.status.success(),
        "without a remote and without upstream, the build must fail:\n{}",
        control.tail()
    );

    let puller = Remotes { artifacts: Some((&worker, false)), ..Remotes::default() };
    let run = project.bst("puller", &puller, &["build", "hello.bst"]);
    run.assert_success("clean client build");
    assert!(run.element_says("hello.bst", "Pulled artifact"), "hello.bst was not pulled:\n{}", run.tail());
    assert_eq!(run.processed("Build"), Some(0), "the clean client must not build:\n{}", run.tail());
    assert_eq!(project.checkout_greeting("puller", &puller), expected_greeting());
}

#[test]
fn source_cache_push_then_clean_client_fetches_from_it() {
    let project = BstProject::write();
    let worker = cache_worker(&project);

    let pusher = Remotes { sources: Some((&worker, true)), ..Remotes::default() };
    let run = project.bst("pusher", &pusher, &["build", "hello.bst"]);
    run.assert_success("build and push sources");
    assert!(run.element_says("hello.bst", "Pushed source"), "hello.bst's source was not pushed:\n{}", run.tail());

    project.remove_upstream();

    let control = project.bst("control", &Remotes::default(), &["source", "fetch", "hello.bst"]);
    assert!(
        !control.status.success(),
        "without a source cache and without upstream, fetch must fail:\n{}",
        control.tail()
    );

    let puller = Remotes { sources: Some((&worker, false)), ..Remotes::default() };
    let run = project.bst("puller", &puller, &["source", "fetch", "hello.bst"]);
    run.assert_success("clean client source fetch");
    assert!(run.element_says("hello.bst", "Pulled source"), "hello.bst's source was not pulled:\n{}", run.tail());

    let target = project.root().join("source-checkout");
    let target_arg = target.to_string_lossy().into_owned();
    let run = project.bst("puller", &puller, &["source", "checkout", "--directory", &target_arg, "hello.bst"]);
    run.assert_success("source checkout");
    let payload = fs::read_to_string(target.join("hello/payload.txt")).expect("source checkout has hello/payload.txt");
    assert_eq!(payload, PAYLOAD_TEXT);
}

#[test]
fn remote_execution_builds_the_manual_element_on_the_worker() {
    let project = BstProject::write();
    let root = project.root().join("worker");
    require_namespaces();
    let worker = WorkerProcess::start(&root, &["--sandbox", "namespace"]);

    let remote = Remotes { execution: Some(&worker), ..Remotes::default() };
    let run = project.bst("remote", &remote, &["build", "hello.bst"]);
    run.assert_success("remote build");
    assert!(
        run.element_says("hello.bst", "Waiting for the remote build to complete"),
        "hello.bst was not built remotely:\n{}",
        run.tail()
    );
    assert_eq!(project.checkout_greeting("remote", &remote), expected_greeting());

    // The worker cached what it ran: a second, clean client gets the action
    // result from the worker's Action Cache without executing anything.
    let run = project.bst("remote-again", &remote, &["build", "hello.bst"]);
    run.assert_success("second remote build");
    assert!(
        run.element_says("hello.bst", "Action result found in action cache"),
        "the worker's Action Cache did not answer the second client:\n{}",
        run.tail()
    );
    assert!(
        !run.element_says("hello.bst", "Waiting for the remote build to complete"),
        "the second client executed again:\n{}",
        run.tail()
    );
    assert_eq!(project.checkout_greeting("remote-again", &remote), expected_greeting());
}
