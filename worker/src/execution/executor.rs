//! [`Executor`]: the execution core behind both gRPC services — validating an
//! `ExecuteRequest`, the operations table, in-flight deduplication, the
//! Action Cache lookup and write-back, the slot-limited queue, and handing
//! runs to the [`Runner`].
//!
//! Key decisions:
//! * Deduplication is by action digest: while an operation for an action is
//!   in flight, every further `Execute` of it (whatever its
//!   `skip_cache_lookup`) joins that operation and receives the same stream;
//!   one run, several waiters.
//! * A result is written to the Action Cache right *after* the operation
//!   completes (the client does not wait for it); until it is written the
//!   operation stays in flight, and an `Execute` of the same action then
//!   gets its response as a cache hit (`cached_result`), as a lookup a
//!   moment later would.
//! * The queue is a FIFO-fair semaphore of `slots` permits: an operation
//!   that has to wait for a permit is `QUEUED` (one that gets one at once
//!   goes straight on), then runs in `EXECUTING`. Queue depth is kept
//!   per platform key (the sorted properties an action asks for), for
//!   metrics; whether a platform can run here at all is decided up front by
//!   the [`PlatformMatcher`].
//! * Errors found while *creating* the operation (malformed digest or
//!   `Action`, unknown platform, timeout above the maximum) are gRPC errors;
//!   errors of the run itself, including missing inputs, finish the operation
//!   with an `ExecuteResponse.status`, as REAPI requires.
//! * A finished operation stays queryable for `operation_retention`, then is
//!   forgotten (lazily, when new operations are created).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prost::Message;
use tokio::sync::Semaphore;
use weir_proto::reapi::execution_stage::Value as Stage;
use weir_proto::reapi::{digest_function, Action, ActionResult, Command, ExecuteRequest, ExecuteResponse};
use weir_proto::Digest;

use super::operation::{self, OperationEntry};
use super::platform::{PlatformMatcher, RunOptions};
use super::{ExecutionConfig, ExecutionError};
use crate::cache::ActionCache;
use crate::runner::{self, CancelSignal, RunRequest, Runner};
use crate::store::{read_local_file, Store, StoreError};

/// At most this many finished operations are remembered.
const MAX_FINISHED: usize = 100_000;

/// The execution core; cheap to clone.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    cache: ActionCache,
    runner: Runner,
    matcher: PlatformMatcher,
    slots: Semaphore,
    slot_count: usize,
    retention: Duration,
    running: AtomicUsize,
    completed: AtomicUsize,
    tables: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    operations: HashMap<String, Arc<OperationEntry>>,
    in_flight: HashMap<Digest, Arc<OperationEntry>>,
    finished: VecDeque<(Instant, String)>,
    queued: HashMap<String, usize>,
}

/// What a validated request runs.
struct Job {
    action_digest: Digest,
    skip_cache_lookup: bool,
    do_not_cache: bool,
    command: Command,
    input_root: Digest,
    timeout: Duration,
    options: RunOptions,
    queue_key: String,
    queued_at: SystemTime,
}

/// What validating a request produced.
enum Prepared {
    Run(Box<Job>),
    /// The request cannot run; the operation finishes at once with this.
    Fail(Box<ExecuteResponse>),
}

impl Executor {
    /// An executor running actions with `runner`, reading inputs from `store`
    /// and caching results in `cache`.
    pub fn new(store: Store, cache: ActionCache, runner: Runner, config: &ExecutionConfig) -> Self {
        let slot_count = config.slots.max(1);
        Executor {
            inner: Arc::new(Inner {
                store,
                cache,
                runner,
                matcher: PlatformMatcher::new(&config.platform),
                slots: Semaphore::new(slot_count),
                slot_count,
                retention: config.operation_retention,
                running: AtomicUsize::new(0),
                completed: AtomicUsize::new(0),
                tables: Mutex::new(Tables::default()),
            }),
        }
    }

