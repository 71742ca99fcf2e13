//! [`BuildPlan`]: what the build queue builds — elements in topological
//! order, each with its keys, what it waits for and a [`Recipe`] saying how
//! its artifact is made.
//!
//! Key decision: the plan is plain, validated data. An adapter fills it from
//! the loader's graph and the key table; tests fill it by hand. Everything
//! element-kind specific that the queue needs is in the recipe, so the queue
//! itself knows no kinds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::split::{SplitFilter, SplitRules};
use super::BuildError;

/// The cache keys an artifact is stored and found under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactKeys {
    /// The strong (strict) key.
    pub strong: String,
    /// The weak key.
    pub weak: String,
}

/// A source tree staged into an element's build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTree {
    /// The local directory (or file) staged: a `local` source's path, or the
    /// tree the fetch step staged for a `tar`/`remote` source.
    pub path: PathBuf,
    /// The subdirectory of the build root it is staged in (`directory:`), `""` for the root.
    pub directory: String,
}

/// How an element that runs commands is built (`manual` and BuildElements).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandsRecipe {
    /// The sources, staged under the build root in order.
    pub sources: Vec<SourceTree>,
    /// `%{build-root}` (absolute, inside the sandbox).
    pub build_root: String,
    /// `%{install-root}` (absolute, inside the sandbox): the output directory.
    pub install_root: String,
    /// The commands, in order (configure, build, install, strip), each run through `sh -e -c`.
    pub commands: Vec<String>,
    /// The environment.
    pub environment: BTreeMap<String, String>,
    /// REAPI platform properties (`OSFamily`, `ISA`, ...).
    pub platform: BTreeMap<String, String>,
    /// Where build dependencies are staged (`script`'s `location`): each
    /// entry stages the runtime closure of the listed plan indices under the
    /// path. Empty: every staged dependency at `/` (BuildElements).
    pub layout: Vec<(String, Vec<usize>)>,
    /// The integration commands to run first, in `/`: those of the
    /// dependencies staged at `/`, as BuildStream's BuildElement and
    /// ScriptElement integrate them (filled in when the action is made).
    pub integration_commands: Vec<String>,
    /// BuildElement's `digest-environment`: variable → the build
    /// dependencies (plan indices) whose staged runtime closure's CAS digest
    /// (`hash/size`) the variable is set to.
    pub digest_environment: Vec<(String, Vec<usize>)>,
}

/// How a `compose` element is built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ComposeRecipe {
    /// What is kept of each dependency.
    pub filter: SplitFilter,
    /// `config.integrate`: run the dependencies' integration commands first.
    pub integrate: bool,
    /// The environment integration commands run with.
    pub environment: BTreeMap<String, String>,
    /// REAPI platform properties of the integration action.
    pub platform: BTreeMap<String, String>,
}

/// How an element's artifact is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipe {
    /// `import`: the artifact is the source tree (its `source` subdirectory
    /// relocated under `target`); nothing runs.
    Import {
        /// The sources, staged in order.
        sources: Vec<SourceTree>,
        /// `config.source`: the subdirectory of the sources taken.
        source: String,
        /// `config.target`: where it lands in the artifact.
        target: String,
    },
    /// `stack`: an empty artifact that only stands for its dependencies.
    Stack,
    /// `compose`: the staged dependencies' files, after their integration
    /// commands ran (when `integrate` and there are any), filtered by each
    /// dependency's split rules.
    Compose(ComposeRecipe),
    /// `filter`: the artifact of its one build dependency (not its closure),
    /// filtered by that dependency's split rules; nothing runs.
    Filter {
        /// The plan index of the filtered element.
        source: usize,
        /// What is kept.
        filter: SplitFilter,
    },
    /// Run commands in a sandbox on the staged dependencies and sources.
    Commands(CommandsRecipe),
}

/// One element of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanElement {
    /// The element's project.
    pub project: String,
    /// The full element name (`base/alpine.bst`).
    pub name: String,
    /// Its keys.
    pub keys: ArtifactKeys,
    /// Direct build dependencies (plan indices).
    pub build_deps: Vec<usize>,
    /// Direct runtime dependencies (plan indices).
    pub runtime_deps: Vec<usize>,
    /// How the artifact is made.
    pub recipe: Recipe,
    /// The element's public data that dependants use.
    pub public: PublicData,
    /// Its project's `fatal-warnings` (with the implicit additions).
    pub fatal_warnings: Vec<String>,
}

/// The parts of an element's `public: bst:` data the build uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PublicData {
    /// `split-rules`.
    pub split_rules: SplitRules,
    /// `integration-commands`.
    pub integration_commands: Vec<String>,
    /// `overlap-whitelist`: absolute globs of files this element may
    /// overlap (variables expanded).
    pub overlap_whitelist: Vec<String>,
}

/// A validated plan: elements in topological order, with each element's
/// staged dependency set precomputed.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    elements: Vec<PlanElement>,
    staged: Vec<Vec<usize>>,
    dependants: Vec<Vec<usize>>,
}

