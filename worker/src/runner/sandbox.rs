//! The sandbox kinds ([`SandboxKind`]), starting a command in one
//! ([`SandboxedChild`]), killing it, and [`probe`], which the server calls at
//! start-up so that a worker never advertises a sandbox it cannot provide.
//!
//! Key decision: every command runs in its own process group, so a timeout or
//! a cancellation kills it and everything it started with one `killpg`. The
//! `host` sandbox runs the command directly in the staged input root (no
//! isolation; for tests and trusted set-ups); the `namespace` sandbox starts
//! it with [`super::namespace`]. Both capture stdout and stderr in memory
//! files ([`Stdio`]).
//!
//! Commands are spawned on the calling (runtime worker) thread, never on the
//! blocking pool: the namespace sandbox's processes die with the thread that
//! started them (`PR_SET_PDEATHSIG` is per thread), and tokio retires idle
//! blocking threads after a few seconds. Starting is short; the wait is
//! asynchronous.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::str::FromStr;

use weir_proto::reapi::Command;

use super::inode_pool::{create_dir, InodePool};
use super::exec_image::ExecImage;
use super::namespace::NamespaceSetup;
use super::pidfd_child::PidfdChild;
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

/// Where a command's stdin, stdout and stderr go: `/dev/null`, and two
/// memory files (`memfd`) that the runner reads back after the run.
///
/// Memory files rather than files in the action directory: capturing the
/// output then creates and deletes no inode on the worker's disk, which on
/// a busy worker is a noticeable part of each action's cost.
#[derive(Debug)]
pub(crate) struct Stdio {
    stdin: File,
    /// The command's stdout.
    pub stdout: File,
    /// The command's stderr.
    pub stderr: File,
}

impl Stdio {
    /// Opens `/dev/null` and creates both memory files.
    pub fn create() -> Result<Self, RunnerError> {
        let memory_file = |name: &std::ffi::CStr| {
            nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
                .map(File::from)
                .map_err(|e| RunnerError::io("creating a memory file for the command's output", e.into()))
        };
        Ok(Stdio {
            stdin: File::open("/dev/null").map_err(|e| RunnerError::io("opening /dev/null", e))?,
            stdout: memory_file(c"stdout")?,
            stderr: memory_file(c"stderr")?,
        })
    }

    fn raw(&self) -> [RawFd; 3] {
        [self.stdin.as_raw_fd(), self.stdout.as_raw_fd(), self.stderr.as_raw_fd()]
    }
}

impl SandboxKind {
    /// Creates what the sandbox needs inside the staged root before the run
    /// (`proc` and `dev` mount points for `namespace`); returns the
    /// directories it created, to be removed again by [`Self::clean_root`].
    pub(crate) fn prepare_root(self, root: &Path, dirs: Option<&InodePool>) -> Result<Vec<PathBuf>, RunnerError> {
        let mut created = Vec::new();
        if self == SandboxKind::Namespace {
            for name in ["proc", "dev"] {
                let dir = root.join(name);
                match create_dir(dirs, &dir) {
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

    /// Removes the mount points [`Self::prepare_root`] created (if still
    /// empty), keeping them in `dirs`.
    pub(crate) fn clean_root(created: &[PathBuf], dirs: &InodePool) {
        for dir in created {
            if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none()) {
                dirs.remove_tree(dir);
            }
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
/// action's executable input is being written, a process that another part
/// of the worker forks at that moment holds the write handle until it
/// execs, so an exec of that file can briefly fail although nothing is
/// wrong with the action.
pub(crate) fn spawn(
    root: &Path,
    command: &Command,
    working_dir: &str,
    stdio: &Stdio,
    setup: Option<&NamespaceSetup>,
) -> Result<SandboxedChild, RunnerError> {
    const TEXT_BUSY_RETRIES: u32 = 6;
    let image = ExecImage::new(command).map_err(|e| RunnerError::InvalidCommand(e.to_string()))?;
    let start = || -> io::Result<ChildProcess> {
        match setup {
            Some(setup) => setup.spawn(&image, stdio.raw()).map(ChildProcess::Namespace),
            None => {
                let mut process = std::process::Command::new(image.program());
                process
                    .args(command.arguments.iter().skip(1))
                    .env_clear()
                    .envs(command.environment_variables.iter().map(|v| (&v.name, &v.value)))
                    .stdin(std::process::Stdio::null())
                    .stdout(stdio.stdout.try_clone()?)
                    .stderr(stdio.stderr.try_clone()?)
                    .process_group(0)
                    .current_dir(root.join(working_dir));
                let mut process = tokio::process::Command::from(process);
                process.kill_on_drop(true);
                process.spawn().map(ChildProcess::Host)
            }
        }
    };
    let mut attempt = 0;
    loop {
        match start() {
            Ok(child) => return Ok(child.into()),
            Err(source) if source.raw_os_error() == Some(libc::ETXTBSY) && attempt < TEXT_BUSY_RETRIES => {
                attempt += 1;
                // 2, 4, ... 64 ms: the writer finishes a copy in far less.
                std::thread::sleep(std::time::Duration::from_millis(1 << attempt));
            }
            Err(source) => return Err(RunnerError::Spawn { program: image.program().to_owned(), source }),
        }
    }
}

/// A running command, leader of its own process group.
#[derive(Debug)]
pub(crate) struct SandboxedChild {
    process: ChildProcess,
    /// The process group, taken at start: the leader's id is gone once it
    /// has been reaped, while the group may live on.
    group: Option<i32>,
}

#[derive(Debug)]
enum ChildProcess {
    /// Started on the host by tokio.
    Host(tokio::process::Child),
    /// Pid 1 of its own namespaces.
    Namespace(PidfdChild),
}

impl From<ChildProcess> for SandboxedChild {
    fn from(process: ChildProcess) -> Self {
        let group = match &process {
            ChildProcess::Host(child) => child.id().and_then(|id| i32::try_from(id).ok()),
            ChildProcess::Namespace(child) => Some(child.id()),
        };
        SandboxedChild { process, group }
    }
}

impl SandboxedChild {
    /// Waits for the command to exit. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match &mut self.process {
            ChildProcess::Host(child) => child.wait().await,
            ChildProcess::Namespace(child) => child.wait().await,
        }
    }

    /// Kills the whole process group with SIGKILL (also after the leader
    /// exited: its group lives on while background processes remain).
    pub fn kill_group(&mut self) {
        if let Some(group) = self.group {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL);
        }
        match &mut self.process {
            ChildProcess::Host(child) => {
                let _ = child.start_kill();
            }
            ChildProcess::Namespace(child) => child.kill(),
        }
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
    kind.prepare_root(root.path(), None)?;
    let setup = NamespaceSetup::new(root.path(), "", false).map_err(|e| unavailable("preparing", &e))?.probe_only();
    let stdio = Stdio::create()?;
    let image = ExecImage::new(&Command { arguments: vec!["/weir-sandbox-probe".into()], ..Default::default() })
        .map_err(|e| unavailable("preparing", &e))?;
    let child = setup.spawn(&image, stdio.raw()).map_err(|e| unavailable("entering the namespaces", &e))?;
    let status = child.wait_blocking().map_err(|e| unavailable("waiting for the probe", &e))?;
    if !status.success() {
        return Err(unavailable("checking pid 1 and /proc", &format!("probe exited with {status}")));
    }
    Ok(())
}
