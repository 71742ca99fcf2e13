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

/// Whether `text` holds any `%{name}` reference.
pub fn has_references(text: &str) -> bool {
    text.contains("%{") && split(text).iter().any(|p| matches!(p, Part::Ref(_)))
}

#[derive(Debug)]
struct Definition {
    text: Arc<str>,
    parts: Arc<[Part]>,
    span: Span,
    resolved: Option<Arc<str>>,
    visiting: bool,
    /// The value was taken from a [`VariablesBase`] (already interned).
    from_base: bool,
}

/// The variable table shared by the elements of one (project, kind), resolved
/// once: the value of every variable that resolves without error, and which
/// variables refer to which.
#[derive(Debug, Default)]
pub struct VariablesBase {
    index: HashMap<Arc<str>, usize>,
    defs: Vec<BaseDefinition>,
}

#[derive(Debug)]
struct BaseDefinition {
    text: Arc<str>,
    span: Span,
    parts: Arc<[Part]>,
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
        for name in &vars.order {
            // Failures stay unresolved here; each element reports its own.
            let _ = vars.resolve(name, sources);
        }
        let defs = vars.defs.into_inner();
        let index: HashMap<Arc<str>, usize> = vars.order.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let mut out: Vec<BaseDefinition> = vars
            .order
            .iter()
            .filter_map(|name| defs.get(name))
            .map(|d| BaseDefinition {
                text: d.text.clone(),
                span: d.span,
                parts: d.parts.clone(),
                resolved: d.resolved.clone().map(&mut intern),
                dependents: Vec::new(),
            })
            .collect();
        for i in 0..out.len() {
            let parts = out[i].parts.clone();
            for part in parts.iter() {
                if let Part::Ref(range) = part {
                    if let Some(&j) = index.get(&out[i].text[range.clone()]) {
                        out[j].dependents.push(i as u32);
                    }
                }
            }
        }
        VariablesBase { index, defs: out }
    }
}

