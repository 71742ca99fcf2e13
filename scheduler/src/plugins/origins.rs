//! Plugin origins declared in `project.conf` `plugins:` (spec §6.5,
//! plugins §3.1) and the per-project registration of kinds to origins.
//!
//! Key decision: registration is eager (a kind declared twice fails at project
//! load with `duplicate-plugin`), loading is lazy (done when a kind is used).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::project::instance::project_path;
use crate::yaml::{LoadError, LoadErrorReason, LoadResult, Map, Node, Scalar, Seq};

/// The three plugin namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// Element kinds.
    Element,
    /// Source kinds.
    Source,
    /// Source mirror kinds.
    SourceMirror,
}

impl Namespace {
    /// Singular noun used in messages.
    pub fn noun(self) -> &'static str {
        match self {
            Namespace::Element => "element",
            Namespace::Source => "source",
            Namespace::SourceMirror => "source-mirror",
        }
    }
}

/// Where a declared plugin comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A directory of this project holding executables named after kinds.
    Local {
        /// Absolute directory.
        path: PathBuf,
    },
    /// A Python package (BuildStream plugin packages; not runnable by Weir).
    Pip {
        /// The requirement string.
        package: String,
    },
    /// Kinds re-exported from a subproject.
    Junction {
        /// Junction path in this project.
        junction: Scalar,
        /// Provenance of the origin entry (the reference that loads the subproject).
        span: crate::yaml::Span,
    },
}

/// A declared kind: its origin and deprecation allowance.
#[derive(Debug, Clone)]
pub struct Declared {
    /// Index into [`PluginOrigins::origins`].
    pub origin: usize,
    /// `allow-deprecated`.
    pub allow_deprecated: bool,
    /// Where the kind was declared.
    pub span: Scalar,
}

/// The plugin origins of one project.
#[derive(Debug, Clone, Default)]
pub struct PluginOrigins {
    /// Origins in declaration order.
    pub origins: Vec<Origin>,
    /// Declared kinds per namespace.
    pub kinds: HashMap<(Namespace, String), Declared>,
}

const ORIGIN_COMMON: [&str; 5] = ["origin", "elements", "sources", "source-mirrors", "allow-deprecated"];

impl PluginOrigins {
    /// Reads `plugins` (the list in project.conf) for the project at `project_dir`.
    pub fn parse(plugins: &Seq, project_dir: &std::path::Path) -> LoadResult<PluginOrigins> {
        let mut out = PluginOrigins::default();
        for item in &plugins.items {
            let Node::Map(def) = item else {
                return Err(LoadError::at(item.span(), LoadErrorReason::InvalidData, "Value of 'plugins' item is not of the expected type 'dict'"));
            };
            let origin_name = def.req_scalar("origin")?;
            let origin = match origin_name.value.as_ref() {
                "local" => {
                    def.validate_keys(&[&ORIGIN_COMMON[..], &["path"]].concat())?;
                    let path = def.req_scalar("path")?;
                    Origin::Local { path: project_path(project_dir, path, true)? }
                }
                "pip" => {
                    def.validate_keys(&[&ORIGIN_COMMON[..], &["package-name"]].concat())?;
                    Origin::Pip { package: def.req_scalar("package-name")?.value.to_string() }
                }
                "junction" => {
                    def.validate_keys(&[&ORIGIN_COMMON[..], &["junction"]].concat())?;
                    Origin::Junction { junction: def.req_scalar("junction")?.clone(), span: def.span }
                }
                other => {
                    return Err(LoadError::at(
                        origin_name.span,
                        LoadErrorReason::InvalidData,
                        format!("Unexpected plugin origin '{other}'"),
                    ))
                }
            };
            let index = out.origins.len();
            out.origins.push(origin);
            let default_allow = def.get_bool("allow-deprecated")?.unwrap_or(false);
            for (key, namespace) in
                [("elements", Namespace::Element), ("sources", Namespace::Source), ("source-mirrors", Namespace::SourceMirror)]
            {
                let Some(list) = def.get_seq(key)? else { continue };
                for entry in &list.items {
                    let (kind, allow) = match entry {
                        Node::Scalar(s) => (s.clone(), default_allow),
                        Node::Map(m) => {
                            m.validate_keys(&["kind", "allow-deprecated"])?;
                            (m.req_scalar("kind")?.clone(), m.get_bool("allow-deprecated")?.unwrap_or(default_allow))
                        }
                        Node::Seq(s) => {
                            return Err(LoadError::at(s.span, LoadErrorReason::InvalidData, format!("Value of '{key}' item is not of the expected type")))
                        }
                    };
                    let name = kind.value.to_string();
                    if out.kinds.contains_key(&(namespace, name.clone())) {
                        return Err(LoadError::other(
                            "PLUGIN",
                            "duplicate-plugin",
                            Some(kind.span),
                            format!("More than one {} plugin registered as kind '{}'", namespace.noun(), name),
                        ));
                    }
                    out.kinds.insert((namespace, name), Declared { origin: index, allow_deprecated: allow, span: kind });
                }
            }
        }
        Ok(out)
    }

    /// The declaration of `kind` in `namespace`, if any.
    pub fn lookup(&self, namespace: Namespace, kind: &str) -> Option<(&Declared, &Origin)> {
        let declared = self.kinds.get(&(namespace, kind.to_string()))?;
        Some((declared, self.origins.get(declared.origin)?))
    }
}

/// Reads the `plugins` key of a project.conf mapping.
pub fn read_origins(conf: &Map, project_dir: &std::path::Path) -> LoadResult<PluginOrigins> {
    match conf.get_seq("plugins")? {
        Some(seq) => PluginOrigins::parse(seq, project_dir),
        None => Ok(PluginOrigins::default()),
    }
}
