//! Variables (spec §9): `%{name}` references, resolution of a whole table
//! with undefined-reference and cycle reports, and expansion of node trees.
//!
//! Key decision: resolution is iterative (an explicit stack, no recursion), so
//! chains of thousands of variables resolve in linear time; values are
//! resolved lazily and memoised, which serves both regular elements (all
//! checked up front) and first-pass elements (only what is expanded).
//! A [`VariablesBase`] resolves the table every element of one kind starts
//! from once; an element's table then reuses each value whose whole chain of
//! references it does not override, and resolves only the rest.

use std::cell::RefCell;
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

use crate::yaml::{LoadError, LoadErrorReason, LoadResult, Map, Node, SourceMap, Span};

/// A piece of a variable value: a byte range of literal text, or the byte
/// range of a referenced name (ranges, not copies: splitting allocates once).
#[derive(Debug, Clone)]
enum Part {
    Text(std::ops::Range<usize>),
    Ref(std::ops::Range<usize>),
}

/// Splits `text` at `%{name}` references.
fn split(text: &str) -> Vec<Part> {
    Parts { bytes: text.as_bytes(), literal_start: 0, i: 0, pending: None }.collect()
}

/// The pieces of a text, in order, without allocating (see [`split`]).
struct Parts<'a> {
    bytes: &'a [u8],
    literal_start: usize,
    i: usize,
    /// A reference found right after a literal that was returned first.
    pending: Option<std::ops::Range<usize>>,
}

impl Iterator for Parts<'_> {
    type Item = Part;

    fn next(&mut self) -> Option<Part> {
        if let Some(name) = self.pending.take() {
            return Some(Part::Ref(name));
        }
        let bytes = self.bytes;
        while self.i + 1 < bytes.len() {
            let i = self.i;
            if bytes[i] == b'%' && bytes[i + 1] == b'{' {
                let name_start = i + 2;
                let mut j = name_start;
                if j < bytes.len() && bytes[j].is_ascii_alphabetic() {
                    j += 1;
                    while j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b'-') {
                        j += 1;
                    }
                    if j < bytes.len() && bytes[j] == b'}' {
                        let literal = self.literal_start..i;
                        self.i = j + 1;
                        self.literal_start = self.i;
                        if literal.is_empty() {
                            return Some(Part::Ref(name_start..j));
                        }
                        self.pending = Some(name_start..j);
                        return Some(Part::Text(literal));
                    }
                }
            }
            self.i += 1;
        }
        if self.literal_start < bytes.len() {
            let literal = self.literal_start..bytes.len();
            self.literal_start = bytes.len();
            self.i = bytes.len();
            return Some(Part::Text(literal));
        }
        None
    }
}

/// The names referenced in the scalars of `map` (each once).
pub fn references_in(map: &Map) -> Vec<String> {
    fn walk(node: &Node, out: &mut Vec<String>) {
        match node {
            Node::Scalar(s) => {
                for part in (Parts { bytes: s.value.as_bytes(), literal_start: 0, i: 0, pending: None }) {
                    if let Part::Ref(range) = part {
                        let name = &s.value[range];
                        if !out.iter().any(|n| n == name) {
                            out.push(name.to_string());
                        }
                    }
                }
            }
            Node::Seq(seq) => seq.items.iter().for_each(|n| walk(n, out)),
            Node::Map(m) => m.entries.values().for_each(|n| walk(n, out)),
        }
    }
    let mut out = Vec::new();
    map.entries.values().for_each(|n| walk(n, &mut out));
    out
}

/// Whether `text` holds any `%{name}` reference.
pub fn has_references(text: &str) -> bool {
    text.contains("%{") && split(text).iter().any(|p| matches!(p, Part::Ref(_)))
}

#[derive(Debug)]
struct Definition {
    text: Arc<str>,
    /// The pieces of `text`; `None` when it has no reference (or the value
    /// comes resolved from the base table and the pieces are not needed).
    parts: Option<Arc<[Part]>>,
    span: Span,
    resolved: Option<Arc<str>>,
    visiting: bool,
    /// The value was taken from a [`VariablesBase`] (already interned).
    from_base: bool,
}

