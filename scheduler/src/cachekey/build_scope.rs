//! Build-scope dependency lists of every element (spec §4.1), computed once
//! for the whole graph.
//!
//! It owns [`BuildScopes`]: per element its runtime closure (post-order,
//! itself last) and its build-scope list. Key decision: a closure is the
//! filtered concatenation of the runtime dependencies' closures, which are
//! already known when elements are visited level by level, so nothing is
//! ever re-walked; a dependency already visited is skipped whole (its
//! closure came with it); a visited set is an epoch-stamped array, so
//! starting a new one costs nothing, and each worker thread keeps its own.
//! The lists need only the dependency edges ([`DependencyGraph`]), so they
//! can be computed from the loader's graph while the key inputs are made.

use rayon::prelude::*;

use super::element_input::ElementInput;
use super::CacheKeyError;

/// One direct dependency, as the lists need it.
#[derive(Debug, Clone, Copy)]
pub struct DependencyEdge {
    /// The dependency's element index.
    pub element: usize,
    /// Needed at build time.
    pub build: bool,
    /// Needed at run time.
    pub runtime: bool,
}

/// The direct dependencies of every element of a graph, by element index,
/// in the loader's sorted order (spec §4.2).
pub trait DependencyGraph: Sync {
    /// Number of elements.
    fn element_count(&self) -> usize;
    /// Number of direct dependencies of `element`.
    fn dependency_count(&self, element: usize) -> usize;
    /// The direct dependency of `element` at `position`.
    fn dependency(&self, element: usize, position: usize) -> DependencyEdge;
    /// The full name of `element`, for messages.
    fn element_name(&self, element: usize) -> &str;

    /// The direct dependencies of `element` in order.
    fn dependencies(&self, element: usize) -> impl Iterator<Item = DependencyEdge> + '_ {
        (0..self.dependency_count(element)).map(move |position| self.dependency(element, position))
    }
}

impl DependencyGraph for [ElementInput<'_>] {
    fn element_count(&self) -> usize {
        self.len()
    }

    fn dependency_count(&self, element: usize) -> usize {
        self[element].dependencies.len()
    }

    fn dependency(&self, element: usize, position: usize) -> DependencyEdge {
        let dep = &self[element].dependencies[position];
        DependencyEdge { element: dep.element, build: dep.build, runtime: dep.runtime }
    }

    fn element_name(&self, element: usize) -> &str {
        &self[element].full_name
    }
}

/// Levels whose dependencies' closures hold fewer members than this in
/// all are done on the calling thread.
const PARALLEL_WORK: usize = 16 * 1024;

/// The dependency lists of every element of a graph, indexed like the inputs.
#[derive(Debug, Default)]
pub struct BuildScopes {
    /// Runtime closure per element: post-order over runtime dependencies, itself last.
    pub closures: Vec<Vec<u32>>,
    /// Build-scope list per element: the runtime closures of its build dependencies.
    pub scopes: Vec<Vec<u32>>,
    /// Per element, where the segments of its build-scope list end (see [`SegmentEnds`]).
    pub segment_ends: Vec<SegmentEnds>,
}

/// Where the first two segments of a build-scope list end: its length
/// after the members that its first build dependency (with any new member)
/// brought, and after the next one's; 0 when there is no such segment. Two
/// elements whose first build dependencies are the same have the same list
/// up to there, whatever the length, which fixed intervals miss (see
/// `prefix_states`).
pub type SegmentEnds = [u32; 2];

