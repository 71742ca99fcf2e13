//! Validation of a REAPI `Directory` received from the wire (or read back
//! from a store): the canonical-form rules REAPI states and that the Merkle
//! builder produces, checked once at the boundary.
//!
//! Rules ([`validate_directory`]):
//! * every name passes [`validate_name`];
//! * `files`, `directories` and `symlinks` are each sorted by name in byte
//!   (code point) order, and a name appears once across all three lists;
//! * every file and directory digest is a valid [`Digest`] (64 lower-case
//!   hex digits, size ≥ 0, present);
//! * symlink targets are non-empty and NUL-free; *where* they may point is
//!   the caller's policy (see [`symlink_stays_within`]);
//! * node properties, when present, are sorted by property name.
//!
//! Key decision: unknown fields and a non-canonical byte encoding are not
//! errors here (a client's encoder may differ); what is checked is what the
//! message says. The digest a caller trusts is the one of the bytes it got.

use prost::Message;

use crate::name::{validate_name, NameError};
use crate::{reapi, Digest, DigestError};

/// Why a `Directory` (or a `Tree` of them) was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DirectoryError {
    /// The bytes are not a `Directory` (or `Tree`) message.
    #[error("malformed message: {0}")]
    Decode(String),
    /// An entry name is not a single ordinary path segment.
    #[error("invalid entry name {name:?}: {reason}")]
    InvalidName {
        /// The name as received (truncated to 200 characters).
        name: String,
        /// What is wrong with it.
        reason: NameError,
    },
    /// A list of entries is not sorted by name.
    #[error("{kind} are not sorted by name: {name:?} comes after {previous:?}")]
    Unsorted {
        /// Which list (`files`, `directories`, `symlinks`).
        kind: &'static str,
        /// The entry found out of order.
        name: String,
        /// The entry before it.
        previous: String,
    },
    /// A name appears more than once (within or across the entry lists).
    #[error("duplicate entry name {name:?}")]
    Duplicate {
        /// The repeated name.
        name: String,
    },
    /// A file or directory digest is missing or malformed.
    #[error("entry {name:?}: {source}")]
    InvalidDigest {
        /// The entry whose digest is bad.
        name: String,
        /// What is wrong with the digest.
        source: DigestError,
    },
    /// A symlink target is empty or contains a NUL byte.
    #[error("symlink {name:?} has an invalid target {target:?}")]
    InvalidSymlinkTarget {
        /// The symlink's name.
        name: String,
        /// The target as received (truncated to 200 characters).
        target: String,
    },
    /// Node properties are not sorted by property name.
    #[error("node properties of {name:?} are not sorted by name")]
    UnsortedProperties {
        /// The entry (or `""` for the directory itself).
        name: String,
    },
    /// A `Tree` has no root directory.
    #[error("tree has no root directory")]
    MissingRoot,
    /// A `Tree` refers to a directory it does not contain.
    #[error("directory {name:?} refers to {digest}, which the tree does not contain")]
    MissingChild {
        /// The name of the subdirectory entry.
        name: String,
        /// The digest it refers to.
        digest: Digest,
    },
    /// A directory inside a `Tree` is itself invalid.
    #[error("directory {digest} in tree: {source}")]
    InTree {
        /// The digest of the offending directory.
        digest: Digest,
        /// What is wrong with it.
        source: Box<DirectoryError>,
    },
}

/// Decodes `bytes` as a `Directory` and validates it.
pub fn decode_directory(bytes: &[u8]) -> Result<reapi::Directory, DirectoryError> {
    let directory = reapi::Directory::decode(bytes).map_err(|e| DirectoryError::Decode(e.to_string()))?;
    validate_directory(&directory)?;
    Ok(directory)
}

