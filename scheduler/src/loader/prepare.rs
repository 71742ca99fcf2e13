//! Preparing an element's own data (spec §8, §9): composing its variables,
//! environment, public data, configuration, sandbox and sources from its
//! kind's [`KindBase`] and its file, resolving and expanding variables.
//!
//! It owns [`PrepareEnv`] (what preparing needs from its surroundings),
//! [`prepare_element`] (the one body both callers run) and [`Preparer`],
//! which hands elements to the helper threads that parse files ahead, to be
//! prepared while the loader reads on. Key decisions:
//! * the loader hands over only elements that need nothing but shareable
//!   data: a core kind whose [`KindBase`] it already built, sources of core
//!   kinds only, and no `project.refs`; everything else is prepared on the
//!   loader's thread, as before;
//! * a helper's result is used only when preparing succeeded there; on any
//!   error the element file's tree comes back and the loader prepares it
//!   again itself when instantiating, so errors, their order and their
//!   provenance are exactly those of a sequential load;
//! * no thread of its own: a helper prepares only when it has no file to
//!   parse, and the loader prepares what is left when it is done reading.
//!   A dedicated thread competed with the parsing helper on two cores and
//!   gained nothing; this way the work goes to whichever core has time.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::instantiate::{check_protected, compose_own, element_variables_over_base, empty, plain_own_variables, section, Prepared};
use super::kind_base::{compose_public, Expanded, KindBase, Section};
use super::kinds::{KindBehaviour, KindInfo};
use super::prefetch::Prefetcher;
use crate::graph::{Element, ElementId, ExternalKey, SourceData};
use crate::plugins::core::{configure_core_source, reject_internal_source, CORE_SOURCES};
use crate::project::{ProjectId, Variables};
use crate::yaml::interner::MapInterner;
use crate::yaml::{check_trailing_directives, compose, LoadError, LoadErrorReason, LoadResult, Map, Node, SourceMap, Span};

/// Who an element is, as preparing needs it.
#[derive(Debug, Clone)]
pub struct ElementFacts {
    /// Its id in the session.
    pub id: ElementId,
    /// Name in its project.
    pub name: String,
    /// Full name for display.
    pub full_name: String,
    /// Kind as written.
    pub kind_name: String,
    /// Owning project.
    pub project: ProjectId,
    /// Name of that project.
    pub project_name: String,
    /// A junction or link.
    pub first_pass: bool,
    /// Whether a dependency carries `config` (the variables are then kept).
    pub has_dep_configs: bool,
}

/// What preparing an element needs besides its kind and file.
pub trait PrepareEnv {
    /// Where spans point, for error details.
    fn source_map(&self) -> &SourceMap;
    /// The same, with what shares equal mappings and strings between elements.
    fn source_map_and_interner(&mut self) -> (&SourceMap, &mut MapInterner);
    /// Configures an element of an external kind; its plugin's key, if any.
    fn configure_external(&mut self, exe: &std::path::Path, full_name: &str, config: &Map, span: Span) -> LoadResult<Option<ExternalKey>>;
    /// The provenance attributes the project declares.
    fn provenance_attributes(&self) -> &[String];
    /// The project's `sources:` overrides.
    fn source_overrides(&self) -> &Map;
    /// Applies `project.refs` to source `index` of the element.
    fn apply_refs(&mut self, element_name: &str, index: usize, config: &mut Map) -> LoadResult<()>;
    /// Configures a source of kind `kind`; the unique key an external plugin computed.
    fn configure_source(&mut self, element_name: &str, kind: &crate::yaml::Scalar, config: &Map, span: Span) -> LoadResult<Option<serde_json::Value>>;
}

