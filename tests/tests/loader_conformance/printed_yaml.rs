//! The YAML that `show --format '%{vars}'` (and `%{config}`, `%{public}`,
//! `%{env}`) prints, read back the way BuildStream means it.
//!
//! Key decision: every scalar stays the exact string that was printed.
//! BuildStream keeps all scalars as strings (`True`, `1`, `0x10` are text),
//! so the output is parsed with saphyr-parser's event stream, which gives the
//! raw scalar text, instead of a typed YAML library that would turn `True`
//! into a boolean and `010` into a number. Expected values from the manifest
//! are converted to the same form (see [`Printed::from_expected`]).

use saphyr_parser::{Event, Parser};
use serde_yaml_ng::Value;

use super::manifest::PathStep;

/// A printed YAML value with string scalars.
#[derive(Debug, Clone)]
pub enum Printed {
    /// A scalar, as printed (an empty or `~` scalar is kept as written).
    Scalar(String),
    /// A sequence.
    Seq(Vec<Printed>),
    /// A mapping in printed order.
    Map(Vec<(String, Printed)>),
}

impl PartialEq for Printed {
    /// Mappings compare without regard to key order; sequences in order.
    fn eq(&self, other: &Printed) -> bool {
        match (self, other) {
            (Printed::Scalar(a), Printed::Scalar(b)) => a == b,
            (Printed::Seq(a), Printed::Seq(b)) => a == b,
            (Printed::Map(a), Printed::Map(b)) => {
                a.len() == b.len() && a.iter().all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2))
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Printed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Printed::Scalar(s) => write!(f, "{s:?}"),
            Printed::Seq(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
            Printed::Map(entries) => {
                write!(f, "{{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k:?}: {v}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

/// Why printed output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrintedError {
    /// Not YAML at all.
    #[error("printed output is not YAML: {0}")]
    Syntax(String),
    /// YAML the printer never produces (aliases, complex keys, several documents).
    #[error("printed output uses {0}, which BuildStream never prints")]
    Unexpected(&'static str),
}

impl Printed {
    /// Parses one printed document. Empty text is an empty mapping (BuildStream
    /// prints `{}` for one, but an empty field is read the same way).
    pub fn parse(text: &str) -> Result<Printed, PrintedError> {
        let mut builder = TreeBuilder::default();
        for event in Parser::new_from_str(text) {
            let (event, _span) = event.map_err(|e| PrintedError::Syntax(e.to_string()))?;
            builder.push(event)?;
        }
        Ok(builder.finish())
    }

    /// Converts a manifest value to the printed form: strings as they are,
    /// booleans as Python prints them (`True`/`False`), numbers in decimal,
    /// null as an empty scalar.
    pub fn from_expected(value: &Value) -> Printed {
        match value {
            Value::Null => Printed::Scalar(String::new()),
            Value::Bool(true) => Printed::Scalar("True".into()),
            Value::Bool(false) => Printed::Scalar("False".into()),
            Value::Number(n) => Printed::Scalar(n.to_string()),
            Value::String(s) => Printed::Scalar(s.clone()),
            Value::Sequence(items) => Printed::Seq(items.iter().map(Printed::from_expected).collect()),
            Value::Mapping(map) => Printed::Map(
                map.iter()
                    .map(|(k, v)| {
                        let key = match Printed::from_expected(k) {
                            Printed::Scalar(s) => s,
                            other => other.to_string(),
                        };
                        (key, Printed::from_expected(v))
                    })
                    .collect(),
            ),
            Value::Tagged(tagged) => Printed::from_expected(&tagged.value),
        }
    }

    /// Follows `path` from this value; `None` when a step does not exist.
    pub fn lookup(&self, path: &[PathStep]) -> Option<&Printed> {
        let mut here = self;
        for step in path {
            here = match (here, step) {
                (Printed::Map(entries), PathStep::Key(key)) => &entries.iter().find(|(k, _)| k == key)?.1,
                (Printed::Map(entries), PathStep::Index(i)) => {
                    let key = i.to_string();
                    &entries.iter().find(|(k, _)| *k == key)?.1
                }
                (Printed::Seq(items), PathStep::Index(i)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(here)
    }

    /// BuildStream's `as_bool`: `True`/`true` and `False`/`false` only.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Printed::Scalar(s) if s == "True" || s == "true" => Some(true),
            Printed::Scalar(s) if s == "False" || s == "false" => Some(false),
            _ => None,
        }
    }
}

/// Builds a [`Printed`] tree from parser events.
#[derive(Default)]
struct TreeBuilder {
    /// Open collections; a mapping keeps its pending key.
    stack: Vec<Open>,
    /// The finished document.
    root: Option<Printed>,
}

enum Open {
    Seq(Vec<Printed>),
    Map(Vec<(String, Printed)>, Option<String>),
}

impl TreeBuilder {
    fn push(&mut self, event: Event<'_>) -> Result<(), PrintedError> {
        match event {
            Event::Scalar(text, ..) => self.add(Printed::Scalar(text.into_owned())),
            Event::SequenceStart(..) => {
                self.stack.push(Open::Seq(Vec::new()));
                Ok(())
            }
            Event::MappingStart(..) => {
                self.stack.push(Open::Map(Vec::new(), None));
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let value = match self.stack.pop() {
                    Some(Open::Seq(items)) => Printed::Seq(items),
                    Some(Open::Map(entries, None)) => Printed::Map(entries),
                    Some(Open::Map(_, Some(_))) => return Err(PrintedError::Unexpected("a key without a value")),
                    None => return Err(PrintedError::Unexpected("an unbalanced collection")),
                };
                self.add(value)
            }
            Event::Alias(_) => Err(PrintedError::Unexpected("aliases")),
            Event::DocumentStart(_) if self.root.is_some() => Err(PrintedError::Unexpected("several documents")),
            _ => Ok(()),
        }
    }

    fn add(&mut self, value: Printed) -> Result<(), PrintedError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(value);
                Ok(())
            }
            Some(Open::Seq(items)) => {
                items.push(value);
                Ok(())
            }
            Some(Open::Map(entries, pending)) => {
                match pending.take() {
                    Some(key) => entries.push((key, value)),
                    None => match value {
                        Printed::Scalar(key) => *pending = Some(key),
                        _ => return Err(PrintedError::Unexpected("a non-scalar mapping key")),
                    },
                }
                Ok(())
            }
        }
    }

    fn finish(self) -> Printed {
        self.root.unwrap_or(Printed::Map(Vec::new()))
    }
}

/// Splits multi-element `show` output into one group per element.
///
/// BuildStream prints each element's formatted line followed by a newline, and
/// a YAML field ends with its own newline, so elements are separated by a
/// blank line. A blank line inside a block scalar is followed by indented
/// text, so only a blank line followed by a line that starts at column 0
/// separates groups.
pub fn split_groups(output: &str) -> Vec<String> {
    let mut groups = Vec::new();
    let mut current = String::new();
    let mut lines = output.lines().peekable();
    while let Some(line) = lines.next() {
        let next_starts_at_column_0 = lines.peek().is_some_and(|next| next.chars().next().is_some_and(|c| !c.is_whitespace()));
        if line.is_empty() && next_starts_at_column_0 {
            groups.push(std::mem::take(&mut current));
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        groups.push(current);
    }
    groups
}

/// Parses a group printed by a format that concatenates several fields
/// (`%{vars}%{env}`): the mappings run together into one, except that an
/// empty mapping prints as a `{}` line of its own, which is dropped first.
pub fn parse_group(group: &str) -> Result<Printed, PrintedError> {
    match Printed::parse(group) {
        Ok(value) => Ok(value),
        Err(first) => {
            let without_empty: String =
                group.lines().filter(|line| line.trim() != "{}").flat_map(|line| [line, "\n"]).collect();
            if without_empty.len() == group.len() {
                return Err(first);
            }
            Printed::parse(&without_empty)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PathStep {
        PathStep::Key(k.into())
    }

    #[test]
    fn scalars_stay_strings() {
        let printed = Printed::parse("included: True\nmax-jobs: 2\noctal: 010\nempty: ''\n").unwrap();
        assert_eq!(printed.lookup(&[key("included")]), Some(&Printed::Scalar("True".into())));
        assert_eq!(printed.lookup(&[key("max-jobs")]), Some(&Printed::Scalar("2".into())));
        assert_eq!(printed.lookup(&[key("octal")]), Some(&Printed::Scalar("010".into())));
        assert_eq!(printed.lookup(&[key("empty")]), Some(&Printed::Scalar(String::new())));
        assert_eq!(printed.lookup(&[key("missing")]), None);
    }

    #[test]
    fn nested_paths_follow_keys_and_indices() {
        let printed = Printed::parse("deep-nest:\n- - animal: horsy\n    colour: brown\nlist:\n- a\n- b\n").unwrap();
        let path = [key("deep-nest"), PathStep::Index(0), PathStep::Index(0), key("animal")];
        assert_eq!(printed.lookup(&path), Some(&Printed::Scalar("horsy".into())));
        assert_eq!(printed.lookup(&[key("deep-nest"), PathStep::Index(1)]), None);
        assert_eq!(printed.lookup(&[key("list"), key("a")]), None);
        let expected = Printed::from_expected(&serde_yaml_ng::from_str::<Value>("[a, b]").unwrap());
        assert_eq!(printed.lookup(&[key("list")]), Some(&expected));
    }

    #[test]
    fn expected_values_take_the_printed_form() {
        let value: Value = serde_yaml_ng::from_str("{a: true, b: 1, c: [x, false], d: null}").unwrap();
        let printed = Printed::parse("c:\n- x\n- False\nb: '1'\na: True\nd: ''\n").unwrap();
        assert_eq!(Printed::from_expected(&value), printed);
        let different = Printed::parse("c:\n- x\n- 'no'\nb: '1'\na: True\nd: ''\n").unwrap();
        assert_ne!(Printed::from_expected(&value), different);
    }

    #[test]
    fn as_bool_accepts_only_buildstream_spellings() {
        assert_eq!(Printed::Scalar("True".into()).as_bool(), Some(true));
        assert_eq!(Printed::Scalar("false".into()).as_bool(), Some(false));
        assert_eq!(Printed::Scalar("1".into()).as_bool(), None);
        assert_eq!(Printed::Seq(vec![]).as_bool(), None);
    }

    #[test]
    fn flow_empty_mapping_and_bad_yaml() {
        assert_eq!(Printed::parse("{}\n").unwrap(), Printed::Map(vec![]));
        assert!(matches!(Printed::parse("a: [b\n"), Err(PrintedError::Syntax(_))));
        assert!(matches!(Printed::parse("a: &x b\nc: *x\n"), Err(PrintedError::Unexpected(_))));
    }

    #[test]
    fn groups_split_on_blank_lines_between_elements_only() {
        let output = "a: x\nscript: |\n  one\n\n  two\n\nb: y\nMAKEFLAGS: -j2\n";
        let groups = split_groups(output);
        assert_eq!(groups.len(), 2, "{groups:?}");
        let first = parse_group(&groups[0]).unwrap();
        assert_eq!(first.lookup(&[key("script")]), Some(&Printed::Scalar("one\n\ntwo\n".into())));
        let second = parse_group(&groups[1]).unwrap();
        assert_eq!(second.lookup(&[key("MAKEFLAGS")]), Some(&Printed::Scalar("-j2".into())));
    }

    #[test]
    fn concatenated_fields_with_an_empty_mapping_parse() {
        let group = "element-name: a.bst\n{}\n";
        let parsed = parse_group(group).unwrap();
        assert_eq!(parsed.lookup(&[key("element-name")]), Some(&Printed::Scalar("a.bst".into())));
    }
}
