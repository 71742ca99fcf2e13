//! Shared SHA-256 states for dependency-list prefixes.
//!
//! It owns [`PrefixStates`], [`Fingerprints`], [`DependencyEntry`] (an
//! element's entry in its dependants' lists, serialised once per form, so
//! hashing a list is one `update` per member) and [`BatchedHasher`]. The key
//! dict's canonical text starts with [`DICT_HEAD`] followed by the
//! dependency list, and on deep graphs many build-scope lists start with the
//! same members (the runtime closure of a common first build dependency,
//! often followed by more common members). So the hash state after
//! `head + [` + the first entries of a list is the same for every list that
//! starts with those members. Key decision: every list hashed leaves a
//! checkpoint (its hash state) at every multiple of an interval (about a
//! quarter of the average list, see [`MIN_INTERVAL`]) and where its first
//! two segments end (the members its first build dependencies brought, see
//! [`SegmentEnds`]: common prefixes end there, at lengths no interval
//! divides), keyed by the mode, the position and a 128-bit fingerprint of
//! the members before it; a later list with the same prefix finds its
//! longest interval checkpoint by binary search over its own fingerprints,
//! then a longer segment checkpoint if there is one, and resumes from it.
//! On the layered benchmark shape the segment ends cut the entries hashed
//! by a fifth (941,000 to 757,000), on the dense one by 6%. A fingerprint only
//! finds a candidate: the members are compared with the list that stored the
//! checkpoint before its state is used, so a collision costs sharing, never
//! a wrong key. Sharing thus works across any two lists, not only along
//! closures, and a long common prefix is hashed once. Checkpoints live in
//! sharded mutexes, so the elements hashed in parallel share them, and their
//! number is capped, which bounds the memory.

#[cfg(test)]
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock, PoisonError};

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use super::build_scope::SegmentEnds;
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
    fn slot(self) -> Option<u8> {
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
        let keyed = |key: &str| [&self.names[..self.names.len() - 1], ",\"", key, "\"]"].concat();
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
}

/// Bytes gathered before they are hashed in one `update`.
const BATCH: usize = 2048;

/// A SHA-256 state fed through a buffer, so that many short inputs are
/// hashed as one long one (the digest is the same): a list is thousands of
/// 40–120 byte entries, and one `update` per entry would run the block
/// function one 64-byte block at a time.
pub struct BatchedHasher {
    hasher: Sha256,
    buffer: [u8; BATCH],
    len: usize,
    #[cfg(test)]
    pieces: usize,
}

/// Pieces (dependency entries) fed to every [`BatchedHasher`] so far, for the timing harness.
#[cfg(test)]
static PIECES_HASHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Pieces fed to every [`BatchedHasher`] so far (test builds only).
#[cfg(test)]
pub fn entries_hashed() -> usize {
    PIECES_HASHED.load(Ordering::Relaxed)
}

impl BatchedHasher {
    /// Continues from `hasher`'s state.
    pub fn new(hasher: Sha256) -> Self {
        BatchedHasher {
            hasher,
            buffer: [0; BATCH],
            len: 0,
            #[cfg(test)]
            pieces: 0,
        }
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        #[cfg(test)]
        {
            self.pieces += 1;
        }
        if self.len + bytes.len() > BATCH {
            self.flush();
        }
        if bytes.len() > BATCH {
            self.hasher.update(bytes);
        } else {
            self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buffer[..self.len]);
        self.len = 0;
    }

    /// A copy of the state after everything added so far.
    pub fn state(&mut self) -> Sha256 {
        self.flush();
        self.hasher.clone()
    }

    /// The state after everything added.
    pub fn finish(mut self) -> Sha256 {
        self.flush();
        #[cfg(test)]
        PIECES_HASHED.fetch_add(self.pieces, Ordering::Relaxed);
        self.hasher
    }
}

/// The checkpoint interval (in entries) is about a quarter of the average
/// list, a power of two between these bounds. A shorter one means more
/// sharing (at most `interval - 1` entries hashed again per list) but more
/// states to store and look up: on the dense benchmark shape (lists of
/// ~1,000 entries) 128 costs the least, on the layered one (~100) 32.
pub const MIN_INTERVAL: usize = 16;
/// See [`MIN_INTERVAL`].
pub const MAX_INTERVAL: usize = 128;

