//! [`BlobIndex`]: the set of digests a [`super::FilesystemStore`] holds, in
//! memory, so that `FindMissingBlobs` answers without a system call.
//!
//! Key decision: the index is a cache of the directory, kept by the one store
//! that writes it, and it is allowed to be wrong only in the harmless
//! direction until the next access corrects it. A digest absent from the
//! index is reported missing (at worst the client uploads a blob again, and
//! the write finds the file and re-adds it). A digest present in the index
//! whose file was deleted behind the store's back is dropped from the index
//! as soon as a read or a hard-link lookup finds the file gone, so the next
//! `FindMissingBlobs` reports it missing and the client re-uploads it.
//!
//! Cost: about 50 bytes of memory per stored blob (50 MB per million blobs).
//! SHA-256 digests are already uniformly random, so the hash table uses the
//! first eight bytes of the digest as its hash instead of hashing again.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::RwLock;

use weir_proto::Digest;

/// A digest as a hash-table key whose hash is its own first eight bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Key(Digest);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let bytes = self.0.hash_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        state.write_u64(u64::from_le_bytes(first) ^ self.0.size());
    }
}

/// A hasher that passes a `u64` through (only [`Key`] is hashed with it).
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `Key`; fold anything else in rather than drop it.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The digests held, behind a read-write lock (lookups share it).
#[derive(Default)]
pub struct BlobIndex {
    set: RwLock<HashSet<Key, BuildHasherDefault<PassThrough>>>,
}

impl BlobIndex {
    /// An index holding `digests`.
    pub fn new(digests: impl IntoIterator<Item = Digest>) -> Self {
        BlobIndex { set: RwLock::new(digests.into_iter().map(Key).collect()) }
    }

    /// Whether the index holds `digest`.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.set.read().map(|set| set.contains(&Key(*digest))).unwrap_or(false)
    }

    /// The digests among `digests` that the index does not hold, in order.
    pub fn missing(&self, digests: &[Digest]) -> Vec<Digest> {
        match self.set.read() {
            Ok(set) => digests.iter().filter(|d| !set.contains(&Key(**d))).copied().collect(),
            // A poisoned lock: claim nothing is held (the harmless direction).
            Err(_) => digests.to_vec(),
        }
    }

    /// Records that `digest` is held.
    pub fn insert(&self, digest: Digest) {
        if let Ok(mut set) = self.set.write() {
            set.insert(Key(digest));
        }
    }

    /// Records that `digest` is no longer held.
    pub fn remove(&self, digest: &Digest) {
        if let Ok(mut set) = self.set.write() {
            set.remove(&Key(*digest));
        }
    }

    /// How many digests the index holds.
    pub fn len(&self) -> usize {
        self.set.read().map(|set| set.len()).unwrap_or(0)
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_inserts_and_removals() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let index = BlobIndex::new([a]);
        assert!(index.contains(&a));
        assert_eq!(index.missing(&[a, b]), vec![b]);
        index.insert(b);
        assert!(index.missing(&[a, b]).is_empty());
        index.remove(&a);
        assert_eq!(index.missing(&[a, b]), vec![a]);
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn the_size_is_part_of_the_key() {
        let a = Digest::of(b"abc");
        let same_hash_other_size = Digest::new(*a.hash_bytes(), a.size() + 1);
        let index = BlobIndex::new([a]);
        assert!(!index.contains(&same_hash_other_size));
    }
}
