//! `weir build` through BuildGrid 0.9.1 from PyPI as an existing REAPI
//! cluster (issue 7, "Real projects"): `examples/busybox` gets the same keys
//! and the same checked-out files as with the embedded worker, and a second
//! build through BuildGrid builds nothing.
//!
//! BuildGrid is installed once by `../shared/peers/buildgrid/setup.sh` into
//! `${WEIR_PEER_CACHE:-$HOME/.cache/weir-peers}/buildgrid` (PyPI and Debian
//! registries; an empty cache installs it) and started by `start.sh ... exec`
//! (all-in-one server, PostgreSQL scheduler) on free loopback ports, in a
//! private run directory per test (its own PostgreSQL cluster, logs, PIDs),
//! so tests and developers never share a server. [`BuildGrid`]'s `Drop`
//! stops everything with `stop.sh`.
//!
//! Key decision: the bots. The shared `mini_bot.py` runs each command on the
//! host with the input root as working directory; BuildStream-shaped actions
//! use absolute paths inside their input root (`%{install-root}` is
//! `/buildstream-install`, integration commands write `/usr/share/...`,
//! scripts start with `#!/bin/sh`), so on the host they would write into the
//! host's `/` — as root here. BuildGrid's usual runner
//! (buildbox-run-bubblewrap) runs each command in a chroot of its input
//! root; `build_buildgrid/bwrap_bot.py` gives mini_bot exactly that (it wraps
//! the one `subprocess.run` call in `bwrap --bind ROOT /`). `start.sh` is
//! told to start zero of its own bots (`BOTS=0`) and the test starts the
//! wrapped bot. BuildGrid serves no Remote Asset API: weir finds that out
//! from the first `UNIMPLEMENTED` answer and indexes artifacts in the
//! Action Cache, which this test exercises end to end.

mod busybox_example;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one `weir` or script invocation may take before the test gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(180);

/// The installed BuildGrid peer: the directory holding `bgd-venv`.
fn buildgrid_peer() -> &'static Path {
    static PEER: OnceLock<PathBuf> = OnceLock::new();
    PEER.get_or_init(|| {
        let dir = weir_tests::peers::peer_cache().join("buildgrid");
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // Test processes run in parallel (nextest): one installs, the others wait.
        let lock = weir_tests::peers::lock("buildgrid");
        if !dir.join("bgd-venv/bin/bgd").exists() || !postgres_installed() {
            let script = weir_tests::shared_dir().join("peers/buildgrid/setup.sh");
            let output = run(Command::new("bash").arg(&script).arg(&dir), Duration::from_secs(540));
            assert!(output.status.success(), "{} failed:\n{}", script.display(), all_output(&output));
        }
        if which("bwrap").is_none() {
            // The bots' chroot (see the module doc); Debian's package, as peers/bst/setup.sh installs it.
            let output = run(Command::new("apt-get").args(["install", "-y", "-qq", "bubblewrap"]), Duration::from_secs(300));
            assert!(output.status.success() && which("bwrap").is_some(), "cannot install bubblewrap:\n{}", all_output(&output));
        }
        drop(lock);
        dir
    })
}

fn postgres_installed() -> bool {
    fs::read_dir("/usr/lib/postgresql")
        .map(|versions| versions.flatten().any(|v| v.path().join("bin/initdb").exists()))
        .unwrap_or(false)
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// A free loopback port (released before use; the race is harmless here).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binds a loopback port").port()
}

/// A running BuildGrid (server, PostgreSQL, bots) in a private run directory;
/// dropping it stops everything.
struct BuildGrid {
    run_dir: tempfile::TempDir,
    port: u16,
    bot: Option<Child>,
}

