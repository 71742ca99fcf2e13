//! [`TarUnpacker`]: a downloaded `tar` archive unpacked into a staging
//! directory as BuildStream's `tar` source stages it.
//!
//! Key decisions: the compression is recognised by its magic bytes (gzip,
//! xz, bzip2, or none), as Python's `tarfile.open` does, so the URL's
//! extension does not matter; `.lz` (lzip, which BuildStream runs as a host
//! tool) is refused with a clear error. The archive is read as a stream,
//! once to list its directories for [`BaseDir`], once to extract, and once
//! more only if a hard link points at a file outside the base directory
//! (its content is then copied from the archive, as Python's tarfile does).
//! Device nodes and FIFOs are skipped; every write goes through
//! [`StagingDir`], which keeps it inside.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use tar::EntryType;

use super::base_dir::{BaseDir, MemberName};
use super::staging_dir::StagingDir;
use super::ArchiveError;

/// What unpacking did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Regular files written (hard links included).
    pub files: usize,
    /// Members outside the base directory, device nodes and FIFOs.
    pub skipped: usize,
}

/// A hard link whose target was not written: its content comes from the
/// archive member of that name before it, its mode from the link member.
struct PendingLink {
    member: String,
    path: String,
    target: String,
    position: usize,
    executable: bool,
    done: bool,
}

/// Unpacks one archive file.
#[derive(Debug, Clone)]
pub struct TarUnpacker {
    archive: PathBuf,
}

impl TarUnpacker {
    /// An unpacker for the archive at `archive`.
    pub fn new(archive: &Path) -> TarUnpacker {
        TarUnpacker { archive: archive.to_path_buf() }
    }

    /// Unpacks the part of the archive `base_dir` selects into `dest`
    /// (an existing, empty directory).
    pub fn unpack(&self, base_dir: &str, dest: &Path) -> Result<UnpackStats, ArchiveError> {
        let base = self.find_base_dir(base_dir)?;
        let mut staging = StagingDir::new(dest);
        let mut stats = UnpackStats::default();
        let mut pending: Vec<PendingLink> = Vec::new();
        let mut archive = tar::Archive::new(self.open()?);
        for (position, entry) in archive.entries()?.enumerate() {
            let mut entry = entry?;
            let stored = utf8(&entry.path_bytes())?;
            let kind = entry.header().entry_type();
            let is_dir = kind.is_dir() || (kind.is_file() && stored.ends_with('/'));
            let Some(name) = base.rewrite(if is_dir { stored.trim_end_matches('/') } else { &stored }).map(str::to_string) else {
                stats.skipped += 1;
                continue;
            };
            let executable = entry.header().mode().map(|mode| mode & 0o100 != 0).unwrap_or(false);
            match kind {
                _ if is_dir => staging.create_dir(&name)?,
                EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                    staging.write_file(&name, &mut entry, executable)?;
                    stats.files += 1;
                }
                EntryType::Symlink => {
                    let target = entry.link_name_bytes().map(|t| utf8(&t)).transpose()?.unwrap_or_default();
                    staging.symlink(&name, &target)?;
                }
                EntryType::Link => {
                    let stored_target = entry.link_name_bytes().map(|t| utf8(&t)).transpose()?.unwrap_or_default();
                    let target = base.rewrite_link(&stored_target).to_string();
                    if !staging.hard_link(&name, &target, executable)? {
                        let path = staging.resolve(&name, false)?;
                        let target = normalize(&stored_target);
                        pending.push(PendingLink { member: name, path, target, position, executable, done: false });
                    }
                    stats.files += 1;
                }
                // Device nodes, FIFOs, global PAX headers and unknown types.
                _ => stats.skipped += 1,
            }
        }
        if !pending.is_empty() {
            self.copy_link_targets(&mut staging, &mut pending)?;
        }
        Ok(stats)
    }

    /// `base-dir` resolved against the archive's directories.
    fn find_base_dir(&self, pattern: &str) -> Result<BaseDir, ArchiveError> {
        if pattern.is_empty() {
            return Ok(BaseDir::whole());
        }
        let mut members: Vec<(String, bool)> = Vec::new();
        let mut archive = tar::Archive::new(self.open()?);
        for entry in archive.entries()? {
            let entry = entry?;
            let name = utf8(&entry.path_bytes())?;
            let kind = entry.header().entry_type();
            let is_dir = kind.is_dir() || (kind.is_file() && name.ends_with('/'));
            let name = if is_dir { name.trim_end_matches('/').to_string() } else { name };
            members.push((name, is_dir));
        }
        BaseDir::find(pattern, members.iter().map(|(name, is_dir)| MemberName { name, is_dir: *is_dir }))
            .map_err(ArchiveError::BaseDirNotFound)
    }

    /// Fills hard links whose target was not extracted with the content of
    /// the last regular member of that name before them.
    fn copy_link_targets(&self, staging: &mut StagingDir, pending: &mut [PendingLink]) -> Result<(), ArchiveError> {
        let mut archive = tar::Archive::new(self.open()?);
        for (position, entry) in archive.entries()?.enumerate() {
            let mut entry = entry?;
            if !matches!(entry.header().entry_type(), EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse) {
                continue;
            }
            let name = normalize(&utf8(&entry.path_bytes())?);
            let waiting: Vec<usize> =
                pending.iter().enumerate().filter(|(_, p)| p.target == name && position < p.position).map(|(i, _)| i).collect();
            if waiting.is_empty() {
                continue;
            }
            let mut content = Vec::new();
            entry.read_to_end(&mut content)?;
            for i in waiting {
                staging.write_file(&pending[i].path, &mut &content[..], pending[i].executable)?;
                pending[i].done = true;
            }
        }
        match pending.iter().find(|p| !p.done) {
            Some(link) => Err(ArchiveError::HardLink {
                member: link.member.clone(),
                target: link.target.clone(),
                reason: "its target is not a file stored before it in the archive",
            }),
            None => Ok(()),
        }
    }

    /// The archive's decompressed byte stream.
    fn open(&self) -> Result<Box<dyn Read>, ArchiveError> {
        let mut reader = BufReader::new(File::open(&self.archive)?);
        let magic = reader.fill_buf()?.to_vec();
        Ok(match Compression::detect(&magic) {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(reader)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(reader)),
            Compression::None => Box::new(reader),
            Compression::Lzip => return Err(ArchiveError::Unsupported("lzip (.lz) archives need the lzip tool, which weir does not run".into())),
            Compression::Zstd => return Err(ArchiveError::Unsupported("zstd archives (BuildStream's tar source does not read them either)".into())),
        })
    }
}

