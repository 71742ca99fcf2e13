//! Weir's worker: a complete single-node Remote Execution API v2 server (CAS,
//! Action Cache, ByteStream, Capabilities, Execution, Remote Asset) that runs
//! actions in a sandbox.
//!
//! | module | owns |
//! |---|---|
//! | [`store`] | the [`store::BlobStore`] trait and its implementations and decorators |
//! | [`cache`] | the Action Cache and Remote Asset index on an embedded transactional store |
//! | [`execution`] | operations, the queue keyed by platform properties, deduplication, cancellation |
//! | [`runner`] | staging an input root, running a command in a sandbox, collecting outputs |
//! | [`server`] | the tonic services, auth, TLS, instance names, metrics, configuration |
//!
//! One binary serves every role; the configuration decides which services run.

pub mod cache;
pub mod execution;
pub mod runner;
pub mod server;
pub mod store;
