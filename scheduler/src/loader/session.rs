//! The load session: every project instance, every element file, the
//! caches and the in-progress searches of one `weir` run (BuildStream's
//! `LoadContext` plus its per-project `Loader`s).
//!
//! Key decision: one owner for all mutable loading state, so that includes,
//! junctions, links and overrides can reach any project instance by id
//! without shared ownership; the other files of this module add `impl
//! Session` blocks for one concern each.

use std::collections::{HashMap, HashSet};

use rustc_hash::FxHashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::dependency::DepSpec;
use super::kinds::KindInfo;
use super::user_config::UserConfig;
use crate::graph::{DepType, ElementId};
use crate::plugins::{ExternalPlugin, PluginOrigins};
use crate::project::{Host, Project, ProjectId};
use crate::yaml::{FileId, Map, Scalar, SourceMap, Span};

/// A dependency after resolution.
#[derive(Debug, Clone)]
pub struct LoadedDep {
    /// The element depended on.
    pub element: ElementId,
    /// Type.
    pub dep_type: DepType,
    /// `strict`.
    pub strict: bool,
    /// Unexpanded configurations (moved to the graph's dependency on instantiation).
    pub configs: Vec<Map>,
    /// The reference as written (moved to the graph's dependency on instantiation).
    pub path: String,
    /// Provenance of the entry.
    pub span: Span,
}

/// An element file after includes and conditionals.
#[derive(Debug)]
pub struct LoadElement {
    /// Its id (index in the session's element list).
    pub id: ElementId,
    /// Owning project instance.
    pub project: ProjectId,
    /// Normalised name in its project.
    pub name: String,
    /// Full name for display.
    pub full_name: String,
    /// Final kind.
    pub kind: String,
    /// Provenance of the `kind` value.
    pub kind_span: Span,
    /// The element node.
    pub node: Map,
    /// Junction or link (loaded with the first pass).
    pub first_pass: bool,
    /// The file it was read from.
    pub file: FileId,
    /// Dependencies as written (taken once they are resolved).
    pub dep_specs: Vec<DepSpec>,
    /// Dependencies once resolved.
    pub deps: Vec<LoadedDep>,
    /// For links: `config.target`.
    pub link_target: Option<Scalar>,
    /// The element's own instantiated data (or the error), prepared when
    /// its file was read. Boxed: it is large and only held until
    /// instantiation, while the element list lives for the whole load.
    pub prepared: Option<Box<crate::yaml::LoadResult<super::instantiate::Prepared>>>,
}

/// Per-project loader state.
#[derive(Debug, Default)]
pub struct ProjectState {
    /// Declared plugin origins.
    pub origins: PluginOrigins,
    /// Element name → final element (after overrides and links).
    pub resolved: FxHashMap<String, ElementId>,
    /// Element name → the element file loaded from this project.
    pub files: FxHashMap<String, ElementId>,
    /// Junction name → subproject instance.
    pub loaders: FxHashMap<String, ProjectId>,
    /// Projects whose junction this instance replaced through an override.
    pub replaced_in: Vec<ProjectId>,
    /// Second pass running (guards re-entry).
    pub second_in_progress: bool,
    /// Element kinds resolved for this project.
    pub kinds: FxHashMap<String, Arc<KindInfo>>,
    /// What elements of each kind start from, per kind, for the second
    /// pass (`[0]`) and the first (`[1]`).
    pub kind_bases: [FxHashMap<String, crate::yaml::LoadResult<Arc<super::kind_base::KindBase>>>; 2],
    /// `project.refs` once read (outer `None`: not read yet).
    pub refs: Option<Option<Map>>,
    /// What elements prepared off the loader's thread share (made once).
    pub prep: Option<Arc<super::prepare::ProjectPrep>>,
    /// Shallow reads of element files (kind, link target) for path matching.
    pub shallow: FxHashMap<String, Option<(String, Option<Scalar>)>>,
}

/// What the caller asks to load.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// `--option NAME VALUE` pairs.
    pub cli_options: Vec<(String, String)>,
    /// User configuration file.
    pub user_config: Option<PathBuf>,
    /// Helper threads for reading and preparing element files: `None`
    /// decides from the machine (and `WEIR_LOAD_THREADS`).
    pub helper_threads: Option<usize>,
    /// The process ends soon after the load (as `weir show` does): the
    /// loader's own state (every parsed file) is left to the exit instead
    /// of being freed on a thread that competes with the caller's next work.
    pub short_lived: bool,
}

