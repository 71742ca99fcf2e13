//! Per-kind plugin facts: `get_unique_key()`, `BST_RUN_COMMANDS`,
//! `BST_STRICT_REBUILD` and `BST_ARTIFACT_VERSION` of the core element kinds
//! (spec §6).
//!
//! It owns [`PluginKey`]. Key decision: each kind's key is rebuilt from the
//! composed, expanded `config` exactly as the Python plugin's `configure()`
//! and `get_unique_key()` do (including quirks such as the misspelt
//! `digest-enviornment` and `notparallel` truthiness); a kind that is not
//! core is refused rather than guessed.

use std::collections::BTreeMap;

use super::canonical::{write_canonical, write_object};
use super::element_input::ElementInput;
use super::node_value::write_node;
use super::value::Value;
use super::value_read::{node_bool, node_str, node_str_list};
use super::CacheKeyError;
use crate::graph::ExternalKey;
use crate::yaml::{Map, Node};

/// What the element kind contributes to the key dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginKey {
    /// `element-plugin-key`.
    pub key: Value,
    /// `BST_RUN_COMMANDS` for this instance (adds `sandbox` and `environment`).
    pub run_commands: bool,
    /// `BST_STRICT_REBUILD` (weak dependency entries carry keys).
    pub strict_rebuild: bool,
    /// `BST_ARTIFACT_VERSION`.
    pub artifact_version: i64,
}

impl PluginKey {
    /// The plugin facts for one element.
    pub fn for_element(input: &ElementInput) -> Result<Self, CacheKeyError> {
        let name = &*input.full_name;
        let config = &*input.config;
        let plain = |key: Value, run_commands: bool| PluginKey {
            key,
            run_commands,
            strict_rebuild: false,
            artifact_version: 0,
        };
        match &*input.kind {
            "import" => {
                let source = config_str(name, config, "source", "/")?;
                let target = config_str(name, config, "target", "/")?;
                Ok(plain(mapping([("source", source.into()), ("target", target.into())]), false))
            }
            "stack" => Ok(plain(Value::Int(1), false)),
            "junction" | "link" => Ok(plain(Value::Int(1), true)),
            "compose" => {
                let integrate = config_bool(name, config, "integrate", true)?;
                let include = sorted(config_list(name, config, "include")?);
                let exclude = sorted(config_list(name, config, "exclude")?);
                let orphans = config_bool(name, config, "include-orphans", true)?;
                let mut key = mapping([
                    ("integrate", integrate.into()),
                    ("include", include.into()),
                    ("orphans", orphans.into()),
                ]);
                if !exclude.is_empty() {
                    insert(&mut key, "exclude", exclude.into());
                }
                Ok(PluginKey { key, run_commands: integrate, strict_rebuild: true, artifact_version: 0 })
            }
            "filter" => {
                let include = sorted(config_list(name, config, "include")?);
                let exclude = sorted(config_list(name, config, "exclude")?);
                let orphans = config_bool(name, config, "include-orphans", false)?;
                let key =
                    mapping([("include", include.into()), ("exclude", exclude.into()), ("orphans", orphans.into())]);
                Ok(PluginKey { key, run_commands: false, strict_rebuild: true, artifact_version: 1 })
            }
            "manual" => Ok(plain(build_element_key(input)?, true)),
            "script" => Ok(PluginKey {
                key: script_element_key(input)?,
                run_commands: true,
                strict_rebuild: true,
                artifact_version: 0,
            }),
            other => match input.external.as_deref() {
                Some(ExternalKey::BuildElement) => Ok(plain(build_element_key(input)?, true)),
                Some(ExternalKey::Plugin { unique_key, run_commands, strict_rebuild, artifact_version }) => Ok(PluginKey {
                    key: Value::from(unique_key),
                    run_commands: *run_commands,
                    strict_rebuild: *strict_rebuild,
                    artifact_version: *artifact_version,
                }),
                None => Err(CacheKeyError::UnsupportedElementKind { element: name.to_owned(), kind: other.to_owned() }),
            },
        }
    }
}

/// A member of a key that is written from a configuration node as it is,
/// or from a key value.
enum Member<'a> {
    Node(&'a Node),
    Value(Value),
}

/// BuildElement's key (spec §6.1), as canonical text ([`Value::Raw`]):
/// every element of the kind writes its command lists, often long and
/// distinct per element, so they are written in place from the
/// configuration instead of being copied into a new mapping first.
fn build_element_key(input: &ElementInput) -> Result<Value, CacheKeyError> {
    let name = &*input.full_name;
    let mut members: Vec<(&str, Member)> = Vec::with_capacity(8);
    for step in ["configure-commands", "build-commands", "install-commands", "strip-commands"] {
        members.push((step, config_list_member(name, &input.config, step)?));
    }
    if let Some(subdir) = input.variables.get("command-subdir").filter(|v| !v.is_empty()) {
        members.push(("command-subdir", Member::Value(subdir.into())));
    }
    if input.variables.get("notparallel").is_some_and(|v| !v.is_empty()) {
        members.push(("notparallel", Member::Value(Value::Bool(true))));
    }
    // Without dependency configuration every dependency is at `/`: no
    // `layout` and no `digest-enviornment`.
    if input.dependencies.iter().any(|dep| !dep.configs.is_empty()) {
        let (layout, digest_environment) = build_element_layout(input)?;
        members.extend(layout.map(|layout| ("layout", Member::Value(layout))));
        members.extend(digest_environment.map(|digest| ("digest-enviornment", Member::Value(digest))));
    }
    // Members in code-point order, as `ujson.dumps(sort_keys=True)` writes them.
    members.sort_unstable_by_key(|(key, _)| *key);
    let mut text = String::with_capacity(1024);
    write_object(members.iter().map(|(key, member)| (key, member)), &mut text, |member, out| match member {
        Member::Node(node) => write_node(node, out),
        Member::Value(value) => write_canonical(value, out),
    });
    Ok(Value::Raw(text))
}

