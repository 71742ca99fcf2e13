//! Junctions (spec §12): resolving junction paths to subproject instances,
//! overrides collected from ancestor junctions, links to junctions, and the
//! subproject directory of a junction with a local source.
//!
//! Key decision: each (project, junction name) resolves once and is cached,
//! overridden or not; a search in progress is remembered with the provenance
//! that started it, so a path that needs itself is reported as
//! `CIRCULAR_REFERENCE` instead of recursing.

use std::path::PathBuf;

use super::names::{check_element_name, normalise};
use super::session::Session;
use crate::graph::ElementId;
use crate::project::instance::{project_path, JunctionOrigin};
use crate::project::ProjectId;
use crate::yaml::{parser, LoadError, LoadErrorReason, LoadResult, Map, Node, Scalar, Span};

impl Session {
    /// Resolves junction path `path` (`a.bst`, `a.bst:b.bst`) from project `id`,
    /// loading subprojects as needed.
    pub fn get_loader(&mut self, id: ProjectId, path: &str, at: Option<Span>) -> LoadResult<ProjectId> {
        let key = (id, path.to_string());
        if let Some(first) = self.searching.get(&key) {
            let mut error = match at {
                Some(span) => LoadError::at(span, LoadErrorReason::CircularReference, format!("Circular reference while searching for '{path}'")),
                None => LoadError::new(LoadErrorReason::CircularReference, format!("Circular reference while searching for '{path}'")),
            };
            if let Some(first) = first {
                error = error.with_detail(format!("The search for '{path}' started at {}", self.sources.describe(*first)));
            }
            return Err(error);
        }
        self.searching.insert(key.clone(), at);
        let mut current = id;
        let mut result = Ok(id);
        for component in path.split(':') {
            match self.junction_loader(current, component, at) {
                Ok(next) => current = next,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            result = Ok(current);
        }
        self.searching.remove(&key);
        result
    }

    fn junction_loader(&mut self, id: ProjectId, name: &str, at: Option<Span>) -> LoadResult<ProjectId> {
        check_element_name(name, at)?;
        let name = normalise(name);
        if let Some(&found) = self.state(id).loaders.get(&name) {
            return Ok(found);
        }
        if let Some((parent, value)) = self.find_override(id, &name)? {
            let found = self.get_loader(parent, &value.value, Some(value.span))?;
            self.state(id).loaders.insert(name, found);
            self.state(found).replaced_in.push(id);
            return Ok(found);
        }
        let element = self.load_file(id, &name, at)?;
        let found = if let Some(target) = self.element(element).link_target.clone() {
            // As BuildStream's `_parse_name`: the junction part first, then the last component.
            match target.value.rsplit_once(':') {
                Some((path, last)) => {
                    let through = self.get_loader(id, path, Some(target.span))?;
                    self.get_loader(through, last, Some(target.span))?
                }
                None => self.get_loader(id, &target.value, Some(target.span))?,
            }
        } else {
            self.open_junction(id, element, at)?
        };
        self.state(id).loaders.insert(name, found);
        Ok(found)
    }

    /// Loads the subproject of junction element `element` of project `id`.
    fn open_junction(&mut self, id: ProjectId, element: ElementId, at: Option<Span>) -> LoadResult<ProjectId> {
        let el = self.element(element);
        if el.kind != "junction" {
            let message = format!("{}: Expected junction but element kind is {}", el.name, el.kind);
            return Err(match at {
                Some(span) => LoadError::at(span, LoadErrorReason::InvalidData, message),
                None => LoadError::new(LoadErrorReason::InvalidData, message),
            });
        }
        if let Some(first) = el.dep_specs.first() {
            return Err(LoadError::at(first.span, LoadErrorReason::InvalidJunction, "Dependencies are forbidden for 'junction' elements"));
        }
        let name = el.name.clone();
        let full_name = el.full_name.clone();
        let vars = self.first_pass_variables(id, &name, &el.node)?;
        let mut config = el.node.get_map("config")?.cloned().unwrap_or_else(|| Map::new(el.node.span));
        crate::plugins::CoreElement::Junction.configure(&config)?;
        vars.expand_map(&mut config, &self.sources)?;
        let sub_path = config.get_str("path")?.unwrap_or("").to_string();
        let options = config.get_map("options")?.cloned();
        let mut overrides = Vec::new();
        if let Some(map) = config.get_map("overrides")? {
            for (key, value) in map.iter() {
                let Node::Scalar(s) = value else {
                    return Err(LoadError::at(value.span(), LoadErrorReason::InvalidData, format!("Value of '{key}' is not of the expected type 'scalar'")));
                };
                if normalise(&s.value) == name {
                    return Err(LoadError::other(
                        "ELEMENT",
                        "override-junction-with-self",
                        Some(s.span),
                        format!("Junction '{full_name}' cannot override '{key}' with itself"),
                    ));
                }
                overrides.push((key.to_string(), s.clone()));
            }
        }
        let source_dir = self.junction_source_dir(id, element, &vars)?;
        let directory = source_dir.join(&sub_path);
        let origin = JunctionOrigin { parent: id, name: name.clone(), full_name, options, overrides, loaded_by: at };
        self.load_project(&directory, Some(origin)).map_err(|e| {
            if e.reason() != Some(LoadErrorReason::MissingProjectConf) {
                return e;
            }
            let mut message = format!("Could not find the project.conf file in the project referred to by junction element '{name}'.");
            if !sub_path.is_empty() {
                message.push_str(&format!(" Was expecting it at path '{sub_path}' in the junction's source."));
            }
            match at {
                Some(span) => LoadError::at(span, LoadErrorReason::InvalidJunction, message),
                None => LoadError::new(LoadErrorReason::InvalidJunction, message),
            }
        })
    }

    /// The directory holding a junction's staged sources (local sources only).
    fn junction_source_dir(&self, id: ProjectId, element: ElementId, vars: &crate::project::Variables) -> LoadResult<PathBuf> {
        let el = self.element(element);
        let project = self.project(id);
        let sources = el.node.get_seq("sources")?.map(|s| s.items.clone()).unwrap_or_default();
        match sources.as_slice() {
            [] => Ok(project.directory.join(".bst").join("staged-junctions").join(&el.name).join("empty")),
            [Node::Map(source)] if source.get_str("kind")? == Some("local") => {
                let mut path = source.req_scalar("path")?.clone();
                path.value = vars.expand_str(&path.value, path.span, &self.sources)?;
                project_path(&project.directory, &path, true)
            }
            _ => {
                for source in &sources {
                    if let Node::Map(m) = source {
                        if m.get("ref").is_none() {
                            return Err(LoadError::at(
                                m.span,
                                LoadErrorReason::SubprojectInconsistent,
                                format!("Subproject has no ref for junction: {}", el.full_name),
                            ));
                        }
                    }
                }
                Err(LoadError::at(
                    el.node.span,
                    LoadErrorReason::InvalidJunction,
                    format!("Junction '{}': only junctions with a single 'local' source can be opened without fetching", el.full_name),
                ))
            }
        }
    }

    /// The highest ancestor override of element/junction `name` of project `id`:
    /// (project declaring the override, override value).
    pub(crate) fn find_override(&mut self, id: ProjectId, name: &str) -> LoadResult<Option<(ProjectId, Scalar)>> {
        let mut loader = id;
        let mut path = name.to_string();
        let mut found = None;
        while let Some(origin) = self.project(loader).junction.clone() {
            for (key, value) in &origin.overrides {
                if normalise(key) == path || self.expand_link_key(loader, key) == path {
                    if normalise(&value.value) == origin.name {
                        return Err(LoadError::other(
                            "ELEMENT",
                            "override-junction-with-self",
                            Some(value.span),
                            format!("Junction '{}' cannot override '{}' with itself", origin.full_name, key),
                        ));
                    }
                    found = Some((origin.parent, value.clone()));
                }
            }
            path = format!("{}:{}", origin.name, path);
            loader = origin.parent;
        }
        Ok(found)
    }

    /// An override key with links followed component by component, from
    /// project `id` into already loaded subprojects (nothing new is loaded).
    fn expand_link_key(&mut self, id: ProjectId, key: &str) -> String {
        let mut queue: std::collections::VecDeque<String> = key.split(':').map(normalise).collect();
        let mut out: Vec<String> = Vec::new();
        let mut current = Some(id);
        let mut budget = 64;
        while let Some(component) = queue.pop_front() {
            budget -= 1;
            let Some(project) = current.filter(|_| budget > 0) else {
                out.push(component);
                continue;
            };
            if let Ok(Some((kind, Some(target)))) = self.shallow_read(project, &component) {
                if kind == "link" {
                    for part in target.value.rsplit(':') {
                        queue.push_front(normalise(part));
                    }
                    continue;
                }
            }
            current = self.state(project).loaders.get(&component).copied();
            out.push(component);
        }
        out.join(":")
    }

    /// Reads the kind (and link target) of element `name` in project `id`
    /// without registering it; `None` if the file does not exist.
    pub(crate) fn shallow_read(&mut self, id: ProjectId, name: &str) -> LoadResult<Option<(String, Option<Scalar>)>> {
        let name = normalise(name);
        if let Some(&element) = self.state(id).files.get(&name) {
            let el = self.element(element);
            return Ok(Some((el.kind.clone(), el.link_target.clone())));
        }
        if let Some(cached) = self.state(id).shallow.get(&name) {
            return Ok(cached.clone());
        }
        let project = self.project(id);
        let path = project.element_path.join(&name);
        let info = match std::fs::read_to_string(&path) {
            Err(_) => None,
            Ok(text) => {
                let file = self.sources.add(format!("{}{}", project.prefix(), name));
                let mut node = parser::parse(&text, file)?;
                if let Some(pass) = self.project(id).pass(true) {
                    crate::project::conditionals::process_conditionals(&mut node, &pass.options, &[])?;
                }
                let kind = node.req_scalar("kind")?.value.to_string();
                let target = node.get_map("config")?.and_then(|c| c.get_scalar("target").ok().flatten().cloned());
                Some((kind, target))
            }
        };
        self.state(id).shallow.insert(name, info.clone());
        Ok(info)
    }

    /// Resolves a junction path from project `id` through already loaded
    /// subprojects and links only; `None` if it reaches something not loaded.
    pub(crate) fn resolve_loaded_path(&mut self, id: ProjectId, path: &Scalar, depth: usize) -> LoadResult<Option<ProjectId>> {
        if depth > 32 {
            return Ok(None);
        }
        let mut current = id;
        for component in path.value.split(':') {
            let component = normalise(component);
            if let Some(&next) = self.state(current).loaders.get(&component) {
                current = next;
                continue;
            }
            match self.shallow_read(current, &component)? {
                None => {
                    return Err(LoadError::at(
                        path.span,
                        LoadErrorReason::MissingFile,
                        format!("Could not find element '{component}' in project '{}'", self.project(current).name),
                    ))
                }
                Some((kind, Some(target))) if kind == "link" => {
                    match self.resolve_loaded_path(current, &target, depth + 1)? {
                        Some(next) => current = next,
                        None => return Ok(None),
                    }
                }
                Some(_) => return Ok(None),
            }
        }
        Ok(Some(current))
    }
}
