//! Artifact names `<project>/<normal-name>/<key>` (spec §9).
//!
//! It owns [`artifact_name`]. Key decision: the normal name follows Python's
//! `os.path.splitext` exactly (leading dots are never an extension), because
//! the name is part of the local ref path and the remote asset URN that
//! BuildStream looks artifacts up by.

/// The artifact name of element `element_name` (project-relative) of `project` at `key`.
pub fn artifact_name(project: &str, element_name: &str, key: &str) -> String {
    let normal: String = strip_extension(&element_name.replace('/', "-"))
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') { c } else { '_' })
        .collect();
    format!("{project}/{normal}/{key}")
}

/// Python's `os.path.splitext(name)[0]` for a name without separators.
fn strip_extension(name: &str) -> &str {
    match name.rfind('.') {
        Some(dot) if name[..dot].bytes().any(|b| b != b'.') => &name[..dot],
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_names() {
        assert_eq!(artifact_name("retest", "hello.bst", "k"), "retest/hello/k");
        assert_eq!(artifact_name("p", "elements/a.b.bst", "k"), "p/elements-a.b/k");
        assert_eq!(artifact_name("p", "x/y z@.bst", "k"), "p/x-y_z_/k");
        assert_eq!(artifact_name("p", ".hidden", "k"), "p/.hidden/k");
        assert_eq!(artifact_name("p", "noext", "k"), "p/noext/k");
        assert_eq!(artifact_name("p", "trail.", "k"), "p/trail/k");
    }
}
