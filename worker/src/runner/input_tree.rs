//! [`InputTree`]: an action's input root, fetched from the CAS and validated
//! whole, then staged into a fresh directory.
//!
//! Key decision: [`InputTree::fetch`] reads every `Directory` of the tree,
//! validates each one ([`weir_proto::directory::decode_directory`]: names,
//! order, uniqueness, digests) and every symlink target against where it
//! sits, and checks that every file blob is present — all before
//! [`InputTree::stage`] writes a single byte. A bad tree is refused with
//! nothing on disk; missing blobs are reported together so that a client can
//! upload them in one go. The empty blob (which is also the encoding of an
//! empty `Directory`) is never read from the store: FindMissingBlobs
//! reports it always present, so staging must not depend on it being stored.
//!
//! Staging hard-links a file from the store's `local_path` where the store has
//! one, and an executable from its [`ExecutableCopies`] copy (so that the
//! mode of the CAS file never changes), and writes the bytes otherwise. A
//! hard link shares the inode, so a command that writes into an input in
//! place would corrupt the CAS: [`LinkedInputs`] remembers the size and
//! mtime (and, for executable copies, the mode) of every linked file, and
//! after the run [`LinkedInputs::modified`] names the blobs and copies that
//! changed, which the runner then removes (a client re-uploads blobs). Staging never follows a symlink:
//! every directory it writes into is one it has just created, and names are
//! unique within a directory, so a symlink in the tree cannot redirect a
//! write.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::join_all;
use weir_proto::directory::{decode_directory, symlink_stays_within};
use weir_proto::reapi::Directory;
use weir_proto::Digest;

use super::executable_copies::ExecutableCopies;
use super::inode_pool::{create_dir, create_symlink, InodePool};
use super::RunnerError;
use crate::store::{read_local_file, Store, StoreError};

/// Where the content of a file comes from when it is staged.
#[derive(Debug, Clone)]
enum Content {
    /// An immutable file of the store that can be hard-linked or copied.
    Local(PathBuf),
    /// The bytes, read from the store.
    Bytes(Bytes),
}

/// A validated input root whose every blob is present.
#[derive(Debug)]
pub struct InputTree {
    root: Digest,
    directories: HashMap<Digest, Directory>,
    contents: HashMap<Digest, Content>,
}

