//! [`EmbeddedWorker`]: a `weir-worker` run inside the `weir` process when no
//! remote is configured, so that `weir build` works out of the box.
//!
//! Key decision: the embedded worker is the real worker (its library API,
//! [`weir_worker::server::Server`]) listening on `127.0.0.1:0`, and the
//! scheduler talks to it over loopback gRPC exactly as it talks to a remote:
//! one code path for building. Its root (CAS, action cache, work trees) is
//! the user cache directory, so a second command finds what the first built.
//! It always uses the namespace sandbox; when the host cannot provide one,
//! starting fails with the worker's probe message rather than quietly
//! running commands on the host.

use std::path::{Path, PathBuf};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_worker::server::config::SandboxChoice;
use weir_worker::server::{Server, WorkerConfig};

use super::{EndpointSpec, RemoteError};

/// The cache directory used when neither `--cache-dir` nor the user
/// configuration's `cachedir` names one: `$XDG_CACHE_HOME/weir`, else
/// `$HOME/.cache/weir`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    absolute("XDG_CACHE_HOME").map(|dir| dir.join("weir")).or_else(|| absolute("HOME").map(|home| home.join(".cache/weir")))
}

/// A worker serving from inside this process until [`EmbeddedWorker::stop`].
pub struct EmbeddedWorker {
    endpoint: EndpointSpec,
    root: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmbeddedWorker {
    /// Starts a cache-and-executor worker rooted at `root` (created if
    /// absent) with the namespace sandbox, on a free loopback port.
    pub async fn start(root: &Path) -> Result<EmbeddedWorker, RemoteError> {
        let mut config = WorkerConfig { listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)), root: Some(root.to_path_buf()), ..WorkerConfig::default() };
        config.execution.sandbox = SandboxChoice::Namespace;
        let embedded = |reason: String| RemoteError::Embedded { root: root.to_path_buf(), reason };
        let server = Server::bind(config).await.map_err(|e| embedded(e.to_string()))?;
        let addr = server.local_addr().map_err(|e| embedded(e.to_string()))?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.await;
            };
            if let Err(err) = server.serve(stopped).await {
                tracing::error!(%err, "the embedded worker stopped with an error");
            }
        });
        let endpoint = EndpointSpec::new(format!("grpc://{addr}"))?;
        Ok(EmbeddedWorker { endpoint, root: root.to_path_buf(), shutdown: Some(shutdown), task: Some(task) })
    }

    /// The loopback endpoint the worker serves on.
    pub fn endpoint(&self) -> &EndpointSpec {
        &self.endpoint
    }

    /// The worker's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stops serving (in-flight requests drain) and waits for the server.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmbeddedWorker {
    fn drop(&mut self) {
        // Not stopped explicitly (an early return): stop serving anyway.
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::RemoteClient;

    #[tokio::test]
    async fn serves_a_cas_on_loopback_and_keeps_it_on_disk() {
        let root = tempfile::tempdir().unwrap();
        let worker = match EmbeddedWorker::start(root.path()).await {
            Ok(worker) => worker,
            // A host without user namespaces must give a clear error, never fall back to the host sandbox.
            Err(RemoteError::Embedded { reason, .. }) => {
                assert!(reason.contains("sandbox"), "{reason}");
                return;
            }
            Err(other) => panic!("unexpected error {other}"),
        };
        assert!(worker.endpoint().url.starts_with("grpc://127.0.0.1:"));
        let client = RemoteClient::connect(worker.endpoint().clone()).await.unwrap();
        assert!(client.exec_enabled());
        let data = b"kept across runs".to_vec();
        let digest = weir_proto::Digest::of(&data);
        let blobs = crate::remote::BlobSet::from([(digest, crate::remote::Blob::Data(data))]);
        assert_eq!(client.cas.upload(&blobs).await.unwrap(), 1);
        drop(client);
        worker.stop().await;
        // A second worker on the same root already has the blob.
        let worker = EmbeddedWorker::start(root.path()).await.unwrap();
        let client = RemoteClient::connect(worker.endpoint().clone()).await.unwrap();
        assert!(client.cas.find_missing(&[digest]).await.unwrap().is_empty());
        drop(client);
        worker.stop().await;
    }

    #[test]
    fn the_default_cache_dir_is_under_the_user_cache() {
        if let Some(dir) = default_cache_dir() {
            assert!(dir.is_absolute() && dir.ends_with("weir"), "{}", dir.display());
        }
    }
}
