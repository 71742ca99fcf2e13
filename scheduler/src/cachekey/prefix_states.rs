//! Shared SHA-256 states for dependency-list prefixes.
//!
//! It owns [`PrefixStates`] and [`DependencyEntry`] (an element's entry in
//! its dependants' lists, serialised once per form, so hashing a list is one
//! `update` per member). The key dict's canonical text starts with
//! [`DICT_HEAD`] followed by the dependency list, and an element's build-scope
//! list starts with the whole runtime closure of its first build dependency
//! (often with a longer closure of another dependency), whose closure in turn
//! starts with that of a runtime dependency (spec §4.1). So the hash state
//! after `head + [` + the entries of a closure is the same for every
//! dependant whose list starts with that closure. Key decision: those states
//! are computed lazily, on the first dependant that needs one, each from the
//! state of the longest closure it extends, and kept; a long closure is then
//! hashed once, not once per dependant. States live in `OnceLock`s, so the
//! elements of one level can share them while being hashed in parallel.
//! Entries reach the hash through a [`BatchedHasher`]: a list is thousands
//! of 40–120 byte entries, and one `update` per entry would run the block
//! function one 64-byte block at a time.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use super::canonical::write_string;

/// The canonical text every key dict starts with, up to the dependency list.
pub const DICT_HEAD: &str = "{\"core-artifact-version\":11,\"dependencies\":";

/// How dependency entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    /// Weak key, `[project, name]` for every member.
    WeakNames,
    /// Weak key of a strict-rebuild element: `[project, name, weak]` for every member.
    WeakKeyed,
    /// Weak key with some strict direct dependencies: keyed only for those (never shared).
    Mixed,
    /// Strict key: `[project, name, strict]`.
    Strict,
}

impl EntryMode {
    fn slot(self) -> Option<usize> {
        match self {
            EntryMode::WeakNames => Some(0),
            EntryMode::WeakKeyed => Some(1),
            EntryMode::Strict => Some(2),
            EntryMode::Mixed => None,
        }
    }
}

/// One element's entry in its dependants' lists, serialised once per form,
/// each with a leading `,` (skipped for the first entry of a list). The
/// keyed forms are set once, by whichever thread computed the keys.
#[derive(Debug, Default)]
pub struct DependencyEntry {
    /// `,["project","name"]`.
    pub names: String,
    /// `,["project","name","weak key"]`, once the weak key is known.
    pub weak: OnceLock<String>,
    /// `,["project","name","strict key"]`, once the strict key is known.
    pub strict: OnceLock<String>,
}

impl DependencyEntry {
    /// The names-only entry of an element of `project` named `name`.
    pub fn new(project: &str, name: &str) -> Self {
        let mut names = String::from(",[");
        write_string(project, &mut names);
        names.push(',');
        write_string(name, &mut names);
        names.push(']');
        DependencyEntry { names, weak: OnceLock::new(), strict: OnceLock::new() }
    }

    /// Adds the keyed forms (keys are lowercase hex: nothing to escape); a
    /// key left unknown (`None`) stays unset.
    pub fn set_keys(&self, weak: Option<&str>, strict: Option<&str>) {
        let keyed = |key: &str| {
            let open = &self.names[..self.names.len() - 1];
            format!("{open},\"{key}\"]")
        };
        if let Some(weak) = weak {
            let _ = self.weak.set(keyed(weak));
        }
        if let Some(strict) = strict {
            let _ = self.strict.set(keyed(strict));
        }
    }

    /// The text for `mode` (`Mixed` is decided per member by the caller); `None` if the key is unknown.
    pub fn text(&self, mode: EntryMode) -> Option<&str> {
        match mode {
            EntryMode::WeakNames | EntryMode::Mixed => Some(&self.names),
            EntryMode::WeakKeyed => self.weak.get().map(String::as_str),
            EntryMode::Strict => self.strict.get().map(String::as_str),
        }
    }