type NameIndex = HashMap<Arc<str>, usize>;

/// The variable table shared by the elements of one (project, kind), resolved
/// once: the value of every variable that resolves without error, and which
/// variables refer to which.
#[derive(Debug, Default)]
pub struct VariablesBase {
    index: Arc<NameIndex>,
    defs: Vec<BaseDefinition>,
}

#[derive(Debug)]
struct BaseDefinition {
    name: Arc<str>,
    text: Arc<str>,
    span: Span,
    parts: Option<Arc<[Part]>>,
    /// `None` when resolving it in the base table fails (undefined or
    /// circular reference): every element then resolves it itself.
    resolved: Option<Arc<str>>,
    /// Variables of the base table whose values refer to this one.
    dependents: Vec<u32>,
}

impl VariablesBase {
    /// Resolves the base table `map`; `intern` gets every resolved value.
    /// A table that is not valid gives an empty base (nothing shared): the
    /// elements report its errors themselves.
    pub fn new(map: &Map, sources: &SourceMap, mut intern: impl FnMut(Arc<str>) -> Arc<str>) -> VariablesBase {
        let Ok(vars) = Variables::new(map) else { return VariablesBase::default() };
        for i in 0..vars.order.len() {
            // Failures stay unresolved here; each element reports its own.
            let _ = vars.resolve_index(i, sources);
        }
        let mut defs: Vec<BaseDefinition> = vars
            .order
            .iter()
            .zip(vars.defs.into_inner())
            .map(|(name, d)| BaseDefinition {
                name: name.clone(),
                text: d.text,
                span: d.span,
                parts: d.parts,
                resolved: d.resolved.map(&mut intern),
                dependents: Vec::new(),
            })
            .collect();
        let index = vars.index.extra;
        for i in 0..defs.len() {
            let Some(parts) = defs[i].parts.clone() else { continue };
            for part in parts.iter() {
                if let Part::Ref(range) = part {
                    if let Some(&j) = index.get(&defs[i].text[range.clone()]) {
                        defs[j].dependents.push(i as u32);
                    }
                }
            }
        }
        VariablesBase { index: Arc::new(index), defs }
    }
}

/// Name → position in a table: the base table's index for the entries the
/// table shares with it (its first ones, in the same order), and its own for
/// the rest.
#[derive(Debug, Default)]
struct Index {
    base: Option<Arc<NameIndex>>,
    extra: NameIndex,
}

impl Index {
    fn get(&self, name: &str) -> Option<usize> {
        self.base.as_ref().and_then(|b| b.get(name)).or_else(|| self.extra.get(name)).copied()
    }
}

/// A variable table being resolved.
#[derive(Debug)]
pub struct Variables {
    order: Vec<Arc<str>>,
    defs: RefCell<Vec<Definition>>,
    index: Index,
}

fn pieces(text: &str) -> Option<Arc<[Part]>> {
    text.contains("%{").then(|| split(text).into())
}

impl Variables {
    /// Builds the table from a composed `variables` mapping; non-scalar values
    /// are `INVALID_DATA`.
    pub fn new(map: &Map) -> LoadResult<Variables> {
        Self::with_base(map, &VariablesBase::default())
    }

