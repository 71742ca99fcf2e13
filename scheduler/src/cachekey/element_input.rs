//! The description of one element, as the key computation needs it.
//!
//! It owns [`ElementInput`], [`SourceInput`] and [`DependencyInput`]. Key
//! decisions: everything here is already composed and variable-expanded by
//! the loader (spec §5), so this module knows nothing about projects or
//! junctions; an adapter fills it from the loader's graph, and unit tests
//! fill it by hand. Texts and configurations are `Cow`s that borrow the
//! graph's (configurations stay the loader's YAML mappings): at 10,000
//! elements, copying them into key values cost more memory and time than
//! the rest of the input.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::value::Value;
use crate::yaml::Map;

/// Variables a core plugin reads into its unique key (§6.1, §6.2).
pub const KEY_VARIABLES: &[&str] = &["command-subdir", "notparallel", "cwd", "install-root"];

/// Everything the cache key of one element is computed from.
#[derive(Debug, Clone, Default)]
pub struct ElementInput<'g> {
    /// The element's own project name (project.conf `name`).
    pub project: Cow<'g, str>,
    /// The project-relative element name (`elements/base.bst`).
    pub name: Cow<'g, str>,
    /// The full, junction-qualified name (`sub.bst:base.bst`), used in messages and output.
    pub full_name: Cow<'g, str>,
    /// The element kind (`manual`, `import`, ...).
    pub kind: Cow<'g, str>,
    /// The fully expanded `build-root` variable.
    pub build_root: Cow<'g, str>,
    /// The variables of [`KEY_VARIABLES`] that are defined, expanded.
    pub variables: KeyVariables<'g>,
    /// The composed, expanded `config` mapping (plugin defaults included).
    pub config: Cow<'g, Map>,
    /// The composed, expanded environment (shared: elements often have equal ones).
    pub environment: Arc<BTreeMap<String, String>>,
    /// The effective `environment-nocache` set (shared: usually the project's).
    pub environment_nocache: Arc<BTreeSet<String>>,
    /// The composed, expanded public data (with the composed `bst.split-rules`).
    pub public: Value,
    /// The composed, expanded `sandbox` mapping (before host defaults).
    pub sandbox: Value,
    /// Sources in declaration order.
    pub sources: Vec<SourceInput<'g>>,
    /// The element's project's `fatal-warnings` (any order; implicit entries
    /// included; shared by the project's elements).
    pub fatal_warnings: Arc<[String]>,
    /// Direct dependencies in the loader's sorted order (spec §4.2), links resolved.
    pub dependencies: Vec<DependencyInput<'g>>,
    /// How an external plugin kind's key is made (`None` for core kinds).
    pub external: Option<Cow<'g, crate::graph::ExternalKey>>,
}

/// The variables of [`KEY_VARIABLES`] an element defines, by name.
#[derive(Debug, Clone, Default)]
pub struct KeyVariables<'g> {
    values: [Option<Cow<'g, str>>; KEY_VARIABLES.len()],
}

impl<'g> KeyVariables<'g> {
    /// The value of `name`, if it is one of [`KEY_VARIABLES`] and defined.
    pub fn get(&self, name: &str) -> Option<&str> {
        let position = KEY_VARIABLES.iter().position(|known| *known == name)?;
        self.values[position].as_deref()
    }

    /// Defines `name` (one of [`KEY_VARIABLES`]; any other name is ignored).
    pub fn insert(&mut self, name: &str, value: impl Into<Cow<'g, str>>) {
        if let Some(position) = KEY_VARIABLES.iter().position(|known| *known == name) {
            self.values[position] = Some(value.into());
        }
    }
}

/// One source of an element.
#[derive(Debug, Clone, Default)]
pub struct SourceInput<'g> {
    /// The source kind (`local`, `remote`, `tar`, ...).
    pub kind: Cow<'g, str>,
    /// The source's `directory`, if given.
    pub directory: Option<Cow<'g, str>>,
    /// The composed, expanded source configuration (`kind`, `directory`, `provenance` removed).
    pub config: Cow<'g, Map>,
    /// The directory of the element's project (local paths are relative to
    /// it; shared by the project's sources).
    pub project_dir: Arc<PathBuf>,
    /// `url` translated through the project's aliases, for `remote` (the
    /// only kind whose key reads it).
    pub translated_url: Option<String>,
    /// The unique key an external source plugin computed (other kinds: `None`).
    pub external_key: Option<Value>,
}

/// One direct dependency of an element.
#[derive(Debug, Clone, Default)]
pub struct DependencyInput<'g> {
    /// Index of the dependency in the slice of inputs given to the key computation.
    pub element: usize,
    /// The path as written in the element (`elements/sub.bst:subbase.bst`).
    pub path: Cow<'g, str>,
    /// The dependency is needed at build time.
    pub build: bool,
    /// The dependency is needed at run time.
    pub runtime: bool,
    /// Declared `strict: true`.
    pub strict: bool,
    /// The merged, expanded `config` mappings (one per declaration that had one).
    pub configs: Cow<'g, [Map]>,
}
