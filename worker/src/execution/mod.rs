//! Remote execution: the REAPI `Execution` service (`Execute`,
//! `WaitExecution`) and the `google.longrunning.Operations` service over
//! one [`Executor`], which owns operations, the queue keyed by platform
//! properties, in-flight deduplication, the Action Cache lookup and
//! write-back, timeouts and cancellation. Running an action (staging,
//! sandbox, outputs) is [`crate::runner`].
//!
//! # Constructing the services
//!
//! ```no_run
//! # async fn wire(store: weir_worker::store::Store, action_cache: weir_worker::cache::ActionCache)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! use weir_worker::execution::{ExecutionConfig, ExecutionServices};
//! use weir_worker::runner::{probe, RunnerConfig, SandboxKind};
//!
//! let runner = RunnerConfig::new(SandboxKind::Namespace, "/var/lib/weir/exec");
//! probe(runner.sandbox, std::path::Path::new("/var/lib/weir"))?; // refuse to start if it fails
//! let config = ExecutionConfig::new(vec![("OSFamily".into(), "linux".into()), ("ISA".into(), "x86-64".into())]);
//! let services = ExecutionServices::new(store, action_cache, runner, config)?;
//! tonic::transport::Server::builder()
//!     .add_service(services.execution_server())
//!     .add_service(services.operations_server());
//! // services.executor() gives queue depth, running actions and slots for metrics.
//! # Ok(()) }
//! ```
//!
//! Key decision: one [`Executor`] is shared by both services, so an operation
//! created by `Execute` can be watched, listed, cancelled and deleted through
//! `Operations`; each tonic method only parses, calls the executor and
//! converts [`ExecutionError`] to a `Status` once.

pub mod execution_service;
pub mod executor;
pub mod operation;
pub mod operations_service;
pub mod platform;

use std::time::Duration;

use weir_proto::longrunning::operations_server::OperationsServer;
use weir_proto::reapi::execution_server::ExecutionServer;

pub use execution_service::ExecutionService;
pub use executor::Executor;
pub use operation::{OperationEntry, OperationStream};
pub use operations_service::OperationsService;
pub use platform::{PlatformMatcher, RunOptions};

use crate::cache::{ActionCache, CacheError};
use crate::runner::{Runner, RunnerConfig, RunnerError};
use crate::store::{Store, StoreError};

/// Why an execution request failed before (or outside) a run.
#[derive(Debug, thiserror::Error)]
pub enum ExecutionError {
    /// The request is malformed (bad digest, undecodable `Action`, unknown
    /// platform property, timeout above the maximum).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The request is well formed but cannot run here (unserved platform).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// No operation has that name.
    #[error("no operation named {0:?}")]
    NotFound(String),
    /// The runner could not be set up.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// The CAS failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Action Cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl ExecutionError {
    /// The gRPC code a client sees.
    pub fn code(&self) -> tonic::Code {
        match self {
            ExecutionError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            ExecutionError::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            ExecutionError::NotFound(_) => tonic::Code::NotFound,
            ExecutionError::Runner(e) => e.code(),
            ExecutionError::Store(e) => e.code(),
            ExecutionError::Cache(e) => e.code(),
        }
    }
}

impl From<ExecutionError> for tonic::Status {
    fn from(error: ExecutionError) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}

/// How the executor schedules actions.
#[derive(Debug, Clone)]
pub struct ExecutionConfig {
    /// Platform properties this worker serves (`name`, `value`), e.g.
    /// `OSFamily=linux`, `ISA=x86-64`.
    pub platform: Vec<(String, String)>,
    /// How many actions run at once (default: the number of CPUs).
    pub slots: usize,
    /// How long a finished operation stays queryable (default 10 minutes).
    pub operation_retention: Duration,
}

impl ExecutionConfig {
    /// Defaults for the given platform properties.
    pub fn new(platform: Vec<(String, String)>) -> Self {
        ExecutionConfig {
            platform,
            slots: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            operation_retention: Duration::from_secs(600),
        }
    }
}

/// Both services over one [`Executor`].
#[derive(Clone)]
pub struct ExecutionServices {
    executor: Executor,
}

impl ExecutionServices {
    /// Builds the runner (creating its work directory) and the executor.
    /// Call [`crate::runner::probe`] first and refuse to start if it fails.
    pub fn new(
        store: Store,
        action_cache: ActionCache,
        runner: RunnerConfig,
        config: ExecutionConfig,
    ) -> Result<Self, ExecutionError> {
        let runner = Runner::new(store.clone(), runner)?;
        Ok(ExecutionServices { executor: Executor::new(store, action_cache, runner, &config) })
    }

    /// The shared executor (metrics: queue depth, running, slots).
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The `Execution` service implementation.
    pub fn execution_service(&self) -> ExecutionService {
        ExecutionService::new(self.executor.clone())
    }

    /// The `Operations` service implementation.
    pub fn operations_service(&self) -> OperationsService {
        OperationsService::new(self.executor.clone())
    }

    /// The tonic server for `Execution`.
    pub fn execution_server(&self) -> ExecutionServer<ExecutionService> {
        ExecutionServer::new(self.execution_service())
    }

    /// The tonic server for `Operations`.
    pub fn operations_server(&self) -> OperationsServer<OperationsService> {
        OperationsServer::new(self.operations_service())
    }
}
