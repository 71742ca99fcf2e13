//! `weir build TARGET...`: load the targets, compute their keys, and build
//! every element that is not cached on the remote, with progress lines (or
//! `--json` events) and BuildStream-like exit codes.
//!
//! It also owns [`RemoteArgs`], the remote options `weir build` and `weir
//! artifact` share, and [`Session`], the loaded graph plus connected remote
//! both commands start from. Key decision: with no remote configured (no
//! `--remote`, no remotes in the user configuration), the session starts an
//! [`EmbeddedWorker`] rooted at the cache directory and builds through it
//! over loopback, like any remote; [`Session::close`] stops it.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::collections::HashSet;
use std::sync::Arc;

use clap::Args;
use tokio::sync::watch;

use super::show::{load_options, project_directory};
use super::{Failure, GlobalArgs, EXIT_FAILURE};
use crate::build::{
    plan_from_graph, ArtifactKeys, BuildError, BuildEvent, BuildPlan, BuildQueue, ElementRunner, EventSink, Offer, OnError,
    QueueOptions, RemoteRunner,
};
use crate::cachekey::{sandbox::HostPlatform, GraphKeys, KeyTable};
use crate::graph::{ElementId, Graph};
use crate::loader::{self, LoadFailure};
use crate::remote::{default_cache_dir, EmbeddedWorker, EndpointSpec, RemoteClient, RemoteConfig, RemoteError};

/// Exit status when the build was interrupted (Ctrl-C).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Where the REAPI server(s) are.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// REAPI instance name.
    #[arg(long = "instance-name", default_value = "", value_name = "NAME")]
    pub instance_name: String,
    /// Bearer token sent to the remotes.
    #[arg(long = "token", env = "WEIR_REMOTE_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate for `grpcs://` remotes with a private CA.
    #[arg(long = "server-cert", value_name = "FILE")]
    pub server_cert: Option<PathBuf>,
    /// Root of the embedded worker used when no remote is configured (CAS,
    /// action cache, work trees). Default: the user configuration's
    /// `cachedir`, else `$XDG_CACHE_HOME/weir` or `~/.cache/weir`.
    #[arg(long = "cache-dir", env = "WEIR_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Where a command's artifacts are stored and its actions run.
enum Remotes {
    /// Configured remotes: the storage endpoint and the execution endpoints.
    Configured(EndpointSpec, Vec<EndpointSpec>),
    /// None configured: an embedded worker rooted at this cache directory.
    Embedded(PathBuf),
}

impl Remotes {
    /// The storage endpoint, the execution endpoints and, when no remote is
    /// configured, the embedded worker serving both (started here; it stops
    /// when dropped).
    async fn endpoints(self) -> Result<(EndpointSpec, Vec<EndpointSpec>, Option<EmbeddedWorker>), Failure> {
        match self {
            Remotes::Configured(storage, executors) => Ok((storage, executors, None)),
            Remotes::Embedded(cache_dir) => {
                let worker = EmbeddedWorker::start(&cache_dir).await.map_err(|e| {
                    Failure::new("APP", "EMBEDDED_WORKER", format!("{e}; or build on a remote with --remote grpc://HOST:PORT"))
                })?;
                let spec = worker.endpoint().clone();
                Ok((spec.clone(), vec![spec], Some(worker)))
            }
        }
    }
}

