//! The sandbox kinds ([`SandboxKind`]), starting a command in one
//! ([`SandboxedChild`]), killing it, and [`probe`], which the server calls at
//! start-up so that a worker never advertises a sandbox it cannot provide.
//!
//! Key decision: every command runs in its own process group, so a timeout or
//! a cancellation kills it and everything it started with one `killpg`. The
//! `host` sandbox runs the command directly in the staged input root (no
//! isolation; for tests and trusted set-ups); the `namespace` sandbox uses the
//! child-side set-up of [`super::namespace`].
//!
//! Commands are spawned on the calling (runtime worker) thread, never on the
//! blocking pool: the namespace sandbox's processes die with the thread that
//! forked them (`PR_SET_PDEATHSIG` is per thread), and tokio retires idle
//! blocking threads after a few seconds. Fork and exec are short; the wait is
//! asynchronous.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::str::FromStr;

use weir_proto::reapi::Command;

use super::namespace::NamespaceSetup;
use super::RunnerError;

/// Where commands run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SandboxKind {
    /// Directly on the host, in the staged input root; no isolation.
    Host,
    /// Fresh Linux user, mount, pid, uts, ipc and network namespaces whose `/`
    /// is the input root (the default for real builds).
    Namespace,
}

impl SandboxKind {
    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SandboxKind::Host => "host",
            SandboxKind::Namespace => "namespace",
        }
    }
}

impl fmt::Display for SandboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown sandbox name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sandbox {0:?}: expected \"host\" or \"namespace\"")]
pub struct UnknownSandbox(pub String);

impl FromStr for SandboxKind {
    type Err = UnknownSandbox;

    fn from_str(name: &str) -> Result<Self, UnknownSandbox> {
        match name {
            "host" => Ok(SandboxKind::Host),
            "namespace" => Ok(SandboxKind::Namespace),
            other => Err(UnknownSandbox(other.to_owned())),
        }
    }
}

/// The files that receive a command's stdout and stderr.
#[derive(Debug)]
pub(crate) struct Stdio {
    stdout: File,
    stderr: File,
}

impl Stdio {
    /// Creates both files. Blocking.
    pub fn create(stdout: &Path, stderr: &Path) -> Result<Self, RunnerError> {
        Ok(Stdio { stdout: output_file(stdout)?, stderr: output_file(stderr)? })
    }

    fn try_clone(&self) -> Result<Self, RunnerError> {
        let clone = |file: &File| file.try_clone().map_err(|e| RunnerError::io("duplicating an output file handle", e));
        Ok(Stdio { stdout: clone(&self.stdout)?, stderr: clone(&self.stderr)? })
    }
}