impl BuildGrid {
    /// Starts the all-in-one server and `bots` chrooting bots.
    fn start(peer: &Path, bots: usize) -> BuildGrid {
        let run_dir = tempfile::tempdir().expect("creates a run directory");
        // PostgreSQL runs as the `postgres` user when the test runs as root: it must reach DIR/pg.
        fs::set_permissions(run_dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod the run directory");
        std::os::unix::fs::symlink(peer.join("bgd-venv"), run_dir.path().join("bgd-venv")).expect("links the venv");
        let mut grid = BuildGrid { run_dir, port: free_port(), bot: None };
        let shared = weir_tests::shared_dir().join("peers/buildgrid");
        let started = run(
            Command::new("bash")
                .arg(shared.join("start.sh"))
                .arg(grid.run_dir.path())
                .arg("exec")
                .env("BGD_PORT", grid.port.to_string())
                .env("PG_PORT", free_port().to_string())
                .env("BOTS", "0"),
            STEP_TIMEOUT,
        );
        assert!(started.status.success(), "start.sh failed:\n{}", all_output(&started));
        let log = fs::File::create(grid.run_dir.path().join("bwrap-bot.log")).expect("creates the bot log");
        let bot = Command::new(grid.run_dir.path().join("bgd-venv/bin/python"))
            .arg(weir_tests::repo_root().join("tests/tests/build_buildgrid/bwrap_bot.py"))
            .arg(shared.join("mini_bot.py"))
            .args(["--target", &format!("127.0.0.1:{}", grid.port), "--bots", &bots.to_string()])
            .arg("--work-dir")
            .arg(grid.run_dir.path().join("bot-work"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clones the log handle"))
            .stderr(log)
            .spawn()
            .expect("starts the bot");
        grid.bot = Some(bot);
        grid
    }

    fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// The server's and the bots' logs, for failure messages.
    fn logs(&self) -> String {
        ["bgd-exec.log", "bwrap-bot.log"]
            .iter()
            .map(|name| format!("== {name}\n{}", fs::read_to_string(self.run_dir.path().join(name)).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        if let Some(mut bot) = self.bot.take() {
            let _ = bot.kill();
            let _ = bot.wait();
        }
        let stop = weir_tests::shared_dir().join("peers/buildgrid/stop.sh");
        let _ = run(Command::new("bash").arg(stop).arg(self.run_dir.path()), Duration::from_secs(60));
    }
}

/// Runs `command` to completion, killing it after `timeout` (the first
/// BuildGrid install stays under nextest's ten-minute limit this way).
fn run(command: &mut Command, timeout: Duration) -> Output {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("starts a process");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waits for the process") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("reaps the killed process");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() }
}

fn all_output(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// `weir ARGS` in `project`, with the user cache under `cache_home`.
fn weir(project: &Path, cache_home: &Path, args: &[&str]) -> Output {
    run(
        Command::new(weir_tests::weir_bin())
            .current_dir(project)
            .args(args)
            .env_remove("WEIR_REMOTE")
            .env_remove("WEIR_CACHE_DIR")
            .env("XDG_CACHE_HOME", cache_home),
        STEP_TIMEOUT,
    )
}




#[test]
fn the_busybox_example_builds_through_buildgrid_as_with_the_embedded_worker() {
    let peer = buildgrid_peer();
    let project = busybox_example::prepared();
    let project = project.path();
    let scratch = tempfile::tempdir().expect("creates a scratch directory");
    let cache_home = scratch.path().join("xdg-cache");
    let cache_dir = scratch.path().join("weir-cache");
    let cache_arg = cache_dir.to_str().expect("a UTF-8 path");

    let show = weir(project, &cache_home, &["show", "--format", "%{name} %{full-key}", "all.bst"]);
    assert!(show.status.success(), "{}", all_output(&show));
    let shown: BTreeMap<String, String> = String::from_utf8_lossy(&show.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, key)| (name.to_string(), key.to_string()))
        .collect();
    assert_eq!(shown.len(), 6, "{shown:?}");

    // The embedded worker (namespace sandbox), in a private cache directory.
    let embedded = weir(project, &cache_home, &["build", "--json", "--cache-dir", cache_arg, "all.bst"]);
    assert!(embedded.status.success(), "{}", all_output(&embedded));
    assert_eq!(weir_tests::events::keys(&weir_tests::events::parse(&embedded)), shown, "the embedded build's keys are weir show's");

    let grid = BuildGrid::start(peer, 2);
    let remote = grid.url();
    let first = weir(project, &cache_home, &["build", "--json", "--remote", &remote, "all.bst"]);
    assert!(first.status.success(), "{}\n{}", all_output(&first), grid.logs());
    let first = weir_tests::events::parse(&first);
    assert_eq!(weir_tests::events::count(&first, "finished"), 6, "BuildGrid starts empty: everything is built\n{first:?}");
    assert!(weir_tests::events::count(&first, "started") >= 3, "the manual, compose and script actions ran on the bots\n{first:?}");
    assert_eq!(weir_tests::events::keys(&first), shown, "the same keys through BuildGrid");

    let second = weir(project, &cache_home, &["build", "--json", "--remote", &remote, "all.bst"]);
    assert!(second.status.success(), "{}\n{}", all_output(&second), grid.logs());
    let second = weir_tests::events::parse(&second);
    assert_eq!((weir_tests::events::count(&second, "cached"), weir_tests::events::count(&second, "started"), weir_tests::events::count(&second, "finished")), (6, 0, 0), "{second:?}");

    // Every element of the stack, checked out from BuildGrid and from the embedded cache.
    for element in shown.keys() {
        let name = element.trim_end_matches(".bst");
        let from_grid = scratch.path().join(format!("grid-{name}"));
        let from_embedded = scratch.path().join(format!("embedded-{name}"));
        for (dir, where_from) in [(&from_grid, ["--remote", remote.as_str()]), (&from_embedded, ["--cache-dir", cache_arg])] {
            let dir_arg = dir.to_str().expect("a UTF-8 path");
            let checkout = weir(project, &cache_home, &["artifact", "checkout", where_from[0], where_from[1], "--directory", dir_arg, element]);
            assert!(checkout.status.success(), "{element}: {}", all_output(&checkout));
        }
        assert_eq!(busybox_example::snapshot(&from_grid), busybox_example::snapshot(&from_embedded), "{element}: the same files");
    }
    let report = fs::read_to_string(scratch.path().join("grid-report/report.txt")).expect("report.bst made report.txt");
    assert_eq!(report, "10 /usr/share/greeting/message.txt\nindex\nmessage.txt\n", "the script ran the image's tool in its chroot");
    let log = weir(project, &cache_home, &["artifact", "log", "--remote", &remote, "greeting.bst"]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("Running cp message.txt"), "the bot's stdout is the log: {}", all_output(&log));
}
