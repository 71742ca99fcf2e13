//! Running one REAPI action: stage its input root from the CAS into a fresh
//! directory, run its `Command` in a sandbox, collect its outputs into the CAS
//! and describe them in an `ActionResult`.
//!
//! | module | owns |
//! |---|---|
//! | [`input_tree`] | fetching and validating every `Directory` of an input root, then staging it |
//! | [`inode_pool`] | empty directories and symlinks of finished actions, renamed into the next staged trees |
//! | [`executable_copies`] | one shared executable copy per executable input blob, hard-linked into roots |
//! | [`sandbox`] | the sandbox kinds (`host`, `namespace`), spawning and killing the process, [`probe`] |
//! | [`namespace`] | starting a command in new Linux namespaces (user, mount, pid, net, uts, ipc) with one `clone` |
//! | [`exec_image`] | a command's program, argv and environment prepared for `execve`, with the `PATH` search |
//! | [`pidfd_child`] | waiting for, killing and reaping a cloned child through its pidfd |
//! | [`outputs`] | collecting output files, directories (as `Tree`s) and symlinks and uploading them |
//!
//! Key decisions: every `Directory` of the input root is fetched and validated
//! before a single file is written, so a bad tree never leaves anything on
//! disk; the filesystem work (staging, collection, clean-up) runs on tokio's
//! blocking pool, while the process itself is awaited asynchronously (tokio's
//! child reaper, or its pidfd), so no thread is held per running action.
//! Timeouts and cancellation kill the whole process group (in the namespace
//! sandbox that takes the pid namespace, and every process in it, down with
//! it).
//!
//! This module does not decide *whether* to run (cache lookups, deduplication,
//! slots): that is [`crate::execution`].

pub mod exec_image;
pub mod executable_copies;
pub mod inode_pool;
pub mod input_tree;
pub mod namespace;
pub mod outputs;
pub mod pidfd_child;
pub mod sandbox;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use weir_proto::reapi::{ActionResult, Command, ExecutedActionMetadata};
use weir_proto::Digest;

use crate::store::{Store, StoreError};
use input_tree::LocalRead;
use inode_pool::{remove_tree_plainly, InodePool};

pub use input_tree::InputTree;
pub use outputs::OutputSpec;
pub use sandbox::{probe, SandboxKind};

