//! The adapter from the loader's element graph to key inputs, and the one
//! entry point `weir show` and `weir build` call: [`GraphKeys`].
//!
//! It owns the mapping of [`crate::graph::Element`] fields onto
//! [`ElementInput`] (element ids become input indices one to one) and alias
//! translation for download URLs. Key decision: this is the only code in the
//! module that knows the loader's element types; the inputs borrow the
//! graph's texts and configurations instead of copying them.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::graph::{Element, ElementId, Graph, ProjectSummary};
use crate::yaml::Map;

use super::build_scope::{BuildScopes, DependencyEdge, DependencyGraph};
use super::element_input::{DependencyInput, ElementInput, KeyVariables, SourceInput, KEY_VARIABLES};
use super::key_fields::{key_field, KeyFields, DEFAULT_KEY_LENGTH};
use super::key_table::{ElementKeys, KeyTable};
use super::node_value::map_to_value;
use super::sandbox::HostPlatform;
use super::source_key::{MerkleDigester, TreeDigester};
use super::value::Value;
use super::CacheKeyError;

/// The keys of every element of a loaded graph (which it borrows).
#[derive(Debug)]
pub struct GraphKeys<'g> {
    inputs: Vec<ElementInput<'g>>,
    table: KeyTable,
}

impl<'g> GraphKeys<'g> {
    /// Computes the keys of every element of `graph` for this host, digesting
    /// `local` sources with weir-proto's Merkle builder.
    pub fn compute(graph: &'g Graph) -> Result<Self, CacheKeyError> {
        Self::compute_with(graph, &HostPlatform::detect(), &MerkleDigester)
    }

    /// Computes the keys with an explicit host platform and tree digester.
    pub fn compute_with(
        graph: &'g Graph,
        host: &HostPlatform,
        digester: &dyn TreeDigester,
    ) -> Result<Self, CacheKeyError> {
        // The build scopes need only the dependency edges: they are
        // computed from the graph while its elements become inputs.
        let mut timer = crate::loader::PhaseTimer::new();
        let (inputs, scopes) = rayon::join(|| element_inputs(graph), || BuildScopes::compute(graph));
        let inputs = inputs?;
        timer.done("keys: inputs, build scopes");
        let table = KeyTable::compute_with_scopes(&inputs, scopes?, host, digester)?;
        Ok(GraphKeys { inputs, table })
    }

    /// The keys of element `id`.
    pub fn keys(&self, id: ElementId) -> Option<&ElementKeys> {
        self.table.get(id.index())
    }

    /// The keys, indexed by element id.
    pub fn table(&self) -> &KeyTable {
        &self.table
    }

    /// The keys alone, indexed by element id, without the borrow of the graph.
    pub fn into_table(self) -> KeyTable {
        self.table
    }

    /// The printable key fields of element `id` (`%{full-key}`, `%{key}`,
    /// `%{strict-key}`, `%{weak-key}`, `%{source-keys}`, `%{artifact}`,
    /// `%{state}`), with the default short-key length and nothing cached.
    pub fn fields(&self, id: ElementId) -> Option<KeyFields> {
        self.fields_with(id, DEFAULT_KEY_LENGTH, &|_| false)
    }

    /// The key fields with an explicit short-key length and cache lookup
    /// (`cached(id)` says whether that element's artifact is cached).
    pub fn fields_with(&self, id: ElementId, key_length: usize, cached: &dyn Fn(ElementId) -> bool) -> Option<KeyFields> {
        let cached_index = |index: usize| cached(ElementId(index as u32));
        KeyFields::of(&self.table, &self.inputs, id.index(), key_length, &cached_index)
    }
}

/// `weir show`'s key fields (`%{full-key}`, `%{key}`, `%{strict-key}`,
/// `%{weak-key}`, `%{source-keys}`, `%{artifact}`, `%{state}`) through
/// [`crate::graph::KeyFields`]: `%{key}` is `key_length` characters long
/// (the user configuration's `logging: key-length`), and `%{state}` is
/// `cached` for the elements in `cached` (those the configured artifact
/// cache holds; without one nothing is cached).
pub struct ShownKeys<'a> {
    /// The keys.
    pub keys: &'a GraphKeys<'a>,
    /// `%{key}`'s length.
    pub key_length: usize,
    /// The elements whose artifact is cached, when a cache was asked.
    pub cached: Option<std::collections::HashSet<ElementId>>,
}

impl crate::graph::KeyFields for ShownKeys<'_> {
    fn field(&self, _graph: &Graph, element: &Element, field: &str) -> Option<String> {
        let cached = |index: usize| self.cached.as_ref().is_some_and(|set| set.contains(&ElementId(index as u32)));
        key_field(&self.keys.table, &self.keys.inputs, element.id.index(), self.key_length, &cached, field)
    }
}

