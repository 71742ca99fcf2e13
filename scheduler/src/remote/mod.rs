//! The REAPI client: CAS upload and download in batches, Execute with
//! operation streaming and WaitExecution, the Action Cache and Remote Asset
//! (with the Action Cache standing in for servers without it),
//! over channels with TLS, bearer tokens and instance names.
//!
//! This module knows the wire protocol and nothing about elements: the
//! `build` module decides what to upload and run. Key decision: failures are
//! classified once, in [`RemoteError::is_retryable`], and the retry policy
//! lives with the build queue, not here (except resuming a lost operation
//! stream, which is part of following one `Execute`). With no remote
//! configured, [`EmbeddedWorker`] runs a worker in-process and is reached the
//! same way, over loopback.

mod action_cache;
mod asset;
mod blob_index;
mod cas;
mod client;
mod embedded;
mod endpoint;
mod error;
mod execution;
mod user_config;
#[cfg(test)]
pub(crate) mod fake_server;

pub use action_cache::ActionCache;
pub use asset::{References, RemoteAsset};
pub use blob_index::{BlobIndex, IndexStore};
pub use cas::{Blob, BlobSet, Cas, DEFAULT_MAX_BATCH_BYTES, MAX_MESSAGE_BYTES};
pub use client::RemoteClient;
pub use embedded::{default_cache_dir, EmbeddedWorker};
pub use endpoint::{AuthChannel, BearerToken, EndpointSpec};
pub use error::RemoteError;
pub use execution::{pack_execute_response, Execution};
pub use user_config::RemoteConfig;
