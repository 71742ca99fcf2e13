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

use std::collections::BTreeSet;
use std::sync::Arc;

use super::kind_base::{compose_public, Expanded, KindBase, Section};
use super::kinds::{KindBehaviour, KindInfo};
use super::session::Session;
use crate::graph::{Dependency, Element, ElementId, SourceData};
use crate::plugins::core::{configure_core_source, reject_internal_source, CORE_SOURCES};
use crate::plugins::Namespace;
use crate::project::{PassConfig, Variables, VariablesBase};
use crate::yaml::{check_trailing_directives, compose, LoadError, LoadErrorReason, LoadResult, Map, Node, Span};

const PROTECTED: [&str; 3] = ["project-name", "element-name", "max-jobs"];

enum Step {
    Enter(ElementId),
    Exit(ElementId),
}

/// An element's own data, before its dependencies are known.
#[derive(Debug)]
pub struct Prepared {
    element: Element,
    kind: Arc<KindInfo>,
    /// Kept only when dependency configurations need expanding.
    vars: Option<Variables>,
}

/// Per-element state between enter and exit.
struct Pending {
    element: Element,
    kind: Arc<KindInfo>,
}

fn empty(span: Span) -> Map {
    Map::new(Span::synthetic(span.file))
}

/// An element's section: the kind's shared start (`base`) ← the element's own.
fn section(base: &LoadResult<Map>, file: crate::yaml::FileId, node: &Map, key: &str) -> LoadResult<Map> {
    compose_own(KindBase::take(base, file)?, node, key)
}

/// `out` ← the element's own `key` section.
fn compose_own(mut out: Map, node: &Map, key: &str) -> LoadResult<Map> {
    if let Some(e) = node.get_map(key)? {
        compose(e.clone(), &mut out)?;
    }
    check_trailing_directives(&out)?;
    Ok(out)
}

