//! Element instantiation (spec §8, §2.3, §9): composing each element's
//! variables, environment, public data, configuration, sandbox and sources
//! from the project, plugin defaults and the element file; resolving and
//! expanding variables; running the kind's configure and preflight checks.
//!
//! Key decision: elements are visited depth-first from the targets with an
//! explicit stack (enter: own data; exit: dependency configuration and
//! preflight), so the first error met is the one BuildStream reports, and
//! deep graphs cannot overflow the stack. What every element of a kind
//! shares (defaults, base sections, base variables) is composed once per
//! kind ([`KindBase`]); each element adds only its own parts.

use std::sync::Arc;

use super::kind_base::KindBase;
use super::kinds::{KindBehaviour, KindInfo};
use super::prepare::{configure_core_kind, prepare_element, ElementFacts, PrepareEnv};
use super::session::Session;
use crate::graph::{Dependency, Element, ElementId, ExternalKey};
use crate::plugins::Namespace;
use crate::project::{PassConfig, ProjectId, Variables, VariablesBase};
use crate::yaml::interner::MapInterner;
use crate::yaml::{check_trailing_directives, compose, LoadError, LoadErrorReason, LoadResult, Map, Node, SourceMap, Span};

const PROTECTED: [&str; 3] = ["project-name", "element-name", "max-jobs"];

enum Step {
    Enter(ElementId),
    Exit(ElementId),
}

/// An element's own data, before its dependencies are known.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) element: Element,
    pub(crate) kind: Arc<KindInfo>,
    /// Kept only when dependency configurations need expanding.
    pub(crate) vars: Option<Variables>,
}

/// Per-element state between enter and exit.
struct Pending {
    element: Element,
    kind: Arc<KindInfo>,
}

pub(crate) fn empty(span: Span) -> Map {
    Map::new(Span::synthetic(span.file))
}

/// An element's section: the kind's shared start (`base`) ← the element's own.
pub(crate) fn section(base: &LoadResult<Map>, file: crate::yaml::FileId, node: &Map, key: &str) -> LoadResult<Map> {
    compose_own(KindBase::take(base, file)?, node, key)
}

/// `out` ← the element's own `key` section.
pub(crate) fn compose_own(mut out: Map, node: &Map, key: &str) -> LoadResult<Map> {
    if let Some(e) = node.get_map(key)? {
        compose(e.clone(), &mut out)?;
    }
    check_trailing_directives(&out)?;
    Ok(out)
}

/// A redefinition of a protected variable (one not set by Weir itself) in
/// the composed table `variables`.
pub(crate) fn check_protected(variables: &Map) -> LoadResult<()> {
    protected_error(PROTECTED.iter().filter_map(|name| variables.get(name).map(|n| (*name, n.span()))))
}

fn protected_error<'a>(mut found: impl Iterator<Item = (&'a str, Span)>) -> LoadResult<()> {
    match found.find(|(_, span)| !span.is_synthetic()) {
        Some((name, span)) => Err(LoadError::at(
            span,
            LoadErrorReason::ProtectedVariableRedefined,
            format!("invalid redefinition of protected variable '{name}'"),
        )),
        None => Ok(()),
    }
}

/// The element's own `variables` when composing them over the base table
/// is a plain replacement of scalars (no nested value, no directive, a
/// valid base): `None` when the element's table must be composed in full.
pub(crate) fn plain_own_variables<'a>(node: &'a Map, base: &VariablesBase) -> LoadResult<Option<Option<&'a Map>>> {
    if base.is_empty() || !base.directive_free() {
        return Ok(None);
    }
    let own = node.get_map("variables")?;
    let plain = own.is_none_or(|own| own.iter().all(|(k, v)| matches!(v, Node::Scalar(_)) && !k.starts_with('(')));
    Ok(plain.then_some(own))
}

/// The variables of an element whose own `variables` (`own`) are plain
/// scalars: the same table, checks and errors as composing `own` over
/// `base_map` and building [`Variables::with_base`] from the result, without
/// copying the base table.
pub(crate) fn element_variables_over_base(
    base_map: &Map,
    base: &Arc<VariablesBase>,
    own: Option<&Map>,
    element_name: &Arc<str>,
    synthetic: Span,
) -> LoadResult<Variables> {
    let composed = |name: &str| own.and_then(|o| o.get(name)).or_else(|| base_map.get(name));
    protected_error(PROTECTED.iter().filter_map(|name| composed(name).map(|n| (*name, n.span()))))?;
    let notparallel = match own.filter(|o| o.contains("notparallel")) {
        Some(o) => o.get_bool("notparallel")?,
        None => base_map.get_bool("notparallel")?,
    };
    let max_jobs_span = composed("max-jobs").map(Node::span).unwrap_or_else(|| Span::synthetic(base_map.span.file));
    let (element_name_key, max_jobs_key, one): (Arc<str>, Arc<str>, Arc<str>) =
        (Arc::from("element-name"), Arc::from("max-jobs"), Arc::from("1"));
    let own_scalars = own.into_iter().flat_map(|o| o.iter()).filter_map(|(k, v)| match v {
        Node::Scalar(s) => Some((k, &s.value, s.span)),
        _ => None,
    });
    let core = std::iter::once((&element_name_key, element_name, synthetic))
        .chain((notparallel == Some(true)).then_some((&max_jobs_key, &one, max_jobs_span)));
    Ok(Variables::over_base(base, own_scalars.chain(core)))
}