    /// Builds the table from a composed `variables` mapping that started as
    /// `base`'s table: a variable whose definition and every reference of
    /// which (transitively) are still the base's takes the base's value.
    pub fn with_base(map: &Map, base: &VariablesBase) -> LoadResult<Variables> {
        let len = map.entries.len();
        // The composed table keeps the base's entries first, in order.
        let shared = !base.defs.is_empty()
            && len >= base.defs.len()
            && map.entries.keys().zip(&base.defs).all(|(k, d)| *k == d.name);
        let mut order = Vec::with_capacity(len);
        let mut defs = Vec::with_capacity(len);
        let mut index = Index::default();
        // Base entries this table defines differently.
        let mut changed: Vec<usize> = Vec::new();
        for (i, (name, node)) in map.iter().enumerate() {
            let Node::Scalar(s) = node else {
                return Err(LoadError::at(
                    node.span(),
                    LoadErrorReason::InvalidData,
                    format!("Value of '{name}' is not of the expected type 'scalar'"),
                ));
            };
            let base_def = if shared { base.defs.get(i) } else { None };
            let parts = match base_def {
                Some(d) if Arc::ptr_eq(&d.text, &s.value) && d.span == s.span => d.parts.clone(),
                other => {
                    if other.is_some() {
                        changed.push(i);
                    }
                    pieces(&s.value)
                }
            };
            if base_def.is_none() {
                index.extra.insert(name.clone(), i);
            }
            let resolved = parts.is_none().then(|| s.value.clone());
            order.push(name.clone());
            defs.push(Definition { text: s.value.clone(), parts, span: s.span, resolved, visiting: false, from_base: false });
        }
        if shared {
            index.base = Some(base.index.clone());
            // Base variables that refer (transitively) to a changed one.
            let mut dirty = vec![false; base.defs.len()];
            for &i in &changed {
                dirty[i] = true;
            }
            while let Some(i) = changed.pop() {
                for &d in &base.defs[i].dependents {
                    if !std::mem::replace(&mut dirty[d as usize], true) {
                        changed.push(d as usize);
                    }
                }
            }
            for ((def, base_def), dirty) in defs.iter_mut().zip(&base.defs).zip(dirty) {
                if let (false, Some(value)) = (dirty, &base_def.resolved) {
                    def.resolved = Some(value.clone());
                    def.from_base = true;
                }
            }
        }
        Ok(Variables { order, defs: RefCell::new(defs), index })
    }

    /// Resolves every variable (regular elements).
    pub fn check(&self, sources: &SourceMap) -> LoadResult<()> {
        for i in 0..self.order.len() {
            self.resolve_index(i, sources)?;
        }
        Ok(())
    }

    /// The resolved value of `name`, `None` if undefined.
    pub fn get(&self, name: &str, sources: &SourceMap) -> LoadResult<Option<Arc<str>>> {
        match self.index.get(name) {
            None => Ok(None),
            Some(i) => self.resolve_index(i, sources).map(Some),
        }
    }

    fn resolve_index(&self, root: usize, sources: &SourceMap) -> LoadResult<Arc<str>> {
        let mut defs = self.defs.borrow_mut();
        if let Some(v) = &defs[root].resolved {
            return Ok(v.clone());
        }
        let mut stack: Vec<usize> = vec![root];
        defs[root].visiting = true;
        let result = self.walk(&mut defs, &mut stack, sources);
        for &i in &stack {
            defs[i].visiting = false;
        }
        result?;
        Ok(defs[root].resolved.clone().unwrap_or_else(|| Arc::from("")))
    }

