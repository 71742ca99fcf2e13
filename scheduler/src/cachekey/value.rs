//! The JSON-like value tree that cache keys are computed from.
//!
//! It owns [`Value`] only. Key decision: mappings are `BTreeMap<String, _>`,
//! whose byte order on UTF-8 equals the Unicode code-point order BuildStream's
//! `ujson.dumps(sort_keys=True)` uses, so a value is always in canonical order
//! and serialisation never sorts. `Raw` carries text that is already canonical
//! (per-dependency entries are serialised once and spliced into every
//! dependant's key, which keeps the dense graph shape cheap). Strings are
//! `Arc<str>` so that values converted from the loader's nodes share their
//! text instead of copying it.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A value of a cache-key dict: what BuildStream hands to `ujson.dumps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// JSON `null`.
    Null,
    /// JSON `true` / `false`.
    Bool(bool),
    /// An integer, printed in plain decimal.
    Int(i64),
    /// A string (escaped as ujson does).
    Str(Arc<str>),
    /// An ordered list.
    List(Vec<Value>),
    /// A mapping; keys are kept in code-point order. Shared: cloning a
    /// mapping is O(1) (the loader interns equal mappings, and so do values).
    Map(Arc<BTreeMap<Arc<str>, Value>>),
    /// Text that is already canonical JSON, written verbatim.
    Raw(String),
}

impl Default for Value {
    /// An empty mapping: what an absent config section composes to.
    fn default() -> Self {
        Value::map()
    }
}

impl Value {
    /// An empty mapping.
    pub fn map() -> Self {
        Value::Map(Arc::default())
    }

    /// The mapping inside, if this is one.
    pub fn as_map(&self) -> Option<&BTreeMap<Arc<str>, Value>> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    /// The string inside, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The member `key` of a mapping (`None` for absent keys and non-mappings).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map().and_then(|map| map.get(key))
    }

    /// A list of strings from a list of string values (`None` if any item is not a string).
    pub fn as_str_list(&self) -> Option<Vec<String>> {
        match self {
            Value::List(items) => items.iter().map(|item| item.as_str().map(str::to_owned)).collect(),
            _ => None,
        }
    }
}

impl From<&serde_json::Value> for Value {
    /// A plugin's JSON (a unique key): numbers that are not integers keep
    /// their JSON text.
    fn from(json: &serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => n.as_i64().map(Value::Int).unwrap_or_else(|| Value::Raw(n.to_string())),
            serde_json::Value::String(s) => s.as_str().into(),
            serde_json::Value::Array(items) => Value::List(items.iter().map(Value::from).collect()),
            serde_json::Value::Object(map) => Value::Map(Arc::new(map.iter().map(|(k, v)| (Arc::from(k.as_str()), Value::from(v))).collect())),
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Str(Arc::from(text))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Str(Arc::from(text))
    }
}

impl From<bool> for Value {
    fn from(flag: bool) -> Self {
        Value::Bool(flag)
    }
}

impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Value::Int(number)
    }
}

impl From<Vec<String>> for Value {
    fn from(items: Vec<String>) -> Self {
        Value::List(items.into_iter().map(Value::from).collect())
    }
}

impl<K: Into<Arc<str>>> FromIterator<(K, Value)> for Value {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Value::Map(Arc::new(iter.into_iter().map(|(key, value)| (key.into(), value)).collect()))
    }
}