/// Prepares the element `facts` of kind `kind` from its file's tree `node`:
/// everything but its dependencies. `nocache` is the project's
/// `environment-nocache`.
pub fn prepare_element(
    env: &mut impl PrepareEnv,
    facts: ElementFacts,
    kind: Arc<KindInfo>,
    base: &KindBase,
    nocache_base: &[String],
    node: &Map,
) -> LoadResult<Prepared> {
    let span = node.span;
    let file = span.file;
    let defaults = &base.defaults;

    // Variables.
    let (base_variables, shared_vars) = match &base.variables {
        Ok((map, shared)) => (map, shared),
        Err(e) => return Err(e.clone()),
    };
    let element_name: Arc<str> = Arc::from(facts.name.as_str());
    let vars = match plain_own_variables(node, shared_vars)? {
        Some(own) => element_variables_over_base(base_variables, shared_vars, own, &element_name, Span::synthetic(file))?,
        None => {
            let mut variables = compose_own(base_variables.clone(), node, "variables")?;
            check_protected(&variables)?;
            variables.insert("element-name", Node::scalar(element_name, Span::synthetic(file)));
            if variables.get_bool("notparallel")? == Some(true) {
                crate::project::instance::set_core_variable(&mut variables, "max-jobs", "1");
            }
            Variables::with_base(&variables, shared_vars)?
        }
    };
    if !facts.first_pass {
        vars.check(env.source_map())?;
    }

    // Environment.
    let environment = shared_or_own(&base.environment_expanded, &base.environment, node, "environment", &vars, env.source_map())?;
    let mut nocache: BTreeSet<String> = BTreeSet::new();
    if !facts.first_pass {
        nocache.extend(nocache_base.iter().cloned());
    }
    for source in [defaults, node] {
        if let Some(list) = source.get_str_list("environment-nocache")? {
            nocache.extend(list.iter().map(|s| s.value.to_string()));
        }
    }

    // Public data with composed split rules.
    let public = match Expanded::reuse(&base.public_expanded, node, "public", &vars) {
        Some(shared) => Section::Shared(shared),
        None => {
            let own = node.get_map("public")?.cloned().unwrap_or_else(|| empty(span));
            let mut public = compose_public(own, KindBase::take(&base.splits, file)?, empty(span))?;
            vars.expand_map(&mut public, env.source_map())?;
            Section::Own(public)
        }
    };

    // Configuration.
    let mut config = section(&base.config, file, node, "config")?;
    vars.expand_map(&mut config, env.source_map())?;
    let external_key = match &kind.behaviour {
        KindBehaviour::Core(core) => {
            core.configure(&config)?;
            None
        }
        KindBehaviour::External(exe) => env.configure_external(exe, &facts.full_name, &config, span)?,
    };

    // Sandbox.
    let sandbox = shared_or_own(&base.sandbox_expanded, &base.sandbox, node, "sandbox", &vars, env.source_map())?;

    let sources = prepare_sources(env, &facts.name, node, &vars)?;

    let (source_map, interner) = env.source_map_and_interner();
    // A regular element's variables all resolved above (`check`); a
    // first-pass element's that fail to resolve are never used.
    // The values kept here are those the element does not share with its
    // kind's base table: its name and what refers to it, mostly unique, so
    // they are not interned (measured: a set of every such value cost more
    // time and memory than the duplicates it removed).
    let variables = vars.resolved_with(source_map, |v| v).unwrap_or_default();
    let element = Element {
        id: facts.id,
        name: facts.name,
        full_name: facts.full_name,
        kind: facts.kind_name,
        project: facts.project,
        project_name: facts.project_name,
        first_pass: facts.first_pass,
        variables,
        config: interner.intern(config),
        environment: environment.intern(interner),
        environment_nocache: nocache.into_iter().collect(),
        public: public.intern(interner),
        sandbox: sandbox.intern(interner),
        sources,
        dependencies: Vec::new(),
        span,
        external_key,
    };
    Ok(Prepared { element, kind, vars: facts.has_dep_configs.then_some(vars) })
}

