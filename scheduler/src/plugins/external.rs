//! External plugins: separate executables speaking Weir's line-delimited JSON
//! protocol over stdin/stdout (see `docs/plugin-protocol.md`).
//!
//! Key decision: one process per (origin directory, kind) for the whole run,
//! started on first use; each request is one JSON line and gets exactly one
//! JSON line back. Plugins exchange plain data only.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::graph::ExternalKey;
use crate::yaml::{LoadError, LoadResult, Map, Node, Scalar, Seq, Span};

/// The protocol version this Weir speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// A running external plugin.
#[derive(Debug)]
pub struct ExternalPlugin {
    /// Kind name.
    pub kind: String,
    /// The executable.
    pub path: PathBuf,
    /// Default YAML the plugin declared (as a mapping).
    pub defaults: serde_json::Map<String, Value>,
    /// Whether build dependencies may carry `config`.
    pub dependency_config: bool,
    /// How its elements' cache keys are made (`hello` reply `cache-key`).
    pub cache_key: CacheKeyKind,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// How a plugin's elements are keyed, as its `hello` reply declares.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum CacheKeyKind {
    /// Nothing declared: keys of its elements cannot be computed.
    #[default]
    Unknown,
    /// `"build-element"`: a BuildElement kind, keyed (and built) like `manual`.
    BuildElement,
    /// `"plugin"`: each `configure` reply carries the element's `unique-key`.
    Plugin {
        /// `run-commands` (`BST_RUN_COMMANDS`, default true).
        run_commands: bool,
        /// `strict-rebuild` (`BST_STRICT_REBUILD`, default false).
        strict_rebuild: bool,
        /// `artifact-version` (`BST_ARTIFACT_VERSION`, default 0).
        artifact_version: i64,
    },
}

/// What a plugin said about one element.
#[derive(Debug, Default)]
pub struct ConfigureReply {
    /// Messages to show the user (stderr).
    pub messages: Vec<String>,
    /// The element's `unique-key`, for plugins that compute keys.
    pub unique_key: Option<Value>,
}

fn plugin_error(kind: &str, reason: &str, at: Option<Span>, message: String) -> LoadError {
    LoadError::other("PLUGIN", reason, at, format!("{kind}: {message}"))
}

