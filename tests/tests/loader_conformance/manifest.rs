//! The conformance manifest (`../shared/conformance/loader-cases.yaml`) and our
//! own skip list (`tests/conformance/loader-skips.yaml`) as typed data.
//!
//! Key decision: expected values stay `serde_yaml_ng::Value` here; turning them
//! into BuildStream's printed form (every scalar a string) is the checker's job,
//! so the manifest is read exactly as written and unknown keys are tolerated
//! (the schema is documented in the manifest's header, and new optional keys
//! must not break the runner).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::harness_error::HarnessError;

/// The whole manifest.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// Directory of the projects, relative to the manifest's directory.
    pub data_root: String,
    /// Plugin stub descriptions, by stub name (the runner only checks that
    /// every stub a case names is described).
    #[serde(default)]
    pub plugin_stubs: BTreeMap<String, Value>,
    /// Every case.
    pub cases: Vec<Case>,
    /// Upstream tests the manifest could not convert, each with its reason.
    #[serde(default)]
    pub skipped: Vec<ManifestSkip>,
}

/// An upstream test the manifest itself skips.
#[derive(Debug, Deserialize)]
pub struct ManifestSkip {
    /// The originating pytest node.
    pub source: String,
    /// Why it is not a case.
    pub reason: String,
}

/// Faked host identity.
#[derive(Debug, Default, Deserialize)]
pub struct Host {
    /// `uname -m` value.
    pub machine: Option<String>,
    /// `uname -s` value.
    pub system: Option<String>,
}

/// One conformance case.
#[derive(Debug, Deserialize)]
pub struct Case {
    /// Unique id.
    pub id: String,
    /// Project directory relative to the data root.
    pub project: String,
    /// Working directory relative to the project.
    pub cwd: Option<String>,
    /// Faked host identity.
    pub host: Option<Host>,
    /// User configuration in effect.
    pub user_config: Option<Value>,
    /// Stub plugins the project needs.
    #[serde(default)]
    pub plugin_stubs: Vec<String>,
    /// The command.
    pub command: Command,
    /// What BuildStream answered.
    pub expect: Expect,
    /// How a generated project was produced (names symlinks to restore).
    pub generated_from: Option<String>,
}

/// The command of a case.
#[derive(Debug, Deserialize)]
pub struct Command {
    /// `show`, `build` or `workspace list`.
    pub verb: String,
    /// `project-load` for `workspace list`.
    pub action: Option<String>,
    /// The exact bst arguments (global options first).
    pub argv: Vec<String>,
}

impl Command {
    /// Whether the case only loads project.conf (`workspace list`), which
    /// Weir does with `weir project show`.
    pub fn is_project_load(&self) -> bool {
        self.action.as_deref() == Some("project-load") || self.verb == "workspace list"
    }
}

/// One `{of, path, equals|present|absent, as_bool}` check.
#[derive(Debug, Clone, Deserialize)]
pub struct Check {
    /// Which printed mapping: vars, config, public or env.
    pub of: String,
    /// Keys and indices from the top of that mapping.
    pub path: Vec<PathStep>,
    /// Expected value at the path.
    pub equals: Option<Value>,
    /// The path must exist.
    #[serde(default)]
    pub present: bool,
    /// The path must not exist.
    #[serde(default)]
    pub absent: bool,
    /// Compare as booleans (BuildStream's `as_bool`).
    #[serde(default)]
    pub as_bool: bool,
}

/// One step of a check path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PathStep {
    /// A sequence index.
    Index(usize),
    /// A mapping key.
    Key(String),
}

impl std::fmt::Display for PathStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathStep::Index(i) => write!(f, "[{i}]"),
            PathStep::Key(k) => write!(f, ".{k}"),
        }
    }
}

/// The expected outcome of a case.
#[derive(Debug, Default, Deserialize)]
pub struct Expect {
    /// `ok` or `error`.
    pub result: String,
    /// Error domain.
    pub domain: Option<String>,
    /// Error reason (null = any).
    pub reason: Option<String>,
    /// Substrings of the error report / stderr.
    #[serde(default)]
    pub stderr_contains: Vec<String>,
    /// Substrings that must not appear in the error report / stderr.
    #[serde(default)]
    pub stderr_excludes: Vec<String>,
    /// Substrings of the error message.
    #[serde(default)]
    pub message_contains: Vec<String>,
    /// Exact ordered `%{name}` lines.
    pub elements: Option<Vec<String>>,
    /// Names that must be shown.
    #[serde(default)]
    pub elements_include: Vec<String>,
    /// Names that must not be shown.
    #[serde(default)]
    pub elements_exclude: Vec<String>,
    /// Exact stdout.
    pub output: Option<String>,
    /// Exact stdout lines.
    pub output_lines: Option<Vec<String>>,
    /// Checks on the printed YAML of the single shown element.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Checks per element for multi-element output.
    #[serde(default)]
    pub per_element: BTreeMap<String, Vec<Check>>,
    /// Order of the element groups in the output.
    #[serde(default)]
    pub per_element_order: Vec<String>,
    /// Number of dependency entries with a non-empty config, per element.
    #[serde(default)]
    pub dependency_configs: BTreeMap<String, u64>,
    /// Another case whose output this one's must differ from.
    pub differs_from: Option<String>,
    /// Files that are in the checkout of the target.
    #[serde(default)]
    pub checkout_present: Vec<String>,
    /// Files that are not in the checkout of the target.
    #[serde(default)]
    pub checkout_absent: Vec<String>,
    /// Exact checkout contents per element.
    #[serde(default)]
    pub checkout_exact: BTreeMap<String, Vec<String>>,
    /// Expected expanded sources per element.
    #[serde(default)]
    pub sources: BTreeMap<String, Value>,
}

/// One entry of our own skip list.
#[derive(Debug, Deserialize)]
pub struct OwnSkip {
    /// The case id.
    pub id: String,
    /// Why we skip it.
    pub reason: String,
}

impl Manifest {
    /// Reads and parses the manifest file.
    pub fn load(path: &Path) -> Result<Manifest, HarnessError> {
        let text = std::fs::read_to_string(path).map_err(|source| HarnessError::Read { path: path.to_path_buf(), source })?;
        serde_yaml_ng::from_str(&text).map_err(|source| HarnessError::Parse { path: path.to_path_buf(), source })
    }
}

/// Reads our skip list; a missing file means no skips.
pub fn load_own_skips(path: &Path) -> Result<Vec<OwnSkip>, HarnessError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(HarnessError::Read { path: path.to_path_buf(), source }),
    };
    let skips: Option<Vec<OwnSkip>> =
        serde_yaml_ng::from_str(&text).map_err(|source| HarnessError::Parse { path: path.to_path_buf(), source })?;
    Ok(skips.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_case_with_checks_and_mixed_paths() {
        let text = r#"
data_root: data
cases:
  - id: a/b
    project: format/x
    command: {verb: show, argv: [show, x.bst]}
    expect:
      result: ok
      checks:
        - {of: public, path: [deep-nest, 0, 0, animal], equals: horsy}
        - {of: vars, path: [included], equals: 'True', as_bool: true}
"#;
        let manifest: Manifest = serde_yaml_ng::from_str(text).unwrap();
        let checks = &manifest.cases[0].expect.checks;
        assert_eq!(
            checks[0].path,
            vec![PathStep::Key("deep-nest".into()), PathStep::Index(0), PathStep::Index(0), PathStep::Key("animal".into())]
        );
        assert!(checks[1].as_bool);
        assert!(manifest.skipped.is_empty());
    }
}