pub(crate) fn split_rules(map: &Map) -> LoadResult<Option<&Map>> {
    match map.get_map("bst")? {
        Some(bst) => bst.get_map("split-rules"),
        None => Ok(None),
    }
}

impl Session {
    /// Instantiates every element reachable from `targets`; returns the
    /// elements (graph ids assigned in visiting order) and the targets' graph ids.
    pub fn instantiate(&mut self, targets: &[ElementId]) -> LoadResult<(Vec<Element>, Vec<ElementId>)> {
        let mut graph_id: Vec<Option<ElementId>> = vec![None; self.elements.len()];
        // Indexed by graph id (visiting order), so the list becomes the
        // graph's element list in place, without a second copy.
        // Sized for every loaded element (all of them, for most targets):
        // growing by doubling would copy the list and touch twice its memory.
        let loaded = self.elements.len();
        let mut elements: Vec<Element> = Vec::with_capacity(loaded);
        let mut kinds: Vec<Arc<KindInfo>> = Vec::with_capacity(loaded);
        let mut order: Vec<ElementId> = Vec::with_capacity(loaded);
        for &target in targets {
            let mut stack = vec![Step::Enter(target)];
            while let Some(step) = stack.pop() {
                match step {
                    Step::Enter(id) => {
                        if graph_id[id.index()].is_some() {
                            continue;
                        }
                        let gid = ElementId(order.len() as u32);
                        graph_id[id.index()] = Some(gid);
                        order.push(id);
                        let p = self.enter(id, gid)?;
                        elements.push(p.element);
                        kinds.push(p.kind);
                        stack.push(Step::Exit(id));
                        for dep in self.element(id).deps.iter().rev() {
                            stack.push(Step::Enter(dep.element));
                        }
                    }
                    Step::Exit(id) => {
                        let gid = graph_id[id.index()].unwrap_or(ElementId(0));
                        if let (Some(element), Some(kind)) = (elements.get_mut(gid.index()), kinds.get(gid.index())) {
                            self.exit(kind, element)?;
                        }
                    }
                }
            }
        }
        drop(kinds);
        if elements.len() < elements.capacity() / 2 {
            elements.shrink_to_fit();
        }
        for (element, load_id) in elements.iter_mut().zip(order.iter()) {
            for (dep, loaded) in element.dependencies.iter_mut().zip(self.element(*load_id).deps.iter()) {
                dep.element = graph_id[loaded.element.index()].unwrap_or(ElementId(0));
            }
        }
        let targets = targets.iter().filter_map(|t| graph_id[t.index()]).collect();
        Ok((elements, targets))
    }

    pub(crate) fn pass_of(&self, project: crate::project::ProjectId, first_pass: bool) -> LoadResult<&PassConfig> {
        self.project(project)
            .pass(first_pass)
            .ok_or_else(|| LoadError::new(LoadErrorReason::InvalidData, "project configuration is not loaded"))
    }

    /// Composes, resolves and checks one element's own data.
    /// Takes the element's own data, prepared eagerly when its file was
    /// loaded (or now), and adds its dependencies.
    fn enter(&mut self, id: ElementId, gid: ElementId) -> LoadResult<Pending> {
        let prepared = match self.elements[id.index()].prepared.take() {
            Some(result) => (*result)?,
            None => self.prepare(id)?,
        };
        let Prepared { mut element, kind, vars } = prepared;
        element.id = gid;
        // The element is entered once: its loaded dependencies hand over
        // their configurations and paths.
        let (elements, sources) = (&mut self.elements, &self.sources);
        let loaded = &mut elements[id.index()].deps;
        let mut dependencies = Vec::with_capacity(loaded.len());
        for dep in loaded.iter_mut() {
            let mut configs = std::mem::take(&mut dep.configs);
            if let Some(vars) = &vars {
                for c in &mut configs {
                    vars.expand_map(c, sources)?;
                }
            }
            dependencies.push(Dependency {
                element: dep.element,
                dep_type: dep.dep_type,
                strict: dep.strict,
                configs,
                path: std::mem::take(&mut dep.path),
                span: dep.span,
            });
        }
        element.dependencies = dependencies;
        Ok(Pending { element, kind })
    }

    /// Who element `id` is, for [`prepare_element`].
    pub(crate) fn element_facts(&self, id: ElementId) -> ElementFacts {
        let el = self.element(id);
        ElementFacts {
            id,
            name: el.name.clone(),
            full_name: el.full_name.clone(),
            kind_name: el.kind.clone(),
            project: el.project,
            project_name: self.project(el.project).name.clone(),
            first_pass: el.first_pass,
            has_dep_configs: el.dep_specs.iter().any(|d| !d.configs.is_empty()),
        }
    }

