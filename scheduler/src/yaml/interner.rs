//! Sharing equal mappings (and equal resolved strings): many elements end up with identical expanded
//! `public`, `environment`, `sandbox` or `config` trees, and one shared copy
//! keeps memory proportional to the distinct trees, not the elements.
//!
//! Key decision: trees are compared by content (keys and scalar text, not
//! provenance); the first tree seen is the one kept.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::node::{Map, Node};

/// Hands out one shared [`Arc<Map>`] per distinct mapping content.
#[derive(Debug, Default)]
pub struct MapInterner {
    by_hash: rustc_hash::FxHashMap<u64, Vec<Arc<Map>>>,
    /// Distinct resolved strings (the values of the base variable tables).
    strings: rustc_hash::FxHashSet<Arc<str>>,
}

fn hash_node<H: Hasher>(node: &Node, h: &mut H) {
    match node {
        Node::Scalar(s) => {
            0u8.hash(h);
            s.value.hash(h);
        }
        Node::Seq(s) => {
            1u8.hash(h);
            s.items.len().hash(h);
            s.items.iter().for_each(|n| hash_node(n, h));
        }
        Node::Map(m) => {
            2u8.hash(h);
            hash_map(m, h);
        }
    }
}

fn hash_map<H: Hasher>(map: &Map, h: &mut H) {
    map.entries.len().hash(h);
    for (k, v) in map.iter() {
        k.hash(h);
        hash_node(v, h);
    }
}

/// Drops growth slack from a tree that is about to be kept for the whole run.
fn shrink_map(map: &mut Map) {
    map.entries.shrink_to_fit();
    map.entries.values_mut().for_each(shrink_node);
}

fn shrink_node(node: &mut Node) {
    match node {
        Node::Scalar(_) => {}
        Node::Seq(s) => {
            s.items.shrink_to_fit();
            s.items.iter_mut().for_each(shrink_node);
        }
        Node::Map(m) => shrink_map(m),
    }
}

/// Content equality (provenance ignored).
pub fn same_content(a: &Map, b: &Map) -> bool {
    a.entries.len() == b.entries.len()
        && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| ka == kb && same_node(va, vb))
}

fn same_node(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::Scalar(x), Node::Scalar(y)) => x.value == y.value,
        (Node::Seq(x), Node::Seq(y)) => x.items.len() == y.items.len() && x.items.iter().zip(&y.items).all(|(p, q)| same_node(p, q)),
        (Node::Map(x), Node::Map(y)) => same_content(x, y),
        _ => false,
    }
}

impl MapInterner {
    /// The shared copy of the string `text`.
    pub fn intern_str(&mut self, text: Arc<str>) -> Arc<str> {
        if let Some(found) = self.strings.get(&text) {
            return found.clone();
        }
        self.strings.insert(text.clone());
        text
    }

    /// The shared copy of `map`'s content.
    pub fn intern(&mut self, map: Map) -> Arc<Map> {
        let mut hasher = rustc_hash::FxHasher::default();
        hash_map(&map, &mut hasher);
        let bucket = self.by_hash.entry(hasher.finish()).or_default();
        if let Some(found) = bucket.iter().find(|m| same_content(m, &map)) {
            return found.clone();
        }
        let mut map = map;
        shrink_map(&mut map);
        let shared = Arc::new(map);
        bucket.push(shared.clone());
        shared
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parser::parse;
    use crate::yaml::FileId;

    #[test]
    fn equal_content_is_shared_and_different_content_is_not() {
        let mut interner = MapInterner::default();
        let a = interner.intern(parse("x: [1, 2]\ny: {z: w}\n", FileId(1)).unwrap());
        let b = interner.intern(parse("x:\n- 1\n- 2\ny:\n  z: w\n", FileId(2)).unwrap());
        let c = interner.intern(parse("x: [1, 2]\ny: {z: v}\n", FileId(1)).unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn equal_strings_are_shared() {
        let mut interner = MapInterner::default();
        let a = interner.intern_str(Arc::from("/usr/bin"));
        let b = interner.intern_str(Arc::from(String::from("/usr") + "/bin"));
        let c = interner.intern_str(Arc::from("/usr/lib"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(&*c, "/usr/lib");
    }
}