impl InputTree {
    /// Fetches and validates the tree under `root`. Absolute symlink targets
    /// are accepted only when `allow_absolute_symlinks` (the sandbox makes
    /// the input root `/`).
    ///
    /// What the store keeps in local files is read in one trip to the
    /// blocking pool ([`LocalTree::read`]); only what it does not (another
    /// kind of store, or a blob gone meanwhile) is then read through the
    /// store, one tree level at a time.
    pub async fn fetch(store: &Store, root: Digest, allow_absolute_symlinks: bool) -> Result<Self, RunnerError> {
        let local = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || LocalTree::read(&store, root))
                .await
                .map_err(|e| RunnerError::io("reading the input tree", std::io::Error::other(e.to_string())))??
        };
        Self::fetch_rest(store, local, root, allow_absolute_symlinks).await
    }

    /// Completes the tree `local` is part of ([`Self::read_local`] found it
    /// incomplete) through the store, as [`Self::fetch`] does.
    pub async fn fetch_rest(store: &Store, local: LocalTree, root: Digest, allow_absolute_symlinks: bool) -> Result<Self, RunnerError> {
        let LocalTree { mut directories, unread, files: located } = local;
        let mut missing: Vec<Digest> = Vec::new();
        let mut seen: HashSet<Digest> = directories.keys().copied().chain(unread.iter().copied()).collect();
        let mut level = unread;
        while !level.is_empty() {
            let reads = join_all(level.iter().map(|digest| read_blob(store, digest))).await;
            let mut next = Vec::new();
            for (digest, read) in level.into_iter().zip(reads) {
                let bytes = match read {
                    Ok(bytes) if Digest::of(&bytes) == digest => bytes,
                    Ok(_) => {
                        // A damaged blob: gone from the CAS, for the client to upload again.
                        tracing::error!(blob = %digest, "an input directory blob does not match its digest; removing it");
                        store.remove(&digest).await?;
                        missing.push(digest);
                        continue;
                    }
                    Err(StoreError::NotFound(_)) => {
                        missing.push(digest);
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                let directory = decode(&digest, &bytes)?;
                for child in &directory.directories {
                    let child = child_digest(child.digest.as_ref())?;
                    if seen.insert(child) {
                        next.push(child);
                    }
                }
                directories.insert(digest, directory);
            }
            level = next;
        }

        let files = unlocated_files(&directories, &located)?;
        if missing.is_empty() {
            check_symlinks(&directories, root, allow_absolute_symlinks)?;
        }
        if !files.is_empty() {
            missing.extend(store.find_missing(&files).await?);
        }
        if !missing.is_empty() {
            return Err(RunnerError::MissingBlobs(missing));
        }

        // `local_path` may stat a file per blob: off the async threads.
        let paths = if files.is_empty() {
            Vec::new()
        } else {
            let store = store.clone();
            let files = files.clone();
            tokio::task::spawn_blocking(move || files.iter().map(|d| store.local_path(d)).collect::<Vec<_>>())
                .await
                .map_err(|e| RunnerError::io("resolving local blob paths", std::io::Error::other(e.to_string())))?
        };
        let mut contents = located_contents(located);
        let mut to_read = Vec::new();
        for (digest, path) in files.into_iter().zip(paths) {
            match path {
                Some(path) => {
                    contents.insert(digest, Content::Local(path));
                }
                None => to_read.push(digest),
            }
        }
        let reads = join_all(to_read.iter().map(|digest| store.read_all(digest))).await;
        for (digest, read) in to_read.into_iter().zip(reads) {
            let bytes = read.map_err(|e| match e {
                StoreError::NotFound(d) => RunnerError::MissingBlobs(vec![d]),
                e => e.into(),
            })?;
            contents.insert(digest, Content::Bytes(bytes));
        }
        Ok(InputTree { root, directories, contents })
    }

    /// Reads the tree from the store's local files: whole when every
    /// `Directory` and file blob of it is there (validated as
    /// [`Self::fetch`] does), else the part found, for [`Self::fetch_rest`].
    /// Blocking.
    pub fn read_local(store: &Store, root: Digest, allow_absolute_symlinks: bool) -> Result<LocalRead, RunnerError> {
        let local = LocalTree::read(store, root)?;
        if !local.unread.is_empty() || !unlocated_files(&local.directories, &local.files)?.is_empty() {
            return Ok(LocalRead::Partial(local));
        }
        check_symlinks(&local.directories, root, allow_absolute_symlinks)?;
        Ok(LocalRead::Whole(InputTree { root, directories: local.directories, contents: located_contents(local.files) }))
    }

    /// The digest of the root directory.
    pub fn root_digest(&self) -> Digest {
        self.root
    }

    /// Writes the tree into `dest`, which must not exist yet, linking
    /// executables from `copies` and taking directories from `dirs` when
    /// given; returns what was hard-linked. Blocking.
    pub fn stage(
        &self,
        dest: &Path,
        copies: Option<&ExecutableCopies>,
        dirs: Option<&InodePool>,
    ) -> Result<LinkedInputs, RunnerError> {
        create_dir(dirs, dest).map_err(|e| RunnerError::io(format!("creating {}", dest.display()), e))?;
        let mut linked = LinkedInputs::default();
        self.stage_directory(&self.root, dest, (copies, dirs), &mut linked)?;
        Ok(linked)
    }

    fn stage_directory(
        &self,
        digest: &Digest,
        dest: &Path,
        (copies, dirs): (Option<&ExecutableCopies>, Option<&InodePool>),
        linked: &mut LinkedInputs,
    ) -> Result<(), RunnerError> {
        let directory = self
            .directories
            .get(digest)
            .ok_or_else(|| RunnerError::InvalidInput(format!("directory {digest} was not fetched")))?;
        for file in &directory.files {
            let digest = child_digest(file.digest.as_ref())?;
            let content = self.contents.get(&digest).ok_or(RunnerError::MissingBlobs(vec![digest]))?;
            let path = dest.join(&file.name);
            if file.is_executable {
                if let Some(copy) = copies.map(|c| executable_copy(c, &digest, content)).transpose()?.flatten() {
                    if fs::hard_link(&copy, &path).is_ok() {
                        linked.record(digest, &copy, Linked::ExecutableCopy);
                        continue;
                    }
                }
            }
            if place_file(content, file.is_executable, &path)? {
                if let Content::Local(source) = content {
                    linked.record(digest, source, Linked::StoreFile);
                }
            }
        }
        for link in &directory.symlinks {
            let path = dest.join(&link.name);
            create_symlink(dirs, Path::new(&link.target), &path)
                .map_err(|e| RunnerError::io(format!("creating symlink {}", path.display()), e))?;
        }
        for child in &directory.directories {
            let path = dest.join(&child.name);
            create_dir(dirs, &path).map_err(|e| RunnerError::io(format!("creating {}", path.display()), e))?;
            self.stage_directory(&child_digest(child.digest.as_ref())?, &path, (copies, dirs), linked)?;
        }
        Ok(())
    }
}

/// What [`InputTree::read_local`] found in the store's local files.
#[derive(Debug)]
pub enum LocalRead {
    /// The whole tree.
    Whole(InputTree),
    /// Part of it; [`InputTree::fetch_rest`] reads the rest.
    Partial(LocalTree),
}

/// The part of an input tree found in the store's local files.
#[derive(Debug, Default)]
pub struct LocalTree {
    /// Directories read (and checked against their digests) from files.
    directories: HashMap<Digest, Directory>,
    /// Directories with no (intact) local file: to be read through the store.
    unread: Vec<Digest>,
    /// File blobs of the directories read, with their local paths (those
    /// with none are left to the caller).
    files: HashMap<Digest, PathBuf>,
}

impl LocalTree {
    /// Walks the tree from `root` through the store's local files. Blocking.
    /// A directory's file is trusted only when its content hashes to the
    /// directory's digest; file blobs are only located (as staging does).
    fn read(store: &Store, root: Digest) -> Result<Self, RunnerError> {
        let mut tree = LocalTree::default();
        let mut pending = vec![root];
        let mut seen = HashSet::from([root]);
        while let Some(digest) = pending.pop() {
            let bytes = if digest == Digest::empty() {
                Some(Vec::new())
            } else {
                read_local_file(store.as_ref(), &digest)
            };
            let Some(bytes) = bytes else {
                tree.unread.push(digest);
                continue;
            };
            let directory = decode(&digest, &bytes)?;
            for child in &directory.directories {
                let child = child_digest(child.digest.as_ref())?;
                if seen.insert(child) {
                    pending.push(child);
                }
            }
            for file in &directory.files {
                let file = child_digest(file.digest.as_ref())?;
                if file != Digest::empty() && !tree.files.contains_key(&file) {
                    if let Some(path) = store.local_path(&file) {
                        tree.files.insert(file, path);
                    }
                }
            }
            tree.directories.insert(digest, directory);
        }
        Ok(tree)
    }
}

/// The distinct non-empty file blobs of `directories` that have no path in
/// `located`.
fn unlocated_files(directories: &HashMap<Digest, Directory>, located: &HashMap<Digest, PathBuf>) -> Result<Vec<Digest>, RunnerError> {
    let mut files = Vec::new();
    let mut seen = HashSet::new();
    for directory in directories.values() {
        for file in &directory.files {
            let digest = child_digest(file.digest.as_ref())?;
            if digest != Digest::empty() && !located.contains_key(&digest) && seen.insert(digest) {
                files.push(digest);
            }
        }
    }
    Ok(files)
}

/// The contents of the `located` blobs, and of the empty blob.
fn located_contents(located: HashMap<Digest, PathBuf>) -> HashMap<Digest, Content> {
    let mut contents: HashMap<Digest, Content> = located.into_iter().map(|(digest, path)| (digest, Content::Local(path))).collect();
    contents.insert(Digest::empty(), Content::Bytes(Bytes::new()));
    contents
}

/// Decodes and validates the `Directory` blob `digest`.
fn decode(digest: &Digest, bytes: &[u8]) -> Result<Directory, RunnerError> {
    decode_directory(bytes).map_err(|e| RunnerError::InvalidInput(format!("directory {digest}: {e}")))
}

/// Reads a whole blob; the empty blob is never looked up in the store.
async fn read_blob(store: &Store, digest: &Digest) -> Result<Bytes, StoreError> {
    if *digest == Digest::empty() {
        return Ok(Bytes::new());
    }
    store.read_all(digest).await
}

fn child_digest(digest: Option<&weir_proto::reapi::Digest>) -> Result<Digest, RunnerError> {
    // `decode_directory` has validated every digest already.
    Digest::try_from(digest).map_err(|e| RunnerError::InvalidInput(e.to_string()))
}

/// Checks every symlink, at every place its directory occurs, against the
/// root (lexically; see the module doc for why staging is safe regardless).
fn check_symlinks(directories: &HashMap<Digest, Directory>, root: Digest, allow_absolute: bool) -> Result<(), RunnerError> {
    let mut pending = vec![(root, String::new())];
    // A directory at the same depth is checked once: containment only
    // depends on how deep the directory sits.
    let mut checked: HashSet<(Digest, usize)> = HashSet::new();
    while let Some((digest, location)) = pending.pop() {
        let depth = location.split('/').filter(|s| !s.is_empty()).count();
        if !checked.insert((digest, depth)) {
            continue;
        }
        let Some(directory) = directories.get(&digest) else { continue };
        for link in &directory.symlinks {
            let inside = if link.target.starts_with('/') {
                allow_absolute
            } else {
                symlink_stays_within(&location, &link.target)
            };
            if !inside {
                return Err(RunnerError::InvalidInput(format!(
                    "symlink {:?} -> {:?} points outside the input root",
                    join(&location, &link.name),
                    link.target
                )));
            }
        }
        for child in &directory.directories {
            pending.push((child_digest(child.digest.as_ref())?, join(&location, &child.name)));
        }
    }
    Ok(())
}

fn join(location: &str, name: &str) -> String {
    if location.is_empty() {
        name.to_owned()
    } else {
        format!("{location}/{name}")
    }
}

/// The shared executable copy of a blob (`None` past the copies' bound).
fn executable_copy(copies: &ExecutableCopies, digest: &Digest, content: &Content) -> Result<Option<PathBuf>, RunnerError> {
    let context = || format!("making the executable copy of {digest}");
    copies
        .get(digest, |temp| match content {
            Content::Local(source) => fs::copy(source, temp).map(drop),
            Content::Bytes(bytes) => fs::write(temp, bytes),
        })
        .map_err(|e| RunnerError::io(context(), e))
}

/// Places one file; returns whether it is a hard link to the store's file.
fn place_file(content: &Content, executable: bool, path: &Path) -> Result<bool, RunnerError> {
    let mode = if executable { 0o755 } else { 0o644 };
    let context = || format!("staging {}", path.display());
    match content {
        Content::Local(source) if !executable && fs::hard_link(source, path).is_ok() => Ok(true),
        Content::Local(source) => {
            let mut from = fs::File::open(source).map_err(|e| RunnerError::io(context(), e))?;
            let mut to = create_file(path, mode).map_err(|e| RunnerError::io(context(), e))?;
            std::io::copy(&mut from, &mut to).map_err(|e| RunnerError::io(context(), e))?;
            Ok(false)
        }
        Content::Bytes(bytes) => {
            let mut to = create_file(path, mode).map_err(|e| RunnerError::io(context(), e))?;
            to.write_all(bytes).map_err(|e| RunnerError::io(context(), e))?;
            Ok(false)
        }
    }
}

/// What a hard-linked input file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Linked {
    /// The store's own file of the blob.
    StoreFile,
    /// The runner's executable copy of the blob.
    ExecutableCopy,
}

