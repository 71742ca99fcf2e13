//! [`plan_from_graph`]: the adapter from the loader's element graph and the
//! cache keys to a [`BuildPlan`].
//!
//! It owns the mapping of core element kinds onto [`Recipe`]s: `import`
//! (with `config.source`/`config.target`), `stack`, `script` (its commands in
//! `%{cwd}`, dependencies staged by `location`), `compose` (split-rule
//! filtering from each dependency's public data), `filter`, and `manual` (its
//! configure, build, install and strip commands in that order, the
//! `build-root`/`install-root` variables, the environment, and the platform
//! `OSFamily`/`ISA` from `sandbox: build-os`/`build-arch`). Key decision:
//! this is the only build code that knows the loader's types; a kind or
//! source kind it cannot build yet is an error naming the element, never a
//! silent skip. Sources: `local` (the project path) and `tar`/`remote`
//! (the trees the fetch step staged, see [`crate::fetch`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::cachekey::sandbox::{canonicalize_arch, HostPlatform};
use crate::fetch::FetchedSources;
use crate::graph::{Element, ElementId, ExternalKey, Graph, Scope};
use crate::yaml::{Map, Node};

use super::{ArtifactKeys, BuildError, BuildPlan, CommandsRecipe, ComposeRecipe, PlanElement, PublicData, Recipe, SourceTree, SplitFilter};
use crate::yaml::parse_bool;

/// The `manual` command lists, in the order they run.
const MANUAL_COMMANDS: [&str; 4] = ["configure-commands", "build-commands", "install-commands", "strip-commands"];

/// The plan that builds `targets` and everything they depend on; `keys`
/// gives each element's keys (`None` when they cannot be computed).
pub fn plan_from_graph(
    graph: &Graph,
    targets: &[ElementId],
    host: &HostPlatform,
    fetched: &FetchedSources,
    keys: impl Fn(ElementId) -> Option<ArtifactKeys>,
) -> Result<BuildPlan, BuildError> {
    let selected = graph.select(targets, Scope::All);
    let position: HashMap<ElementId, usize> = graph.topological_order().into_iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut order = selected;
    order.sort_by_key(|id| position.get(id).copied().unwrap_or(usize::MAX));
    let index: HashMap<ElementId, usize> = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut elements = Vec::with_capacity(order.len());
    for &id in &order {
        let element = graph.element(id);
        let project_dir = graph.projects.get(element.project.0 as usize).map(|p| p.directory.as_path()).unwrap_or(Path::new("."));
        let keys = keys(id).ok_or_else(|| BuildError::Element {
            element: element.full_name.clone(),
            reason: "its cache key cannot be computed (sources not resolved?)".into(),
        })?;
        let deps = |build: bool| -> Vec<usize> {
            element
                .dependencies
                .iter()
                .filter(|d| if build { d.dep_type.is_build() } else { d.dep_type.is_runtime() })
                .filter_map(|d| index.get(&d.element).copied())
                .collect()
        };
        elements.push(PlanElement {
            project: element.project_name.clone(),
            name: element.full_name.clone(),
            keys,
            build_deps: deps(true),
            runtime_deps: deps(false),
            recipe: recipe(element, project_dir, host, &index, fetched)?,
            public: public_data(element)?,
            fatal_warnings: graph.projects.get(element.project.0 as usize).map(|p| p.fatal_warnings.clone()).unwrap_or_default(),
        });
    }
    BuildPlan::new(elements)
}