    /// Resolves the variables on `stack` (and what they need), depth first.
    fn walk(&self, defs: &mut [Definition], stack: &mut Vec<usize>, sources: &SourceMap) -> LoadResult<()> {
        while let Some(&top) = stack.last() {
            let def = &defs[top];
            let parts = def.parts.clone().unwrap_or_else(|| Arc::from([]));
            let mut pending = None;
            for part in parts.iter() {
                if let Part::Ref(range) = part {
                    let r = &def.text[range.clone()];
                    match self.index.get(r) {
                        None => {
                            return Err(LoadError::at(
                                def.span,
                                LoadErrorReason::UnresolvedVariable,
                                format!("Reference to undefined variable '{r}'"),
                            ))
                        }
                        Some(j) if defs[j].resolved.is_some() => {}
                        Some(j) if defs[j].visiting => {
                            let start = stack.iter().position(|&s| s == j).unwrap_or(0);
                            return Err(self.cycle_error(&stack[start..], j, defs, sources));
                        }
                        Some(j) => {
                            pending = Some(j);
                            break;
                        }
                    }
                }
            }
            match pending {
                Some(next) => {
                    defs[next].visiting = true;
                    stack.push(next);
                }
                None => {
                    let mut value = String::with_capacity(def.text.len() + 16);
                    for part in parts.iter() {
                        match part {
                            Part::Text(range) => value.push_str(&def.text[range.clone()]),
                            Part::Ref(r) => value.push_str(
                                self.index.get(&def.text[r.clone()]).and_then(|j| defs[j].resolved.as_deref()).unwrap_or(""),
                            ),
                        }
                    }
                    defs[top].resolved = Some(Arc::from(value));
                    defs[top].visiting = false;
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    fn cycle_error(&self, chain: &[usize], closing: usize, defs: &[Definition], sources: &SourceMap) -> LoadError {
        let mut detail = String::new();
        for (i, &at) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(closing);
            detail.push_str(&format!(
                "{}: Variable '{}' refers to variable '{}'\n",
                sources.describe(defs[at].span),
                self.order[at],
                self.order[next]
            ));
        }
        LoadError::new(
            LoadErrorReason::CircularReferenceVariable,
            format!("Circular dependency detected on variable '{}'", self.order[closing]),
        )
        .with_detail(detail.trim_end().to_string())
    }

    /// Whether `name` is defined and has the base table's value (see
    /// [`Variables::with_base`]).
    pub fn is_from_base(&self, name: &str) -> bool {
        self.index.get(name).is_some_and(|i| self.defs.borrow()[i].from_base)
    }

    /// Substitutes references in `text` (the node at `span`).
    pub fn expand_str(&self, text: &str, span: Span, sources: &SourceMap) -> LoadResult<Arc<str>> {
        if !text.contains("%{") {
            return Ok(Arc::from(text));
        }
        let mut out = String::with_capacity(text.len());
        let parts = Parts { bytes: text.as_bytes(), literal_start: 0, i: 0, pending: None };
        for part in parts {
            match part {
                Part::Text(range) => out.push_str(&text[range]),
                Part::Ref(range) => match self.get(&text[range.clone()], sources)? {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err(LoadError::at(
                            span,
                            LoadErrorReason::UnresolvedVariable,
                            format!("Reference to undefined variable '{}'", &text[range]),
                        ))
                    }
                },
            }
        }
        Ok(Arc::from(out))
    }

    /// Substitutes references in every scalar of a tree (keys are left alone).
    pub fn expand_node(&self, node: &mut Node, sources: &SourceMap) -> LoadResult<()> {
        match node {
            Node::Scalar(s) => {
                if s.value.contains("%{") {
                    s.value = self.expand_str(&s.value, s.span, sources)?;
                }
                Ok(())
            }
            Node::Seq(seq) => seq.items.iter_mut().try_for_each(|n| self.expand_node(n, sources)),
            Node::Map(map) => self.expand_map(map, sources),
        }
    }

    /// Substitutes references in every scalar of a mapping.
    pub fn expand_map(&self, map: &mut Map, sources: &SourceMap) -> LoadResult<()> {
        map.entries.values_mut().try_for_each(|n| self.expand_node(n, sources))
    }

    /// Every variable with its resolved value, in table order (resolving as needed).
    pub fn resolved(&self, sources: &SourceMap) -> LoadResult<Vec<(Arc<str>, Arc<str>)>> {
        self.resolved_with(sources, |v| v)
    }

    /// As [`Variables::resolved`], passing each value not taken from the
    /// base table through `intern`.
    pub fn resolved_with(
        &self,
        sources: &SourceMap,
        mut intern: impl FnMut(Arc<str>) -> Arc<str>,
    ) -> LoadResult<Vec<(Arc<str>, Arc<str>)>> {
        // Exact capacity: every element keeps this list, so growth slack is
        // a large share of the loader's memory.
        let mut out = Vec::with_capacity(self.order.len());
        for (i, name) in self.order.iter().enumerate() {
            let value = self.resolve_index(i, sources)?;
            let from_base = self.defs.borrow()[i].from_base;
            out.push((name.clone(), if from_base { value } else { intern(value) }));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parser::parse;
    use crate::yaml::FileId;

    fn vars(text: &str) -> Variables {
        Variables::new(&parse(text, FileId(1)).unwrap()).unwrap()
    }

    #[test]
    fn resolves_out_of_order_and_deep_chains() {
        let sources = SourceMap::new();
        let v = vars("release: v%{version}\nversion: '1.0'\nodd: '%%{version} %{ x} %'\n");
        assert_eq!(v.get("release", &sources).unwrap().as_deref(), Some("v1.0"));
        assert_eq!(v.get("odd", &sources).unwrap().as_deref(), Some("%1.0 %{ x} %"));
        let mut text = String::from("var0: base\n");
        for i in 1..=5000 {
            text.push_str(&format!("var{i}: '%{{var{}}}'\n", i - 1));
        }
        let v = vars(&text);
        v.check(&sources).unwrap();
        assert_eq!(v.get("var5000", &sources).unwrap().as_deref(), Some("base"));
    }

    /// An element table: `base` with `own` composed on top.
    fn element_table(base: &Map, own: &str) -> Map {
        let mut table = base.clone();
        crate::yaml::compose(parse(own, FileId(2)).unwrap(), &mut table).unwrap();
        table
    }

    #[test]
    fn a_base_table_shares_exactly_the_values_an_element_does_not_change() {
        let sources = SourceMap::new();
        let base_map = parse("a: x\nb: '%{a}-b'\nc: '%{d}'\ne: lit\nf: '%{e}/f'\n", FileId(1)).unwrap();
        let mut interned = 0;
        let base = VariablesBase::new(&base_map, &sources, |v| {
            interned += 1;
            v
        });
        // `c` refers to an undefined variable: not resolved in the base.
        assert_eq!(interned, 4);
        let table = element_table(&base_map, "a: y\nd: z\n");
        let shared = Variables::with_base(&table, &base).unwrap();
        let plain = Variables::new(&table).unwrap();
        assert_eq!(shared.resolved(&sources).unwrap(), plain.resolved(&sources).unwrap());
        assert_eq!(shared.get("b", &sources).unwrap().as_deref(), Some("y-b"));
        assert_eq!(shared.get("c", &sources).unwrap().as_deref(), Some("z"));
        let from_base: Vec<bool> = ["a", "b", "c", "d", "e", "f"].iter().map(|n| shared.is_from_base(n)).collect();
        assert_eq!(from_base, [false, false, false, false, true, true]);
    }

    #[test]
    fn a_base_table_leaves_the_errors_to_the_element() {
        let sources = SourceMap::new();
        let base_map = parse("a: '%{b}'\nb: x\nc: '%{missing}'\n", FileId(1)).unwrap();
        let base = VariablesBase::new(&base_map, &sources, |v| v);
        for own in ["b: '%{a}'\n", "d: '%{c}'\n"] {
            let table = element_table(&base_map, own);
            let shared = Variables::with_base(&table, &base).unwrap().check(&sources).unwrap_err();
            let plain = Variables::new(&table).unwrap().check(&sources).unwrap_err();
            assert_eq!((shared.reason(), &shared.message, &shared.detail), (plain.reason(), &plain.message, &plain.detail), "{own}");
        }
    }

    #[test]
    fn reports_cycles_and_undefined() {
        let sources = SourceMap::new();
        let err = vars("a: '%{b}'\nb: '%{a}'\n").check(&sources).unwrap_err();
        assert_eq!(err.reason(), Some(LoadErrorReason::CircularReferenceVariable));
        assert_eq!(err.detail.as_deref().map(|d| d.lines().count()), Some(2));
        let err = vars("a: '%{a}'\n").check(&sources).unwrap_err();
        assert_eq!(err.reason(), Some(LoadErrorReason::CircularReferenceVariable));
        let err = vars("a: 'x %{missing}'\n").check(&sources).unwrap_err();
        assert_eq!(err.reason(), Some(LoadErrorReason::UnresolvedVariable));
        assert_eq!(err.at.map(|s| (s.line, s.col)), Some((1, 3)));
    }
}
