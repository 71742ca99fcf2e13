//! The worker's network face: the tonic gRPC services (CAS, ByteStream,
//! Action Cache, Capabilities, Remote Asset, and Execution/Operations when
//! the role executes), bearer-token auth, TLS, instance names, the HTTP
//! status page and metrics, and the configuration file.
//!
//! Key decision: [`Server::bind`] does everything that can fail at start-up
//! (reading config files, building the store graph, opening the database,
//! binding sockets) and reports it as a [`StartError`]; [`Server::serve`]
//! then only serves until the shutdown future resolves. Handlers parse,
//! call an inner function returning [`ServerError`], and convert once.
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the YAML configuration ([`WorkerConfig`]) |
//! | [`auth`] | bearer tokens, read-only and read-write, as a tower layer |
//! | [`instances`] | the served instance names |
//! | [`state`] | what the services share |
//! | [`cas`], [`bytestream`], [`action_cache`], [`capabilities`], [`asset`] | one gRPC service each |
//! | [`bytestream_routes`] | ByteStream as mounted: `Write` decoded and `Read` answered without copying the data |
//! | [`read_body`] | the hand-framed gRPC body of a `Read` response |
//! | [`tree_walker`] | breadth-first walks of `Directory` trees |
//! | [`metrics`], [`status_page`] | counters, Prometheus text, the HTTP page |
//! | [`error`] | [`ServerError`] and its one conversion to `tonic::Status` |

pub mod action_cache;
pub mod asset;
pub mod auth;
pub mod bytestream;
pub mod bytestream_routes;
pub mod capabilities;
pub mod cas;
pub mod config;
pub mod error;
pub mod instances;
pub mod metrics;
pub mod read_body;
pub mod state;
pub mod status_page;
pub mod tree_walker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use weir_proto::asset::fetch_server::FetchServer;
use weir_proto::asset::push_server::PushServer;
use weir_proto::reapi::action_cache_server::ActionCacheServer;
use weir_proto::reapi::capabilities_server::CapabilitiesServer;
use weir_proto::reapi::content_addressable_storage_server::ContentAddressableStorageServer;

pub use config::{ConfigError, Role, WorkerConfig};
pub use error::ServerError;
pub use instances::Instances;
pub use metrics::{ExecutionGauges, ServerMetrics};
pub use state::ServerState;

use crate::cache::{open_database, ActionCache, AssetIndex, CacheError};
use crate::execution::{ExecutionConfig, ExecutionServices};
use crate::runner::{self, RunnerConfig, SandboxKind};
use crate::store::{self, BuildContext, StoreError, StoreMetrics};

/// How long in-flight requests may run after SIGTERM/SIGINT.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store graph could not be built.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The cache database could not be opened.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error("TLS: {0}")]
    Tls(String),
    /// The gRPC or HTTP server failed.
    #[error("server: {0}")]
    Serve(String),
    /// Execution was asked for but cannot run here.
    #[error("execution: {0}")]
    Execution(String),
}

/// A bound, ready-to-serve worker.
pub struct Server {
    config: WorkerConfig,
    state: Arc<ServerState>,
    auth: auth::Auth,
    grpc: TcpListener,
    http: Option<TcpListener>,
    execution: Option<ExecutionServices>,
}

/// The platform properties of this host: `OSFamily` and `ISA` (REAPI's
/// lexicon names), then the configured extras (which may override them).
fn platform_properties(extra: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    let isa = match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "x86" => "x86-32",
        "aarch64" => "aarch64",
        "arm" => "aarch32",
        "riscv64" => "riscv64",
        "powerpc64" => "ppc64",
        other => other,
    };
    let mut props = std::collections::BTreeMap::from([
        ("OSFamily".to_string(), std::env::consts::OS.to_string()),
        ("ISA".to_string(), isa.to_string()),
    ]);
    props.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    props.into_iter().collect()
}