/// Section `key` of an element: the kind's expanded copy when the element
/// can share it, else the kind's `base` section with the element's own
/// composed on top, expanded with the element's variables.
fn shared_or_own<'b>(
    expanded: &'b Option<Expanded>,
    base: &LoadResult<Map>,
    node: &Map,
    key: &str,
    vars: &Variables,
    sources: &SourceMap,
) -> LoadResult<Section<'b>> {
    if let Some(shared) = Expanded::reuse(expanded, node, key, vars) {
        return Ok(Section::Shared(shared));
    }
    let mut own = section(base, node.span.file, node, key)?;
    vars.expand_map(&mut own, sources)?;
    Ok(Section::Own(own))
}

/// The element's sources (spec sources §1): each one's kind, directory and
/// provenance, its configuration composed over the project's overrides,
/// with refs applied, expanded and checked by its kind.
fn prepare_sources(env: &mut impl PrepareEnv, element_name: &str, node: &Map, vars: &Variables) -> LoadResult<Vec<SourceData>> {
    let Some(list) = node.get_seq("sources")? else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(list.items.len());
    for (index, item) in list.items.iter().enumerate() {
        let Node::Map(entry) = item else {
            return Err(LoadError::at(item.span(), LoadErrorReason::InvalidData, "Value of 'sources' item is not of the expected type 'dict'"));
        };
        let kind = entry.req_scalar("kind")?.clone();
        reject_internal_source(&kind.value, kind.span)?;
        let directory = entry.get_str("directory")?.map(str::to_string);
        let provenance = entry.get_map("provenance")?.cloned();
        if let Some(p) = &provenance {
            let allowed = env.provenance_attributes();
            for (key, value) in p.iter() {
                if !allowed.iter().any(|a| a.as_str() == key.as_ref()) {
                    return Err(LoadError::at(
                        value.span(),
                        LoadErrorReason::UndefinedSourceProvenanceAttribute,
                        format!("Provenance attribute '{key}' is not declared in project.conf 'source-provenance-attributes'"),
                    ));
                }
                if !matches!(value, Node::Scalar(_)) {
                    return Err(LoadError::at(value.span(), LoadErrorReason::InvalidData, format!("Value of '{key}' is not of the expected type 'scalar'")));
                }
            }
        }
        let mut own = entry.clone();
        own.remove("kind");
        own.remove("directory");
        own.remove("provenance");
        let mut config = env
            .source_overrides()
            .get_map(&kind.value)?
            .and_then(|m| m.get_map("config").ok().flatten())
            .cloned()
            .unwrap_or_else(|| Map::new(Span::synthetic(entry.span.file)));
        compose(own, &mut config)?;
        config.span = entry.span;
        env.apply_refs(element_name, index, &mut config)?;
        check_trailing_directives(&config)?;
        vars.expand_map(&mut config, env.source_map())?;
        let unique_key = env.configure_source(element_name, &kind, &config, entry.span)?;
        out.push(SourceData { kind: kind.value.to_string(), config, directory, provenance, span: entry.span, unique_key });
    }
    Ok(out)
}

/// Configures a source of a core kind; an unknown kind is an error.
pub fn configure_core_kind(kind: &crate::yaml::Scalar, config: &Map) -> LoadResult<Option<serde_json::Value>> {
    if CORE_SOURCES.contains(&kind.value.as_ref()) {
        configure_core_source(&kind.value, config)?;
        Ok(None)
    } else {
        Err(LoadError::other("PLUGIN", "plugin-not-found", Some(kind.span), format!("No source plugin registered for kind '{}'", kind.value)))
    }
}

/// What elements of one project prepared off the loader's thread share.
#[derive(Debug)]
pub struct ProjectPrep {
    /// Its `environment-nocache`.
    pub environment_nocache: Vec<String>,
    /// Its `sources:` overrides.
    pub source_overrides: Map,
    /// Its declared source provenance attributes.
    pub provenance_attributes: Vec<String>,
}

/// One element handed to the [`Preparer`].
struct Job {
    facts: ElementFacts,
    kind: Arc<KindInfo>,
    base: Arc<KindBase>,
    project: Arc<ProjectPrep>,
    node: Map,
}

