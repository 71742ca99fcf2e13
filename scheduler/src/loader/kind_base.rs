//! What every element of one kind in one project (and pass) starts from:
//! the kind's defaults with the project's `elements:` overrides, and each
//! section (variables, environment, config, sandbox, split rules) composed
//! from the project's base and those defaults, with the variables resolved
//! once ([`VariablesBase`]).
//!
//! Key decision: each part is kept as the `Result` composing it gave, and
//! elements consult the parts in the order composition used to run per
//! element, so an element fails with the same first error as before; a
//! section composed onto an empty mapping carries a placeholder span that
//! the element replaces by its own file's synthetic span. The environment,
//! sandbox and public sections are also kept expanded ([`Expanded`]): an
//! element without its own such section whose variables agree with the base
//! on every variable the section uses shares that one copy.

use std::sync::{Arc, OnceLock};

use super::kinds::KindInfo;
use super::session::Session;
use crate::project::variables::references_in;
use crate::project::{PassConfig, ProjectId, Variables, VariablesBase};
use crate::yaml::interner::MapInterner;
use crate::yaml::{check_trailing_directives, compose, FileId, LoadResult, Map, Node, SourceMap, Span};

/// The span of a section composed onto an empty mapping (the element's own
/// synthetic span replaces it).
const PLACEHOLDER: Span = Span { file: FileId(u32::MAX), line: 0, col: 0 };

/// The shared starting point of one (project, pass, kind).
#[derive(Debug)]
pub struct KindBase {
    /// Kind defaults ← project `elements:` overrides for the kind.
    pub defaults: Map,
    /// Project variables ← default variables, and their resolution.
    pub variables: LoadResult<(Map, Arc<VariablesBase>)>,
    /// Project environment (second pass) ← default environment.
    pub environment: LoadResult<Map>,
    /// Default config.
    pub config: LoadResult<Map>,
    /// Project sandbox (second pass) ← default sandbox.
    pub sandbox: LoadResult<Map>,
    /// Project split rules (second pass) ← the defaults' public split rules.
    pub splits: LoadResult<Map>,
    /// The environment, expanded with the base variables.
    pub environment_expanded: Option<Expanded>,
    /// The sandbox, expanded with the base variables.
    pub sandbox_expanded: Option<Expanded>,
    /// The public data of an element without `public`, expanded.
    pub public_expanded: Option<Expanded>,
}

/// A section expanded once for the kind.
#[derive(Debug)]
pub struct Expanded {
    map: Map,
    /// The variables it uses.
    refs: Vec<String>,
    /// The interned copy, made when the first element takes it (so the
    /// interner sees it where that element's own copy used to be).
    shared: OnceLock<Arc<Map>>,
}

impl Expanded {
    /// Expands `map` with `vars`; `None` when that fails (each element then
    /// expands its own copy and reports the error).
    fn new(mut map: Map, vars: &Variables, sources: &SourceMap) -> Option<Expanded> {
        check_trailing_directives(&map).ok()?;
        let refs = references_in(&map);
        vars.expand_map(&mut map, sources).ok()?;
        Some(Expanded { map, refs, shared: OnceLock::new() })
    }

    /// The shared copy for an element whose file has no `key` section and
    /// whose variables `vars` agree with the base on every one it uses.
    pub fn reuse<'a>(this: &'a Option<Expanded>, node: &Map, key: &str, vars: &Variables) -> Option<&'a Expanded> {
        let expanded = this.as_ref()?;
        (!node.contains(key) && expanded.refs.iter().all(|r| vars.is_from_base(r))).then_some(expanded)
    }

    /// The interned copy.
    pub fn interned(&self, interner: &mut MapInterner) -> Arc<Map> {
        self.shared.get_or_init(|| interner.intern(self.map.clone())).clone()
    }
}

/// An element's section: its own composed and expanded copy, or the kind's.
#[derive(Debug)]
pub enum Section<'a> {
    /// Composed for this element.
    Own(Map),
    /// The kind's expanded copy.
    Shared(&'a Expanded),
}

impl Section<'_> {
    /// The mapping.
    pub fn map(&self) -> &Map {
        match self {
            Section::Own(map) => map,
            Section::Shared(expanded) => &expanded.map,
        }
    }

    /// The interned copy.
    pub fn intern(self, interner: &mut MapInterner) -> Arc<Map> {
        match self {
            Section::Own(map) => interner.intern(map),
            Section::Shared(expanded) => expanded.interned(interner),
        }
    }
}