impl BuildPlan {
    /// Checks that every dependency comes before its dependant and computes,
    /// for each element, the dependencies staged for its build: the runtime
    /// closure of its build dependencies, in plan order.
    pub fn new(elements: Vec<PlanElement>) -> Result<Self, BuildError> {
        for (index, element) in elements.iter().enumerate() {
            for &dep in element.build_deps.iter().chain(&element.runtime_deps) {
                if dep >= index {
                    return Err(BuildError::Plan(format!(
                        "{} depends on {}, which is not before it",
                        element.name,
                        elements.get(dep).map(|e| e.name.as_str()).unwrap_or("an element outside the plan")
                    )));
                }
            }
        }
        // Closures as bit sets: unions are word-wise, so dense graphs stay cheap.
        let words = elements.len().div_ceil(64);
        let mut runtime_closure: Vec<Vec<u64>> = Vec::with_capacity(elements.len());
        for element in &elements {
            let mut closure = vec![0u64; words];
            for &dep in &element.runtime_deps {
                closure[dep / 64] |= 1 << (dep % 64);
                union(&mut closure, &runtime_closure[dep]);
            }
            runtime_closure.push(closure);
        }
        let mut staged = Vec::with_capacity(elements.len());
        let mut dependants = vec![Vec::new(); elements.len()];
        let mut set = vec![0u64; words];
        for (index, element) in elements.iter().enumerate() {
            set.iter_mut().for_each(|w| *w = 0);
            for &dep in &element.build_deps {
                set[dep / 64] |= 1 << (dep % 64);
                union(&mut set, &runtime_closure[dep]);
            }
            let members = members(&set);
            for &dep in &members {
                dependants[dep].push(index);
            }
            staged.push(members);
        }
        Ok(BuildPlan { elements, staged, dependants })
    }

    /// The elements, in topological order.
    pub fn elements(&self) -> &[PlanElement] {
        &self.elements
    }

    /// The dependencies staged when building `index` (plan order); the
    /// element waits for all of them.
    pub fn staged(&self, index: usize) -> &[usize] {
        &self.staged[index]
    }

    /// The runtime closure of `roots` (the roots included), in plan order.
    pub fn runtime_closure(&self, roots: &[usize]) -> Vec<usize> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<usize> = roots.to_vec();
        while let Some(index) = stack.pop() {
            if index < self.elements.len() && seen.insert(index) {
                stack.extend(self.elements[index].runtime_deps.iter().copied());
            }
        }
        seen.into_iter().collect()
    }

    /// The elements that wait for `index`.
    pub fn dependants(&self, index: usize) -> &[usize] {
        &self.dependants[index]
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Whether the plan is empty.
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }
}

/// `into |= from`, word by word.
fn union(into: &mut [u64], from: &[u64]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a |= *b;
    }
}

/// The indices whose bits are set, ascending.
fn members(set: &[u64]) -> Vec<usize> {
    let mut out = Vec::new();
    for (w, &word) in set.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            out.push(w * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stack element named `name` with the given dependencies.
    pub(crate) fn element(name: &str, build: &[usize], runtime: &[usize]) -> PlanElement {
        PlanElement {
            project: "test".into(),
            name: name.into(),
            keys: ArtifactKeys { strong: format!("{name}-strong"), weak: format!("{name}-weak") },
            build_deps: build.to_vec(),
            runtime_deps: runtime.to_vec(),
            recipe: Recipe::Stack,
            public: PublicData::default(),
            fatal_warnings: vec![],
        }
    }

    #[test]
    fn stages_the_runtime_closure_of_build_dependencies() {
        // 0 libc; 1 libfoo runtime-depends on 0; 2 tool builds with 1; 3 app builds with 2 only.
        let plan = BuildPlan::new(vec![
            element("libc", &[], &[]),
            element("libfoo", &[0], &[0]),
            element("tool", &[1], &[]),
            element("app", &[2], &[]),
        ])
        .unwrap();
        assert_eq!(plan.staged(2), &[0, 1]);
        // tool has no runtime deps, so app stages tool only.
        assert_eq!(plan.staged(3), &[2]);
        assert_eq!(plan.dependants(0), &[1, 2]);
        assert_eq!(plan.runtime_closure(&[1]), [0, 1]);
        assert_eq!(plan.runtime_closure(&[3, 2]), [2, 3]);
    }

    #[test]
    fn closures_span_many_words() {
        // A runtime chain of 150 elements and one that builds on its end.
        let mut elements: Vec<PlanElement> = (0..150).map(|i| element(&format!("e{i}"), &[], &[])).collect();
        for (i, e) in elements.iter_mut().enumerate().skip(1) {
            e.runtime_deps = vec![i - 1];
        }
        elements.push(element("top", &[149], &[]));
        let plan = BuildPlan::new(elements).unwrap();
        assert_eq!(plan.staged(150), (0..150).collect::<Vec<_>>());
        assert_eq!(plan.dependants(70), &[150]);
    }

    #[test]
    fn refuses_dependencies_out_of_order() {
        let err = BuildPlan::new(vec![element("a", &[1], &[]), element("b", &[], &[])]).unwrap_err();
        assert!(matches!(err, BuildError::Plan(_)));
        assert!(BuildPlan::new(vec![element("a", &[0], &[])]).is_err());
        assert!(BuildPlan::new(vec![element("a", &[], &[7])]).is_err());
    }
}
