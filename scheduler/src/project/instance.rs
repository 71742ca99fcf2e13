//! One project instance: what `project.conf` says once both loading passes
//! are done (spec §6), with the pieces the loader and the element
//! instantiation read.
//!
//! Key decision: the pre-config checks (step 2 of §6.2) and the pass
//! procedure (a–f) are functions over already-included YAML here; include
//! processing, which may reach into other projects, is done by the loader's
//! session before calling them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use super::host::Host;
use super::options::OptionPool;
use super::symbol::check_symbol;
use super::variables::Variables;
use crate::yaml::{check_trailing_directives, LoadError, LoadErrorReason, LoadResult, Map, Node, Scalar, SourceMap, Span};

/// Index of a project instance in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(pub u32);

/// Top-level keys allowed in project.conf.
pub const PROJECT_KEYS: &[&str] = &[
    "name", "min-version", "element-path", "options", "variables", "environment", "environment-nocache",
    "split-rules", "elements", "sources", "plugins", "aliases", "mirrors", "defaults", "artifacts",
    "source-caches", "fail-on-overlap", "shell", "fatal-warnings", "ref-storage", "sandbox", "junctions",
    "source-provenance-attributes", "(@)", "(?)",
];

/// Keys that may not appear in a project.conf conditional body.
pub const RESTRICTED_CONDITIONAL_KEYS: &[&str] =
    &["min-version", "name", "element-path", "junctions", "defaults", "fatal-warnings", "ref-storage", "options", "plugins"];

/// Keys that must come from project.conf itself, never from an include.
const PROJECT_CONF_ONLY: &[&str] = &["name", "element-path", "min-version", "plugins"];

/// The BuildStream minor version Weir loads like.
pub const RUNNING_MINOR: u32 = 8;

/// The configuration one loading pass produced.
#[derive(Debug, Clone)]
pub struct PassConfig {
    /// Options with their final values.
    pub options: OptionPool,
    /// Base variables: `variables`, `project-name`, `max-jobs`, exports.
    pub variables: Map,
    /// Base environment.
    pub environment: Map,
    /// Base `environment-nocache`.
    pub environment_nocache: Vec<String>,
    /// Base sandbox configuration.
    pub sandbox: Map,
    /// Base split rules.
    pub split_rules: Map,
    /// `elements:` overrides per kind (directives still pending).
    pub element_overrides: Map,
    /// `sources:` overrides per kind.
    pub source_overrides: Map,
    /// Source aliases, variable-expanded.
    pub aliases: IndexMap<String, String>,
    /// The whole finalised configuration (without `elements`/`sources`).
    pub config: Map,
}

/// Where a subproject came from.
#[derive(Debug, Clone)]
pub struct JunctionOrigin {
    /// The parent project instance.
    pub parent: ProjectId,
    /// Name of the junction element in the parent project.
    pub name: String,
    /// Full name of the junction element (`a.bst:b.bst`), the display prefix.
    pub full_name: String,
    /// Junction `config.options`, expanded in the parent.
    pub options: Option<Map>,
    /// Junction `config.overrides`: key (path in this subproject) → value (path in the parent).
    pub overrides: Vec<(String, Scalar)>,
    /// The reference that caused the load (for conflict reports).
    pub loaded_by: Option<Span>,
}

/// One project instance.
#[derive(Debug)]
pub struct Project {
    /// Its id.
    pub id: ProjectId,
    /// `name`.
    pub name: String,
    /// Project directory (holding project.conf).
    pub directory: PathBuf,
    /// Element path directory.
    pub element_path: PathBuf,
    /// File id of project.conf.
    pub conf_file: crate::yaml::FileId,
    /// project.conf as parsed.
    pub raw: Map,
    /// Set for subprojects.
    pub junction: Option<JunctionOrigin>,
    /// First-pass configuration (junction and link elements).
    pub first: Option<PassConfig>,
    /// Second-pass configuration (regular elements), loaded on demand.
    pub second: Option<PassConfig>,
    /// `defaults: targets`.
    pub default_targets: Vec<String>,
    /// `fatal-warnings`.
    pub fatal_warnings: Vec<String>,
    /// `junctions: duplicates`: project name → junction paths.
    pub duplicates: Vec<(String, Vec<Scalar>)>,
    /// `junctions: internal`.
    pub internal: Vec<Scalar>,
    /// `junctions: disallow-subproject-uris`.
    pub disallow_subproject_uris: bool,
    /// `ref-storage`.
    pub ref_storage: String,
    /// Allowed keys of a source `provenance:` mapping.
    pub source_provenance_attributes: Vec<String>,
}

