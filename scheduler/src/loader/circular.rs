//! After loading: the circular dependency check over the whole graph and
//! the sorting of every element's direct dependencies (spec §7.2, §13.2).
//!
//! Key decision: "a depends on b" is answered by a search from a pruned with
//! a post-order numbering and the height above the leaves (dependencies are
//! lower in both): a path from a to b only passes through elements above b,
//! which keeps sorting near linear on layered graphs.

use std::cmp::Ordering;

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
        // Post-order numbering: dependencies get lower numbers.
        let mut number = vec![usize::MAX; n];
        let mut counter = 0;
        for root in 0..n {
            if number[root] != usize::MAX {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            number[root] = usize::MAX - 1;
            while let Some(&mut (id, ref mut next)) = stack.last_mut() {
                let deps = &self.elements[id].deps;
                if *next < deps.len() {
                    let dep = deps[*next].element.index();
                    *next += 1;
                    if number[dep] == usize::MAX {
                        number[dep] = usize::MAX - 1;
                        stack.push((dep, 0));
                    }
                } else {
                    number[id] = counter;
                    counter += 1;
                    stack.pop();
                }
            }
        }
        // Height above the leaves: a dependency is always strictly lower.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_unstable_by_key(|&i| number[i]);
        let mut level = vec![0u32; n];
        for &i in &order {
            level[i] = self.elements[i].deps.iter().map(|d| level[d.element.index()] + 1).max().unwrap_or(0);
        }
        let mut reach = Reachability { number, level, stamp: vec![0; n], generation: 0, stack: Vec::new() };
        for i in 0..n {
            if self.elements[i].deps.len() < 2 {
                continue;
            }
            let mut deps = std::mem::take(&mut self.elements[i].deps);
            let elements = &self.elements;
            timsort_by(&mut deps, |a, b| {
                let (ea, eb) = (a.element, b.element);
                if reach.depends(elements, ea, eb) {
                    return Ordering::Greater;
                }
                if reach.depends(elements, eb, ea) {
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
                let (la, lb) = (&elements[ea.index()], &elements[eb.index()]);
                match la.name.cmp(&lb.name) {
                    Ordering::Equal => {}
                    other => return other,
                }
                let ja = self.projects[la.project.0 as usize].junction.as_ref().map(|j| j.name.as_str());
                let jb = self.projects[lb.project.0 as usize].junction.as_ref().map(|j| j.name.as_str());
                match (ja, jb) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                }
            });
            self.elements[i].deps = deps;
        }
    }
}

/// Answers "does a (transitively) depend on b" with pruned searches.
struct Reachability {
    number: Vec<usize>,
    level: Vec<u32>,
    stamp: Vec<u32>,
    generation: u32,
    stack: Vec<usize>,
}

impl Reachability {
    fn depends(&mut self, elements: &[super::session::LoadElement], a: ElementId, b: ElementId) -> bool {
        let (a, b) = (a.index(), b.index());
        if a == b || self.number[a] <= self.number[b] || self.level[a] <= self.level[b] {
            return false;
        }
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let (floor, floor_level) = (self.number[b], self.level[b]);
        self.stack.clear();
        self.stack.push(a);
        self.stamp[a] = generation;
        while let Some(x) = self.stack.pop() {
            for dep in &elements[x].deps {
                let d = dep.element.index();
                if d == b {
                    return true;
                }
                if self.stamp[d] != generation && self.number[d] > floor && self.level[d] > floor_level {
                    self.stamp[d] = generation;
                    self.stack.push(d);
                }
            }
        }
        false
    }
}
