//! The project loader: from a project directory and target names to the
//! instantiated element [`Graph`] (spec §10), through element files,
//! dependencies, includes, junctions, overrides and links.
//!
//! Key decision: one [`Session`] owns all loading state; each file of this
//! module adds one concern to it (projects, includes, elements, junctions,
//! kinds, cycles and sorting, instantiation, conflicts). Errors leave the
//! module rendered ([`LoadFailure`]), with provenance as BuildStream prints it.

pub mod circular;
pub mod conflicts;
pub mod dependency;
pub mod elements;
pub mod includes;
pub mod instantiate;
pub mod junctions;
pub mod kind_base;
pub mod kinds;
pub mod names;
pub mod prefetch;
pub mod prepare;
pub mod projects;
pub mod refs;
pub mod session;
pub mod user_config;

use std::path::{Path, PathBuf};

pub use session::{LoadOptions, Session};

use crate::graph::{Graph, ProjectSummary};
use crate::yaml::{LoadError, LoadErrorReason, SourceMap};

/// A load error with its provenance rendered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("[{domain}/{reason}] {message}")]
pub struct LoadFailure {
    /// Error domain (`LOAD`, `PLUGIN`, ...).
    pub domain: String,
    /// Reason name.
    pub reason: String,
    /// Message with provenance.
    pub message: String,
    /// Further detail.
    pub detail: Option<String>,
}

impl LoadFailure {
    /// Renders `error` with the file names of `sources`.
    pub fn render(error: &LoadError, sources: &SourceMap) -> LoadFailure {
        LoadFailure {
            domain: error.domain().to_string(),
            reason: error.reason_name(),
            message: error.render(sources),
            detail: error.detail.clone(),
        }
    }
}