impl RemoteArgs {
    /// `--remote` URLs (the first stores; every one may execute), else the
    /// user configuration's remotes (`-c FILE`), else the embedded worker in
    /// `--cache-dir`, the configuration's `cachedir` or the user cache directory.
    fn remotes(&self, global: &GlobalArgs) -> Result<Remotes, Failure> {
        if global.remotes.is_empty() {
            let config = match &global.config {
                Some(path) => RemoteConfig::load(path).map_err(|message| Failure::new("APP", "INVALID_USER_CONFIG", message))?,
                None => RemoteConfig::default(),
            };
            let Some(storage) = config.storage else {
                let cache_dir = self.cache_dir.clone().or(config.cache_dir).or_else(default_cache_dir).ok_or_else(|| {
                    Failure::new("APP", "NO_CACHE_DIR", "no remote configured and no cache directory: pass --cache-dir DIR or --remote grpc://HOST:PORT")
                })?;
                return Ok(Remotes::Embedded(cache_dir));
            };
            let executors = if config.executors.is_empty() { vec![storage.clone()] } else { config.executors };
            return Ok(Remotes::Configured(storage, executors));
        }
        let specs = global
            .remotes
            .iter()
            .map(|url| {
                let mut spec = EndpointSpec::new(url.trim()).map_err(remote_failure)?;
                spec.instance_name = self.instance_name.clone();
                spec.token = self.token.clone();
                spec.ca_certificate = self.server_cert.clone();
                Ok(spec)
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(Remotes::Configured(specs[0].clone(), specs))
    }
}

/// `weir build` arguments, as BuildStream's `bst build` where they overlap.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Remote options.
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// Remote actions run at once (elements that run no action take no slot).
    #[arg(long = "builders", default_value_t = 4, value_name = "N")]
    pub builders: usize,
    /// What to do when an element fails.
    #[arg(long = "on-error", value_enum, default_value_t = OnError::Quit)]
    pub on_error: OnError,
    /// Further attempts after a transient remote failure.
    #[arg(long = "retries", default_value_t = 3, value_name = "N")]
    pub retries: u32,
    /// Print one JSON event per line on stdout instead of progress lines.
    #[arg(long = "json")]
    pub json: bool,
    /// Element targets (default: the project's default targets).
    #[arg(value_name = "ELEMENT")]
    pub targets: Vec<String>,
}

/// A loaded project with keys and a connected remote.
pub struct Session {
    /// The graph.
    pub graph: Graph,
    /// Keys of every element, indexed by element id.
    pub keys: KeyTable,
    /// The storage remote (CAS and artifacts).
    pub storage: RemoteClient,
    /// The execution remotes (sharing the storage remote's CAS).
    pub executors: Vec<RemoteClient>,
    /// The in-process worker behind `storage` when no remote is configured.
    embedded: Option<EmbeddedWorker>,
}

impl Session {
    /// Loads `targets`, computes keys and connects to the remotes.
    pub async fn open(global: &GlobalArgs, remote: &RemoteArgs, targets: &[String]) -> Result<Session, Failure> {
        let remotes = remote.remotes(global)?;
        let directory = project_directory(global)?;
        let options = load_options(global);
        let targets = targets.to_vec();
        // The embedded worker starts (namespace probe, databases) while the
        // project loads; it stops when dropped on any early return.
        let load = tokio::task::spawn_blocking(move || {
            let graph = loader::load(&directory, &targets, &options).map_err(load_failure)?.graph;
            let keys = GraphKeys::compute(&graph)
                .map_err(|e| Failure::new("ELEMENT", "CACHE_KEY", e.to_string()))?
                .into_table();
            Ok::<_, Failure>((graph, keys))
        });
        let (loaded, started) = tokio::join!(load, remotes.endpoints());
        let (graph, keys) = loaded.map_err(|e| Failure::new("APP", "INTERNAL", e.to_string()))??;
        let (storage, executors, embedded) = started?;
        let storage_url = storage.url.clone();
        let storage = RemoteClient::connect(storage).await.map_err(remote_failure)?;
        let mut connected = Vec::with_capacity(executors.len());
        for spec in executors {
            connected.push(if spec.url == storage_url { storage.clone() } else { RemoteClient::connect(spec).await.map_err(remote_failure)? });
        }
        Ok(Session { graph, keys, storage, executors: connected, embedded })
    }

    /// Ends the session: stops the embedded worker, if any, once its
    /// in-flight requests are done.
    pub async fn close(self) {
        let Session { storage, executors, embedded, .. } = self;
        drop((storage, executors));
        if let Some(worker) = embedded {
            worker.stop().await;
        }
    }

