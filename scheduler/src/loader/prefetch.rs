//! Reading and parsing element files ahead of the loader, on worker threads.
//!
//! It owns [`Prefetcher`]. The loader walks the dependency graph depth-first
//! on one thread; most of its time per element is reading and parsing the
//! file. Workers read and parse the files the loader is about to ask for:
//! those named by dependencies (as written, within the same project) of the
//! files already parsed, explored in the loader's own depth-first order (a
//! stack). Key decisions:
//! * prefetching is speculative and invisible: a parsed tree (or its parse
//!   error) is only used when the loader asks for that (project, name), and a
//!   file the workers could not read is read again by the loader, which then
//!   reports what it reports without workers; so errors and their order are
//!   those of a sequential load;
//! * workers cannot register files in the session's [`SourceMap`], so they
//!   parse under [`UNREGISTERED`] and the loader re-attributes the tree to the
//!   file it registers ([`Map::set_file`]) when it takes it;
//! * a file still waiting in the queue when the loader wants it is parsed by
//!   the loader itself (it never waits for queued work), and at most
//!   `MAX_READY` parsed trees wait for the loader (memory stays bounded when
//!   the workers run ahead);
//! * the trees the workers parsed are also freed by them ([`Prefetcher::recycle`]),
//!   which keeps that work off the loader's thread, the critical path (it
//!   was first done because glibc's allocator made the loader and the
//!   workers wait on each other's arena locks; the binary now uses mimalloc);
//! * a worker with no file to parse (none known, or `MAX_READY` trees
//!   waiting) runs tasks set aside by the loader ([`Prefetcher::set_aside`]:
//!   preparing elements, see [`super::prepare`]), and the loader runs those
//!   left when it is done reading ([`Prefetcher::finish_aside`]). So the two
//!   threads balance: when the loader's core is the slower one (a shared
//!   host), its worker takes over its deferred work, and when the worker's
//!   is, the loader reads the files still queued itself.
//!
//! [`SourceMap`]: crate::yaml::SourceMap

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rustc_hash::{FxHashMap, FxHashSet};

use super::names::normalise;
use crate::project::ProjectId;
use crate::yaml::{parser, FileId, LoadResult, Map, Node};

/// The file id of a tree parsed before its file was registered.
pub const UNREGISTERED: FileId = FileId(u32::MAX - 1);

/// Parsed trees that may wait for the loader at once.
const MAX_READY: usize = 32;

/// Tasks that may wait for a worker at once; the loader runs those it sets
/// aside beyond (the elements' trees stay few and warm in cache).
const MAX_ASIDE: usize = 32;

/// Trees handed back before a worker is woken to free them.
const GRAVEYARD_BATCH: usize = 16;

/// One element file of one project.
type Key = (ProjectId, String);

/// Work the loader sets aside for a worker with no file to parse.
pub type AsideTask = Box<dyn FnOnce() + Send>;

/// What a worker made of a file.
#[derive(Debug)]
pub enum Fetched {
    /// The file's tree (under [`UNREGISTERED`]) or its parse error.
    Parsed(LoadResult<Map>),
    /// The file could not be read (missing, a directory, ...): the loader
    /// reads it again and reports why.
    Unreadable,
}

enum Slot {
    Queued,
    Running,
    Done(Fetched),
}

struct Job {
    key: Key,
    element_path: Arc<Path>,
}