impl BuildScopes {
    /// Computes the lists of every element; an out-of-range dependency or a cycle is an error.
    /// The elements of one level are independent and are done in parallel.
    pub fn compute<G: DependencyGraph + ?Sized>(graph: &G) -> Result<Self, CacheKeyError> {
        let order = topological_order(graph)?;
        let count = graph.element_count();
        let mut scopes =
            BuildScopes { closures: vec![Vec::new(); count], scopes: vec![Vec::new(); count], segment_ends: vec![[0; 2]; count] };
        let mut marks = Marks::new(count);
        for level in &dependency_levels(graph, &order) {
            let closures = &scopes.closures;
            // Levels with little work are not worth waking other threads for.
            let work: usize = level
                .iter()
                .flat_map(|&index| graph.dependencies(index))
                .map(|dep| closures.get(dep.element).map_or(0, Vec::len))
                .sum();
            let computed: Vec<ElementLists> = if level.len() < 2 || work < PARALLEL_WORK {
                level.iter().map(|&index| ElementLists::compute(graph, index, closures, &mut marks)).collect()
            } else {
                level
                    .par_iter()
                    .map_init(|| Marks::new(count), |marks, &index| ElementLists::compute(graph, index, closures, marks))
                    .collect()
            };
            for (&index, lists) in level.iter().zip(computed) {
                scopes.closures[index] = lists.closure;
                scopes.scopes[index] = lists.scope;
                scopes.segment_ends[index] = lists.segment_ends;
            }
        }
        Ok(scopes)
    }
}

/// The elements by level, given a topological `order`: every dependency of
/// an element is in an earlier level.
fn dependency_levels<G: DependencyGraph + ?Sized>(graph: &G, order: &[usize]) -> Vec<Vec<usize>> {
    let mut levels: Vec<Vec<usize>> = Vec::new();
    let mut level_of = vec![0usize; graph.element_count()];
    for &index in order {
        let level = graph.dependencies(index).map(|d| level_of[d.element] + 1).max().unwrap_or(0);
        level_of[index] = level;
        if levels.len() <= level {
            levels.resize_with(level + 1, Vec::new);
        }
        levels[level].push(index);
    }
    levels
}

/// The lists of one element.
struct ElementLists {
    closure: Vec<u32>,
    scope: Vec<u32>,
    segment_ends: SegmentEnds,
}

impl ElementLists {
    /// The lists of element `index`, whose dependencies' closures are in `closures`.
    fn compute<G: DependencyGraph + ?Sized>(graph: &G, index: usize, closures: &[Vec<u32>], marks: &mut Marks) -> Self {
        let (closure, _) = marks.union(graph.dependencies(index).filter(|d| d.runtime).map(|d| d.element), closures, Some(index));
        let (scope, segment_ends) = marks.union(graph.dependencies(index).filter(|d| d.build).map(|d| d.element), closures, None);
        ElementLists { closure, scope, segment_ends }
    }
}

/// Visited marks with an epoch, so a fresh visited set costs nothing, and
/// a scratch list reused for every union (the result is copied out at its
/// exact size, instead of growing and shrinking a new vector each time).
struct Marks {
    stamps: Vec<u32>,
    epoch: u32,
    scratch: Vec<u32>,
}

impl Marks {
    fn new(len: usize) -> Self {
        Marks { stamps: vec![0; len], epoch: 0, scratch: Vec::new() }
    }

    /// The union of the closures of `elements` in order (first occurrence
    /// kept), then `last` if given; and where its first two segments end.
    fn union(
        &mut self,
        elements: impl Iterator<Item = usize>,
        closures: &[Vec<u32>],
        last: Option<usize>,
    ) -> (Vec<u32>, SegmentEnds) {
        self.epoch += 1;
        self.scratch.clear();
        let mut ends: SegmentEnds = [0; 2];
        let mut segments = 0;
        for element in elements {
            let before = self.scratch.len();
            self.extend_unvisited(element, &closures[element]);
            if segments < ends.len() && self.scratch.len() > before {
                ends[segments] = self.scratch.len() as u32;
                segments += 1;
            }
        }
        self.scratch.extend(last.map(|index| index as u32));
        (self.scratch.to_vec(), ends)
    }

