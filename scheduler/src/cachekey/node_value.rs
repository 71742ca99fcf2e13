//! The loader's YAML nodes as key values (BuildStream's `strip_node_info()`).
//!
//! It owns [`node_to_value`], [`map_to_value`] and [`write_node`] (a node's
//! canonical text, written without converting it first). Key decision:
//! scalars stay strings (spec §5.1) and provenance is dropped; only plugins
//! turn strings into booleans or integers, which [`super::plugin_key`] does.

use crate::yaml::{Map, Node};

use super::canonical::{write_array, write_object, write_string};
use super::value::Value;

/// The key value of a node.
pub fn node_to_value(node: &Node) -> Value {
    match node {
        Node::Scalar(scalar) => Value::Str(scalar.value.clone()),
        Node::Seq(seq) => Value::List(seq.items.iter().map(node_to_value).collect()),
        Node::Map(map) => map_to_value(map),
    }
}

/// The key value of a mapping.
pub fn map_to_value(map: &Map) -> Value {
    map.iter().map(|(key, node)| (key.clone(), node_to_value(node))).collect()
}

/// Appends the canonical text of `node` to `out`: the same text as
/// `write_canonical(&node_to_value(node))`, members of mappings in
/// code-point order.
pub fn write_node(node: &Node, out: &mut String) {
    match node {
        Node::Scalar(scalar) => write_string(&scalar.value, out),
        Node::Seq(seq) => write_array(&seq.items, out, write_node),
        Node::Map(map) => {
            let mut members: Vec<_> = map.iter().collect();
            // Byte order of UTF-8 is code-point order.
            members.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            write_object(members, out, write_node);
        }
    }
}

/// The YAML mapping a test writes as a key value: the inverse of
/// [`map_to_value`] (booleans and integers become the scalars YAML would
/// have given; `null` and raw text have no YAML form and are left out).
#[cfg(test)]
pub(crate) fn value_to_map(value: &Value) -> Map {
    let mut map = Map::default();
    for (key, member) in value.as_map().into_iter().flatten() {
        if let Some(node) = value_to_node(member) {
            map.insert(key.clone(), node);
        }
    }
    map
}

#[cfg(test)]
fn value_to_node(value: &Value) -> Option<Node> {
    let span = crate::yaml::Span::synthetic(crate::yaml::FileId(0));
    Some(match value {
        Value::Null | Value::Raw(_) => return None,
        Value::Bool(flag) => Node::scalar(if *flag { "True" } else { "False" }, span),
        Value::Int(number) => Node::scalar(number.to_string(), span),
        Value::Str(text) => Node::scalar(text.clone(), span),
        Value::List(items) => Node::Seq(crate::yaml::Seq { items: items.iter().filter_map(value_to_node).collect(), span }),
        Value::Map(_) => Node::Map(value_to_map(value)),
    })
}

#[cfg(test)]
mod tests {
    use super::super::canonical::to_canonical;
    use super::*;
    use crate::yaml::{FileId, Span};

    #[test]
    fn nodes_become_plain_values_in_key_order() {
        let span = Span::synthetic(FileId(0));
        let mut inner = Map::new(span);
        inner.insert("z", Node::scalar("True", span));
        inner.insert("a", Node::Seq(crate::yaml::Seq { items: vec![Node::scalar("20", span)], span }));
        let mut outer = Map::new(span);
        outer.insert("config", Node::Map(inner));
        assert_eq!(to_canonical(&map_to_value(&outer)), r#"{"config":{"a":["20"],"z":"True"}}"#);
    }

    #[test]
    fn nodes_are_written_as_their_values_are() {
        let span = Span::synthetic(FileId(0));
        let mut map = Map::new(span);
        // Insertion order is not code-point order; "Z" < "a" < "é".
        for key in ["é", "b", "a", "Z", "a/b"] {
            map.insert(key, Node::scalar(format!("\"{key}\"\n"), span));
        }
        let mut nested = map.clone();
        nested.insert("list", Node::Seq(crate::yaml::Seq { items: vec![Node::Map(map.clone()), Node::scalar("", span)], span }));
        nested.insert("empty", Node::Map(Map::new(span)));
        for map in [Map::new(span), map, nested] {
            let node = Node::Map(map);
            let mut written = String::new();
            write_node(&node, &mut written);
            assert_eq!(written, to_canonical(&node_to_value(&node)));
        }
    }

    #[test]
    fn test_values_become_maps_and_back() {
        let value: Value = [
            ("s", Value::from("x")),
            ("l", Value::List(vec!["a".into(), "b".into()])),
            ("m", [("k", Value::from("v"))].into_iter().collect()),
        ]
        .into_iter()
        .collect();
        assert_eq!(map_to_value(&value_to_map(&value)), value);
    }
}