    /// The artifact keys of `id` (strict mode: the strong key is the strict key).
    pub fn artifact_keys(&self, id: ElementId) -> Option<ArtifactKeys> {
        let keys = self.keys.get(id.index())?;
        Some(ArtifactKeys { strong: keys.strict.clone()?, weak: keys.weak.clone()? })
    }
}

/// The elements of `graph` whose artifact (by strict key) is in the cache
/// this command line configures, for `weir show`'s `%{state}`: `--remote`,
/// the user configuration's remotes, or the embedded worker's cache
/// directory if it already exists (`None` when no cache is configured; none
/// is created just to look).
pub(super) fn cached_elements(
    global: &GlobalArgs,
    remote: &RemoteArgs,
    graph: &Graph,
    keys: &KeyTable,
) -> Result<Option<HashSet<ElementId>>, Failure> {
    let remotes = remote.remotes(global)?;
    if let Remotes::Embedded(dir) = &remotes {
        if !dir.join("cache.redb").is_file() {
            return Ok(None);
        }
    }
    runtime()?.block_on(async {
        let (spec, _, embedded) = remotes.endpoints().await?;
        let cache = crate::build::ArtifactCache::new(RemoteClient::connect(spec).await.map_err(remote_failure)?);
        let strict: Vec<(ElementId, String)> =
            graph.elements.iter().filter_map(|e| Some((e.id, keys.get(e.id.index())?.strict.clone()?))).collect();
        let names: Vec<crate::build::artifact::ArtifactName<'_>> = strict
            .iter()
            .map(|(id, key)| {
                let element = graph.element(*id);
                crate::build::artifact::ArtifactName { project: &element.project_name, element: &element.full_name, key }
            })
            .collect();
        let found = cache.lookup_many(&names).await;
        let cached = strict.iter().zip(found).filter(|(_, found)| matches!(found, Ok(Some(_)))).map(|((id, _), _)| *id).collect();
        drop(cache);
        if let Some(worker) = embedded {
            worker.stop().await;
        }
        Ok(Some(cached))
    })
}

/// A load failure as the user sees it.
pub fn load_failure(f: LoadFailure) -> Failure {
    Failure { domain: f.domain, reason: f.reason, message: f.message, detail: f.detail }
}

/// A source fetch failure as the user sees it.
pub fn source_failure(e: crate::fetch::FetchError) -> Failure {
    Failure::new("SOURCE", e.reason(), e.to_string())
}

/// A remote failure as the user sees it.
pub fn remote_failure(e: RemoteError) -> Failure {
    Failure::new("REMOTE", if e.is_retryable() { "UNAVAILABLE" } else { "FAILED" }, e.to_string())
}

/// A build-area failure as the user sees it.
pub fn build_failure(e: BuildError) -> Failure {
    match e {
        BuildError::Remote(e) => remote_failure(e),
        other => Failure::new("ELEMENT", "BUILD", other.to_string()),
    }
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| Failure::new("APP", "INTERNAL", e.to_string()))
}

/// Runs `weir build`.
pub fn run(global: &GlobalArgs, args: &BuildArgs) -> Result<ExitCode, Failure> {
    runtime()?.block_on(build(global, args))
}

