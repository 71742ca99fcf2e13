//! Composition of one mapping onto another and the list directives `(>)`,
//! `(<)`, `(=)` (spec §2).
//!
//! Key decision: the source mapping is taken by value and moved into the
//! target, so composing a freshly cloned layer costs no second copy.

use std::sync::Arc;

use super::error::{LoadError, LoadErrorReason, LoadResult};
use super::node::{Map, Node, Seq};

const APPEND: &str = "(>)";
const PREPEND: &str = "(<)";
const OVERWRITE: &str = "(=)";

/// Composes `src` onto `dst` (`src` wins; unmentioned keys of `dst` stay).
pub fn compose(src: Map, dst: &mut Map) -> LoadResult<()> {
    let mut path = Vec::new();
    compose_map(src, dst, &mut path)
}

fn composite_error(span: super::provenance::Span, path: &[Arc<str>], detail: &str) -> LoadError {
    let joined: Vec<&str> = path.iter().map(|s| s.as_ref()).collect();
    LoadError::at(
        span,
        LoadErrorReason::IllegalComposite,
        format!("Failure composing [{}]: {}", joined.join("."), detail),
    )
}

fn compose_map(src: Map, dst: &mut Map, path: &mut Vec<Arc<str>>) -> LoadResult<()> {
    if !src.span.is_synthetic() {
        dst.span = src.span;
    }
    for (key, s) in src.entries {
        path.push(key.clone());
        compose_value(key, s, dst, path)?;
        path.pop();
    }
    Ok(())
}

fn compose_value(key: Arc<str>, s: Node, dst: &mut Map, path: &mut Vec<Arc<str>>) -> LoadResult<()> {
    match s {
        Node::Scalar(_) => match dst.get(&key) {
            None | Some(Node::Scalar(_)) => {
                dst.insert(key, s);
            }
            Some(_) => return Err(composite_error(s.span(), path, "Cannot compose scalar on non-scalar")),
        },
        Node::Seq(seq) => match dst.get_mut(&key) {
            Some(Node::Seq(t)) if key.as_ref() == "(?)" => t.items.extend(seq.items),
            None | Some(Node::Seq(_)) => {
                dst.insert(key, Node::Seq(seq));
            }
            Some(Node::Map(m)) if m.is_directive()? => {
                dst.insert(key, Node::Seq(seq));
            }
            Some(_) => return Err(composite_error(seq.span, path, "List cannot overwrite value")),
        },
        Node::Map(map) => {
            if map.is_directive()? {
                match dst.get_mut(&key) {
                    None => {
                        dst.insert(key, Node::Map(map));
                    }
                    Some(Node::Seq(t)) => apply_directives(map, t),
                    Some(Node::Map(t)) if t.is_directive()? => merge_directives(map, t),
                    Some(_) => return Err(composite_error(map.span, path, "Cannot compose lists onto non-list value")),
                }
            } else {
                match dst.get_mut(&key) {
                    None => {
                        let mut fresh = Map::new(map.span);
                        compose_map(map, &mut fresh, path)?;
                        dst.insert(key, Node::Map(fresh));
                    }
                    Some(Node::Map(t)) => compose_map(map, t, path)?,
                    Some(_) => return Err(composite_error(map.span, path, "Cannot compose dictionary onto non-dictionary value")),
                }
            }
        }
    }
    Ok(())
}

fn directive_items(map: &mut Map, key: &str) -> Option<Vec<Node>> {
    match map.remove(key) {
        Some(Node::Seq(seq)) => Some(seq.items),
        Some(other) => Some(vec![other]),
        None => None,
    }
}

/// Applies a directive mapping to a list.
fn apply_directives(mut directives: Map, target: &mut Seq) {
    if let Some(items) = directive_items(&mut directives, OVERWRITE) {
        target.items = items;
    }
    if let Some(mut items) = directive_items(&mut directives, PREPEND) {
        items.append(&mut target.items);
        target.items = items;
    }
    if let Some(items) = directive_items(&mut directives, APPEND) {
        target.items.extend(items);
    }
}

