//! Loading project instances: project.conf, the pre-config checks, the first
//! pass at creation and the deferred second pass (spec §6.2).
//!
//! Key decision: the second pass runs on demand (the first regular element or
//! cross-junction include of a project), after its parent's second pass.

use std::path::Path;

use super::includes::IncludeMode;
use super::session::{ProjectState, Session};
use crate::plugins::origins::read_origins;
use crate::project::conditionals::process_conditionals;
use crate::project::defaults::project_defaults;
use crate::project::instance::{
    check_project_conf_only, finish_pass, load_options, read_preconfig, JunctionOrigin, OptionInputs, PassConfig,
    RESTRICTED_CONDITIONAL_KEYS,
};
use crate::project::{Project, ProjectId};
use crate::yaml::{compose, parser, LoadError, LoadErrorReason, LoadResult, Map};

impl Session {
    /// Loads the project in `directory` (first pass only).
    pub fn load_project(&mut self, directory: &Path, junction: Option<JunctionOrigin>) -> LoadResult<ProjectId> {
        let conf_path = directory.join("project.conf");
        if !conf_path.is_file() {
            return Err(LoadError::new(
                LoadErrorReason::MissingProjectConf,
                format!("Could not find the project.conf file in the project directory '{}'", directory.display()),
            ));
        }
        let text = std::fs::read_to_string(&conf_path)
            .map_err(|e| LoadError::new(LoadErrorReason::MissingFile, format!("Could not read '{}': {e}", conf_path.display())))?;
        let prefix = junction.as_ref().map(|j| format!("{}:", j.full_name)).unwrap_or_default();
        let file = self.sources.add(format!("{prefix}project.conf"));
        let raw = parser::parse(&text, file)?;
        let id = ProjectId(self.projects.len() as u32);
        let mut project = Project {
            id,
            name: String::new(),
            directory: directory.canonicalize().unwrap_or_else(|_| directory.to_path_buf()),
            element_path: directory.to_path_buf(),
            conf_file: file,
            raw,
            junction,
            first: None,
            second: None,
            default_targets: Vec::new(),
            fatal_warnings: Vec::new(),
            duplicates: Vec::new(),
            internal: Vec::new(),
            disallow_subproject_uris: false,
            ref_storage: "inline".into(),
            source_provenance_attributes: Vec::new(),
        };
        let mut pre = project_defaults(file)?;
        compose(project.raw.clone(), &mut pre)?;
        read_preconfig(&mut project, &pre)?;
        self.projects.push(project);
        self.states.push(ProjectState::default());
        let first = self.run_pass(id, true)?;
        self.projects[id.0 as usize].first = Some(first);
        Ok(id)
    }

    /// Runs the second pass of `id` if it has not run yet.
    pub fn ensure_second_pass(&mut self, id: ProjectId) -> LoadResult<()> {
        if self.project(id).second.is_some() || self.state(id).second_in_progress {
            return Ok(());
        }
        if let Some(parent) = self.project(id).junction.as_ref().map(|j| j.parent) {
            self.ensure_second_pass(parent)?;
        }
        self.state(id).second_in_progress = true;
        let result = self.run_pass(id, false);
        self.state(id).second_in_progress = false;
        let second = result?;
        self.projects[id.0 as usize].second = Some(second);
        Ok(())
    }

    fn run_pass(&mut self, id: ProjectId, first: bool) -> LoadResult<PassConfig> {
        let project = self.project(id);
        let file = project.conf_file;
        let mut config = project.raw.clone();
        self.process_fragment(id, &mut config, IncludeMode { only_local: first, conditionals: false })?;
        let mut conf: Map = project_defaults(file)?;
        compose(config, &mut conf)?;
        if first {
            let project = self.project(id);
            let origins = read_origins(&project.raw, &project.directory)?;
            self.state(id).origins = origins;
        }
        let project = self.project(id);
        let user = self.user.project_options(&project.name)?;
        let toplevel = project.junction.is_none();
        let inputs = OptionInputs {
            junction: project.junction.as_ref().and_then(|j| j.options.as_ref()),
            user,
            cli: if toplevel { &self.cli_options } else { &[] },
            ignore_unknown_cli: first,
        };
        let options = load_options(&conf, &self.host, &project.element_path, &inputs)?;
        process_conditionals(&mut conf, &options, RESTRICTED_CONDITIONAL_KEYS)?;
        if !first {
            check_project_conf_only(project, &conf)?;
        }
        finish_pass(project, conf, options, &self.max_jobs, &self.toplevel_dir, &self.sources)
    }
}
