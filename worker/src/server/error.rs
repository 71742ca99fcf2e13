//! [`ServerError`]: every way a request can fail in the gRPC services, and
//! the one conversion to `tonic::Status`.
//!
//! Key decision: handlers parse, call an inner function returning
//! `Result<_, ServerError>` and convert once; the gRPC code comes from the
//! error's origin ([`StoreError::code`], [`CacheError::code`]), so a bad
//! upload is `INVALID_ARGUMENT` while a corrupt stored blob is `INTERNAL`.

use weir_proto::resource_name::ResourceNameError;
use weir_proto::DigestError;

use crate::cache::CacheError;
use crate::store::StoreError;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A digest from the wire is malformed.
    #[error("invalid digest: {0}")]
    Digest(#[from] DigestError),
    /// A ByteStream resource name is malformed.
    #[error("invalid resource name: {0}")]
    ResourceName(#[from] ResourceNameError),
    /// The request is malformed in another way.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The instance name is not served here.
    #[error("unknown instance name {0:?}")]
    UnknownInstance(String),
    /// What the request refers to does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request needs something that is not there (e.g. a pushed asset's blob).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A read range is outside the blob.
    #[error("{0}")]
    OutOfRange(String),
    /// The operation is not supported by this server.
    #[error("{0}")]
    Unimplemented(String),
    /// The resource is busy; retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// A storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An Action Cache or Remote Asset index failure.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl ServerError {
    /// The gRPC code a client sees.
    pub fn code(&self) -> tonic::Code {
        match self {
            ServerError::Digest(_)
            | ServerError::ResourceName(_)
            | ServerError::InvalidArgument(_)
            | ServerError::UnknownInstance(_) => tonic::Code::InvalidArgument,
            ServerError::NotFound(_) => tonic::Code::NotFound,
            ServerError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            ServerError::OutOfRange(_) => tonic::Code::OutOfRange,
            ServerError::Unimplemented(_) => tonic::Code::Unimplemented,
            ServerError::Unavailable(_) => tonic::Code::Unavailable,
            ServerError::Store(err) => err.code(),
            ServerError::Cache(err) => err.code(),
        }
    }

    /// A `google.rpc.Status` for per-entry results of batch calls.
    pub fn to_rpc_status(&self) -> weir_proto::rpc::Status {
        weir_proto::rpc::Status { code: self.code() as i32, message: self.to_string(), details: vec![] }
    }
}

impl From<ServerError> for tonic::Status {
    fn from(err: ServerError) -> Self {
        if err.code() == tonic::Code::Internal {
            tracing::error!(%err, "request failed");
        }
        tonic::Status::new(err.code(), err.to_string())
    }
}

/// A `google.rpc.Status` saying OK.
pub fn ok_status() -> weir_proto::rpc::Status {
    weir_proto::rpc::Status { code: 0, message: String::new(), details: vec![] }
}
