//! [`validate_name`]: the rule every entry name in a REAPI `Directory` obeys,
//! shared by the Merkle builder (names read from disk or given in code) and
//! the wire validator (names received from a peer).
//!
//! Key decision: a name is one path segment that a POSIX file system can hold
//! without reinterpretation — not empty, no `/`, not `.` or `..`, no NUL byte.
//! Anything else (spaces, non-ASCII, leading dots) is a legal name.

/// Why an entry name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("name is empty")]
    Empty,
    /// The name contains a `/`, so it is more than one path segment.
    #[error("name contains '/'")]
    Slash,
    /// The name is `.` or `..`.
    #[error("name is '.' or '..'")]
    Dots,
    /// The name contains a NUL byte, which no file system accepts.
    #[error("name contains a NUL byte")]
    Nul,
}

/// Checks that `name` is a single, ordinary path segment.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    match name {
        "" => Err(NameError::Empty),
        "." | ".." => Err(NameError::Dots),
        _ if name.contains('/') => Err(NameError::Slash),
        _ if name.contains('\0') => Err(NameError::Nul),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for good in ["a", ".hidden", "...", "with space", "é", "a.b", "-", "..a"] {
            assert_eq!(validate_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn refuses_each_bad_form_with_its_reason() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name("."), Err(NameError::Dots));
        assert_eq!(validate_name(".."), Err(NameError::Dots));
        assert_eq!(validate_name("a/b"), Err(NameError::Slash));
        assert_eq!(validate_name("/"), Err(NameError::Slash));
        assert_eq!(validate_name("a\0"), Err(NameError::Nul));
    }
}
