//! [`FetchError`]: why fetching or staging a `tar`/`remote` source failed,
//! and [`ArchiveError`], why an archive could not be unpacked.
//!
//! Key decision: every [`FetchError`] names the source it is about through a
//! [`SourceRef`] (element, position, kind and the `.bst` provenance) and,
//! where one is involved, the URL; [`FetchError::reason`] gives the
//! machine-readable reason (BuildStream's names where it has one).

use std::fmt;
use std::path::PathBuf;

/// The source a failure is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    /// The element's full name.
    pub element: String,
    /// The source's position in the element's `sources` list, from 0.
    pub index: usize,
    /// The source kind (`tar`, `remote`).
    pub kind: String,
    /// Where the source is declared (`file [line L column C]`).
    pub provenance: String,
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} source #{} ({})", self.element, self.kind, self.index + 1, self.provenance)
    }
}

/// A failure of the fetch step.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The source's configuration cannot be fetched (no `url`, no or a
    /// malformed `ref`, a `filename` with a `/`, ...).
    #[error("{at}: {reason}")]
    Config {
        /// The source.
        at: Box<SourceRef>,
        /// What is wrong.
        reason: String,
        /// The machine-readable reason.
        code: &'static str,
    },
    /// The URL names an alias its project does not declare.
    #[error("{at}: URL '{url}' uses alias '{alias}', which project '{project}' does not declare")]
    InvalidAlias {
        /// The source.
        at: Box<SourceRef>,
        /// The URL as written.
        url: String,
        /// The alias.
        alias: String,
        /// The project the element belongs to.
        project: String,
    },
    /// Downloading failed (unreachable server, HTTP error, short read, ...).
    #[error("{at}: downloading {url} failed: {reason}")]
    Download {
        /// The source.
        at: Box<SourceRef>,
        /// The URL downloaded (aliases resolved).
        url: String,
        /// Why.
        reason: String,
    },
    /// The downloaded file is not the one the `ref` names; nothing was cached.
    #[error("{at}: file downloaded from {url} has sha256sum {actual}, not {expected}")]
    Checksum {
        /// The source.
        at: Box<SourceRef>,
        /// The URL downloaded (aliases resolved).
        url: String,
        /// The `ref`.
        expected: String,
        /// The sha256 of what was downloaded.
        actual: String,
    },
    /// The downloaded file could not be staged (a bad or hostile archive).
    #[error("{at}: cannot stage the file from {url}: {source}")]
    Archive {
        /// The source.
        at: Box<SourceRef>,
        /// The URL the file came from (aliases resolved).
        url: String,
        /// Why.
        source: ArchiveError,
    },
    /// The local source cache could not be read or written.
    #[error("source cache {}: {source}", path.display())]
    Cache {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl FetchError {
    /// The machine-readable reason, as `weir build` reports it.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Config { code, .. } => code,
            FetchError::InvalidAlias { .. } => "INVALID_SOURCE_ALIAS",
            FetchError::Download { .. } => "DOWNLOAD_FAILED",
            FetchError::Checksum { .. } => "CHECKSUM_MISMATCH",
            FetchError::Archive { .. } => "STAGE_FAILED",
            FetchError::Cache { .. } => "SOURCE_CACHE",
        }
    }

    /// The source the failure is about, if it is about one.
    pub fn source_ref(&self) -> Option<&SourceRef> {
        match self {
            FetchError::Config { at, .. }
            | FetchError::InvalidAlias { at, .. }
            | FetchError::Download { at, .. }
            | FetchError::Checksum { at, .. }
            | FetchError::Archive { at, .. } => Some(at.as_ref()),
            FetchError::Cache { .. } => None,
        }
    }
}

/// Why an archive (or a downloaded file) could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A member would land outside the staging directory (`..`, an absolute
    /// path, or a path through a symlink that leaves the directory).
    #[error("archive member '{member}' would be written outside the staging directory")]
    Escape {
        /// The member's name as stored in the archive.
        member: String,
    },
    /// A hard link points outside the staging directory or to no file
    /// extracted before it.
    #[error("hard link '{member}' -> '{target}': {reason}")]
    HardLink {
        /// The link's name as stored.
        member: String,
        /// The link target as stored.
        target: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A member name is not UTF-8 (CAS names are strings).
    #[error("archive member name {0:?} is not UTF-8")]
    NotUtf8(String),
    /// No directory of the archive matches `base-dir`.
    #[error("could not find base directory matching pattern: {0}")]
    BaseDirNotFound(String),
    /// A compression weir cannot read (`.lz` needs lzip).
    #[error("unsupported compression: {0}")]
    Unsupported(String),
    /// Reading the archive or writing the staged tree failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