impl Project {
    /// The display prefix of this project's files (`""` or `"j.bst:"`).
    pub fn prefix(&self) -> String {
        match &self.junction {
            Some(j) => format!("{}:", j.full_name),
            None => String::new(),
        }
    }

    /// The configuration of the pass that elements of `first_pass` use.
    pub fn pass(&self, first_pass: bool) -> Option<&PassConfig> {
        if first_pass {
            self.first.as_ref()
        } else {
            self.second.as_ref().or(self.first.as_ref())
        }
    }
}

/// Checks `min-version` (before anything else).
pub fn check_min_version(conf: &Map) -> LoadResult<()> {
    let Some(node) = conf.get_scalar("min-version")? else {
        return Err(conf.missing("min-version").with_detail(
            "If this is a BuildStream 1 project, it must be loaded with BuildStream 1 (min-version is required).",
        ));
    };
    let text = node.value.as_ref();
    let parsed = text.split_once('.').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)));
    let Some((major, minor)) = parsed else {
        return Err(LoadError::at(
            node.span,
            LoadErrorReason::InvalidData,
            format!("Malformed value for min-version: {text}\nValue must be of the form MAJOR.MINOR"),
        ));
    };
    if major != 2 {
        return Err(LoadError::at(
            node.span,
            LoadErrorReason::UnsupportedProject,
            format!("Project requested format version {major}, but BuildStream 2.{RUNNING_MINOR} only supports format version 2"),
        ));
    }
    if minor > RUNNING_MINOR {
        return Err(LoadError::at(
            node.span,
            LoadErrorReason::UnsupportedProject,
            format!("Project requested a minimum version of {text} but this is BuildStream 2.{RUNNING_MINOR}"),
        ));
    }
    Ok(())
}

/// Reads `name`.
pub fn read_name(conf: &Map) -> LoadResult<String> {
    let node = conf.req_scalar("name")?;
    check_symbol(&node.value, node.span, "project name", true)?;
    Ok(node.value.to_string())
}

/// Checks a project-relative path (§6.3) and returns it joined to `project_dir`.
pub fn project_path(project_dir: &Path, node: &Scalar, must_be_dir: bool) -> LoadResult<PathBuf> {
    let rel = node.value.as_ref();
    let path = project_dir.join(rel);
    let err = |reason, msg: String| LoadError::at(node.span, reason, msg);
    if path.symlink_metadata().map(|m| m.file_type().is_symlink()).unwrap_or(false) {
        return Err(err(LoadErrorReason::ProjPathInvalidKind, format!("Specified path '{rel}' must not point to symbolic links")));
    }
    if Path::new(rel).components().next() == Some(std::path::Component::ParentDir) {
        return Err(err(LoadErrorReason::ProjPathInvalid, format!("Specified path '{rel}' first component must not be '..'")));
    }
    let Ok(meta) = std::fs::metadata(&path) else {
        return Err(err(LoadErrorReason::MissingFile, format!("Could not find the specified path '{rel}'")));
    };
    let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
    let root = project_dir.canonicalize().unwrap_or_else(|_| project_dir.to_path_buf());
    if !canonical.starts_with(&root) {
        return Err(err(LoadErrorReason::ProjPathInvalid, format!("Specified path '{rel}' must not lead outside of the project directory")));
    }
    if Path::new(rel).is_absolute() {
        return Err(err(LoadErrorReason::ProjPathInvalid, format!("Absolute path: '{rel}' invalid.\nPlease specify a path relative to the project's root.")));
    }
    {
        use std::os::unix::fs::FileTypeExt;
        let ft = meta.file_type();
        if ft.is_socket() || ft.is_fifo() || ft.is_block_device() {
            return Err(err(LoadErrorReason::ProjPathInvalidKind, format!("Specified path '{rel}' points to an unsupported file kind")));
        }
    }
    if must_be_dir && !meta.is_dir() {
        return Err(err(LoadErrorReason::ProjPathInvalidKind, format!("Specified path '{rel}' must be a directory")));
    }
    Ok(canonical)
}