    /// Feeds this entry's text for `mode` into `hasher`; `None` if the key is unknown.
    pub fn feed(&self, hasher: &mut BatchedHasher, first: bool, mode: EntryMode) -> Option<()> {
        let text = self.text(mode)?;
        hasher.update(&text.as_bytes()[usize::from(first)..]);
        Some(())
    }
}

/// Bytes gathered before they are hashed in one `update`.
const BATCH: usize = 16 * 1024;

/// A SHA-256 state fed through a buffer, so that many short inputs are
/// hashed as one long one (the digest is the same).
pub struct BatchedHasher {
    hasher: Sha256,
    buffer: Vec<u8>,
}

impl BatchedHasher {
    /// Continues from `hasher`'s state.
    pub fn new(hasher: Sha256) -> Self {
        BatchedHasher { hasher, buffer: Vec::with_capacity(BATCH) }
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        if self.buffer.len() + bytes.len() > BATCH {
            self.flush();
        }
        if bytes.len() > BATCH {
            self.hasher.update(bytes);
        } else {
            self.buffer.extend_from_slice(bytes);
        }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buffer);
        self.buffer.clear();
    }

    /// The state after everything added.
    pub fn finish(mut self) -> Sha256 {
        self.flush();
        self.hasher
    }
}

/// Hash states after `DICT_HEAD + "[" + entries(closure(x))`, per element and
/// mode, each computed at most once and shared by reference across threads.
pub struct PrefixStates {
    states: Vec<[OnceLock<Option<Sha256>>; 3]>,
}

impl PrefixStates {
    /// No state computed yet for `len` elements.
    pub fn new(len: usize) -> Self {
        PrefixStates { states: (0..len).map(|_| [OnceLock::new(), OnceLock::new(), OnceLock::new()]).collect() }
    }

    /// The state after the entries of `closures[element]` in `mode`; `None`
    /// when a member's key is unknown or the mode is never shared.
    /// `prefix_of[x]` names a dependency whose closure starts `closures[x]`.
    /// Every member's keys must already be in `entries`.
    pub fn state(
        &self,
        element: usize,
        mode: EntryMode,
        closures: &[Vec<u32>],
        prefix_of: &[Option<usize>],
        entries: &[DependencyEntry],
    ) -> Option<Sha256> {
        let slot = mode.slot()?;
        // Walk down the prefix chain to a known state (or the chain's end),
        // then fill the states back up, shortest closure first.
        let mut chain = Vec::new();
        let mut current = Some(element);
        while let Some(node) = current {
            if self.states[node][slot].get().is_some() {
                break;
            }
            chain.push(node);
            current = prefix_of[node];
        }
        for &node in chain.iter().rev() {
            self.states[node][slot].get_or_init(|| {
                let (hasher, done) = match prefix_of[node] {
                    Some(prefix) => (self.states[prefix][slot].get()?.clone()?, closures[prefix].len()),
                    None => {
                        let mut hasher = Sha256::new();
                        hasher.update(DICT_HEAD.as_bytes());
                        hasher.update(b"[");
                        (hasher, 0)
                    }
                };
                let mut hasher = BatchedHasher::new(hasher);
                for (position, &member) in closures[node].iter().enumerate().skip(done) {
                    entries[member as usize].feed(&mut hasher, position == 0, mode)?;
                }
                Some(hasher.finish())
            });
        }
        self.states[element][slot].get()?.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_hashing_gives_the_digest_of_the_whole_text() {
        // Short pieces that cross the batch size many times, and one piece longer than a batch.
        let mut pieces: Vec<Vec<u8>> = (0..3000).map(|i| format!(",[\"project\",\"element-{i}.bst\"]").into_bytes()).collect();
        pieces.insert(1500, vec![b'x'; BATCH + 7]);
        let mut plain = Sha256::new();
        plain.update(DICT_HEAD.as_bytes());
        let mut batched = BatchedHasher::new(plain.clone());
        for piece in &pieces {
            plain.update(piece);
            batched.update(piece);
        }
        assert_eq!(batched.finish().finalize(), plain.finalize());
    }
}
