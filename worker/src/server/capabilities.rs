//! [`CapabilitiesService`]: `GetCapabilities`, telling the truth about this
//! worker — SHA-256 only, zstd for ByteStream and batches, the batch limit
//! actually enforced (and consistent with the gRPC message limit), no blob
//! splitting, and execution enabled only when the execution service runs,
//! with the platform properties it matches on.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weir_proto::reapi::capabilities_server::Capabilities;
use weir_proto::reapi::{
    compressor, digest_function, symlink_absolute_path_strategy, ActionCacheUpdateCapabilities, CacheCapabilities,
    ExecutionCapabilities, GetCapabilitiesRequest, ServerCapabilities,
};
use weir_proto::semver::SemVer;

use super::ServerState;

/// What execution offers, when it runs.
#[derive(Debug, Clone, Default)]
pub struct ExecutionOffer {
    /// Whether `Execute` is served.
    pub enabled: bool,
    /// Platform property names the scheduler matches on.
    pub properties: Vec<String>,
}

/// The Capabilities service.
pub struct CapabilitiesService {
    state: Arc<ServerState>,
    execution: ExecutionOffer,
}

impl CapabilitiesService {
    /// A service describing `state` and `execution`.
    pub fn new(state: Arc<ServerState>, execution: ExecutionOffer) -> Self {
        CapabilitiesService { state, execution }
    }

    /// The capabilities advertised.
    pub fn capabilities(&self) -> ServerCapabilities {
        let version = |minor| Some(SemVer { major: 2, minor, patch: 0, prerelease: String::new() });
        ServerCapabilities {
            cache_capabilities: Some(CacheCapabilities {
                digest_functions: vec![digest_function::Value::Sha256 as i32],
                action_cache_update_capabilities: Some(ActionCacheUpdateCapabilities { update_enabled: true }),
                cache_priority_capabilities: None,
                max_batch_total_size_bytes: self.state.max_batch as i64,
                symlink_absolute_path_strategy: symlink_absolute_path_strategy::Value::Disallowed as i32,
                supported_compressors: vec![compressor::Value::Zstd as i32],
                supported_batch_update_compressors: vec![compressor::Value::Zstd as i32],
                max_cas_blob_size_bytes: 0,
                split_blob_support: false,
                splice_blob_support: false,
                fast_cdc_2020_params: None,
                rep_max_cdc_params: None,
            }),
            execution_capabilities: Some(ExecutionCapabilities {
                digest_function: digest_function::Value::Sha256 as i32,
                exec_enabled: self.execution.enabled,
                execution_priority_capabilities: None,
                supported_node_properties: self.execution.properties.clone(),
                digest_functions: vec![digest_function::Value::Sha256 as i32],
            }),
            deprecated_api_version: None,
            low_api_version: version(0),
            high_api_version: version(3),
        }
    }
}

#[tonic::async_trait]
impl Capabilities for CapabilitiesService {
    async fn get_capabilities(&self, request: Request<GetCapabilitiesRequest>) -> Result<Response<ServerCapabilities>, Status> {
        self.state.instances.check(&request.get_ref().instance_name)?;
        Ok(Response::new(self.capabilities()))
    }
}
