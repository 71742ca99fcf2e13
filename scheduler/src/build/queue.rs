//! [`BuildQueue`]: builds a [`BuildPlan`] — a ready set in topological order,
//! at most `builders` elements at once, retries with exponential backoff on
//! retryable failures, `--on-error quit|continue` and cancellation.
//!
//! Key decisions: the queue knows no element kinds and no protocol; it
//! drives an [`ElementRunner`] (the remote one in production, fakes in
//! tests) and asks each failure [`BuildError::is_retryable`]. A real build
//! failure is never retried. On `quit`, elements already running finish but
//! nothing new starts (BuildStream's behaviour); on cancellation, running
//! tasks are dropped, which drops their operation streams.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::event::{BuildEvent, EventSink};
use super::{Artifact, BuildError, BuildPlan};

/// What to do when an element fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum OnError {
    /// Finish what is running, start nothing new (the default).
    #[default]
    Quit,
    /// Keep building everything that does not depend on the failure.
    Continue,
}

/// Element tasks in flight beyond the `builders` slots: they look up,
/// stage and upload while the slots run actions (a slot is taken only for
/// `Execute`, see [`BuildSlot`]).
const EXTRA_LOOKUPS: usize = 64;

/// Cache lookups in flight while prefetching.
const PREFETCH_LOOKUPS: usize = 128;

/// Queue settings.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Remote actions run at once (at least 1).
    pub builders: usize,
    /// Failure policy.
    pub on_error: OnError,
    /// Further attempts after a retryable failure.
    pub max_retries: u32,
    /// Wait before the first retry; doubled each time, at most 30 s.
    pub backoff: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions { builders: 4, on_error: OnError::Quit, max_retries: 3, backoff: Duration::from_millis(500) }
    }
}

/// One element to build, with the artifacts of its staged dependencies.
#[derive(Debug, Clone)]
pub struct Job {
    /// The plan.
    pub plan: Arc<BuildPlan>,
    /// The element's index in the plan.
    pub index: usize,
    /// Artifacts of `plan.staged(index)`, in the same order.
    pub deps: Vec<Artifact>,
    /// The attempt, from 0.
    pub attempt: u32,
    /// The cache was already asked (before scheduling) and has no artifact.
    pub known_missing: bool,
    /// The build slot the element holds while its action runs (empty for
    /// elements that run none).
    pub slot: BuildSlot,
}

/// An element's claim on one of the `--builders` slots. The runner takes
/// the slot ([`BuildSlot::acquire`]) only right before its action starts,
/// so inputs are staged and uploaded while other actions run, and gives it
/// back as soon as the action has succeeded ([`BuildSlot::release`]), so
/// the next action starts while this element's outputs and record are
/// stored. A failed element keeps it until the queue has decided whether to
/// stop (`--on-error quit`: nothing starts after a failure).
#[derive(Clone, Default)]
pub struct BuildSlot {
    gate: Option<Arc<Gate>>,
    permit: Arc<std::sync::Mutex<Option<OwnedSemaphorePermit>>>,
}

impl std::fmt::Debug for BuildSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSlot").finish_non_exhaustive()
    }
}

impl BuildSlot {
    fn new(gate: Arc<Gate>) -> Self {
        BuildSlot { gate: Some(gate), permit: Arc::default() }
    }

    /// Waits for a free slot and holds it; [`BuildError::Stopped`] when the
    /// build stopped meanwhile. A job outside a build run has no limit.
    pub async fn acquire(&self) -> Result<(), BuildError> {
        let Some(gate) = &self.gate else { return Ok(()) };
        let permit = gate.slots.clone().acquire_owned().await.map_err(|_| BuildError::Stopped)?;
        if gate.stopped.load(Ordering::SeqCst) {
            return Err(BuildError::Stopped);
        }
        if let Ok(mut slot) = self.permit.lock() {
            *slot = Some(permit);
        }
        Ok(())
    }

