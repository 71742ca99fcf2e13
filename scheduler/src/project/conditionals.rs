//! `(?)` conditionals and `(!)` assertions (spec §3.2, §3.4), evaluated with
//! one project's options.
//!
//! Key decision: the root of a mapping is processed until no `(?)` is left
//! (a true branch may bring a new one), then nested mappings and mappings in
//! lists are processed, exactly as BuildStream's `OptionPool.process_node`.

use super::expression::evaluate;
use super::options::OptionPool;
use crate::yaml::{compose, LoadError, LoadErrorReason, LoadResult, Map, Node};

/// Resolves every conditional and assertion in `map`. `restricted` lists keys
/// a conditional body at the root may not contain (project.conf).
pub fn process_conditionals(map: &mut Map, options: &OptionPool, restricted: &[&str]) -> LoadResult<()> {
    while process_one(map, options, restricted)? {}
    for value in map.entries.values_mut() {
        process_value(value, options)?;
    }
    Ok(())
}

fn process_value(node: &mut Node, options: &OptionPool) -> LoadResult<()> {
    match node {
        Node::Map(m) => process_conditionals(m, options, &[]),
        Node::Seq(s) => s.items.iter_mut().try_for_each(|n| process_value(n, options)),
        Node::Scalar(_) => Ok(()),
    }
}

fn process_one(map: &mut Map, options: &OptionPool, restricted: &[&str]) -> LoadResult<bool> {
    if let Some(assertion) = map.get("(!)") {
        let Node::Scalar(s) = assertion else {
            return Err(LoadError::at(assertion.span(), LoadErrorReason::InvalidData, "Value of '(!)' is not of the expected type 'scalar'"));
        };
        return Err(LoadError::at(s.span, LoadErrorReason::UserAssertion, s.value.trim().to_string()));
    }
    let Some(conditions) = map.remove("(?)") else { return Ok(false) };
    let Node::Seq(conditions) = conditions else {
        return Err(LoadError::at(conditions.span(), LoadErrorReason::InvalidData, "Value of '(?)' is not of the expected type 'list'"));
    };
    for condition in conditions.items {
        let Node::Map(condition) = condition else {
            return Err(LoadError::at(condition.span(), LoadErrorReason::InvalidData, "Conditional statement is not of the expected type 'dict'"));
        };
        if condition.entries.len() > 1 {
            return Err(LoadError::at(condition.span, LoadErrorReason::InvalidData, "Conditional statement has more than one key"));
        }
        let cond_span = condition.span;
        let Some((expression, value)) = condition.entries.into_iter().next() else { continue };
        if let Node::Map(body) = &value {
            for key in restricted {
                if let Some(node) = body.get(key) {
                    return Err(LoadError::at(
                        node.span(),
                        LoadErrorReason::IllegalComposite,
                        format!("The '{key}' key cannot be specified conditionally."),
                    ));
                }
            }
        }
        let apply = evaluate(&expression, &|name: &str| options.lookup(name)).map_err(|e| {
            LoadError::at(cond_span, LoadErrorReason::ExpressionFailed, format!("Failed to evaluate expression ({expression}): {e}"))
        })?;
        let Node::Map(body) = value else {
            return Err(LoadError::at(cond_span, LoadErrorReason::IllegalComposite, "Only values of type 'dict' can be composed."));
        };
        if apply {
            compose(body, map)?;
        }
    }
    Ok(true)
}