/// The nearest directory at or above `start` holding a `project.conf`.
pub fn find_project_dir(start: &Path) -> Option<PathBuf> {
    let mut dir = start.to_path_buf();
    loop {
        if dir.join("project.conf").is_file() {
            return Some(dir);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// A loaded project and its element graph.
#[derive(Debug)]
pub struct Loaded {
    /// The graph.
    pub graph: Graph,
    /// Messages plugins asked to show.
    pub messages: Vec<String>,
    /// The user configuration's `logging: key-length` (`%{key}`'s length).
    pub key_length: usize,
}

fn summaries(session: &Session) -> Vec<ProjectSummary> {
    session
        .projects
        .iter()
        .map(|p| {
            let pass = p.pass(false);
            let mut fatal = implicit_fatal_warnings(session, p);
            fatal.sort();
            ProjectSummary {
                name: p.name.clone(),
                directory: p.directory.clone(),
                aliases: pass.map(|c| c.aliases.clone()).unwrap_or_default(),
                fatal_warnings: fatal,
                junction: p.junction.as_ref().map(|j| j.full_name.clone()),
                options: pass
                    .map(|c| c.options.options.values().map(|o| (o.name.clone(), o.string_value())).collect())
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// A project's `fatal-warnings` with BuildStream's implicit additions: the
/// deprecated `fail-on-overlap: true` adds `overlaps`, and a parent project
/// (at any depth) with `junctions: disallow-subproject-uris: true` adds
/// `unaliased-url` (both part of every element key of the project).
fn implicit_fatal_warnings(session: &Session, project: &crate::project::Project) -> Vec<String> {
    let mut fatal = project.fatal_warnings.clone();
    let mut add = |token: &str| {
        if !fatal.iter().any(|t| t == token) {
            fatal.push(token.to_string());
        }
    };
    if project.raw.get_bool("fail-on-overlap").ok().flatten() == Some(true) {
        add("overlaps");
    }
    let mut origin = project.junction.as_ref();
    while let Some(junction) = origin {
        let parent = session.project(junction.parent);
        if parent.disallow_subproject_uris {
            add("unaliased-url");
            break;
        }
        origin = parent.junction.as_ref();
    }
    fatal
}

/// The project's default targets: `defaults: targets`, else every `.bst`
/// under the element path (sorted, `.bst/` directories skipped).
fn default_targets(session: &Session) -> Vec<String> {
    let project = session.project(crate::project::ProjectId(0));
    if !project.default_targets.is_empty() {
        return project.default_targets.clone();
    }
    crate::project::element_files::element_files(&project.element_path, |dir| {
        dir.file_name().is_some_and(|name| name != ".bst")
    })
}

/// Threads that read and parse element files ahead of the loader, and
/// prepare elements when no file is waiting: one per core besides the
/// loader's own, at most three. On a machine whose cores are all
/// busy a helper costs little: with mimalloc's thread-local heaps, handing a
/// parsed tree to the loader is cheap, and measured with every core busy the
/// process used the same CPU time with or without a helper.
/// `WEIR_LOAD_THREADS` overrides; 0 reads every file on the loader's own
/// thread.
fn load_threads() -> usize {
    if let Some(n) = std::env::var("WEIR_LOAD_THREADS").ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    cores.saturating_sub(1).min(3)
}

/// Prints how long each load phase took when `WEIR_LOAD_TIMINGS` is set:
/// wall time, the loading thread's CPU time and the whole process's (on a
/// shared machine the CPU times are the steadier figures; the loading
/// thread's is the critical path when other threads keep up), and the
/// process's page faults (each new page of memory costs one, a few
/// microseconds of system time).
pub(crate) struct PhaseTimer {
    enabled: bool,
    last: std::time::Instant,
    last_cpu: (f64, f64),
    last_faults: i64,
}

/// Minor page faults of the whole process so far.
fn page_faults() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } == 0 { usage.ru_minflt } else { 0 }
}

/// CPU seconds of the calling thread and of the whole process.
fn cpu_times() -> (f64, f64) {
    let read = |clock| {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes one timespec through a valid pointer.
        let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
        if rc == 0 { ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9 } else { 0.0 }
    };
    (read(libc::CLOCK_THREAD_CPUTIME_ID), read(libc::CLOCK_PROCESS_CPUTIME_ID))
}

impl PhaseTimer {
    /// Starts timing the first phase.
    pub(crate) fn new() -> PhaseTimer {
        let enabled = std::env::var_os("WEIR_LOAD_TIMINGS").is_some();
        let (last_cpu, last_faults) = if enabled { (cpu_times(), page_faults()) } else { ((0.0, 0.0), 0) };
        PhaseTimer { enabled, last: std::time::Instant::now(), last_cpu, last_faults }
    }

    /// Prints `text` when enabled.
    pub(crate) fn note(&self, text: &str) {
        if self.enabled {
            eprintln!("weir: {text}");
        }
    }

    /// Ends `phase` (printing it when enabled) and starts the next.
    pub(crate) fn done(&mut self, phase: &str) {
        if self.enabled {
            let (cpu, faults) = (cpu_times(), page_faults());
            eprintln!(
                "weir: {phase}: {:.3}s (cpu: this thread {:.3}s, process {:.3}s; {} page faults)",
                self.last.elapsed().as_secs_f64(),
                cpu.0 - self.last_cpu.0,
                cpu.1 - self.last_cpu.1,
                faults - self.last_faults
            );
            (self.last_cpu, self.last_faults) = (cpu, faults);
        }
        self.last = std::time::Instant::now();
    }
}

fn load_in(session: &mut Session, directory: &Path, targets: &[String]) -> Result<Graph, LoadError> {
    let mut timer = PhaseTimer::new();
    let helpers = session.helper_threads.unwrap_or_else(load_threads);
    session.prefetch = prefetch::Prefetcher::start(helpers);
    let top = session.load_project(directory, None)?;
    let targets = if targets.is_empty() { default_targets(session) } else { targets.to_vec() };
    let mut ids = Vec::with_capacity(targets.len());
    for target in &targets {
        if Path::new(target).is_absolute() {
            return Err(LoadError::new(LoadErrorReason::InvalidData, format!("Target '{target}' is an absolute path")));
        }
        ids.push(session.resolve_element(top, target, None)?);
    }
    timer.note(&session.prefetch.summary());
    session.collect_prepared();
    // Stops the workers and frees what they parsed for nothing.
    session.prefetch = prefetch::Prefetcher::start(0);
    timer.done("load files");
    session.check_cycles(&ids)?;
    timer.done("cycle check");
    session.sort_dependencies();
    timer.done("dependency sort");
    let (elements, graph_targets) = session.instantiate(&ids)?;
    timer.done("instantiate");
    session.check_conflicts()?;
    let projects = summaries(session);
    let sources = std::mem::take(&mut session.sources);
    Ok(Graph::new(elements, graph_targets, projects, sources))
}

/// Loads the project in `directory` and the graph of `targets` (default
/// targets when empty).
pub fn load(directory: &Path, targets: &[String], options: &LoadOptions) -> Result<Loaded, LoadFailure> {
    let mut session = match Session::new(directory.to_path_buf(), options) {
        Ok(s) => s,
        Err(e) => return Err(LoadFailure::render(&e, &SourceMap::new())),
    };
    match load_in(&mut session, directory, targets) {
        Ok(graph) => {
            let messages = std::mem::take(&mut session.messages);
            let key_length = session.user.key_length().unwrap_or(8);
            session.retire(options.short_lived);
            Ok(Loaded { graph, messages, key_length })
        }
        Err(e) => Err(LoadFailure::render(&e, &session.sources)),
    }
}

/// Loads only the toplevel project.conf (both passes); returns the project's
/// name and its options as (name, value) strings.
pub fn load_project_only(directory: &Path, options: &LoadOptions) -> Result<(String, Vec<(String, String)>), LoadFailure> {
    let mut session = match Session::new(directory.to_path_buf(), options) {
        Ok(s) => s,
        Err(e) => return Err(LoadFailure::render(&e, &SourceMap::new())),
    };
    let result = session.load_project(directory, None).and_then(|id| {
        session.ensure_second_pass(id)?;
        Ok(id)
    });
    match result {
        Ok(_) => {
            let summary = summaries(&session).remove(0);
            Ok((summary.name, summary.options))
        }
        Err(e) => Err(LoadFailure::render(&e, &session.sources)),
    }
}

/// Reads and checks a user configuration file on its own.
pub fn check_user_config(path: &Path) -> Result<(), LoadFailure> {
    let mut sources = SourceMap::new();
    match user_config::UserConfig::load(path, &mut sources) {
        Ok(_) => Ok(()),
        Err(e) => Err(LoadFailure::render(&e, &sources)),
    }
}

#[cfg(test)]
mod tests;
