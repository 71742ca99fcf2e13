//! A fast path for the plain block style most element files are written in:
//! mappings and sequences by indentation, one-line plain and quoted scalars,
//! comments. It builds exactly the tree [`super::parser::parse`] builds from
//! saphyr's events (values, spans, order, shared keys), and declines
//! (`None`) anything else, which the full parser then reads.
//!
//! Key decision: decline early rather than interpret. Anything beyond the
//! subset below sends the whole file to the full parser, which also gives
//! every error: tabs, carriage returns, non-ASCII text, directives and
//! document markers, flow collections, block scalars, anchors, aliases and
//! tags, control characters, multi-line or escaped scalars, empty values,
//! quoted or complex keys,
//! duplicate keys, and any indentation it cannot pair with a parent.

use std::sync::Arc;

use super::node::{Entries, Map, Node, Scalar, Seq};
use super::parser::shared_key;
use super::provenance::{FileId, Span};

/// One line with content: its number (from 1), indentation and text after it
/// (a trailing comment is still there: only scalars know where it starts).
#[derive(Clone, Copy)]
struct Line<'a> {
    number: u32,
    indent: usize,
    text: &'a str,
}

/// The file as a mapping, or `None` when it is not in the plain subset.
pub fn parse_plain_block(text: &str, file: FileId) -> Option<Map> {
    if text.bytes().any(|b| !(b == b'\n' || (0x20..0x7f).contains(&b))) {
        return None;
    }
    let mut lines = Vec::with_capacity(text.len() / 24);
    for (index, raw) in text.split('\n').enumerate() {
        let content = raw.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if content.starts_with("---") || content.starts_with("...") || content.starts_with('%') {
            return None;
        }
        lines.push(Line { number: index as u32 + 1, indent: raw.len() - content.len(), text: content.trim_end_matches(' ') });
    }
    let first = lines.first()?;
    if first.indent != 0 {
        return None;
    }
    let mut parser = BlockParser { lines: &lines, next: 0, file };
    let root = parser.mapping(0, None)?;
    (parser.next == lines.len()).then_some(root)
}

struct BlockParser<'a, 'l> {
    lines: &'l [Line<'a>],
    /// The next line to read.
    next: usize,
    file: FileId,
}