async fn build(global: &GlobalArgs, args: &BuildArgs) -> Result<ExitCode, Failure> {
    let session = Session::open(global, &args.remote, &args.targets).await?;
    let host = HostPlatform::detect();
    let printer = Arc::new(Printer::new(args.json));
    let fetch = crate::fetch::FetchStep::new(&source_cache_dir(&args.remote, global)?);
    let fetched = fetch.locate(&session.graph, &session.graph.targets).map_err(source_failure)?;
    let plan = plan_from_graph(&session.graph, &session.graph.targets, &host, &fetched, |id| session.artifact_keys(id)).map_err(build_failure)?;
    let plan = Arc::new(plan);
    let storage = session.storage.clone();
    for remote in session.executors.iter().filter(|r| !r.exec_enabled()) {
        eprintln!("[warning] {} does not execute actions (Capabilities: exec_enabled false); it is not used for execution", remote.spec().url);
    }
    let executors = session.executors.iter().filter(|r| r.exec_enabled()).map(|r| (r.clone(), Offer::default())).collect();
    let runner = Arc::new(RemoteRunner::new(storage, executors));
    let options = QueueOptions { builders: args.builders.max(1), on_error: args.on_error, max_retries: args.retries, ..QueueOptions::default() };
    let queue = BuildQueue::new(runner.clone(), options, printer.clone() as Arc<dyn EventSink>);
    let (cancel, cancelled) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = cancel.send(true);
        }
    });
    // Only what is not cached needs its sources, as in BuildStream.
    let lookups = runner.lookup_all(&plan).await;
    let to_build: HashSet<&str> =
        plan.elements().iter().zip(&lookups).filter(|(_, found)| !matches!(found, Ok(Some(_)))).map(|(e, _)| e.name.as_str()).collect();
    fetch
        .fetch(&session.graph, &session.graph.targets, printer.as_ref(), |element| to_build.contains(element.full_name.as_str()))
        .await
        .map_err(source_failure)?;
    let report = queue.run_with_lookups(plan.clone(), lookups, cancelled).await;
    if report.cancelled {
        runner.flush_cancellations(std::time::Duration::from_secs(5)).await;
    }
    printer.finish();
    summarise(&plan, &report, args.json);
    drop((queue, runner));
    session.close().await;
    Ok(if report.cancelled {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if report.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    })
}

/// Where downloaded sources are cached (`<dir>/sources`): `--cache-dir`, the
/// user configuration's `cachedir`, or the default cache directory — also
/// when the build runs on a remote.
pub(super) fn source_cache_dir(remote: &RemoteArgs, global: &GlobalArgs) -> Result<PathBuf, Failure> {
    let configured = match (&remote.cache_dir, &global.config) {
        (None, Some(path)) => RemoteConfig::load(path).map_err(|message| Failure::new("APP", "INVALID_USER_CONFIG", message))?.cache_dir,
        _ => None,
    };
    remote.cache_dir.clone().or(configured).or_else(default_cache_dir).ok_or_else(|| {
        Failure::new("APP", "NO_CACHE_DIR", "no cache directory for downloaded sources: pass --cache-dir DIR")
    })
}

/// Prints the closing summary on stderr (the JSON stream stays on stdout).
fn summarise(plan: &BuildPlan, report: &crate::build::BuildReport, json: bool) {
    let skipped = report.results.iter().filter(|r| matches!(r, crate::build::ElementResult::Skipped)).count();
    let line = format!(
        "Build summary: {} elements: {} built, {} cached, {} failed, {} skipped{}",
        plan.len(),
        report.built(),
        report.cached(),
        report.failed(),
        skipped,
        if report.cancelled { " (interrupted)" } else { "" }
    );
    if json {
        let event = serde_json::json!({
            "event": "summary", "elements": plan.len(), "built": report.built(), "cached": report.cached(),
            "failed": report.failed(), "skipped": skipped, "interrupted": report.cancelled,
        });
        super::print_stdout(&format!("{event}\n"));
    }
    eprintln!("{line}");
}

/// Prints events: JSON lines on stdout (`--json`); otherwise progress lines
/// on stderr, under a live status line (counts, running elements, elapsed
/// time) when stderr is a terminal.
pub(super) struct Printer {
    json: bool,
    live: Option<Live>,
    out: std::sync::Mutex<()>,
}

/// The live status line of a terminal.
struct Live {
    bar: indicatif::ProgressBar,
    state: std::sync::Mutex<LiveState>,
}

#[derive(Default)]
struct LiveState {
    total: usize,
    done: usize,
    failed: usize,
    running: std::collections::BTreeSet<String>,
}

