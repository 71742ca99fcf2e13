//! Which elements `show` (and later `build`) prints, in which order
//! (spec §13.1): BuildStream's `_dependencies` walk with its two visited sets.
//!
//! Key decision: an explicit stack instead of recursion, so very deep graphs
//! cannot overflow the thread stack.

use super::element::ElementId;
use super::Graph;

/// The `--deps` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Targets only.
    None,
    /// Build dependencies' runtime closures.
    Build,
    /// Runtime closure.
    Run,
    /// Everything.
    All,
}

enum Step {
    Visit(ElementId, Scope),
    Emit(ElementId),
}

/// The elements selected from `targets` with `scope`, each once.
pub fn select(graph: &Graph, targets: &[ElementId], scope: Scope) -> Vec<ElementId> {
    let n = graph.elements.len();
    let mut seen_build = vec![false; n];
    let mut seen_run = vec![false; n];
    let mut out = Vec::new();
    if scope == Scope::None {
        for &t in targets {
            if !seen_run[t.index()] {
                seen_run[t.index()] = true;
                out.push(t);
            }
        }
        return out;
    }
    for &target in targets {
        let mut stack = vec![Step::Visit(target, scope)];
        while let Some(step) = stack.pop() {
            let (id, scope) = match step {
                Step::Emit(id) => {
                    out.push(id);
                    continue;
                }
                Step::Visit(id, scope) => (id, scope),
            };
            let element = &graph.elements[id.index()];
            match scope {
                Scope::All => {
                    // Checked when popped, i.e. after earlier siblings were
                    // fully walked, as Python's generator does.
                    if seen_build[id.index()] || seen_run[id.index()] {
                        continue;
                    }
                    seen_build[id.index()] = true;
                    seen_run[id.index()] = true;
                    stack.push(Step::Emit(id));
                    let deps: Vec<ElementId> = element.build_deps().chain(element.runtime_deps()).collect();
                    for dep in deps.into_iter().rev() {
                        stack.push(Step::Visit(dep, Scope::All));
                    }
                }
                Scope::Build => {
                    if seen_build[id.index()] {
                        continue;
                    }
                    seen_build[id.index()] = true;
                    let deps: Vec<ElementId> = element.build_deps().collect();
                    for dep in deps.into_iter().rev() {
                        stack.push(Step::Visit(dep, Scope::Run));
                    }
                }
                Scope::Run => {
                    if seen_run[id.index()] {
                        continue;
                    }
                    seen_run[id.index()] = true;
                    stack.push(Step::Emit(id));
                    let deps: Vec<ElementId> = element.runtime_deps().collect();
                    for dep in deps.into_iter().rev() {
                        stack.push(Step::Visit(dep, Scope::Run));
                    }
                }
                Scope::None => out.push(id),
            }
        }
    }
    out
}