/// BuildElement's `layout` and `digest-enviornment` members (each `None`
/// when BuildStream leaves it out) from the dependency configurations.
fn build_element_layout(input: &ElementInput) -> Result<(Option<Value>, Option<Value>), CacheKeyError> {
    let name = &*input.full_name;
    let mut layout: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut digest_environment: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, config) in dependency_configurations(input) {
        let mut location = "/".to_owned();
        if let Some(config) = config.filter(|c| !c.is_empty()) {
            if let Some(value) = config.get("location") {
                location = node_str(name, "dependency config location", value)?.to_owned();
            }
            if let Some(value) = config.get("digest-environment") {
                let variable = node_str(name, "dependency config digest-environment", value)?.to_owned();
                digest_environment.entry(variable).or_default().push(path.to_owned());
            }
        }
        layout.entry(location).or_default().push(path.to_owned());
    }
    // Python: `any(location for location in layout if location != "/")`, so an
    // empty location string does not count.
    let layout = layout.keys().any(|location| location != "/" && !location.is_empty()).then(|| paths_by_name(layout));
    let digest_environment = (!digest_environment.is_empty()).then(|| paths_by_name(digest_environment));
    Ok((layout, digest_environment))
}

/// ScriptElement's key for the core `script` kind (spec §6.2).
fn script_element_key(input: &ElementInput) -> Result<Value, CacheKeyError> {
    let name = &*input.full_name;
    let commands = config_list(name, &input.config, "commands")?;
    let variable_or_root = |variable: &str| input.variables.get(variable).filter(|v| !v.is_empty()).unwrap_or("/").to_owned();
    let root_read_only = config_bool(name, &input.config, "root-read-only", false)?;
    let mut layout: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, config) in dependency_configurations(input) {
        let location = match config.and_then(|c| c.get("location")) {
            Some(value) => node_str(name, "dependency config location", value)?,
            None => "/",
        };
        layout.entry(location.to_owned()).or_default().push(path.to_owned());
    }
    Ok(mapping([
        ("commands", mapping([("commands", commands.into())])),
        ("cwd", variable_or_root("cwd").into()),
        ("install-root", variable_or_root("install-root").into()),
        ("layout", paths_by_name(layout)),
        ("root-read-only", root_read_only.into()),
    ]))
}

/// The `(path, config)` pairs `configure_dependencies()` receives: build
/// dependencies in sorted order, one pair per config (or one with `None`).
fn dependency_configurations<'a>(input: &'a ElementInput) -> Vec<(&'a str, Option<&'a Map>)> {
    let mut pairs = Vec::new();
    for dep in input.dependencies.iter().filter(|d| d.build) {
        if dep.configs.is_empty() {
            pairs.push((&*dep.path, None));
        } else {
            pairs.extend(dep.configs.iter().map(|config| (&*dep.path, Some(config))));
        }
    }
    pairs
}

fn paths_by_name(groups: BTreeMap<String, Vec<String>>) -> Value {
    groups.into_iter().map(|(name, paths)| (name, Value::from(paths))).collect()
}

fn mapping<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    pairs.into_iter().collect()
}

fn insert(map: &mut Value, key: &str, value: Value) {
    if let Value::Map(map) = map {
        std::sync::Arc::make_mut(map).insert(key.into(), value);
    }
}

fn sorted(mut items: Vec<String>) -> Vec<String> {
    items.sort();
    items
}

fn config_str(element: &str, config: &Map, key: &str, default: &str) -> Result<String, CacheKeyError> {
    config.get(key).map_or(Ok(default), |v| node_str(element, key, v)).map(str::to_owned)
}

fn config_bool(element: &str, config: &Map, key: &str, default: bool) -> Result<bool, CacheKeyError> {
    config.get(key).map_or(Ok(default), |v| node_bool(element, key, v))
}

/// A list of strings of the configuration as a key member: the configured
/// list itself, written as it is, once it is known to hold only strings.
fn config_list_member<'a>(element: &str, config: &'a Map, key: &str) -> Result<Member<'a>, CacheKeyError> {
    match config.get(key) {
        Some(list @ Node::Seq(seq)) if seq.items.iter().all(|item| matches!(item, Node::Scalar(_))) => Ok(Member::Node(list)),
        _ => Ok(Member::Value(config_list(element, config, key)?.into())),
    }
}

