//! Shared SHA-256 states for dependency-list prefixes.
//!
//! It owns [`PrefixStates`]. The key dict's canonical text starts with
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

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

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

/// The keys a closure member contributes, by mode.
pub trait MemberKeys {
    /// The weak key of a member, if known.
    fn weak(&self) -> Option<&str>;
    /// The strict key of a member, if known.
    fn strict(&self) -> Option<&str>;
}

impl MemberKeys for super::key_table::ElementKeys {
    fn weak(&self) -> Option<&str> {
        self.weak.as_deref()
    }

    fn strict(&self) -> Option<&str> {
        self.strict.as_deref()
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

    /// Feeds one entry (`,` first unless it is the first) of a dependency list.
    pub fn feed_entry(hasher: &mut Sha256, first: bool, entry_prefix: &str, key: Option<&str>) {
        if !first {
            hasher.update(b",");
        }
        hasher.update(entry_prefix.as_bytes());
        if let Some(key) = key {
            // Keys are lowercase hex: nothing to escape.
            hasher.update(b",\"");
            hasher.update(key.as_bytes());
            hasher.update(b"\"");
        }
        hasher.update(b"]");
    }

    /// The state after the entries of `closures[element]` in `mode`; `None`
    /// when a member's key is unknown or the mode is never shared.
    /// `prefix_of[x]` names a dependency whose closure starts `closures[x]`.
    /// Every member's keys must already be in `keys`.
    pub fn state<K: MemberKeys>(
        &self,
        element: usize,
        mode: EntryMode,
        closures: &[Vec<u32>],
        prefix_of: &[Option<usize>],
        keys: &[K],
        entries: &[String],
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
                let (mut hasher, done) = match prefix_of[node] {
                    Some(prefix) => (self.states[prefix][slot].get()?.clone()?, closures[prefix].len()),
                    None => {
                        let mut hasher = Sha256::new();
                        hasher.update(DICT_HEAD.as_bytes());
                        hasher.update(b"[");
                        (hasher, 0)
                    }
                };
                for (position, &member) in closures[node].iter().enumerate().skip(done) {
                    let member = member as usize;
                    let key = match mode {
                        EntryMode::WeakNames => None,
                        EntryMode::WeakKeyed => Some(keys[member].weak()?),
                        EntryMode::Strict => Some(keys[member].strict()?),
                        EntryMode::Mixed => return None,
                    };
                    Self::feed_entry(&mut hasher, position == 0, &entries[member], key);
                }
                Some(hasher)
            });
        }
        self.states[element][slot].get()?.clone()
    }
}