/// The key inputs of every element, indexed by element id (converted in
/// parallel, straight into their places: the graph is checked first, so
/// that the conversion itself cannot fail).
pub fn element_inputs(graph: &Graph) -> Result<Vec<ElementInput<'_>>, CacheKeyError> {
    for (index, element) in graph.elements.iter().enumerate() {
        if element.id.index() != index {
            return Err(CacheKeyError::Internal {
                detail: format!("{}: element id {} stored at index {index}", element.full_name, element.id.0),
            });
        }
        if element.project.0 as usize >= graph.projects.len() {
            return Err(CacheKeyError::Internal {
                detail: format!("{}: unknown project instance {}", element.full_name, element.project.0),
            });
        }
    }
    let interned = InternedValues::collect(graph)?;
    let projects: Vec<ProjectInput> = graph.projects.iter().map(ProjectInput::new).collect();
    Ok(graph
        .elements
        .par_iter()
        .map(|element| element_input(element, &projects[element.project.0 as usize], &interned))
        .collect())
}

/// What the elements of one project share in their inputs, made once.
struct ProjectInput<'g> {
    summary: &'g ProjectSummary,
    directory: Arc<PathBuf>,
    fatal_warnings: Arc<[String]>,
}

impl<'g> ProjectInput<'g> {
    fn new(summary: &'g ProjectSummary) -> Self {
        ProjectInput {
            summary,
            directory: Arc::new(summary.directory.clone()),
            fatal_warnings: summary.fatal_warnings.as_slice().into(),
        }
    }
}

/// The loader interns equal `environment`, `public` and `sandbox` mappings
/// into one `Arc`; they are converted once per distinct mapping (keyed by
/// address, valid while the graph is borrowed) and shared, which also lets
/// [`super::shared_texts`] write each distinct one once. Equal
/// `environment-nocache` lists (usually the project's) share one set.
/// (`config`, with its per-element commands nearly always distinct, is not
/// converted at all: the inputs borrow it.)
struct InternedValues<'g> {
    values: FxHashMap<usize, Value>,
    environments: FxHashMap<usize, Arc<BTreeMap<String, String>>>,
    nocache: FxHashMap<&'g [String], Arc<BTreeSet<String>>>,
}

impl<'g> InternedValues<'g> {
    /// The distinct mappings are found in one pass, then converted in parallel.
    fn collect(graph: &'g Graph) -> Result<Self, CacheKeyError> {
        let address = |map: &Arc<Map>| Arc::as_ptr(map) as usize;
        let mut maps: FxHashMap<usize, &Map> = FxHashMap::default();
        let mut environments: FxHashMap<usize, &Element> = FxHashMap::default();
        let mut nocache: FxHashMap<&[String], Arc<BTreeSet<String>>> = FxHashMap::default();
        for element in &graph.elements {
            for map in [&element.public, &element.sandbox] {
                maps.entry(address(map)).or_insert(map);
            }
            environments.entry(address(&element.environment)).or_insert(element);
            nocache
                .entry(element.environment_nocache.as_slice())
                .or_insert_with(|| Arc::new(element.environment_nocache.iter().cloned().collect()));
        }
        let values = maps.into_par_iter().map(|(address, map)| (address, map_to_value(map))).collect();
        let environments = environments
            .into_par_iter()
            .map(|(address, element)| {
                let mut environment = BTreeMap::new();
                for (name, value) in element.environment.iter() {
                    let value = value.as_str().ok_or_else(|| CacheKeyError::InvalidConfig {
                        element: element.full_name.clone(),
                        detail: format!("environment variable {name} is not a string"),
                    })?;
                    environment.insert(name.to_string(), value.to_owned());
                }
                Ok((address, Arc::new(environment)))
            })
            .collect::<Result<_, CacheKeyError>>()?;
        Ok(InternedValues { values, environments, nocache })
    }

    fn value(&self, map: &Arc<Map>) -> Value {
        self.values.get(&(Arc::as_ptr(map) as usize)).cloned().unwrap_or_else(|| map_to_value(map))
    }

    fn environment(&self, map: &Arc<Map>) -> Arc<BTreeMap<String, String>> {
        self.environments.get(&(Arc::as_ptr(map) as usize)).cloned().unwrap_or_default()
    }

    fn nocache(&self, names: &[String]) -> Arc<BTreeSet<String>> {
        self.nocache.get(names).cloned().unwrap_or_else(|| Arc::new(names.iter().cloned().collect()))
    }
}