/// Step 2 of §6.2: the checks on project.conf composed onto the defaults.
pub fn read_preconfig(project: &mut Project, pre: &Map) -> LoadResult<()> {
    check_min_version(&project.raw)?;
    pre.validate_keys(PROJECT_KEYS)?;
    project.name = read_name(pre)?;
    let element_path = pre.req_scalar("element-path")?;
    project.element_path = project_path(&project.directory, element_path, true)?;
    if let Some(defaults) = pre.get_map("defaults")? {
        defaults.validate_keys(&["targets"])?;
        project.default_targets =
            defaults.get_str_list("targets")?.unwrap_or_default().iter().map(|s| s.value.to_string()).collect();
    }
    project.fatal_warnings =
        pre.get_str_list("fatal-warnings")?.unwrap_or_default().iter().map(|s| s.value.to_string()).collect();
    if let Some(junctions) = pre.get_map("junctions")? {
        junctions.validate_keys(&["duplicates", "internal", "disallow-subproject-uris"])?;
        if let Some(dups) = junctions.get_map("duplicates")? {
            for (name, node) in dups.iter() {
                let Node::Seq(seq) = node else {
                    return Err(LoadError::at(node.span(), LoadErrorReason::InvalidData, format!("Value of '{name}' is not of the expected type 'list'")));
                };
                let paths = seq.scalars()?.into_iter().cloned().collect();
                project.duplicates.push((name.to_string(), paths));
            }
        }
        project.internal = junctions.get_str_list("internal")?.unwrap_or_default().into_iter().cloned().collect();
        project.disallow_subproject_uris = junctions.get_bool("disallow-subproject-uris")?.unwrap_or(false);
    }
    let storage = pre.req_scalar("ref-storage")?;
    if storage.value.as_ref() != "inline" && storage.value.as_ref() != "project.refs" {
        return Err(LoadError::at(storage.span, LoadErrorReason::InvalidData, "Value of 'ref-storage' should be one of 'inline, project.refs'"));
    }
    project.ref_storage = storage.value.to_string();
    if let Some(attrs) = project.raw.get_map("source-provenance-attributes")? {
        project.source_provenance_attributes = attrs.iter().map(|(k, _)| k.to_string()).collect();
    } else {
        project.source_provenance_attributes = vec!["homepage".into(), "issue-tracker".into()];
    }
    Ok(())
}

/// Values from outside project.conf that a pass applies to the options.
pub struct OptionInputs<'a> {
    /// Junction `config: options` (subprojects).
    pub junction: Option<&'a Map>,
    /// User configuration `projects: <name>: options`.
    pub user: Option<&'a Map>,
    /// `--option` pairs (toplevel only).
    pub cli: &'a [(String, String)],
    /// Whether unknown CLI options are ignored (first pass).
    pub ignore_unknown_cli: bool,
}

/// Pass procedure step a: declare options and apply values.
pub fn load_options(config: &Map, host: &Host, element_path: &Path, inputs: &OptionInputs<'_>) -> LoadResult<OptionPool> {
    let mut pool = match config.get_map("options")? {
        Some(decls) => OptionPool::declare(decls, host, element_path)?,
        None => OptionPool::default(),
    };
    if let Some(values) = inputs.junction {
        pool.apply_node_values(values)?;
    }
    if let Some(values) = inputs.user {
        pool.apply_node_values(values)?;
    }
    pool.apply_cli_values(inputs.cli, inputs.ignore_unknown_cli)?;
    pool.resolve()?;
    Ok(pool)
}

/// Sets a core variable, keeping the provenance of an existing definition
/// (so a user's redefinition of a protected variable is still detected).
pub fn set_core_variable(variables: &mut Map, name: &str, value: &str) {
    let span = variables.get(name).map(Node::span).unwrap_or_else(|| Span::synthetic(variables.span.file));
    variables.insert(Arc::<str>::from(name), Node::scalar(value, span));
}

