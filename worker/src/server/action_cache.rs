//! [`ActionCacheService`]: the REAPI `ActionCache` service over
//! [`crate::cache::ActionCache`].
//!
//! `GetActionResult` answers `NOT_FOUND` both for unknown actions and for
//! results whose outputs are no longer all in the CAS. Small stdout/stderr
//! are inlined when asked. `UpdateActionResult` stores the result durably
//! before answering (write access is checked by the auth layer).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::reapi::action_cache_server::ActionCache as ActionCacheApi;
use weir_proto::reapi::{ActionResult, GetActionResultRequest, UpdateActionResultRequest};
use weir_proto::Digest;

use super::{ServerError, ServerMetrics, ServerState};

/// Largest stdout/stderr inlined into a `GetActionResult` answer.
const INLINE_LIMIT: u64 = 64 * 1024;

/// The Action Cache service.
pub struct ActionCacheService {
    state: Arc<ServerState>,
}

impl ActionCacheService {
    /// A service over the shared state.
    pub fn new(state: Arc<ServerState>) -> Self {
        ActionCacheService { state }
    }

    async fn inline(&self, digest: &Option<weir_proto::reapi::Digest>) -> Result<Option<Vec<u8>>, ServerError> {
        let Some(digest) = digest else { return Ok(None) };
        let digest = Digest::try_from(digest)?;
        if digest.size() > INLINE_LIMIT {
            return Ok(None);
        }
        Ok(Some(Vec::from(self.state.read(&digest, 0, None).await?)))
    }

    async fn inner_get(&self, request: GetActionResultRequest) -> Result<ActionResult, ServerError> {
        self.state.instances.check_with_function(&request.instance_name, request.digest_function)?;
        let action = Digest::try_from(request.action_digest.as_ref())?;
        let Some(mut result) = self.state.action_cache.get(&action).await? else {
            ServerMetrics::add(&self.state.metrics.ac_misses, 1);
            return Err(ServerError::NotFound(format!("no complete action result for {action}")));
        };
        ServerMetrics::add(&self.state.metrics.ac_hits, 1);
        if request.inline_stdout && result.stdout_raw.is_empty() {
            if let Some(raw) = self.inline(&result.stdout_digest).await? {
                result.stdout_raw = raw;
            }
        }
        if request.inline_stderr && result.stderr_raw.is_empty() {
            if let Some(raw) = self.inline(&result.stderr_digest).await? {
                result.stderr_raw = raw;
            }
        }
        Ok(result)
    }

    async fn inner_update(&self, request: UpdateActionResultRequest) -> Result<ActionResult, ServerError> {
        self.state.instances.check_with_function(&request.instance_name, request.digest_function)?;
        let action = Digest::try_from(request.action_digest.as_ref())?;
        let result = request
            .action_result
            .ok_or_else(|| ServerError::InvalidArgument("action_result is missing".into()))?;
        self.state.action_cache.put(&action, &result).await?;
        Ok(result)
    }
}

#[tonic::async_trait]
impl ActionCacheApi for ActionCacheService {
    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name))]
    async fn get_action_result(&self, request: Request<GetActionResultRequest>) -> Result<Response<ActionResult>, Status> {
        Ok(Response::new(self.inner_get(request.into_inner()).await?))
    }

    #[tracing::instrument(skip_all, fields(instance = %request.get_ref().instance_name))]
    async fn update_action_result(
        &self,
        request: Request<UpdateActionResultRequest>,
    ) -> Result<Response<ActionResult>, Status> {
        Ok(Response::new(self.inner_update(request.into_inner()).await?))
    }
}
