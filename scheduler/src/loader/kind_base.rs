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
//! the element replaces by its own file's synthetic span.

use std::sync::Arc;

use super::kinds::KindInfo;
use super::session::Session;
use crate::project::{PassConfig, ProjectId, VariablesBase};
use crate::yaml::{compose, FileId, LoadResult, Map, Span};

/// The span of a section composed onto an empty mapping (the element's own
/// synthetic span replaces it).
const PLACEHOLDER: Span = Span { file: FileId(u32::MAX), line: 0, col: 0 };

/// The shared starting point of one (project, pass, kind).
#[derive(Debug)]
pub struct KindBase {
    /// Kind defaults ← project `elements:` overrides for the kind.
    pub defaults: Map,
    /// Project variables ← default variables, and their resolution.
    pub variables: LoadResult<(Map, VariablesBase)>,
    /// Project environment (second pass) ← default environment.
    pub environment: LoadResult<Map>,
    /// Default config.
    pub config: LoadResult<Map>,
    /// Project sandbox (second pass) ← default sandbox.
    pub sandbox: LoadResult<Map>,
    /// Project split rules (second pass) ← the defaults' public split rules.
    pub splits: LoadResult<Map>,
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
    pub(crate) fn kind_base(&mut self, id: ProjectId, first_pass: bool, kind: &KindInfo) -> LoadResult<Arc<KindBase>> {
        let key = (first_pass, kind.name.clone());
        if let Some(found) = self.state(id).kind_bases.get(&key) {
            return found.clone();
        }
        let built = self.build_kind_base(id, first_pass, kind).map(Arc::new);
        self.state(id).kind_bases.insert(key, built.clone());
        built
    }

    fn build_kind_base(&mut self, id: ProjectId, first_pass: bool, kind: &KindInfo) -> LoadResult<KindBase> {
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
            let base = VariablesBase::new(&map, sources, |v| interner.intern_str(v));
            (map, base)
        });
        Ok(KindBase { defaults, variables, environment, config, sandbox, splits })
    }
}
