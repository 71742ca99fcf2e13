//! Printing nodes as block-style YAML, the way `bst show` prints `%{vars}`,
//! `%{config}`, `%{public}` and `%{env}` (ruamel's round-trip dump).
//!
//! Key decision: strings are printed plain when a YAML reader would read them
//! back as the same string, single-quoted when plain would change their type
//! or meaning, and double-quoted with escapes when they hold control
//! characters or line breaks.

use super::node::{Map, Node};

/// Prints a mapping as a YAML document (`{}` when empty), ending in a newline.
pub fn emit_map(map: &Map) -> String {
    let mut out = String::new();
    if map.is_empty() {
        out.push_str("{}\n");
    } else {
        write_map(map, 0, &mut out);
    }
    out
}

/// Prints a list of strings as a YAML document (`[]` when empty).
pub fn emit_str_list<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "[]\n".to_string();
    }
    let mut out = String::new();
    for item in items {
        out.push_str("- ");
        out.push_str(&quote(item.as_ref()));
        out.push('\n');
    }
    out
}

fn indent(out: &mut String, n: usize) {
    for _ in 0..n {
        out.push(' ');
    }
}

fn write_map(map: &Map, level: usize, out: &mut String) {
    for (key, value) in map.iter() {
        indent(out, level);
        out.push_str(&quote(key));
        out.push(':');
        write_after_key(value, level, out);
    }
}

/// Writes a value that fits on the current line (a scalar, `{}` or `[]`)
/// after a key or a dash; returns false for a non-empty mapping or sequence.
fn write_inline(value: &Node, out: &mut String) -> bool {
    match value {
        Node::Scalar(s) => {
            out.push(' ');
            out.push_str(&quote(&s.value));
            out.push('\n');
        }
        Node::Map(m) if m.is_empty() => out.push_str(" {}\n"),
        Node::Seq(s) if s.items.is_empty() => out.push_str(" []\n"),
        _ => return false,
    }
    true
}

fn write_after_key(value: &Node, level: usize, out: &mut String) {
    if write_inline(value, out) {
        return;
    }
    out.push('\n');
    match value {
        Node::Map(m) => write_map(m, level + 2, out),
        Node::Seq(s) => write_seq(&s.items, level, out),
        Node::Scalar(_) => {}
    }
}

fn write_seq(items: &[Node], level: usize, out: &mut String) {
    for item in items {
        indent(out, level);
        out.push('-');
        if write_inline(item, out) {
            continue;
        }
        match item {
            Node::Scalar(_) => {}
            Node::Map(m) => {
                // First entry on the dash line, the rest aligned under it.
                let mut first = true;
                for (key, value) in m.iter() {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        indent(out, level + 2);
                    }
                    out.push_str(&quote(key));
                    out.push(':');
                    write_after_key(value, level + 2, out);
                }
            }
            Node::Seq(s) => {
                out.push('\n');
                write_seq(&s.items, level + 2, out);
            }
        }
    }
}

const RESERVED: [&str; 22] = [
    "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~", ".nan", ".inf", "-.inf", "+.inf", "=", "<<",
    "none", "nan", "inf", "-inf", "+inf", "",
];

fn needs_quotes(s: &str) -> bool {
    if s.is_empty() || s.trim() != s {
        return true;
    }
    if RESERVED.contains(&s.to_ascii_lowercase().as_str()) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return true;
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return true;
    }
    // Anything number-like would be read back as a number.
    if first.is_ascii_digit() || first == '+' || first == '.' {
        return true;
    }
    false
}

/// The YAML representation of one string.
pub fn quote(s: &str) -> String {
    if s.chars().any(|c| c.is_control()) {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        return out;
    }
    if needs_quotes(s) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parser::parse;
    use crate::yaml::provenance::FileId;

    #[test]
    fn round_trips_through_the_parser() {
        let src = "a: '1'\nb:\n- x\n- k: v\n  l: '#w'\nc:\n  d: 'True'\n  e: \"two\\nlines\"\nf: []\ng: {}\nh: plain text\n";
        let map = parse(src, FileId(1)).unwrap();
        let printed = emit_map(&map);
        let again = parse(&printed, FileId(1)).unwrap();
        assert_eq!(emit_map(&again), printed);
        assert!(printed.contains("a: '1'\n"));
        assert!(printed.contains("h: plain text\n"));
        assert!(printed.contains("e: \"two\\nlines\"\n"));
    }
}
