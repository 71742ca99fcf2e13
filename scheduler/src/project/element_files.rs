//! Walking a directory tree for files: the element files of an element path
//! (default targets, `element-mask` option values) and any file by kind.
//!
//! It owns [`files_under`] and [`element_files`]. Key decision: unreadable
//! directories are skipped, not errors, as BuildStream's `os.walk` does.

use std::path::{Path, PathBuf};

/// Every file below `root` (any depth), in no particular order; a
/// subdirectory is entered only when `descend` accepts its path.
pub fn files_under(root: &Path, descend: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if descend(&path) {
                    stack.push(path);
                }
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Every `*.bst` file below `root`, relative to it, sorted; `descend` as for
/// [`files_under`].
pub fn element_files(root: &Path, descend: impl Fn(&Path) -> bool) -> Vec<String> {
    let mut names: Vec<String> = files_under(root, descend)
        .iter()
        .filter(|path| path.extension().is_some_and(|e| e == "bst"))
        .filter_map(|path| path.strip_prefix(root).ok().map(|rel| rel.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_files_are_relative_sorted_and_follow_descend() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.bst", "a/c.bst", "a/notes.txt", ".bst/cached.bst"] {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "kind: stack\n").unwrap();
        }
        assert_eq!(element_files(dir.path(), |_| true), [".bst/cached.bst", "a/c.bst", "b.bst"]);
        let skip_bst = |d: &Path| d.file_name().is_some_and(|n| n != ".bst");
        assert_eq!(element_files(dir.path(), skip_bst), ["a/c.bst", "b.bst"]);
        assert_eq!(files_under(dir.path(), |_| true).len(), 4);
    }
}