fn config_list(element: &str, config: &Map, key: &str) -> Result<Vec<String>, CacheKeyError> {
    config.get(key).map_or_else(|| Ok(Vec::new()), |v| node_str_list(element, key, v))
}

#[cfg(test)]
mod tests {
    use super::super::canonical::to_canonical;
    use super::super::element_input::DependencyInput;
    use super::super::node_value::value_to_map;
    use super::*;
    use std::borrow::Cow;

    fn element(kind: &str, config: Value) -> ElementInput<'static> {
        let config = Cow::Owned(value_to_map(&config));
        ElementInput { kind: kind.to_owned().into(), full_name: "e.bst".into(), config, ..Default::default() }
    }

    fn dep(path: &str, build: bool, configs: Vec<Value>) -> DependencyInput<'static> {
        let configs = Cow::Owned(configs.iter().map(value_to_map).collect());
        DependencyInput { path: path.to_owned().into(), build, runtime: true, configs, ..Default::default() }
    }

    fn key_text(input: &ElementInput) -> String {
        to_canonical(&PluginKey::for_element(input).unwrap().key)
    }

    #[test]
    fn import_defaults_and_overrides() {
        assert_eq!(key_text(&element("import", Value::map())), r#"{"source":"/","target":"/"}"#);
        let config = mapping([("target", "/opt".into())]);
        assert_eq!(key_text(&element("import", config)), r#"{"source":"/","target":"/opt"}"#);
    }

    #[test]
    fn compose_exclude_only_when_non_empty_and_integrate_decides_commands() {
        let config = mapping([
            ("integrate", "False".into()),
            ("include", vec!["runtime".to_owned(), "devel".to_owned()].into()),
            ("exclude", Value::List(vec![])),
            ("include-orphans", "True".into()),
        ]);
        let input = element("compose", config);
        let key = PluginKey::for_element(&input).unwrap();
        assert_eq!(to_canonical(&key.key), r#"{"include":["devel","runtime"],"integrate":false,"orphans":true}"#);
        assert!(!key.run_commands);
        assert!(key.strict_rebuild);
        let with_exclude = element("compose", mapping([("exclude", vec!["debug".to_owned()].into())]));
        assert_eq!(
            key_text(&with_exclude),
            r#"{"exclude":["debug"],"include":[],"integrate":true,"orphans":true}"#
        );
    }

    #[test]
    fn filter_is_version_one_and_ignores_pass_integration() {
        let input = element("filter", mapping([("pass-integration", "True".into())]));
        let key = PluginKey::for_element(&input).unwrap();
        assert_eq!(to_canonical(&key.key), r#"{"exclude":[],"include":[],"orphans":false}"#);
        assert_eq!(key.artifact_version, 1);
    }

    #[test]
    fn manual_layout_and_quirks() {
        let mut input = element("manual", mapping([("build-commands", vec!["make".to_owned()].into())]));
        input.variables.insert("notparallel", "false");
        input.variables.insert("command-subdir", "");
        let opt = mapping([("location", "/opt".into()), ("digest-environment", "D".into())]);
        input.dependencies = vec![
            dep("a.bst", true, vec![]),
            dep("j.bst:b.bst", true, vec![opt, mapping([("location", "/".into())])]),
            dep("run.bst", false, vec![]),
        ];
        assert_eq!(
            key_text(&input),
            concat!(
                r#"{"build-commands":["make"],"configure-commands":[],"digest-enviornment":{"D":["j.bst:b.bst"]},"#,
                r#""install-commands":[],"layout":{"/":["a.bst","j.bst:b.bst"],"/opt":["j.bst:b.bst"]},"#,
                r#""notparallel":true,"strip-commands":[]}"#
            )
        );
    }

    #[test]
    fn manual_layout_absent_when_everything_is_at_root() {
        let mut input = element("manual", Value::map());
        input.dependencies = vec![dep("a.bst", true, vec![mapping([("location", "/".into())])])];
        assert!(!to_canonical(&PluginKey::for_element(&input).unwrap().key).contains("layout"));
    }

    #[test]
    fn script_layout_always_present() {
        let mut input = element("script", mapping([("commands", vec!["echo \"Hello World !\"".to_owned()].into())]));
        input.variables.insert("install-root", "/buildstream-install");
        input.variables.insert("cwd", "");
        assert_eq!(
            key_text(&input),
            r#"{"commands":{"commands":["echo \"Hello World !\""]},"cwd":"/","install-root":"/buildstream-install","layout":{},"root-read-only":false}"#
        );
        input.dependencies = vec![
            dep("elements/base.bst", true, vec![]),
            dep("elements/build.bst", true, vec![mapping([("location", "/sysroot".into())])]),
        ];
        assert!(key_text(&input).contains(r#""layout":{"/":["elements/base.bst"],"/sysroot":["elements/build.bst"]}"#));
    }

    #[test]
    fn external_kinds_are_refused() {
        assert!(matches!(
            PluginKey::for_element(&element("autotools", Value::map())),
            Err(CacheKeyError::UnsupportedElementKind { .. })
        ));
    }
}
