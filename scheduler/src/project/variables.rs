//! Variables (spec §9): `%{name}` references, resolution of a whole table
//! with undefined-reference and cycle reports, and expansion of node trees.
//!
//! Key decision: resolution is iterative (an explicit stack, no recursion), so
//! chains of thousands of variables resolve in linear time; values are
//! resolved lazily and memoised, which serves both regular elements (all
//! checked up front) and first-pass elements (only what is expanded).
//! A [`VariablesBase`] resolves the table every element of one kind starts
//! from once; an element's table then reuses each value whose whole chain of
//! references it does not override, and resolves only the rest. Shared
//! entries are not copied, neither while resolving ([`Variables`] marks them
//! `Base`) nor after ([`ResolvedVariables`] keeps the base by reference and
//! only the element's own values), and plain scalar overrides are laid over
//! the base without composing a copy of it ([`Variables::over_base`]).

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
    may_reference(text) && split(text).iter().any(|p| matches!(p, Part::Ref(_)))
}

/// Whether `text` holds `%{`, where a reference may start. A plain scan:
/// on values this short `str::contains` with a string pattern mostly set
/// up a two-way searcher (its vector path needs 16 bytes or more).
pub fn may_reference(text: &str) -> bool {
    crate::yaml::block_parser::find_pair(text, *b"%{").is_some()
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
}

impl Definition {
    /// A definition of `text` (split into `parts`, `None` without references)
    /// written at `span`; a text without references is its own value.
    fn new(text: Arc<str>, parts: Option<Arc<[Part]>>, span: Span) -> Definition {
        let resolved = parts.is_none().then(|| text.clone());
        Definition { text, parts, span, resolved, visiting: false }
    }
}

/// One variable of a table being resolved.
#[derive(Debug)]
enum Entry {
    /// Unchanged from the base table, and resolved there: nothing is copied.
    Base,
    /// Defined or resolved by the table itself.
    Own(Definition),
}

type NameIndex = HashMap<Arc<str>, usize>;

/// The variable table shared by the elements of one (project, kind), resolved
/// once: the value of every variable that resolves without error, and which
/// variables refer to which.
#[derive(Debug, Default)]
pub struct VariablesBase {
    index: NameIndex,
    defs: Vec<BaseDefinition>,
    /// The table holds no composition directive (it cannot fail the
    /// trailing-directive check of a composed table).
    directive_free: bool,
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
        for i in 0..vars.len() {
            // Failures stay unresolved here; each element reports its own.
            let _ = vars.resolve_index(i, sources);
        }
        let Variables { extra_names, extra_index: index, entries, .. } = vars;
        let mut defs: Vec<BaseDefinition> = extra_names
            .into_iter()
            .zip(entries.into_inner())
            .filter_map(|(name, entry)| match entry {
                Entry::Own(d) => Some(BaseDefinition {
                    name,
                    text: d.text,
                    span: d.span,
                    parts: d.parts,
                    resolved: d.resolved.map(&mut intern),
                    dependents: Vec::new(),
                }),
                Entry::Base => None,
            })
            .collect();
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
        VariablesBase { index, defs, directive_free: crate::yaml::check_trailing_directives(map).is_ok() }
    }

    /// Whether the table holds no composition directive.
    pub fn directive_free(&self) -> bool {
        self.directive_free
    }

    /// Whether the base holds no variable (an invalid table shares nothing).
    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// The resolved value at `position`; `None` if it did not resolve here.
    fn value(&self, position: usize) -> Option<&Arc<str>> {
        self.defs.get(position)?.resolved.as_ref()
    }
}

/// A variable table being resolved: a base table's entries first (shared
/// unless the table changes them or what they refer to), then its own.
#[derive(Debug)]
pub struct Variables {
    base: Option<Arc<VariablesBase>>,
    /// Names of the entries after the base's (all of them without a base).
    extra_names: Vec<Arc<str>>,
    /// Position of each of those names (the base's own index has the rest).
    extra_index: NameIndex,
    entries: RefCell<Vec<Entry>>,
}

fn pieces(text: &str) -> Option<Arc<[Part]>> {
    may_reference(text).then(|| split(text).into())
}

impl Variables {
    /// Builds the table from a composed `variables` mapping; non-scalar values
    /// are `INVALID_DATA`.
    pub fn new(map: &Map) -> LoadResult<Variables> {
        Self::build(map, None)
    }

