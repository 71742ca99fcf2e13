//! The key fields `weir show --format` prints: `%{full-key}`, `%{key}`,
//! `%{strict-key}`, `%{weak-key}`, `%{source-keys}`, `%{artifact}` and
//! `%{state}`.
//!
//! It owns [`KeyFields`]. Key decision: an unknown key prints as 64 `?` like
//! BuildStream, the short key is the first `log_key_length` characters of the
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
        let input = inputs.get(index)?;
        let keys = table.get(index)?;
        let unknown = || "?".repeat(64);
        let full_key = keys.strong().map_or_else(unknown, str::to_owned);
        let key = full_key.chars().take(key_length).collect();
        let source_keys = Value::List(keys.sources.iter().map(|k| k.clone().unwrap_or(Value::Null)).collect());
        let state = if !keys.sources_resolved() {
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
        };
        Some(KeyFields {
            artifact: artifact_name(&input.project, &input.name, &full_key),
            key,
            full_key,
            strict_key: keys.strict.clone().unwrap_or_else(unknown),
            weak_key: keys.weak.clone().unwrap_or_else(unknown),
            source_keys: to_canonical(&source_keys),
            state,
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
