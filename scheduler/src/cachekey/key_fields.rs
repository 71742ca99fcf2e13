//! The key fields `weir show --format` prints: `%{full-key}`, `%{key}`,
//! `%{strict-key}`, `%{weak-key}`, `%{source-keys}`, `%{artifact}` and
//! `%{state}`.
//!
//! It owns [`KeyFields`] and [`key_field`] (one field alone). Key decision:
//! an unknown key prints as 64 `?` like BuildStream, the short key is the first `log_key_length` characters of the
//! full key (BuildStream's `logging.key-length`, default 8), and the state is
//! derived in BuildStream's order from a cache lookup the caller supplies
//! (nothing is cached until a cache is configured). Until a source cache
//! exists, every source other than `local` (which BuildStream imports
//! eagerly) counts as not fetched, so its element is `fetch needed`, as
//! `bst show` prints on a fresh machine.

use super::artifact_name::artifact_name;
use super::canonical::to_canonical;
use super::element_input::ElementInput;
use super::key_table::KeyTable;
use super::value::Value;

/// BuildStream's default `logging.key-length`.
pub const DEFAULT_KEY_LENGTH: usize = 8;

/// The printable key fields of one element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFields {
    /// `%{full-key}`: the strong key (strict mode), or 64 `?`.
    pub full_key: String,
    /// `%{key}`: the short form of `full_key`.
    pub key: String,
    /// `%{strict-key}`.
    pub strict_key: String,
    /// `%{weak-key}`.
    pub weak_key: String,
    /// `%{source-keys}`: the sources' unique keys as one canonical JSON list (`null` while unresolved).
    pub source_keys: String,
    /// `%{artifact}`: `<project>/<normal-name>/<full-key>`.
    pub artifact: String,
    /// `%{state}`: `no reference`, `junction`, `cached`, `fetch needed`, `buildable` or `waiting`.
    pub state: &'static str,
}

impl KeyFields {
    /// The fields of element `index` of `inputs` (the slice `table` was computed from).
    /// `cached(i)` says whether element `i`'s artifact is in a cache.
    pub fn of(
        table: &KeyTable,
        inputs: &[ElementInput],
        index: usize,
        key_length: usize,
        cached: &dyn Fn(usize) -> bool,
    ) -> Option<Self> {
        let field = |name: &str| key_field(table, inputs, index, key_length, cached, name);
        Some(KeyFields {
            full_key: field("full-key")?,
            key: field("key")?,
            strict_key: field("strict-key")?,
            weak_key: field("weak-key")?,
            source_keys: field("source-keys")?,
            artifact: field("artifact")?,
            state: state(table, inputs, index, cached)?,
        })
    }

    /// The value of a `%{name}` field, if `name` is one of the key fields.
    pub fn field(&self, name: &str) -> Option<&str> {
        Some(match name {
            "full-key" => &self.full_key,
            "key" => &self.key,
            "strict-key" => &self.strict_key,
            "weak-key" => &self.weak_key,
            "source-keys" => &self.source_keys,
            "artifact" => &self.artifact,
            "state" => self.state,
            _ => return None,
        })
    }
}

/// The text of the one key field `name` (`full-key`, `key`, `strict-key`,
/// `weak-key`, `source-keys`, `artifact` or `state`) of element `index`,
/// computing only that field (`weir show` prints one or two of them for
/// every element); arguments as for [`KeyFields::of`].
pub fn key_field(
    table: &KeyTable,
    inputs: &[ElementInput],
    index: usize,
    key_length: usize,
    cached: &dyn Fn(usize) -> bool,
    name: &str,
) -> Option<String> {
    let input = inputs.get(index)?;
    let keys = table.get(index)?;
    let unknown = || "?".repeat(64);
    let full_key = || keys.strong().map_or_else(unknown, str::to_owned);
    Some(match name {
        "full-key" => full_key(),
        "key" => full_key().chars().take(key_length).collect(),
        "strict-key" => keys.strict.clone().unwrap_or_else(unknown),
        "weak-key" => keys.weak.clone().unwrap_or_else(unknown),
        "source-keys" => {
            to_canonical(&Value::List(keys.sources.iter().map(|k| k.clone().unwrap_or(Value::Null)).collect()))
        }
        "artifact" => artifact_name(&input.project, &input.name, &full_key()),
        "state" => state(table, inputs, index, cached)?.to_owned(),
        _ => return None,
    })
}

/// `%{state}` of element `index`, in BuildStream's order.
fn state(table: &KeyTable, inputs: &[ElementInput], index: usize, cached: &dyn Fn(usize) -> bool) -> Option<&'static str> {
    let input = inputs.get(index)?;
    let keys = table.get(index)?;
    Some(if !keys.sources_resolved() {
        "no reference"
    } else if input.kind == "junction" {
        "junction"
    } else if keys.strong().is_some() && cached(index) {
        "cached"
    } else if input.sources.iter().any(|source| source.kind != "local") {
        "fetch needed"
    } else if input.dependencies.iter().filter(|d| d.build).all(|d| cached(d.element)) {
        "buildable"
    } else {
        "waiting"
    })
}