/// At most this many checkpoints are kept (a state is about 160 bytes with
/// its key, so at most ~40 MB; the dense benchmark at 5,000 elements keeps
/// ~60,000).
const MAX_CHECKPOINTS: usize = 1 << 18;

/// Mutex-protected shards of the checkpoint map (a power of two).
const SHARDS: usize = 16;

/// 128-bit fingerprints of a list's prefixes: `intervals[j]` covers the
/// first `(j + 1) * interval` members, `segments` the members up to each
/// segment end (position 0: none). Computed once per list, for every mode.
pub struct Fingerprints {
    intervals: Vec<u128>,
    segments: [(u32, u128); 2],
}

impl Fingerprints {
    /// The fingerprints of `list`'s prefixes of every multiple of
    /// `interval` members and of those ending at `ends`.
    fn of(list: &[u32], interval: usize, ends: SegmentEnds) -> Self {
        let mut prints = Fingerprints { intervals: Vec::with_capacity(list.len() / interval), segments: [(0, 0); 2] };
        let (mut low, mut high) = (0x243f_6a88_85a3_08d3_u64, 0x1319_8a2e_0370_7344_u64);
        for (position, &member) in (1..).zip(list) {
            let token = mix(u64::from(member));
            low = (low.rotate_left(23) ^ token).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            high = (high.rotate_left(41) ^ mix(token)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
            let print = || (u128::from(high) << 64) | u128::from(low);
            if position % interval == 0 {
                prints.intervals.push(print());
            }
            for (slot, &end) in prints.segments.iter_mut().zip(&ends) {
                if end as usize == position {
                    *slot = (end, print());
                }
            }
        }
        prints
    }

    /// The fingerprint of the prefix of `length` members, if it is a segment end.
    fn segment(&self, length: usize) -> Option<u128> {
        self.segments.iter().find(|&&(end, _)| end != 0 && end as usize == length).map(|&(_, print)| print)
    }
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Where a checkpoint is: mode slot, prefix length, fingerprint of the prefix.
type CheckpointKey = (u8, u32, u128);

/// The 64 bits of a [`CheckpointKey`] a shard's index is keyed by: a
/// third of the memory of the whole key per entry, and the index is
/// touched at random places. Two keys that meet there only cost sharing:
/// the checkpoint found is checked against the whole key's slot and length,
/// and its members against the list's (see [`PrefixStates::resume`]).
fn index_key(&(slot, length, print): &CheckpointKey) -> u64 {
    (print as u64) ^ ((print >> 64) as u64).rotate_left(29) ^ mix((u64::from(length) << 8) | u64::from(slot))
}

/// A stored state, the list it was hashed for and where in it (to verify a match).
struct Checkpoint {
    owner: u32,
    length: u32,
    slot: u8,
    state: Sha256,
}

/// One shard of the checkpoints: a small index into states kept in the
/// order stored, so that the index can be sized up front cheaply and the
/// states take only the memory they use.
#[derive(Default)]
struct Shard {
    index: FxHashMap<u64, u32>,
    states: Vec<Checkpoint>,
}

/// Hash states after `DICT_HEAD + "[" + ` the first entries of any list
/// hashed so far, shared by reference across threads.
pub struct PrefixStates<'a> {
    lists: &'a [Vec<u32>],
    segment_ends: &'a [SegmentEnds],
    interval: usize,
    shards: Vec<Mutex<Shard>>,
}

impl<'a> PrefixStates<'a> {
    /// No checkpoint yet for the dependency lists `lists` (indexed by owner
    /// element) whose segments end at `segment_ends` (also by owner; an
    /// owner without an entry has no segment checkpoints), with an interval
    /// suited to their lengths (see [`MIN_INTERVAL`]).
    pub fn new(lists: &'a [Vec<u32>], segment_ends: &'a [SegmentEnds]) -> Self {
        let average = lists.iter().map(Vec::len).sum::<usize>() / lists.len().max(1);
        Self::with_interval(lists, segment_ends, (average / 4).next_power_of_two().clamp(MIN_INTERVAL, MAX_INTERVAL))
    }

