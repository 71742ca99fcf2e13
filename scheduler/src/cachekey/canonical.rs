//! BuildStream's canonical serialisation and the key hash (spec §2).
//!
//! This is the one implementation of the cache-key bytes: the JSON text that
//! `ujson.dumps(value, sort_keys=True, escape_forward_slashes=False)` produces
//! (no whitespace, code-point key order, `\uXXXX` lowercase escapes for every
//! non-ASCII code point with surrogate pairs for astral planes, U+007F and `/`
//! raw), and the lowercase hex SHA-256 of it.

use sha2::{Digest, Sha256};

use super::value::Value;

/// Length of a cache key in hex digits.
pub const KEY_LENGTH: usize = 64;

/// Appends the canonical JSON text of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(number) => out.push_str(&number.to_string()),
        Value::Str(text) => write_string(text, out),
        Value::Raw(text) => out.push_str(text),
        Value::List(items) => write_array(items, out, write_canonical),
        Value::Map(map) => write_object(map.iter(), out, write_canonical),
    }
}

/// Appends a JSON array of `items`, each written by `write_item`.
pub fn write_array<T>(items: impl IntoIterator<Item = T>, out: &mut String, mut write_item: impl FnMut(T, &mut String)) {
    out.push('[');
    for (index, item) in items.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_item(item, out);
    }
    out.push(']');
}

/// Appends a JSON object of `members`, which must come in code-point order
/// of their names, each value written by `write_value`.
pub fn write_object<K: AsRef<str>, V>(
    members: impl IntoIterator<Item = (K, V)>,
    out: &mut String,
    mut write_value: impl FnMut(V, &mut String),
) {
    out.push('{');
    for (index, (key, value)) in members.into_iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_string(key.as_ref(), out);
        out.push(':');
        write_value(value, out);
    }
    out.push('}');
}

/// The canonical JSON text of `value`.
pub fn to_canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// Whether byte `b` is written as it is in a string literal: printable
/// ASCII other than `"` and `\`, and DEL.
fn is_plain(b: u8) -> bool {
    (0x20..0x80).contains(&b) && b != b'"' && b != b'\\'
}

/// The length of the longest prefix of `bytes` that needs no escape,
/// tested eight bytes at a time (the texts of a key are mostly long plain
/// runs: commands, paths, names).
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero when some byte of `word` is below `n` (n <= 0x80; no false
    // negatives, and a false positive only sends the chunk to the exact
    // test below).
    let has_below = |word: u64, n: u64| word.wrapping_sub(ONES * n) & !word & HIGHS;
    let mut start = 0;
    while let Some(chunk) = bytes.get(start..start + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let special = (word & HIGHS)
            | has_below(word, 0x20)
            | has_below(word ^ (ONES * u64::from(b'"')), 1)
            | has_below(word ^ (ONES * u64::from(b'\\')), 1);
        if special != 0 {
            break;
        }
        start += 8;
    }
    start + bytes[start..].iter().position(|&b| !is_plain(b)).unwrap_or(bytes.len() - start)
}

/// Appends `text` as a JSON string literal with ujson's escaping. Runs of
/// bytes that need no escape (printable ASCII other than `"` and `\`, and
/// DEL) are copied at once.
pub fn write_string(text: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let push_unit = |unit: u16, out: &mut String| {
        out.push_str("\\u");
        for shift in [12u16, 8, 4, 0] {
            out.push(HEX[usize::from((unit >> shift) & 0xf)] as char);
        }
    };
    out.push('"');
    let mut rest = text;
    while !rest.is_empty() {
        let plain = plain_prefix(rest.as_bytes());
        out.push_str(&rest[..plain]);
        rest = &rest[plain..];
        let Some(ch) = rest.chars().next() else { break };
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => push_unit(c as u16, out),
            c => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    push_unit(*unit, out);
                }
            }
        }
        rest = &rest[ch.len_utf8()..];
    }
    out.push('"');
}

