//! [`OperationsService`]: the `google.longrunning.Operations` gRPC service
//! over the [`Executor`]'s operations (get, list, cancel, delete, wait).
//!
//! Key decision: `ListOperations` pages by name (`page_token` is the last
//! name of the previous page) and ignores `filter`; `WaitOperation` waits at
//! most [`MAX_WAIT`] whatever the request asks.

use std::time::Duration;

use weir_proto::longrunning::operations_server::Operations;
use weir_proto::longrunning::{
    CancelOperationRequest, DeleteOperationRequest, GetOperationRequest, ListOperationsRequest,
    ListOperationsResponse, Operation, WaitOperationRequest,
};
use weir_proto::protobuf::Empty;

use super::{ExecutionError, Executor};

/// The longest a `WaitOperation` waits.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// The page size when a `ListOperations` request gives none.
const DEFAULT_PAGE_SIZE: usize = 1000;

/// The `Operations` service.
#[derive(Clone)]
pub struct OperationsService {
    executor: Executor,
}

impl OperationsService {
    /// The service over `executor`.
    pub fn new(executor: Executor) -> Self {
        OperationsService { executor }
    }

    fn find(&self, name: String) -> Result<std::sync::Arc<super::OperationEntry>, ExecutionError> {
        self.executor.find(&name).ok_or(ExecutionError::NotFound(name))
    }
}

#[tonic::async_trait]
impl Operations for OperationsService {
    async fn list_operations(
        &self,
        request: tonic::Request<ListOperationsRequest>,
    ) -> Result<tonic::Response<ListOperationsResponse>, tonic::Status> {
        let request = request.into_inner();
        let page_size = usize::try_from(request.page_size).ok().filter(|n| *n > 0).unwrap_or(DEFAULT_PAGE_SIZE);
        let mut operations: Vec<Operation> = self
            .executor
            .list()
            .into_iter()
            .filter(|op| request.page_token.is_empty() || op.name() > request.page_token.as_str())
            .take(page_size + 1)
            .map(|op| op.snapshot())
            .collect();
        let next_page_token = if operations.len() > page_size {
            operations.truncate(page_size);
            operations.last().map(|op| op.name.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(tonic::Response::new(ListOperationsResponse { operations, next_page_token, unreachable: Vec::new() }))
    }

    async fn get_operation(
        &self,
        request: tonic::Request<GetOperationRequest>,
    ) -> Result<tonic::Response<Operation>, tonic::Status> {
        Ok(tonic::Response::new(self.find(request.into_inner().name)?.snapshot()))
    }

    async fn delete_operation(
        &self,
        request: tonic::Request<DeleteOperationRequest>,
    ) -> Result<tonic::Response<Empty>, tonic::Status> {
        let name = request.into_inner().name;
        if self.executor.delete(&name) {
            Ok(tonic::Response::new(Empty {}))
        } else {
            Err(ExecutionError::NotFound(name).into())
        }
    }

    async fn cancel_operation(
        &self,
        request: tonic::Request<CancelOperationRequest>,
    ) -> Result<tonic::Response<Empty>, tonic::Status> {
        self.find(request.into_inner().name)?.cancel();
        Ok(tonic::Response::new(Empty {}))
    }

    async fn wait_operation(
        &self,
        request: tonic::Request<WaitOperationRequest>,
    ) -> Result<tonic::Response<Operation>, tonic::Status> {
        let request = request.into_inner();
        let op = self.find(request.name)?;
        let wait = request
            .timeout
            .filter(|t| t.seconds >= 0 && t.nanos >= 0 && (t.seconds, t.nanos) != (0, 0))
            .map(|t| Duration::new(t.seconds as u64, t.nanos as u32))
            .unwrap_or(MAX_WAIT)
            .min(MAX_WAIT);
        let _ = tokio::time::timeout(wait, op.wait_done()).await;
        Ok(tonic::Response::new(op.snapshot()))
    }
}