/// The key input of one element.
fn element_input<'g>(
    element: &'g Element,
    project: &ProjectInput,
    interned: &InternedValues,
) -> ElementInput<'g> {
    let mut variables = KeyVariables::default();
    for name in KEY_VARIABLES {
        if let Some(value) = element.variable(name) {
            variables.insert(name, value);
        }
    }
    let sources = element
        .sources
        .iter()
        .map(|source| {
            // Only `remote` keys read the translated URL (its file name).
            let translated_url = match source.kind.as_str() {
                "remote" => source.config.get("url").and_then(|url| url.as_str()).map(|url| translate_url(url, project.summary)),
                _ => None,
            };
            SourceInput {
                kind: Cow::Borrowed(&source.kind),
                directory: source.directory.as_deref().map(Cow::Borrowed),
                config: Cow::Borrowed(&source.config),
                project_dir: Arc::clone(&project.directory),
                translated_url,
                external_key: source.unique_key.as_ref().map(Value::from),
            }
        })
        .collect();
    let dependencies = element
        .dependencies
        .iter()
        .map(|dep| DependencyInput {
            element: dep.element.index(),
            path: Cow::Borrowed(&dep.path),
            build: dep.dep_type.is_build(),
            runtime: dep.dep_type.is_runtime(),
            strict: dep.strict,
            configs: Cow::Borrowed(&dep.configs),
        })
        .collect();
    ElementInput {
        project: Cow::Borrowed(&element.project_name),
        name: Cow::Borrowed(&element.name),
        full_name: Cow::Borrowed(&element.full_name),
        kind: Cow::Borrowed(&element.kind),
        build_root: Cow::Borrowed(element.variable("build-root").unwrap_or_default()),
        variables,
        config: Cow::Borrowed(&element.config),
        environment: interned.environment(&element.environment),
        environment_nocache: interned.nocache(&element.environment_nocache),
        public: interned.value(&element.public),
        sandbox: interned.value(&element.sandbox),
        sources,
        fatal_warnings: Arc::clone(&project.fatal_warnings),
        dependencies,
        external: element.external_key.as_ref().map(Cow::Borrowed),
    }
}

/// The loader's graph as dependency edges (element ids are indices).
impl DependencyGraph for Graph {
    fn element_count(&self) -> usize {
        self.elements.len()
    }

    fn dependency_count(&self, element: usize) -> usize {
        self.elements[element].dependencies.len()
    }

    fn dependency(&self, element: usize, position: usize) -> DependencyEdge {
        let dep = &self.elements[element].dependencies[position];
        DependencyEdge { element: dep.element.index(), build: dep.dep_type.is_build(), runtime: dep.dep_type.is_runtime() }
    }

    fn element_name(&self, element: usize) -> &str {
        &self.elements[element].full_name
    }
}