    /// Builds the table from a composed `variables` mapping that started as
    /// `base`'s table: a variable whose definition and every reference of
    /// which (transitively) are still the base's takes the base's value.
    pub fn with_base(map: &Map, base: &Arc<VariablesBase>) -> LoadResult<Variables> {
        Self::build(map, Some(base))
    }

    fn build(map: &Map, base: Option<&Arc<VariablesBase>>) -> LoadResult<Variables> {
        let len = map.entries.len();
        // The composed table keeps the base's entries first, in order.
        let base = base.filter(|base| {
            !base.defs.is_empty() && len >= base.defs.len() && map.entries.keys().zip(&base.defs).all(|(k, d)| *k == d.name)
        });
        let base_len = base.map_or(0, |b| b.defs.len());
        let mut entries = Vec::with_capacity(len);
        let mut extra_names = Vec::with_capacity(len - base_len);
        let mut extra_index = NameIndex::default();
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
            match base.and_then(|b| b.defs.get(i)) {
                Some(d) if Arc::ptr_eq(&d.text, &s.value) && d.span == s.span => entries.push(Entry::Base),
                Some(_) => {
                    changed.push(i);
                    entries.push(Entry::Own(Definition::new(s.value.clone(), pieces(&s.value), s.span)));
                }
                None => {
                    extra_index.insert(name.clone(), i);
                    extra_names.push(name.clone());
                    entries.push(Entry::Own(Definition::new(s.value.clone(), pieces(&s.value), s.span)));
                }
            }
        }
        let vars = Variables { base: base.cloned(), extra_names, extra_index, entries: RefCell::new(entries) };
        vars.finish_base(changed);
        Ok(vars)
    }

    /// Builds the table of `base` with `assignments` composed on top, in
    /// order, as plain scalars (name, value, where written): each replaces
    /// the variable of that name or is added after the others. This is the
    /// table [`Variables::with_base`] builds from the composed mapping,
    /// without composing the mapping. `base` must not be empty.
    pub fn over_base<'a>(base: &Arc<VariablesBase>, assignments: impl IntoIterator<Item = (&'a Arc<str>, &'a Arc<str>, Span)>) -> Variables {
        let base_len = base.defs.len();
        let mut entries: Vec<Entry> = Vec::with_capacity(base_len + 4);
        entries.resize_with(base_len, || Entry::Base);
        let mut vars = Variables {
            base: Some(base.clone()),
            extra_names: Vec::new(),
            extra_index: NameIndex::default(),
            entries: RefCell::new(entries),
        };
        let mut changed: Vec<usize> = Vec::new();
        for (name, value, span) in assignments {
            let definition = Entry::Own(Definition::new(value.clone(), pieces(value), span));
            match vars.position(name) {
                Some(i) => {
                    if i < base_len {
                        changed.push(i);
                    }
                    vars.entries.get_mut()[i] = definition;
                }
                None => {
                    let entries = vars.entries.get_mut();
                    vars.extra_index.insert(name.clone(), entries.len());
                    vars.extra_names.push(name.clone());
                    entries.push(definition);
                }
            }
        }
        vars.finish_base(changed);
        vars
    }

    /// Gives every base entry that refers (transitively) to a `changed` one,
    /// or that did not resolve in the base, a definition of its own.
    fn finish_base(&self, mut changed: Vec<usize>) {
        let Some(base) = &self.base else { return };
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
        let mut entries = self.entries.borrow_mut();
        for ((entry, base_def), dirty) in entries.iter_mut().zip(&base.defs).zip(dirty) {
            if matches!(entry, Entry::Base) && (dirty || base_def.resolved.is_none()) {
                *entry = Entry::Own(Definition::new(base_def.text.clone(), base_def.parts.clone(), base_def.span));
            }
        }
    }

    /// Number of variables.
    fn len(&self) -> usize {
        self.base_len() + self.extra_names.len()
    }

    fn base_len(&self) -> usize {
        self.base.as_ref().map_or(0, |b| b.defs.len())
    }

    /// The name at `position`.
    fn name(&self, position: usize) -> &Arc<str> {
        let base_len = self.base_len();
        match &self.base {
            Some(base) if position < base_len => &base.defs[position].name,
            _ => &self.extra_names[position - base_len],
        }
    }

    /// The position of `name`.
    fn position(&self, name: &str) -> Option<usize> {
        self.base.as_ref().and_then(|b| b.index.get(name)).or_else(|| self.extra_index.get(name)).copied()
    }

    /// The resolved value at `position`, if resolved yet.
    fn resolved_at<'e>(&'e self, entries: &'e [Entry], position: usize) -> Option<&'e Arc<str>> {
        match &entries[position] {
            Entry::Base => self.base.as_ref()?.value(position),
            Entry::Own(d) => d.resolved.as_ref(),
        }
    }

    /// Resolves every variable (regular elements).
    pub fn check(&self, sources: &SourceMap) -> LoadResult<()> {
        for i in 0..self.len() {
            if matches!(self.entries.borrow()[i], Entry::Own(_)) {
                self.resolve_index(i, sources)?;
            }
        }
        Ok(())
    }

    /// The resolved value of `name`, `None` if undefined.
    pub fn get(&self, name: &str, sources: &SourceMap) -> LoadResult<Option<Arc<str>>> {
        match self.position(name) {
            None => Ok(None),
            Some(i) => self.resolve_index(i, sources).map(Some),
        }
    }

    fn resolve_index(&self, root: usize, sources: &SourceMap) -> LoadResult<Arc<str>> {
        let mut entries = self.entries.borrow_mut();
        if let Some(v) = self.resolved_at(&entries, root) {
            return Ok(v.clone());
        }
        let mut stack: Vec<usize> = vec![root];
        let result = self.walk(&mut entries, &mut stack, sources);
        for &i in &stack {
            if let Entry::Own(d) = &mut entries[i] {
                d.visiting = false;
            }
        }
        result?;
        Ok(self.resolved_at(&entries, root).cloned().unwrap_or_else(|| Arc::from("")))
    }

    /// Resolves the variables on `stack` (and what they need), depth first.
    /// Only the table's own entries are ever on the stack: base entries are
    /// resolved.
    fn walk(&self, entries: &mut [Entry], stack: &mut Vec<usize>, sources: &SourceMap) -> LoadResult<()> {
        if let Some(Entry::Own(d)) = stack.last().map(|&top| &mut entries[top]) {
            d.visiting = true;
        }
        while let Some(&top) = stack.last() {
            let Entry::Own(def) = &entries[top] else {
                stack.pop();
                continue;
            };
            let parts = def.parts.clone().unwrap_or_else(|| Arc::from([]));
            let text = def.text.clone();
            let span = def.span;
            let mut pending = None;
            for part in parts.iter() {
                if let Part::Ref(range) = part {
                    let r = &text[range.clone()];
                    match self.position(r) {
                        None => {
                            return Err(LoadError::at(
                                span,
                                LoadErrorReason::UnresolvedVariable,
                                format!("Reference to undefined variable '{r}'"),
                            ))
                        }
                        Some(j) if self.resolved_at(entries, j).is_some() => {}
                        Some(j) if matches!(&entries[j], Entry::Own(d) if d.visiting) => {
                            let start = stack.iter().position(|&s| s == j).unwrap_or(0);
                            return Err(self.cycle_error(&stack[start..], j, entries, sources));
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
                    if let Entry::Own(d) = &mut entries[next] {
                        d.visiting = true;
                    }
                    stack.push(next);
                }
                None => {
                    let mut value = String::with_capacity(text.len() + 16);
                    for part in parts.iter() {
                        match part {
                            Part::Text(range) => value.push_str(&text[range.clone()]),
                            Part::Ref(r) => value.push_str(
                                self.position(&text[r.clone()]).and_then(|j| self.resolved_at(entries, j)).map_or("", |v| v),
                            ),
                        }
                    }
                    if let Entry::Own(d) = &mut entries[top] {
                        d.resolved = Some(Arc::from(value));
                        d.visiting = false;
                    }
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    fn cycle_error(&self, chain: &[usize], closing: usize, entries: &[Entry], sources: &SourceMap) -> LoadError {
        let mut detail = String::new();
        for (i, &at) in chain.iter().enumerate() {
            let next = chain.get(i + 1).copied().unwrap_or(closing);
            let span = match &entries[at] {
                Entry::Own(d) => d.span,
                Entry::Base => self.base.as_ref().map_or(Span::synthetic(crate::yaml::FileId(0)), |b| b.defs[at].span),
            };
            detail.push_str(&format!(
                "{}: Variable '{}' refers to variable '{}'\n",
                sources.describe(span),
                self.name(at),
                self.name(next)
            ));
        }
        LoadError::new(
            LoadErrorReason::CircularReferenceVariable,
            format!("Circular dependency detected on variable '{}'", self.name(closing)),
        )
        .with_detail(detail.trim_end().to_string())
    }

    /// Whether `name` is defined and has the base table's value (see
    /// [`Variables::with_base`]).
    pub fn is_from_base(&self, name: &str) -> bool {
        self.position(name).is_some_and(|i| matches!(self.entries.borrow()[i], Entry::Base))
    }

    /// Substitutes references in `text` (the node at `span`).
    pub fn expand_str(&self, text: &str, span: Span, sources: &SourceMap) -> LoadResult<Arc<str>> {
        if !may_reference(text) {
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
                if may_reference(&s.value) {
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
        let table = self.resolved_with(sources, |v| v)?;
        Ok(table.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Every variable with its resolved value (resolving as needed): the
    /// values it shares with the base table by reference, each other value
    /// passed through `intern`.
    pub fn resolved_with(
        &self,
        sources: &SourceMap,
        mut intern: impl FnMut(Arc<str>) -> Arc<str>,
    ) -> LoadResult<ResolvedVariables> {
        let base_len = self.base_len();
        let mut changed = Vec::new();
        // Exact capacity: every element keeps this list.
        let mut extra = Vec::with_capacity(self.extra_names.len());
        for i in 0..self.len() {
            if matches!(self.entries.borrow()[i], Entry::Base) {
                continue;
            }
            let value = intern(self.resolve_index(i, sources)?);
            if i < base_len {
                changed.push((i as u32, value));
            } else {
                extra.push((self.name(i).clone(), value));
            }
        }
        Ok(ResolvedVariables { base: self.base.clone(), changed: changed.into(), extra: extra.into() })
    }
}

/// An element's resolved variables, in table order: the values it shares
/// with its kind's base table are that table's (one copy for all such
/// elements), and only the others are its own.
#[derive(Debug, Clone, Default)]
pub struct ResolvedVariables {
    base: Option<Arc<VariablesBase>>,
    /// Base positions whose value differs, with that value, by position.
    changed: Box<[(u32, Arc<str>)]>,
    /// The variables after the base's, in order.
    extra: Box<[(Arc<str>, Arc<str>)]>,
}

impl ResolvedVariables {
    /// Every variable and its value, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<str>)> + '_ {
        let base = self.base.as_deref().map_or(&[][..], |b| &b.defs[..]);
        let mut changed = self.changed.iter().peekable();
        // A base value that did not resolve is always among `changed`.
        let shared = base.iter().enumerate().filter_map(move |(i, d)| match changed.next_if(|(at, _)| *at as usize == i) {
            Some((_, v)) => Some((&d.name, v)),
            None => d.resolved.as_ref().map(|v| (&d.name, v)),
        });
        shared.chain(self.extra.iter().map(|(k, v)| (k, v)))
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        if let Some(base) = &self.base {
            if let Some(&i) = base.index.get(name) {
                return Some(match self.changed.binary_search_by_key(&(i as u32), |(at, _)| *at) {
                    Ok(k) => self.changed[k].1.as_ref(),
                    Err(_) => base.defs[i].resolved.as_deref().unwrap_or(""),
                });
            }
        }
        self.extra.iter().find(|(k, _)| k.as_ref() == name).map(|(_, v)| v.as_ref())
    }

    /// Sets `name` to `value`, in place if defined, else after the others.
    pub fn insert(&mut self, name: &str, value: &str) {
        let value: Arc<str> = Arc::from(value);
        if let Some(&i) = self.base.as_ref().and_then(|b| b.index.get(name)) {
            let mut changed = std::mem::take(&mut self.changed).into_vec();
            match changed.binary_search_by_key(&(i as u32), |(at, _)| *at) {
                Ok(k) => changed[k].1 = value,
                Err(k) => changed.insert(k, (i as u32, value)),
            }
            self.changed = changed.into();
            return;
        }
        let mut extra = std::mem::take(&mut self.extra).into_vec();
        match extra.iter_mut().find(|(k, _)| k.as_ref() == name) {
            Some(entry) => entry.1 = value,
            None => extra.push((Arc::from(name), value)),
        }
        self.extra = extra.into();
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.base.as_ref().map_or(0, |b| b.defs.len()) + self.extra.len()
    }

    /// Whether there is no variable.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<(Arc<str>, Arc<str>)>> for ResolvedVariables {
    fn from(table: Vec<(Arc<str>, Arc<str>)>) -> Self {
        ResolvedVariables { base: None, changed: Box::new([]), extra: table.into() }
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
        let base = Arc::new(VariablesBase::new(&base_map, &sources, |v| {
            interned += 1;
            v
        }));
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
        let base = Arc::new(VariablesBase::new(&base_map, &sources, |v| v));
        for own in ["b: '%{a}'\n", "d: '%{c}'\n"] {
            let table = element_table(&base_map, own);
            let shared = Variables::with_base(&table, &base).unwrap().check(&sources).unwrap_err();
            let plain = Variables::new(&table).unwrap().check(&sources).unwrap_err();
            assert_eq!((shared.reason(), &shared.message, &shared.detail), (plain.reason(), &plain.message, &plain.detail), "{own}");
        }
    }

    /// The table of `own` laid over `base` without composing, as the loader builds it.
    fn overlay(base: &Arc<VariablesBase>, own: &str) -> Variables {
        let own = parse(own, FileId(2)).unwrap();
        let assignments: Vec<(Arc<str>, Arc<str>, Span)> = own
            .iter()
            .map(|(k, v)| match v {
                Node::Scalar(s) => (k.clone(), s.value.clone(), s.span),
                _ => unreachable!("test tables are scalars"),
            })
            .collect();
        Variables::over_base(base, assignments.iter().map(|(k, v, span)| (k, v, *span)))
    }

    #[test]
    fn laying_scalars_over_a_base_equals_composing_them() {
        let sources = SourceMap::new();
        let base_map = parse("a: x\nb: '%{a}-b'\nc: '%{d}'\ne: lit\nf: '%{e}/f'\ng: '%{b}%{f}'\n", FileId(1)).unwrap();
        let base = Arc::new(VariablesBase::new(&base_map, &sources, |v| v));
        for own in ["a: y\nd: z\n", "d: '%{g}'\nh: '%{d}!'\n", "e: '%{a}'\nd: q\nz: '%{c}'\n", "d: ''\n"] {
            let composed = Variables::with_base(&element_table(&base_map, own), &base).unwrap();
            let laid = overlay(&base, own);
            assert_eq!(laid.resolved(&sources).unwrap(), composed.resolved(&sources).unwrap(), "{own}");
            for name in ["a", "b", "c", "d", "e", "f", "g", "h", "z"] {
                assert_eq!(laid.is_from_base(name), composed.is_from_base(name), "{own}: {name}");
            }
            // The element's resolved table shares the base's values and reads back the same.
            let table = laid.resolved_with(&sources, |v| v).unwrap();
            let listed: Vec<(String, String)> = table.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let expected: Vec<(String, String)> =
                composed.resolved(&sources).unwrap().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(listed, expected, "{own}");
            for (k, v) in &expected {
                assert_eq!(table.get(k), Some(v.as_str()), "{own}: {k}");
            }
            assert_eq!(table.len(), expected.len());
        }
        // Errors: the same reason, message and detail either way.
        for own in ["d: '%{g}'\nb: '%{d}'\n", "a: '%{missing}'\nd: z\n", "b: x\n"] {
            let composed = Variables::with_base(&element_table(&base_map, own), &base).unwrap().check(&sources).unwrap_err();
            let laid = overlay(&base, own).check(&sources).unwrap_err();
            assert_eq!((laid.reason(), &laid.message, &laid.detail), (composed.reason(), &composed.message, &composed.detail), "{own}");
        }
    }

    #[test]
    fn inserting_into_a_resolved_table_replaces_in_place_or_appends() {
        let sources = SourceMap::new();
        let base_map = parse("a: x\nb: '%{a}-b'\n", FileId(1)).unwrap();
        let base = Arc::new(VariablesBase::new(&base_map, &sources, |v| v));
        let mut table = overlay(&base, "c: z\n").resolved_with(&sources, |v| v).unwrap();
        table.insert("b", "new");
        table.insert("c", "zz");
        table.insert("d", "w");
        let listed: Vec<(&str, &str)> = table.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
        assert_eq!(listed, [("a", "x"), ("b", "new"), ("c", "zz"), ("d", "w")]);
        assert_eq!(table.get("b"), Some("new"));
        assert_eq!(table.get("missing"), None);
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