/// Why running an action failed (as opposed to the command exiting non-zero,
/// which is a successful run with a non-zero `exit_code`).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// Blobs the action needs are not in the CAS.
    #[error("{} input blob(s) missing from the CAS, first {}", .0.len(), .0.first().map(|d| d.to_string()).unwrap_or_default())]
    MissingBlobs(Vec<Digest>),
    /// The input root is malformed (bad names, unsorted entries, escaping symlinks, ...).
    #[error("invalid input tree: {0}")]
    InvalidInput(String),
    /// The `Command` is malformed (no arguments, bad paths, ...).
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// An output exists but is not of the kind that was asked for.
    #[error("output {path:?}: {reason}")]
    InvalidOutput {
        /// The output path as given in the command.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The command could not be started.
    #[error("failed to start {program:?}: {source}")]
    Spawn {
        /// `arguments[0]`.
        program: String,
        /// The operating-system error.
        source: io::Error,
    },
    /// The run was cancelled; the process was killed.
    #[error("cancelled")]
    Cancelled,
    /// The sandbox cannot be provided on this machine.
    #[error("sandbox unavailable: {0}")]
    SandboxUnavailable(String),
    /// A filesystem operation of the runner itself failed.
    #[error("{context}: {source}")]
    Io {
        /// What the runner was doing.
        context: String,
        /// The operating-system error.
        source: io::Error,
    },
    /// The CAS failed.
    #[error("CAS: {0}")]
    Store(#[from] StoreError),
    /// A blob in the CAS is not the proto it should be.
    #[error("blob {digest} is not a valid {kind}: {source}")]
    BadProto {
        /// The blob.
        digest: Digest,
        /// The proto message expected.
        kind: &'static str,
        /// The decoding error.
        source: prost::DecodeError,
    },
}

impl RunnerError {
    /// The gRPC code REAPI prescribes for this failure (used for
    /// `ExecuteResponse.status`).
    pub fn code(&self) -> tonic::Code {
        match self {
            RunnerError::MissingBlobs(_) => tonic::Code::FailedPrecondition,
            RunnerError::Store(StoreError::NotFound(_)) => tonic::Code::FailedPrecondition,
            RunnerError::InvalidInput(_) | RunnerError::InvalidCommand(_) | RunnerError::BadProto { .. } => {
                tonic::Code::InvalidArgument
            }
            RunnerError::InvalidOutput { .. } => tonic::Code::FailedPrecondition,
            RunnerError::Spawn { .. } => tonic::Code::InvalidArgument,
            RunnerError::Cancelled => tonic::Code::Cancelled,
            RunnerError::SandboxUnavailable(_) => tonic::Code::FailedPrecondition,
            RunnerError::Io { .. } => tonic::Code::Internal,
            RunnerError::Store(e) => e.code(),
        }
    }

    /// The digests of missing blobs, for a `PreconditionFailure`.
    pub fn missing_blobs(&self) -> Vec<Digest> {
        match self {
            RunnerError::MissingBlobs(digests) => digests.clone(),
            RunnerError::Store(StoreError::NotFound(digest)) => vec![*digest],
            _ => Vec::new(),
        }
    }

    fn io(context: impl fmt::Display, source: io::Error) -> Self {
        RunnerError::Io { context: context.to_string(), source }
    }
}

/// How the runner runs actions.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// The sandbox every action runs in.
    pub sandbox: SandboxKind,
    /// Directory under which each action gets a fresh directory (created if
    /// absent; it should be on the same filesystem as the CAS so that inputs
    /// can be hard-linked).
    pub work_dir: PathBuf,
    /// Timeout for an action that gives none.
    pub default_timeout: Duration,
    /// Largest timeout an action may ask for; larger ones are refused.
    pub max_timeout: Duration,
    /// Name reported as `ExecutedActionMetadata.worker`.
    pub worker_name: String,
    /// Keep each action's directory after the run (for debugging).
    pub keep_work_dirs: bool,
}

impl RunnerConfig {
    /// A configuration with defaults (1 h default timeout, 24 h maximum).
    pub fn new(sandbox: SandboxKind, work_dir: impl Into<PathBuf>) -> Self {
        RunnerConfig {
            sandbox,
            work_dir: work_dir.into(),
            default_timeout: Duration::from_secs(3600),
            max_timeout: Duration::from_secs(24 * 3600),
            worker_name: hostname(),
            keep_work_dirs: false,
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|name| name.into_string().ok()).unwrap_or_else(|| "weir-worker".into())
}

/// One action to run, as decided by the execution layer.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The digest of the `Action` (for logs and directory names).
    pub action_digest: Digest,
    /// The decoded `Command`.
    pub command: Command,
    /// The digest of the input root `Directory`.
    pub input_root: Digest,
    /// How long the command may run.
    pub timeout: Duration,
    /// Whether the command may use the network (namespace sandbox only).
    pub network: bool,
    /// When the action was queued.
    pub queued_at: SystemTime,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The result (with `exit_code`, stdout/stderr, outputs and timestamps).
    pub result: ActionResult,
    /// Whether the command was killed because it ran past its timeout.
    pub timed_out: bool,
}

/// Cancels a run: [`Canceller::cancel`] kills the process.
#[derive(Debug, Clone)]
pub struct Canceller(Arc<watch::Sender<bool>>);

/// The receiving side of a [`Canceller`], handed to [`Runner::run`].
#[derive(Debug, Clone)]
pub struct CancelSignal(watch::Receiver<bool>);

/// A new cancellation pair.
pub fn cancellation() -> (Canceller, CancelSignal) {
    let (tx, rx) = watch::channel(false);
    (Canceller(Arc::new(tx)), CancelSignal(rx))
}