/// Checks a `Directory` against the canonical-form rules in the module doc.
pub fn validate_directory(directory: &reapi::Directory) -> Result<(), DirectoryError> {
    check_sorted("files", directory.files.iter().map(|f| f.name.as_str()))?;
    check_sorted("directories", directory.directories.iter().map(|d| d.name.as_str()))?;
    check_sorted("symlinks", directory.symlinks.iter().map(|s| s.name.as_str()))?;
    check_unique_across(directory)?;
    check_properties("", directory.node_properties.as_ref())?;
    for file in &directory.files {
        check_digest(&file.name, file.digest.as_ref())?;
        check_properties(&file.name, file.node_properties.as_ref())?;
    }
    for dir in &directory.directories {
        check_digest(&dir.name, dir.digest.as_ref())?;
    }
    for link in &directory.symlinks {
        if link.target.is_empty() || link.target.contains('\0') {
            return Err(DirectoryError::InvalidSymlinkTarget {
                name: truncate(&link.name),
                target: truncate(&link.target),
            });
        }
        check_properties(&link.name, link.node_properties.as_ref())?;
    }
    Ok(())
}

/// Whether a symlink whose directory is `location` (a `/`-separated path
/// relative to the tree root, `""` for the root) and whose target is
/// `target` points inside the tree, judged lexically: an absolute target is
/// outside, and a `..` that would climb above the root is outside.
///
/// Lexical only: a target that passes through *another* symlink can still
/// leave the tree once resolved (`sub/x -> ..` then `link -> sub/x/..`).
/// A stager that must contain every path resolves components itself
/// (e.g. `openat` with `O_NOFOLLOW`) rather than relying on this check.
pub fn symlink_stays_within(location: &str, target: &str) -> bool {
    if target.starts_with('/') {
        return false;
    }
    let mut depth = 0usize;
    for segment in location.split('/').chain(target.split('/')) {
        match segment {
            "" | "." => {}
            ".." => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return false,
            },
            _ => depth += 1,
        }
    }
    true
}

fn check_sorted<'a>(kind: &'static str, names: impl Iterator<Item = &'a str>) -> Result<(), DirectoryError> {
    let mut previous: Option<&str> = None;
    for name in names {
        validate_name(name).map_err(|reason| DirectoryError::InvalidName { name: truncate(name), reason })?;
        if let Some(prev) = previous {
            if name == prev {
                return Err(DirectoryError::Duplicate { name: truncate(name) });
            }
            if name.as_bytes() < prev.as_bytes() {
                return Err(DirectoryError::Unsorted { kind, name: truncate(name), previous: truncate(prev) });
            }
        }
        previous = Some(name);
    }
    Ok(())
}

/// Names are unique across the three lists (each list is already known to
/// be free of repeats).
fn check_unique_across(directory: &reapi::Directory) -> Result<(), DirectoryError> {
    if directory.files.len() + directory.directories.len() + directory.symlinks.len() < 2 {
        return Ok(());
    }
    let mut names: Vec<&str> = directory.files.iter().map(|f| f.name.as_str()).collect();
    names.extend(directory.directories.iter().map(|d| d.name.as_str()));
    names.extend(directory.symlinks.iter().map(|s| s.name.as_str()));
    names.sort_unstable();
    match names.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(DirectoryError::Duplicate { name: truncate(pair[0]) }),
        None => Ok(()),
    }
}

fn check_digest(name: &str, digest: Option<&reapi::Digest>) -> Result<Digest, DirectoryError> {
    Digest::try_from(digest).map_err(|source| DirectoryError::InvalidDigest { name: truncate(name), source })
}

fn check_properties(name: &str, properties: Option<&reapi::NodeProperties>) -> Result<(), DirectoryError> {
    let Some(properties) = properties else { return Ok(()) };
    let sorted = properties.properties.windows(2).all(|pair| pair[0].name.as_bytes() <= pair[1].name.as_bytes());
    if sorted {
        Ok(())
    } else {
        Err(DirectoryError::UnsortedProperties { name: truncate(name) })
    }
}