#[derive(Default)]
struct State {
    /// Files to read, the next one last (depth-first, like the loader).
    stack: Vec<Job>,
    /// Every file asked for (queued, running or done), until the loader takes it.
    slots: FxHashMap<Key, Slot>,
    /// Files ever asked for: each is prefetched at most once.
    seen: FxHashSet<Key>,
    /// Done slots.
    ready: usize,
    /// Workers waiting for work (notifying nobody is skipped: every
    /// notification is a system call).
    idle_workers: usize,
    /// The loader waits for a running file.
    loader_waiting: bool,
    /// What the loader's asks found: a worker's result, a wait for one, a
    /// queued file it then read itself, nothing.
    counts: [usize; 4],
    /// Trees the loader is done with, dropped by the workers (see [`Prefetcher::recycle`]).
    graveyard: Vec<Map>,
    /// Tasks set aside, the most recent last (its tree is likeliest still in cache).
    aside: Vec<AsideTask>,
    /// Tasks set aside that a worker is running.
    aside_running: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Work was queued, room was made, or the prefetcher closed.
    wake_workers: Condvar,
    /// A running file or task set aside was finished.
    finished: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker never panics while holding the lock (parsing happens
        // outside it); a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `task` (set aside) without the lock, then takes it again.
    fn run_unlocked<'a>(&'a self, state: MutexGuard<'a, State>, task: AsideTask) -> MutexGuard<'a, State> {
        drop(state);
        run_aside(task);
        self.lock()
    }

    /// The loader waits until a worker finishes a file or a task set aside.
    fn loader_wait<'a>(&'a self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        state.loader_waiting = true;
        let mut state = self.finished.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        state.loader_waiting = false;
        state
    }
}

/// Worker threads reading and parsing element files ahead of the loader.
pub struct Prefetcher {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Prefetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetcher").field("workers", &self.workers.len()).finish()
    }
}