/// Pass procedure steps c–f, once conditionals are resolved in `config`.
pub fn finish_pass(
    project: &Project,
    mut config: Map,
    options: OptionPool,
    max_jobs: &str,
    toplevel_dir: &Path,
    sources: &SourceMap,
) -> LoadResult<PassConfig> {
    let element_overrides = match config.remove("elements") {
        Some(Node::Map(m)) => m,
        Some(other) => return Err(LoadError::at(other.span(), LoadErrorReason::InvalidData, "Value of 'elements' is not of the expected type 'dict'")),
        None => Map::new(Span::synthetic(project.conf_file)),
    };
    let source_overrides = match config.remove("sources") {
        Some(Node::Map(m)) => m,
        Some(other) => return Err(LoadError::at(other.span(), LoadErrorReason::InvalidData, "Value of 'sources' is not of the expected type 'dict'")),
        None => Map::new(Span::synthetic(project.conf_file)),
    };
    overrides_are_mappings(&element_overrides)?;
    overrides_are_mappings(&source_overrides)?;
    check_trailing_directives(&config)?;
    let empty = || Map::new(Span::synthetic(project.conf_file));
    let mut variables = config.get_map("variables")?.cloned().unwrap_or_else(empty);
    set_core_variable(&mut variables, "project-name", &project.name);
    set_core_variable(&mut variables, "max-jobs", max_jobs);
    for option in options.options.values() {
        if let Some(var) = &option.variable {
            set_core_variable(&mut variables, var, &option.string_value());
        }
    }
    let environment = config.get_map("environment")?.cloned().unwrap_or_else(empty);
    let environment_nocache =
        config.get_str_list("environment-nocache")?.unwrap_or_default().iter().map(|s| s.value.to_string()).collect();
    let sandbox = config.get_map("sandbox")?.cloned().unwrap_or_else(empty);
    let split_rules = config.get_map("split-rules")?.cloned().unwrap_or_else(empty);
    let mut aliases = IndexMap::new();
    if let Some(alias_map) = config.get_map("aliases")? {
        let mut with_roots = variables.clone();
        let uri = |p: &Path| format!("file://{}", p.display());
        for (name, value) in [
            ("project-root", project.directory.display().to_string()),
            ("project-root-uri", uri(&project.directory)),
            ("toplevel-root", toplevel_dir.display().to_string()),
            ("toplevel-root-uri", uri(toplevel_dir)),
        ] {
            set_core_variable(&mut with_roots, name, &value);
        }
        let vars = Variables::new(&with_roots)?;
        for (name, node) in alias_map.iter() {
            let Node::Scalar(s) = node else {
                return Err(LoadError::at(node.span(), LoadErrorReason::InvalidData, format!("Value of '{name}' is not of the expected type 'scalar'")));
            };
            aliases.insert(name.to_string(), vars.expand_str(&s.value, s.span, sources)?.to_string());
        }
    }
    Ok(PassConfig {
        options,
        variables,
        environment,
        environment_nocache,
        sandbox,
        split_rules,
        element_overrides,
        source_overrides,
        aliases,
        config,
    })
}

/// Checks that the per-kind sections of `elements:` / `sources:` are
/// mappings (their keys are not validated, as in BuildStream).
fn overrides_are_mappings(overrides: &Map) -> LoadResult<()> {
    for (kind, value) in overrides.iter() {
        if !matches!(value, Node::Map(_)) {
            return Err(LoadError::at(value.span(), LoadErrorReason::InvalidData, format!("Value of '{kind}' is not of the expected type 'dict'")));
        }
    }
    Ok(())
}

/// Second-pass check: keys that must come from project.conf itself.
pub fn check_project_conf_only(project: &Project, config: &Map) -> LoadResult<()> {
    config.validate_keys(PROJECT_KEYS)?;
    for key in PROJECT_CONF_ONLY {
        if let Some(node) = config.get(key) {
            let span = node.span();
            if !span.is_synthetic() && span.file != project.conf_file {
                return Err(LoadError::at(span, LoadErrorReason::InvalidData, format!("Unexpected key: {key}"))
                    .with_detail(format!("The '{key}' key must be specified in project.conf, not in an include")));
            }
        }
    }
    Ok(())
}