    /// As [`new`](Self::new), with a checkpoint every `interval` entries (at least 1).
    pub fn with_interval(lists: &'a [Vec<u32>], segment_ends: &'a [SegmentEnds], interval: usize) -> Self {
        let interval = interval.max(1);
        // Room for a checkpoint per interval of every list, and one segment
        // end per list, in two modes (the usual weak and strict), so that
        // neither the index nor the states grow while shared: growing would
        // copy the states, and the room never used is never touched (no
        // page of it is faulted in).
        let per_mode = lists.iter().map(|list| list.len() / interval + 1).sum::<usize>();
        let checkpoints = (2 * per_mode).min(MAX_CHECKPOINTS);
        PrefixStates {
            lists,
            segment_ends,
            interval,
            shards: (0..SHARDS)
                .map(|_| {
                    let index = FxHashMap::with_capacity_and_hasher(checkpoints / SHARDS, Default::default());
                    Mutex::new(Shard { index, states: Vec::with_capacity(checkpoints / SHARDS) })
                })
                .collect(),
        }
    }

    /// The dependency list of element `owner` (empty if out of range).
    pub fn list(&self, owner: usize) -> &'a [u32] {
        self.lists.get(owner).map_or(&[], Vec::as_slice)
    }

    /// The fingerprints of list `owner`, for [`hash_list`](Self::hash_list) in every mode.
    pub fn fingerprints(&self, owner: usize) -> Fingerprints {
        let ends = self.segment_ends.get(owner).copied().unwrap_or_default();
        Fingerprints::of(self.list(owner), self.interval, ends)
    }

    /// The state after the dict head and every entry of list `owner`
    /// (without the closing `]`), in `mode`; `text(member)` is a member's
    /// entry with its leading comma (`None` if its key is unknown, which
    /// makes the result `None`). `prints` are the list's [`fingerprints`](Self::fingerprints).
    pub fn hash_list<'t>(
        &self,
        owner: usize,
        prints: &Fingerprints,
        mode: EntryMode,
        text: impl Fn(u32) -> Option<&'t str>,
    ) -> Option<Sha256> {
        let list = self.lists.get(owner)?;
        let slot = mode.slot();
        let (state, done) = slot.and_then(|slot| self.resume(slot, list, prints)).unwrap_or_else(|| {
            let mut hasher = Sha256::new();
            hasher.update(DICT_HEAD.as_bytes());
            hasher.update(b"[");
            (hasher, 0)
        });
        let mut hasher = BatchedHasher::new(state);
        for (position, &member) in list.iter().enumerate().skip(done) {
            hasher.update(&text(member)?.as_bytes()[usize::from(position == 0)..]);
            let length = position + 1;
            if let Some(slot) = slot {
                let print = match length % self.interval {
                    0 => prints.intervals.get(length / self.interval - 1).copied(),
                    _ => prints.segment(length),
                };
                if let Some(print) = print {
                    self.store((slot, length as u32, print), owner, &mut hasher);
                }
            }
        }
        Some(hasher.finish())
    }

    fn shard(&self, key: &CheckpointKey) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[(key.2 as usize) & (SHARDS - 1)].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state at `key`, if stored.
    fn lookup(&self, key: &CheckpointKey) -> Option<(u32, Sha256)> {
        let shard = self.shard(key);
        let checkpoint = shard.states.get(*shard.index.get(&index_key(key))? as usize)?;
        (checkpoint.slot == key.0 && checkpoint.length == key.1).then(|| (checkpoint.owner, checkpoint.state.clone()))
    }

    /// Keeps `hasher`'s current state at `key`, unless one is there or the shard is full.
    fn store(&self, key: CheckpointKey, owner: usize, hasher: &mut BatchedHasher) {
        let state = hasher.state();
        let mut shard = self.shard(&key);
        let next = shard.states.len();
        if next < MAX_CHECKPOINTS / SHARDS {
            if let std::collections::hash_map::Entry::Vacant(slot) = shard.index.entry(index_key(&key)) {
                slot.insert(next as u32);
                shard.states.push(Checkpoint { owner: owner as u32, length: key.1, slot: key.0, state });
            }
        }
    }

    /// The longest stored prefix of `list` in `slot`: its state and length.
    /// A list that shares an interval checkpoint shares every earlier one
    /// (whoever stored it stored, or had found, those too), so a binary
    /// search over the interval checkpoints finds the longest of them; a
    /// segment end beyond it is then tried, longest first. The members are
    /// compared with the owner's list before the state is trusted.
    fn resume(&self, slot: u8, list: &[u32], prints: &Fingerprints) -> Option<(Sha256, usize)> {
        let (mut low, mut high) = (0, prints.intervals.len());
        let mut best = None;
        while low < high {
            let middle = (low + high) / 2;
            let length = (middle + 1) * self.interval;
            match self.lookup(&(slot, length as u32, prints.intervals[middle])) {
                Some(found) => {
                    best = Some((found, length));
                    low = middle + 1;
                }
                None => high = middle,
            }
        }
        let longest_interval = best.as_ref().map_or(0, |(_, length)| *length);
        let mut segments = prints.segments;
        segments.sort_unstable_by_key(|&(end, _)| std::cmp::Reverse(end));
        for (end, print) in segments {
            let length = end as usize;
            if length <= longest_interval || length.is_multiple_of(self.interval) {
                continue;
            }
            if let Some(found) = self.lookup(&(slot, end, print)) {
                best = Some((found, length));
                break;
            }
        }
        let ((owner, state), length) = best?;
        let stored = self.lists.get(owner as usize)?;
        (stored.get(..length)? == list.get(..length)?).then_some((state, length))
    }
}

