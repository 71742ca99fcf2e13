//! Reading and parsing element files ahead of the loader, on a helper
//! thread: when the loader has parsed an element, it names the files of the
//! element's dependencies ([`Prefetch::hint`]); the helper reads and parses
//! them while the loader does the element's own work (composition,
//! variables), so the next files the depth-first walk needs are ready.
//!
//! Key decision: the helper only ever hands over successful parses, made
//! with a placeholder [`FileId`] that the loader relabels when it registers
//! the file; a file the helper has not reached (or could not read or parse)
//! is read and parsed by the loader as before, so every error, and every
//! file id, is exactly what a sequential load gives. Each file is claimed
//! once (by whichever side comes first), so no file is parsed twice, and
//! the helper works from the hints only (most recent first, the order of a
//! depth-first walk), so what it holds stays near the walk's frontier.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::yaml::{parser, FileId, Map, Node};

/// The file id of nodes the helper parsed, before relabelling.
const PLACEHOLDER: FileId = FileId(u32::MAX);

/// How long the loader waits for a file the helper is parsing before
/// reading it itself (the helper only takes that long when starved of CPU).
const WAIT_FOR_HELPER: Duration = Duration::from_millis(20);

enum Slot {
    /// The helper is reading it.
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
struct State {
    slots: FxHashMap<PathBuf, Slot>,
    /// Files to parse, most recent last.
    queue: Vec<PathBuf>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when hints arrive or when the helper finishes a file.
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.lock().ok()
    }
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
    /// Starts a helper; `None` when the machine has a single core or no
    /// thread could start.
    pub fn start() -> Option<Prefetch> {
        if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
            return None;
        }
        let shared = Arc::new(Shared::default());
        let helper = shared.clone();
        std::thread::Builder::new().name("weir-parse".into()).spawn(move || run(&helper)).ok()?;
        Some(Prefetch { shared })
    }

    /// Asks for `paths` to be parsed, the first one first.
    pub fn hint(&self, paths: impl DoubleEndedIterator<Item = PathBuf>) {
        let Some(mut state) = self.shared.lock() else { return };
        let before = state.queue.len();
        for path in paths.rev() {
            if !state.slots.contains_key(&path) {
                state.queue.push(path);
            }
        }
        if state.queue.len() > before {
            drop(state);
            self.shared.changed.notify_all();
        }
    }

    /// The parsed file at `path` if the helper has it (waiting briefly when
    /// the helper is at it); otherwise claims it (the caller reads it) and
    /// returns `None`.
    pub fn take(&self, path: &Path) -> Option<Prefetched> {
        let mut state = self.shared.lock()?;
        if matches!(state.slots.get(path), Some(Slot::Helper)) {
            let (next, _) = self
                .shared
                .changed
                .wait_timeout_while(state, WAIT_FOR_HELPER, |s| matches!(s.slots.get(path), Some(Slot::Helper)))
                .ok()?;
            state = next;
        }
        match state.slots.insert(path.to_path_buf(), Slot::Loader) {
            Some(Slot::Parsed(map)) => Some(Prefetched(map)),
            _ => None,
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(mut state) = self.shared.lock() {
            state.slots.clear();
            state.queue.clear();
        }
        self.shared.changed.notify_all();
    }
}

/// The helper: parses hinted files, most recent first, until stopped.
fn run(shared: &Shared) {
    loop {
        let path = {
            let Some(mut state) = shared.lock() else { return };
            loop {
                if shared.stop.load(Ordering::Relaxed) {
                    return;
                }
                match state.queue.pop() {
                    Some(path) if state.slots.contains_key(&path) => continue,
                    Some(path) => {
                        state.slots.insert(path.clone(), Slot::Helper);
                        break path;
                    }
                    None => match shared.changed.wait(state) {
                        Ok(next) => state = next,
                        Err(_) => return,
                    },
                }
            }
        };
        let parsed = std::fs::read_to_string(&path).ok().and_then(|text| parser::parse(&text, PLACEHOLDER).ok());
        let Some(mut state) = shared.lock() else { return };
        if let Some(slot @ Slot::Helper) = state.slots.get_mut(&path) {
            match parsed {
                Some(map) => *slot = Slot::Parsed(map),
                // The loader reads it itself and reports the error.
                None => {
                    state.slots.remove(&path);
                }
            }
        }
        drop(state);
        shared.changed.notify_all();
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
    fn hinted_files_are_parsed_relabelled_and_handed_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..20).map(|i| dir.path().join(format!("e{i}.bst"))).collect();
        for (i, path) in paths.iter().enumerate() {
            std::fs::write(path, format!("kind: stack\nvariables:\n  n: '{i}'\n")).unwrap();
        }
        let bad = dir.path().join("bad.bst");
        std::fs::write(&bad, "kind: [\n").unwrap();
        let Some(prefetch) = Prefetch::start() else { return };
        prefetch.hint(paths.iter().cloned().chain([bad.clone()]));
        // Give the helper time to get through the files.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let wanted = &paths[0];
        while std::time::Instant::now() < deadline {
            if matches!(prefetch.shared.lock().unwrap().slots.get(wanted), Some(Slot::Parsed(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let map = prefetch.take(wanted).expect("parsed by the helper").into_map(FileId(7));
        let n = map.get_map("variables").unwrap().unwrap().get("n").unwrap();
        assert_eq!(n.as_str(), Some("0"));
        assert_eq!(n.span().file, FileId(7));
        assert_eq!(map.span.file, FileId(7));
        // Handed over once; a file that does not parse is never handed over.
        assert!(prefetch.take(wanted).is_none());
        assert!(prefetch.take(&bad).is_none());
        // A file never hinted is the loader's.
        assert!(prefetch.take(&dir.path().join("other.bst")).is_none());
    }
}
