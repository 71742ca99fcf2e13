//! Reading one YAML file into a [`Map`] with provenance, enforcing
//! BuildStream's subset (§1.1): one document, a mapping at the root, no
//! anchors, aliases, custom tags, duplicate keys or non-scalar keys.
//!
//! Key decision: the saphyr event parser is driven directly (no intermediate
//! document model), so positions come straight from the event spans.
//! Mapping keys are shared per thread (see `shared_key`).

use std::sync::Arc;

use saphyr_parser::{Event, Parser, Span as EventSpan};

use super::error::{LoadError, LoadErrorReason, LoadResult};
use super::node::{Map, Node, Scalar, Seq};
use super::provenance::{FileId, Span};

enum Frame {
    Seq(Seq),
    Map { map: Map, key: Option<Scalar>, first: bool },
}

fn malformed(message: impl Into<String>) -> LoadError {
    LoadError::new(LoadErrorReason::InvalidYaml, format!("Malformed YAML:\n\n{}", message.into()))
}

fn span_of(file: FileId, span: &EventSpan) -> Span {
    Span { file, line: span.start.line() as u32, col: span.start.col() as u32 }
}

/// Parses `text` (the contents of the file registered as `file`): through
/// the plain block fast path when the file is in its subset (the same tree),
/// else through saphyr.
pub fn parse(text: &str, file: FileId) -> LoadResult<Map> {
    match super::block_parser::parse_plain_block(text, file) {
        Some(map) => Ok(map),
        None => parse_full(text, file),
    }
}

/// Parses `text` with saphyr's event parser (every YAML form, every error).
pub fn parse_full(text: &str, file: FileId) -> LoadResult<Map> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let line_starts: Vec<usize> =
        std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
    loop {
        let (event, espan) = match parser.next_event() {
            None => break,
            Some(Ok(pair)) => pair,
            Some(Err(e)) => {
                // Provenance names the file; the message keeps the parser's own position.
                let at = Span { file, line: e.marker().line() as u32, col: e.marker().col() as u32 };
                let mut error = malformed(format!("{} at line {} column {}", e.info(), e.marker().line(), e.marker().col() + 1));
                error.at = Some(at);
                return Err(error);
            }
        };
        let span = span_of(file, &espan);
        let node = match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(malformed(format!("more than one document in the file (line {})", span.line)));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(malformed(format!("aliases are not supported (line {} column {})", span.line, span.col)))
            }
            Event::Scalar(value, style, anchor, tag) => {
                check_anchor_tag(anchor, tag.as_deref(), span)?;
                // An empty plain scalar (`key:`) has an empty span.
                let text: &str = if matches!(style, saphyr_parser::ScalarStyle::Plain) && espan.is_empty() {
                    ""
                } else {
                    value.as_ref()
                };
                let text = text.trim();
                let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                let value = if is_key { shared_key(text) } else { Arc::from(text) };
                Node::Scalar(Scalar { value, span })
            }
            Event::SequenceStart(anchor, tag) => {
                check_anchor_tag(anchor, tag.as_deref(), span)?;
                let span = dash_position(text, &line_starts, span);
                stack.push(Frame::Seq(Seq { items: Vec::new(), span }));
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                check_anchor_tag(anchor, tag.as_deref(), span)?;
                stack.push(Frame::Map { map: Map::new(span), key: None, first: true });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(seq)) => Node::Seq(seq),
                _ => return Err(malformed("unbalanced sequence")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map { map, .. }) => Node::Map(map),
                _ => return Err(malformed("unbalanced mapping")),
            },
        };
        match stack.last_mut() {
            None => {
                if root.is_some() {
                    return Err(malformed("more than one root node"));
                }
                root = Some(node);
            }
            Some(Frame::Seq(seq)) => seq.items.push(node),
            Some(Frame::Map { map, key, first }) => match key.take() {
                None => match node {
                    Node::Scalar(s) => {
                        if *first {
                            // Mapping provenance is its first key.
                            map.span = s.span;
                            *first = false;
                        }
                        *key = Some(s);
                    }
                    other => {
                        return Err(malformed(format!(
                            "non-scalar mapping key at line {} column {}",
                            other.span().line,
                            other.span().col
                        )))
                    }
                },
                Some(k) => {
                    if map.entries.contains_key(k.value.as_ref()) {
                        return Err(malformed(format!(
                            "duplicate key '{}' at line {} column {}",
                            k.value, k.span.line, k.span.col
                        )));
                    }
                    map.entries.insert(k.value, node);
                }
            },
        }
    }
    match root {
        None => Ok(Map::new(Span { file, line: 1, col: 0 })),
        Some(Node::Map(map)) => Ok(map),
        Some(Node::Scalar(s)) if s.value.is_empty() => Ok(Map::new(s.span)),
        Some(_) => Err(LoadError::new(
            LoadErrorReason::InvalidYaml,
            "Severely malformed YAML:\n\nLoaded file did not contain a mapping at its root",
        )),
    }
}

