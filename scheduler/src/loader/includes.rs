//! `(@)` includes (spec §3.1): local and cross-junction include files, their
//! caching, recursion detection and composition under the including mapping.
//!
//! Key decision: an include file is parsed once per (project, path) and
//! cloned for each use; cross-junction files are variable-expanded with the
//! subproject's variables when first read, so the cache holds the expanded
//! text.

use std::path::PathBuf;
use std::sync::Arc;

use super::session::Session;
use crate::project::conditionals::process_conditionals;
use crate::project::variables::Variables;
use crate::project::ProjectId;
use crate::yaml::{compose, parser, LoadError, LoadErrorReason, LoadResult, Map, Node, Scalar};

/// How a fragment is processed.
#[derive(Debug, Clone, Copy)]
pub struct IncludeMode {
    /// Skip includes with `:` (first pass of project.conf).
    pub only_local: bool,
    /// Evaluate conditionals with the (second-pass) options of each fragment's project.
    pub conditionals: bool,
}

impl Session {
    /// Processes conditionals (if asked) and includes of `map`, a fragment of project `id`.
    pub fn process_fragment(&mut self, id: ProjectId, map: &mut Map, mode: IncludeMode) -> LoadResult<()> {
        let mut included = Vec::new();
        self.process_with(id, map, mode, &mut included)
    }

    fn process_with(&mut self, id: ProjectId, map: &mut Map, mode: IncludeMode, included: &mut Vec<PathBuf>) -> LoadResult<()> {
        if mode.conditionals {
            let project = self.project(id);
            if let Some(pass) = project.pass(false) {
                process_conditionals(map, &pass.options, &[])?;
            }
        }
        self.process_includes(id, map, mode, included)
    }

    fn process_includes(&mut self, id: ProjectId, map: &mut Map, mode: IncludeMode, included: &mut Vec<PathBuf>) -> LoadResult<()> {
        if let Some(includes) = map.remove("(@)") {
            let items: Vec<Scalar> = match includes {
                Node::Scalar(s) => vec![s],
                Node::Seq(seq) => seq.scalars()?.into_iter().cloned().collect(),
                Node::Map(m) => {
                    return Err(LoadError::at(m.span, LoadErrorReason::InvalidData, "Value of '(@)' is not one of the following: list, scalar"))
                }
            };
            for include in items.iter().rev() {
                if mode.only_local && include.value.contains(':') {
                    continue;
                }
                let (content, plain, path, sub) = self.include_file(id, include)?;
                if included.contains(&path) {
                    return Err(LoadError::at(
                        include.span,
                        LoadErrorReason::RecursiveInclude,
                        format!("trying to recursively include {}", path.display()),
                    ));
                }
                let mut node = (*content).clone();
                // A file without includes, conditionals or assertions is
                // already what processing it would give.
                if !plain {
                    included.push(path);
                    // A file from another project is processed in that project's
                    // context, its conditionals with that project's options.
                    let sub_mode = IncludeMode { conditionals: mode.conditionals || sub != id, ..mode };
                    let result = self.process_with(sub, &mut node, sub_mode, included);
                    included.pop();
                    result?;
                }
                let span = map.span;
                let current = std::mem::replace(map, Map::new(span));
                compose(current, &mut node)?;
                *map = node;
            }
        }
        for value in map.entries.values_mut() {
            self.process_value(id, value, mode, included)?;
        }
        Ok(())
    }

    fn process_value(&mut self, id: ProjectId, node: &mut Node, mode: IncludeMode, included: &mut Vec<PathBuf>) -> LoadResult<()> {
        match node {
            Node::Map(m) => self.process_includes(id, m, mode, included),
            Node::Seq(s) => s.items.iter_mut().try_for_each(|n| self.process_value(id, n, mode, included)),
            Node::Scalar(_) => Ok(()),
        }
    }

    /// Reads the file an include string names: (content, whether it holds
    /// no directive to process, absolute path, project it belongs to).
    fn include_file(&mut self, id: ProjectId, include: &Scalar) -> LoadResult<(Arc<Map>, bool, PathBuf, ProjectId)> {
        let (sub, file) = match include.value.rsplit_once(':') {
            Some((junction, file)) => {
                let sub = self.get_loader(id, junction, Some(include.span))?;
                self.ensure_second_pass(sub)?;
                (sub, file.to_string())
            }
            None => (id, include.value.to_string()),
        };
        let path = self.project(sub).directory.join(&file);
        if let Some((content, plain)) = self.include_cache.get(&(id, path.clone())) {
            return Ok((content.clone(), *plain, path, sub));
        }
        if path.is_dir() {
            return Err(LoadError::at(
                include.span,
                LoadErrorReason::LoadingDirectory,
                format!("{} is a directory", path.display()),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|_| {
            LoadError::at(include.span, LoadErrorReason::MissingFile, format!("Could not find file at {}", path.display()))
        })?;
        let display = format!("{}{}", self.project(id).prefix(), include.value);
        let file_id = self.sources.add(display);
        let mut content = parser::parse(&text, file_id).map_err(|e| e.prefixed(include.span))?;
        if sub != id {
            let project = self.project(sub);
            if let Some(pass) = project.pass(false) {
                let vars = Variables::new(&pass.variables)?;
                vars.expand_map(&mut content, &self.sources)?;
            }
        }
        let plain = !has_directive_keys(&content);
        let content = Arc::new(content);
        self.include_cache.insert((id, path.clone()), (content.clone(), plain));
        Ok((content, plain, path, sub))
    }
}

/// Whether `map` holds an include, a conditional or an assertion anywhere.
fn has_directive_keys(map: &Map) -> bool {
    fn in_node(node: &Node) -> bool {
        match node {
            Node::Map(m) => has_directive_keys(m),
            Node::Seq(s) => s.items.iter().any(in_node),
            Node::Scalar(_) => false,
        }
    }
    ["(@)", "(?)", "(!)"].iter().any(|k| map.contains(k)) || map.entries.values().any(in_node)
}
