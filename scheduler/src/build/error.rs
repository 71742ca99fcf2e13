//! [`BuildError`]: why building an element failed, and whether trying again
//! may help.
//!
//! Key decision: [`BuildError::is_retryable`] defers to
//! [`RemoteError::is_retryable`] for transport trouble; a command that ran
//! and failed ([`BuildError::CommandFailed`]) is never retryable.

use weir_proto::merkle::MerkleError;
use weir_proto::Digest;

use crate::remote::RemoteError;

/// A failure building one element (or setting the build up).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Talking to a remote failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The element's command ran and exited non-zero.
    #[error("{element}: command failed with exit code {exit_code}")]
    CommandFailed {
        /// The element.
        element: String,
        /// The exit code.
        exit_code: i32,
        /// The last lines of the command's output.
        log_tail: String,
        /// The full stdout and stderr in the CAS, when the server stored them.
        logs: Vec<Digest>,
    },
    /// The plan handed to the queue is inconsistent.
    #[error("invalid build plan: {0}")]
    Plan(String),
    /// An element's configuration cannot be turned into an action.
    #[error("{element}: {reason}")]
    Element {
        /// The element.
        element: String,
        /// What is wrong.
        reason: String,
    },
    /// The build stopped (`--on-error quit`, cancellation) before the
    /// element's action could start; the element counts as skipped.
    #[error("the build stopped before this element's action started")]
    Stopped,
    /// A warning that the element's project lists in `fatal-warnings`
    /// (overlapping or unstaged files), with BuildStream's message.
    #[error("{element}: {message}")]
    FatalWarning {
        /// The element being staged for.
        element: String,
        /// The warning token.
        token: String,
        /// `[token]: brief` and the detail lines.
        message: String,
    },
    /// A local source could not be read.
    #[error("{element}: cannot read source: {source}")]
    Source {
        /// The element.
        element: String,
        /// The Merkle builder's error.
        source: MerkleError,
    },
    /// A stored artifact record is unreadable.
    #[error("artifact {uri}: {reason}")]
    Artifact {
        /// The artifact URI.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No endpoint can run the element's platform.
    #[error("{element}: no execution endpoint for platform {platform} (do the remotes execute actions?)")]
    NoEndpoint {
        /// The element.
        element: String,
        /// The platform asked for, as `key=value,...`.
        platform: String,
    },
    /// Writing a checkout failed.
    #[error("cannot write {path}: {source}")]
    Checkout {
        /// The path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The build was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl BuildError {
    /// Whether trying the element again (perhaps elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            BuildError::Remote(error) => error.is_retryable(),
            _ => false,
        }
    }
}