/// Distinct mapping keys a thread keeps (beyond, keys are allocated each time).
const MAX_SHARED_KEYS: usize = 4096;

thread_local! {
    /// The mapping keys this thread has parsed: files of one project repeat
    /// the same few dozen keys, so each is allocated once, not once per use.
    static KEYS: std::cell::RefCell<rustc_hash::FxHashSet<Arc<str>>> = Default::default();
}

/// The shared copy of the mapping key `text`.
pub(super) fn shared_key(text: &str) -> Arc<str> {
    KEYS.with(|keys| {
        let mut keys = keys.borrow_mut();
        if let Some(found) = keys.get(text) {
            return found.clone();
        }
        let key: Arc<str> = Arc::from(text);
        if keys.len() < MAX_SHARED_KEYS {
            keys.insert(key.clone());
        }
        key
    })
}

/// A block sequence's event points at its first item; BuildStream reports the
/// position of the `-` before it.
fn dash_position(text: &str, line_starts: &[usize], span: Span) -> Span {
    let Some(&start) = line_starts.get(span.line.saturating_sub(1) as usize) else { return span };
    let line = text[start..].split('\n').next().unwrap_or("");
    let before: Vec<char> = line.chars().take(span.col as usize).collect();
    if line.chars().nth(span.col as usize) == Some('[') {
        return span;
    }
    let mut i = before.len();
    while i > 0 && before[i - 1] == ' ' {
        i -= 1;
    }
    if i > 0 && before[i - 1] == '-' {
        return Span { col: (i - 1) as u32, ..span };
    }
    span
}

fn check_anchor_tag(anchor: usize, tag: Option<&saphyr_parser::Tag>, span: Span) -> LoadResult<()> {
    if anchor != 0 {
        return Err(malformed(format!("anchors are not supported (line {} column {})", span.line, span.col)));
    }
    if let Some(tag) = tag {
        let core = tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" || tag.is_yaml_core_schema();
        if !core {
            return Err(malformed(format!(
                "unsupported tag '{}{}' at line {} column {}",
                tag.handle, tag.suffix, span.line, span.col
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> LoadResult<Map> {
        parse(text, FileId(1))
    }

    #[test]
    fn scalars_are_untyped_and_stripped() {
        let m = p("a: True\nb:\nc: |\n  x\n  y\nd: ~\ne: ' sp '\n").unwrap();
        assert_eq!(m.get("a").and_then(Node::as_str), Some("True"));
        assert_eq!(m.get("b").and_then(Node::as_str), Some(""));
        assert_eq!(m.get("c").and_then(Node::as_str), Some("x\ny"));
        assert_eq!(m.get("d").and_then(Node::as_str), Some("~"));
        assert_eq!(m.get("e").and_then(Node::as_str), Some("sp"));
    }

    #[test]
    fn positions_are_one_based_lines_zero_based_columns() {
        let m = p("kind: manual\n\nvariables:\n  a: \"%{b}\"\nlist:\n- x\n").unwrap();
        let vars = m.get_map("variables").unwrap().unwrap();
        assert_eq!((vars.span.line, vars.span.col), (4, 2));
        let a = vars.get("a").unwrap().span();
        assert_eq!((a.line, a.col), (4, 5));
        let list = m.get("list").unwrap().span();
        assert_eq!((list.line, list.col), (6, 0));
    }

    #[test]
    fn subset_violations_are_invalid_yaml() {
        for bad in ["a: &x 1\nb: *x\n", "a: 1\na: 2\n", "- a\n", "a: !foo x\n", "a: 1\n---\nb: 2\n", "? [a]\n: 1\n", "a: [\n"] {
            let err = p(bad).unwrap_err();
            assert_eq!(err.reason(), Some(LoadErrorReason::InvalidYaml), "{bad:?}");
        }
    }

    #[test]
    fn mapping_keys_are_shared_between_parses() {
        let a = p("kind: manual\nvariables:\n  kind: x\n").unwrap();
        let b = p("kind: import\n").unwrap();
        let key = |m: &Map| m.entries.keys().next().cloned().unwrap();
        assert!(Arc::ptr_eq(&key(&a), &key(&b)));
        assert!(Arc::ptr_eq(&key(&a), &key(a.get_map("variables").unwrap().unwrap())));
        // Values are not keys: each parse has its own.
        assert_eq!(a.get("kind").and_then(Node::as_str), Some("manual"));
    }

    #[test]
    fn empty_file_is_empty_mapping() {
        assert!(p("").unwrap().is_empty());
        assert!(p("# comment\n").unwrap().is_empty());
    }
}