    /// Starts (or joins) the operation for `request`.
    pub async fn execute(&self, request: ExecuteRequest) -> Result<Arc<OperationEntry>, ExecutionError> {
        let action_digest = Digest::try_from(request.action_digest.as_ref())
            .map_err(|e| ExecutionError::InvalidArgument(format!("action_digest: {e}")))?;
        if !matches!(
            digest_function::Value::try_from(request.digest_function),
            Ok(digest_function::Value::Unknown | digest_function::Value::Sha256)
        ) {
            return Err(ExecutionError::InvalidArgument("only the SHA256 digest function is supported".into()));
        }
        let in_flight = self.inner.lock().in_flight.get(&action_digest).cloned();
        if let Some(op) = in_flight {
            if !op.is_done() {
                return Ok(op);
            }
            // Done, its result still being written to the Action Cache: that
            // result is what a cache lookup is about to return.
            if let Some(response) = operation::response_of(&op.snapshot()).filter(|_| !request.skip_cache_lookup) {
                let name = operation_name(&request.instance_name);
                let (canceller, _) = runner::cancellation();
                let cached = Arc::new(OperationEntry::new(name, action_digest, canceller));
                cached.complete(ExecuteResponse { cached_result: true, ..response });
                self.inner.lock().insert_finished(&cached, self.inner.retention);
                return Ok(cached);
            }
        }
        let prepared = self.prepare(action_digest, &request).await?;
        let name = operation_name(&request.instance_name);
        let (canceller, cancel) = runner::cancellation();
        let op = Arc::new(OperationEntry::new(name, action_digest, canceller));
        let job = match prepared {
            Prepared::Fail(response) => {
                op.complete(*response);
                let mut tables = self.inner.lock();
                tables.insert_finished(&op, self.inner.retention);
                return Ok(op);
            }
            Prepared::Run(job) => job,
        };
        {
            let mut tables = self.inner.lock();
            if let Some(existing) = tables.in_flight.get(&action_digest).filter(|existing| !existing.is_done()) {
                return Ok(existing.clone());
            }
            tables.prune(self.inner.retention);
            tables.operations.insert(op.name().to_owned(), op.clone());
            tables.in_flight.insert(action_digest, op.clone());
        }
        let inner = self.inner.clone();
        let task_op = op.clone();
        tokio::spawn(async move { inner.run_job(task_op, *job, cancel).await });
        Ok(op)
    }

    /// The operation called `name`, if known.
    pub fn find(&self, name: &str) -> Option<Arc<OperationEntry>> {
        self.inner.lock().operations.get(name).cloned()
    }

    /// Every known operation, sorted by name.
    pub fn list(&self) -> Vec<Arc<OperationEntry>> {
        let mut ops: Vec<_> = self.inner.lock().operations.values().cloned().collect();
        ops.sort_by(|a, b| a.name().cmp(b.name()));
        ops
    }

    /// Forgets the operation `name` (a running one keeps running); whether
    /// it was known.
    pub fn delete(&self, name: &str) -> bool {
        self.inner.lock().operations.remove(name).is_some()
    }

    /// Actions waiting for a slot, per platform key.
    pub fn queue_depths(&self) -> Vec<(String, usize)> {
        let mut depths: Vec<_> =
            self.inner.lock().queued.iter().filter(|(_, n)| **n > 0).map(|(k, n)| (k.clone(), *n)).collect();
        depths.sort();
        depths
    }

    /// Actions waiting for a slot, in total.
    pub fn queue_depth(&self) -> usize {
        self.inner.lock().queued.values().sum()
    }

