//! Resolving an element kind for a project (plugins §3.2): the project's
//! declared origins first (local executables, junction re-exports, pip),
//! then the core kinds.
//!
//! Key decision: a resolved kind is plain data ([`KindInfo`]) cached per
//! project; external plugin processes are kept by executable path for the run.

use std::path::PathBuf;
use std::sync::Arc;

use super::session::Session;
use crate::plugins::{CoreElement, ExternalPlugin, Namespace, Origin};
use crate::project::defaults::synthetic_yaml;
use crate::project::ProjectId;
use crate::yaml::{LoadError, LoadResult, Map, Span};

/// How an element kind behaves at load level.
#[derive(Debug, Clone)]
pub enum KindBehaviour {
    /// Compiled in.
    Core(CoreElement),
    /// An external plugin executable.
    External(PathBuf),
}

/// A resolved element kind.
#[derive(Debug, Clone)]
pub struct KindInfo {
    /// Kind name.
    pub name: String,
    /// The plugin's default YAML.
    pub defaults: Map,
    /// Core or external.
    pub behaviour: KindBehaviour,
    /// Whether build dependencies may carry `config`.
    pub dependency_config: bool,
}

impl Session {
    /// The element kind `kind` as project `id` resolves it (`at`: the `kind` value).
    pub fn element_kind(&mut self, id: ProjectId, kind: &str, at: Span) -> LoadResult<Arc<KindInfo>> {
        if let Some(info) = self.state(id).kinds.get(kind) {
            return Ok(info.clone());
        }
        let info = Arc::new(self.resolve_kind(id, kind, at)?);
        self.state(id).kinds.insert(kind.to_string(), info.clone());
        Ok(info)
    }

    /// The executable of the external source plugin `kind` declared by
    /// project `id` with a `local` origin, started on first use; `None` when
    /// the origin is not local or holds no executable for it (the source is
    /// then loaded without a plugin, and its key cannot be computed).
    pub fn source_plugin(&mut self, id: ProjectId, kind: &str, at: Span) -> LoadResult<Option<std::path::PathBuf>> {
        let Some(Origin::Local { path }) = self.states[id.0 as usize].origins.lookup(Namespace::Source, kind).map(|(_, o)| o.clone()) else {
            return Ok(None);
        };
        if !path.join(kind).is_file() {
            return Ok(None);
        }
        self.running_plugin(&path, kind, "source", at).map(Some)
    }

    /// The executable `path/kind`, started (one process per executable, for
    /// the whole run) on first use.
    fn running_plugin(&mut self, path: &std::path::Path, kind: &str, namespace: &str, at: Span) -> LoadResult<std::path::PathBuf> {
        let exe = path.join(kind);
        if !self.plugins.contains_key(&exe) {
            let plugin = ExternalPlugin::start(path, kind, namespace, at)?;
            self.plugins.insert(exe.clone(), plugin);
        }
        Ok(exe)
    }

    fn resolve_kind(&mut self, id: ProjectId, kind: &str, at: Span) -> LoadResult<KindInfo> {
        let declared = self.states[id.0 as usize].origins.lookup(Namespace::Element, kind).map(|(_, o)| o.clone());
        match declared {
            Some(Origin::Local { path }) => {
                let exe = self.running_plugin(&path, kind, "element", at)?;
                let plugin = &self.plugins[&exe];
                Ok(KindInfo {
                    name: kind.to_string(),
                    defaults: plugin.defaults_map(Span::synthetic(at.file)),
                    behaviour: KindBehaviour::External(exe),
                    dependency_config: plugin.dependency_config,
                })
            }
            Some(Origin::Pip { package }) => Err(LoadError::other(
                "PLUGIN",
                "package-not-found",
                Some(at),
                format!("Element plugin '{kind}' comes from the Python package '{package}', which Weir cannot load"),
            )),
            Some(Origin::Junction { junction, span }) => {
                let sub = self.get_loader(id, &junction.value, Some(span))?;
                if self.states[sub.0 as usize].origins.lookup(Namespace::Element, kind).is_none() {
                    return Err(LoadError::other(
                        "PLUGIN",
                        "junction-plugin-not-found",
                        Some(at),
                        format!("Junction '{}' does not declare an element plugin of kind '{kind}'", junction.value),
                    ));
                }
                let info = self.element_kind(sub, kind, at)?;
                Ok((*info).clone())
            }
            None => match CoreElement::from_kind(kind) {
                Some(core) => Ok(KindInfo {
                    name: kind.to_string(),
                    defaults: synthetic_yaml(core.defaults_yaml(), at.file)?,
                    behaviour: KindBehaviour::Core(core),
                    dependency_config: core.supports_dependency_config(),
                }),
                None => Err(LoadError::other(
                    "PLUGIN",
                    "plugin-not-found",
                    Some(at),
                    format!("No element plugin registered for kind '{kind}'"),
                )),
            },
        }
    }
}
