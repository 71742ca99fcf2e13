//! The element graph: interned element ids, sorted direct dependencies, a
//! petgraph DAG, topological order and `show` selection (spec §13).
//!
//! Public accessors for later stages (cache keys, builds):
//! * [`Graph::elements`] — every instantiated [`Element`], indexed by
//!   [`ElementId`]: `full_name`, `name`, `kind`, `project_name`, `variables`
//!   (resolved), `config`, `environment`, `environment_nocache`, `public`,
//!   `sandbox` (all composed and expanded), `sources` (kind, expanded
//!   `config`, `directory`), and `dependencies` (sorted per §13.2, each with
//!   `dep_type`, `strict`, expanded `configs`, and the `path` as written).
//! * [`Graph::targets`] — the targets in command-line order.
//! * [`Graph::topological_order`] — every element after its dependencies.
//! * [`Graph::select`] — `--deps none|build|run|all` selection.
//! * [`KeyFields`] — how `show` asks for cache keys and state.
//! * [`Graph::projects`] — per project instance: name, directory, aliases,
//!   `fatal-warnings` (see [`ProjectSummary`]).
//!
//! Key decision: the loader produces plain data; this module owns only
//! structure and order, so later stages depend on it and not on the loader.

pub mod element;
pub mod selection;
pub mod sort;

use std::path::PathBuf;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};

pub use element::{DepType, Dependency, Element, ElementId, ExternalKey, SourceData};
pub use selection::Scope;

use crate::yaml::SourceMap;

/// Supplies the per-element fields `show` cannot compute itself
/// (`%{full-key}`, `%{key}`, `%{strict-key}`, `%{weak-key}`, `%{state}`);
/// `None` prints empty. The cache key module implements this.
pub trait KeyFields {
    /// The value of `field` for `element` of `graph`.
    fn field(&self, graph: &Graph, element: &Element, field: &str) -> Option<String>;
}

/// No cache keys yet: key fields print empty.
#[derive(Debug, Default)]
pub struct NoKeys;

impl KeyFields for NoKeys {
    fn field(&self, _: &Graph, _: &Element, _: &str) -> Option<String> {
        None
    }
}

/// What later stages need to know about a project instance.
#[derive(Debug, Clone)]
pub struct ProjectSummary {
    /// `name`.
    pub name: String,
    /// Project directory.
    pub directory: PathBuf,
    /// Expanded source aliases.
    pub aliases: IndexMap<String, String>,
    /// `fatal-warnings`, sorted.
    pub fatal_warnings: Vec<String>,
    /// Junction full name for subprojects.
    pub junction: Option<String>,
    /// Options as `name → string value`.
    pub options: Vec<(String, String)>,
}

/// The loaded element graph.
#[derive(Debug)]
pub struct Graph {
    /// Every element, indexed by [`ElementId`].
    pub elements: Vec<Element>,
    /// The targets in command-line order.
    pub targets: Vec<ElementId>,
    /// Project instances, indexed by `ProjectId`.
    pub projects: Vec<ProjectSummary>,
    /// Display names of every file read (for messages).
    pub sources: SourceMap,
    dag: DiGraph<ElementId, DepType>,
}

impl Graph {
    /// Builds the graph from instantiated elements.
    pub fn new(elements: Vec<Element>, targets: Vec<ElementId>, projects: Vec<ProjectSummary>, sources: SourceMap) -> Graph {
        let edges = elements.iter().map(|e| e.dependencies.len()).sum();
        let mut dag = DiGraph::with_capacity(elements.len(), edges);
        for e in &elements {
            dag.add_node(e.id);
        }
        for e in &elements {
            for d in &e.dependencies {
                dag.add_edge(NodeIndex::new(e.id.index()), NodeIndex::new(d.element.index()), d.dep_type);
            }
        }
        Graph { elements, targets, projects, sources, dag }
    }

    /// The element with id `id`.
    pub fn element(&self, id: ElementId) -> &Element {
        &self.elements[id.index()]
    }

    /// The element whose full name is `name`.
    pub fn find(&self, full_name: &str) -> Option<&Element> {
        self.elements.iter().find(|e| e.full_name == full_name)
    }

    /// Every element after all of its dependencies.
    pub fn topological_order(&self) -> Vec<ElementId> {
        match petgraph::algo::toposort(&self.dag, None) {
            Ok(mut order) => {
                order.reverse();
                order.into_iter().map(|n| self.dag[n]).collect()
            }
            // The loader rejects cycles, so this is unreachable in practice.
            Err(_) => self.elements.iter().map(|e| e.id).collect(),
        }
    }

    /// `show --deps` selection from `targets`.
    pub fn select(&self, targets: &[ElementId], scope: Scope) -> Vec<ElementId> {
        selection::select(self, targets, scope)
    }
}
