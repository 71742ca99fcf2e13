//! Element name checks and normalisation (spec §4).
//!
//! Key decision: names are normalised lexically (`./a.bst`, `x/../a.bst` →
//! `a.bst`) before any cache lookup, so one file is one element.

use crate::yaml::{LoadError, LoadErrorReason, LoadResult, Span};

fn error(at: Option<Span>, reason: LoadErrorReason, message: String) -> LoadError {
    match at {
        Some(span) => LoadError::at(span, reason, message),
        None => LoadError::new(reason, message),
    }
}

/// `BAD_ELEMENT_SUFFIX` / `BAD_CHARACTERS_IN_NAME` checks.
pub fn check_element_name(name: &str, at: Option<Span>) -> LoadResult<()> {
    if !name.ends_with(".bst") {
        return Err(error(
            at,
            LoadErrorReason::BadElementSuffix,
            format!("Element '{name}' does not have expected file extension `.bst`"),
        ));
    }
    if name.chars().any(|c| (c as u32) <= 0x1f || (c as u32) >= 0x7f || "<>\"|?*".contains(c)) {
        return Err(error(
            at,
            LoadErrorReason::BadCharactersInName,
            format!("Element '{name}' has invalid characters in its name"),
        ));
    }
    Ok(())
}

/// Lexical normalisation like Python's `os.path.normpath`.
pub fn normalise(name: &str) -> String {
    if !name.contains("./") && !name.contains("//") {
        return name.to_string();
    }
    let mut parts: Vec<&str> = Vec::new();
    for comp in name.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_paths() {
        assert_eq!(normalise("./a.bst"), "a.bst");
        assert_eq!(normalise("x/../a.bst"), "a.bst");
        assert_eq!(normalise("base/alpine.bst"), "base/alpine.bst");
    }

    #[test]
    fn rejects_bad_names() {
        assert_eq!(check_element_name("a", None).unwrap_err().reason(), Some(LoadErrorReason::BadElementSuffix));
        assert_eq!(check_element_name("a|b.bst", None).unwrap_err().reason(), Some(LoadErrorReason::BadCharactersInName));
        assert!(check_element_name("dir/a-b_c.bst", None).is_ok());
    }
}
