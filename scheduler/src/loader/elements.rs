//! Element files and references (spec §4, §7, §10 steps 1–4): reading an
//! element, resolving a reference through junctions, overrides and links,
//! and loading dependencies depth-first.
//!
//! Key decision: an element name resolves once per project instance (cached
//! before its dependencies load, so cycles end in the graph and are reported
//! by the cycle check, not by infinite recursion).

use super::dependency::parse_dependencies;
use super::includes::IncludeMode;
use super::names::{check_element_name, normalise};
use super::prefetch::Fetched;
use super::session::{LoadElement, LoadedDep, Session};
use std::sync::Arc;

use crate::graph::ElementId;
use crate::project::conditionals::process_conditionals;
use crate::project::ProjectId;
use crate::yaml::{parser, LoadError, LoadErrorReason, LoadResult, Node, Span};

/// Top-level keys of an element file.
pub const ELEMENT_KEYS: &[&str] = &[
    "kind", "description", "depends", "build-depends", "runtime-depends", "sources", "variables", "environment",
    "environment-nocache", "config", "public", "sandbox",
];

fn located(at: Option<Span>, reason: LoadErrorReason, message: String) -> LoadError {
    match at {
        Some(span) => LoadError::at(span, reason, message),
        None => LoadError::new(reason, message),
    }
}

impl Session {
    /// Resolves a reference `R` (`x.bst`, `j.bst:x.bst`, ...) made in project `id`.
    pub fn resolve_element(&mut self, id: ProjectId, reference: &str, at: Option<Span>) -> LoadResult<ElementId> {
        match reference.rsplit_once(':') {
            Some((junction, name)) => {
                let sub = self.get_loader(id, junction, at)?;
                self.load_element(sub, name, at)
            }
            None => self.load_element(id, reference, at),
        }
    }

    /// Loads element `name` of project `id`, following overrides and links,
    /// then its dependencies.
    pub fn load_element(&mut self, id: ProjectId, name: &str, at: Option<Span>) -> LoadResult<ElementId> {
        check_element_name(name, at)?;
        let name = normalise(name);
        if let Some(&found) = self.state(id).resolved.get(&name) {
            return Ok(found);
        }
        if let Some((parent, value)) = self.find_override(id, &name)? {
            let found = self.resolve_element(parent, &value.value, Some(value.span))?;
            self.state(id).resolved.insert(name, found);
            return Ok(found);
        }
        let element = self.load_file(id, &name, at)?;
        if let Some(target) = self.element(element).link_target.clone() {
            let key = (id, name.clone());
            if !self.links_in_progress.insert(key.clone()) {
                // Reported at the reference that closes the cycle.
                return Err(LoadError::at(
                    at.unwrap_or(target.span),
                    LoadErrorReason::CircularReference,
                    format!("Circular reference while searching for '{name}'"),
                ));
            }
            let result = self.resolve_element(id, &target.value, Some(target.span));
            self.links_in_progress.remove(&key);
            let found = result?;
            self.state(id).resolved.insert(name, found);
            return Ok(found);
        }
        self.state(id).resolved.insert(name, element);
        if self.element(element).kind != "junction" {
            self.load_dependencies(element)?;
        }
        Ok(element)
    }

    fn load_dependencies(&mut self, element: ElementId) -> LoadResult<()> {
        let project = self.element(element).project;
        // Not needed once resolved (the element's data was prepared when its
        // file was read).
        let specs = std::mem::take(&mut self.elements[element.index()].dep_specs);
        let mut deps: Vec<LoadedDep> = Vec::with_capacity(specs.len());
        for spec in specs {
            let path = spec.reference();
            let found = self.resolve_element(project, &path, Some(spec.span))?;
            if self.element(found).kind == "junction" {
                return Err(LoadError::at(spec.span, LoadErrorReason::InvalidData, "Cannot depend on junction"));
            }
            match deps.iter_mut().find(|d| d.element == found) {
                Some(existing) => {
                    existing.dep_type = existing.dep_type.merge(spec.dep_type);
                    existing.strict |= spec.strict;
                    existing.configs.extend(spec.configs);
                }
                None => deps.push(LoadedDep {
                    element: found,
                    dep_type: spec.dep_type,
                    strict: spec.strict,
                    configs: spec.configs,
                    path,
                    span: spec.span,
                }),
            }
        }
        self.elements[element.index()].deps = deps;
        Ok(())
    }