impl ExternalPlugin {
    /// Starts `dir/kind` and performs the `hello` exchange.
    pub fn start(dir: &Path, kind: &str, namespace: &str, at: Span) -> LoadResult<ExternalPlugin> {
        let path = dir.join(kind);
        if !path.is_file() {
            let python = dir.join(format!("{kind}.py"));
            if python.is_file() {
                return Err(plugin_error(
                    kind,
                    "python-plugin-unsupported",
                    Some(at),
                    format!(
                        "'{}' is a BuildStream Python plugin; Weir runs plugins as executables speaking its JSON protocol (docs/plugin-protocol.md): provide an executable '{}'",
                        python.display(),
                        path.display()
                    ),
                ));
            }
            return Err(LoadError::other(
                "PLUGIN",
                "plugin-not-found",
                Some(at),
                format!("No {namespace} plugin registered for kind '{kind}' (expected an executable at '{}')", path.display()),
            ));
        }
        let mut child = Command::new(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| plugin_error(kind, "plugin-start-failed", Some(at), format!("cannot run '{}': {e}", path.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(plugin_error(kind, "plugin-start-failed", Some(at), "no pipes to the plugin".into()));
        };
        let mut plugin = ExternalPlugin {
            kind: kind.to_string(),
            path,
            defaults: serde_json::Map::new(),
            dependency_config: false,
            cache_key: CacheKeyKind::Unknown,
            child,
            stdin,
            stdout: BufReader::new(stdout),
        };
        let reply = plugin.request(
            &json!({"request": "hello", "protocol": PROTOCOL_VERSION, "type": namespace, "kind": kind}),
            at,
        )?;
        let version = reply.get("protocol").and_then(Value::as_u64).unwrap_or(0);
        if version != PROTOCOL_VERSION {
            return Err(plugin_error(kind, "protocol-mismatch", Some(at), format!("plugin speaks protocol {version}, Weir speaks {PROTOCOL_VERSION}")));
        }
        if let Some(Value::Object(defaults)) = reply.get("defaults") {
            plugin.defaults = defaults.clone();
        }
        plugin.dependency_config = reply.get("dependency-config").and_then(Value::as_bool).unwrap_or(false);
        plugin.cache_key = match reply.get("cache-key").and_then(Value::as_str) {
            None => CacheKeyKind::Unknown,
            Some("build-element") => CacheKeyKind::BuildElement,
            Some("plugin") => CacheKeyKind::Plugin {
                run_commands: reply.get("run-commands").and_then(Value::as_bool).unwrap_or(true),
                strict_rebuild: reply.get("strict-rebuild").and_then(Value::as_bool).unwrap_or(false),
                artifact_version: reply.get("artifact-version").and_then(Value::as_i64).unwrap_or(0),
            },
            Some(other) => {
                return Err(plugin_error(
                    kind,
                    "plugin-protocol-error",
                    Some(at),
                    format!("unknown cache-key '{other}' (expected 'build-element' or 'plugin')"),
                ))
            }
        };
        Ok(plugin)
    }

    /// How the element the plugin answered `reply` for is keyed; a
    /// `plugin`-keyed kind whose reply has no `unique-key` gives `None`.
    pub fn external_key(&self, reply: &ConfigureReply) -> Option<ExternalKey> {
        match &self.cache_key {
            CacheKeyKind::Unknown => None,
            CacheKeyKind::BuildElement => Some(ExternalKey::BuildElement),
            CacheKeyKind::Plugin { run_commands, strict_rebuild, artifact_version } => {
                reply.unique_key.clone().map(|unique_key| ExternalKey::Plugin {
                    unique_key,
                    run_commands: *run_commands,
                    strict_rebuild: *strict_rebuild,
                    artifact_version: *artifact_version,
                })
            }
        }
    }

    fn request(&mut self, message: &Value, at: Span) -> LoadResult<Value> {
        let kind = self.kind.clone();
        let broken = |e: String| plugin_error(&kind, "plugin-protocol-error", Some(at), e);
        writeln!(self.stdin, "{message}").map_err(|e| broken(e.to_string()))?;
        self.stdin.flush().map_err(|e| broken(e.to_string()))?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(|e| broken(e.to_string()))?;
        if line.trim().is_empty() {
            return Err(broken("the plugin closed its output".into()));
        }
        serde_json::from_str(&line).map_err(|e| broken(format!("bad reply: {e}")))
    }

    /// The plugin's default YAML as a node tree attributed to `span`.
    pub fn defaults_map(&self, span: Span) -> Map {
        json_to_map(&self.defaults, span)
    }

    /// Sends one element's expanded configuration (`configure`). Errors the
    /// plugin reports are located with the reply's `path` inside `config`,
    /// or at `element_span`.
    pub fn configure(&mut self, element: &str, config: &Map, element_span: Span) -> LoadResult<ConfigureReply> {
        let reply = self.request(
            &json!({"request": "configure", "element": element, "config": map_to_json(config)}),
            element_span,
        )?;
        self.reply(reply, Some(config), element_span)
    }

    /// Delivers the configurations of build dependencies (`configure-dependencies`).
    pub fn configure_dependencies(
        &mut self,
        element: &str,
        dependencies: &[(String, Vec<Map>)],
        element_span: Span,
    ) -> LoadResult<ConfigureReply> {
        let deps: Vec<Value> = dependencies
            .iter()
            .map(|(name, configs)| json!({"name": name, "config": configs.iter().map(map_to_json).collect::<Vec<_>>()}))
            .collect();
        let reply = self.request(
            &json!({"request": "configure-dependencies", "element": element, "dependencies": deps}),
            element_span,
        )?;
        self.reply(reply, None, element_span)
    }

    fn reply(&self, reply: Value, config: Option<&Map>, element_span: Span) -> LoadResult<ConfigureReply> {
        let messages = reply
            .get("messages")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let Some(error) = reply.get("error") else {
            return Ok(ConfigureReply { messages, unique_key: reply.get("unique-key").cloned() });
        };
        let text = |k: &str| error.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let path: Vec<String> = error
            .get("path")
            .and_then(Value::as_array)
            .map(|p| p.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let span = config.and_then(|c| locate(c, &path)).unwrap_or(element_span);
        let reason = text("reason");
        let message = text("message");
        Err(if text("domain") == "LOAD" {
            let reason = crate::plugins::reason_from_name(&reason).unwrap_or(crate::yaml::LoadErrorReason::InvalidData);
            LoadError::at(span, reason, message)
        } else {
            LoadError::other("PLUGIN", reason, Some(span), message)
        })
    }
}

impl Drop for ExternalPlugin {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"request": "bye"}));
        let _ = self.child.wait();
    }
}

/// The span of the node at `path` inside `map` (the mapping itself for a missing key).
fn locate(map: &Map, path: &[String]) -> Option<Span> {
    let mut current = map;
    for (i, key) in path.iter().enumerate() {
        match current.get(key) {
            Some(Node::Map(m)) => current = m,
            Some(other) if i + 1 == path.len() => return Some(other.span()),
            _ => return Some(current.span),
        }
    }
    Some(current.span)
}

/// A mapping as JSON (scalars are strings).
pub fn map_to_json(map: &Map) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.to_string(), node_to_json(v))).collect())
}

fn node_to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) => Value::String(s.value.to_string()),
        Node::Seq(s) => Value::Array(s.items.iter().map(node_to_json).collect()),
        Node::Map(m) => map_to_json(m),
    }
}

fn json_to_node(value: &Value, span: Span) -> Node {
    match value {
        Value::Object(o) => Node::Map(json_to_map(o, span)),
        Value::Array(a) => Node::Seq(Seq { items: a.iter().map(|v| json_to_node(v, span)).collect(), span }),
        Value::String(s) => Node::Scalar(Scalar { value: Arc::from(s.as_str()), span }),
        Value::Bool(b) => Node::scalar(if *b { "True" } else { "False" }, span),
        Value::Null => Node::scalar("", span),
        Value::Number(n) => Node::scalar(n.to_string(), span),
    }
}

fn json_to_map(object: &serde_json::Map<String, Value>, span: Span) -> Map {
    let mut map = Map::new(span);
    for (k, v) in object {
        map.insert(k.as_str(), json_to_node(v, span));
    }
    map
}