/// What a helper made of one element: its data, or (on any error) its tree
/// back, to be prepared again by the loader.
pub type Outcome = (ElementId, Result<Box<Prepared>, Map>);

/// What preparing on a helper thread keeps between elements: an empty file
/// table (errors are reported by the loader) and the thread's interner.
#[derive(Default)]
struct HelperState {
    sources: SourceMap,
    interner: MapInterner,
}

thread_local! {
    static HELPER_STATE: std::cell::RefCell<HelperState> = std::cell::RefCell::default();
}

impl Job {
    fn run(self) -> Outcome {
        let Job { facts, kind, base, project, node } = self;
        let id = facts.id;
        let result = HELPER_STATE.with_borrow_mut(|state| {
            let mut env = ThreadEnv { sources: &state.sources, interner: &mut state.interner, project: &project };
            // A panic (a bug) sends the element back, as an error does.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                prepare_element(&mut env, facts, kind, &base, &project.environment_nocache, &node)
            }))
        });
        match result {
            Ok(Ok(prepared)) => (id, Ok(Box::new(prepared))),
            _ => (id, Err(node)),
        }
    }
}

/// Elements prepared off the loader's thread: set aside for the helper
/// threads that parse files ahead ([`Prefetcher::set_aside`]), which
/// prepare them when they have no file to parse.
#[derive(Default)]
pub struct Preparer {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer").finish_non_exhaustive()
    }
}

impl Preparer {
    /// Hands element `facts` to `helpers` (prepared here when none runs).
    pub fn submit(&self, helpers: &Prefetcher, facts: ElementFacts, kind: Arc<KindInfo>, base: Arc<KindBase>, project: Arc<ProjectPrep>, node: Map) {
        let job = Job { facts, kind, base, project, node };
        let outcomes = self.outcomes.clone();
        helpers.set_aside(Box::new(move || {
            let outcome = job.run();
            outcomes.lock().unwrap_or_else(PoisonError::into_inner).push(outcome);
        }));
    }

    /// Runs or waits for every element handed to `helpers` and returns what
    /// became of each, in no particular order.
    pub fn finish(&mut self, helpers: &Prefetcher) -> Vec<Outcome> {
        helpers.finish_aside();
        // The loader's thread may have prepared some itself: what it kept
        // for that is not kept past this load.
        HELPER_STATE.with_borrow_mut(|state| *state = HelperState::default());
        std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A helper thread's surroundings for preparing: no plugin, no `project.refs`, no
/// registered files (a failure is retried by the loader, which has them).
struct ThreadEnv<'a> {
    sources: &'a SourceMap,
    interner: &'a mut MapInterner,
    project: &'a ProjectPrep,
}

/// An error that sends the element back to the loader.
fn not_here() -> LoadError {
    LoadError::new(LoadErrorReason::InvalidData, "prepared by the loader")
}

impl PrepareEnv for ThreadEnv<'_> {
    fn source_map(&self) -> &SourceMap {
        self.sources
    }

    fn source_map_and_interner(&mut self) -> (&SourceMap, &mut MapInterner) {
        (self.sources, self.interner)
    }

    fn configure_external(&mut self, _: &std::path::Path, _: &str, _: &Map, _: Span) -> LoadResult<Option<ExternalKey>> {
        Err(not_here())
    }

    fn provenance_attributes(&self) -> &[String] {
        &self.project.provenance_attributes
    }

    fn source_overrides(&self) -> &Map {
        &self.project.source_overrides
    }

    fn apply_refs(&mut self, _: &str, _: usize, _: &mut Map) -> LoadResult<()> {
        Ok(())
    }

    fn configure_source(&mut self, _: &str, kind: &crate::yaml::Scalar, config: &Map, _: Span) -> LoadResult<Option<serde_json::Value>> {
        configure_core_kind(kind, config)
    }
}