/// The recipe of one element; `index` maps element ids to plan indices,
/// `fetched` gives the staged trees of its `tar`/`remote` sources.
pub fn recipe(
    element: &Element,
    project_dir: &Path,
    host: &HostPlatform,
    index: &HashMap<ElementId, usize>,
    fetched: &FetchedSources,
) -> Result<Recipe, BuildError> {
    let bad = |reason: String| BuildError::Element { element: element.full_name.clone(), reason };
    // An external BuildElement kind (`autotools`, `cmake`, ...) builds as
    // `manual` does: its plugin's defaults supplied the command lists.
    let kind = if element.external_key == Some(ExternalKey::BuildElement) { "manual" } else { element.kind.as_str() };
    match kind {
        "stack" => Ok(Recipe::Stack),
        "import" => Ok(Recipe::Import {
            sources: sources(element, project_dir, fetched)?,
            source: config_str(element, "source")?.unwrap_or_else(|| "/".into()),
            target: config_str(element, "target")?.unwrap_or_else(|| "/".into()),
        }),
        "manual" => {
            let mut commands = Vec::new();
            for list in MANUAL_COMMANDS {
                commands.extend(config_list(element, list)?);
            }
            let variable = |name: &str| element.variable(name).map(str::to_string).ok_or_else(|| bad(format!("variable '{name}' is not defined")));
            Ok(Recipe::Commands(CommandsRecipe {
                sources: sources(element, project_dir, fetched)?,
                build_root: variable("build-root")?,
                install_root: variable("install-root")?,
                commands,
                environment: string_map(&element.environment),
                platform: platform(element, host)?,
                // BuildElement's dependency `config: location` (all at `/` otherwise).
                layout: Some(layout(element, index)).filter(|l| l.iter().any(|(location, _)| location != "/")).unwrap_or_default(),
                integration_commands: Vec::new(),
                digest_environment: digest_environment(element, index),
            }))
        }
        "compose" => Ok(Recipe::Compose(ComposeRecipe {
            filter: SplitFilter {
                include: config_list(element, "include")?,
                exclude: config_list(element, "exclude")?,
                include_orphans: config_bool(element, "include-orphans", true)?,
            },
            integrate: config_bool(element, "integrate", true)?,
            environment: string_map(&element.environment),
            platform: platform(element, host)?,
        })),
        "filter" => {
            let mut build_deps = element.dependencies.iter().filter(|d| d.dep_type.is_build());
            let (Some(dep), None) = (build_deps.next(), build_deps.next()) else {
                return Err(bad("a filter element must have exactly one build dependency".into()));
            };
            let source = *index.get(&dep.element).ok_or_else(|| bad("its build dependency is not in the plan".into()))?;
            Ok(Recipe::Filter {
                source,
                filter: SplitFilter {
                    include: config_list(element, "include")?,
                    exclude: config_list(element, "exclude")?,
                    include_orphans: config_bool(element, "include-orphans", false)?,
                },
            })
        }
        "script" => {
            let variable = |name: &str| element.variable(name).filter(|v| !v.is_empty()).unwrap_or("/").to_string();
            Ok(Recipe::Commands(CommandsRecipe {
                sources: Vec::new(),
                build_root: variable("cwd"),
                install_root: variable("install-root"),
                commands: config_list(element, "commands")?,
                environment: string_map(&element.environment),
                platform: platform(element, host)?,
                layout: layout(element, index),
                integration_commands: Vec::new(),
                digest_environment: Vec::new(),
            }))
        }
        other => Err(bad(format!("element kind '{other}' cannot be built yet (supported: compose, filter, import, manual, script, stack)"))),
    }
}

/// BuildElement's `digest-environment` dependency configuration: variable
/// → build dependencies (plan indices), variables sorted.
fn digest_environment(element: &Element, index: &HashMap<ElementId, usize>) -> Vec<(String, Vec<usize>)> {
    let mut by_variable: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for dep in element.dependencies.iter().filter(|d| d.dep_type.is_build()) {
        let Some(&plan_index) = index.get(&dep.element) else { continue };
        for config in &dep.configs {
            if let Some(Node::Scalar(variable)) = config.get("digest-environment") {
                by_variable.entry(variable.value.to_string()).or_default().push(plan_index);
            }
        }
    }
    by_variable.into_iter().collect()
}

/// `script`'s layout: each build dependency at its `config: location`
/// (`/` without one; once per config entry), locations sorted as
/// BuildStream registers them, dependencies in declaration order.
fn layout(element: &Element, index: &HashMap<ElementId, usize>) -> Vec<(String, Vec<usize>)> {
    let mut by_location: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for dep in element.dependencies.iter().filter(|d| d.dep_type.is_build()) {
        let Some(&plan_index) = index.get(&dep.element) else { continue };
        let locations: Vec<String> = if dep.configs.is_empty() {
            vec!["/".into()]
        } else {
            dep.configs
                .iter()
                .map(|config| match config.get("location") {
                    Some(Node::Scalar(s)) => s.value.to_string(),
                    _ => "/".into(),
                })
                .collect()
        };
        for location in locations {
            by_location.entry(location).or_default().push(plan_index);
        }
    }
    by_location.into_iter().collect()
}

