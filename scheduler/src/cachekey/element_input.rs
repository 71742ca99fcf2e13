//! The plain-data description of one element, as the key computation needs it.
//!
//! It owns [`ElementInput`], [`SourceInput`] and [`DependencyInput`]. Key
//! decision: everything here is already composed and variable-expanded by the
//! loader (spec §5), so this module knows nothing about YAML, projects or
//! junctions; an adapter fills it from the loader's graph, and unit tests fill
//! it by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use super::value::Value;

/// Variables a core plugin reads into its unique key (§6.1, §6.2).
pub const KEY_VARIABLES: &[&str] = &["command-subdir", "notparallel", "cwd", "install-root"];

/// Everything the cache key of one element is computed from.
#[derive(Debug, Clone, Default)]
pub struct ElementInput {
    /// The element's own project name (project.conf `name`).
    pub project: String,
    /// The project-relative element name (`elements/base.bst`).
    pub name: String,
    /// The full, junction-qualified name (`sub.bst:base.bst`), used in messages and output.
    pub full_name: String,
    /// The element kind (`manual`, `import`, ...).
    pub kind: String,
    /// The fully expanded `build-root` variable.
    pub build_root: String,
    /// The variables of [`KEY_VARIABLES`] that are defined, expanded.
    pub variables: BTreeMap<&'static str, String>,
    /// The composed, expanded `config` mapping (plugin defaults included).
    pub config: Value,
    /// The composed, expanded environment (shared: elements often have equal ones).
    pub environment: Arc<BTreeMap<String, String>>,
    /// The effective `environment-nocache` set (shared: usually the project's).
    pub environment_nocache: Arc<BTreeSet<String>>,
    /// The composed, expanded public data (with the composed `bst.split-rules`).
    pub public: Value,
    /// The composed, expanded `sandbox` mapping (before host defaults).
    pub sandbox: Value,
    /// Sources in declaration order.
    pub sources: Vec<SourceInput>,
    /// The element's project's `fatal-warnings` (any order; implicit entries
    /// included; shared by the project's elements).
    pub fatal_warnings: Arc<[String]>,
    /// Direct dependencies in the loader's sorted order (spec §4.2), links resolved.
    pub dependencies: Vec<DependencyInput>,
    /// How an external plugin kind's key is made (`None` for core kinds).
    pub external: Option<crate::graph::ExternalKey>,
}

/// One source of an element.
#[derive(Debug, Clone, Default)]
pub struct SourceInput {
    /// The source kind (`local`, `remote`, `tar`, ...).
    pub kind: String,
    /// The source's `directory`, if given.
    pub directory: Option<String>,
    /// The composed, expanded source configuration (`kind`, `directory`, `provenance` removed).
    pub config: Value,
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
pub struct DependencyInput {
    /// Index of the dependency in the slice of inputs given to the key computation.
    pub element: usize,
    /// The path as written in the element (`elements/sub.bst:subbase.bst`).
    pub path: String,
    /// The dependency is needed at build time.
    pub build: bool,
    /// The dependency is needed at run time.
    pub runtime: bool,
    /// Declared `strict: true`.
    pub strict: bool,
    /// The merged, expanded `config` mappings (one per declaration that had one).
    pub configs: Vec<Value>,
}