/// The same-project dependency names written in `node` (normalised; names
/// through junctions and malformed entries are left to the loader).
fn written_dependencies(node: &Map) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |name: &str| {
        if name.ends_with(".bst") && !name.contains(':') {
            out.push(normalise(name));
        }
    };
    for key in ["build-depends", "runtime-depends", "depends"] {
        let Some(Node::Seq(list)) = node.get(key) else { continue };
        for item in &list.items {
            match item {
                Node::Scalar(s) => add(&s.value),
                Node::Map(m) if !m.contains("junction") => match m.get("filename") {
                    Some(Node::Scalar(s)) => add(&s.value),
                    Some(Node::Seq(names)) => names.items.iter().filter_map(Node::as_str).for_each(&mut add),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    out
}

/// The text of the file at `path`, as [`std::fs::read_to_string`] reads it
/// but without first asking the file's size (element files are small: one
/// read usually holds the whole file; two system calls less per file).
pub fn read_text(path: &Path) -> std::io::Result<String> {
    text_of(std::fs::File::open(path)?)
}

fn text_of(mut file: std::fs::File) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(4096);
    // Through `by_ref`: `File`'s own `read_to_end` asks for the size first.
    Read::by_ref(&mut file).take(u64::MAX).read_to_end(&mut bytes)?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The directories of the files a worker has read, kept open (`O_PATH`) so
/// that each file is opened relative to its directory: the kernel then
/// looks up one path component per file instead of every one (a tenth of a
/// worker's time went to those lookups).
#[derive(Default)]
struct OpenDirectories(FxHashMap<PathBuf, OwnedFd>);

impl OpenDirectories {
    /// Opens the file at `path` for reading, as `File::open(path)` does.
    fn open(&mut self, path: &Path) -> std::io::Result<std::fs::File> {
        let (Some(directory), Some(name)) = (path.parent(), path.file_name()) else {
            return std::fs::File::open(path);
        };
        let directory = match self.0.get(directory) {
            Some(fd) => fd.as_raw_fd(),
            None => {
                let fd = OwnedFd::from(
                    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_DIRECTORY).open(directory)?,
                );
                let raw = fd.as_raw_fd();
                self.0.insert(directory.to_path_buf(), fd);
                raw
            }
        };
        let name = std::ffi::CString::new(name.as_bytes())?;
        // SAFETY: `directory` is an open descriptor and `name` a NUL-terminated string.
        let fd = unsafe { libc::openat(directory, name.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

fn fetch(directories: &mut OpenDirectories, path: &Path) -> Fetched {
    match directories.open(path).and_then(text_of) {
        Ok(text) => Fetched::Parsed(parser::parse(&text, UNREGISTERED)),
        Err(_) => Fetched::Unreadable,
    }
}

impl Prefetcher {
    /// Starts `workers` threads (none when `workers` is 0: every file is
    /// then read by the loader).
    pub fn start(workers: usize) -> Prefetcher {
        let shared = Arc::new(Shared { state: Mutex::default(), wake_workers: Condvar::new(), finished: Condvar::new() });
        let workers = (0..workers)
            .filter_map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new().name(format!("weir-prefetch-{i}")).spawn(move || work(&shared)).ok()
            })
            .collect();
        Prefetcher { shared, workers }
    }

    /// Whether any worker runs.
    pub fn is_active(&self) -> bool {
        !self.workers.is_empty()
    }

    /// Queues the same-project dependencies written in `node` (a file of
    /// project `project`, whose elements are under `element_path`).
    pub fn prefetch_dependencies(&self, project: ProjectId, element_path: &Arc<Path>, node: &Map) {
        if !self.is_active() {
            return;
        }
        let names = written_dependencies(node);
        if names.is_empty() {
            return;
        }
        let mut state = self.shared.lock();
        push_jobs(&mut state, project, element_path, names);
        let idle = state.idle_workers > 0;
        drop(state);
        if idle {
            self.shared.wake_workers.notify_all();
        }
    }

    /// The worker's result for file `name` of `project`: waits while a worker
    /// is on it; `None` when no worker has started it (the caller reads it).
    pub fn take(&self, project: ProjectId, name: &str) -> Option<Fetched> {
        if !self.is_active() {
            return None;
        }
        let key = (project, name.to_string());
        let mut state = self.shared.lock();
        loop {
            match state.slots.get(&key) {
                None => {
                    state.counts[3] += 1;
                    return None;
                }
                Some(Slot::Running) => {
                    // Rather than wait, do work set aside meanwhile.
                    if let Some(task) = state.aside.pop() {
                        state = self.shared.run_unlocked(state, task);
                        continue;
                    }
                    state.counts[1] += 1;
                    state = self.shared.loader_wait(state);
                }
                Some(Slot::Queued) => {
                    // Left in the stack; a worker popping it skips it.
                    state.slots.remove(&key);
                    state.counts[2] += 1;
                    return None;
                }
                Some(Slot::Done(_)) => {
                    let Some(Slot::Done(fetched)) = state.slots.remove(&key) else { return None };
                    state.ready -= 1;
                    state.counts[0] += 1;
                    if state.ready + 1 == MAX_READY && state.idle_workers > 0 {
                        self.shared.wake_workers.notify_all();
                    }
                    return Some(fetched);
                }
            }
        }
    }

    /// Queues `task` for a worker with no file to parse; without workers,
    /// runs it now.
    pub fn set_aside(&self, task: AsideTask) {
        if !self.is_active() {
            run_aside(task);
            return;
        }
        let mut state = self.shared.lock();
        if state.aside.len() >= MAX_ASIDE {
            // The workers fall behind: the loader does its share.
            drop(state);
            run_aside(task);
            return;
        }
        state.aside.push(task);
        let idle = state.idle_workers > 0;
        drop(state);
        if idle {
            self.shared.wake_workers.notify_one();
        }
    }

    /// Runs on this thread the tasks set aside that no worker has started,
    /// then waits for those the workers are running.
    pub fn finish_aside(&self) {
        let mut state = self.shared.lock();
        loop {
            if let Some(task) = state.aside.pop() {
                state = self.shared.run_unlocked(state, task);
            } else if state.aside_running > 0 {
                state = self.shared.loader_wait(state);
            } else {
                return;
            }
        }
    }

    /// How the loader's asks went, for `WEIR_LOAD_TIMINGS`.
    pub fn summary(&self) -> String {
        let [parsed, waited, queued, unknown] = self.shared.lock().counts;
        format!(
            "{} workers; files parsed ahead {parsed} (waited for {waited}), read by the loader {} (still queued {queued})",
            self.workers.len(),
            queued + unknown
        )
    }

    /// Hands a tree the loader no longer needs to the workers, which free it
    /// (dropped here when no worker runs).
    pub fn recycle(&self, node: Map) {
        if !self.is_active() {
            return;
        }
        let mut state = self.shared.lock();
        state.graveyard.push(node);
        if state.graveyard.len() >= GRAVEYARD_BATCH && state.idle_workers > 0 {
            drop(state);
            self.shared.wake_workers.notify_one();
        }
    }
}

/// Runs a task set aside; a panic (a bug) loses only what the task would
/// have made, whichever thread runs it.
fn run_aside(task: AsideTask) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
}

fn push_jobs(state: &mut State, project: ProjectId, element_path: &Arc<Path>, names: Vec<String>) {
    // Reversed: the first dependency is read first.
    for name in names.into_iter().rev() {
        let key = (project, name);
        if state.seen.insert(key.clone()) {
            state.slots.insert(key.clone(), Slot::Queued);
        } else if !matches!(state.slots.get(&key), Some(Slot::Queued)) {
            continue;
        }
        // A file still queued moves to the top (named again: the loader
        // reaches it sooner than where it waits); its older entry is
        // skipped when popped.
        state.stack.push(Job { key, element_path: element_path.clone() });
    }
}

fn work(shared: &Shared) {
    let mut directories = OpenDirectories::default();
    let mut state = shared.lock();
    loop {
        if state.closed {
            return;
        }
        if !state.graveyard.is_empty() {
            let dead = std::mem::take(&mut state.graveyard);
            drop(state);
            drop(dead);
            state = shared.lock();
            continue;
        }
        let job = if state.ready < MAX_READY { state.stack.pop() } else { None };
        let Some(job) = job else {
            if let Some(task) = state.aside.pop() {
                state.aside_running += 1;
                state = shared.run_unlocked(state, task);
                state.aside_running -= 1;
                if state.loader_waiting {
                    shared.finished.notify_all();
                }
                continue;
            }
            state.idle_workers += 1;
            state = shared.wake_workers.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            state.idle_workers -= 1;
            continue;
        };
        // Taken back by the loader meanwhile: nothing to do.
        if !matches!(state.slots.get(&job.key), Some(Slot::Queued)) {
            continue;
        }
        state.slots.insert(job.key.clone(), Slot::Running);
        drop(state);

        let path: PathBuf = job.element_path.join(&job.key.1);
        // A panic (a parser bug) must not leave the file running forever:
        // the loader then reads the file itself, as without workers.
        let fetched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fetch(&mut directories, &path))).unwrap_or(Fetched::Unreadable);
        let next = match &fetched {
            Fetched::Parsed(Ok(node)) => written_dependencies(node),
            _ => Vec::new(),
        };

        state = shared.lock();
        if let Some(slot) = state.slots.get_mut(&job.key) {
            *slot = Slot::Done(fetched);
            state.ready += 1;
        }
        push_jobs(&mut state, job.key.0, &job.element_path, next);
        if state.loader_waiting {
            shared.finished.notify_all();
        }
        if !state.stack.is_empty() && state.idle_workers > 0 {
            shared.wake_workers.notify_one();
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake_workers.notify_all();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    /// Waits (bounded) until a worker has finished file `name`.
    fn wait_done(prefetcher: &Prefetcher, name: &str) -> bool {
        for _ in 0..1000 {
            if matches!(prefetcher.shared.lock().slots.get(&(ProjectId(0), name.to_string())), Some(Slot::Done(_))) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn dependencies_are_parsed_ahead_and_taken_once() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.bst", "kind: stack\ndepends:\n- b.bst\n- filename: [c.bst, ./d.bst]\n- j.bst:x.bst\n");
        write(dir.path(), "b.bst", "kind: manual\nruntime-depends: [e.bst]\n");
        write(dir.path(), "c.bst", "kind: [unclosed\n");
        write(dir.path(), "e.bst", "kind: import\n");
        let prefetcher = Prefetcher::start(2);
        let root: Arc<Path> = Arc::from(dir.path());
        let a = parser::parse(&std::fs::read_to_string(dir.path().join("a.bst")).unwrap(), FileId(1)).unwrap();
        prefetcher.prefetch_dependencies(ProjectId(0), &root, &a);
        // e.bst is only named by b.bst: the workers found it themselves.
        for name in ["b.bst", "c.bst", "d.bst", "e.bst"] {
            assert!(wait_done(&prefetcher, name), "{name} was not prefetched");
        }
        let Some(Fetched::Parsed(Ok(b))) = prefetcher.take(ProjectId(0), "b.bst") else { panic!("b.bst was not parsed") };
        assert_eq!(b.span.file, UNREGISTERED);
        assert_eq!(b.get_str("kind").unwrap(), Some("manual"));
        // Taken once: the second ask is the caller's.
        assert!(prefetcher.take(ProjectId(0), "b.bst").is_none());
        // A parse error is kept for the caller, under the placeholder file.
        let Some(Fetched::Parsed(Err(e))) = prefetcher.take(ProjectId(0), "c.bst") else { panic!("c.bst should fail to parse") };
        assert_eq!(e.at.map(|s| s.file), Some(UNREGISTERED));
        assert!(matches!(prefetcher.take(ProjectId(0), "d.bst"), Some(Fetched::Unreadable)));
        // A junction reference is never prefetched.
        assert!(prefetcher.shared.lock().seen.iter().all(|(_, n)| !n.contains(':')));
    }

    #[test]
    fn tasks_set_aside_run_once_each_whoever_runs_them() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for workers in [0, 1, 2] {
            let prefetcher = Prefetcher::start(workers);
            let runs: Arc<Vec<AtomicUsize>> = Arc::new((0..200).map(|_| AtomicUsize::new(0)).collect());
            for i in 0..200 {
                let runs = runs.clone();
                prefetcher.set_aside(Box::new(move || {
                    runs[i].fetch_add(1, Ordering::Relaxed);
                }));
            }
            // A panicking task stops neither its thread nor the others.
            prefetcher.set_aside(Box::new(|| panic!("a task's bug")));
            let after_panic = runs.clone();
            prefetcher.set_aside(Box::new(move || {
                after_panic[0].fetch_add(1, Ordering::Relaxed);
            }));
            if workers == 0 {
                assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) >= 1), "without workers a task runs at once");
            }
            prefetcher.finish_aside();
            let counts: Vec<usize> = runs.iter().map(|r| r.load(Ordering::Relaxed)).collect();
            assert_eq!(counts[0], 2, "{workers} workers");
            assert!(counts[1..].iter().all(|&c| c == 1), "{workers} workers: {counts:?}");
            assert!(prefetcher.shared.lock().aside.is_empty());
        }
    }

    #[test]
    fn files_opened_through_their_directory_read_as_opened_by_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/deeper")).unwrap();
        write(dir.path(), "a.bst", "kind: import\n");
        write(&dir.path().join("sub"), "b.bst", "kind: stack\n");
        write(&dir.path().join("sub/deeper"), "c.bst", "kind: manual\n");
        let mut directories = OpenDirectories::default();
        for name in ["a.bst", "sub/b.bst", "sub/deeper/c.bst", "sub/deeper/../b.bst", "./sub/./b.bst", "sub/deeper/..", "sub"] {
            let path = dir.path().join(name);
            let through = directories.open(&path).and_then(text_of).map_err(|e| e.kind());
            assert_eq!(through, read_text(&path).map_err(|e| e.kind()), "{name}");
        }
        for missing in ["nowhere.bst", "nodir/x.bst", "a.bst/x.bst"] {
            assert!(directories.open(&dir.path().join(missing)).is_err(), "{missing}");
        }
        // One descriptor per directory, whatever the number of files read in it.
        assert!(directories.0.len() <= 4, "{:?}", directories.0.keys().collect::<Vec<_>>());
    }

    #[test]
    fn written_dependencies_skip_junctions_and_normalise() {
        let node = parser::parse(
            "depends:\n- ./a.bst\n- x.bst:y.bst\n- filename: b.bst\n  junction: j.bst\n- filename: c.bst\nbuild-depends: [d.txt, e.bst]\n",
            FileId(1),
        )
        .unwrap();
        assert_eq!(written_dependencies(&node), ["e.bst", "a.bst", "c.bst"]);
    }
}