/// The element's sources as trees to stage, in order: a `local` source's
/// path in the project, a `tar`/`remote` source's tree from the fetch step.
fn sources(element: &Element, project_dir: &Path, fetched: &FetchedSources) -> Result<Vec<SourceTree>, BuildError> {
    let bad = |reason: String| BuildError::Element { element: element.full_name.clone(), reason };
    element
        .sources
        .iter()
        .enumerate()
        .map(|(index, source)| {
            let path = match source.kind.as_str() {
                "local" => match source.config.get("path") {
                    Some(Node::Scalar(path)) => project_dir.join(path.value.as_ref()),
                    _ => return Err(bad("local source without a 'path'".into())),
                },
                "tar" | "remote" => fetched
                    .tree(element.id, index)
                    .ok_or_else(|| bad(format!("{} source #{} was not fetched before planning", source.kind, index + 1)))?
                    .to_path_buf(),
                other => return Err(bad(format!("source kind '{other}' cannot be staged for a build yet (supported: local, remote, tar)"))),
            };
            Ok(SourceTree { path, directory: source.directory.clone().unwrap_or_default() })
        })
        .collect()
}

fn config_str(element: &Element, key: &str) -> Result<Option<String>, BuildError> {
    match element.config.get(key) {
        None => Ok(None),
        Some(Node::Scalar(s)) => Ok(Some(s.value.to_string())),
        Some(_) => Err(BuildError::Element { element: element.full_name.clone(), reason: format!("config '{key}' is not a string") }),
    }
}

fn config_list(element: &Element, key: &str) -> Result<Vec<String>, BuildError> {
    match element.config.get(key) {
        None => Ok(Vec::new()),
        Some(Node::Seq(seq)) => seq
            .items
            .iter()
            .map(|item| match item {
                Node::Scalar(s) => Ok(s.value.to_string()),
                _ => Err(BuildError::Element { element: element.full_name.clone(), reason: format!("config '{key}' has a non-string item") }),
            })
            .collect(),
        Some(_) => Err(BuildError::Element { element: element.full_name.clone(), reason: format!("config '{key}' is not a list") }),
    }
}

fn config_bool(element: &Element, key: &str, default: bool) -> Result<bool, BuildError> {
    match config_str(element, key)? {
        None => Ok(default),
        Some(text) => parse_bool(&text)
            .ok_or_else(|| BuildError::Element { element: element.full_name.clone(), reason: format!("config '{key}' is not a boolean") }),
    }
}

