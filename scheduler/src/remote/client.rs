//! [`RemoteClient`]: every REAPI service of one endpoint behind one cheap
//! clone, set up from the server's `Capabilities`.
//!
//! Key decision: the capabilities are asked once, at connection, and only
//! what the client needs from them is kept (the batch size limit and whether
//! execution is enabled).

use weir_proto::reapi::capabilities_client::CapabilitiesClient;
use weir_proto::reapi::GetCapabilitiesRequest;

use super::{ActionCache, BlobIndex, Cas, EndpointSpec, Execution, RemoteAsset, RemoteError};

/// A connected REAPI endpoint: CAS, Execution, Action Cache and Remote Asset.
#[derive(Debug, Clone)]
pub struct RemoteClient {
    spec: EndpointSpec,
    /// CAS and ByteStream.
    pub cas: Cas,
    /// Execution (and operation cancellation).
    pub execution: Execution,
    /// Action Cache.
    pub action_cache: ActionCache,
    /// Remote Asset fetch and push.
    pub asset: RemoteAsset,
    /// Names to blobs: Remote Asset, or the Action Cache where the server
    /// serves no Remote Asset (use this, not `asset`, for an index).
    pub index: BlobIndex,
    exec_enabled: bool,
}

impl RemoteClient {
    /// Connects to the endpoint and reads its capabilities.
    pub async fn connect(spec: EndpointSpec) -> Result<Self, RemoteError> {
        let channel = spec.connect()?;
        let capabilities = CapabilitiesClient::new(channel.clone())
            .get_capabilities(GetCapabilitiesRequest { instance_name: spec.instance_name.clone() })
            .await
            .map_err(|s| RemoteError::rpc("GetCapabilities", s))?
            .into_inner();
        let max_batch = capabilities
            .cache_capabilities
            .as_ref()
            .map(|c| usize::try_from(c.max_batch_total_size_bytes).unwrap_or(0))
            .unwrap_or(0);
        let exec_enabled = capabilities.execution_capabilities.as_ref().is_some_and(|e| e.exec_enabled);
        let instance = spec.instance_name.clone();
        let action_cache = ActionCache::new(channel.clone(), &instance);
        let asset = RemoteAsset::new(channel.clone(), &instance);
        Ok(RemoteClient {
            cas: Cas::new(channel.clone(), &instance, max_batch),
            execution: Execution::new(channel, &instance),
            index: BlobIndex::new(asset.clone(), action_cache.clone()),
            action_cache,
            asset,
            exec_enabled,
            spec,
        })
    }

    /// The endpoint this client talks to.
    pub fn spec(&self) -> &EndpointSpec {
        &self.spec
    }

    /// Whether the server announced that it executes actions.
    pub fn exec_enabled(&self) -> bool {
        self.exec_enabled
    }
}
