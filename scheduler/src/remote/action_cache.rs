//! [`ActionCache`]: get and update action results by action digest.
//!
//! Key decision: a cache miss (`NOT_FOUND`) is `Ok(None)`, not an error.

use weir_proto::reapi::action_cache_client::ActionCacheClient;
use weir_proto::reapi::{ActionResult, GetActionResultRequest, UpdateActionResultRequest};
use weir_proto::Digest;

use super::cas::MAX_MESSAGE_BYTES;
use super::endpoint::AuthChannel;
use super::RemoteError;

/// The Action Cache client of one endpoint.
#[derive(Debug, Clone)]
pub struct ActionCache {
    client: ActionCacheClient<AuthChannel>,
    instance_name: String,
}

impl ActionCache {
    /// An Action Cache client over `channel`.
    pub fn new(channel: AuthChannel, instance_name: &str) -> Self {
        ActionCache {
            client: ActionCacheClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
            instance_name: instance_name.to_string(),
        }
    }

    /// The cached result of `action`, if any.
    pub async fn get(&self, action: Digest) -> Result<Option<ActionResult>, RemoteError> {
        let request = GetActionResultRequest {
            instance_name: self.instance_name.clone(),
            action_digest: Some(action.to_proto()),
            ..Default::default()
        };
        match self.client.clone().get_action_result(request).await {
            Ok(response) => Ok(Some(response.into_inner())),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(RemoteError::rpc("GetActionResult", status)),
        }
    }

    /// Records `result` as the result of `action`.
    pub async fn update(&self, action: Digest, result: ActionResult) -> Result<(), RemoteError> {
        let request = UpdateActionResultRequest {
            instance_name: self.instance_name.clone(),
            action_digest: Some(action.to_proto()),
            action_result: Some(result),
            ..Default::default()
        };
        self.client.clone().update_action_result(request).await.map_err(|s| RemoteError::rpc("UpdateActionResult", s))?;
        Ok(())
    }
}
