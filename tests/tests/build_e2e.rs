//! End-to-end tests of `weir build` and `weir artifact` (issue 7) against a
//! real `weir-worker` started on 127.0.0.1 port 0 with the host sandbox.
//!
//! Each test writes a small project into a temporary directory: an `import`
//! base (busybox from the host, `/bin/busybox`, as the demo does),
//! `manual` elements on top and a `stack`. Because the host sandbox runs
//! commands on the host in the staged input root, the manual elements write
//! to the install root by its path relative to the build root
//! (`../../../buildstream-install`); in the namespace sandbox the usual
//! `%{install-root}` works, which one test checks with the default
//! (namespace) sandbox. One test runs a cache node and two executor nodes
//! and kills an executor in the middle of a build. The worker is killed when each test ends
//! (`WorkerProcess` kills on drop). The last test builds `examples/busybox`
//! with the embedded worker (no remote) and then with a separate one.

mod busybox_example;
mod worker_process;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use worker_process::WorkerProcess;

/// The install root seen from a build root `/buildstream/<project>/<element>`.
const INSTALL: &str = "../../../buildstream-install";

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project `e2e` with an imported base (busybox + a marker file).
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "project.conf", "name: e2e\nmin-version: 2.0\nelement-path: elements\n");
        write(root, "files/base/etc/base-marker", "base\n");
        if Path::new("/bin/busybox").exists() {
            std::fs::create_dir_all(root.join("files/base/bin")).unwrap();
            std::fs::copy("/bin/busybox", root.join("files/base/bin/busybox")).unwrap();
        }
        write(root, "elements/base.bst", "kind: import\nsources:\n- kind: local\n  path: files/base\n");
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A manual element with `commands` as install-commands and build-depends on `deps`.
    fn manual(&self, name: &str, deps: &[&str], commands: &[&str]) {
        let mut text = String::from("kind: manual\n");
        if !deps.is_empty() {
            text.push_str("build-depends:\n");
            for dep in deps {
                text.push_str(&format!("- {dep}\n"));
            }
        }
        text.push_str("config:\n  install-commands:\n");
        for command in commands {
            text.push_str(&format!("  - {}\n", serde_json::to_string(command).unwrap()));
        }
        write(self.path(), &format!("elements/{name}"), &text);
    }

    /// Runs `weir ARGS --remote URL` in the project directory.
    fn weir(&self, worker: &WorkerProcess, args: &[&str]) -> Output {
        let remote = format!("grpc://{}", worker.addr);
        let (command, rest) = args.split_at(if args.first() == Some(&"artifact") { 2 } else { 1 });
        Command::new(weir_tests::weir_bin())
            .current_dir(self.path())
            .args(command)
            .args(["--remote", &remote])
            .args(rest)
            .env_remove("WEIR_REMOTE")
            .output()
            .expect("weir runs")
    }

    /// `weir build --json TARGET`, which must succeed; its events.
    fn build_ok(&self, worker: &WorkerProcess, target: &str) -> Vec<serde_json::Value> {
        let run = self.weir(worker, &["build", "--json", target]);
        assert!(run.status.success(), "stderr: {}", text(&run.stderr));
        weir_tests::events::parse(&run)
    }

    /// `weir artifact checkout --directory DIR ELEMENT`, which must succeed.
    fn checkout(&self, worker: &WorkerProcess, element: &str, dir: &Path) {
        let run = self.weir(worker, &["artifact", "checkout", "--directory", dir.to_str().unwrap_or_default(), element]);
        assert!(run.status.success(), "stderr: {}", text(&run.stderr));
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn worker(state: &Path) -> WorkerProcess {
    WorkerProcess::start(state, &["--sandbox", "host"])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}



#[test]
fn import_is_built_once_then_cached_and_checks_out() {
    let state = tempfile::tempdir().unwrap();
    let worker = worker(state.path());
    let project = Project::new();
    let first = project.build_ok(&worker, "base.bst");
    assert_eq!(weir_tests::events::count(&first, "finished"), 1, "{first:?}");

    let second = project.build_ok(&worker, "base.bst");
    assert_eq!((weir_tests::events::count(&second, "cached"), weir_tests::events::count(&second, "started")), (1, 0), "{second:?}");

    let out = project.path().join("checkout");
    project.checkout(&worker, "base.bst", &out);
    assert_eq!(std::fs::read_to_string(out.join("etc/base-marker")).unwrap(), "base\n");

    let listing = project.weir(&worker, &["artifact", "list-contents", "base.bst"]);
    assert!(listing.status.success());
    assert!(text(&listing.stdout).contains("\tetc/base-marker"), "{}", text(&listing.stdout));
}

#[test]
fn manual_elements_build_then_nothing_is_rebuilt() {
    let state = tempfile::tempdir().unwrap();
    let worker = worker(state.path());
    let project = Project::new();
    project.manual(
        "hello.bst",
        &["base.bst"],
        &[
            &format!("mkdir -p {INSTALL}/usr/share"),
            &format!("cat ../../../etc/base-marker > {INSTALL}/usr/share/hello.txt"),
            &format!("echo hello >> {INSTALL}/usr/share/hello.txt"),
        ],
    );
    project.manual("second.bst", &["base.bst", "hello.bst"], &[&format!("mkdir -p {INSTALL} && cp ../../../usr/share/hello.txt {INSTALL}/copy.txt")]);
    write(project.path(), "elements/all.bst", "kind: stack\ndepends:\n- second.bst\n");

    let first = project.build_ok(&worker, "all.bst");
    assert_eq!(weir_tests::events::count(&first, "finished"), 4, "{first:?}");

    let second = project.build_ok(&worker, "all.bst");
    assert_eq!((weir_tests::events::count(&second, "cached"), weir_tests::events::count(&second, "started")), (4, 0), "{second:?}");

    let out: PathBuf = project.path().join("out");
    project.checkout(&worker, "second.bst", &out);
    assert_eq!(std::fs::read_to_string(out.join("copy.txt")).unwrap(), "base\nhello\n");

    let log = project.weir(&worker, &["artifact", "log", "hello.bst"]);
    assert!(log.status.success());
    assert!(text(&log.stdout).contains("Running echo hello"), "{}", text(&log.stdout));
}

#[test]
fn a_failing_command_reports_the_log_tail_and_exits_non_zero() {
    let state = tempfile::tempdir().unwrap();
    let worker = worker(state.path());
    let project = Project::new();
    project.manual("bad.bst", &["base.bst"], &["echo 'about to fail'", "echo 'something is wrong' >&2; exit 7"]);
    project.manual("good.bst", &["base.bst"], &[&format!("mkdir -p {INSTALL} && echo ok > {INSTALL}/ok")]);
    project.manual("after.bst", &["bad.bst"], &["true"]);
    write(project.path(), "elements/all.bst", "kind: stack\ndepends:\n- after.bst\n- good.bst\n");

    let run = project.weir(&worker, &["build", "--on-error", "continue", "all.bst"]);
    assert_eq!(run.status.code(), Some(1), "stderr: {}", text(&run.stderr));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("[FAILURE] bad.bst") && stderr.contains("exit code 7"), "{stderr}");
    assert!(stderr.contains("| something is wrong") && stderr.contains("| about to fail"), "{stderr}");
    // The independent branch was still built; the dependant was skipped.
    assert!(stderr.contains("[success] good.bst"), "{stderr}");
    assert!(stderr.contains("[skipped] after.bst"), "{stderr}");

    let json = project.weir(&worker, &["build", "--json", "bad.bst"]);
    assert_eq!(json.status.code(), Some(1));
    let failed: Vec<_> = weir_tests::events::parse(&json).into_iter().filter(|e| e["event"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["exit_code"], 7);
    assert!(failed[0]["logs"].as_array().is_some_and(|l| !l.is_empty()), "{failed:?}");
}

#[test]
fn namespace_sandbox_builds_with_install_root_and_an_integrating_compose() {
    let state = tempfile::tempdir().unwrap();
    // The default sandbox: the input root is `/`, so `%{install-root}` and `/bin/sh` are the staged ones.
    let worker = WorkerProcess::start(state.path(), &[]);
    let project = Project::new();
    for applet in ["sh", "mkdir", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", project.path().join("files/base/bin").join(applet)).unwrap();
    }
    project.manual("hello.bst", &["base.bst"], &["mkdir -p %{install-root}/usr/bin %{install-root}/usr/include", "echo tool > %{install-root}/usr/bin/tool", "echo header > %{install-root}/usr/include/tool.h"]);
    // An integration command, run by the compose element inside the sandbox.
    let hello = project.path().join("elements/hello.bst");
    let mut element = std::fs::read_to_string(&hello).unwrap();
    element.push_str("public:\n  bst:\n    integration-commands:\n    - echo integrated > /usr/bin/integrated\n");
    std::fs::write(&hello, element).unwrap();
    write(
        project.path(),
        "elements/image.bst",
        "kind: compose\nbuild-depends:\n- base.bst\n- hello.bst\nconfig:\n  exclude:\n  - devel\n",
    );
    project.build_ok(&worker, "image.bst");
    let out = project.path().join("image");
    project.checkout(&worker, "image.bst", &out);
    assert_eq!(std::fs::read_to_string(out.join("usr/bin/tool")).unwrap(), "tool\n");
    assert_eq!(std::fs::read_to_string(out.join("usr/bin/integrated")).unwrap(), "integrated\n");
    // `devel` (the project's default split rules put /usr/include there) was excluded.
    assert!(!out.join("usr/include/tool.h").exists());
}

/// An executor node whose CAS reads and writes through to `cache`.
fn executor(state: &Path, cache: &WorkerProcess) -> WorkerProcess {
    let config = state.join("executor.yaml");
    std::fs::write(
        &config,
        format!(
            "role: executor\nstorage:\n  fast_slow:\n    fast: {{ filesystem: {{ path: cas }} }}\n    slow: {{ upstream: {{ endpoint: \"http://{}\" }} }}\nexecution:\n  sandbox: host\n",
            cache.addr
        ),
    )
    .unwrap();
    WorkerProcess::start(state, &["--config", config.to_str().unwrap()])
}

#[test]
fn a_worker_killed_mid_build_is_replaced_by_another_endpoint() {
    let states: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cache = WorkerProcess::start(states[0].path(), &["--role", "cache"]);
    let mut first = executor(states[1].path(), &cache);
    let second = executor(states[2].path(), &cache);
    let project = Project::new();
    for name in ["slow1.bst", "slow2.bst"] {
        project.manual(name, &["base.bst"], &["sleep 3", &format!("mkdir -p {INSTALL} && echo {name} > {INSTALL}/{name}")]);
    }
    write(project.path(), "elements/all.bst", "kind: stack\ndepends:\n- slow1.bst\n- slow2.bst\n");

    let remotes = format!("grpc://{},grpc://{},grpc://{}", cache.addr, first.addr, second.addr);
    let mut child = Command::new(weir_tests::weir_bin())
        .current_dir(project.path())
        .args(["build", "--json", "--builders", "2", "--remote", &remotes, "all.bst"])
        .env_remove("WEIR_REMOTE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str(&line) {
                let _ = tx.send(event);
            }
        }
    });
    // Once both slow elements run (one on each executor), kill the first executor.
    let mut started = 0;
    let mut events = Vec::new();
    while started < 2 {
        let event = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("both slow elements start");
        if event["event"] == "started" {
            started += 1;
        }
        events.push(event);
    }
    std::thread::sleep(std::time::Duration::from_millis(1000));
    first.kill9();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    events.extend(rx.try_iter());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}\n{events:?}");
    assert!(weir_tests::events::count(&events, "retrying") >= 1, "{events:?}");
    for name in ["slow1.bst", "slow2.bst"] {
        let finished = events.iter().filter(|e| e["event"] == "finished" && e["element"] == name).count();
        assert_eq!(finished, 1, "{name}: {events:?}");
    }
    // The artifacts are on the cache node: a build through it alone (it
    // executes nothing) finds everything.
    let replay = project.build_ok(&cache, "all.bst");
    assert_eq!((weir_tests::events::count(&replay, "cached"), weir_tests::events::count(&replay, "started")), (4, 0), "{replay:?}");
}

