//! Conversion of the loader's YAML nodes into key values (BuildStream's
//! `strip_node_info()`).
//!
//! It owns [`node_to_value`] and [`map_to_value`]. Key decision: scalars stay
//! strings (spec §5.1) and provenance is dropped; only plugins turn strings
//! into booleans or integers, which [`super::plugin_key`] does.

use crate::yaml::{Map, Node};

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
}