/// A compression format, by magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `1f 8b`.
    Gzip,
    /// `fd 37 7a 58 5a 00`.
    Xz,
    /// `BZh`.
    Bzip2,
    /// `LZIP`.
    Lzip,
    /// `28 b5 2f fd`.
    Zstd,
    /// Anything else: read as a plain tar stream.
    None,
}

impl Compression {
    /// The compression of a stream starting with `magic`.
    pub fn detect(magic: &[u8]) -> Compression {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if magic.starts_with(b"BZh") {
            Compression::Bzip2
        } else if magic.starts_with(b"LZIP") {
            Compression::Lzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// A member name as text.
fn utf8(bytes: &[u8]) -> Result<String, ArchiveError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ArchiveError::NotUtf8(String::from_utf8_lossy(bytes).into_owned()))
}

/// A name without `./` prefixes, `.` segments, doubled or trailing slashes
/// (the comparison tarfile's `normpath` makes when finding a link target).
fn normalize(name: &str) -> String {
    name.split('/').filter(|s| !s.is_empty() && *s != ".").collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;

    use super::*;

    /// One member of a test archive.
    enum Member<'a> {
        Dir(&'a str),
        File(&'a str, &'a [u8], u32),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
        Fifo(&'a str),
    }

    /// A plain tar archive of `members`, written raw (names are not sanitised,
    /// so hostile names can be tested).
    fn archive(members: &[Member]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for member in members {
            let mut header = tar::Header::new_gnu();
            let (name, kind, data, mode, link): (&str, EntryType, &[u8], u32, Option<&str>) = match member {
                Member::Dir(n) => (n, EntryType::Directory, b"", 0o755, None),
                Member::File(n, d, m) => (n, EntryType::Regular, d, *m, None),
                Member::Symlink(n, t) => (n, EntryType::Symlink, b"", 0o777, Some(t)),
                Member::HardLink(n, t) => (n, EntryType::Link, b"", 0o644, Some(t)),
                Member::Fifo(n) => (n, EntryType::Fifo, b"", 0o644, None),
            };
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_size(data.len() as u64);
            // Raw name bytes: `set_path` would refuse `..`.
            let bytes = &mut header.as_old_mut().name;
            bytes[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                let bytes = &mut header.as_old_mut().linkname;
                bytes[..link.len()].copy_from_slice(link.as_bytes());
            }
            header.set_cksum();
            builder.append(&header, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn unpack(bytes: &[u8], base_dir: &str) -> (tempfile::TempDir, Result<UnpackStats, ArchiveError>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("archive");
        fs::write(&path, bytes).unwrap();
        let dest = dir.path().join("out");
        fs::create_dir(&dest).unwrap();
        let result = TarUnpacker::new(&path).unpack(base_dir, &dest);
        (dir, result)
    }

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(dir).unwrap() {
                let entry = entry.unwrap();
                let rel = entry.path().strip_prefix(root).unwrap().display().to_string();
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                    out.push(format!("{rel}/"));
                } else {
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn strips_the_base_directory_and_keeps_links_and_exec_bits() {
        let bytes = archive(&[
            Member::Dir("foo-1.0/"),
            Member::File("foo-1.0/configure", b"#!/bin/sh\n", 0o755),
            Member::File("foo-1.0/src/main.c", b"int main;", 0o600),
            Member::Symlink("foo-1.0/abs", "/tmp/foo"),
            Member::HardLink("foo-1.0/copy.c", "foo-1.0/src/main.c"),
            Member::Fifo("foo-1.0/pipe"),
        ]);
        let (dir, result) = unpack(&bytes, "*");
        let stats = result.unwrap();
        let out = dir.path().join("out");
        assert_eq!(listing(&out), ["abs", "configure", "copy.c", "src/", "src/main.c"]);
        assert_eq!(stats, UnpackStats { files: 3, skipped: 2 }, "the base directory entry and the FIFO are skipped");
        assert_eq!(fs::read(out.join("copy.c")).unwrap(), b"int main;");
        assert_eq!(fs::read_link(out.join("abs")).unwrap(), Path::new("/tmp/foo"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(out.join("configure")).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::metadata(out.join("src/main.c")).unwrap().permissions().mode() & 0o777, 0o644);
        // The same archive with base-dir '' is staged whole.
        let (dir, result) = unpack(&bytes, "");
        result.unwrap();
        assert!(dir.path().join("out/foo-1.0/src/main.c").is_file());
    }

    #[test]
    fn every_compression_is_recognised_by_its_magic() {
        let bytes = archive(&[Member::File("d/hello.txt", b"hello", 0o644)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&bytes).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&bytes).unwrap();
        for (what, data) in [("plain", bytes.clone()), ("gzip", gz.finish().unwrap()), ("xz", xz.finish().unwrap()), ("bzip2", bz.finish().unwrap())] {
            let (dir, result) = unpack(&data, "*");
            result.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(fs::read(dir.path().join("out/hello.txt")).unwrap(), b"hello", "{what}");
        }
        let (_dir, result) = unpack(b"LZIP\x01rest", "*");
        assert!(matches!(result, Err(ArchiveError::Unsupported(_))));
    }

    #[test]
    fn hostile_members_are_refused_and_nothing_lands_outside() {
        for members in [
            vec![Member::Dir("d/"), Member::File("../escape", b"x", 0o644)],
            vec![Member::Dir("d/"), Member::File("/tmp/weir-absolute-escape", b"x", 0o644)],
            vec![Member::Symlink("link", ".."), Member::File("link/escape", b"x", 0o644)],
            vec![Member::Symlink("link", "/tmp"), Member::File("link/weir-symlink-escape", b"x", 0o644)],
        ] {
            let (dir, result) = unpack(&archive(&members), "");
            assert!(matches!(result, Err(ArchiveError::Escape { .. })), "{result:?}");
            assert!(!dir.path().join("escape").exists());
        }
        assert!(!Path::new("/tmp/weir-absolute-escape").exists());
        assert!(!Path::new("/tmp/weir-symlink-escape").exists());
        let (_dir, result) = unpack(&archive(&[Member::Dir("d/"), Member::HardLink("d/evil", "../../../target")]), "*");
        assert!(matches!(result, Err(ArchiveError::HardLink { .. })), "{result:?}");
    }

    #[test]
    fn hard_links_outside_the_base_directory_copy_the_archived_file() {
        let bytes = archive(&[
            Member::File("elsewhere/a", b"shared", 0o755),
            Member::Dir("to_extract/"),
            Member::HardLink("to_extract/a", "elsewhere/a"),
        ]);
        let (dir, result) = unpack(&bytes, "to_extract");
        result.unwrap();
        let out = dir.path().join("out");
        assert_eq!(listing(&out), ["a"]);
        assert_eq!(fs::read(out.join("a")).unwrap(), b"shared");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(out.join("a")).unwrap().permissions().mode() & 0o777, 0o644, "the link member's mode, not the file's");
        // A link to a file the archive never had is an error.
        let (_dir, result) = unpack(&archive(&[Member::Dir("x/"), Member::HardLink("x/a", "nowhere")]), "x");
        assert!(matches!(result, Err(ArchiveError::HardLink { .. })), "{result:?}");
    }

    #[test]
    fn a_base_dir_that_matches_nothing_is_an_error() {
        let (_dir, result) = unpack(&archive(&[Member::File("README", b"r", 0o644)]), "*");
        assert!(matches!(result, Err(ArchiveError::BaseDirNotFound(p)) if p == "*"));
    }
}
