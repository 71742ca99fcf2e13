//! [`ExecutionService`]: the REAPI `Execution` gRPC service (`Execute`,
//! `WaitExecution`), a thin layer over the [`Executor`].

use weir_proto::reapi::execution_server::Execution;
use weir_proto::reapi::{ExecuteRequest, WaitExecutionRequest};

use super::{ExecutionError, Executor, OperationStream};

/// The `Execution` service.
#[derive(Clone)]
pub struct ExecutionService {
    executor: Executor,
}

impl ExecutionService {
    /// The service over `executor`.
    pub fn new(executor: Executor) -> Self {
        ExecutionService { executor }
    }
}

#[tonic::async_trait]
impl Execution for ExecutionService {
    type ExecuteStream = OperationStream;
    type WaitExecutionStream = OperationStream;

    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name))]
    async fn execute(
        &self,
        request: tonic::Request<ExecuteRequest>,
    ) -> Result<tonic::Response<OperationStream>, tonic::Status> {
        let op = self.executor.execute(request.into_inner()).await?;
        Ok(tonic::Response::new(op.updates()))
    }

    async fn wait_execution(
        &self,
        request: tonic::Request<WaitExecutionRequest>,
    ) -> Result<tonic::Response<OperationStream>, tonic::Status> {
        let name = request.into_inner().name;
        let op = self.executor.find(&name).ok_or(ExecutionError::NotFound(name))?;
        Ok(tonic::Response::new(op.updates()))
    }
}