/// Size, mtime and mode of a file: what a write or `chmod` in place changes.
type Fingerprint = (u64, SystemTime, u32);

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.permissions().mode()))
}

/// The files an input root hard-links, with their fingerprints when staged.
#[derive(Debug, Default)]
pub struct LinkedInputs {
    files: HashMap<(Digest, Linked), (PathBuf, Fingerprint)>,
}

/// The linked inputs a command changed in place.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ModifiedInputs {
    /// Blobs whose store file changed: to be removed from the store.
    pub blobs: Vec<Digest>,
    /// Blobs whose executable copy changed: to be discarded.
    pub executable_copies: Vec<Digest>,
}

impl LinkedInputs {
    fn record(&mut self, digest: Digest, source: &Path, kind: Linked) {
        if self.files.contains_key(&(digest, kind)) {
            return;
        }
        if let Some(print) = fingerprint(source) {
            self.files.insert((digest, kind), (source.to_path_buf(), print));
        }
    }

    /// How many distinct blobs are hard-linked.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether nothing is hard-linked.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The linked files that changed (size, mtime or mode) since staging:
    /// the command wrote into an input in place. Blocking (one `stat` each).
    pub fn modified(&self) -> ModifiedInputs {
        let mut out = ModifiedInputs::default();
        for ((digest, kind), (path, staged)) in &self.files {
            let changed = match fingerprint(path) {
                Some(now) => now != *staged,
                None => *kind == Linked::ExecutableCopy,
            };
            if changed {
                match kind {
                    Linked::StoreFile => out.blobs.push(*digest),
                    Linked::ExecutableCopy => out.executable_copies.push(*digest),
                }
            }
        }
        out
    }
}

