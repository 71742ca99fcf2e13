//! Symbol names (spec §1.2): project names, option names and exported variable
//! names.
//!
//! Key decision: one check with a flag for whether dashes are allowed.

use crate::yaml::{LoadError, LoadErrorReason, LoadResult, Span};

/// Fails with `INVALID_SYMBOL_NAME` unless `name` is a valid symbol.
pub fn check_symbol(name: &str, span: Span, purpose: &str, allow_dashes: bool) -> LoadResult<()> {
    let mut chars = name.chars();
    let valid = match chars.next() {
        None => false,
        Some(first) if first.is_ascii_digit() => false,
        Some(_) => name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || (allow_dashes && c == '-')),
    };
    if valid {
        Ok(())
    } else {
        Err(LoadError::at(span, LoadErrorReason::InvalidSymbolName, format!("Invalid symbol name for {purpose}: '{name}'")))
    }
}
