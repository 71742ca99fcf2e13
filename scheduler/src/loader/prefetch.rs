//! Reading and parsing element files ahead of the loader, on a helper
//! thread: the loader visits files depth-first and does the per-element
//! work (composition, variables) itself, while the helper reads and parses
//! the other `.bst` files of the toplevel element directory meanwhile.
//!
//! Key decision: the helper only ever hands over successful parses, made
//! with a placeholder [`FileId`] that the loader relabels when it registers
//! the file; a file the helper has not reached (or could not read or parse)
//! is read and parsed by the loader as before, so every error, and every
//! file id, is exactly what a sequential load gives. Each file is claimed
//! once (by whichever side comes first), so no file is parsed twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use crate::yaml::{parser, FileId, Map, Node};

/// The file id of nodes the helper parsed, before relabelling.
const PLACEHOLDER: FileId = FileId(u32::MAX);

enum Slot {
    /// The helper is reading it (or failed on it).
    Helper,
    /// The loader has it (read itself or taken from the helper).
    Loader,
    /// Parsed by the helper, waiting for the loader.
    Parsed(Map),
}

/// A file the helper parsed: its nodes still carry a placeholder file id.
pub struct Prefetched(Map);

impl Prefetched {
    /// The parsed file, every node attributed to `file`.
    pub fn into_map(self, file: FileId) -> Map {
        let mut map = self.0;
        relabel_map(&mut map, file);
        map
    }
}

#[derive(Default)]
struct Shared {
    slots: Mutex<FxHashMap<PathBuf, Slot>>,
    stop: AtomicBool,
}

/// A running helper (stopped when dropped).
pub struct Prefetch {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Prefetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch").finish_non_exhaustive()
    }
}

impl Prefetch {
    /// Starts a helper over every `.bst` file under `element_dir`; `None`
    /// when the machine has a single core or no thread could start.
    pub fn start(element_dir: &Path) -> Option<Prefetch> {
        if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
            return None;
        }
        let shared = Arc::new(Shared::default());
        let helper = shared.clone();
        let dir = element_dir.to_path_buf();
        std::thread::Builder::new().name("weir-parse".into()).spawn(move || run(&helper, &dir)).ok()?;
        Some(Prefetch { shared })
    }

    /// The parsed file at `path` if the helper has it; otherwise claims it
    /// (the caller reads it) and returns `None`.
    pub fn take(&self, path: &Path) -> Option<Prefetched> {
        let mut slots = self.shared.slots.lock().ok()?;
        match slots.insert(path.to_path_buf(), Slot::Loader) {
            Some(Slot::Parsed(map)) => Some(Prefetched(map)),
            _ => None,
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Ok(mut slots) = self.shared.slots.lock() {
            slots.clear();
        }
    }
}

/// The helper: every `.bst` under `dir` (`.bst/` directories skipped, as
/// the default targets skip them), until stopped.
fn run(shared: &Shared, dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                if path.file_name().is_some_and(|n| n != ".bst") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "bst") {
                parse_one(shared, path);
            }
        }
    }
}

fn parse_one(shared: &Shared, path: PathBuf) {
    {
        let Ok(mut slots) = shared.slots.lock() else { return };
        if slots.contains_key(&path) {
            return;
        }
        slots.insert(path.clone(), Slot::Helper);
    }
    let Ok(text) = std::fs::read_to_string(&path) else { return };
    let Ok(map) = parser::parse(&text, PLACEHOLDER) else { return };
    if shared.stop.load(Ordering::Relaxed) {
        return;
    }
    if let Ok(mut slots) = shared.slots.lock() {
        // Still the helper's: the loader has not read it meanwhile.
        if let Some(slot @ Slot::Helper) = slots.get_mut(&path) {
            *slot = Slot::Parsed(map);
        }
    }
}

fn relabel_map(map: &mut Map, file: FileId) {
    map.span.file = file;
    map.entries.values_mut().for_each(|n| relabel(n, file));
}

fn relabel(node: &mut Node, file: FileId) {
    match node {
        Node::Scalar(s) => s.span.file = file,
        Node::Seq(seq) => {
            seq.span.file = file;
            seq.items.iter_mut().for_each(|n| relabel(n, file));
        }
        Node::Map(m) => relabel_map(m, file),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_files_are_relabelled_and_handed_over_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for i in 0..20 {
            std::fs::write(dir.path().join(format!("sub/e{i}.bst")), format!("kind: stack\nvariables:\n  n: '{i}'\n")).unwrap();
        }
        std::fs::write(dir.path().join("bad.bst"), "kind: [\n").unwrap();
        let Some(prefetch) = Prefetch::start(dir.path()) else { return };
        // Give the helper time to get through the files.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let wanted = dir.path().join("sub/e19.bst");
        loop {
            let ready = prefetch.shared.slots.lock().unwrap().get(&wanted).is_some_and(|s| matches!(s, Slot::Parsed(_)));
            if ready || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let map = prefetch.take(&wanted).expect("parsed by the helper").into_map(FileId(7));
        let n = map.get_map("variables").unwrap().unwrap().get("n").unwrap();
        assert_eq!(n.as_str(), Some("19"));
        assert_eq!(n.span().file, FileId(7));
        assert_eq!(map.span.file, FileId(7));
        // Handed over once; a file that does not parse is never handed over.
        assert!(prefetch.take(&wanted).is_none());
        assert!(prefetch.take(&dir.path().join("bad.bst")).is_none());
    }
}