#[cfg(test)]
mod tests {
    use rayon::prelude::*;

    use super::*;

    #[test]
    fn batched_hashing_gives_the_digest_of_the_whole_text() {
        // Short pieces that cross the batch size many times, and one piece longer than a batch.
        let mut pieces: Vec<Vec<u8>> = (0..3000).map(|i| format!(",[\"project\",\"element-{i}.bst\"]").into_bytes()).collect();
        pieces.insert(1500, vec![b'x'; BATCH + 7]);
        let mut plain = Sha256::new();
        plain.update(DICT_HEAD.as_bytes());
        let mut batched = BatchedHasher::new(plain.clone());
        for (index, piece) in pieces.iter().enumerate() {
            plain.update(piece);
            batched.update(piece);
            if index == 100 {
                assert_eq!(batched.state().finalize(), plain.clone().finalize(), "a state taken midway");
            }
        }
        assert_eq!(batched.finish().finalize(), plain.finalize());
    }

    /// Entries of `count` elements; element `i`'s keys are unknown when `unknown(i)`.
    fn entries(count: usize, unknown: impl Fn(usize) -> bool) -> Vec<DependencyEntry> {
        (0..count)
            .map(|index| {
                let entry = DependencyEntry::new("project", &format!("elements/e{index}.bst"));
                if !unknown(index) {
                    entry.set_keys(Some(&format!("{index:064x}")), Some(&format!("{:064x}", index + 1)));
                }
                entry
            })
            .collect()
    }

    /// The state after the head and the entries of `list`, the obvious way.
    fn plain_state(list: &[u32], text: impl Fn(u32) -> Option<String>) -> Option<Sha256> {
        let mut whole = format!("{DICT_HEAD}[");
        for (position, &member) in list.iter().enumerate() {
            whole.push_str(&text(member)?[usize::from(position == 0)..]);
        }
        Some(Sha256::new().chain_update(whole.as_bytes()))
    }