fn create_file(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::sync::Arc;

    use prost::Message;
    use weir_proto::reapi::{DirectoryNode, FileNode, SymlinkNode};

    use super::*;
    use crate::store::filesystem::{FilesystemSpec, FilesystemStore};
    use crate::store::memory::{MemorySpec, MemoryStore};

    fn memory_store() -> Store {
        Arc::new(MemoryStore::new(&MemorySpec {}))
    }

    async fn put(store: &Store, data: &[u8]) -> Digest {
        let digest = Digest::of(data);
        store.write(&digest, Bytes::copy_from_slice(data)).await.unwrap();
        digest
    }

    async fn put_dir(store: &Store, directory: &Directory) -> Digest {
        put(store, &directory.encode_to_vec()).await
    }

    fn file(name: &str, digest: Digest, is_executable: bool) -> FileNode {
        FileNode { name: name.into(), digest: Some(digest.to_proto()), is_executable, node_properties: None }
    }

    fn dir(name: &str, digest: Digest) -> DirectoryNode {
        DirectoryNode { name: name.into(), digest: Some(digest.to_proto()) }
    }

    fn link(name: &str, target: &str) -> SymlinkNode {
        SymlinkNode { name: name.into(), target: target.into(), node_properties: None }
    }

    /// root/{run.sh (exec), data/{a.txt, up -> ../run.sh}}
    async fn sample_tree(store: &Store) -> Digest {
        let a = put(store, b"alpha").await;
        let script = put(store, b"#!/bin/sh\necho hi\n").await;
        let data = put_dir(
            store,
            &Directory { files: vec![file("a.txt", a, false)], symlinks: vec![link("up", "../run.sh")], ..Default::default() },
        )
        .await;
        put_dir(store, &Directory { files: vec![file("run.sh", script, true)], directories: vec![dir("data", data)], ..Default::default() })
            .await
    }

    #[tokio::test]
    async fn stages_files_directories_and_symlinks() {
        let store = memory_store();
        let root = sample_tree(&store).await;
        let tree = InputTree::fetch(&store, root, false).await.unwrap();
        let temp = tempfile::tempdir().unwrap();
        let dest = temp.path().join("root");
        tree.stage(&dest, None, None).unwrap();
        assert_eq!(fs::read(dest.join("data/a.txt")).unwrap(), b"alpha");
        assert_eq!(fs::read(dest.join("data/up")).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(fs::read_link(dest.join("data/up")).unwrap(), Path::new("../run.sh"));
        assert_ne!(fs::metadata(dest.join("run.sh")).unwrap().permissions().mode() & 0o100, 0);
        assert_eq!(fs::metadata(dest.join("data/a.txt")).unwrap().permissions().mode() & 0o111, 0);
    }

    #[tokio::test]
    async fn hard_links_from_a_filesystem_store() {
        let temp = tempfile::tempdir().unwrap();
        let spec = FilesystemSpec { path: temp.path().join("cas"), verify_reads: false, fsync: false };
        let store: Store = Arc::new(FilesystemStore::open(&spec, temp.path()).unwrap());
        let root = sample_tree(&store).await;
        let tree = InputTree::fetch(&store, root, false).await.unwrap();
        let dest = temp.path().join("root");
        let linked = tree.stage(&dest, None, None).unwrap();
        assert_eq!(linked.len(), 1, "one non-executable blob is linked");
        let staged = fs::metadata(dest.join("data/a.txt")).unwrap();
        let stored = fs::metadata(store.local_path(&Digest::of(b"alpha")).unwrap()).unwrap();
        assert_eq!(staged.ino(), stored.ino(), "non-executable inputs are hard links");
        assert_eq!(linked.modified(), ModifiedInputs::default());
        fs::OpenOptions::new().append(true).open(dest.join("data/a.txt")).unwrap().write_all(b"!").unwrap();
        assert_eq!(linked.modified().blobs, vec![Digest::of(b"alpha")], "an in-place write to an input is detected");
        let exec = fs::metadata(dest.join("run.sh")).unwrap();
        assert_ne!(exec.ino(), fs::metadata(store.local_path(&Digest::of(b"#!/bin/sh\necho hi\n")).unwrap()).unwrap().ino());
    }

    #[tokio::test]
    async fn a_damaged_directory_blob_is_reported_missing_and_removed() {
        let temp = tempfile::tempdir().unwrap();
        let spec = FilesystemSpec { path: temp.path().join("cas"), verify_reads: false, fsync: false };
        let store: Store = Arc::new(FilesystemStore::open(&spec, temp.path()).unwrap());
        let a = put(&store, b"alpha").await;
        let data = put_dir(&store, &Directory { files: vec![file("a.txt", a, false)], ..Default::default() }).await;
        let root = put_dir(&store, &Directory { directories: vec![dir("data", data)], ..Default::default() }).await;
        assert!(InputTree::fetch(&store, root, false).await.is_ok(), "read from the local files");

        // Same size, other content: the file no longer matches its name.
        let path = store.local_path(&data).unwrap();
        let mut bytes = fs::read(&path).unwrap();
        bytes.reverse();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, &bytes).unwrap();
        match InputTree::fetch(&store, root, false).await {
            Err(RunnerError::MissingBlobs(missing)) => assert_eq!(missing, vec![data]),
            other => panic!("expected the damaged directory to be reported missing, got {other:?}"),
        }
        assert!(store.local_path(&data).is_none(), "the damaged blob was removed for the client to upload again");
    }

    #[tokio::test]
    async fn executables_are_linked_from_one_shared_copy_and_a_changed_copy_is_reported() {
        let temp = tempfile::tempdir().unwrap();
        let spec = FilesystemSpec { path: temp.path().join("cas"), verify_reads: false, fsync: false };
        let store: Store = Arc::new(FilesystemStore::open(&spec, temp.path()).unwrap());
        let copies = ExecutableCopies::new(temp.path().join("executables"), 1 << 20).unwrap();
        let root = sample_tree(&store).await;
        let tree = InputTree::fetch(&store, root, false).await.unwrap();
        let first = tree.stage(&temp.path().join("one"), Some(&copies), None).unwrap();
        tree.stage(&temp.path().join("two"), Some(&copies), None).unwrap();
        let one = fs::metadata(temp.path().join("one/run.sh")).unwrap();
        let two = fs::metadata(temp.path().join("two/run.sh")).unwrap();
        assert_eq!(one.ino(), two.ino(), "both roots link the same copy");
        assert_eq!(one.permissions().mode() & 0o777, 0o755);
        let script = Digest::of(b"#!/bin/sh\necho hi\n");
        let stored = fs::metadata(store.local_path(&script).unwrap()).unwrap();
        assert_ne!(one.ino(), stored.ino(), "the copy is not the CAS file");
        assert_eq!(stored.permissions().mode() & 0o111, 0, "the CAS file's mode is untouched");
        assert_eq!(first.len(), 2, "the store file and the executable copy are tracked");
        fs::set_permissions(temp.path().join("one/run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        let modified = first.modified();
        assert_eq!(modified.executable_copies, vec![script], "a chmod in place is detected");
        assert!(modified.blobs.is_empty());
    }

    #[tokio::test]
    async fn refuses_bad_trees_before_writing_anything() {
        let store = memory_store();
        let blob = put(&store, b"x").await;
        let good_child = put_dir(&store, &Directory::default()).await;
        let bad_child = put_dir(&store, &Directory { symlinks: vec![link("esc", "../../etc")], ..Default::default() }).await;
        let cases: Vec<(&str, Directory)> = vec![
            ("dot-dot name", Directory { files: vec![file("..", blob, false)], ..Default::default() }),
            ("slash in name", Directory { files: vec![file("a/b", blob, false)], ..Default::default() }),
            ("unsorted", Directory { files: vec![file("b", blob, false), file("a", blob, false)], ..Default::default() }),
            ("duplicate", Directory { files: vec![file("a", blob, false)], directories: vec![dir("a", good_child)], ..Default::default() }),
            ("escaping symlink", Directory { symlinks: vec![link("l", "../outside")], ..Default::default() }),
            ("absolute symlink", Directory { symlinks: vec![link("l", "/etc/passwd")], ..Default::default() }),
            ("escape deeper in the tree", Directory { files: vec![file("ok", blob, false)], directories: vec![dir("sub", bad_child)], ..Default::default() }),
        ];
        for (what, directory) in cases {
            let root = put_dir(&store, &directory).await;
            let temp = tempfile::tempdir().unwrap();
            match InputTree::fetch(&store, root, false).await {
                Err(RunnerError::InvalidInput(_)) => {}
                other => panic!("{what}: expected InvalidInput, got {other:?}"),
            }
            assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 0, "{what}: nothing staged");
        }
    }

    #[tokio::test]
    async fn absolute_symlinks_are_allowed_when_the_sandbox_roots_them() {
        let store = memory_store();
        let root = put_dir(&store, &Directory { symlinks: vec![link("sh", "/bin/busybox")], ..Default::default() }).await;
        assert!(InputTree::fetch(&store, root, true).await.is_ok());
        assert!(InputTree::fetch(&store, root, false).await.is_err());
    }

    #[tokio::test]
    async fn the_empty_blob_and_empty_directory_need_not_be_stored() {
        let store = memory_store();
        let empty = Digest::empty();
        // `empty/` is an empty Directory (the empty blob) and `nothing` an
        // empty file; neither is written to the store.
        let root = put_dir(
            &store,
            &Directory { files: vec![file("nothing", empty, false)], directories: vec![dir("empty", empty)], ..Default::default() },
        )
        .await;
        let tree = InputTree::fetch(&store, root, false).await.unwrap();
        let temp = tempfile::tempdir().unwrap();
        let dest = temp.path().join("root");
        tree.stage(&dest, None, None).unwrap();
        assert_eq!(fs::read(dest.join("nothing")).unwrap(), b"");
        assert_eq!(fs::read_dir(dest.join("empty")).unwrap().count(), 0);
        // An input root that is itself the empty directory stages as an empty directory.
        let tree = InputTree::fetch(&store, empty, false).await.unwrap();
        tree.stage(&temp.path().join("bare"), None, None).unwrap();
        assert_eq!(fs::read_dir(temp.path().join("bare")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn reports_every_missing_blob_together() {
        let store = memory_store();
        let absent_file = Digest::of(b"never uploaded");
        let absent_dir = Digest::of(b"no such directory");
        let root = put_dir(
            &store,
            &Directory { files: vec![file("f", absent_file, false)], directories: vec![dir("d", absent_dir)], ..Default::default() },
        )
        .await;
        match InputTree::fetch(&store, root, false).await {
            Err(RunnerError::MissingBlobs(mut missing)) => {
                missing.sort();
                let mut expected = vec![absent_file, absent_dir];
                expected.sort();
                assert_eq!(missing, expected);
            }
            other => panic!("expected MissingBlobs, got {other:?}"),
        }
        let missing_root = Digest::of(b"no root");
        assert!(matches!(InputTree::fetch(&store, missing_root, false).await, Err(RunnerError::MissingBlobs(d)) if d == vec![missing_root]));
    }
}
