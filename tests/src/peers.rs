//! Peers installed from registries by the scripts in `../shared/peers`, once
//! per machine into `${WEIR_PEER_CACHE:-$HOME/.cache/weir-peers}` and reused
//! (an empty cache installs them).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Where peers are installed.
pub fn peer_cache() -> PathBuf {
    std::env::var_os("WEIR_PEER_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/weir-peers")
    })
}

/// Holds the exclusive lock `name` in the peer cache until dropped: test
/// processes (nextest runs each test in its own) that install or share one
/// peer take turns.
pub fn lock(name: &str) -> fs::File {
    let cache = peer_cache();
    fs::create_dir_all(&cache).unwrap_or_else(|e| panic!("cannot create {}: {e}", cache.display()));
    let path = cache.join(format!("{name}.lock"));
    let file = fs::File::create(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    file.lock().unwrap_or_else(|e| panic!("cannot lock {}: {e}", path.display()));
    file
}

/// A `bst` command for a project at `project`, with its caches, logs and
/// configuration under the private directory `home` (a user configuration
/// `home/buildstream.conf` naming them is written, plus `extra` lines).
pub fn bst_command(home: &Path, project: &Path, extra: &str) -> Command {
    let config = home.join("buildstream.conf");
    fs::create_dir_all(home).unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
    let text = format!("cachedir: {0}/cache\nlogdir: {0}/logs\n{extra}", home.display());
    fs::write(&config, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
    let mut command = Command::new(bst());
    command
        .args(["--no-colors", "--no-interactive", "-c"])
        .arg(&config)
        .arg("-C")
        .arg(project)
        .env("XDG_CACHE_HOME", home.join("xdg-cache"))
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .stdin(Stdio::null());
    command
}

/// The `bst` executable of BuildStream 2.8.1, installed on first use by
/// `peers/bst/setup.sh` (with Debian's busybox-static and bubblewrap). Test
/// processes run in parallel under nextest: one installs, the others wait
/// on a lock file.
pub fn bst() -> &'static Path {
    static BST: OnceLock<PathBuf> = OnceLock::new();
    BST.get_or_init(|| {
        let cache = peer_cache();
        let venv = cache.join("bst-venv");
        let bst = venv.join("bin/bst");
        let lock = lock("bst-venv");
        if !bst.exists() || !Path::new("/bin/busybox").exists() || !Path::new("/usr/bin/bwrap").exists() {
            let script = crate::shared_dir().join("peers/bst/setup.sh");
            let status = Command::new("bash")
                .arg(&script)
                .arg(&venv)
                .stdin(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(status.success(), "{} {} failed: {status}", script.display(), venv.display());
        }
        assert!(bst.exists(), "{} missing after setup", bst.display());
        drop(lock);
        bst
    })
}
