//! Source refs kept in `project.refs` (`ref-storage: project.refs`,
//! sources §1.3): the file is read once per project, its conditionals
//! evaluated with the project's options, and entries are looked up by
//! project name, element name and source index; the toplevel project's
//! entries win over a subproject's own.
//!
//! Key decision: a looked-up entry replaces the inline ref keys of the
//! source configuration, so later stages (cache keys, fetching) read refs
//! from one place, the source `config`.

use super::session::Session;
use crate::project::conditionals::process_conditionals;
use crate::project::ProjectId;
use crate::yaml::{compose, parser, LoadResult, Map, Node};

impl Session {
    /// The processed `project.refs` of project `id` (`None` when it keeps refs inline or has none).
    fn project_refs(&mut self, id: ProjectId) -> LoadResult<Option<Map>> {
        if let Some(cached) = self.state(id).refs.clone() {
            return Ok(cached);
        }
        let project = self.project(id);
        let mut refs = None;
        if project.ref_storage == "project.refs" {
            let path = project.directory.join("project.refs");
            if let Ok(text) = std::fs::read_to_string(&path) {
                let file = self.sources.add(format!("{}project.refs", project.prefix()));
                let mut map = parser::parse(&text, file)?;
                if let Some(pass) = self.project(id).pass(false) {
                    process_conditionals(&mut map, &pass.options, &[])?;
                }
                refs = Some(map);
            }
        }
        self.state(id).refs = Some(refs.clone());
        Ok(refs)
    }

    /// The `project.refs` entry for source `index` of element `element` of project `id`.
    pub(crate) fn lookup_ref(&mut self, id: ProjectId, element: &str, index: usize) -> LoadResult<Option<Map>> {
        let name = self.project(id).name.clone();
        let mut holders = vec![ProjectId(0)];
        if id != ProjectId(0) {
            holders.push(id);
        }
        for holder in holders {
            let Some(refs) = self.project_refs(holder)? else { continue };
            let entry = refs
                .get_map("projects")?
                .and_then(|p| p.get_map(&name).ok().flatten())
                .and_then(|p| p.get_seq(element).ok().flatten())
                .and_then(|s| s.items.get(index));
            if let Some(Node::Map(m)) = entry {
                return Ok(Some(m.clone()));
            }
        }
        Ok(None)
    }

    /// Applies `project.refs` to one source configuration of an element of project `id`.
    pub(crate) fn apply_project_refs(&mut self, id: ProjectId, element: &str, index: usize, config: &mut Map) -> LoadResult<()> {
        let toplevel_uses_refs = self.project(ProjectId(0)).ref_storage == "project.refs";
        if !toplevel_uses_refs && self.project(id).ref_storage != "project.refs" {
            return Ok(());
        }
        if self.project(id).ref_storage == "project.refs" {
            config.remove("ref");
        }
        if let Some(entry) = self.lookup_ref(id, element, index)? {
            compose(entry, config)?;
        }
        Ok(())
    }
}