/// Keeps error messages bounded whatever a peer sends.
fn truncate(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::TreeBuilder;

    fn file(name: &str) -> reapi::FileNode {
        reapi::FileNode { name: name.into(), digest: Some(Digest::of(name.as_bytes()).to_proto()), ..Default::default() }
    }

    fn dir(name: &str) -> reapi::DirectoryNode {
        reapi::DirectoryNode { name: name.into(), digest: Some(Digest::empty().to_proto()) }
    }

    fn link(name: &str, target: &str) -> reapi::SymlinkNode {
        reapi::SymlinkNode { name: name.into(), target: target.into(), node_properties: None }
    }

    #[test]
    fn accepts_what_the_builder_produces() {
        let mut builder = TreeBuilder::new();
        builder.add_file("b", Digest::of(b"b"), true).unwrap();
        builder.add_file("a/c", Digest::of(b"c"), false).unwrap();
        builder.add_symlink("d", "a/c").unwrap();
        for encoded in builder.build().directories() {
            assert_eq!(decode_directory(&encoded.bytes), Ok(encoded.directory.clone()));
        }
    }

    #[test]
    fn refuses_unsorted_lists() {
        let directory = reapi::Directory { files: vec![file("b"), file("a")], ..Default::default() };
        assert!(matches!(validate_directory(&directory), Err(DirectoryError::Unsorted { kind: "files", .. })));
        // Byte order: "B" (0x42) sorts before "a" (0x61), and "a" before "é".
        let directory = reapi::Directory { files: vec![file("B"), file("a"), file("é")], ..Default::default() };
        assert_eq!(validate_directory(&directory), Ok(()));
    }

    #[test]
    fn refuses_duplicates_within_and_across_lists() {
        let within = reapi::Directory { files: vec![file("a"), file("a")], ..Default::default() };
        assert!(matches!(validate_directory(&within), Err(DirectoryError::Duplicate { .. })));
        let across = reapi::Directory {
            files: vec![file("a"), file("m")],
            directories: vec![dir("b"), dir("m")],
            symlinks: vec![link("c", "a")],
            node_properties: None,
        };
        assert_eq!(validate_directory(&across), Err(DirectoryError::Duplicate { name: "m".into() }));
        let distinct = reapi::Directory {
            files: vec![file("a")],
            directories: vec![dir("b")],
            symlinks: vec![link("c", "a")],
            node_properties: None,
        };
        assert_eq!(validate_directory(&distinct), Ok(()));
    }

    #[test]
    fn refuses_bad_names_digests_and_targets() {
        for name in ["", ".", "..", "a/b"] {
            let directory = reapi::Directory { directories: vec![dir(name)], ..Default::default() };
            assert!(matches!(validate_directory(&directory), Err(DirectoryError::InvalidName { .. })), "{name:?}");
        }
        let mut bad = file("f");
        bad.digest = None;
        let directory = reapi::Directory { files: vec![bad.clone()], ..Default::default() };
        assert!(matches!(validate_directory(&directory), Err(DirectoryError::InvalidDigest { .. })));
        bad.digest = Some(reapi::Digest { hash: Digest::empty().hash_hex(), size_bytes: -1 });
        let directory = reapi::Directory { files: vec![bad], ..Default::default() };
        assert!(matches!(validate_directory(&directory), Err(DirectoryError::InvalidDigest { .. })));
        let directory = reapi::Directory { symlinks: vec![link("l", "")], ..Default::default() };
        assert!(matches!(validate_directory(&directory), Err(DirectoryError::InvalidSymlinkTarget { .. })));
        assert!(matches!(decode_directory(&[0xff, 0xff]), Err(DirectoryError::Decode(_))));
    }

    #[test]
    fn refuses_unsorted_node_properties() {
        let property = |name: &str| reapi::NodeProperty { name: name.into(), value: String::new() };
        let mut f = file("f");
        f.node_properties =
            Some(reapi::NodeProperties { properties: vec![property("z"), property("a")], ..Default::default() });
        let directory = reapi::Directory { files: vec![f], ..Default::default() };
        assert!(matches!(validate_directory(&directory), Err(DirectoryError::UnsortedProperties { .. })));
    }

    #[test]
    fn symlink_containment_is_lexical() {
        assert!(symlink_stays_within("", "a"));
        assert!(symlink_stays_within("a/b", "../c"));
        assert!(symlink_stays_within("a/b", "../../c"));
        assert!(symlink_stays_within("a", "./x/../y"));
        assert!(symlink_stays_within("a", ".."));
        assert!(!symlink_stays_within("a/b", "../../../c"));
        assert!(!symlink_stays_within("", ".."));
        assert!(!symlink_stays_within("a", "/etc/passwd"));
        assert!(!symlink_stays_within("", "x/../../y"));
    }
}