/// Lowercase hex SHA-256 of already canonical text.
pub fn hash_canonical(text: &str) -> String {
    hex_digest(&Sha256::digest(text.as_bytes()).into())
}

/// A SHA-256 digest in lowercase hex, as keys are written (through a
/// table, where `hex::encode` goes character by character).
pub fn hex_digest(digest: &[u8; 32]) -> String {
    let mut text = [0u8; 64];
    // Cannot fail: the output is exactly twice the input's length, and
    // hex digits are ASCII.
    let _ = hex::encode_to_slice(digest, &mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// The key of a value: SHA-256 of its canonical text (BuildStream's `generate_key`).
pub fn generate_key(value: &Value) -> String {
    hash_canonical(&to_canonical(value))
}

/// Whether `text` looks like a cache key: 64 lowercase hex digits.
pub fn is_key(text: &str) -> bool {
    text.len() == KEY_LENGTH && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(value: &str) -> String {
        let mut out = String::new();
        write_string(value, &mut out);
        out
    }

    #[test]
    fn escapes_like_ujson() {
        assert_eq!(text("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(text("\u{8}\u{c}\n\r\t"), r#""\b\f\n\r\t""#);
        assert_eq!(text("\u{1}\u{1f}"), r#""\u0001\u001f""#);
        assert_eq!(text("\u{7f}"), "\"\u{7f}\"");
        assert_eq!(text("/<>&'"), r#""/<>&'""#);
        assert_eq!(text("é\u{ffff}"), r#""\u00e9\uffff""#);
        assert_eq!(text("😀"), r#""\ud83d\ude00""#);
    }

    #[test]
    fn plain_runs_are_found_at_every_position() {
        // Every special byte class at every offset of texts longer than a
        // chunk, against the byte-by-byte definition.
        let specials = [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff];
        let plains = [b' ', b'!', b'#', b'[', b']', b'~', 0x7f, b'a', b'/'];
        for len in 0..40 {
            for &filler in &plains {
                let mut bytes = vec![filler; len];
                assert_eq!(plain_prefix(&bytes), len);
                for at in 0..len {
                    for &special in &specials {
                        bytes[at] = special;
                        assert_eq!(plain_prefix(&bytes), at, "{special:#x} at {at} of {len}");
                        bytes[at] = filler;
                    }
                }
            }
        }
        // Bytes just around the limits of each class.
        for b in 0..=255u8 {
            let bytes = [b'a', b'a', b'a', b'a', b'a', b'a', b'a', b'a', b, b'a'];
            assert_eq!(plain_prefix(&bytes), if is_plain(b) { 10 } else { 8 }, "{b:#x}");
            assert_eq!(plain_prefix(&bytes[1..]), if is_plain(b) { 9 } else { 7 }, "{b:#x}");
        }
    }

    #[test]
    fn maps_sort_by_code_point_and_have_no_whitespace() {
        let value: Value = [
            ("\u{1F600}".to_owned(), Value::Int(1)),
            ("\u{ffff}".to_owned(), Value::Int(2)),
            ("b".to_owned(), Value::List(vec![Value::Bool(true), Value::Null, Value::Int(-3)])),
            ("a".to_owned(), Value::map()),
        ]
        .into_iter()
        .collect();
        assert_eq!(to_canonical(&value), r#"{"a":{},"b":[true,null,-3],"\uffff":2,"\ud83d\ude00":1}"#);
    }

    #[test]
    fn bare_strings_hash_with_quotes() {
        assert_eq!(generate_key(&Value::from("abc")), hash_canonical("\"abc\""));
        assert_ne!(generate_key(&Value::from("abc")), hash_canonical("abc"));
    }

    #[test]
    fn key_validity() {
        assert!(is_key(&"a".repeat(64)));
        assert!(!is_key(&"A".repeat(64)));
        assert!(!is_key(&"a".repeat(63)));
        assert!(!is_key(&"?".repeat(64)));
    }
}