impl<'a> BlockParser<'a, '_> {
    fn span(&self, line: u32, col: usize) -> Span {
        Span { file: self.file, line, col: col as u32 }
    }

    /// The line to read next, if it is at `indent`.
    fn at(&self, indent: usize) -> Option<Line<'a>> {
        self.lines.get(self.next).copied().filter(|l| l.indent == indent)
    }

    /// The entries of the block about to be read at `indent`, so that its
    /// mapping or list is allocated once, at its size: the lines at
    /// `indent` that are sequence items (`items`) or keys, up to the first
    /// line left of `indent` (for items, also up to the first key at
    /// `indent`: a list written at its key's column ends there).
    fn count_at(&self, indent: usize, items: bool) -> usize {
        self.lines[self.next.min(self.lines.len())..]
            .iter()
            .take_while(|l| l.indent > indent || (l.indent == indent && (!items || is_item(l.text))))
            .filter(|l| l.indent == indent && is_item(l.text) == items)
            .count()
    }

    /// A mapping whose keys are at column `indent`; `first` is an entry that
    /// already started on a sequence item's line (`- key: ...`).
    fn mapping(&mut self, indent: usize, first: Option<(u32, &'a str)>) -> Option<Map> {
        let size = self.count_at(indent, false) + usize::from(first.is_some());
        let mut map: Option<Map> = None;
        let mut pending = first;
        loop {
            let (number, text) = match pending.take() {
                Some(entry) => entry,
                None => match self.at(indent) {
                    Some(line) if !is_item(line.text) => {
                        self.next += 1;
                        (line.number, line.text)
                    }
                    _ => break,
                },
            };
            let (key, rest) = split_key(text)?;
            let key_span = self.span(number, indent);
            let value = match rest {
                "" => self.nested(indent)?,
                rest => {
                    let value = self.inline_scalar(rest, number, indent + (text.len() - rest.len()))?;
                    // A deeper line after a one-line value: a continuation or an error.
                    if self.lines.get(self.next).is_some_and(|l| l.indent > indent) {
                        return None;
                    }
                    value
                }
            };
            let map = map.get_or_insert_with(|| Map { entries: Entries::with_capacity_and_hasher(size, Default::default()), span: key_span });
            if map.entries.insert(shared_key(key), value).is_some() {
                // A duplicate key.
                return None;
            }
        }
        map
    }

    /// The block under a key written with no value on its line: a deeper
    /// mapping or sequence, or a sequence at the key's own column.
    fn nested(&mut self, indent: usize) -> Option<Node> {
        let line = self.lines.get(self.next).copied()?;
        if line.indent == indent && is_item(line.text) {
            return self.sequence(indent).map(Node::Seq);
        }
        if line.indent <= indent {
            // An empty value.
            return None;
        }
        if is_item(line.text) {
            self.sequence(line.indent).map(Node::Seq)
        } else {
            self.mapping(line.indent, None).map(Node::Map)
        }
    }

    /// A sequence whose dashes are at column `indent`.
    fn sequence(&mut self, indent: usize) -> Option<Seq> {
        let size = self.count_at(indent, true);
        let mut seq: Option<Seq> = None;
        while let Some(line) = self.at(indent).filter(|l| is_item(l.text)) {
            self.next += 1;
            let after_dash = &line.text[1..];
            let item_text = after_dash.trim_start_matches(' ');
            let item_col = indent + 1 + (after_dash.len() - item_text.len());
            let seq = seq.get_or_insert_with(|| Seq { items: Vec::with_capacity(size), span: self.span(line.number, indent) });
            if item_text.starts_with('-') && (item_text.len() == 1 || item_text.as_bytes()[1] == b' ') {
                return None;
            }
            let item = if split_key(item_text).is_some() {
                Node::Map(self.mapping(item_col, Some((line.number, item_text)))?)
            } else {
                let item = self.inline_scalar(item_text, line.number, item_col)?;
                if self.lines.get(self.next).is_some_and(|l| l.indent > indent) {
                    return None;
                }
                item
            };
            seq.items.push(item);
        }
        seq
    }

    /// A one-line scalar written at `col`: plain, or quoted with nothing but
    /// a comment after it.
    fn inline_scalar(&self, text: &'a str, number: u32, col: usize) -> Option<Node> {
        let span = self.span(number, col);
        let value: Arc<str> = match *text.as_bytes().first()? {
            b'"' => {
                let inner = &text[1..];
                let end = inner.find('"')?;
                if inner.as_bytes()[..end].contains(&b'\\') || !only_comment(&inner[end + 1..]) {
                    return None;
                }
                Arc::from(inner[..end].trim())
            }
            b'\'' => {
                let (value, rest) = single_quoted(&text[1..])?;
                if !only_comment(rest) {
                    return None;
                }
                Arc::from(value.trim())
            }
            _ => Arc::from(plain(text)?),
        };
        Some(Node::Scalar(Scalar { value, span }))
    }
}

/// Whether a line is a sequence item (`- ...` or a lone `-`).
fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key: rest` or `key:` with a plain key; `None` for anything else.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let first = *text.as_bytes().first()?;
    if b"-?:,[]{}#&*!|>'\"%@`".contains(&first) {
        return None;
    }
    let (key, rest) = match find_pair(text, *b": ") {
        Some(at) => (&text[..at], text[at + 2..].trim_start_matches(' ')),
        None => (text.strip_suffix(':')?, ""),
    };
    if find_pair(key, *b" #").is_some() || key.as_bytes().contains(&b':') || key.ends_with(' ') {
        return None;
    }
    if rest.starts_with('#') {
        // `key: # comment`: an empty value.
        return None;
    }
    Some((key, rest))
}

/// A plain scalar's text (before a ` #` comment), or `None` if it is not a
/// one-line plain scalar that means the same to every YAML reader.
fn plain(text: &str) -> Option<&str> {
    let first = *text.as_bytes().first()?;
    if b"?:,[]{}#&*!|>'\"%@`".contains(&first) || (first == b'-' && text.as_bytes().get(1).is_none_or(|b| *b == b' ')) {
        return None;
    }
    let body = match find_pair(text, *b" #") {
        Some(at) => &text[..at],
        None => text,
    }
    .trim_end_matches(' ');
    if find_pair(body, *b": ").is_some() || body.ends_with(':') {
        return None;
    }
    Some(body)
}

/// Where the two bytes `pair` first occur in `text`. A plain scan: the
/// texts are a line or less, where `str::find` with a string pattern spent
/// more time setting up its searcher than searching (a tenth of parsing).
pub(crate) fn find_pair(text: &str, pair: [u8; 2]) -> Option<usize> {
    text.as_bytes().windows(2).position(|window| window == pair)
}

