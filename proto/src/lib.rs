//! Everything Weir's scheduler and worker must agree on byte for byte.
//!
//! * [`reapi`], [`asset`], [`bytestream`], [`longrunning`], [`rpc`]: the
//!   Remote Execution API v2, Remote Asset v1, ByteStream, long-running
//!   operations and `google.rpc.Status` types with their tonic client and
//!   server stubs, re-exported from the pre-generated `bazel-remote-apis`
//!   crate (no protoc is needed to build Weir).
//! * [`Digest`]: a validated SHA-256 digest; the only digest type that gets
//!   past a wire boundary.
//! * [`merkle`]: the canonical Merkle tree builder (disk or in-memory tree →
//!   `Directory` protos, BuildStream/buildbox-casd compatible digests).
//! * [`name`]: the rule for entry names (one ordinary path segment).
//! * [`directory`] and [`tree`]: validation of `Directory` and `Tree`
//!   messages received from the wire.
//! * [`resource_name`]: ByteStream resource names (parse and format).
//! * [`write_chunk`]: a ByteStream `WriteRequest` decoded and encoded without copying its data.
//!
//! Validation lives here: anything parsed from the wire or from disk is checked
//! once, and the checked value is what the rest of the code handles.
#![deny(missing_docs)]

pub mod digest;
pub mod directory;
pub mod merkle;
pub mod name;
pub mod resource_name;
pub mod tree;
pub mod write_chunk;

pub use digest::{Digest, DigestError};

/// REAPI v2 (`build.bazel.remote.execution.v2`).
pub use bazel_remote_apis::build::bazel::remote::execution::v2 as reapi;
/// Remote Asset API v1 (`build.bazel.remote.asset.v1`).
pub use bazel_remote_apis::build::bazel::remote::asset::v1 as asset;
/// Semantic versions used by `Capabilities`.
pub use bazel_remote_apis::build::bazel::semver;
/// ByteStream (`google.bytestream`).
pub use bazel_remote_apis::google::bytestream;
/// Long-running operations (`google.longrunning`).
pub use bazel_remote_apis::google::longrunning;
/// `google.rpc.Status` and codes.
pub use bazel_remote_apis::google::rpc;
/// Well-known protobuf types (`Any`, `Duration`, `Timestamp`, ...).
pub use bazel_remote_apis::google::protobuf;