impl Canceller {
    /// Asks the run to stop; the process (group) is killed.
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl CancelSignal {
    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when cancellation is asked for (never, if every
    /// [`Canceller`] is dropped without cancelling). Cancel-safe.
    pub async fn cancelled(&mut self) {
        if self.0.wait_for(|cancelled| *cancelled).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs actions: holds the CAS and the configuration. Cheap to share behind an
/// `Arc`; each [`Runner::run`] is independent.
pub struct Runner {
    store: Store,
    config: RunnerConfig,
    next_id: AtomicU64,
    executables: Arc<executable_copies::ExecutableCopies>,
    inodes: Arc<InodePool>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner over `store`; creates `config.work_dir` and, in the
    /// background, removes action directories a previous worker process left
    /// there (only entries named as this runner names them).
    pub fn new(store: Store, config: RunnerConfig) -> Result<Self, RunnerError> {
        std::fs::create_dir_all(&config.work_dir)
            .map_err(|e| RunnerError::io(format!("creating work directory {}", config.work_dir.display()), e))?;
        // One directory per process: several workers may share a work directory.
        let copies_dir = config.work_dir.join(format!("executables-{}", std::process::id()));
        let executables = executable_copies::ExecutableCopies::new(&copies_dir, executable_copies::DEFAULT_MAX_BYTES)
            .map_err(|e| RunnerError::io(format!("creating {}", copies_dir.display()), e))?;
        let pool_dir = config.work_dir.join(format!("inodes-{}", std::process::id()));
        let inodes = InodePool::new(&pool_dir, inode_pool::DEFAULT_CAPACITY)
            .map_err(|e| RunnerError::io(format!("creating {}", pool_dir.display()), e))?;
        let work_dir = config.work_dir.clone();
        std::thread::spawn(move || remove_stale_action_dirs(&work_dir));
        Ok(Runner {
            store,
            config,
            next_id: AtomicU64::new(0),
            executables: Arc::new(executables),
            inodes: Arc::new(inodes),
        })
    }

    /// The directory of one run: `PID-HASHPREFIX-N` under the work directory.
    fn action_dir(&self, action: &Digest) -> PathBuf {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.config.work_dir.join(format!("{}-{}-{id}", std::process::id(), &action.hash_hex()[..16]))
    }

    /// The configuration.
    pub fn config(&self) -> &RunnerConfig {
        &self.config
    }

    /// Runs one action: stages, runs, collects. A non-zero exit is `Ok`.
    pub async fn run(&self, request: RunRequest, cancel: CancelSignal) -> Result<RunOutcome, RunnerError> {
        let dir = self.action_dir(&request.action_digest);
        let result = self.run_in(&dir, request, cancel).await;
        if !self.config.keep_work_dirs {
            // Removal can take a while for big trees; nobody waits for it.
            let inodes = self.inodes.clone();
            tokio::task::spawn_blocking(move || inodes.remove_tree(&dir));
        }
        result
    }

    async fn run_in(&self, dir: &Path, request: RunRequest, mut cancel: CancelSignal) -> Result<RunOutcome, RunnerError> {
        let mut metadata = ExecutedActionMetadata {
            worker: self.config.worker_name.clone(),
            queued_timestamp: Some(timestamp(request.queued_at)),
            worker_start_timestamp: Some(timestamp(SystemTime::now())),
            ..Default::default()
        };
        let outputs = OutputSpec::from_command(&request.command)?;
        if request.command.arguments.is_empty() {
            return Err(RunnerError::InvalidCommand("no arguments".into()));
        }

        metadata.input_fetch_start_timestamp = Some(timestamp(SystemTime::now()));
        let root = dir.join("root");
        let staging = Staging {
            dir: dir.to_path_buf(),
            root: root.clone(),
            outputs: outputs.clone(),
            sandbox: self.config.sandbox,
            network: request.network,
            executables: self.executables.clone(),
            inodes: self.inodes.clone(),
        };
        // Usually the whole tree is in the store's local files: read and
        // stage it in one trip to the blocking pool; otherwise fetch it
        // through the store first.
        let allow_absolute_symlinks = self.config.sandbox == SandboxKind::Namespace;
        let (store, input_root) = (self.store.clone(), request.input_root);
        let local = run_blocking(move || match InputTree::read_local(&store, input_root, allow_absolute_symlinks)? {
            LocalRead::Whole(tree) => staging.stage(&tree).map(Ok),
            LocalRead::Partial(part) => Ok(Err((staging, part))),
        })
        .await?;
        let staged = match local {
            Ok(staged) => staged,
            Err((staging, part)) => {
                let tree = InputTree::fetch_rest(&self.store, part, request.input_root, allow_absolute_symlinks).await?;
                run_blocking(move || staging.stage(&tree)).await?
            }
        };
        let Staged { linked, mount_points, stdio, setup } = staged;
        metadata.input_fetch_completed_timestamp = Some(timestamp(SystemTime::now()));
        if cancel.is_cancelled() {
            return Err(RunnerError::Cancelled);
        }

        metadata.execution_start_timestamp = Some(timestamp(SystemTime::now()));
        let child = sandbox::spawn(&root, &request.command, outputs.working_dir(), &stdio, setup.as_ref())?;
        let (status, ended) = wait(child, request.timeout, &mut cancel).await;
        metadata.execution_completed_timestamp = Some(timestamp(SystemTime::now()));
        // One trip to the blocking pool: remove the mount points where an
        // output would see them (otherwise they go with the action directory),
        // check the hard-linked inputs and collect the outputs (unless
        // cancelled).
        metadata.output_upload_start_timestamp = Some(timestamp(SystemTime::now()));
        let cancelled = ended == Ended::Cancelled;
        let (modified, collected) = {
            let (inodes, root) = (self.inodes.clone(), root.clone());
            run_blocking(move || {
                let in_the_way: Vec<PathBuf> = mount_points
                    .into_iter()
                    .filter(|dir| dir.strip_prefix(&root).is_ok_and(|at| outputs.covers(&at.to_string_lossy())))
                    .collect();
                SandboxKind::clean_root(&in_the_way, &inodes);
                let modified = linked.modified();
                let collected = (!cancelled).then(|| outputs.collect(&root, &stdio.stdout, &stdio.stderr));
                Ok((modified, collected))
            })
            .await?
        };
        self.drop_modified_inputs(&request.action_digest, modified).await;
        let status = status.map_err(|e| RunnerError::io("waiting for the command", e))?;
        let Some(collected) = collected else {
            return Err(RunnerError::Cancelled);
        };
        let collected = collected?;
        let mut result = collected.upload(&self.store).await?;
        result.exit_code = sandbox::exit_code(status);
        metadata.output_upload_completed_timestamp = Some(timestamp(SystemTime::now()));
        metadata.worker_completed_timestamp = Some(timestamp(SystemTime::now()));
        result.execution_metadata = Some(metadata);
        Ok(RunOutcome { result, timed_out: ended == Ended::TimedOut })
    }
}

impl Runner {
    /// Removes blobs the command wrote into through a hard link, so that
    /// the altered content is never served under the original digest, and
    /// executable copies it changed, so that no later action stages them.
    async fn drop_modified_inputs(&self, action: &Digest, modified: input_tree::ModifiedInputs) {
        for digest in &modified.executable_copies {
            tracing::warn!(%action, blob = %digest, "the command modified an executable input in place; discarding its copy");
            self.executables.discard(digest);
        }
        for digest in modified.blobs {
            tracing::error!(%action, blob = %digest, "the command modified an input in place; removing it from the CAS");
            if let Err(e) = self.store.remove(&digest).await {
                tracing::error!(blob = %digest, error = %e, "could not remove a modified input blob");
            }
        }
    }
}

/// Waits for the command until it exits, its timeout passes or the run is
/// cancelled; kills its process group in every case (background processes
/// included) and reaps it.
async fn wait(
    mut child: sandbox::SandboxedChild,
    timeout: std::time::Duration,
    cancel: &mut CancelSignal,
) -> (io::Result<std::process::ExitStatus>, Ended) {
    let (status, ended) = tokio::select! {
        status = child.wait() => (Some(status), Ended::Exited),
        _ = tokio::time::sleep(timeout) => (None, Ended::TimedOut),
        _ = cancel.cancelled() => (None, Ended::Cancelled),
    };
    child.kill_group();
    let status = match status {
        Some(status) => status,
        None => child.wait().await,
    };
    (status, ended)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Exited,
    TimedOut,
    Cancelled,
}

/// What staging an action's input root needs, besides the tree.
struct Staging {
    dir: PathBuf,
    root: PathBuf,
    outputs: OutputSpec,
    sandbox: SandboxKind,
    network: bool,
    executables: Arc<executable_copies::ExecutableCopies>,
    inodes: Arc<InodePool>,
}

/// A staged action root, ready for its command.
struct Staged {
    linked: input_tree::LinkedInputs,
    mount_points: Vec<PathBuf>,
    stdio: sandbox::Stdio,
    setup: Option<namespace::NamespaceSetup>,
}

impl Staging {
    /// Creates the action directory and stages `tree` as its root, with the
    /// output directories, the sandbox's mount points and the stdio files.
    /// Blocking.
    fn stage(self, tree: &InputTree) -> Result<Staged, RunnerError> {
        let Staging { dir, root, outputs, sandbox, network, executables, inodes } = self;
        inodes.create_dir(&dir).map_err(|e| RunnerError::io(format!("creating {}", dir.display()), e))?;
        let linked = tree.stage(&root, Some(&executables), Some(&inodes))?;
        outputs.prepare(&root, Some(&inodes))?;
        let mount_points = sandbox.prepare_root(&root, Some(&inodes))?;
        let stdio = sandbox::Stdio::create()?;
        let setup = sandbox.setup(&root, outputs.working_dir(), network)?;
        Ok(Staged { linked, mount_points, stdio, setup })
    }
}

/// Runs filesystem work on tokio's blocking pool.
async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RunnerError> + Send + 'static,
) -> Result<T, RunnerError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RunnerError::io("blocking task", io::Error::other(e.to_string())))?
}

/// Removes the action directories and executable copies of worker
/// processes that are gone (a live one may share the work directory).
fn remove_stale_action_dirs(work_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(work_dir) else { return };
    let own = std::process::id().to_string();
    let gone = |pid: &str| {
        pid != own
            && pid.parse::<i32>().is_ok_and(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
            })
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = name.strip_prefix("executables-").or_else(|| name.strip_prefix("inodes-")) {
            if gone(pid) {
                remove_tree_plainly(&entry.path());
            }
            continue;
        }
        let mut parts = name.split('-');
        let (Some(pid), Some(hash), Some(n), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let ours = pid.bytes().all(|b| b.is_ascii_digit())
            && hash.len() == 16
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
            && n.bytes().all(|b| b.is_ascii_digit());
        if ours && gone(pid) {
            remove_tree_plainly(&entry.path());
        }
    }
}

/// A protobuf timestamp for `time`.
pub fn timestamp(time: SystemTime) -> weir_proto::protobuf::Timestamp {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    weir_proto::protobuf::Timestamp { seconds: since.as_secs() as i64, nanos: since.subsec_nanos() as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_action_directories_of_dead_processes_are_removed_and_nothing_else() {
        let temp = tempfile::tempdir().unwrap();
        let own = format!("{}-0123456789abcdef-0", std::process::id());
        // A process that has exited (its pid is not reused this soon) and one that is alive.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let alive = std::os::unix::process::parent_id();
        let stale = format!("{dead}-0123456789abcdef-3");
        let live = format!("{alive}-0123456789abcdef-3");
        let stale_copies = format!("executables-{dead}");
        let live_copies = format!("executables-{alive}");
        let names = [own.as_str(), stale.as_str(), live.as_str(), &stale_copies, &live_copies, "keep", "1-not-ours", "1-0123456789abcdef-2-x"];
        for name in names {
            std::fs::create_dir_all(temp.path().join(name).join("root/sub")).unwrap();
        }
        remove_stale_action_dirs(temp.path());
        let mut left: Vec<String> =
            std::fs::read_dir(temp.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        let mut expected = vec![own, live, live_copies, "keep".to_string(), "1-not-ours".into(), "1-0123456789abcdef-2-x".into()];
        expected.sort();
        assert_eq!(left, expected);
    }
}
