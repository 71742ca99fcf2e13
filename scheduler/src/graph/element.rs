//! One loaded element as later stages see it: identity, kind, resolved
//! variables and expanded configuration, sources and sorted dependencies.
//!
//! Key decision: everything is already composed and variable-expanded; the
//! cache key and build stages read, never recompute, these fields.

use std::sync::Arc;

use crate::project::ProjectId;
use crate::yaml::{Map, Span};

/// Interned element id: an index into [`super::Graph::elements`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ElementId(pub u32);

impl ElementId {
    /// The index as `usize`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Dependency type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepType {
    /// Build only.
    Build,
    /// Runtime only.
    Runtime,
    /// Both.
    All,
}

impl DepType {
    /// Whether the dependency is needed to build.
    pub fn is_build(self) -> bool {
        matches!(self, DepType::Build | DepType::All)
    }

    /// Whether the dependency is needed at runtime.
    pub fn is_runtime(self) -> bool {
        matches!(self, DepType::Runtime | DepType::All)
    }

    /// The union of two types.
    pub fn merge(self, other: DepType) -> DepType {
        if self == other {
            self
        } else {
            DepType::All
        }
    }
}

/// One direct dependency.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// The element depended on (links and overrides already followed).
    pub element: ElementId,
    /// Build, runtime or both.
    pub dep_type: DepType,
    /// `strict: true`.
    pub strict: bool,
    /// Dependency configurations (variable-expanded), in declaration order.
    pub configs: Vec<Map>,
    /// The path as written in the element (`base.bst`, `j.bst:x.bst`).
    pub path: String,
    /// Provenance of the dependency entry.
    pub span: Span,
}

/// One source of an element.
#[derive(Debug, Clone)]
pub struct SourceData {
    /// Source kind.
    pub kind: String,
    /// Composed, variable-expanded configuration (without `kind`, `directory`, `provenance`).
    pub config: Map,
    /// `directory`, if given.
    pub directory: Option<String>,
    /// `provenance` mapping, if given.
    pub provenance: Option<Map>,
    /// Provenance of the source entry.
    pub span: Span,
    /// For a source of an external plugin kind: the `unique-key` its plugin
    /// computed (`None` for core kinds and plugins that give none).
    pub unique_key: Option<serde_json::Value>,
}

/// A loaded, instantiated element.
#[derive(Debug, Clone)]
pub struct Element {
    /// Its id.
    pub id: ElementId,
    /// Name within its project (`base/alpine.bst`).
    pub name: String,
    /// Full name (`j.bst:base/alpine.bst`).
    pub full_name: String,
    /// Element kind.
    pub kind: String,
    /// Project instance.
    pub project: ProjectId,
    /// Name of that project.
    pub project_name: String,
    /// Junction and link elements are loaded with the first pass.
    pub first_pass: bool,
    /// Resolved variables, in composition order.
    pub variables: crate::project::ResolvedVariables,
    /// Expanded `config`. Shared between elements with equal content.
    pub config: Arc<Map>,
    /// Expanded `environment`. Shared between elements with equal content.
    pub environment: Arc<Map>,
    /// `environment-nocache` (sorted, unique).
    pub environment_nocache: Vec<String>,
    /// Expanded `public` (with `bst.split-rules`). Shared between elements with equal content.
    pub public: Arc<Map>,
    /// Expanded `sandbox`. Shared between elements with equal content.
    pub sandbox: Arc<Map>,
    /// Sources in order.
    pub sources: Vec<SourceData>,
    /// Direct dependencies, sorted (spec §13.2).
    pub dependencies: Vec<Dependency>,
    /// Provenance of the element file's top mapping.
    pub span: Span,
    /// For an element of an external plugin kind: how its cache key is made,
    /// as the plugin declared it (`None` for core kinds, and for plugins that
    /// declare nothing: such an element's key cannot be computed).
    pub external_key: Option<ExternalKey>,
}

/// How an external plugin kind's elements are keyed, from the plugin's
/// replies (see docs/plugin-protocol.md, `cache-key`).
#[derive(Debug, Clone, PartialEq)]
pub enum ExternalKey {
    /// The kind is a BuildElement (like `autotools` or `cmake`): the key is
    /// made from its command lists and variables as for `manual`, and Weir
    /// builds it as it builds `manual`.
    BuildElement,
    /// The plugin computed the element's `get_unique_key()` itself.
    Plugin {
        /// The unique key, as JSON.
        unique_key: serde_json::Value,
        /// `BST_RUN_COMMANDS`.
        run_commands: bool,
        /// `BST_STRICT_REBUILD`.
        strict_rebuild: bool,
        /// `BST_ARTIFACT_VERSION`.
        artifact_version: i64,
    },
}

impl Element {
    /// Build dependencies in sorted order.
    pub fn build_deps(&self) -> impl Iterator<Item = ElementId> + '_ {
        self.dependencies.iter().filter(|d| d.dep_type.is_build()).map(|d| d.element)
    }

    /// Runtime dependencies in sorted order.
    pub fn runtime_deps(&self) -> impl Iterator<Item = ElementId> + '_ {
        self.dependencies.iter().filter(|d| d.dep_type.is_runtime()).map(|d| d.element)
    }

    /// A resolved variable.
    pub fn variable(&self, name: &str) -> Option<&str> {
        self.variables.get(name)
    }
}