/// An element's public data: its own `public` (or `empty`) with the split
/// rules `splits` ← its own split rules under `bst`.
pub fn compose_public(mut public: Map, mut splits: Map, empty: Map) -> LoadResult<Map> {
    if let Some(rules) = super::instantiate::split_rules(&public)? {
        compose(rules.clone(), &mut splits)?;
    }
    let mut bst = public.get_map("bst")?.cloned().unwrap_or(empty);
    bst.insert("split-rules", Node::Map(splits));
    public.insert("bst", Node::Map(bst));
    check_trailing_directives(&public)?;
    Ok(public)
}

/// `base` ← `defaults[key]`.
fn section(defaults: &Map, key: &str, base: Map) -> LoadResult<Map> {
    let mut out = base;
    if let Some(d) = defaults.get_map(key)? {
        compose(d.clone(), &mut out)?;
    }
    Ok(out)
}

fn split_rules(defaults: &Map, base: Map) -> LoadResult<Map> {
    let mut out = base;
    if let Some(public) = defaults.get_map("public")? {
        if let Some(rules) = super::instantiate::split_rules(public)? {
            compose(rules.clone(), &mut out)?;
        }
    }
    Ok(out)
}

impl KindBase {
    /// A shared section, owned by the element whose file is `file`.
    pub fn take(section: &LoadResult<Map>, file: FileId) -> LoadResult<Map> {
        let mut map = section.clone()?;
        if map.span == PLACEHOLDER {
            map.span = Span::synthetic(file);
        }
        Ok(map)
    }
}

impl Session {
    /// The starting point of elements of `kind` in project `id` (first or
    /// second pass), composed on first use.
    /// `file`: the file of the element asking first.
    pub(crate) fn kind_base(&mut self, id: ProjectId, first_pass: bool, kind: &KindInfo, file: FileId) -> LoadResult<Arc<KindBase>> {
        let pass = usize::from(first_pass);
        if let Some(found) = self.state(id).kind_bases[pass].get(kind.name.as_str()) {
            return found.clone();
        }
        let built = self.build_kind_base(id, first_pass, kind, file).map(Arc::new);
        self.state(id).kind_bases[pass].insert(kind.name.clone(), built.clone());
        built
    }

    fn build_kind_base(&mut self, id: ProjectId, first_pass: bool, kind: &KindInfo, file: FileId) -> LoadResult<KindBase> {
        let pass: &PassConfig = self.pass_of(id, first_pass)?;
        let mut defaults = kind.defaults.clone();
        if let Some(overrides) = pass.element_overrides.get_map(&kind.name)? {
            compose(overrides.clone(), &mut defaults)?;
        }
        let empty = || Map::new(PLACEHOLDER);
        let variables = section(&defaults, "variables", pass.variables.clone());
        let environment = section(&defaults, "environment", if first_pass { empty() } else { pass.environment.clone() });
        let config = section(&defaults, "config", empty());
        let sandbox = section(&defaults, "sandbox", if first_pass { empty() } else { pass.sandbox.clone() });
        let splits = split_rules(&defaults, if first_pass { empty() } else { pass.split_rules.clone() });
        let (sources, interner) = (&self.sources, &mut self.interner);
        let variables = variables.map(|map| {
            let base = Arc::new(VariablesBase::new(&map, sources, |v| interner.intern_str(v)));
            (map, base)
        });
        let base_vars = variables.as_ref().ok().and_then(|(map, base)| Variables::with_base(map, base).ok());
        let expand = |section: Option<Map>| Expanded::new(section?, base_vars.as_ref()?, sources);
        let synthetic = || Map::new(Span::synthetic(file));
        let environment_expanded = expand(KindBase::take(&environment, file).ok());
        let sandbox_expanded = expand(KindBase::take(&sandbox, file).ok());
        let public = KindBase::take(&splits, file).and_then(|splits| compose_public(synthetic(), splits, synthetic()));
        let public_expanded = expand(public.ok());
        Ok(KindBase {
            defaults,
            variables,
            environment,
            config,
            sandbox,
            splits,
            environment_expanded,
            sandbox_expanded,
            public_expanded,
        })
    }
}