/// A list of strings from a node (`None` if it is not one).
fn str_list(node: &Node) -> Option<Vec<String>> {
    match node {
        Node::Seq(seq) => seq
            .items
            .iter()
            .map(|item| match item {
                Node::Scalar(s) => Some(s.value.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// `public: bst: split-rules`, `integration-commands` and `overlap-whitelist`.
fn public_data(element: &Element) -> Result<PublicData, BuildError> {
    let bad = |what: &str| BuildError::Element { element: element.full_name.clone(), reason: format!("public bst.{what} is malformed") };
    let Some(Node::Map(bst)) = element.public.get("bst") else { return Ok(PublicData::default()) };
    let mut data = PublicData::default();
    if let Some(node) = bst.get("split-rules") {
        let Node::Map(rules) = node else { return Err(bad("split-rules")) };
        for (domain, patterns) in rules.iter() {
            data.split_rules.domains.insert(domain.to_string(), str_list(patterns).ok_or_else(|| bad("split-rules"))?);
        }
    }
    if let Some(node) = bst.get("integration-commands") {
        data.integration_commands = str_list(node).ok_or_else(|| bad("integration-commands"))?;
    }
    if let Some(node) = bst.get("overlap-whitelist") {
        data.overlap_whitelist = str_list(node).ok_or_else(|| bad("overlap-whitelist"))?;
    }
    Ok(data)
}

/// The scalar entries of a mapping (the environment).
fn string_map(map: &Map) -> BTreeMap<String, String> {
    map.iter()
        .filter_map(|(k, v)| match v {
            Node::Scalar(s) => Some((k.to_string(), s.value.to_string())),
            _ => None,
        })
        .collect()
}

/// REAPI platform properties: `OSFamily` from `build-os`, `ISA` from
/// `build-arch` (canonicalised as BuildStream does), host values by default.
fn platform(element: &Element, host: &HostPlatform) -> Result<BTreeMap<String, String>, BuildError> {
    let get = |key: &str| match element.sandbox.get(key) {
        Some(Node::Scalar(s)) => Some(s.value.to_string()),
        _ => None,
    };
    let os = get("build-os").unwrap_or_else(|| host.os.clone());
    let arch = match get("build-arch") {
        Some(arch) => canonicalize_arch(&arch)
            .ok_or_else(|| BuildError::Element { element: element.full_name.clone(), reason: format!("unknown build-arch '{arch}'") })?,
        None => host.arch.clone(),
    };
    Ok(BTreeMap::from([("ISA".to_string(), arch), ("OSFamily".to_string(), os)]))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::graph::{DepType, Dependency, ProjectSummary, SourceData};
    use crate::project::project::ProjectId;
    use crate::yaml::{FileId, Scalar, Seq, SourceMap, Span};

    fn span() -> Span {
        Span::synthetic(FileId(0))
    }

    fn scalar(text: &str) -> Node {
        Node::Scalar(Scalar { value: text.into(), span: span() })
    }

    fn map(entries: &[(&str, Node)]) -> Map {
        let mut map = Map::new(span());
        for (k, v) in entries {
            map.insert(*k, v.clone());
        }
        map
    }

    fn element(id: u32, name: &str, kind: &str, config: Map, deps: &[(u32, DepType)]) -> Element {
        Element {
            id: ElementId(id),
            name: name.into(),
            full_name: name.into(),
            kind: kind.into(),
            project: ProjectId(0),
            project_name: "proj".into(),
            first_pass: false,
            variables: vec![
                (Arc::from("build-root"), Arc::from(format!("/buildstream/proj/{name}").as_str())),
                (Arc::from("install-root"), Arc::from("/buildstream-install")),
            ]
            .into(),
            config: config.into(),
            environment: map(&[("PATH", scalar("/usr/bin:/bin"))]).into(),
            environment_nocache: vec![],
            public: Map::new(span()).into(),
            sandbox: map(&[("build-arch", scalar("x86_64")), ("build-os", scalar("linux"))]).into(),
            sources: vec![SourceData { kind: "local".into(), config: map(&[("path", scalar("files/src"))]), directory: None, provenance: None, span: span(), unique_key: None }],
            dependencies: deps
                .iter()
                .map(|(e, t)| Dependency { element: ElementId(*e), dep_type: *t, strict: false, configs: vec![], path: String::new(), span: span() })
                .collect(),
            span: span(),
            external_key: None,
        }
    }

    fn graph(elements: Vec<Element>, targets: Vec<ElementId>) -> Graph {
        let project = ProjectSummary {
            name: "proj".into(),
            directory: "/p".into(),
            aliases: Default::default(),
            fatal_warnings: vec![],
            junction: None,
            options: vec![],
        };
        Graph::new(elements, targets, vec![project], SourceMap::new())
    }

    fn keys(id: ElementId) -> Option<ArtifactKeys> {
        Some(ArtifactKeys { strong: format!("s{}", id.0), weak: format!("w{}", id.0) })
    }

    #[test]
    fn maps_core_kinds_onto_recipes_in_build_order() {
        let commands = |list: &[&str]| Node::Seq(Seq { items: list.iter().map(|c| scalar(c)).collect(), span: span() });
        // ids deliberately not in dependency order: 0 = app (manual) depends on 2 = base (import); 1 = all (stack).
        let g = graph(
            vec![
                element(0, "app.bst", "manual", map(&[("build-commands", commands(&["make"])), ("install-commands", commands(&["make install"])), ("configure-commands", commands(&["./configure"]))]), &[(2, DepType::Build)]),
                element(1, "all.bst", "stack", Map::new(span()), &[(0, DepType::All)]),
                element(2, "base.bst", "import", map(&[("target", scalar("/sysroot"))]), &[]),
            ],
            vec![ElementId(1)],
        );
        let host = HostPlatform { os: "linux".into(), arch: "x86-64".into() };
        let plan = plan_from_graph(&g, &g.targets, &host, &FetchedSources::default(), keys).unwrap();
        let names: Vec<_> = plan.elements().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["base.bst", "app.bst", "all.bst"]);
        assert_eq!(plan.elements()[1].build_deps, [0]);
        assert_eq!(plan.elements()[2].keys.strong, "s1");
        match &plan.elements()[0].recipe {
            Recipe::Import { sources, source, target } => {
                assert_eq!((source.as_str(), target.as_str()), ("/", "/sysroot"));
                assert_eq!(sources[0].path, Path::new("/p/files/src"));
            }
            other => panic!("{other:?}"),
        }
        match &plan.elements()[1].recipe {
            Recipe::Commands(recipe) => {
                assert_eq!(recipe.commands, ["./configure", "make", "make install"]);
                assert_eq!(recipe.build_root, "/buildstream/proj/app.bst");
                assert_eq!(recipe.platform["ISA"], "x86-64");
                assert_eq!(recipe.environment["PATH"], "/usr/bin:/bin");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plan.elements()[2].recipe, Recipe::Stack);
    }

    #[test]
    fn a_build_element_stages_dependencies_by_location_only_when_one_asks() {
        let deps = [(0, DepType::Build), (1, DepType::Build)];
        let plain = element(2, "m.bst", "manual", Map::new(span()), &deps);
        let mut located = element(3, "n.bst", "manual", Map::new(span()), &deps);
        located.dependencies[1].configs = vec![map(&[("location", scalar("/sysroot"))])];
        let stack = |id, name| element(id, name, "stack", Map::new(span()), &[]);
        let g = graph(vec![stack(0, "tools.bst"), stack(1, "target.bst"), plain, located], vec![ElementId(2), ElementId(3)]);
        let host = HostPlatform { os: "linux".into(), arch: "x86-64".into() };
        let plan = plan_from_graph(&g, &g.targets, &host, &FetchedSources::default(), keys).unwrap();
        let layouts: Vec<_> = plan.elements()[2..]
            .iter()
            .map(|e| match &e.recipe {
                Recipe::Commands(recipe) => recipe.layout.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(layouts, [vec![], vec![("/".to_string(), vec![0]), ("/sysroot".to_string(), vec![1])]]);
    }

    #[test]
    fn script_stages_dependencies_by_location_and_runs_in_cwd() {
        let commands = Node::Seq(Seq { items: vec![scalar("make -C /sysroot")], span: span() });
        let mut script = element(2, "s.bst", "script", map(&[("commands", commands)]), &[(0, DepType::Build), (1, DepType::Build)]);
        script.variables.insert("cwd", "/work");
        script.dependencies[1].configs = vec![map(&[("location", scalar("/sysroot"))])];
        let g = graph(
            vec![element(0, "tools.bst", "stack", Map::new(span()), &[]), element(1, "target.bst", "stack", Map::new(span()), &[]), script],
            vec![ElementId(2)],
        );
        let host = HostPlatform { os: "linux".into(), arch: "x86-64".into() };
        let plan = plan_from_graph(&g, &g.targets, &host, &FetchedSources::default(), keys).unwrap();
        match &plan.elements()[2].recipe {
            Recipe::Commands(recipe) => {
                assert_eq!(recipe.build_root, "/work");
                assert_eq!(recipe.commands, ["make -C /sysroot"]);
                assert!(recipe.sources.is_empty());
                assert_eq!(recipe.layout, [("/".to_string(), vec![0]), ("/sysroot".to_string(), vec![1])]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn compose_reads_its_filter_and_dependencies_their_split_rules() {
        let list = |items: &[&str]| Node::Seq(Seq { items: items.iter().map(|c| scalar(c)).collect(), span: span() });
        let mut lib = element(0, "lib.bst", "stack", Map::new(span()), &[]);
        let rules = map(&[("devel", list(&["/usr/include", "/usr/lib/*.a"])), ("runtime", list(&["/usr/lib/*.so"]))]);
        lib.public = map(&[("bst", Node::Map(map(&[("split-rules", Node::Map(rules)), ("integration-commands", list(&["ldconfig"]))])))]).into();
        let compose = element(1, "c.bst", "compose", map(&[("include", list(&["runtime"])), ("include-orphans", scalar("False")), ("integrate", scalar("False"))]), &[(0, DepType::Build)]);
        let g = graph(vec![lib, compose], vec![ElementId(1)]);
        let host = HostPlatform { os: "linux".into(), arch: "x86-64".into() };
        let plan = plan_from_graph(&g, &g.targets, &host, &FetchedSources::default(), keys).unwrap();
        assert_eq!(plan.elements()[0].public.split_rules.domains["devel"], ["/usr/include", "/usr/lib/*.a"]);
        assert_eq!(plan.elements()[0].public.integration_commands, ["ldconfig"]);
        assert_eq!(
            plan.elements()[1].recipe,
            Recipe::Compose(ComposeRecipe {
                filter: SplitFilter { include: vec!["runtime".into()], exclude: vec![], include_orphans: false },
                integrate: false,
                environment: BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]),
                platform: BTreeMap::from([("ISA".to_string(), "x86-64".to_string()), ("OSFamily".to_string(), "linux".to_string())]),
            })
        );
    }

    #[test]
    fn tar_and_remote_sources_stage_the_fetched_trees_in_order() {
        let mut app = element(0, "app.bst", "import", Map::new(span()), &[]);
        let tar = |kind: &str, directory: Option<&str>| SourceData {
            kind: kind.into(),
            config: map(&[("url", scalar("upstream:a.tar.gz")), ("ref", scalar("00"))]),
            directory: directory.map(str::to_string),
            provenance: None,
            span: span(),
            unique_key: None,
        };
        app.sources.push(tar("tar", Some("vendor")));
        app.sources.push(tar("remote", None));
        let g = graph(vec![app], vec![ElementId(0)]);
        let host = HostPlatform { os: "linux".into(), arch: "x86-64".into() };
        // Not fetched: an error naming the element and the source.
        let err = plan_from_graph(&g, &g.targets, &host, &FetchedSources::default(), keys).unwrap_err().to_string();
        assert!(err.contains("app.bst") && err.contains("tar source #2"), "{err}");
        let mut fetched = FetchedSources::default();
        fetched.insert(ElementId(0), 1, "/cache/sources/staged/tar-1".into());
        fetched.insert(ElementId(0), 2, "/cache/sources/staged/remote-2".into());
        let plan = plan_from_graph(&g, &g.targets, &host, &fetched, keys).unwrap();
        let Recipe::Import { sources, .. } = &plan.elements()[0].recipe else { panic!("not an import") };
        let staged: Vec<(&Path, &str)> = sources.iter().map(|s| (s.path.as_path(), s.directory.as_str())).collect();
        assert_eq!(
            staged,
            [
                (Path::new("/p/files/src"), ""),
                (Path::new("/cache/sources/staged/tar-1"), "vendor"),
                (Path::new("/cache/sources/staged/remote-2"), ""),
            ]
        );
    }

    #[test]
    fn unsupported_kinds_and_sources_are_errors_naming_the_element() {
        let host = HostPlatform { os: "linux".into(), arch: "x86-64".into() };
        let g = graph(vec![element(0, "f.bst", "autotools", Map::new(span()), &[])], vec![ElementId(0)]);
        let err = plan_from_graph(&g, &g.targets, &host, &FetchedSources::default(), keys).unwrap_err();
        assert!(err.to_string().contains("f.bst") && err.to_string().contains("autotools"), "{err}");
        // A filter needs exactly one build dependency.
        let g = graph(vec![element(0, "f.bst", "filter", Map::new(span()), &[])], vec![ElementId(0)]);
        assert!(plan_from_graph(&g, &g.targets, &host, &FetchedSources::default(), keys).unwrap_err().to_string().contains("exactly one"));
        let mut remote = element(0, "r.bst", "import", Map::new(span()), &[]);
        remote.sources[0].kind = "git".into();
        let g = graph(vec![remote], vec![ElementId(0)]);
        assert!(plan_from_graph(&g, &g.targets, &host, &FetchedSources::default(), keys).unwrap_err().to_string().contains("git"));
    }
}