    /// Appends the members of `closure`, the closure of `element`, not yet
    /// visited, marking them. A visited element came with its whole closure
    /// (closures are unions of closures), so its closure is skipped at once.
    fn extend_unvisited(&mut self, element: usize, closure: &[u32]) {
        if self.stamps.get(element) == Some(&self.epoch) {
            return;
        }
        for &member in closure {
            let stamp = &mut self.stamps[member as usize];
            if *stamp != self.epoch {
                *stamp = self.epoch;
                self.scratch.push(member);
            }
        }
    }
}

/// Elements ordered so that every dependency comes before its dependants.
pub(super) fn topological_order<G: DependencyGraph + ?Sized>(graph: &G) -> Result<Vec<usize>, CacheKeyError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Open,
        Done,
    }
    let count = graph.element_count();
    let mut state = vec![State::New; count];
    let mut order = Vec::with_capacity(count);
    for root in 0..count {
        if state[root] != State::New {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        state[root] = State::Open;
        while let Some((node, next)) = stack.pop() {
            if next < graph.dependency_count(node) {
                stack.push((node, next + 1));
                let target = graph.dependency(node, next).element;
                match state.get(target) {
                    None => {
                        return Err(CacheKeyError::Internal {
                            detail: format!("{}: dependency index {target} out of range", graph.element_name(node)),
                        })
                    }
                    Some(State::New) => {
                        state[target] = State::Open;
                        stack.push((target, 0));
                    }
                    Some(State::Open) => {
                        return Err(CacheKeyError::Internal {
                            detail: format!("circular dependency at {}", graph.element_name(target)),
                        })
                    }
                    Some(State::Done) => {}
                }
            } else {
                state[node] = State::Done;
                order.push(node);
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::super::element_input::DependencyInput;
    use super::*;

    fn element(deps: &[(usize, bool, bool)]) -> ElementInput<'static> {
        ElementInput {
            dependencies: deps
                .iter()
                .map(|&(element, build, runtime)| DependencyInput { element, build, runtime, ..Default::default() })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn key_stability_order() {
        // zzz=0, aaa=1, t1=2 -> zzz, t2=3 -> aaa, zzz; top=4 -> t1, t2 (all types).
        let all = [
            element(&[]),
            element(&[]),
            element(&[(0, true, true)]),
            element(&[(1, true, true), (0, true, true)]),
            element(&[(2, true, true), (3, true, true)]),
        ];
        let scopes = BuildScopes::compute(&all[..]).unwrap();
        assert_eq!(scopes.scopes[4], vec![0, 2, 1, 3], "zzz, t1, aaa, t2 (spec §4.1)");
        assert_eq!(scopes.closures[4], vec![0, 2, 1, 3, 4]);
        assert_eq!(scopes.segment_ends[4], [2, 4], "t1's closure, then t2's new members");
        assert_eq!(scopes.segment_ends[2], [1, 0], "one segment");
        assert_eq!(scopes.segment_ends[0], [0, 0], "an empty list");
        assert_eq!(dependency_levels(&all[..], &topological_order(&all[..]).unwrap()), vec![vec![0, 1], vec![2, 3], vec![4]]);
    }

    #[test]
    fn build_only_dependencies_do_not_reach_dependants() {
        // 1 build-depends on 0; 2 depends (all) on 1: 0 is not in 2's scope.
        let all = [element(&[]), element(&[(0, true, false)]), element(&[(1, true, true)])];
        let scopes = BuildScopes::compute(&all[..]).unwrap();
        assert_eq!(scopes.scopes[1], vec![0]);
        assert_eq!(scopes.scopes[2], vec![1]);
        assert_eq!(scopes.closures[1], vec![1]);
    }

    #[test]
    fn cycles_and_bad_indices_are_errors() {
        assert!(BuildScopes::compute(&[element(&[(1, true, true)]), element(&[(0, true, true)])][..]).is_err());
        assert!(BuildScopes::compute(&[element(&[(7, true, true)])][..]).is_err());
    }
}
