//! The core element and source kinds at load level: their default YAML,
//! the configuration keys they accept, whether they take dependency
//! configuration, and their preflight checks (spec §6.5, §7, §8).
//!
//! Key decision: core kinds are data plus small `match`es; nothing here runs
//! a build.

use crate::yaml::{LoadError, LoadErrorReason, LoadResult, Map, Span};

/// The element kinds compiled into Weir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreElement {
    /// `import`.
    Import,
    /// `manual` (the BuildElement base).
    Manual,
    /// `compose`.
    Compose,
    /// `stack`.
    Stack,
    /// `filter`.
    Filter,
    /// `script`.
    Script,
    /// `junction`.
    Junction,
    /// `link`.
    Link,
}

impl CoreElement {
    /// The core kind called `kind`.
    pub fn from_kind(kind: &str) -> Option<CoreElement> {
        Some(match kind {
            "import" => CoreElement::Import,
            "manual" => CoreElement::Manual,
            "compose" => CoreElement::Compose,
            "stack" => CoreElement::Stack,
            "filter" => CoreElement::Filter,
            "script" => CoreElement::Script,
            "junction" => CoreElement::Junction,
            "link" => CoreElement::Link,
            _ => return None,
        })
    }

    /// The plugin's default YAML (`<kind>.yaml`).
    pub fn defaults_yaml(self) -> &'static str {
        match self {
            CoreElement::Import => "config:\n  source: /\n  target: /\n",
            CoreElement::Manual => {
                "config:\n  configure-commands: []\n  build-commands: []\n  install-commands: []\n  strip-commands:\n  - |\n    %{strip-binaries}\n"
            }
            CoreElement::Compose => "config:\n  integrate: True\n  include: []\n  exclude: []\n  include-orphans: True\n",
            CoreElement::Filter => {
                "config:\n  include: []\n  exclude: []\n  include-orphans: False\n  pass-integration: False\n"
            }
            CoreElement::Script => "variables:\n  cwd: /\nconfig:\n  root-read-only: False\n  commands: []\n",
            CoreElement::Stack | CoreElement::Junction | CoreElement::Link => "",
        }
    }

    /// Configuration keys accepted (`None`: any).
    fn config_keys(self) -> Option<&'static [&'static str]> {
        match self {
            CoreElement::Import => Some(&["source", "target"]),
            CoreElement::Manual => None,
            CoreElement::Compose => Some(&["integrate", "include", "exclude", "include-orphans"]),
            CoreElement::Stack => Some(&[]),
            CoreElement::Filter => Some(&["include", "exclude", "include-orphans", "pass-integration"]),
            CoreElement::Script => Some(&["commands", "root-read-only", "layout"]),
            CoreElement::Junction => Some(&["path", "options", "overrides", "aliases", "map-aliases"]),
            CoreElement::Link => Some(&["target"]),
        }
    }

    /// Whether build dependencies may carry `config`.
    pub fn supports_dependency_config(self) -> bool {
        matches!(self, CoreElement::Manual | CoreElement::Script)
    }

    /// Whether the kind refuses sources.
    fn forbids_sources(self) -> bool {
        matches!(self, CoreElement::Link | CoreElement::Compose | CoreElement::Filter | CoreElement::Stack)
    }

    /// The plugin's `configure()`: validates the expanded configuration.
    pub fn configure(self, config: &Map) -> LoadResult<()> {
        if let Some(keys) = self.config_keys() {
            config.validate_keys(keys)?;
        }
        match self {
            CoreElement::Compose => {
                config.get_bool("integrate")?;
                config.get_bool("include-orphans")?;
                config.get_str_list("include")?;
                config.get_str_list("exclude")?;
            }
            CoreElement::Filter => {
                config.get_bool("include-orphans")?;
                config.get_bool("pass-integration")?;
                config.get_str_list("include")?;
                config.get_str_list("exclude")?;
            }
            CoreElement::Script => {
                config.get_bool("root-read-only")?;
            }
            CoreElement::Import => {
                config.get_str("source")?;
                config.get_str("target")?;
            }
            CoreElement::Manual => {
                for key in ["configure-commands", "build-commands", "install-commands", "strip-commands"] {
                    config.get_str_list(key)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Preflight checks on sources and dependency types.
    /// `deps` lists each direct dependency as (is_build, is_runtime).
    pub fn preflight(self, element_span: Span, has_sources: bool, deps: &[(bool, bool)]) -> LoadResult<()> {
        if has_sources && self.forbids_sources() {
            return Err(LoadError::other(
                "ELEMENT",
                "element-forbidden-sources",
                Some(element_span),
                "Elements of this kind may not have sources",
            ));
        }
        match self {
            CoreElement::Stack if deps.iter().any(|&(b, r)| !(b && r)) => Err(LoadError::other(
                "ELEMENT",
                "stack-requires-build-and-run",
                Some(element_span),
                "All dependencies of 'stack' elements must be both build and runtime dependencies",
            )),
            CoreElement::Filter => {
                let builds = deps.iter().filter(|(b, _)| *b).count();
                if builds != 1 {
                    return Err(LoadError::other(
                        "ELEMENT",
                        "filter-bdepend-wrong-count",
                        Some(element_span),
                        format!("filter element must have exactly 1 build-dependency, actually have {builds}"),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// The core source kinds.
pub const CORE_SOURCES: [&str; 4] = ["local", "remote", "tar", "workspace"];

/// The core source plugin's `configure()` for `kind`, on the composed,
/// expanded source configuration (without `kind`, `directory`, `provenance`).
/// `remote` and `tar` are DownloadableFileSources: `url`, `ref`, `version`,
/// `version-guess-pattern`, plus their own keys.
pub fn configure_core_source(kind: &str, config: &Map) -> LoadResult<()> {
    match kind {
        "local" => {
            config.validate_keys(&["path"])?;
            config.req_scalar("path")?;
        }
        "remote" => {
            config.validate_keys(&["url", "ref", "version", "version-guess-pattern", "filename", "executable"])?;
            config.req_scalar("url")?;
        }
        "tar" => {
            config.validate_keys(&["url", "ref", "version", "version-guess-pattern", "base-dir"])?;
            config.req_scalar("url")?;
        }
        _ => {}
    }
    Ok(())
}

/// A `workspace` source entry in an element is not allowed.
pub fn reject_internal_source(kind: &str, span: Span) -> LoadResult<()> {
    if kind == "workspace" {
        return Err(LoadError::at(span, LoadErrorReason::InvalidData, "Sources of kind 'workspace' are internal and cannot be used in elements"));
    }
    Ok(())
}
