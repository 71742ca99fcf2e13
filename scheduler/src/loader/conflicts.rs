//! Conflicting project instances (spec §12.4): the same project `name`
//! loaded through several junctions, allowed only where ancestors mark the
//! instances `duplicates` or `internal`.
//!
//! Key decision: marks are matched by resolving the listed junction paths
//! through what is already loaded (and links), never loading more.

use std::collections::BTreeMap;

use super::session::Session;
use crate::project::ProjectId;
use crate::yaml::{LoadError, LoadErrorReason, LoadResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Primary,
    Duplicated(ProjectId),
    Internal(ProjectId),
}

impl Session {
    /// Every ancestor of `id`: parents, and parents of junctions it replaced.
    fn ancestors(&self, id: ProjectId) -> Vec<ProjectId> {
        let mut out = Vec::new();
        let mut todo = vec![id];
        while let Some(p) = todo.pop() {
            let mut next = Vec::new();
            if let Some(j) = &self.project(p).junction {
                next.push(j.parent);
            }
            next.extend(self.states[p.0 as usize].replaced_in.iter().copied());
            for n in next {
                if !out.contains(&n) && n != id {
                    out.push(n);
                    todo.push(n);
                }
            }
        }
        out
    }

    fn mark(&mut self, id: ProjectId) -> LoadResult<Mark> {
        let name = self.project(id).name.clone();
        let mut result = Mark::Primary;
        for ancestor in self.ancestors(id) {
            let duplicates: Vec<_> = self
                .project(ancestor)
                .duplicates
                .iter()
                .filter(|(n, _)| *n == name)
                .flat_map(|(_, paths)| paths.clone())
                .collect();
            for path in duplicates {
                if self.resolve_loaded_path(ancestor, &path, 0)? == Some(id) && result == Mark::Primary {
                    result = Mark::Duplicated(ancestor);
                }
            }
            let internal = self.project(ancestor).internal.clone();
            for path in internal {
                if self.resolve_loaded_path(ancestor, &path, 0)? == Some(id) {
                    return Ok(Mark::Internal(ancestor));
                }
            }
        }
        Ok(result)
    }

    /// Fails with `CONFLICTING_JUNCTION` if some project is loaded in conflicting contexts.
    pub fn check_conflicts(&mut self) -> LoadResult<()> {
        let mut by_name: BTreeMap<String, Vec<ProjectId>> = BTreeMap::new();
        for p in &self.projects {
            by_name.entry(p.name.clone()).or_default().push(p.id);
        }
        for (name, instances) in by_name {
            if instances.len() < 2 {
                continue;
            }
            let mut marks = Vec::new();
            for &id in &instances {
                marks.push((id, self.mark(id)?));
            }
            let primaries = marks.iter().filter(|(_, m)| *m == Mark::Primary).count();
            let duplicated = marks.iter().filter(|(_, m)| matches!(m, Mark::Duplicated(_))).count();
            if primaries > 1 || (primaries == 1 && duplicated > 0) {
                let mut detail = String::new();
                for (id, mark) in &marks {
                    let project = self.project(*id);
                    match &project.junction {
                        None => detail.push_str(&format!("{name} (toplevel)\n")),
                        Some(j) => {
                            let at = j.loaded_by.map(|s| self.sources.describe(s)).unwrap_or_else(|| "the command line".into());
                            detail.push_str(&format!("{name} ({}): {at}\n", j.full_name));
                        }
                    }
                    match mark {
                        Mark::Duplicated(by) => {
                            detail.push_str(&format!("  Duplicated by: {}\n", self.describe_project(*by)))
                        }
                        Mark::Internal(by) => detail.push_str(&format!("  Internal to: {}\n", self.describe_project(*by))),
                        Mark::Primary => {}
                    }
                }
                return Err(LoadError::new(
                    LoadErrorReason::ConflictingJunction,
                    format!("Project '{name}' was loaded in multiple contexts\n{}", detail.trim_end()),
                )
                .with_detail(
                    "Use `junctions: duplicates:` or `junctions: internal:` in project.conf to allow several instances",
                ));
            }
        }
        Ok(())
    }

    fn describe_project(&self, id: ProjectId) -> String {
        let project = self.project(id);
        match &project.junction {
            None => format!("{} (toplevel)", project.name),
            Some(j) => format!("{} ({})", project.name, j.full_name),
        }
    }
}