fn seq_node(items: Vec<Node>, span: super::provenance::Span) -> Node {
    Node::Seq(Seq { items, span })
}

/// Merges a directive mapping onto a pending directive mapping of a lower layer.
fn merge_directives(mut src: Map, dst: &mut Map) {
    let span = src.span;
    if let Some(items) = directive_items(&mut src, OVERWRITE) {
        dst.insert(OVERWRITE, seq_node(items, span));
        let prepend = directive_items(&mut src, PREPEND).unwrap_or_default();
        dst.insert(PREPEND, seq_node(prepend, span));
        let append = directive_items(&mut src, APPEND).unwrap_or_default();
        dst.insert(APPEND, seq_node(append, span));
    } else {
        if let Some(mut items) = directive_items(&mut src, PREPEND) {
            let mut existing = directive_items(dst, PREPEND).unwrap_or_default();
            items.append(&mut existing);
            dst.insert(PREPEND, seq_node(items, span));
        }
        if let Some(items) = directive_items(&mut src, APPEND) {
            let mut existing = directive_items(dst, APPEND).unwrap_or_default();
            existing.extend(items);
            dst.insert(APPEND, seq_node(existing, span));
        }
    }
    dst.span = span;
}

/// Fails with `TRAILING_LIST_DIRECTIVE` if any list directive is left in `map`
/// (at any depth): it found no list to apply to.
pub fn check_trailing_directives(map: &Map) -> LoadResult<()> {
    for (key, value) in map.iter() {
        if super::node::DIRECTIVE_KEYS.contains(&key.as_ref()) {
            return Err(LoadError::at(
                value.span(),
                LoadErrorReason::TrailingListDirective,
                "Attempt to override non-existing list",
            ));
        }
        check_node(value)?;
    }
    Ok(())
}

fn check_node(node: &Node) -> LoadResult<()> {
    match node {
        Node::Map(m) => check_trailing_directives(m),
        Node::Seq(s) => s.items.iter().try_for_each(check_node),
        Node::Scalar(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parser::parse;
    use crate::yaml::provenance::FileId;

    fn m(text: &str) -> Map {
        parse(text, FileId(1)).unwrap()
    }

    fn list(map: &Map, key: &str) -> Vec<String> {
        map.get_seq(key).unwrap().unwrap().items.iter().map(|n| n.as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn directives_apply_to_lower_lists() {
        let mut dst = m("l: [a, b]\nk: x\n");
        compose(m("l:\n  (<): [p]\n  (>): [z]\n"), &mut dst).unwrap();
        assert_eq!(list(&dst, "l"), ["p", "a", "b", "z"]);
        assert_eq!(dst.get_str("k").unwrap(), Some("x"));
        compose(m("l:\n  (=): [only]\n"), &mut dst).unwrap();
        assert_eq!(list(&dst, "l"), ["only"]);
    }

    #[test]
    fn pending_directives_merge_and_trail() {
        let mut dst = m("l:\n  (>): [a]\n");
        compose(m("l:\n  (>): [b]\n"), &mut dst).unwrap();
        let err = check_trailing_directives(&dst).unwrap_err();
        assert_eq!(err.reason(), Some(LoadErrorReason::TrailingListDirective));
        let mut base = m("l: [x]\n");
        compose(dst, &mut base).unwrap();
        assert_eq!(list(&base, "l"), ["x", "a", "b"]);
    }

    #[test]
    fn type_clashes_are_illegal_composite() {
        let mut dst = m("a: [x]\n");
        let err = compose(m("a: scalar\n"), &mut dst).unwrap_err();
        assert_eq!(err.reason(), Some(LoadErrorReason::IllegalComposite));
        let mut dst = m("a: x\n");
        let err = compose(m("a: {b: c}\n"), &mut dst).unwrap_err();
        assert_eq!(err.reason(), Some(LoadErrorReason::IllegalComposite));
        let mut dst = m("a: x\n");
        let err = compose(m("a:\n  (>): [x]\n  b: c\n"), &mut dst).unwrap_err();
        assert_eq!(err.reason(), Some(LoadErrorReason::InvalidData));
    }
}
