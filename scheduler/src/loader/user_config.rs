//! The parts of BuildStream's user configuration (`-c FILE`) the loader
//! reads: `projects: <name>: options:`, `build: max-jobs` and
//! `logging: key-length`.
//!
//! Key decision: the file is parsed with the same YAML reader as projects, so
//! errors in it carry provenance too.

use std::path::Path;

use crate::yaml::{parser, LoadError, LoadErrorReason, LoadResult, Map, Node, SourceMap};

/// The loaded user configuration.
#[derive(Debug, Default)]
pub struct UserConfig {
    doc: Option<Map>,
}

impl UserConfig {
    /// Reads `path`, registering it in `sources`.
    pub fn load(path: &Path, sources: &mut SourceMap) -> LoadResult<UserConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            LoadError::new(LoadErrorReason::MissingFile, format!("Could not read user configuration '{}': {e}", path.display()))
        })?;
        let file = sources.add(path.display().to_string());
        let config = UserConfig { doc: Some(parser::parse(&text, file)?) };
        config.validate()?;
        Ok(config)
    }

    /// Checks the shape of the parts the loader reads (`projects:` entries are mappings).
    fn validate(&self) -> LoadResult<()> {
        let Some(doc) = &self.doc else { return Ok(()) };
        if let Some(projects) = doc.get_map("projects")? {
            for (name, _) in projects.iter() {
                self.project_options(name)?;
            }
        }
        self.max_jobs()?;
        self.key_length().map(|_| ())
    }

    /// `logging: key-length`: how many characters of a cache key `%{key}`
    /// shows (BuildStream's default, 8, when unset).
    pub fn key_length(&self) -> LoadResult<usize> {
        const DEFAULT: usize = 8;
        let Some(doc) = &self.doc else { return Ok(DEFAULT) };
        let Some(logging) = doc.get_map("logging")? else { return Ok(DEFAULT) };
        match logging.get_scalar("key-length")? {
            None => Ok(DEFAULT),
            Some(s) => s.value.parse().map_err(|_| {
                LoadError::at(s.span, LoadErrorReason::InvalidData, "Value of 'key-length' is not of the expected type 'int'")
            }),
        }
    }

    /// `projects: <name>: options:` for project `name`.
    pub fn project_options(&self, name: &str) -> LoadResult<Option<&Map>> {
        let Some(doc) = &self.doc else { return Ok(None) };
        let Some(projects) = doc.get_map("projects")? else { return Ok(None) };
        match projects.get(name) {
            None => Ok(None),
            Some(Node::Map(project)) => project.get_map("options"),
            Some(other) => Err(LoadError::at(
                other.span(),
                LoadErrorReason::InvalidData,
                format!("Value of '{name}' is not of the expected type 'dict'"),
            )),
        }
    }

    /// `build: max-jobs` (0 or unset: automatic).
    pub fn max_jobs(&self) -> LoadResult<u32> {
        let Some(doc) = &self.doc else { return Ok(0) };
        let Some(build) = doc.get_map("build")? else { return Ok(0) };
        match build.get_scalar("max-jobs")? {
            None => Ok(0),
            Some(s) => s.value.parse().map_err(|_| {
                LoadError::at(s.span, LoadErrorReason::InvalidData, "Value of 'max-jobs' is not of the expected type 'int'")
            }),
        }
    }
}