/// All state of one load.
pub struct Session {
    /// Display names of every file read.
    pub sources: SourceMap,
    /// Host identity.
    pub host: Host,
    /// User configuration.
    pub user: UserConfig,
    /// `--option` values (toplevel only).
    pub cli_options: Vec<(String, String)>,
    /// `%{max-jobs}` text.
    pub max_jobs: String,
    /// Helper threads asked for (see [`LoadOptions::helper_threads`]).
    pub helper_threads: Option<usize>,
    /// Toplevel project directory.
    pub toplevel_dir: PathBuf,
    /// Project instances.
    pub projects: Vec<Project>,
    /// Loader state per project instance.
    pub states: Vec<ProjectState>,
    /// Every element file loaded. Boxed: the list grows by doubling while
    /// files are read, and copying (and touching the fresh memory of)
    /// 264-byte entries at each doubling cost about 2,000 page faults per
    /// 10,000 elements; pointers cost a thirtieth of that.
    pub elements: Vec<Box<LoadElement>>,
    /// Messages plugins asked to show.
    pub messages: Vec<String>,
    /// Parsed include files per (project, path), and whether each holds no
    /// directive (include, conditional, assertion) to process.
    pub(crate) include_cache: HashMap<(ProjectId, PathBuf), (Arc<Map>, bool)>,
    /// Junction path searches in progress (for circular reference reports).
    pub(crate) searching: HashMap<(ProjectId, String), Option<Span>>,
    /// Link resolutions in progress.
    pub(crate) links_in_progress: HashSet<(ProjectId, String)>,
    /// Shares equal expanded trees between elements.
    pub(crate) interner: crate::yaml::interner::MapInterner,
    /// Running external plugins by executable path.
    pub(crate) plugins: HashMap<PathBuf, ExternalPlugin>,
    /// Workers parsing element files ahead of the loader (none outside the
    /// element loading phase).
    pub(crate) prefetch: super::prefetch::Prefetcher,
    /// Elements handed to the helper threads (`prefetch`) to prepare while
    /// the loader reads on.
    pub(crate) preparer: super::prepare::Preparer,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("projects", &self.projects.len()).field("elements", &self.elements.len()).finish()
    }
}

impl Session {
    /// A session for the project at `toplevel_dir`.
    pub fn new(toplevel_dir: PathBuf, options: &LoadOptions) -> crate::yaml::LoadResult<Session> {
        let mut sources = SourceMap::new();
        let user = match &options.user_config {
            Some(path) => UserConfig::load(path, &mut sources)?,
            None => UserConfig::default(),
        };
        let max_jobs = match user.max_jobs()? {
            0 => std::thread::available_parallelism().map(|n| n.get().min(8)).unwrap_or(1),
            n => n as usize,
        };
        Ok(Session {
            sources,
            host: Host::detect(),
            user,
            cli_options: options.cli_options.clone(),
            max_jobs: max_jobs.to_string(),
            helper_threads: options.helper_threads,
            toplevel_dir,
            projects: Vec::new(),
            states: Vec::new(),
            elements: Vec::new(),
            messages: Vec::new(),
            include_cache: HashMap::new(),
            searching: HashMap::new(),
            links_in_progress: HashSet::new(),
            plugins: HashMap::new(),
            interner: Default::default(),
            prefetch: super::prefetch::Prefetcher::start(0),
            preparer: super::prepare::Preparer::default(),
        })
    }

    /// The project instance `id`.
    pub fn project(&self, id: ProjectId) -> &Project {
        &self.projects[id.0 as usize]
    }

    pub(crate) fn state(&mut self, id: ProjectId) -> &mut ProjectState {
        &mut self.states[id.0 as usize]
    }

    /// The element file `id`.
    pub fn element(&self, id: ElementId) -> &LoadElement {
        &self.elements[id.index()]
    }

    /// Ends a finished session: external plugin processes are stopped now,
    /// the rest (every parsed element file, a large share of the loader's
    /// allocations) is freed on a background thread, so that the caller
    /// goes on with the graph meanwhile (freed here when no thread starts),
    /// or not at all when the process ends soon anyway (`short_lived`).
    pub fn retire(mut self, short_lived: bool) {
        drop(std::mem::take(&mut self.plugins));
        if short_lived {
            std::mem::forget(self);
            return;
        }
        let _ = std::thread::Builder::new().name("weir-free".into()).spawn(move || drop(self));
    }
}