    /// Composes, resolves and checks one element's own data (everything but
    /// its dependencies), on the loader's thread. Done right after the file
    /// is read, so the parsed tree can be dropped early; errors are kept and
    /// reported in order.
    pub(crate) fn prepare(&mut self, id: ElementId) -> LoadResult<Prepared> {
        let facts = self.element_facts(id);
        let (project, first_pass) = (facts.project, facts.first_pass);
        let kind_span = self.element(id).kind_span;
        let kind = self.element_kind(project, &facts.kind_name, kind_span)?;
        let node = std::mem::replace(&mut self.elements[id.index()].node, Map::new(kind_span));
        let base = self.kind_base(project, first_pass, &kind, node.span.file)?;
        let nocache = self.pass_of(project, first_pass)?.environment_nocache.clone();
        let mut env = SessionEnv { session: self, project, first_pass };
        let prepared = prepare_element(&mut env, facts, kind, &base, &nocache, &node);
        self.prefetch.recycle(node);
        prepared
    }

    /// After the dependencies: dependency configuration and preflight.
    fn exit(&mut self, kind: &KindInfo, element: &mut Element) -> LoadResult<()> {
        let mut delivered: Vec<(String, Vec<Map>)> = Vec::new();
        for dep in &element.dependencies {
            if !dep.dep_type.is_build() || dep.configs.is_empty() {
                continue;
            }
            if !kind.dependency_config {
                return Err(LoadError::at(
                    dep.span,
                    LoadErrorReason::InvalidDependencyConfig,
                    format!("Element plugin '{}' does not support dependency configuration", kind.name),
                ));
            }
            delivered.push((self.element(dep.element).full_name.clone(), dep.configs.clone()));
        }
        match &kind.behaviour {
            KindBehaviour::Core(core) => {
                let deps: Vec<(bool, bool)> =
                    element.dependencies.iter().map(|d| (d.dep_type.is_build(), d.dep_type.is_runtime())).collect();
                core.preflight(element.span, !element.sources.is_empty(), &deps).map_err(|e| {
                    let mut e = e;
                    e.message = format!("{}: {}", element.full_name, e.message);
                    e
                })?;
            }
            KindBehaviour::External(exe) => {
                if let Some(plugin) = self.plugins.get_mut(exe) {
                    let reply = plugin.configure_dependencies(&element.full_name, &delivered, element.span)?;
                    self.messages.extend(reply.messages);
                }
            }
        }
        Ok(())
    }
}

/// The loader's own surroundings for [`prepare_element`]: the session, with
/// the element's project and pass.
struct SessionEnv<'s> {
    session: &'s mut Session,
    project: ProjectId,
    first_pass: bool,
}

impl PrepareEnv for SessionEnv<'_> {
    fn source_map(&self) -> &SourceMap {
        &self.session.sources
    }

    fn source_map_and_interner(&mut self) -> (&SourceMap, &mut MapInterner) {
        (&self.session.sources, &mut self.session.interner)
    }

    fn configure_external(&mut self, exe: &std::path::Path, full_name: &str, config: &Map, span: Span) -> LoadResult<Option<ExternalKey>> {
        let Some(plugin) = self.session.plugins.get_mut(exe) else { return Ok(None) };
        let reply = plugin.configure(full_name, config, span)?;
        let key = plugin.external_key(&reply);
        self.session.messages.extend(reply.messages);
        Ok(key)
    }

    fn provenance_attributes(&self) -> &[String] {
        &self.session.project(self.project).source_provenance_attributes
    }

    fn source_overrides(&self) -> &Map {
        static NONE: std::sync::OnceLock<Map> = std::sync::OnceLock::new();
        // The pass is loaded: preparing asked for it first.
        match self.session.pass_of(self.project, self.first_pass) {
            Ok(pass) => &pass.source_overrides,
            Err(_) => NONE.get_or_init(|| Map::new(Span::synthetic(SourceMap::core()))),
        }
    }

    fn apply_refs(&mut self, element_name: &str, index: usize, config: &mut Map) -> LoadResult<()> {
        self.session.apply_project_refs(self.project, element_name, index, config)
    }

    fn configure_source(&mut self, element_name: &str, kind: &crate::yaml::Scalar, config: &Map, span: Span) -> LoadResult<Option<serde_json::Value>> {
        let session = &mut *self.session;
        let declared = session.states[self.project.0 as usize].origins.lookup(Namespace::Source, &kind.value).is_some();
        if !declared {
            return configure_core_kind(kind, config);
        }
        if let Some(exe) = session.source_plugin(self.project, &kind.value, kind.span)? {
            if let Some(plugin) = session.plugins.get_mut(&exe) {
                let reply = plugin.configure(element_name, config, span)?;
                session.messages.extend(reply.messages);
                return Ok(reply.unique_key);
            }
        }
        Ok(None)
    }
}
