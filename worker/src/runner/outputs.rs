//! What an action produces: [`OutputSpec`] (the outputs a `Command` asks
//! for, validated and resolved against its working directory), the parent
//! directories created before the run, and the collection afterwards of
//! files (with their executable bit), directories (as `Tree` protos, built by
//! [`weir_proto::merkle::MerkleTree`]) and symlinks into a [`Collected`]
//! set that [`Collected::upload`] sends to the CAS.
//!
//! Key decision: the runner walks output paths itself, component by
//! component, without following symlinks, so that neither the parent
//! directories it creates nor the files it collects can be redirected out of
//! the action's directory by a symlink the command (or the input tree) put in
//! the way. Both REAPI forms are served: v2.1 `output_paths` (any kind,
//! symlinks in `output_symlinks`) and the older `output_files` /
//! `output_directories` (symlinks in `output_file_symlinks` /
//! `output_directory_symlinks`).

// The pre-v2.1 output fields are deprecated in the proto but still used by
// BuildStream and older Bazel clients, which this module serves on purpose.
#![allow(deprecated)]

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use prost::Message;
use weir_proto::merkle::{MerkleError, MerkleTree};
use weir_proto::reapi::{ActionResult, Command, OutputDirectory, OutputFile, OutputSymlink};
use weir_proto::Digest;

use super::inode_pool::{create_dir, InodePool};
use super::RunnerError;
use crate::store::Store;

/// How many blobs are uploaded at once.
const UPLOAD_CONCURRENCY: usize = 16;

/// Output files up to this size are read during collection and stored with
/// the batch of small blobs.
const IN_MEMORY_OUTPUT_BYTES: u64 = 1 << 20;

/// What kind of output a path was declared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `output_paths`: whatever is there.
    Any,
    /// `output_files`.
    File,
    /// `output_directories`.
    Directory,
}

#[derive(Debug, Clone)]
struct Output {
    /// As given in the command (relative to the working directory).
    given: String,
    /// Normalised, relative to the input root (`""` is the root itself).
    resolved: String,
    kind: Kind,
}

/// The outputs of a command and its working directory, validated.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    working_dir: String,
    outputs: Vec<Output>,
}

impl OutputSpec {
    /// Validates the command's working directory and output paths: relative,
    /// and not climbing above the input root.
    pub fn from_command(command: &Command) -> Result<Self, RunnerError> {
        let working_dir = normalize("", &command.working_directory)
            .map_err(|reason| RunnerError::InvalidCommand(format!("working directory: {reason}")))?;
        let declared: Vec<(&String, Kind)> = if command.output_paths.is_empty() {
            command
                .output_files
                .iter()
                .map(|p| (p, Kind::File))
                .chain(command.output_directories.iter().map(|p| (p, Kind::Directory)))
                .collect()
        } else {
            command.output_paths.iter().map(|p| (p, Kind::Any)).collect()
        };
        let outputs = declared
            .into_iter()
            .map(|(given, kind)| {
                let resolved = normalize(&working_dir, given)
                    .map_err(|reason| RunnerError::InvalidCommand(format!("output path {given:?}: {reason}")))?;
                if resolved.is_empty() && kind == Kind::File {
                    return Err(RunnerError::InvalidCommand(format!("output file {given:?} names the input root")));
                }
                Ok(Output { given: given.clone(), resolved, kind })
            })
            .collect::<Result<_, RunnerError>>()?;
        Ok(OutputSpec { working_dir, outputs })
    }

    /// The working directory, normalised and relative to the input root.
    pub fn working_dir(&self) -> &str {
        &self.working_dir
    }

