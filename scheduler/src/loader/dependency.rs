//! The dependency forms of an element file (spec §7.2): strings, mappings
//! with `filename` (string or list), `junction`, `type`, `strict`, `config`,
//! the three lists, and merging of entries naming the same element.
//!
//! Key decision: entries are parsed and merged by (junction, name) here, as
//! written; merging of entries that resolve to the same element through
//! links or overrides happens after resolution, in the loader.

use crate::graph::DepType;
use crate::yaml::{LoadError, LoadErrorReason, LoadResult, Map, Node, Span};

/// One dependency as written.
#[derive(Debug, Clone)]
pub struct DepSpec {
    /// Junction path, if any.
    pub junction: Option<String>,
    /// Element name within the junction's project.
    pub name: String,
    /// Type.
    pub dep_type: DepType,
    /// `strict`.
    pub strict: bool,
    /// Configurations (unexpanded), in order.
    pub configs: Vec<Map>,
    /// Provenance of the entry.
    pub span: Span,
}

impl DepSpec {
    /// The full reference (`j.bst:x.bst` or `x.bst`).
    pub fn reference(&self) -> String {
        match &self.junction {
            Some(j) => format!("{j}:{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Merges another entry naming the same element into this one.
    pub fn merge(&mut self, other: DepSpec) {
        self.dep_type = self.dep_type.merge(other.dep_type);
        self.strict |= other.strict;
        self.configs.extend(other.configs);
    }
}

fn invalid(span: Span, message: impl Into<String>) -> LoadError {
    LoadError::at(span, LoadErrorReason::InvalidData, message)
}

fn parse_list(node: &Map, key: &str, default_type: Option<DepType>, out: &mut Vec<DepSpec>) -> LoadResult<()> {
    let Some(value) = node.get(key) else { return Ok(()) };
    let Node::Seq(seq) = value else {
        return Err(invalid(value.span(), format!("Value of '{key}' is not of the expected type 'list'")));
    };
    for entry in &seq.items {
        match entry {
            Node::Scalar(s) => {
                let (junction, name) = split_reference(&s.value);
                out.push(DepSpec {
                    junction,
                    name,
                    dep_type: default_type.unwrap_or(DepType::All),
                    strict: false,
                    configs: Vec::new(),
                    span: s.span,
                });
            }
            Node::Map(m) => parse_mapping(m, default_type, out)?,
            Node::Seq(s) => return Err(invalid(s.span, "Dependency is not specified as a string or a dictionary")),
        }
    }
    Ok(())
}

fn split_reference(text: &str) -> (Option<String>, String) {
    match text.rsplit_once(':') {
        Some((j, n)) => (Some(j.to_string()), n.to_string()),
        None => (None, text.to_string()),
    }
}

fn parse_mapping(m: &Map, default_type: Option<DepType>, out: &mut Vec<DepSpec>) -> LoadResult<()> {
    if default_type.is_some() {
        m.validate_keys(&["filename", "junction", "strict", "config"])?;
    } else {
        m.validate_keys(&["filename", "junction", "type", "strict", "config"])?;
    }
    let dep_type = match m.get_scalar("type")? {
        None => default_type.unwrap_or(DepType::All),
        Some(t) => match t.value.as_ref() {
            "build" => DepType::Build,
            "runtime" => DepType::Runtime,
            "all" => DepType::All,
            _ => return Err(invalid(t.span, "Value of 'type' should be one of 'build, runtime, all'")),
        },
    };
    let strict = match m.get_scalar("strict")? {
        None => false,
        Some(s) => match crate::yaml::parse_bool(&s.value) {
            Some(true) => true,
            Some(false) => return Err(invalid(s.span, "Setting 'strict' to False is unsupported")),
            None => return Err(invalid(s.span, "Value of 'strict' is not of the expected type 'boolean'")),
        },
    };
    if strict && dep_type == DepType::Runtime {
        return Err(invalid(m.span, "Runtime dependency cannot be strict, it is only valid for build dependencies"));
    }
    let configs = match m.get_map("config")? {
        None => Vec::new(),
        Some(c) => {
            if dep_type == DepType::Runtime {
                return Err(invalid(m.span, "Dependency configuration is only valid for build dependencies"));
            }
            vec![c.clone()]
        }
    };
    let junction = m.get_scalar("junction")?.map(|s| s.value.to_string());
    let filenames: Vec<(String, Span)> = match m.get("filename") {
        None => return Err(m.missing("filename")),
        Some(Node::Scalar(s)) => vec![(s.value.to_string(), s.span)],
        Some(Node::Seq(seq)) => {
            let mut names = Vec::new();
            for item in &seq.items {
                match item {
                    Node::Scalar(s) => names.push((s.value.to_string(), s.span)),
                    other => return Err(invalid(other.span(), "Expected string while parsing the filename list")),
                }
            }
            names
        }
        Some(other) => return Err(invalid(other.span(), "Value of 'filename' is not of the expected type 'scalar'")),
    };
    for (filename, fspan) in filenames {
        let (junction, name) = match &junction {
            Some(j) => {
                if filename.contains(':') {
                    return Err(invalid(fspan, format!("'{filename}' must not contain ':' when 'junction' is also specified")));
                }
                (Some(j.clone()), filename)
            }
            None => split_reference(&filename),
        };
        out.push(DepSpec { junction, name, dep_type, strict, configs: configs.clone(), span: m.span });
    }
    Ok(())
}

/// Every dependency of an element node, merged by (junction, name) in the
/// order `build-depends`, `runtime-depends`, `depends`.
pub fn parse_dependencies(node: &Map) -> LoadResult<Vec<DepSpec>> {
    let mut all = Vec::new();
    parse_list(node, "build-depends", Some(DepType::Build), &mut all)?;
    parse_list(node, "runtime-depends", Some(DepType::Runtime), &mut all)?;
    parse_list(node, "depends", None, &mut all)?;
    let mut merged: Vec<DepSpec> = Vec::with_capacity(all.len());
    for dep in all {
        match merged.iter_mut().find(|d| d.junction == dep.junction && d.name == dep.name) {
            Some(existing) => existing.merge(dep),
            None => merged.push(dep),
        }
    }
    Ok(merged)
}