/// The rest of a single-quoted scalar after its opening quote: its value
/// (`''` is a quote) and what follows the closing quote.
fn single_quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let end = rest.find('\'')?;
        value.push_str(&rest[..end]);
        rest = &rest[end + 1..];
        match rest.strip_prefix('\'') {
            Some(after) => {
                value.push('\'');
                rest = after;
            }
            None => return Some((value, rest)),
        }
    }
}

/// Whether what follows a quoted scalar is nothing or a comment.
fn only_comment(rest: &str) -> bool {
    let trimmed = rest.trim_start_matches(' ');
    trimmed.is_empty() || (trimmed.starts_with('#') && trimmed.len() < rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parser::parse_full;

    /// The fast path must give exactly the full parser's tree, or decline.
    fn agrees(text: &str) -> bool {
        let fast = parse_plain_block(text, FileId(3));
        if let Some(fast) = &fast {
            let full = parse_full(text, FileId(3)).unwrap_or_else(|e| panic!("fast path accepted what the parser refuses: {text:?}: {e:?}"));
            assert_eq!(format!("{fast:?}"), format!("{full:?}"), "{text:?}");
        }
        fast.is_some()
    }

    #[test]
    fn the_plain_subset_gives_the_full_parsers_tree() {
        let accepted = [
            "kind: manual\n",
            "kind: manual\ndescription: \"A thing: quoted\"\n\n# comment\nbuild-depends:\n- base.bst\n- filename: x.bst\n  type: build\ndepends:\n  - a.bst # why\n",
            "variables:\n  conf-local: \"--with-x=1\"\n  make: make  \n  odd: 'it''s'\n  hash: a#b\n  (?):\n  - debug:\n      x: y\n",
            "sources:\n- kind: tar\n  url: forge:x/y.tar.xz\n  ref: 4fdb67d5\n-   kind: local\n    path: files\n",
            "a:\n  b:\n    c: d\n  e: f\ng: h\n",
            "config:\n  commands:\n  - \"make -C %{x}\"\n  - 'rm -f %{y}/*.la'\n  - -j1\n",
            "a: 1 # comment\nb: ' padded '  # c\n",
        ];
        for text in accepted {
            assert!(agrees(text), "declined: {text:?}");
        }
    }

    #[test]
    fn pairs_are_found_at_their_first_place() {
        assert_eq!(find_pair("a: b: c", *b": "), Some(1));
        assert_eq!(find_pair("a:b #c #d", *b" #"), Some(3));
        assert_eq!(find_pair("a:", *b": "), None);
        assert_eq!(find_pair("", *b": "), None);
    }

    #[test]
    fn everything_else_is_left_to_the_full_parser() {
        let declined = [
            "",
            "# only a comment\n",
            "a: [x, y]\n",
            "a: {x: y}\n",
            "a: |\n  x\n",
            "a: >\n  x\n",
            "a: &x 1\nb: *x\n",
            "a: !tag x\n",
            "a: \"esc\\n\"\n",
            "a: \"multi\n  line\"\n",
            "a: plain\n  continued\n",
            "a:\nb: c\n",
            "a: # empty\n",
            "a: 1\na: 2\n",
            "\"quoted key\": x\n",
            "? complex\n: x\n",
            "a:\tb\n",
            "a: b\r\n",
            "a: é\n",
            "---\na: b\n",
            "a: b: c\n",
            "a: %{x}\n",
            "- a\n",
            "  a: b\n",
            "a:\n  b: c\n d: e\n",
            "a:\n- - x\n",
            "a:\n-\n  b: c\n",
            "a: - b\n",
            "a: 'x' y\n",
            "(?):\n- 'flavour == \"full\"':\n    x: y\n",
            "a: b\x07\n",
        ];
        for text in declined {
            assert!(!agrees(text), "accepted: {text:?}");
        }
    }

    /// Random documents: block-style trees rendered with random indentation
    /// steps, compact or indented sequences, tricky scalars and keys, and
    /// some lines damaged afterwards (indent, comments, blank lines).
    /// Whenever the fast path accepts one, its tree is the full parser's.
    mod random_documents {
        use super::agrees;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Tree {
            Scalar(&'static str),
            Map(Vec<(&'static str, Tree)>),
            Seq(Vec<Tree>),
        }

        const KEYS: [&str; 12] = ["a", "b", "c", "d", "kind", "sources", "x y", "a#b", "k-1", "(>)", "\"q\"", "? k"];
        const SCALARS: [&str; 28] = [
            "v", "w", "y/%{x}", "\"q\"", "'s'", "'it''s'", "-j1", "x #c", "x#c", "~", "True", "a:b", "' pad '",
            "\"d: q\"", "[1]", "{a: b}", "|", "&a x", "*a", "a: b", "v:", "- x", "\"a\\\"b\"", "'open", "\"q\" #c", "!t v",
            "@x", "1.5",
        ];

        fn tree() -> impl Strategy<Value = Tree> {
            // Mostly plain values, so that many documents are in the subset.
            let scalar = prop_oneof![
                4 => prop::sample::select(&SCALARS[..12]).prop_map(Tree::Scalar),
                1 => prop::sample::select(&SCALARS[..]).prop_map(Tree::Scalar),
            ];
            scalar.prop_recursive(4, 40, 5, |inner| {
                prop_oneof![
                    prop::collection::vec((prop::sample::select(&KEYS[..]), inner.clone()), 1..4).prop_map(Tree::Map),
                    prop::collection::vec(inner, 1..4).prop_map(Tree::Seq),
                ]
            })
        }

        /// Renders `tree` as the value of a key (or a sequence item) at `indent`.
        fn render(tree: &Tree, indent: usize, step: usize, compact: bool, out: &mut Vec<String>, lead: String) {
            let pad = " ".repeat(indent);
            match tree {
                Tree::Scalar(v) => out.push(format!("{lead} {v}")),
                Tree::Map(entries) => {
                    out.push(lead);
                    for (k, v) in entries {
                        render(v, indent + step, step, compact, out, format!("{pad}{}{k}:", " ".repeat(step)));
                    }
                }
                Tree::Seq(items) => {
                    out.push(lead);
                    let dash = if compact { indent } else { indent + step };
                    for item in items {
                        match item {
                            Tree::Map(entries) if !entries.is_empty() => {
                                let (k, v) = &entries[0];
                                let mut first = Vec::new();
                                render(v, dash + 2, step, compact, &mut first, format!("{}- {k}:", " ".repeat(dash)));
                                out.extend(first);
                                for (k, v) in &entries[1..] {
                                    render(v, dash + 2, step, compact, out, format!("{}{k}:", " ".repeat(dash + 2)));
                                }
                            }
                            other => render(other, dash, step, compact, out, format!("{}-", " ".repeat(dash))),
                        }
                    }
                }
            }
        }

        /// A document: a root mapping of `entries`, then damage.
        fn document() -> impl Strategy<Value = String> {
            let entries = prop::collection::vec((prop::sample::select(&KEYS[..]), tree()), 1..4);
            let damage = prop::collection::vec((any::<prop::sample::Index>(), 0..6usize), 0..2);
            (entries, 1..4usize, any::<bool>(), damage).prop_map(|(entries, step, compact, damage)| {
                let mut lines = Vec::new();
                for (k, v) in &entries {
                    render(v, 0, step, compact, &mut lines, format!("{k}:"));
                }
                for (at, kind) in damage {
                    let i = at.index(lines.len());
                    match kind {
                        0 => lines[i].insert(0, ' '),
                        1 => {
                            if lines[i].starts_with(' ') {
                                lines[i].remove(0);
                            }
                        }
                        2 => lines.insert(i, "# a comment".into()),
                        3 => lines.insert(i, String::new()),
                        4 => lines[i].push_str(" # trailing"),
                        _ => lines[i].push_str("  "),
                    }
                }
                lines.join("\n") + "\n"
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]
            #[test]
            fn accepted_documents_give_the_full_parsers_tree(text in document()) {
                agrees(&text);
            }
        }
    }

    #[test]
    fn every_conformance_and_example_file_gives_the_full_parsers_tree() {
        let root = crate::manifest_dir().join("..");
        let shared = std::env::var_os("WEIR_SHARED").map(std::path::PathBuf::from).unwrap_or_else(|| root.join("../shared"));
        let (mut files, mut accepted) = (0, 0);
        for dir in [root.join("examples"), shared.join("conformance/data")] {
            for path in crate::project::element_files::files_under(&dir, |_| true) {
                if path.extension().is_some_and(|e| e == "bst" || e == "yml" || e == "yaml" || e == "conf" || e == "refs") {
                    let Ok(text) = std::fs::read_to_string(&path) else { continue };
                    files += 1;
                    accepted += usize::from(agrees(&text));
                }
            }
        }
        assert!(files > 100, "found only {files} YAML files");
        eprintln!("fast path: {accepted} of {files} files");
        assert!(accepted * 2 > files, "the fast path took only {accepted} of {files} files");
    }
}