    /// Gives the slot back (nothing if it is not held).
    pub fn release(&self) {
        if let Ok(mut slot) = self.permit.lock() {
            slot.take();
        }
    }
}

impl Job {
    /// The element.
    pub fn element(&self) -> &super::PlanElement {
        &self.plan.elements()[self.index]
    }

    /// The artifact of the staged dependency at plan index `index`, if it is one.
    pub fn dependency(&self, index: usize) -> Option<&Artifact> {
        self.plan.staged(self.index).iter().position(|&s| s == index).and_then(|p| self.deps.get(p))
    }
}

/// What builds one element.
pub trait ElementRunner: Send + Sync + 'static {
    /// The element's artifact if it is already cached. Called before the
    /// element's dependencies are available (`job.deps` may be empty): a
    /// lookup depends on the element's keys only.
    fn lookup(&self, job: &Job) -> impl Future<Output = Result<Option<Artifact>, BuildError>> + Send;
    /// [`lookup`](Self::lookup) of every element of `plan`, one answer per
    /// element in plan order; by default `PREFETCH_LOOKUPS` lookups at a
    /// time. The queue asks this before anything is scheduled (a key does
    /// not depend on what gets built, so a fully cached graph is answered
    /// without waiting on its depth); an element whose lookup failed is
    /// looked up again by its own task, which reports the error.
    fn lookup_all(&self, plan: &Arc<BuildPlan>) -> impl Future<Output = Vec<Result<Option<Artifact>, BuildError>>> + Send {
        use futures::StreamExt;
        futures::stream::iter(0..plan.len())
            .map(move |index| {
                let job = Job { plan: plan.clone(), index, deps: Vec::new(), attempt: 0, known_missing: false, slot: BuildSlot::default() };
                async move { self.lookup(&job).await }
            })
            .buffered(PREFETCH_LOOKUPS)
            .collect()
    }
    /// Builds the element and stores its artifact; `events` receives
    /// warnings such as overlaps.
    fn build(&self, job: &Job, events: &dyn EventSink) -> impl Future<Output = Result<Artifact, BuildError>> + Send;
}

/// How an element ended.
#[derive(Debug)]
pub enum ElementResult {
    /// Found in the cache.
    Cached(Artifact),
    /// Built now.
    Built(Artifact),
    /// Failed.
    Failed(BuildError),
    /// Not attempted (a dependency failed, the build quit or was cancelled).
    Skipped,
}

impl ElementResult {
    /// The artifact, if the element is available.
    pub fn artifact(&self) -> Option<&Artifact> {
        match self {
            ElementResult::Cached(a) | ElementResult::Built(a) => Some(a),
            _ => None,
        }
    }
}

/// The outcome of a build.
#[derive(Debug)]
pub struct BuildReport {
    /// One result per plan element.
    pub results: Vec<ElementResult>,
    /// Whether the build was cancelled.
    pub cancelled: bool,
}

impl BuildReport {
    /// Whether every element is available.
    pub fn success(&self) -> bool {
        !self.cancelled && self.results.iter().all(|r| r.artifact().is_some())
    }

    /// Number of elements built now.
    pub fn built(&self) -> usize {
        self.results.iter().filter(|r| matches!(r, ElementResult::Built(_))).count()
    }

    /// Number of elements found cached.
    pub fn cached(&self) -> usize {
        self.results.iter().filter(|r| matches!(r, ElementResult::Cached(_))).count()
    }

    /// Number of failed elements.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| matches!(r, ElementResult::Failed(_))).count()
    }
}

/// The build queue.
pub struct BuildQueue<R> {
    runner: Arc<R>,
    options: QueueOptions,
    events: Arc<dyn EventSink>,
}

impl<R: ElementRunner> BuildQueue<R> {
    /// A queue that builds with `runner` and reports to `events`.
    pub fn new(runner: Arc<R>, options: QueueOptions, events: Arc<dyn EventSink>) -> Self {
        BuildQueue { runner, options, events }
    }