    /// Whether collecting the outputs would look at `path` (relative to the
    /// input root): some output is `path` or one of its ancestors.
    pub fn covers(&self, path: &str) -> bool {
        self.outputs.iter().any(|output| {
            output.resolved.is_empty()
                || path == output.resolved
                || path.strip_prefix(output.resolved.as_str()).is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Creates the working directory and the parent directory of every
    /// output inside the staged `root`. Blocking.
    pub fn prepare(&self, root: &Path, dirs: Option<&InodePool>) -> Result<(), RunnerError> {
        create_dirs(root, &self.working_dir, dirs)?;
        for output in &self.outputs {
            if let Some((parent, _)) = output.resolved.rsplit_once('/') {
                create_dirs(root, parent, dirs)?;
            }
        }
        Ok(())
    }

    /// Collects the outputs present under `root` after the run, and what
    /// the command wrote to `stdout` and `stderr` (read from their start).
    /// Blocking.
    pub fn collect(&self, root: &Path, stdout: &fs::File, stderr: &fs::File) -> Result<Collected, RunnerError> {
        let mut collected = Collected::default();
        collected.result.stdout_digest = Some(collected.add_whole(stdout, "the command's stdout")?.to_proto());
        collected.result.stderr_digest = Some(collected.add_whole(stderr, "the command's stderr")?.to_proto());
        for output in &self.outputs {
            collected.collect(root, output)?;
        }
        let result = &mut collected.result;
        result.output_files.sort_by(|a, b| a.path.cmp(&b.path));
        result.output_directories.sort_by(|a, b| a.path.cmp(&b.path));
        for symlinks in [&mut result.output_symlinks, &mut result.output_file_symlinks, &mut result.output_directory_symlinks] {
            symlinks.sort_by(|a, b| a.path.cmp(&b.path));
        }
        Ok(collected)
    }
}

/// A blob to upload.
#[derive(Debug)]
enum Upload {
    /// A file's content.
    Path(Digest, PathBuf),
    /// Encoded bytes (a `Tree` or `Directory`).
    Bytes(Digest, Bytes),
}

impl Upload {
    fn digest(&self) -> Digest {
        match self {
            Upload::Path(digest, _) | Upload::Bytes(digest, _) => *digest,
        }
    }
}

/// Outputs found after a run: the `ActionResult` describing them (without
/// exit code and metadata) and the blobs still to be uploaded.
#[derive(Debug, Default)]
pub struct Collected {
    result: ActionResult,
    uploads: Vec<Upload>,
}

impl Collected {
    /// Uploads the blobs the CAS does not hold yet and returns the result:
    /// the blobs held in memory in one batch (one trip to the filesystem
    /// store's blocking pool), larger files one by one.
    pub async fn upload(self, store: &Store) -> Result<ActionResult, RunnerError> {
        let mut seen = HashSet::new();
        let uploads: Vec<Upload> = self.uploads.into_iter().filter(|u| seen.insert(u.digest())).collect();
        let digests: Vec<Digest> = uploads.iter().map(Upload::digest).collect();
        let missing: HashSet<Digest> = store.find_missing(&digests).await?.into_iter().collect();
        let (in_memory, files): (Vec<Upload>, Vec<Upload>) =
            uploads.into_iter().filter(|u| missing.contains(&u.digest())).partition(|u| matches!(u, Upload::Bytes(..)));
        let batch: Vec<(Digest, Bytes)> = in_memory
            .into_iter()
            .filter_map(|upload| match upload {
                Upload::Bytes(digest, data) => Some((digest, data)),
                Upload::Path(..) => None,
            })
            .collect();
        for written in store.write_batch(batch).await {
            written?;
        }
        stream::iter(files)
            .map(|upload| async move {
                let (digest, data) = match upload {
                    Upload::Bytes(digest, data) => (digest, data),
                    Upload::Path(digest, path) => {
                        let data = tokio::fs::read(&path)
                            .await
                            .map_err(|e| RunnerError::io(format!("reading output {}", path.display()), e))?;
                        (digest, Bytes::from(data))
                    }
                };
                store.write(&digest, data).await.map_err(RunnerError::from)
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(self.result)
    }

    /// Adds an output file: read whole when small (it is uploaded with the
    /// batch), else hashed and uploaded from its path.
    fn add_file(&mut self, path: PathBuf) -> Result<Digest, RunnerError> {
        let reading = |e| RunnerError::io(format!("reading {}", path.display()), e);
        let file = fs::File::open(&path).map_err(reading)?;
        if file.metadata().map_err(reading)?.len() <= IN_MEMORY_OUTPUT_BYTES {
            return self.add_whole(&file, &path.display().to_string());
        }
        let digest = Digest::of_reader(file).map_err(reading)?;
        self.uploads.push(Upload::Path(digest, path));
        Ok(digest)
    }

    /// Adds the whole content of `file` (read from its start), called `name`
    /// in errors.
    fn add_whole(&mut self, file: &fs::File, name: &str) -> Result<Digest, RunnerError> {
        let mut content = Vec::new();
        let mut reader = file;
        reader
            .seek(io::SeekFrom::Start(0))
            .and_then(|_| reader.read_to_end(&mut content))
            .map_err(|e| RunnerError::io(format!("reading {name}"), e))?;
        Ok(self.add_bytes(content))
    }

    fn add_bytes(&mut self, bytes: Vec<u8>) -> Digest {
        let digest = Digest::of(&bytes);
        self.uploads.push(Upload::Bytes(digest, Bytes::from(bytes)));
        digest
    }

    fn collect(&mut self, root: &Path, output: &Output) -> Result<(), RunnerError> {
        let invalid = |reason: &str| RunnerError::InvalidOutput { path: output.given.clone(), reason: reason.into() };
        let Some(path) = resolve(root, &output.resolved).map_err(|reason| invalid(&reason))? else {
            return Ok(());
        };
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(RunnerError::io(format!("inspecting output {}", path.display()), e)),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(&path)
                .map_err(|e| RunnerError::io(format!("reading symlink {}", path.display()), e))?
                .into_os_string()
                .into_string()
                .map_err(|_| invalid("symlink target is not UTF-8"))?;
            let symlink = OutputSymlink { path: output.given.clone(), target, node_properties: None };
            match output.kind {
                Kind::Any => self.result.output_symlinks.push(symlink),
                Kind::File => self.result.output_file_symlinks.push(symlink),
                Kind::Directory => self.result.output_directory_symlinks.push(symlink),
            }
        } else if kind.is_file() {
            if output.kind == Kind::Directory {
                return Err(invalid("declared as an output directory but is a file"));
            }
            let digest = self.add_file(path)?;
            self.result.output_files.push(OutputFile {
                path: output.given.clone(),
                digest: Some(digest.to_proto()),
                is_executable: meta.permissions().mode() & 0o100 != 0,
                contents: Vec::new(),
                node_properties: None,
            });
        } else if kind.is_dir() {
            if output.kind == Kind::File {
                return Err(invalid("declared as an output file but is a directory"));
            }
            let tree = MerkleTree::from_dir(&path).map_err(|e| match e {
                MerkleError::Io { path, source } => RunnerError::io(format!("reading {}", path.display()), source),
                other => invalid(&other.to_string()),
            })?;
            for file in tree.files() {
                if let Some(source) = &file.path {
                    self.uploads.push(Upload::Path(file.digest, source.clone()));
                }
            }
            for directory in tree.directories() {
                self.uploads.push(Upload::Bytes(directory.digest, Bytes::from(directory.bytes.clone())));
            }
            let tree_digest = self.add_bytes(tree.to_tree().encode_to_vec());
            self.result.output_directories.push(OutputDirectory {
                path: output.given.clone(),
                tree_digest: Some(tree_digest.to_proto()),
                is_topologically_sorted: false,
                root_directory_digest: Some(tree.root_digest().to_proto()),
            });
        } else {
            return Err(invalid("is neither a file, a directory nor a symlink"));
        }
        Ok(())
    }
}

/// Normalises `path` (relative to `base`, itself normalised) into a path
/// relative to the root: no `.`, no empty segments, `..` resolved lexically
/// and never above the root.
fn normalize(base: &str, path: &str) -> Result<String, String> {
    if path.starts_with('/') {
        return Err("must be relative".into());
    }
    if path.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    let mut segments: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or_else(|| "climbs above the input root".to_string())?;
            }
            name => segments.push(name),
        }
    }
    Ok(segments.join("/"))
}

/// The path of `relative` under `root` if every parent component is a real
/// directory (`None` if one is missing); a symlink or a file on the way is
/// an error.
fn resolve(root: &Path, relative: &str) -> Result<Option<PathBuf>, String> {
    let mut path = root.to_path_buf();
    let mut segments = relative.split('/').filter(|s| !s.is_empty()).peekable();
    while let Some(segment) = segments.next() {
        path.push(segment);
        if segments.peek().is_none() {
            break;
        }
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => return Err(format!("parent {segment:?} is not a directory (symlinks are not followed)")),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(path))
}

/// `mkdir -p root/relative` without following symlinks.
fn create_dirs(root: &Path, relative: &str, dirs: Option<&InodePool>) -> Result<(), RunnerError> {
    let mut path = root.to_path_buf();
    for segment in relative.split('/').filter(|s| !s.is_empty()) {
        path.push(segment);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(RunnerError::InvalidOutput {
                    path: relative.to_owned(),
                    reason: format!("{segment:?} is in the way and is not a directory"),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dir(dirs, &path).map_err(|e| RunnerError::io(format!("creating {}", path.display()), e))?
            }
            Err(e) => return Err(RunnerError::io(format!("inspecting {}", path.display()), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_relative_paths_and_refuses_escapes() {
        assert_eq!(normalize("", "a/./b//c").unwrap(), "a/b/c");
        assert_eq!(normalize("w/x", "../out").unwrap(), "w/out");
        assert_eq!(normalize("w/x", "../..").unwrap(), "");
        assert!(normalize("w", "../..").is_err());
        assert!(normalize("", "/etc").is_err());
    }

    fn command(paths: &[&str], files: &[&str], dirs: &[&str], working_directory: &str) -> Command {
        Command {
            output_paths: paths.iter().map(|s| s.to_string()).collect(),
            output_files: files.iter().map(|s| s.to_string()).collect(),
            output_directories: dirs.iter().map(|s| s.to_string()).collect(),
            working_directory: working_directory.into(),
            ..Default::default()
        }
    }

    #[test]
    fn covers_a_path_under_an_output_only() {
        let spec = OutputSpec::from_command(&command(&[], &["out", "w/x"], &[], "")).unwrap();
        assert!(spec.covers("out") && spec.covers("out/proc") && spec.covers("w/x/y"));
        assert!(!spec.covers("proc") && !spec.covers("outer") && !spec.covers("w"));
    }

    #[test]
    fn collects_files_directories_and_symlinks() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        fs::create_dir(&root).unwrap();
        let spec = OutputSpec::from_command(&command(&["out/bin/tool", "out/lib", "out/link", "absent"], &[], &[], "w"))
            .unwrap();
        spec.prepare(&root, None).unwrap();
        assert!(root.join("w/out/bin").is_dir(), "parents of outputs are created");
        assert!(!root.join("w/out/lib").exists(), "outputs themselves are not");
        fs::write(root.join("w/out/bin/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("w/out/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::create_dir_all(root.join("w/out/lib/sub")).unwrap();
        fs::write(root.join("w/out/lib/sub/a.so"), b"elf").unwrap();
        std::os::unix::fs::symlink("bin/tool", root.join("w/out/link")).unwrap();
        fs::write(temp.path().join("stdout"), b"hello\n").unwrap();
        fs::write(temp.path().join("stderr"), b"").unwrap();

        let (stdout, stderr) = (fs::File::open(temp.path().join("stdout")).unwrap(), fs::File::open(temp.path().join("stderr")).unwrap());
        let collected = spec.collect(&root, &stdout, &stderr).unwrap();
        let result = &collected.result;
        assert_eq!(result.stdout_digest, Some(Digest::of(b"hello\n").to_proto()));
        assert_eq!(result.output_files.len(), 1);
        assert_eq!(result.output_files[0].path, "out/bin/tool");
        assert!(result.output_files[0].is_executable);
        assert_eq!(result.output_files[0].digest, Some(Digest::of(b"#!/bin/sh\n").to_proto()));
        assert_eq!(result.output_symlinks.len(), 1);
        assert_eq!(result.output_symlinks[0].target, "bin/tool");
        assert_eq!(result.output_directories.len(), 1);
        let tree_digest = result.output_directories[0].tree_digest.clone().unwrap();
        let tree_bytes = collected
            .uploads
            .iter()
            .find_map(|u| match u {
                Upload::Bytes(d, b) if d.to_proto() == tree_digest => Some(b.clone()),
                _ => None,
            })
            .expect("the tree is among the uploads");
        let tree = weir_proto::reapi::Tree::decode(tree_bytes).unwrap();
        let root_dir = tree.root.unwrap();
        assert_eq!(root_dir.directories[0].name, "sub");
        assert_eq!(tree.children[0].files[0].name, "a.so");
        assert!(collected.uploads.iter().any(|u| u.digest() == Digest::of(b"elf")));
    }

    #[test]
    fn legacy_fields_check_the_kind_and_report_symlinks_separately() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        fs::create_dir_all(root.join("d")).unwrap();
        let out = tempfile::tempfile().unwrap();
        let spec = OutputSpec::from_command(&command(&[], &["d"], &[], "")).unwrap();
        assert!(matches!(spec.collect(&root, &out, &out), Err(RunnerError::InvalidOutput { .. })));
        std::os::unix::fs::symlink("d", root.join("l")).unwrap();
        let spec = OutputSpec::from_command(&command(&[], &["l"], &["d"], "")).unwrap();
        let collected = spec.collect(&root, &out, &out).unwrap();
        assert_eq!(collected.result.output_file_symlinks.len(), 1);
        assert!(collected.result.output_symlinks.is_empty());
        assert_eq!(collected.result.output_directories.len(), 1);
    }

    #[test]
    fn never_follows_a_symlink_out_of_the_root() {
        let temp = tempfile::tempdir().unwrap();
        let outside = temp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), b"secret").unwrap();
        let root = temp.path().join("root");
        fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        let out = tempfile::tempfile().unwrap();
        let spec = OutputSpec::from_command(&command(&["escape/secret"], &[], &[], "")).unwrap();
        assert!(matches!(spec.collect(&root, &out, &out), Err(RunnerError::InvalidOutput { .. })));
        let spec = OutputSpec::from_command(&command(&["escape/new/file"], &[], &[], "")).unwrap();
        assert!(matches!(spec.prepare(&root, None), Err(RunnerError::InvalidOutput { .. })));
        assert!(!outside.join("new").exists(), "nothing was created outside the root");
        assert!(OutputSpec::from_command(&command(&["../x"], &[], &[], "")).is_err());
    }
}