/// A redefinition of a protected variable (one not set by Weir itself) in
/// the composed table `variables`.
fn check_protected(variables: &Map) -> LoadResult<()> {
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
fn plain_own_variables<'a>(node: &'a Map, base: &VariablesBase) -> LoadResult<Option<Option<&'a Map>>> {
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
fn element_variables_over_base(
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
        let mut elements: Vec<Element> = Vec::new();
        let mut kinds: Vec<Arc<KindInfo>> = Vec::new();
        let mut order: Vec<ElementId> = Vec::new();
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
        elements.shrink_to_fit();
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

    /// Composes, resolves and checks one element's own data (everything but
    /// its dependencies). Done right after the file is read, so the parsed
    /// tree can be dropped early; errors are kept and reported in order.
    pub(crate) fn prepare(&mut self, id: ElementId) -> LoadResult<Prepared> {
        let el = self.element(id);
        let (project_id, kind_name, kind_span, first_pass) = (el.project, el.kind.clone(), el.kind_span, el.first_pass);
        let (name, full_name) = (el.name.clone(), el.full_name.clone());
        let kind = self.element_kind(project_id, &kind_name, kind_span)?;
        let node = std::mem::replace(&mut self.elements[id.index()].node, Map::new(kind_span));
        let span = node.span;
        let file = span.file;
        let base = self.kind_base(project_id, first_pass, &kind, file)?;
        let defaults = &base.defaults;
        let pass = self.pass_of(project_id, first_pass)?;

        // Variables.
        let (base_variables, shared_vars) = match &base.variables {
            Ok((map, shared)) => (map, shared),
            Err(e) => return Err(e.clone()),
        };
        let element_name: Arc<str> = Arc::from(name.as_str());
        let vars = match plain_own_variables(&node, shared_vars)? {
            Some(own) => element_variables_over_base(base_variables, shared_vars, own, &element_name, Span::synthetic(span.file))?,
            None => {
                let mut variables = compose_own(base_variables.clone(), &node, "variables")?;
                check_protected(&variables)?;
                variables.insert("element-name", Node::scalar(element_name, Span::synthetic(span.file)));
                if variables.get_bool("notparallel")? == Some(true) {
                    crate::project::instance::set_core_variable(&mut variables, "max-jobs", "1");
                }
                Variables::with_base(&variables, shared_vars)?
            }
        };
        if !first_pass {
            vars.check(&self.sources)?;
        }

        // Environment.
        let environment = match Expanded::reuse(&base.environment_expanded, &node, "environment", &vars) {
            Some(shared) => Section::Shared(shared),
            None => {
                let mut environment = section(&base.environment, file, &node, "environment")?;
                vars.expand_map(&mut environment, &self.sources)?;
                Section::Own(environment)
            }
        };
        let mut nocache: BTreeSet<String> = BTreeSet::new();
        if !first_pass {
            nocache.extend(pass.environment_nocache.iter().cloned());
        }
        for source in [defaults, &node] {
            if let Some(list) = source.get_str_list("environment-nocache")? {
                nocache.extend(list.iter().map(|s| s.value.to_string()));
            }
        }

        // Public data with composed split rules.
        let public = match Expanded::reuse(&base.public_expanded, &node, "public", &vars) {
            Some(shared) => Section::Shared(shared),
            None => {
                let own = node.get_map("public")?.cloned().unwrap_or_else(|| empty(span));
                let mut public = compose_public(own, KindBase::take(&base.splits, file)?, empty(span))?;
                vars.expand_map(&mut public, &self.sources)?;
                Section::Own(public)
            }
        };

        // Configuration.
        let mut config = section(&base.config, file, &node, "config")?;
        vars.expand_map(&mut config, &self.sources)?;
        let mut external_key = None;
        match &kind.behaviour {
            KindBehaviour::Core(core) => core.configure(&config)?,
            KindBehaviour::External(exe) => {
                if let Some(plugin) = self.plugins.get_mut(exe) {
                    let reply = plugin.configure(&full_name, &config, span)?;
                    external_key = plugin.external_key(&reply);
                    self.messages.extend(reply.messages);
                }
            }
        }

        // Sandbox.
        let sandbox = match Expanded::reuse(&base.sandbox_expanded, &node, "sandbox", &vars) {
            Some(shared) => Section::Shared(shared),
            None => {
                let mut sandbox = section(&base.sandbox, file, &node, "sandbox")?;
                vars.expand_map(&mut sandbox, &self.sources)?;
                Section::Own(sandbox)
            }
        };

        let sources = self.instantiate_sources(project_id, first_pass, &name, &node, &vars)?;

        let has_dep_configs = self.element(id).dep_specs.iter().any(|d| !d.configs.is_empty());
        let project_name = self.project(project_id).name.clone();
        let interner = &mut self.interner;
        let variables = vars.resolved_with(&self.sources, |v| interner.intern_str(v)).unwrap_or_default();
        let element = Element {
            id,
            name,
            full_name,
            kind: kind_name,
            project: project_id,
            project_name,
            first_pass,
            variables,
            config: self.interner.intern(config),
            environment: environment.intern(&mut self.interner),
            environment_nocache: nocache.into_iter().collect(),
            public: public.intern(&mut self.interner),
            sandbox: sandbox.intern(&mut self.interner),
            sources,
            dependencies: Vec::new(),
            span,
            external_key,
        };
        self.prefetch.recycle(node);
        Ok(Prepared { element, kind, vars: has_dep_configs.then_some(vars) })
    }

    fn instantiate_sources(
        &mut self,
        project_id: crate::project::ProjectId,
        first_pass: bool,
        element_name: &str,
        node: &Map,
        vars: &Variables,
    ) -> LoadResult<Vec<SourceData>> {
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
                let allowed = &self.project(project_id).source_provenance_attributes;
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
            let pass = self.pass_of(project_id, first_pass)?;
            let mut config = pass
                .source_overrides
                .get_map(&kind.value)?
                .and_then(|m| m.get_map("config").ok().flatten())
                .cloned()
                .unwrap_or_else(|| Map::new(Span::synthetic(entry.span.file)));
            compose(own, &mut config)?;
            config.span = entry.span;
            self.apply_project_refs(project_id, element_name, index, &mut config)?;
            check_trailing_directives(&config)?;
            vars.expand_map(&mut config, &self.sources)?;
            let declared = self.states[project_id.0 as usize].origins.lookup(Namespace::Source, &kind.value).is_some();
            let mut unique_key = None;
            if declared {
                if let Some(exe) = self.source_plugin(project_id, &kind.value, kind.span)? {
                    if let Some(plugin) = self.plugins.get_mut(&exe) {
                        let reply = plugin.configure(element_name, &config, entry.span)?;
                        unique_key = reply.unique_key;
                        self.messages.extend(reply.messages);
                    }
                }
            } else {
                if CORE_SOURCES.contains(&kind.value.as_ref()) {
                    configure_core_source(&kind.value, &config)?;
                } else {
                    return Err(LoadError::other(
                        "PLUGIN",
                        "plugin-not-found",
                        Some(kind.span),
                        format!("No source plugin registered for kind '{}'", kind.value),
                    ));
                }
            }
            out.push(SourceData { kind: kind.value.to_string(), config, directory, provenance, span: entry.span, unique_key });
        }
        Ok(out)
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