    /// Reads element file `name` of project `id` (cached per project): the
    /// tree a prefetch worker parsed, else read and parsed here.
    pub fn load_file(&mut self, id: ProjectId, name: &str, at: Option<Span>) -> LoadResult<ElementId> {
        if let Some(&found) = self.state(id).files.get(name) {
            return Ok(found);
        }
        let prefetched = match self.prefetch.take(id, name) {
            Some(Fetched::Parsed(result)) => Some(result),
            Some(Fetched::Unreadable) | None => None,
        };
        let project = self.project(id);
        let text = match prefetched {
            Some(_) => String::new(),
            None => {
                let path = project.element_path.join(name);
                // Read first: a directory fails to read, and only then is it told
                // apart from a missing file (one system call less per element).
                let Ok(text) = super::prefetch::read_text(&path) else {
                    if path.is_dir() {
                        return Err(located(at, LoadErrorReason::LoadingDirectory, format!("{} is a directory", path.display())));
                    }
                    let message = match &project.junction {
                        Some(j) => format!("Could not find element '{name}' in project referred to by junction element '{}'", j.full_name),
                        None => format!("Could not find element '{name}' in elements directory '{}'", project.element_path.display()),
                    };
                    return Err(located(at, LoadErrorReason::MissingFile, message));
                };
                text
            }
        };
        let prefix = project.prefix();
        let full_name = format!("{prefix}{name}");
        let file = self.sources.add(full_name.clone());
        let node = match prefetched {
            Some(result) => {
                let mut node = result.map_err(|mut e| {
                    if let Some(span) = e.at.as_mut() {
                        span.file = file;
                    }
                    e
                })?;
                node.set_file(file);
                node
            }
            None => {
                let node = parser::parse(&text, file)?;
                // The workers go on from the dependencies of this file.
                if self.prefetch.is_active() {
                    let element_path: std::sync::Arc<std::path::Path> = std::sync::Arc::from(self.project(id).element_path.as_path());
                    self.prefetch.prefetch_dependencies(id, &element_path, &node);
                }
                node
            }
        };
        self.add_file(id, name, full_name, file, node)
    }

    /// Adds the parsed element file `name` of project `id` (includes,
    /// conditionals, dependencies, link target) and prepares its data.
    fn add_file(
        &mut self,
        id: ProjectId,
        name: &str,
        full_name: String,
        file: crate::yaml::FileId,
        mut node: crate::yaml::Map,
    ) -> LoadResult<ElementId> {
        let written_kind = node.req_scalar("kind")?.value.clone();
        let first_pass = matches!(written_kind.as_ref(), "junction" | "link");
        if first_pass {
            if let Some(pass) = self.project(id).pass(true) {
                process_conditionals(&mut node, &pass.options, &[])?;
            }
        } else {
            self.ensure_second_pass(id)?;
            self.process_fragment(id, &mut node, IncludeMode { only_local: false, conditionals: true })?;
        }
        node.validate_keys(ELEMENT_KEYS)?;
        let kind_node = node.req_scalar("kind")?.clone();
        let dep_specs = parse_dependencies(&node)?;
        let mut link_target = None;
        if kind_node.value.as_ref() == "link" {
            if let Some(first) = dep_specs.first() {
                return Err(LoadError::at(
                    first.span,
                    LoadErrorReason::LinkForbiddenDependencies,
                    "Dependencies are forbidden for 'link' elements",
                ));
            }
            if node.get_seq("sources")?.is_some_and(|s| !s.items.is_empty()) {
                return Err(LoadError::other(
                    "ELEMENT",
                    "element-forbidden-sources",
                    Some(node.span),
                    format!("{full_name}: Link elements may not have sources"),
                ));
            }
            let config = match node.get_map("config")? {
                Some(c) => c.clone(),
                None => return Err(LoadError::at(Span::synthetic(file), LoadErrorReason::InvalidData, "Dictionary did not contain expected key 'target'")),
            };
            config.validate_keys(&["target"])?;
            let target = config.get_scalar("target")?.cloned().ok_or_else(|| {
                LoadError::at(Span::synthetic(file), LoadErrorReason::InvalidData, "Dictionary did not contain expected key 'target'")
            })?;
            link_target = Some(self.expand_first_pass(id, name, &node, target)?);
        }
        let element = ElementId(self.elements.len() as u32);
        self.elements.push(Box::new(LoadElement {
            id: element,
            project: id,
            name: name.to_string(),
            full_name,
            kind: kind_node.value.to_string(),
            kind_span: kind_node.span,
            node,
            first_pass,
            file,
            dep_specs,
            deps: Vec::new(),
            link_target,
            prepared: None,
        }));
        self.state(id).files.insert(name.to_string(), element);
        if !first_pass && !self.hand_over(element) {
            let prepared = self.prepare(element);
            self.elements[element.index()].prepared = Some(Box::new(prepared));
        }
        Ok(element)
    }

