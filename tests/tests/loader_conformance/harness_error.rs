//! Failures of the conformance harness itself (as opposed to a case failing):
//! unreadable manifest or lists, a workspace that cannot be prepared, a
//! process that cannot be started.
//!
//! Key decision: a harness error while preparing or running one case fails
//! only that case (its message becomes the case's difference); only errors
//! reading the manifest or the lists stop the whole run.

use std::path::PathBuf;

/// Something the harness could not do.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A YAML file did not match its schema.
    #[error("cannot parse {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_yaml_ng::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A plugin stub the case needs does not exist yet.
    #[error("plugin stub {path} does not exist (stubs are written by the loader work in tests/plugin-stubs/)")]
    MissingStub {
        /// Where the stub was looked for.
        path: PathBuf,
    },
    /// The `weir` process could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The executable.
        program: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The user configuration could not be serialised.
    #[error("cannot serialise the user configuration: {0}")]
    UserConfig(serde_yaml_ng::Error),
}
