//! The node tree: mappings, sequences and scalars, each with a [`Span`], and
//! the typed reads that report the spec's errors (§1.2).
//!
//! Key decision: scalars are untyped strings (`Arc<str>`, cheap to clone);
//! booleans and integers are interpreted only by the typed getters. Mappings
//! keep insertion order ([`IndexMap`]).

use std::sync::Arc;

use indexmap::IndexMap;

use super::error::{LoadError, LoadErrorReason, LoadResult};
use super::provenance::Span;

/// Keys of list composition directives.
pub const DIRECTIVE_KEYS: [&str; 3] = ["(>)", "(<)", "(=)"];

/// A YAML node.
#[derive(Debug, Clone)]
pub enum Node {
    /// A string value.
    Scalar(Scalar),
    /// A list.
    Seq(Seq),
    /// A mapping with string keys.
    Map(Map),
}

/// A scalar: its text (whitespace-stripped) and provenance.
#[derive(Debug, Clone)]
pub struct Scalar {
    /// The text.
    pub value: Arc<str>,
    /// Where it was written.
    pub span: Span,
}

/// A sequence.
#[derive(Debug, Clone)]
pub struct Seq {
    /// The items in order.
    pub items: Vec<Node>,
    /// Provenance of the first `-` or `[`.
    pub span: Span,
}

/// The entries of a [`Map`]: insertion-ordered, hashed with the fast
/// non-cryptographic Fx hash (keys are short identifiers, not attacker-chosen
/// in any way that matters for a one-shot load).
pub type Entries = IndexMap<Arc<str>, Node, rustc_hash::FxBuildHasher>;

/// A mapping with ordered string keys.
#[derive(Debug, Clone)]
pub struct Map {
    /// Entries in insertion order.
    pub entries: Entries,
    /// Provenance of the first key.
    pub span: Span,
}

impl Node {
    /// The node's provenance.
    pub fn span(&self) -> Span {
        match self {
            Node::Scalar(s) => s.span,
            Node::Seq(s) => s.span,
            Node::Map(m) => m.span,
        }
    }

    /// A scalar node.
    pub fn scalar(value: impl Into<Arc<str>>, span: Span) -> Node {
        Node::Scalar(Scalar { value: value.into(), span })
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => Some(&s.value),
            _ => None,
        }
    }

    /// The mapping, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Node::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Attributes this node and every node below it to `file`.
    pub fn set_file(&mut self, file: super::provenance::FileId) {
        match self {
            Node::Scalar(s) => s.span.file = file,
            Node::Seq(s) => {
                s.span.file = file;
                s.items.iter_mut().for_each(|n| n.set_file(file));
            }
            Node::Map(m) => m.set_file(file),
        }
    }

    /// Name of the node type as BuildStream's messages print it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Scalar(_) => "scalar",
            Node::Seq(_) => "list",
            Node::Map(_) => "dict",
        }
    }
}

/// Parses BuildStream's boolean syntax (`True`/`true`/`1`, `False`/`false`/`0`).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "True" | "true" | "1" => Some(true),
        "False" | "false" | "0" => Some(false),
        _ => None,
    }
}

fn type_error(key: &str, node: &Node, expected: &str) -> LoadError {
    LoadError::at(
        node.span(),
        LoadErrorReason::InvalidData,
        format!("Value of '{key}' is not of the expected type '{expected}'"),
    )
}

impl Default for Map {
    /// An empty mapping made by the core (attributed to the first file).
    fn default() -> Map {
        Map::new(Span::synthetic(super::provenance::FileId(0)))
    }
}

impl Map {
    /// An empty mapping.
    pub fn new(span: Span) -> Map {
        Map { entries: Entries::default(), span }
    }

    /// Attributes the mapping and every node below it to `file` (a tree
    /// parsed before its file was registered in the source map).
    pub fn set_file(&mut self, file: super::provenance::FileId) {
        self.span.file = file;
        self.entries.values_mut().for_each(|n| n.set_file(file));
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries.get(key)
    }