    /// Hands element `id` to the helper threads when nothing it needs is
    /// the session's alone: a core kind, sources of core kinds, no
    /// `project.refs` (see [`super::prepare`]). False: prepare it here.
    fn hand_over(&mut self, id: ElementId) -> bool {
        if !self.prefetch.is_active() {
            return false;
        }
        let el = self.element(id);
        let (project, kind_name, kind_span, file) = (el.project, el.kind.clone(), el.kind_span, el.node.span.file);
        let Ok(kind) = self.element_kind(project, &kind_name, kind_span) else { return false };
        if !matches!(kind.behaviour, super::kinds::KindBehaviour::Core(_)) {
            return false;
        }
        let Ok(base) = self.kind_base(project, false, &kind, file) else { return false };
        let uses_refs = |p: ProjectId| self.project(p).ref_storage == "project.refs";
        if uses_refs(ProjectId(0)) || uses_refs(project) || !self.sources_are_core(id) {
            return false;
        }
        let Some(prep) = self.project_prep(project) else { return false };
        let facts = self.element_facts(id);
        let node = std::mem::replace(&mut self.elements[id.index()].node, crate::yaml::Map::new(kind_span));
        self.preparer.submit(&self.prefetch, facts, kind, base, prep, node);
        true
    }

    /// Whether every source of element `id` is well formed and of a kind
    /// its project does not declare a plugin for.
    fn sources_are_core(&self, id: ElementId) -> bool {
        let el = self.element(id);
        let origins = &self.states[el.project.0 as usize].origins;
        match el.node.get_seq("sources") {
            Ok(None) => true,
            Ok(Some(list)) => list.items.iter().all(|item| match item {
                crate::yaml::Node::Map(entry) => entry
                    .req_scalar("kind")
                    .is_ok_and(|kind| origins.lookup(crate::plugins::Namespace::Source, &kind.value).is_none()),
                _ => false,
            }),
            Err(_) => false,
        }
    }

    /// What elements of project `id` prepared off the loader's thread share.
    fn project_prep(&mut self, id: ProjectId) -> Option<Arc<super::prepare::ProjectPrep>> {
        if let Some(prep) = &self.state(id).prep {
            return Some(prep.clone());
        }
        let project = self.project(id);
        let pass = project.pass(false)?;
        let prep = Arc::new(super::prepare::ProjectPrep {
            environment_nocache: pass.environment_nocache.clone(),
            source_overrides: pass.source_overrides.clone(),
            provenance_attributes: project.source_provenance_attributes.clone(),
        });
        self.state(id).prep = Some(prep.clone());
        Some(prep)
    }

    /// Prepares what the helpers have not, waits for them and files what
    /// they made: an element a helper could not prepare gets its tree back
    /// and is prepared here when instantiated (with the errors a sequential
    /// load reports).
    pub(crate) fn collect_prepared(&mut self) {
        for (id, outcome) in self.preparer.finish(&self.prefetch) {
            match outcome {
                Ok(prepared) => self.elements[id.index()].prepared = Some(Box::new(Ok(*prepared))),
                Err(node) => self.elements[id.index()].node = node,
            }
        }
    }

    /// Expands a scalar of a first-pass element (link target) with the
    /// project's first-pass variables and the element's own.
    fn expand_first_pass(
        &self,
        id: ProjectId,
        name: &str,
        node: &crate::yaml::Map,
        mut value: crate::yaml::Scalar,
    ) -> LoadResult<crate::yaml::Scalar> {
        if !crate::project::variables::may_reference(&value.value) {
            return Ok(value);
        }
        let vars = self.first_pass_variables(id, name, node)?;
        value.value = vars.expand_str(&value.value, value.span, &self.sources)?;
        Ok(value)
    }

    /// The variables of a first-pass element: first-pass project variables ← element `variables`.
    pub(crate) fn first_pass_variables(
        &self,
        id: ProjectId,
        name: &str,
        node: &crate::yaml::Map,
    ) -> LoadResult<crate::project::Variables> {
        let project = self.project(id);
        let mut base = project.pass(true).map(|p| p.variables.clone()).unwrap_or_else(|| crate::yaml::Map::new(Span::synthetic(project.conf_file)));
        if let Some(own) = node.get_map("variables")? {
            crate::yaml::compose(own.clone(), &mut base)?;
        }
        base.insert("element-name", Node::scalar(name, Span::synthetic(project.conf_file)));
        crate::project::Variables::new(&base)
    }
}