/// A variable table being resolved.
#[derive(Debug)]
pub struct Variables {
    order: Vec<Arc<str>>,
    defs: RefCell<HashMap<Arc<str>, Definition>>,
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
        let mut order = Vec::with_capacity(map.entries.len());
        let mut defs = HashMap::with_capacity_and_hasher(map.entries.len(), Default::default());
        // (name, base index) of definitions unchanged from the base.
        let mut unchanged: Vec<(Arc<str>, usize)> = Vec::new();
        let mut changed: Vec<usize> = Vec::new();
        for (name, node) in map.iter() {
            let Node::Scalar(s) = node else {
                return Err(LoadError::at(
                    node.span(),
                    LoadErrorReason::InvalidData,
                    format!("Value of '{name}' is not of the expected type 'scalar'"),
                ));
            };
            let in_base = base.index.get(name).map(|&i| (i, &base.defs[i]));
            let parts: Arc<[Part]> = match in_base {
                Some((i, d)) if Arc::ptr_eq(&d.text, &s.value) && d.span == s.span => {
                    unchanged.push((name.clone(), i));
                    d.parts.clone()
                }
                other => {
                    if let Some((i, _)) = other {
                        changed.push(i);
                    }
                    if s.value.contains("%{") {
                        split(&s.value).into()
                    } else {
                        Arc::from([])
                    }
                }
            };
            let resolved = parts.is_empty().then(|| s.value.clone());
            order.push(name.clone());
            defs.insert(
                name.clone(),
                Definition { text: s.value.clone(), parts, span: s.span, resolved, visiting: false, from_base: false },
            );
        }
        if !unchanged.is_empty() {
            // Base variables that refer (transitively) to a changed one.
            let mut dirty = vec![false; base.defs.len()];
            while let Some(i) = changed.pop() {
                if !std::mem::replace(&mut dirty[i], true) {
                    changed.extend(base.defs[i].dependents.iter().map(|&d| d as usize));
                }
            }
            for (name, i) in unchanged {
                if let (false, Some(value), Some(def)) = (dirty[i], &base.defs[i].resolved, defs.get_mut(&name)) {
                    def.resolved = Some(value.clone());
                    def.from_base = true;
                }
            }
        }
        Ok(Variables { order, defs: RefCell::new(defs) })
    }

    /// Resolves every variable (regular elements).
    pub fn check(&self, sources: &SourceMap) -> LoadResult<()> {
        for name in &self.order {
            self.resolve(name, sources)?;
        }
        Ok(())
    }

    /// The resolved value of `name`, `None` if undefined.
    pub fn get(&self, name: &str, sources: &SourceMap) -> LoadResult<Option<Arc<str>>> {
        if !self.defs.borrow().contains_key(name) {
            return Ok(None);
        }
        self.resolve(name, sources).map(Some)
    }

    fn resolve(&self, name: &str, sources: &SourceMap) -> LoadResult<Arc<str>> {
        let mut defs = self.defs.borrow_mut();
        if let Some(v) = defs.get(name).and_then(|d| d.resolved.clone()) {
            return Ok(v);
        }
        let Some((root, _)) = defs.get_key_value(name) else {
            return Err(LoadError::new(LoadErrorReason::UnresolvedVariable, format!("Reference to undefined variable '{name}'")));
        };
        let root = root.clone();
        let mut stack: Vec<Arc<str>> = vec![root.clone()];
        if let Some(d) = defs.get_mut(&root) {
            d.visiting = true;
        }
        let result = Self::walk(&mut defs, &mut stack, sources);
        for name in &stack {
            if let Some(d) = defs.get_mut(name) {
                d.visiting = false;
            }
        }
        result?;
        Ok(defs[name].resolved.clone().unwrap_or_else(|| Arc::from("")))
    }

    /// Resolves the variables on `stack` (and what they need), depth first.
    fn walk(defs: &mut HashMap<Arc<str>, Definition>, stack: &mut Vec<Arc<str>>, sources: &SourceMap) -> LoadResult<()> {
        while let Some(top) = stack.last().cloned() {
            let def = &defs[&top];
            let mut pending = None;
            for part in def.parts.iter() {
                if let Part::Ref(range) = part {
                    let r = &def.text[range.clone()];
                    match defs.get_key_value(r) {
                        None => {
                            return Err(LoadError::at(
                                def.span,
                                LoadErrorReason::UnresolvedVariable,
                                format!("Reference to undefined variable '{r}'"),
                            ))
                        }
                        Some((_, d)) if d.resolved.is_some() => {}
                        Some((key, d)) if d.visiting => {
                            let start = stack.iter().position(|s| s == key).unwrap_or(0);
                            return Err(cycle_error(&stack[start..], key, defs, sources));
                        }
                        Some((key, _)) => {
                            pending = Some(key.clone());
                            break;
                        }
                    }
                }
            }
            match pending {
                Some(next) => {
                    if let Some(d) = defs.get_mut(&next) {
                        d.visiting = true;
                    }
                    stack.push(next);
                }
                None => {
                    let mut value = String::with_capacity(def.text.len() + 16);
                    for part in def.parts.iter() {
                        match part {
                            Part::Text(range) => value.push_str(&def.text[range.clone()]),
                            Part::Ref(r) => value.push_str(defs.get(&def.text[r.clone()]).and_then(|d| d.resolved.as_deref()).unwrap_or("")),
                        }
                    }
                    if let Some(d) = defs.get_mut(&top) {
                        d.resolved = Some(Arc::from(value));
                        d.visiting = false;
                    }
                    stack.pop();
                }
            }
        }
        Ok(())
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
        for name in &self.order {
            let value = self.resolve(name, sources)?;
            let from_base = self.defs.borrow().get(name).is_some_and(|d| d.from_base);
            out.push((name.clone(), if from_base { value } else { intern(value) }));
        }
        Ok(out)
    }
}

fn cycle_error(chain: &[Arc<str>], closing: &Arc<str>, defs: &HashMap<Arc<str>, Definition>, sources: &SourceMap) -> LoadError {
    let mut detail = String::new();
    for (i, name) in chain.iter().enumerate() {
        let next = chain.get(i + 1).unwrap_or(closing);
        let span = defs[name].span;
        detail.push_str(&format!("{}: Variable '{}' refers to variable '{}'\n", sources.describe(span), name, next));
    }
    LoadError::new(LoadErrorReason::CircularReferenceVariable, format!("Circular dependency detected on variable '{closing}'"))
        .with_detail(detail.trim_end().to_string())
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