/// Sets up the runner and executor, refusing a sandbox this host cannot provide.
fn start_execution(config: &WorkerConfig, cas: store::Store, ac: ActionCache) -> Result<ExecutionServices, StartError> {
    let sandbox = match config.execution.sandbox {
        config::SandboxChoice::Host => SandboxKind::Host,
        config::SandboxChoice::Namespace => SandboxKind::Namespace,
    };
    let work_dir = config.resolve(config.execution.work_dir.as_deref().unwrap_or(std::path::Path::new("work")));
    std::fs::create_dir_all(&work_dir)
        .map_err(|e| StartError::Execution(format!("cannot create {}: {e}", work_dir.display())))?;
    runner::probe(sandbox, &work_dir).map_err(|e| {
        StartError::Execution(format!(
            "the {sandbox} sandbox cannot run on this host ({e}); use --sandbox host (no isolation) or --role cache"
        ))
    })?;
    let mut exec_config = ExecutionConfig::new(platform_properties(&config.execution.platform));
    if let Some(slots) = config.execution.slots {
        exec_config.slots = slots.max(1);
    }
    ExecutionServices::new(cas, ac, RunnerConfig::new(sandbox, work_dir), exec_config)
        .map_err(|e| StartError::Execution(e.to_string()))
}

impl Server {
    /// Builds the store graph and caches described by `config` and binds its
    /// listeners (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(config: WorkerConfig) -> Result<Self, StartError> {
        config.validate()?;
        let root = config.root_dir();
        std::fs::create_dir_all(&root).map_err(|e| ConfigError::Read { path: root.clone(), source: e })?;
        let store_metrics = StoreMetrics::default();
        let (storage, stores) = config.synced_storage();
        let ctx = BuildContext::new(root.clone(), stores, store_metrics.clone()).with_large_blob_io(config.large_blob_io);
        let cas = store::build(&storage, &ctx).await?;
        // REAPI clients assume the empty blob is always present; store it once
        // (bounded: an unreachable upstream must not hold up start-up).
        let empty_digest = weir_proto::Digest::empty();
        let empty = cas.write(&empty_digest, bytes::Bytes::new());
        match tokio::time::timeout(std::time::Duration::from_secs(5), empty).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(%err, "could not store the empty blob"),
            Err(_) => tracing::warn!("storing the empty blob timed out"),
        }
        let db = open_database(&root.join("cache.redb"), config.sync == config::SyncPolicy::Always)?;
        let instances = Instances::new(config.instance_names.iter().cloned())
            .map_err(|e| ConfigError::Invalid(format!("instance_names: {e}")))?;
        let auth = auth::Auth::from_config(&config.auth, &root)?;
        let action_cache = ActionCache::new(db.clone(), cas.clone());
        let execution =
            if config.role.executes() { Some(start_execution(&config, cas.clone(), action_cache.clone())?) } else { None };
        let gauges = execution.as_ref().map(|e| Arc::new(e.executor().clone()) as Arc<dyn ExecutionGauges>);
        let state = Arc::new(ServerState {
            action_cache,
            assets: AssetIndex::new(db),
            instances,
            max_batch: config.max_batch_size.bytes(),
            metrics: Arc::new(ServerMetrics::new(store_metrics, Some(cas.clone()), gauges)),
            store: cas,
        });
        let grpc = TcpListener::bind(config.listen).await.map_err(|source| StartError::Bind { addr: config.listen, source })?;
        let http = match &config.metrics {
            Some(m) => Some(TcpListener::bind(m.listen).await.map_err(|source| StartError::Bind { addr: m.listen, source })?),
            None => None,
        };
        Ok(Server { config, state, auth, grpc, http, execution })
    }

    /// The bound gRPC address.
    pub fn local_addr(&self) -> Result<SocketAddr, StartError> {
        self.grpc.local_addr().map_err(|e| StartError::Serve(e.to_string()))
    }

    /// The bound HTTP (status page, metrics) address, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The shared state (store, caches, metrics).
    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    fn tls(&self) -> Result<Option<ServerTlsConfig>, StartError> {
        let Some(tls) = &self.config.tls else { return Ok(None) };
        let read = |path: &std::path::Path| {
            let path = self.config.resolve(path);
            std::fs::read(&path).map_err(|e| StartError::Tls(format!("cannot read {}: {e}", path.display())))
        };
        let mut out = ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        if let Some(ca) = &tls.client_ca {
            out = out.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(Some(out))
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let grpc_addr = self.local_addr()?;
        let exec_enabled = self.execution.is_some();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let tls = self.tls()?;
        let http_task = self.http.map(|listener| {
            let info = Arc::new(status_page::StatusInfo {
                grpc_addr: grpc_addr.to_string(),
                role: format!("{:?}", self.config.role).to_lowercase(),
                instances: self.state.instances.names().map(String::from).collect(),
                exec_enabled,
                metrics: self.state.metrics.clone(),
            });
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let app = status_page::router(info);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await
            })
        });

        let limit = self.state.max_batch as usize + (1 << 20);
        let state = self.state.clone();
        let capabilities = capabilities::CapabilitiesService::new(
            state.clone(),
            capabilities::ExecutionOffer {
                enabled: exec_enabled,
                properties: self
                    .execution
                    .as_ref()
                    .map(|e| e.executor().platform().served().map(|(name, _)| name.to_string()).collect())
                    .unwrap_or_default(),
            },
        );
        let mut builder = tonic::transport::Server::builder()
            .initial_connection_window_size(Some(32 << 20))
            .initial_stream_window_size(Some(16 << 20))
            .max_frame_size(Some((1 << 24) - 1))
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            builder = builder.tls_config(tls).map_err(|e| StartError::Tls(e.to_string()))?;
        }
        let serves_assets = self.config.role.serves_assets();
        let router = builder
            .layer(auth::AuthLayer(self.auth.clone()))
            .add_service(
                ContentAddressableStorageServer::new(cas::CasService::new(state.clone()))
                    .max_decoding_message_size(limit)
                    .max_encoding_message_size(limit),
            )
            .add_service(bytestream_routes::ByteStreamRoutes::new(bytestream::ByteStreamService::new(state.clone()), limit))
            .add_service(
                ActionCacheServer::new(action_cache::ActionCacheService::new(state.clone()))
                    .max_decoding_message_size(limit),
            )
            .add_service(CapabilitiesServer::new(capabilities))
            .add_optional_service(
                serves_assets.then(|| FetchServer::new(asset::AssetService::new(state.clone())).max_decoding_message_size(limit)),
            )
            .add_optional_service(
                serves_assets.then(|| PushServer::new(asset::AssetService::new(state.clone())).max_decoding_message_size(limit)),
            );

        let router = router
            .add_optional_service(
                self.execution.as_ref().map(|e| e.execution_server().max_decoding_message_size(limit)),
            )
            .add_optional_service(self.execution.as_ref().map(|e| e.operations_server()));

        let incoming = TcpIncoming::from(self.grpc).with_nodelay(Some(true));
        let (signalled_tx, mut signalled) = tokio::sync::watch::channel(false);
        let serve = router.serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            tracing::info!("shutting down");
            let _ = signalled_tx.send(true);
        });
        // Cancel-safety: `serve` is pinned here and only dropped when the grace
        // period after the shutdown signal has run out.
        tokio::pin!(serve);
        let result = tokio::select! {
            result = &mut serve => result.map_err(|e| StartError::Serve(e.to_string())),
            _ = async {
                let _ = signalled.wait_for(|s| *s).await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::warn!("connections still open {} s after the shutdown signal; closing them", SHUTDOWN_GRACE.as_secs());
                Ok(())
            }
        };
        let _ = stop_tx.send(true);
        if let Some(task) = http_task {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(%e, "status page server failed"),
                Err(e) => tracing::warn!(%e, "status page task failed"),
            }
        }
        result
    }
}