    /// Actions running now.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Relaxed)
    }

    /// Operations finished since start-up (cache hits included).
    pub fn completed(&self) -> usize {
        self.inner.completed.load(Ordering::Relaxed)
    }

    /// How many actions may run at once.
    pub fn slots(&self) -> usize {
        self.inner.slot_count
    }

    /// The platform properties this executor serves.
    pub fn platform(&self) -> &PlatformMatcher {
        &self.inner.matcher
    }

    /// Validates the request: reads the `Action` and `Command`, checks the
    /// platform and the timeout.
    async fn prepare(&self, action_digest: Digest, request: &ExecuteRequest) -> Result<Prepared, ExecutionError> {
        let queued_at = SystemTime::now();
        // Usually both are in the store's local files: one blocking trip.
        let (local_action, local_command) = {
            let store = self.inner.store.clone();
            tokio::task::spawn_blocking(move || {
                let action: Option<Action> = read_local_proto(&store, &action_digest);
                let command_digest = action.as_ref().and_then(|a| Digest::try_from(a.command_digest.as_ref()).ok());
                let command: Option<Command> = command_digest.and_then(|digest| read_local_proto(&store, &digest));
                (action, command)
            })
            .await
            .unwrap_or_default()
        };
        let action: Action = match local_action {
            Some(action) => action,
            None => match self.read_proto(&action_digest, "Action").await? {
                Some(action) => action,
                None => return Ok(Prepared::Fail(Box::new(missing_blob("action", action_digest)))),
            },
        };
        let command_digest = Digest::try_from(action.command_digest.as_ref())
            .map_err(|e| ExecutionError::InvalidArgument(format!("Action.command_digest: {e}")))?;
        let input_root = Digest::try_from(action.input_root_digest.as_ref())
            .map_err(|e| ExecutionError::InvalidArgument(format!("Action.input_root_digest: {e}")))?;
        let command: Command = match local_command {
            Some(command) => command,
            None => match self.read_proto(&command_digest, "Command").await? {
                Some(command) => command,
                None => return Ok(Prepared::Fail(Box::new(missing_blob("command", command_digest)))),
            },
        };
        #[allow(deprecated)] // Command.platform: the pre-v2.2 place, still sent by older clients.
        let platform = action.platform.as_ref().filter(|p| !p.properties.is_empty()).or(command.platform.as_ref());
        let options = self.inner.matcher.check(platform)?;
        let config = self.inner.runner.config();
        let default_timeout = config.default_timeout.min(config.max_timeout);
        let timeout = match &action.timeout {
            None => default_timeout,
            Some(t) if t.seconds < 0 || t.nanos < 0 => {
                return Err(ExecutionError::InvalidArgument("Action.timeout is negative".into()))
            }
            Some(t) if t.seconds == 0 && t.nanos == 0 => default_timeout,
            Some(t) => Duration::new(t.seconds as u64, t.nanos as u32),
        };
        if timeout > config.max_timeout {
            return Err(ExecutionError::InvalidArgument(format!(
                "Action.timeout {timeout:?} exceeds this worker's maximum {:?}",
                config.max_timeout
            )));
        }
        let queue_key = PlatformMatcher::queue_key(platform);
        Ok(Prepared::Run(Box::new(Job {
            action_digest,
            skip_cache_lookup: request.skip_cache_lookup,
            do_not_cache: action.do_not_cache,
            command,
            input_root,
            timeout,
            options,
            queue_key,
            queued_at,
        })))
    }

    /// Reads and decodes a proto blob; `None` when it is not in the CAS.
    async fn read_proto<M: Message + Default>(&self, digest: &Digest, kind: &str) -> Result<Option<M>, ExecutionError> {
        match self.inner.store.read_all(digest).await {
            Ok(bytes) => M::decode(bytes)
                .map(Some)
                .map_err(|e| ExecutionError::InvalidArgument(format!("{kind} {digest} does not decode: {e}"))),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Decodes the proto blob `digest` from the store's local file
/// ([`read_local_file`]). Blocking. `None` for anything else: the caller then
/// reads through the store, which reports what is wrong.
fn read_local_proto<M: Message + Default>(store: &Store, digest: &Digest) -> Option<M> {
    M::decode(read_local_file(store.as_ref(), digest)?.as_slice()).ok()
}

fn missing_blob(what: &str, digest: Digest) -> ExecuteResponse {
    operation::failure(
        tonic::Code::FailedPrecondition,
        format!("the {what} {digest} is not in the CAS"),
        &[digest],
        None,
    )
}

fn operation_name(instance_name: &str) -> String {
    let id = uuid::Uuid::new_v4();
    if instance_name.is_empty() {
        format!("operations/{id}")
    } else {
        format!("{instance_name}/operations/{id}")
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave the tables half
        // updated (every critical section is a few map operations).
        self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn run_job(self: Arc<Self>, op: Arc<OperationEntry>, job: Job, cancel: CancelSignal) {
        let action_digest = job.action_digest;
        let (response, to_cache) = self.process(&op, job, cancel).await;
        // The client has its answer before the result is cached; meanwhile
        // the operation stays in flight, so the same action asked again is
        // answered from it (see `execute`).
        op.complete(response);
        if let Some(result) = to_cache {
            if let Err(e) = self.cache.put(&action_digest, &result).await {
                tracing::warn!(action = %action_digest, error = %e, "could not cache the result");
            }
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
        let mut tables = self.lock();
        if tables.in_flight.get(&action_digest).is_some_and(|current| Arc::ptr_eq(current, &op)) {
            tables.in_flight.remove(&action_digest);
        }
        tables.finished.push_back((Instant::now(), op.name().to_owned()));
    }

    /// Runs the job (unless the Action Cache has its result): the response,
    /// and the result to cache when there is one to cache.
    async fn process(&self, op: &OperationEntry, job: Job, mut cancel: CancelSignal) -> (ExecuteResponse, Option<ActionResult>) {
        if !job.skip_cache_lookup {
            match self.cache.get(&job.action_digest).await {
                Ok(Some(result)) => return (operation::success(result, true), None),
                Ok(None) => {}
                Err(e) => tracing::warn!(action = %job.action_digest, error = %e, "action cache lookup failed"),
            }
        }

        // A free slot is taken at once; the client hears of `QUEUED` only
        // when the operation has to wait (one message less on the stream).
        let permit = match self.slots.try_acquire() {
            Ok(permit) => Some(permit),
            Err(_) => {
                op.set_stage(Stage::Queued);
                *self.lock().queued.entry(job.queue_key.clone()).or_default() += 1;
                let permit = tokio::select! {
                    permit = self.slots.acquire() => permit.ok(),
                    _ = cancel.cancelled() => None,
                };
                if let Some(depth) = self.lock().queued.get_mut(&job.queue_key) {
                    *depth = depth.saturating_sub(1);
                }
                permit
            }
        };
        let Some(permit) = permit else {
            return (operation::failure(tonic::Code::Cancelled, "cancelled while queued".into(), &[], None), None);
        };

        op.set_stage(Stage::Executing);
        self.running.fetch_add(1, Ordering::Relaxed);
        let request = RunRequest {
            action_digest: job.action_digest,
            command: job.command,
            input_root: job.input_root,
            timeout: job.timeout,
            network: job.options.network,
            queued_at: job.queued_at,
        };
        let outcome = self.runner.run(request, cancel).await;
        self.running.fetch_sub(1, Ordering::Relaxed);
        drop(permit);

        match outcome {
            Ok(outcome) if outcome.timed_out => (
                operation::failure(
                    tonic::Code::DeadlineExceeded,
                    format!("the command ran past its timeout of {:?} and was killed", job.timeout),
                    &[],
                    Some(outcome.result),
                ),
                None,
            ),
            Ok(outcome) => {
                let to_cache = (!job.do_not_cache && outcome.result.exit_code == 0).then(|| outcome.result.clone());
                (operation::success(outcome.result, false), to_cache)
            }
            Err(e) => {
                tracing::debug!(action = %job.action_digest, error = %e, "action failed");
                (operation::failure(e.code(), e.to_string(), &e.missing_blobs(), None), None)
            }
        }
    }
}

impl Tables {
    fn insert_finished(&mut self, op: &Arc<OperationEntry>, retention: Duration) {
        self.prune(retention);
        self.operations.insert(op.name().to_owned(), op.clone());
        self.finished.push_back((Instant::now(), op.name().to_owned()));
    }

    /// Forgets finished operations older than `retention` (and the oldest
    /// ones beyond [`MAX_FINISHED`]).
    fn prune(&mut self, retention: Duration) {
        while let Some((finished_at, _)) = self.finished.front() {
            if finished_at.elapsed() < retention && self.finished.len() <= MAX_FINISHED {
                break;
            }
            if let Some((_, name)) = self.finished.pop_front() {
                self.operations.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::open_database;
    use crate::runner::{RunnerConfig, SandboxKind};
    use crate::store::memory::{MemorySpec, MemoryStore};

    fn executor(dir: &std::path::Path) -> Executor {
        let store: Store = Arc::new(MemoryStore::new(&MemorySpec {}));
        let cache = ActionCache::new(open_database(&dir.join("ac.redb"), false).unwrap(), store.clone());
        let runner = Runner::new(store.clone(), RunnerConfig::new(SandboxKind::Host, dir.join("work"))).unwrap();
        Executor::new(store, cache, runner, &super::super::ExecutionConfig::new(Vec::new()))
    }

    fn request(digest: Digest, skip_cache_lookup: bool) -> ExecuteRequest {
        ExecuteRequest { action_digest: Some(digest.to_proto()), skip_cache_lookup, ..Default::default() }
    }

    #[tokio::test]
    async fn an_action_asked_while_its_result_is_being_cached_is_answered_as_a_cache_hit() {
        let temp = tempfile::tempdir().unwrap();
        let executor = executor(temp.path());
        // An operation that has finished, its result not in the Action Cache yet.
        let digest = Digest::of(b"an action");
        let (canceller, _) = runner::cancellation();
        let finished = Arc::new(OperationEntry::new("operations/first".into(), digest, canceller));
        let result = ActionResult { stdout_raw: b"hello".to_vec(), ..Default::default() };
        finished.complete(operation::success(result.clone(), false));
        executor.inner.lock().in_flight.insert(digest, finished.clone());

        let op = executor.execute(request(digest, false)).await.unwrap();
        assert!(!Arc::ptr_eq(&op, &finished), "a new operation, already done");
        let response = operation::response_of(&op.snapshot()).unwrap();
        assert!(response.cached_result);
        assert_eq!(response.result, Some(result));

        // Skipping the cache lookup never joins the finished operation: the
        // action is read again (and is not in this CAS).
        let op = executor.execute(request(digest, true)).await.unwrap();
        op.wait_done().await;
        let response = operation::response_of(&op.snapshot()).unwrap();
        assert!(!response.cached_result);
        assert_eq!(response.status.map(|s| s.code), Some(tonic::Code::FailedPrecondition as i32));
    }
}