/// `alias:rest` → the alias's URL + `rest` when the project defines the alias
/// (BuildStream's `Project.translate_url` without a mirror override).
fn translate_url(url: &str, project: &ProjectSummary) -> String {
    match url.split_once(':') {
        Some((alias, rest)) => match project.aliases.get(alias) {
            Some(base) if !base.is_empty() => format!("{base}{rest}"),
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use indexmap::IndexMap;

    use super::*;
    use crate::graph::{DepType, Dependency, SourceData};
    use crate::project::ProjectId;
    use crate::yaml::{FileId, Node, SourceMap, Span};

    struct NamedDigester;

    impl TreeDigester for NamedDigester {
        fn tree_hash(&self, path: &Path) -> Result<String, String> {
            Ok(super::super::canonical::hash_canonical(&path.display().to_string()))
        }
    }

    fn span() -> Span {
        Span::synthetic(FileId(0))
    }

    fn map(pairs: &[(&str, &str)]) -> Map {
        let mut map = Map::new(span());
        for (key, value) in pairs {
            map.insert(*key, Node::scalar(*value, span()));
        }
        map
    }

    fn element(id: u32, name: &str, kind: &str) -> Element {
        Element {
            id: ElementId(id),
            name: name.into(),
            full_name: name.into(),
            kind: kind.into(),
            project: ProjectId(0),
            project_name: "proj".into(),
            first_pass: false,
            variables: vec![(Arc::from("build-root"), Arc::from(format!("/buildstream/proj/{name}").as_str()))].into(),
            config: Arc::new(Map::new(span())),
            environment: Arc::new(map(&[("PATH", "/usr/bin"), ("MAKEFLAGS", "-j8")])),
            environment_nocache: vec!["MAKEFLAGS".into()],
            public: Arc::new(Map::new(span())),
            sandbox: Arc::new(Map::new(span())),
            sources: Vec::new(),
            dependencies: Vec::new(),
            span: span(),
            external_key: None,
        }
    }

    fn graph() -> Graph {
        let mut fetch = element(0, "fetch.bst", "import");
        fetch.sources.push(SourceData {
            kind: "remote".into(),
            config: map(&[("url", "up:dir/file.txt"), ("ref", "abc")]),
            directory: Some("opt".into()),
            provenance: None,
            span: span(),
            unique_key: None,
        });
        fetch.sources.push(SourceData {
            kind: "local".into(),
            config: map(&[("path", "files")]),
            directory: None,
            provenance: None,
            span: span(),
            unique_key: None,
        });
        let mut build = element(1, "build.bst", "manual");
        build.dependencies.push(Dependency {
            element: ElementId(0),
            dep_type: DepType::Build,
            strict: false,
            configs: vec![map(&[("location", "/sysroot")])],
            path: "fetch.bst".into(),
            span: span(),
        });
        let mut aliases = IndexMap::new();
        aliases.insert("up".to_owned(), "https://example.com/mirror/".to_owned());
        let project = ProjectSummary {
            name: "proj".into(),
            directory: PathBuf::from("/project"),
            aliases,
            fatal_warnings: vec!["overlaps".into()],
            junction: None,
            options: Vec::new(),
        };
        Graph::new(vec![fetch, build], vec![ElementId(1)], vec![project], SourceMap::new())
    }

    fn host() -> HostPlatform {
        HostPlatform { os: "linux".into(), arch: "x86-64".into() }
    }

    #[test]
    fn graph_elements_become_inputs() {
        let graph = graph();
        let inputs = element_inputs(&graph).unwrap();
        let fetch = &inputs[0];
        assert_eq!(fetch.sources[0].translated_url.as_deref(), Some("https://example.com/mirror/dir/file.txt"));
        assert_eq!(fetch.sources[0].directory.as_deref(), Some("opt"));
        assert_eq!(*fetch.sources[1].project_dir, PathBuf::from("/project"));
        assert_eq!(&fetch.fatal_warnings[..], ["overlaps".to_owned()]);
        assert_eq!(fetch.build_root, "/buildstream/proj/fetch.bst");
        let build = &inputs[1];
        assert_eq!(build.dependencies.len(), 1);
        assert!(build.dependencies[0].build && !build.dependencies[0].runtime);
        assert_eq!(build.dependencies[0].configs[0].get("location").and_then(|n| n.as_str()), Some("/sysroot"));
        assert!(build.environment_nocache.contains("MAKEFLAGS"));
    }

    #[test]
    fn build_scopes_of_the_graph_are_those_of_its_inputs() {
        let graph = graph();
        let inputs = element_inputs(&graph).unwrap();
        let (from_graph, from_inputs) = (BuildScopes::compute(&graph).unwrap(), BuildScopes::compute(&inputs[..]).unwrap());
        assert_eq!(from_graph.scopes, from_inputs.scopes);
        assert_eq!(from_graph.closures, from_inputs.closures);
        assert_eq!(from_graph.scopes[1], [0], "build.bst build-depends on fetch.bst");
        let mut cyclic = graph;
        cyclic.elements[0].dependencies = cyclic.elements[1].dependencies.clone();
        cyclic.elements[0].dependencies[0].element = ElementId(1);
        assert!(matches!(BuildScopes::compute(&cyclic), Err(CacheKeyError::Internal { .. })));
    }

    #[test]
    fn fields_of_a_graph() {
        let graph = graph();
        let keys = GraphKeys::compute_with(&graph, &host(), &NamedDigester).unwrap();
        let fetch = keys.fields(ElementId(0)).unwrap();
        assert_eq!(
            fetch.source_keys,
            format!(
                r#"[["up:dir/file.txt","abc","file.txt",false],"{}"]"#,
                super::super::canonical::hash_canonical("/project/files")
            )
        );
        assert_eq!(fetch.state, "fetch needed", "a remote source is not fetched yet");
        assert_eq!(fetch.key, fetch.full_key[..8]);
        assert_eq!(fetch.artifact, format!("proj/fetch/{}", fetch.full_key));
        let build = keys.fields(ElementId(1)).unwrap();
        assert_eq!(build.state, "waiting");
        assert!(super::super::canonical::is_key(&build.strict_key));
        assert!(super::super::canonical::is_key(&build.weak_key));
        assert_eq!(build.full_key, build.strict_key);
        let lookup: &dyn crate::graph::KeyFields = &ShownKeys { keys: &keys, key_length: DEFAULT_KEY_LENGTH, cached: None };
        assert_eq!(lookup.field(&graph, graph.element(ElementId(1)), "full-key"), Some(build.full_key.clone()));
        assert_eq!(lookup.field(&graph, graph.element(ElementId(0)), "source-keys"), Some(fetch.source_keys.clone()));
        assert_eq!(lookup.field(&graph, graph.element(ElementId(0)), "name"), None);
        let cached = keys.fields_with(ElementId(1), 4, &|id| id == ElementId(0)).unwrap();
        assert_eq!(cached.state, "buildable", "its only build dependency is cached");
        let both = keys.fields_with(ElementId(1), 4, &|_| true).unwrap();
        assert_eq!(both.state, "cached");
        assert_eq!(cached.key.len(), 4);
    }
}