#[test]
fn a_scheduler_killed_mid_build_rebuilds_only_what_was_not_finished() {
    let state = tempfile::tempdir().unwrap();
    let worker = worker(state.path());
    let project = Project::new();
    project.manual("quick.bst", &["base.bst"], &[&format!("mkdir -p {INSTALL} && echo quick > {INSTALL}/quick")]);
    project.manual("slow.bst", &["quick.bst"], &["sleep 2", &format!("mkdir -p {INSTALL} && echo slow > {INSTALL}/slow")]);
    let remote = format!("grpc://{}", worker.addr);
    let mut child = Command::new(weir_tests::weir_bin())
        .current_dir(project.path())
        .args(["build", "--json", "--remote", &remote, "slow.bst"])
        .env_remove("WEIR_REMOTE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    use std::io::BufRead;
    for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if event["event"] == "started" && event["element"] == "slow.bst" {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let replay = project.build_ok(&worker, "slow.bst");
    let started: Vec<_> = replay.iter().filter(|e| e["event"] == "started").map(|e| e["element"].as_str().unwrap_or("")).collect();
    assert_eq!(started, ["slow.bst"], "{replay:?}");
    assert_eq!(weir_tests::events::count(&replay, "cached"), 2);
}

#[test]
fn remotes_can_come_from_a_buildstream_user_configuration() {
    let state = tempfile::tempdir().unwrap();
    let worker = worker(state.path());
    let project = Project::new();
    project.manual("hello.bst", &["base.bst"], &[&format!("mkdir -p {INSTALL} && echo hi > {INSTALL}/hi")]);
    let config = project.path().join("user.conf");
    std::fs::write(&config, format!("remote-execution:\n  execution-service:\n    url: http://{}\n", worker.addr)).unwrap();
    let run = Command::new(weir_tests::weir_bin())
        .current_dir(project.path())
        .args(["-c", config.to_str().unwrap(), "build", "--json", "hello.bst"])
        .env_remove("WEIR_REMOTE")
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(weir_tests::events::count(&weir_tests::events::parse(&run), "finished"), 2);
}

#[test]
fn without_a_remote_an_unusable_cache_dir_is_a_clear_error() {
    let project = Project::new();
    let run = Command::new(weir_tests::weir_bin())
        .current_dir(project.path())
        .args(["build", "--cache-dir", "/dev/null/weir", "base.bst"])
        .env_remove("WEIR_REMOTE")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = text(&run.stderr);
    assert!(stderr.contains("EMBEDDED_WORKER") && stderr.contains("/dev/null/weir"), "{stderr}");
}

/// Runs `weir` in `project` with no remote (the embedded worker).
fn weir_embedded(project: &Path, cache_home: &Path, args: &[&str]) -> Output {
    Command::new(weir_tests::weir_bin())
        .current_dir(project)
        .args(args)
        .env_remove("WEIR_REMOTE")
        .env_remove("WEIR_CACHE_DIR")
        .env("XDG_CACHE_HOME", cache_home)
        .output()
        .expect("weir runs")
}


#[test]
fn show_state_says_cached_from_the_configured_cache() {
    let project = busybox_example::prepared();
    let cache_home = tempfile::tempdir().unwrap();
    let states = || -> std::collections::BTreeMap<String, String> {
        let run = weir_embedded(project.path(), cache_home.path(), &["show", "--format", "%{name} %{state}", "all.bst"]);
        assert!(run.status.success(), "{}", text(&run.stderr));
        text(&run.stdout).lines().filter_map(|l| l.split_once(' ')).map(|(n, s)| (n.to_string(), s.to_string())).collect()
    };
    // No cache yet: nothing is cached (and show creates none).
    let before = states();
    assert_eq!(before["base.bst"], "buildable");
    assert_eq!(before["greeting.bst"], "waiting");
    assert!(!cache_home.path().join("weir").exists(), "show created a cache");
    // Build part of the graph: what was built is cached, what it unblocks is buildable.
    let run = weir_embedded(project.path(), cache_home.path(), &["build", "greeting.bst"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let after = states();
    assert_eq!((after["base.bst"].as_str(), after["greeting.bst"].as_str()), ("cached", "cached"));
    assert_eq!(after["tools.bst"], "buildable");
    assert_eq!(after["image.bst"], "waiting");
}

#[test]
fn the_busybox_example_builds_with_the_embedded_worker_as_on_a_separate_one() {
    let project = busybox_example::prepared();
    let cache_home = tempfile::tempdir().unwrap();
    // No remote, no --cache-dir: the embedded worker in $XDG_CACHE_HOME/weir, namespace sandbox.
    let first = weir_embedded(project.path(), cache_home.path(), &["build", "--json", "all.bst"]);
    assert!(first.status.success(), "stderr: {}", text(&first.stderr));
    let first = weir_tests::events::parse(&first);
    assert_eq!(weir_tests::events::count(&first, "finished"), 6, "{first:?}");
    let cache_dir = cache_home.path().join("weir");
    assert!(cache_dir.join("cas").is_dir(), "the CAS is under the user cache directory");

    let second = weir_embedded(project.path(), cache_home.path(), &["build", "--json", "all.bst"]);
    assert!(second.status.success(), "stderr: {}", text(&second.stderr));
    let second = weir_tests::events::parse(&second);
    assert_eq!((weir_tests::events::count(&second, "finished"), weir_tests::events::count(&second, "cached")), (0, 6), "{second:?}");
    assert_eq!(weir_tests::events::keys(&first), weir_tests::events::keys(&second));

    let out = tempfile::tempdir().unwrap();
    let checkout = |element: &str, dir: &Path| {
        let cache = cache_dir.to_str().unwrap_or_default();
        let run = weir_embedded(project.path(), Path::new("/nonexistent"), &["artifact", "checkout", "--cache-dir", cache, "--directory", dir.to_str().unwrap_or_default(), element]);
        assert!(run.status.success(), "stderr: {}", text(&run.stderr));
    };
    let image = out.path().join("image");
    checkout("image.bst", &image);
    assert_eq!(std::fs::read_to_string(image.join("usr/share/greeting/message.txt")).unwrap(), "Hello from greeting.bst\nfrom a busybox stack built by weir\n");
    // The integration command of greeting.bst ran inside the compose.
    assert_eq!(std::fs::read_to_string(image.join("usr/share/greeting/index")).unwrap(), "index\nmessage.txt\n", "the redirection creates index before ls runs");
    assert_eq!(std::fs::read_link(image.join("bin/sh")).unwrap(), Path::new("busybox"));
    assert!(image.join("usr/bin/count-words").is_file());
    assert!(!image.join("usr/include/greeting.h").exists(), "devel files are excluded");
    let report = out.path().join("report");
    checkout("report.bst", &report);
    // The script element ran the image's own tool on the image.
    assert_eq!(std::fs::read_to_string(report.join("report.txt")).unwrap(), "10 /usr/share/greeting/message.txt\nindex\nmessage.txt\n");
    let log = weir_embedded(project.path(), cache_home.path(), &["artifact", "log", "greeting.bst"]);
    assert!(text(&log.stdout).contains("Running cp message.txt"), "{}", text(&log.stdout));

    // The same project through a separately started worker (namespace sandbox).
    let state = tempfile::tempdir().unwrap();
    let worker = WorkerProcess::start(state.path(), &[]);
    let remote = Project { dir: project };
    let separate = remote.build_ok(&worker, "all.bst");
    assert_eq!(weir_tests::events::count(&separate, "finished"), 6);
    assert_eq!(weir_tests::events::keys(&separate), weir_tests::events::keys(&first), "the same keys with either worker");
    for element in ["image.bst", "report.bst"] {
        let dir = out.path().join(format!("separate-{element}"));
        remote.checkout(&worker, element, &dir);
        let embedded_dir = out.path().join(element.trim_end_matches(".bst"));
        assert_eq!(busybox_example::snapshot(&dir), busybox_example::snapshot(&embedded_dir), "{element}: the same files");
    }
}