    /// Builds every element of `plan`; stops early when `cancel` becomes true.
    pub async fn run(&self, plan: Arc<BuildPlan>, cancel: watch::Receiver<bool>) -> BuildReport {
        self.run_after(plan, None, cancel).await
    }

    /// [`run`](Self::run) with the cache lookups already made: `lookups`
    /// holds one answer per plan element, as [`ElementRunner::lookup_all`]
    /// gives them (the caller needed them first, e.g. to fetch only the
    /// sources of what is not cached).
    pub async fn run_with_lookups(
        &self,
        plan: Arc<BuildPlan>,
        lookups: Vec<Result<Option<Artifact>, BuildError>>,
        cancel: watch::Receiver<bool>,
    ) -> BuildReport {
        self.run_after(plan, Some(lookups), cancel).await
    }

    async fn run_after(
        &self,
        plan: Arc<BuildPlan>,
        lookups: Option<Vec<Result<Option<Artifact>, BuildError>>>,
        mut cancel: watch::Receiver<bool>,
    ) -> BuildReport {
        let count = plan.len();
        let mut results: Vec<Option<ElementResult>> = (0..count).map(|_| None).collect();
        let mut running: JoinSet<(usize, ElementResult)> = JoinSet::new();
        let mut stopping = false;
        let gate = Arc::new(Gate { slots: Arc::new(Semaphore::new(self.options.builders.max(1))), stopped: AtomicBool::new(false) });
        for element in plan.elements() {
            self.events.emit(BuildEvent::Queued { element: element.name.clone(), key: element.keys.strong.clone() });
        }
        let mut cancelled = *cancel.borrow();
        let mut missing = vec![false; count];
        if !cancelled {
            let found = match lookups {
                Some(found) => Some(found),
                None => tokio::select! {
                    found = self.runner.lookup_all(&plan) => Some(found),
                    _ = cancel.changed() => None,
                },
            };
            match found {
                Some(found) => {
                    for (index, found) in found.into_iter().enumerate().take(count) {
                        missing[index] = matches!(found, Ok(None));
                        if let Ok(Some(artifact)) = found {
                            let element = &plan.elements()[index];
                            self.events.emit(BuildEvent::Cached { element: element.name.clone(), key: element.keys.strong.clone() });
                            results[index] = Some(ElementResult::Cached(artifact));
                        }
                    }
                }
                None => cancelled = true,
            }
        }
        let unfinished = |d: &usize| results[*d].is_none();
        let mut waiting: Vec<usize> = (0..count).map(|i| plan.staged(i).iter().filter(|d| unfinished(d)).count()).collect();
        let mut ready: BTreeSet<usize> = (0..count).filter(|&i| waiting[i] == 0 && results[i].is_none()).collect();
        loop {
            while !stopping && !cancelled && running.len() < self.options.builders.max(1) + EXTRA_LOOKUPS {
                let Some(index) = ready.pop_first() else { break };
                let deps = plan.staged(index).iter().filter_map(|&d| results[d].as_ref().and_then(|r| r.artifact()).cloned()).collect();
                let job = Job { plan: plan.clone(), index, deps, attempt: 0, known_missing: missing[index], slot: BuildSlot::new(gate.clone()) };
                let (runner, events, options, gate) = (self.runner.clone(), self.events.clone(), self.options.clone(), gate.clone());
                running.spawn(async move { (index, run_element(runner.as_ref(), job, events.as_ref(), &options, &gate).await) });
            }
            if running.is_empty() {
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                changed = cancel.changed(), if !cancelled => {
                    if changed.is_err() || *cancel.borrow() {
                        cancelled = true;
                        running.abort_all();
                    }
                    continue;
                }
            };
            let Some(joined) = joined else { break };
            let (index, result) = match joined {
                Ok(done) => done,
                Err(_) => continue, // aborted by cancellation
            };
            match &result {
                ElementResult::Cached(_) | ElementResult::Built(_) => {
                    for &dependant in plan.dependants(index) {
                        waiting[dependant] = waiting[dependant].saturating_sub(1);
                        if waiting[dependant] == 0 && results[dependant].is_none() {
                            ready.insert(dependant);
                        }
                    }
                }
                _ => {
                    if matches!(result, ElementResult::Skipped) {
                        self.events.emit(BuildEvent::Skipped { element: plan.elements()[index].name.clone() });
                    }
                    if self.options.on_error == OnError::Quit {
                        stopping = true;
                    }
                    self.skip_dependants(&plan, index, &mut results, &mut ready);
                }
            }
            results[index] = Some(result);
        }
        let results = results
            .into_iter()
            .enumerate()
            .map(|(index, result)| {
                result.unwrap_or_else(|| {
                    self.events.emit(BuildEvent::Skipped { element: plan.elements()[index].name.clone() });
                    ElementResult::Skipped
                })
            })
            .collect();
        BuildReport { results, cancelled }
    }

