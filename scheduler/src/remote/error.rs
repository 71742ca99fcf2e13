//! [`RemoteError`]: every way a conversation with a REAPI server can fail,
//! classified once.
//!
//! Key decision: the retry policy of the whole scheduler asks one question,
//! [`RemoteError::is_retryable`]. Transport trouble (UNAVAILABLE, a lost
//! operation stream, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, a connection that
//! could not be made) is retryable; everything else, and in particular a
//! command that ran and exited non-zero (which is not an error of this module
//! at all but a successful `ActionResult`), is not.

use weir_proto::{Digest, DigestError};

/// A failure talking to a remote REAPI server.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The endpoint URL is not `grpc://HOST:PORT`, `grpcs://HOST:PORT`, `http://` or `https://`.
    #[error("invalid remote URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file the endpoint configuration names (a CA certificate) could not be read.
    #[error("cannot read {path}: {source}")]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The connection to the endpoint could not be made.
    #[error("cannot connect to {url}: {source}")]
    Connect {
        /// The endpoint URL.
        url: String,
        /// The transport error.
        source: tonic::transport::Error,
    },
    /// The embedded worker (no remote configured) could not start.
    #[error("cannot start the embedded worker in {root}: {reason}")]
    Embedded {
        /// Its root directory (the cache directory).
        root: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// An RPC returned a non-OK status.
    #[error("{rpc} failed: {code:?}: {message}")]
    Rpc {
        /// The RPC (`FindMissingBlobs`, `Execute`, ...).
        rpc: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// The operation stream of an `Execute`/`WaitExecution` ended before the
    /// operation was done, more often than the client is willing to reconnect.
    #[error("lost the stream of operation {operation:?}")]
    StreamLost {
        /// The operation name, if the server had sent one.
        operation: String,
    },
    /// The server sent a blob whose content does not match its digest.
    #[error("blob {expected} received from the server has digest {actual}")]
    Corrupt {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// The server does not have a blob that the client needs.
    #[error("blob {0} is missing from the remote CAS")]
    MissingBlob(Digest),
    /// The server sent a digest that is not a valid SHA-256 digest.
    #[error("invalid digest from the server: {0}")]
    Digest(#[from] DigestError),
    /// The server sent something that is not what the protocol allows.
    #[error("unexpected answer to {rpc}: {reason}")]
    Protocol {
        /// The RPC.
        rpc: &'static str,
        /// What is wrong with the answer.
        reason: String,
    },
    /// A local file that is to be uploaded could not be read.
    #[error("cannot read {path} for upload: {source}")]
    LocalFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl RemoteError {
    /// An RPC failure from a tonic status.
    pub fn rpc(rpc: &'static str, status: tonic::Status) -> Self {
        RemoteError::Rpc { rpc, code: status.code(), message: status.message().to_string() }
    }

    /// An RPC failure from a `google.rpc.Status` carried inside a response.
    pub fn from_rpc_status(rpc: &'static str, status: &weir_proto::rpc::Status) -> Self {
        RemoteError::Rpc { rpc, code: tonic::Code::from_i32(status.code), message: status.message.clone() }
    }

    /// The gRPC code of an RPC failure, if this is one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            RemoteError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether trying again (possibly on another endpoint) may succeed.
    ///
    /// Transient: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED,
    /// a lost operation stream and a failed connection. Never a bad request,
    /// a corrupt blob or a missing blob (those need a different request).
    pub fn is_retryable(&self) -> bool {
        match self {
            RemoteError::Rpc { code, .. } => matches!(
                code,
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
            ),
            RemoteError::StreamLost { .. } | RemoteError::Connect { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes_are_retryable_and_others_are_not() {
        for code in [tonic::Code::Unavailable, tonic::Code::DeadlineExceeded, tonic::Code::ResourceExhausted] {
            assert!(RemoteError::rpc("Execute", tonic::Status::new(code, "x")).is_retryable(), "{code:?}");
        }
        for code in [tonic::Code::InvalidArgument, tonic::Code::FailedPrecondition, tonic::Code::NotFound] {
            assert!(!RemoteError::rpc("Execute", tonic::Status::new(code, "x")).is_retryable(), "{code:?}");
        }
        assert!(RemoteError::StreamLost { operation: "op".into() }.is_retryable());
        assert!(!RemoteError::MissingBlob(Digest::empty()).is_retryable());
    }

    #[test]
    fn status_inside_a_response_keeps_its_code() {
        let status = weir_proto::rpc::Status { code: tonic::Code::Unavailable as i32, message: "gone".into(), details: vec![] };
        let err = RemoteError::from_rpc_status("BatchUpdateBlobs", &status);
        assert_eq!(err.code(), Some(tonic::Code::Unavailable));
        assert!(err.is_retryable());
    }
}