    /// The value at `key`, mutable.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries.get_mut(key)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Sets `key` (kept in place when it exists, else appended).
    pub fn insert(&mut self, key: impl Into<Arc<str>>, value: Node) {
        self.entries.insert(key.into(), value);
    }

    /// Removes `key`, keeping the order of the rest.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        self.entries.shift_remove(key)
    }

    /// Whether the mapping has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Node)> {
        self.entries.iter()
    }

    /// Whether this is a list-directive mapping; mixing directives with other
    /// keys is `INVALID_DATA`.
    pub fn is_directive(&self) -> LoadResult<bool> {
        let directives = self.entries.keys().filter(|k| DIRECTIVE_KEYS.contains(&k.as_ref())).count();
        if directives == 0 {
            return Ok(false);
        }
        if directives != self.entries.len() {
            return Err(LoadError::at(
                self.span,
                LoadErrorReason::InvalidData,
                "Dictionary contains list composition directives and arbitrary keys",
            ));
        }
        Ok(true)
    }

    /// Fails with `Unexpected key` on the first key not in `allowed`.
    pub fn validate_keys(&self, allowed: &[&str]) -> LoadResult<()> {
        for (key, value) in &self.entries {
            if !allowed.contains(&key.as_ref()) {
                return Err(LoadError::at(value_key_span(value), LoadErrorReason::InvalidData, format!("Unexpected key: {key}")));
            }
        }
        Ok(())
    }

    /// The error for a missing required key.
    pub fn missing(&self, key: &str) -> LoadError {
        LoadError::at(self.span, LoadErrorReason::InvalidData, format!("Dictionary did not contain expected key '{key}'"))
    }

    /// A scalar value, if present.
    pub fn get_scalar(&self, key: &str) -> LoadResult<Option<&Scalar>> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(Node::Scalar(s)) => Ok(Some(s)),
            Some(other) => Err(type_error(key, other, "scalar")),
        }
    }

    /// A string value, if present.
    pub fn get_str(&self, key: &str) -> LoadResult<Option<&str>> {
        Ok(self.get_scalar(key)?.map(|s| s.value.as_ref()))
    }

    /// A required scalar.
    pub fn req_scalar(&self, key: &str) -> LoadResult<&Scalar> {
        self.get_scalar(key)?.ok_or_else(|| self.missing(key))
    }

    /// A boolean value (BuildStream's syntax), if present.
    pub fn get_bool(&self, key: &str) -> LoadResult<Option<bool>> {
        match self.get_scalar(key)? {
            None => Ok(None),
            Some(s) => parse_bool(&s.value).map(Some).ok_or_else(|| {
                LoadError::at(s.span, LoadErrorReason::InvalidData, format!("Value of '{key}' is not of the expected type 'boolean'"))
            }),
        }
    }

    /// A mapping value, if present.
    pub fn get_map(&self, key: &str) -> LoadResult<Option<&Map>> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(Node::Map(m)) => Ok(Some(m)),
            Some(other) => Err(type_error(key, other, "dict")),
        }
    }

    /// A sequence value, if present.
    pub fn get_seq(&self, key: &str) -> LoadResult<Option<&Seq>> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(Node::Seq(s)) => Ok(Some(s)),
            Some(other) => Err(type_error(key, other, "list")),
        }
    }

    /// A list of strings, if present.
    pub fn get_str_list(&self, key: &str) -> LoadResult<Option<Vec<&Scalar>>> {
        match self.get_seq(key)? {
            None => Ok(None),
            Some(seq) => seq.scalars().map(Some),
        }
    }
}

/// Provenance used for "Unexpected key": the value's own span.
fn value_key_span(value: &Node) -> Span {
    value.span()
}

impl Seq {
    /// The items as scalars; a non-scalar item is `INVALID_DATA`.
    pub fn scalars(&self) -> LoadResult<Vec<&Scalar>> {
        self.items
            .iter()
            .map(|item| match item {
                Node::Scalar(s) => Ok(s),
                other => Err(LoadError::at(
                    other.span(),
                    LoadErrorReason::InvalidData,
                    "List item is not of the expected type 'scalar'",
                )),
            })
            .collect()
    }
}