    /// Marks everything that waits (transitively) on `failed` as skipped.
    fn skip_dependants(&self, plan: &BuildPlan, failed: usize, results: &mut [Option<ElementResult>], ready: &mut BTreeSet<usize>) {
        let mut stack = vec![failed];
        while let Some(index) = stack.pop() {
            for &dependant in plan.dependants(index) {
                if results[dependant].is_none() {
                    ready.remove(&dependant);
                    self.events.emit(BuildEvent::Skipped { element: plan.elements()[dependant].name.clone() });
                    results[dependant] = Some(ElementResult::Skipped);
                    stack.push(dependant);
                }
            }
        }
    }
}

/// Shared by the element tasks of one run: the build slots (so at most
/// `builders` actions run; lookups and tree-only elements take none) and the
/// `quit` flag.
pub(crate) struct Gate {
    slots: Arc<Semaphore>,
    stopped: AtomicBool,
}

/// Cache lookup, then build attempts with backoff on retryable failures.
/// With `--on-error quit`, a failure raises the flag while still holding its
/// slot, so no waiting element starts after it.
async fn run_element<R: ElementRunner>(runner: &R, mut job: Job, events: &dyn EventSink, options: &QueueOptions, gate: &Gate) -> ElementResult {
    let element = job.element().clone();
    loop {
        let attempt = job.attempt;
        let lookup = if job.known_missing && attempt == 0 { Ok(None) } else { runner.lookup(&job).await };
        let outcome = match lookup {
            Ok(Some(artifact)) => {
                events.emit(BuildEvent::Cached { element: element.name.clone(), key: element.keys.strong.clone() });
                return ElementResult::Cached(artifact);
            }
            Ok(None) => {
                if gate.stopped.load(Ordering::SeqCst) {
                    return ElementResult::Skipped;
                }
                events.emit(BuildEvent::Started { element: element.name.clone(), attempt: attempt + 1 });
                let started = Instant::now();
                runner.build(&job, events).await.map(|artifact| (artifact, started.elapsed()))
            }
            Err(error) => Err(error),
        };
        match outcome {
            Err(BuildError::Stopped) => return ElementResult::Skipped,
            Ok((artifact, elapsed)) => {
                job.slot.release();
                events.emit(BuildEvent::Finished {
                    element: element.name.clone(),
                    key: element.keys.strong.clone(),
                    millis: elapsed.as_millis() as u64,
                });
                return ElementResult::Built(artifact);
            }
            Err(error) if error.is_retryable() && attempt < options.max_retries => {
                job.slot.release();
                events.emit(BuildEvent::Retrying { element: element.name.clone(), attempt: attempt + 1, error: error.to_string() });
                let delay = options.backoff.saturating_mul(1 << attempt.min(16)).min(Duration::from_secs(30));
                tokio::time::sleep(delay).await;
                job.attempt += 1;
            }
            Err(error) => {
                if options.on_error == OnError::Quit {
                    gate.stopped.store(true, Ordering::SeqCst);
                }
                job.slot.release();
                let (exit_code, log_tail, logs) = match &error {
                    BuildError::CommandFailed { exit_code, log_tail, logs, .. } => {
                        (Some(*exit_code), log_tail.clone(), logs.iter().map(|d| d.to_string()).collect())
                    }
                    _ => (None, String::new(), Vec::new()),
                };
                events.emit(BuildEvent::Failed { element: element.name.clone(), error: error.to_string(), exit_code, log_tail, logs });
                return ElementResult::Failed(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;
    use crate::build::event::EventLog;
    use crate::build::plan::tests::element;
    use crate::remote::RemoteError;

    /// A runner whose behaviour per element is scripted.
    #[derive(Default)]
    struct FakeRunner {
        cached: Vec<String>,
        fail: Vec<String>,
        /// Transient failures left per element.
        flaky: Mutex<HashMap<String, u32>>,
        running: AtomicUsize,
        max_running: AtomicUsize,
        order: Mutex<Vec<String>>,
        delay_ms: u64,
        /// Builds run no action (take no builder slot).
        no_action: bool,
    }

    fn artifact(job: &Job) -> Artifact {
        Artifact::new(job.element(), weir_proto::Digest::empty(), job.deps.iter().map(|d| (d.element.clone(), d.strong_key.clone())).collect())
    }

    impl ElementRunner for FakeRunner {
        async fn lookup(&self, job: &Job) -> Result<Option<Artifact>, BuildError> {
            Ok(self.cached.contains(&job.element().name).then(|| artifact(job)))
        }
        async fn build(&self, job: &Job, _: &dyn EventSink) -> Result<Artifact, BuildError> {
            if !self.no_action {
                job.slot.acquire().await?;
            }
            let name = job.element().name.clone();
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            self.order.lock().unwrap().push(name.clone());
            if let Some(left) = self.flaky.lock().unwrap().get_mut(&name) {
                if *left > 0 {
                    *left -= 1;
                    return Err(RemoteError::Rpc { rpc: "Execute", code: tonic::Code::Unavailable, message: "gone".into() }.into());
                }
            }
            if self.fail.contains(&name) {
                return Err(BuildError::CommandFailed { element: name, exit_code: 2, log_tail: "boom".into(), logs: vec![] });
            }
            Ok(artifact(job))
        }
    }

    fn options(builders: usize, on_error: OnError) -> QueueOptions {
        QueueOptions { builders, on_error, max_retries: 2, backoff: Duration::from_millis(1) }
    }

    /// a, b independent; c builds on a and b; d builds on c; e independent.
    fn diamond() -> Arc<BuildPlan> {
        Arc::new(
            BuildPlan::new(vec![
                element("a", &[], &[]),
                element("b", &[], &[]),
                element("c", &[0, 1], &[]),
                element("d", &[2], &[]),
                element("e", &[], &[]),
            ])
            .unwrap(),
        )
    }

    async fn run(runner: FakeRunner, options: QueueOptions) -> (BuildReport, Arc<FakeRunner>, Vec<BuildEvent>) {
        let runner = Arc::new(runner);
        let log = Arc::new(EventLog::default());
        let queue = BuildQueue::new(runner.clone(), options, log.clone());
        let (_tx, rx) = watch::channel(false);
        let report = queue.run(diamond(), rx).await;
        (report, runner, log.events())
    }

    #[tokio::test]
    async fn builds_dependencies_first_within_the_builder_limit() {
        let (report, runner, _) = run(FakeRunner { delay_ms: 20, ..Default::default() }, options(2, OnError::Quit)).await;
        assert!(report.success());
        assert_eq!(report.built(), 5);
        let order = runner.order.lock().unwrap().clone();
        let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
        assert!(pos("c") > pos("a") && pos("c") > pos("b") && pos("d") > pos("c"), "{order:?}");
        assert_eq!(runner.max_running.load(Ordering::SeqCst), 2);
        // c received its dependencies' artifacts.
        match &report.results[2] {
            ElementResult::Built(a) => assert_eq!(a.dependencies, [("a".to_string(), "a-strong".to_string()), ("b".into(), "b-strong".into())]),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn elements_that_run_no_action_take_no_builder_slot() {
        let (report, runner, _) = run(FakeRunner { delay_ms: 30, no_action: true, ..Default::default() }, options(1, OnError::Quit)).await;
        assert!(report.success());
        // a, b and e are independent: with no slot needed they overlap despite --builders 1.
        assert!(runner.max_running.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn cached_elements_are_not_built() {
        let runner = FakeRunner { cached: vec!["a".into(), "b".into()], ..Default::default() };
        let (report, runner, events) = run(runner, options(4, OnError::Quit)).await;
        assert_eq!((report.cached(), report.built()), (2, 3));
        assert!(!runner.order.lock().unwrap().contains(&"a".to_string()));
        assert!(events.contains(&BuildEvent::Cached { element: "a".into(), key: "a-strong".into() }));
    }

    #[tokio::test]
    async fn transient_failures_are_retried_and_real_failures_are_not() {
        let runner = FakeRunner { flaky: Mutex::new(HashMap::from([("a".to_string(), 2)])), fail: vec!["e".into()], ..Default::default() };
        let (report, runner, events) = run(runner, options(1, OnError::Continue)).await;
        assert!(matches!(report.results[0], ElementResult::Built(_)));
        let attempts_a = runner.order.lock().unwrap().iter().filter(|n| *n == "a").count();
        assert_eq!(attempts_a, 3);
        let attempts_e = runner.order.lock().unwrap().iter().filter(|n| *n == "e").count();
        assert_eq!(attempts_e, 1);
        assert!(matches!(report.results[4], ElementResult::Failed(BuildError::CommandFailed { exit_code: 2, .. })));
        assert!(events.iter().any(|e| matches!(e, BuildEvent::Failed { element, exit_code: Some(2), log_tail, .. } if element == "e" && log_tail == "boom")));
        assert_eq!(events.iter().filter(|e| matches!(e, BuildEvent::Retrying { .. })).count(), 2);
    }

    #[tokio::test]
    async fn on_error_continue_builds_independent_branches_and_quit_stops() {
        let runner = FakeRunner { fail: vec!["a".into()], ..Default::default() };
        let (report, _, _) = run(runner, options(1, OnError::Continue)).await;
        assert!(matches!(report.results[0], ElementResult::Failed(_)));
        assert!(matches!(report.results[1], ElementResult::Built(_)));
        assert!(matches!(report.results[2], ElementResult::Skipped));
        assert!(matches!(report.results[3], ElementResult::Skipped));
        assert!(matches!(report.results[4], ElementResult::Built(_)));

        let runner = FakeRunner { fail: vec!["a".into()], ..Default::default() };
        let (report, runner, _) = run(runner, options(1, OnError::Quit)).await;
        assert!(!report.success());
        // With one builder, nothing starts after a fails.
        assert_eq!(runner.order.lock().unwrap().clone(), ["a"]);
    }

    #[tokio::test]
    async fn cancellation_stops_the_build() {
        let runner = Arc::new(FakeRunner { delay_ms: 5_000, ..Default::default() });
        let queue = BuildQueue::new(runner, options(2, OnError::Quit), Arc::new(EventLog::default()));
        let (tx, rx) = watch::channel(false);
        let started = Instant::now();
        let handle = tokio::spawn(async move { queue.run(diamond(), rx).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(true).unwrap();
        let report = handle.await.unwrap();
        assert!(report.cancelled);
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(report.results.iter().all(|r| matches!(r, ElementResult::Skipped)));
    }
}