impl Printer {
    pub(super) fn new(json: bool) -> Self {
        let live = (!json && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            Live { bar, state: std::sync::Mutex::default() }
        });
        Printer { json, live, out: std::sync::Mutex::new(()) }
    }

    /// Removes the status line.
    pub(super) fn finish(&self) {
        if let Some(live) = &self.live {
            live.bar.finish_and_clear();
        }
    }

    /// Updates the status line for `event`.
    fn track(live: &Live, event: &BuildEvent) {
        let Ok(mut state) = live.state.lock() else { return };
        match event {
            BuildEvent::Queued { .. } => state.total += 1,
            BuildEvent::Cached { .. } => state.done += 1,
            BuildEvent::Started { element, .. } => {
                state.running.insert(element.clone());
            }
            BuildEvent::Finished { element, .. } => {
                state.running.remove(element);
                state.done += 1;
            }
            BuildEvent::Failed { element, .. } => {
                state.running.remove(element);
                state.failed += 1;
            }
            BuildEvent::Retrying { .. }
            | BuildEvent::Skipped { .. }
            | BuildEvent::Warning { .. }
            | BuildEvent::Executed { .. }
            | BuildEvent::Fetched { .. } => {}
        }
        let running: Vec<&str> = state.running.iter().map(String::as_str).take(4).collect();
        let more = state.running.len().saturating_sub(running.len());
        live.bar.set_message(format!(
            "{}/{} done, {} failed, {} running: {}{}",
            state.done,
            state.total,
            state.failed,
            state.running.len(),
            running.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        ));
    }
}

impl EventSink for Printer {
    fn emit(&self, event: BuildEvent) {
        let _guard = self.out.lock();
        if self.json {
            if let Ok(line) = serde_json::to_string(&event) {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
            return;
        }
        if let Some(live) = &self.live {
            Printer::track(live, &event);
        }
        let line = match &event {
            BuildEvent::Queued { .. } | BuildEvent::Executed { .. } => return,
            BuildEvent::Cached { element, key } => format!("[cached ] {element} ({})", short(key)),
            BuildEvent::Started { element, attempt: 1 } => format!("[start  ] {element}"),
            BuildEvent::Started { element, attempt } => format!("[start  ] {element} (attempt {attempt})"),
            BuildEvent::Retrying { element, attempt, error } => format!("[retry  ] {element}: attempt {attempt} failed: {error}"),
            BuildEvent::Finished { element, key, millis } => format!("[success] {element} ({}) in {:.1}s", short(key), *millis as f64 / 1000.0),
            BuildEvent::Failed { element, error, log_tail, logs, .. } => {
                let mut text = format!("[FAILURE] {element}: {error}");
                if !log_tail.is_empty() {
                    text.push_str("\n    Last lines of the log:");
                    for line in log_tail.lines() {
                        text.push_str(&format!("\n    | {line}"));
                    }
                }
                if !logs.is_empty() {
                    text.push_str(&format!("\n    Full log in the CAS: {}", logs.join(", ")));
                }
                text
            }
            BuildEvent::Skipped { element } => format!("[skipped] {element}"),
            BuildEvent::Fetched { element, url, bytes, millis } => {
                format!("[fetch  ] {element}: {url} ({} in {:.1}s)", size(*bytes), *millis as f64 / 1000.0)
            }
            BuildEvent::Warning { element, token, brief, detail } => {
                let mut text = format!("[WARNING] {element}: [{token}]: {brief}");
                for line in detail.lines() {
                    text.push_str(&format!("\n    {line}"));
                }
                text
            }
        };
        match &self.live {
            Some(live) => live.bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

/// A byte count for people: `512 B`, `3.4 KiB`, `12.0 MiB`, `1.2 GiB`.
fn size(bytes: u64) -> String {
    let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    match units.iter().find(|(_, scale)| bytes >= *scale) {
        Some((unit, scale)) => format!("{:.1} {unit}", bytes as f64 / *scale as f64),
        None => format!("{bytes} B"),
    }
}

/// The first 8 characters of a key, as BuildStream shows them.
fn short(key: &str) -> &str {
    key.get(..8).unwrap_or(key)
}
