//! After loading: the circular dependency check over the whole graph and
//! the sorting of every element's direct dependencies (spec §7.2, §13.2).
//!
//! Key decision: "a depends on b" is answered by a search from a pruned with
//! four depth-first interval labellings and the height above the leaves, so
//! most negative answers cost O(1) and sorting stays near linear.

use std::cmp::Ordering;

use rayon::prelude::*;

use super::session::Session;
use crate::graph::sort::timsort_by;
use crate::graph::{DepType, ElementId};
use crate::yaml::{LoadError, LoadErrorReason, LoadResult};

impl Session {
    /// Fails with `CIRCULAR_DEPENDENCY` naming the cycle, if there is one
    /// reachable from `targets`.
    pub fn check_cycles(&self, targets: &[ElementId]) -> LoadResult<()> {
        let n = self.elements.len();
        let mut validated = vec![false; n];
        let mut on_path = vec![false; n];
        let mut path: Vec<ElementId> = Vec::new();
        for &target in targets {
            // Stack of (element, next dependency index).
            let mut stack: Vec<(ElementId, usize)> = Vec::new();
            if validated[target.index()] {
                continue;
            }
            stack.push((target, 0));
            on_path[target.index()] = true;
            path.push(target);
            while let Some(&mut (id, ref mut next)) = stack.last_mut() {
                let deps = &self.element(id).deps;
                if *next < deps.len() {
                    let dep = deps[*next].element;
                    *next += 1;
                    if validated[dep.index()] {
                        continue;
                    }
                    if on_path[dep.index()] {
                        let start = path.iter().position(|e| *e == dep).unwrap_or(0);
                        let mut chain: Vec<&str> = path[start..].iter().map(|e| self.element(*e).full_name.as_str()).collect();
                        chain.push(&self.element(dep).full_name);
                        return Err(LoadError::new(
                            LoadErrorReason::CircularDependency,
                            format!(
                                "Circular dependency detected at element: {}\nDependency chain: {}",
                                self.element(dep).full_name,
                                chain.join(" -> ")
                            ),
                        ));
                    }
                    on_path[dep.index()] = true;
                    path.push(dep);
                    stack.push((dep, 0));
                } else {
                    on_path[id.index()] = false;
                    validated[id.index()] = true;
                    path.pop();
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    /// Sorts the direct dependencies of every loaded element.
    pub fn sort_dependencies(&mut self) {
        let n = self.elements.len();
        let edges = Edges::new(&self.elements);
        // The four labellings are independent walks: two threads do two each.
        let ((a, b), (c, d)) = rayon::join(
            || (Labels::new(&edges, false, false), Labels::new(&edges, true, true)),
            || (Labels::new(&edges, false, true), Labels::new(&edges, true, false)),
        );
        let labels = [a, b, c, d];
        // Height above the leaves: a dependency is always strictly lower.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by_key(|&i| labels[0].post[i]);
        let mut level = vec![0u32; n];
        for &i in &order {
            level[i] = self.elements[i].deps.iter().map(|d| level[d.element.index()] + 1).max().unwrap_or(0);
        }
        let nodes = (0..n)
            .map(|i| Node {
                labels: std::array::from_fn(|l| Label { post: labels[l].post[i], low: labels[l].low[i], start: labels[l].start[i] }),
                level: level[i],
            })
            .collect();
        drop(labels);
        let shared = Pruning { nodes, edges };
        // Each element's list is sorted on its own: in parallel, each thread
        // with its own search state (the answers are the same on any thread).
        let mut lists: Vec<(usize, Vec<super::session::LoadedDep>)> = self
            .elements
            .iter_mut()
            .enumerate()
            .filter(|(_, e)| e.deps.len() >= 2)
            .map(|(i, e)| (i, std::mem::take(&mut e.deps)))
            .collect();
        // Per element, what the last tie-breakers compare: its name and its junction's.
        let names: Vec<(&str, Option<&str>)> = self
            .elements
            .iter()
            .map(|e| (e.name.as_str(), self.projects[e.project.0 as usize].junction.as_ref().map(|j| j.name.as_str())))
            .collect();
        lists.par_iter_mut().for_each_init(
            || Reachability::new(&shared),
            |reach, (_, deps)| {
                timsort_by(deps, |a, b| {
                    let (ea, eb) = (a.element, b.element);
                    if reach.depends(ea, eb) {
                        return Ordering::Greater;
                    }
                    if reach.depends(eb, ea) {
                        return Ordering::Less;
                    }
                    if a.dep_type != b.dep_type {
                        if a.dep_type == DepType::Runtime {
                            return Ordering::Greater;
                        }
                        if b.dep_type == DepType::Runtime {
                            return Ordering::Less;
                        }
                    }
                    let ((na, ja), (nb, jb)) = (names[ea.index()], names[eb.index()]);
                    match na.cmp(nb) {
                        Ordering::Equal => {}
                        other => return other,
                    }
                    match (ja, jb) {
                        (Some(x), Some(y)) => x.cmp(y),
                        (Some(_), None) => Ordering::Less,
                        (None, Some(_)) => Ordering::Greater,
                        (None, None) => Ordering::Equal,
                    }
                })
            },
        );
        for (i, deps) in lists {
            self.elements[i].deps = deps;
        }
    }
}

/// One depth-first labelling of the graph: `post[x]` is x's post-order
/// number, `low[x]` the lowest post-order number among x and everything it
/// depends on. If a depends on b then `low[a] <= post[b] < post[a]`.
struct Labels {
    post: Vec<u32>,
    low: Vec<u32>,
    /// First post-order number inside x's depth-first subtree: everything
    /// numbered in `start[x]..=post[x]` is certainly a dependency of x.
    start: Vec<u32>,
}

impl Labels {
    fn new(edges: &Edges, reversed: bool, roots_reversed: bool) -> Labels {
        let n = edges.len();
        const UNSEEN: u32 = u32::MAX;
        let mut post = vec![UNSEEN; n];
        let mut low = vec![UNSEEN; n];
        let mut start = vec![UNSEEN; n];
        let mut counter = 0u32;
        let child = |x: usize, i: usize| {
            let deps = edges.of(x);
            let j = if reversed { deps.len() - 1 - i } else { i };
            deps[j] as usize
        };
        let mut started = vec![false; n];
        for r in 0..n {
            let root = if roots_reversed { n - 1 - r } else { r };
            if started[root] {
                continue;
            }
            started[root] = true;
            start[root] = counter;
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(&mut (x, ref mut next)) = stack.last_mut() {
                if *next < edges.of(x).len() {
                    let d = child(x, *next);
                    *next += 1;
                    if !started[d] {
                        started[d] = true;
                        start[d] = counter;
                        stack.push((d, 0));
                    }
                } else {
                    post[x] = counter;
                    let mut l = counter;
                    for &dep in edges.of(x) {
                        l = l.min(low[dep as usize]);
                    }
                    low[x] = l;
                    counter += 1;
                    stack.pop();
                }
            }
        }
        Labels { post, low, start }
    }

}

/// One element's numbers in one labelling (see [`Labels`]).
#[derive(Debug, Clone, Copy)]
struct Label {
    post: u32,
    low: u32,
    start: u32,
}

impl Label {
    /// Whether `b` is in this element's depth-first subtree (then it certainly depends on `b`).
    fn surely_reaches(&self, b: &Label) -> bool {
        self.start <= b.post && b.post < self.post
    }

    /// Whether this element may depend on `b` (false means it certainly does not).
    fn may_reach(&self, b: &Label) -> bool {
        self.low <= b.post && b.post < self.post
    }
}

/// Every element's direct dependencies, as two flat arrays (the searches
/// walk these instead of the loader's much larger dependency records).
struct Edges {
    /// Element x's dependencies are `targets[start[x]..start[x + 1]]`.
    start: Vec<u32>,
    targets: Vec<u32>,
}

impl Edges {
    fn new(elements: &[Box<super::session::LoadElement>]) -> Edges {
        let mut start = Vec::with_capacity(elements.len() + 1);
        let mut targets = Vec::new();
        start.push(0);
        for element in elements {
            targets.extend(element.deps.iter().map(|d| d.element.0));
            start.push(targets.len() as u32);
        }
        Edges { start, targets }
    }

    fn of(&self, x: usize) -> &[u32] {
        &self.targets[self.start[x] as usize..self.start[x + 1] as usize]
    }

    /// Number of elements.
    fn len(&self) -> usize {
        self.start.len() - 1
    }
}

/// Everything the pruning reads about one element, side by side (one
/// memory access per element instead of one per labelling and number).
#[derive(Debug, Clone, Copy)]
struct Node {
    labels: [Label; 4],
    /// Height above the leaves: a dependency is always strictly lower.
    level: u32,
}

/// What the pruned searches read: every element's labels and height, and
/// the dependency edges (shared by the sorting threads).
struct Pruning {
    nodes: Vec<Node>,
    edges: Edges,
}

/// Answers "does a (transitively) depend on b" with searches pruned by four
/// labellings and the height above the leaves; one per sorting thread.
struct Reachability<'a> {
    shared: &'a Pruning,
    stamp: Vec<u32>,
    generation: u32,
    stack: Vec<usize>,
    /// Answers of full searches: the same pairs recur in many elements' lists.
    memo: rustc_hash::FxHashMap<(u32, u32), bool>,
}

impl<'a> Reachability<'a> {
    fn new(shared: &'a Pruning) -> Self {
        Reachability { shared, stamp: vec![0; shared.nodes.len()], generation: 0, stack: Vec::new(), memo: Default::default() }
    }

    fn may_reach(&self, x: usize, b: usize) -> bool {
        let (x, b) = (&self.shared.nodes[x], &self.shared.nodes[b]);
        x.level > b.level && x.labels.iter().zip(&b.labels).all(|(lx, lb)| lx.may_reach(lb))
    }

    fn surely_reaches(&self, x: usize, b: usize) -> bool {
        let (x, b) = (&self.shared.nodes[x], &self.shared.nodes[b]);
        x.labels.iter().zip(&b.labels).any(|(lx, lb)| lx.surely_reaches(lb))
    }

    fn depends(&mut self, a: ElementId, b: ElementId) -> bool {
        let (a, b) = (a.index(), b.index());
        if a == b || !self.may_reach(a, b) {
            return false;
        }
        if self.surely_reaches(a, b) {
            return true;
        }
        let key = (a as u32, b as u32);
        if let Some(&known) = self.memo.get(&key) {
            return known;
        }
        let found = self.search(a, b);
        self.memo.insert(key, found);
        found
    }

    fn search(&mut self, a: usize, b: usize) -> bool {
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        self.stack.clear();
        self.stack.push(a);
        self.stamp[a] = generation;
        while let Some(x) = self.stack.pop() {
            for &d in self.shared.edges.of(x) {
                let d = d as usize;
                if d == b || self.surely_reaches(d, b) {
                    return true;
                }
                if self.stamp[d] != generation && self.may_reach(d, b) {
                    self.stamp[d] = generation;
                    self.stack.push(d);
                }
            }
        }
        false
    }
}