impl SandboxKind {
    /// Creates what the sandbox needs inside the staged root before the run
    /// (`proc` and `dev` mount points for `namespace`); returns the
    /// directories it created, to be removed again by [`Self::clean_root`].
    pub(crate) fn prepare_root(self, root: &Path) -> Result<Vec<PathBuf>, RunnerError> {
        let mut created = Vec::new();
        if self == SandboxKind::Namespace {
            for name in ["proc", "dev"] {
                let dir = root.join(name);
                match std::fs::create_dir(&dir) {
                    Ok(()) => created.push(dir),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        // Never mount onto a symlink (it would be followed).
                        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_dir()) {
                            return Err(RunnerError::InvalidInput(format!(
                                "/{name} in the input root must be a directory (the sandbox mounts onto it)"
                            )));
                        }
                    }
                    Err(e) => return Err(RunnerError::io(format!("creating mount point {}", dir.display()), e)),
                }
            }
        }
        Ok(created)
    }

    /// Removes the mount points [`Self::prepare_root`] created (if still empty).
    pub(crate) fn clean_root(created: &[PathBuf]) {
        for dir in created {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Prepares what the child needs to enter the sandbox (nothing for
    /// `host`). Blocking.
    pub(crate) fn setup(self, root: &Path, working_dir: &str, network: bool) -> Result<Option<NamespaceSetup>, RunnerError> {
        match self {
            SandboxKind::Host => Ok(None),
            SandboxKind::Namespace => NamespaceSetup::new(root, working_dir, network)
                .map(Some)
                .map_err(|e| RunnerError::io("preparing the namespace sandbox", e)),
        }
    }
}

/// Starts `command` in the staged `root`: on the host in
/// `root/working_dir` when `setup` is `None`, else inside the namespaces
/// `setup` describes. Must be called on a runtime thread (see the module doc).
///
/// A start that fails with ETXTBSY is tried again a few times: while one
/// action's executable input is being written, a process forked for another
/// action at that moment holds the write handle until it execs (or, for the
/// namespace sandbox's intermediate process, until it exits), so an exec of
/// that file can briefly fail although nothing is wrong with the action.
pub(crate) fn spawn(
    root: &Path,
    command: &Command,
    working_dir: &str,
    stdio: Stdio,
    setup: Option<NamespaceSetup>,
) -> Result<SandboxedChild, RunnerError> {
    const TEXT_BUSY_RETRIES: u32 = 6;
    let program = command.arguments.first().cloned().unwrap_or_default();
    let start = |stdio: Stdio, setup: Option<NamespaceSetup>| {
        let mut process = std::process::Command::new(&program);
        process
            .args(command.arguments.iter().skip(1))
            .env_clear()
            .envs(command.environment_variables.iter().map(|v| (&v.name, &v.value)))
            .stdin(std::process::Stdio::null())
            .stdout(stdio.stdout)
            .stderr(stdio.stderr)
            .process_group(0);
        match setup {
            None => {
                process.current_dir(root.join(working_dir));
            }
            Some(setup) => {
                // SAFETY: `enter` only makes raw system calls on data prepared
                // beforehand; it does not allocate or take locks.
                unsafe {
                    process.pre_exec(move || setup.enter());
                }
            }
        }
        let mut process = tokio::process::Command::from(process);
        process.kill_on_drop(true);
        process.spawn()
    };
    let mut attempt = 0;
    loop {
        match start(stdio.try_clone()?, setup.clone()) {
            Ok(child) => {
                let group = child.id().and_then(|id| i32::try_from(id).ok());
                return Ok(SandboxedChild { child, group });
            }
            Err(source) if source.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_BUSY_RETRIES => {
                attempt += 1;
                // 2, 4, ... 64 ms: the writer finishes a copy in far less.
                std::thread::sleep(std::time::Duration::from_millis(1 << attempt));
            }
            Err(source) => return Err(RunnerError::Spawn { program, source }),
        }
    }
}

fn output_file(path: &Path) -> Result<File, RunnerError> {
    File::create(path).map_err(|e| RunnerError::io(format!("creating {}", path.display()), e))
}

/// A running command in its own process group.
#[derive(Debug)]
pub(crate) struct SandboxedChild {
    child: tokio::process::Child,
    group: Option<i32>,
}

impl SandboxedChild {
    /// Waits for the command to exit. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Kills the whole process group with SIGKILL (also after the leader
    /// exited: its group lives on while background processes remain).
    pub fn kill_group(&mut self) {
        if let Some(group) = self.group {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }
}

/// The REAPI exit code for a status: the exit code, or 128 + the signal
/// number for a command killed by a signal (the shell's convention).
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    status.code().or_else(|| status.signal().map(|signal| 128 + signal)).unwrap_or(-1)
}

/// Checks that `kind` can be provided on this machine, using `scratch` (an
/// existing, writable directory) for a throw-away root. Blocking; call it
/// once at start-up and refuse to start on an error, whose message says
/// why.
pub fn probe(kind: SandboxKind, scratch: &Path) -> Result<(), RunnerError> {
    if kind == SandboxKind::Host {
        return Ok(());
    }
    let unavailable = |what: &str, e: &dyn fmt::Display| {
        RunnerError::SandboxUnavailable(format!(
            "the namespace sandbox cannot be set up on this machine ({what}: {e}); it needs unprivileged user \
             namespaces (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0) and permission \
             to mount proc inside them; use --sandbox host only where no isolation is needed"
        ))
    };
    let root = tempfile::Builder::new()
        .prefix("sandbox-probe-")
        .tempdir_in(scratch)
        .map_err(|e| RunnerError::io(format!("creating a probe directory in {}", scratch.display()), e))?;
    kind.prepare_root(root.path())?;
    let setup = NamespaceSetup::new(root.path(), "", false).map_err(|e| unavailable("preparing", &e))?.probe_only();
    let mut command = std::process::Command::new("/weir-sandbox-probe");
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    // SAFETY: as in `spawn`: raw system calls on prepared data only.
    unsafe {
        command.pre_exec(move || setup.enter());
    }
    let status = command.status().map_err(|e| unavailable("entering the namespaces", &e))?;
    if !status.success() {
        return Err(unavailable("checking pid 1 and /proc", &format!("probe exited with {status}")));
    }
    Ok(())
}