    /// Random lists with long common prefixes (built from a few shared
    /// stems), and their segment ends: the stem's part, then a random length.
    fn random_lists(seed: u64, count: usize, members: u32) -> (Vec<Vec<u32>>, Vec<SegmentEnds>) {
        let mut seed = seed;
        let mut next = move |bound: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        let stems: Vec<Vec<u32>> = (0..4).map(|_| (0..next(40)).map(|_| next(u64::from(members)) as u32).collect()).collect();
        (0..count)
            .map(|_| {
                let stem = &stems[next(4) as usize];
                let mut list: Vec<u32> = stem[..next(stem.len() as u64 + 1) as usize].to_vec();
                let stem_part = list.len() as u32;
                list.extend((0..next(30)).map(|_| next(u64::from(members)) as u32));
                let further = stem_part + next(u64::from(list.len() as u32 - stem_part) + 1) as u32;
                (list, [stem_part, further])
            })
            .unzip()
    }

    #[test]
    fn shared_states_equal_hashing_each_list_whole_in_every_mode() {
        for (round, interval) in [1, 2, 3, 5, 8].into_iter().enumerate() {
            let (lists, ends) = random_lists(round as u64 + 7, 300, 60);
            let unknown = |index: usize| index == 59 && round == 4;
            let entries = entries(60, unknown);
            let states = PrefixStates::with_interval(&lists, &ends, interval);
            for mode in [EntryMode::WeakNames, EntryMode::WeakKeyed, EntryMode::Strict] {
                // In parallel and twice, so that lists resume from each other's checkpoints.
                for _ in 0..2 {
                    (0..lists.len()).into_par_iter().for_each(|owner| {
                        let prints = states.fingerprints(owner);
                        let shared = states.hash_list(owner, &prints, mode, |m| entries[m as usize].text(mode));
                        let plain = plain_state(&lists[owner], |m| entries[m as usize].text(mode).map(str::to_owned));
                        assert_eq!(
                            shared.map(Sha256::finalize),
                            plain.map(Sha256::finalize),
                            "list {owner}, mode {mode:?}, interval {interval}"
                        );
                    });
                }
            }
            let kept: usize = states.shards.iter().map(|shard| shard.lock().map_or(0, |shard| shard.states.len())).sum();
            assert!(kept > 0, "checkpoints were kept");
        }
    }

    #[test]
    fn a_list_resumes_where_a_shared_segment_ends() {
        // The first five members are shared: a length no interval of 4 divides.
        let lists = vec![vec![1, 2, 3, 4, 5, 6, 7], vec![1, 2, 3, 4, 5, 8, 9, 10, 1]];
        let ends = [[5, 0], [5, 8]];
        let entries = entries(11, |_| false);
        let states = PrefixStates::with_interval(&lists, &ends, 4);
        let text = |m: u32| entries[m as usize].text(EntryMode::Strict);
        let slot = EntryMode::Strict.slot().unwrap();
        assert!(states.hash_list(0, &states.fingerprints(0), EntryMode::Strict, text).is_some());
        let prints = states.fingerprints(1);
        let resumed = states.resume(slot, &lists[1], &prints).map(|(_, length)| length);
        assert_eq!(resumed, Some(5), "past the interval checkpoint at 4");
        let shared = states.hash_list(1, &prints, EntryMode::Strict, text).map(Sha256::finalize);
        let plain = plain_state(&lists[1], |m| text(m).map(str::to_owned)).map(Sha256::finalize);
        assert_eq!(shared, plain);
        // The second list left its own segment end (8) for the next one.
        let third = states.fingerprints(1);
        assert_eq!(states.resume(slot, &lists[1], &third).map(|(_, length)| length), Some(8));
    }

    #[test]
    fn a_fingerprint_that_matches_other_members_is_not_trusted() {
        // Two lists with different members; the first one's checkpoints are
        // filed under the second one's fingerprints, as a collision would.
        let lists = vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]];
        let entries = entries(9, |_| false);
        let states = PrefixStates::with_interval(&lists, &[], 2);
        let text = |m: u32| entries[m as usize].text(EntryMode::Strict);
        let colliding = states.fingerprints(1);
        assert!(states.hash_list(0, &colliding, EntryMode::Strict, text).is_some());
        let shared = states.hash_list(1, &colliding, EntryMode::Strict, text).map(Sha256::finalize);
        let plain = plain_state(&lists[1], |m| text(m).map(str::to_owned)).map(Sha256::finalize);
        assert_eq!(shared, plain);
    }
}
