//! Typed reads of configuration values, with BuildStream's scalar rules (spec §5.1).
//!
//! It owns the conversions plugins make with `get_bool`, `get_int`, `get_str`
//! and `get_str_list`, of key values ([`Value`]) and of the loader's YAML
//! nodes (`node_*`, for configurations read in place). Key decision: YAML
//! scalars arrive as strings, so a boolean accepts only `True/true/1` and
//! `False/false/0` and an integer is parsed like Python's `int()`; a value
//! of the wrong shape is an [`CacheKeyError::InvalidConfig`] naming the
//! element and field.

use super::value::Value;
use super::CacheKeyError;
use crate::yaml::Node;

fn invalid(element: &str, field: &str, expected: &str) -> CacheKeyError {
    CacheKeyError::InvalidConfig { element: element.to_owned(), detail: format!("{field}: expected {expected}") }
}

/// A boolean (`get_bool`).
pub fn read_bool(element: &str, field: &str, value: &Value) -> Result<bool, CacheKeyError> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::Str(text) => text_bool(element, field, text),
        _ => Err(invalid(element, field, "a boolean")),
    }
}

/// A boolean scalar of a YAML node (`get_bool`).
pub fn node_bool(element: &str, field: &str, node: &Node) -> Result<bool, CacheKeyError> {
    match node.as_str() {
        Some(text) => text_bool(element, field, text),
        None => Err(invalid(element, field, "a boolean")),
    }
}

fn text_bool(element: &str, field: &str, text: &str) -> Result<bool, CacheKeyError> {
    match text {
        "True" | "true" | "1" => Ok(true),
        "False" | "false" | "0" => Ok(false),
        _ => Err(invalid(element, field, "a boolean (True/true/1 or False/false/0)")),
    }
}

/// An integer (`get_int`, Python `int()` of the string).
pub fn read_int(element: &str, field: &str, value: &Value) -> Result<i64, CacheKeyError> {
    match value {
        Value::Int(number) => Ok(*number),
        Value::Str(text) => {
            let trimmed = text.trim();
            let digits = trimmed.trim_start_matches(['+', '-']);
            let well_formed = trimmed.len() - digits.len() <= 1
                && !digits.is_empty()
                && !digits.starts_with('_')
                && !digits.ends_with('_')
                && !digits.contains("__")
                && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
            if !well_formed {
                return Err(invalid(element, field, "an integer"));
            }
            trimmed.replace('_', "").parse().map_err(|_| invalid(element, field, "an integer"))
        }
        _ => Err(invalid(element, field, "an integer")),
    }
}

/// A string scalar (`get_str`; booleans and integers read back as text).
pub fn read_str(element: &str, field: &str, value: &Value) -> Result<String, CacheKeyError> {
    match value {
        Value::Str(text) => Ok(text.to_string()),
        Value::Bool(flag) => Ok(if *flag { "True" } else { "False" }.to_owned()),
        Value::Int(number) => Ok(number.to_string()),
        _ => Err(invalid(element, field, "a string")),
    }
}

/// A string scalar of a YAML node (`get_str`).
pub fn node_str<'n>(element: &str, field: &str, node: &'n Node) -> Result<&'n str, CacheKeyError> {
    node.as_str().ok_or_else(|| invalid(element, field, "a string"))
}

/// A list of strings of a YAML node (`get_str_list`).
pub fn node_str_list(element: &str, field: &str, node: &Node) -> Result<Vec<String>, CacheKeyError> {
    match node {
        Node::Seq(seq) => seq.items.iter().map(|item| node_str(element, field, item).map(str::to_owned)).collect(),
        _ => Err(invalid(element, field, "a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{FileId, Seq, Span};

    fn scalar(text: &str) -> Node {
        Node::scalar(text, Span::synthetic(FileId(0)))
    }

    #[test]
    fn node_strings_and_lists() {
        let span = Span::synthetic(FileId(0));
        assert_eq!(node_str("e", "f", &scalar("x")).unwrap(), "x");
        let list = Node::Seq(Seq { items: vec![scalar("a"), scalar("b")], span });
        assert_eq!(node_str_list("e", "f", &list).unwrap(), ["a", "b"]);
        assert!(node_str("e", "f", &list).is_err(), "a list is not a string");
        assert!(node_str_list("e", "f", &scalar("a")).is_err(), "a string is not a list");
        let nested = Node::Seq(Seq { items: vec![list.clone()], span });
        assert!(node_str_list("e", "f", &nested).is_err(), "a list item must be a string");
    }

    #[test]
    fn booleans_accept_only_buildstream_spellings() {
        for yes in ["True", "true", "1"] {
            assert!(read_bool("e", "f", &yes.into()).unwrap());
            assert!(node_bool("e", "f", &scalar(yes)).unwrap());
        }
        for no in ["False", "false", "0"] {
            assert!(!read_bool("e", "f", &no.into()).unwrap());
            assert!(!node_bool("e", "f", &scalar(no)).unwrap());
        }
        for bad in ["yes", "TRUE", "on", ""] {
            assert!(read_bool("e", "f", &bad.into()).is_err(), "{bad}");
            assert!(node_bool("e", "f", &scalar(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_parse_like_python_int() {
        assert_eq!(read_int("e", "f", &"20".into()).unwrap(), 20);
        assert_eq!(read_int("e", "f", &" -7 ".into()).unwrap(), -7);
        assert_eq!(read_int("e", "f", &"1_000".into()).unwrap(), 1000);
        for bad in ["", "0x10", "1.5", "--1", "_1", "a"] {
            assert!(read_int("e", "f", &bad.into()).is_err(), "{bad}");
        }
    }
}
