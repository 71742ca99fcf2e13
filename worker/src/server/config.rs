//! [`WorkerConfig`]: the YAML configuration file of `weir-worker`, and its
//! defaults when the worker is started from the command line alone.
//!
//! Key decision: plain serde data with `deny_unknown_fields` everywhere, so a
//! misspelt key is an error naming it, never silently ignored; sizes use
//! [`ByteSize`] (`64MiB`). Every field is documented here and in
//! `docs/worker.md` (a test checks that the reference mentions every key).
//! Relative paths are relative to `root`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{ByteSize, FilesystemSpec, LargeBlobIo, StoreSpec};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde reported (with line and column).
        message: String,
    },
    /// The values are inconsistent.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Which services a worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// CAS, ByteStream, Action Cache, Remote Asset and Capabilities; no execution.
    Cache,
    /// Execution and Operations, with the CAS, ByteStream, Action Cache and
    /// Capabilities that clients of an executor need; no Remote Asset.
    Executor,
    /// Everything (the default).
    #[default]
    Both,
}

impl Role {
    /// Whether this role runs actions.
    pub fn executes(self) -> bool {
        matches!(self, Role::Executor | Role::Both)
    }

    /// Whether this role serves the Remote Asset API.
    pub fn serves_assets(self) -> bool {
        matches!(self, Role::Cache | Role::Both)
    }
}

/// The sandbox actions run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SandboxChoice {
    /// No isolation: the command runs on the host in its input root (tests).
    Host,
    /// Linux user, mount, pid and network namespaces (the default).
    #[default]
    Namespace,
}

/// Whether acknowledged writes are synced to disk before they are
/// acknowledged (the worker's `sync` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncPolicy {
    /// `fsync` every blob of every filesystem store and every commit of
    /// `cache.redb` before answering: acknowledged writes survive a power
    /// loss or kernel crash.
    Always,
    /// Leave writes to the kernel (the default): acknowledged writes survive
    /// a killed or crashed worker process, not a power loss.
    #[default]
    Never,
}

/// TLS for the gRPC listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate it signed.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// What a bearer token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Reads only: FindMissingBlobs, BatchReadBlobs, GetTree, ByteStream Read,
    /// GetActionResult, Fetch, Capabilities, WaitExecution, GetOperation.
    ReadOnly,
    /// Reads and writes (uploads, UpdateActionResult, Push, Execute).
    ReadWrite,
}

/// One accepted bearer token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token itself (prefer `token_file`).
    #[serde(default)]
    pub token: Option<String>,
    /// A file whose content (trimmed) is the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// What the token allows.
    pub access: Access,
}

/// Bearer-token authentication. With no tokens, every client may read and write.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Accepted tokens; a request must carry `authorization: Bearer TOKEN`.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// What a request without a token may do when tokens are configured:
    /// `none` (default, refused), `read_only`.
    #[serde(default)]
    pub anonymous: AnonymousAccess,
}

/// What requests without a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousAccess {
    /// Refused with UNAUTHENTICATED.
    #[default]
    None,
    /// May read.
    ReadOnly,
}

/// The HTTP status page and Prometheus metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP listener (`/` status page, `/metrics` Prometheus);
    /// port 0 picks a free port (printed on start-up).
    pub listen: SocketAddr,
}

/// How actions run (when the role executes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionConfig {
    /// `namespace` (default) or `host`.
    #[serde(default)]
    pub sandbox: SandboxChoice,
    /// Actions run at once (default: the number of CPUs).
    #[serde(default)]
    pub slots: Option<usize>,
    /// Directory for action work trees (default `ROOT/work`; keep it on the
    /// CAS's filesystem so inputs can be hard-linked).
    #[serde(default)]
    pub work_dir: Option<PathBuf>,
    /// Extra platform properties this worker advertises and matches
    /// (`OSFamily` and `ISA` are added from the host).
    #[serde(default)]
    pub platform: BTreeMap<String, String>,
}

/// The whole configuration file.
///
/// ```yaml
/// listen: 127.0.0.1:8980
/// root: /var/lib/weir-worker
/// role: both
/// instance_names: ["", main]
/// storage: { filesystem: { path: cas } }
/// metrics: { listen: 127.0.0.1:9980 }
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// gRPC listen address (default `127.0.0.1:8980`; `--listen` overrides).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// State directory: CAS, cache database, work trees (`--root` overrides;
    /// required one way or the other).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// `cache`, `executor` or `both` (default).
    #[serde(default)]
    pub role: Role,
    /// REAPI instance names served (default `[""]`).
    #[serde(default = "default_instances")]
    pub instance_names: Vec<String>,
    /// TLS for the gRPC listener (default: plaintext).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Bearer tokens (default: none, everyone may read and write).
    #[serde(default)]
    pub auth: AuthConfig,
    /// The CAS store graph (default `{ filesystem: { path: cas } }`).
    #[serde(default = "default_storage")]
    pub storage: StoreSpec,
    /// Named stores that `storage` refers to with `shared: NAME`.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreSpec>,
    /// Largest total of a `BatchUpdateBlobs`/`BatchReadBlobs` request
    /// (default `16MiB`); gRPC messages up to this plus 1 MiB are accepted.
    #[serde(default = "default_max_batch")]
    pub max_batch_size: ByteSize,
    /// `always` or `never` (default): whether blobs and cache records are
    /// synced to disk before they are acknowledged ([`SyncPolicy`]).
    #[serde(default)]
    pub sync: SyncPolicy,
    /// `direct` (default) or `page_cache`: how filesystem stores write and
    /// stream blobs of 8 MiB or more ([`LargeBlobIo`]).
    #[serde(default)]
    pub large_blob_io: LargeBlobIo,
    /// HTTP status page and metrics (default: off).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// How actions run (used when `role` executes).
    #[serde(default)]
    pub execution: ExecutionConfig,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8980))
}

fn default_instances() -> Vec<String> {
    vec![String::new()]
}

fn default_storage() -> StoreSpec {
    StoreSpec::Filesystem(FilesystemSpec { path: PathBuf::from("cas"), verify_reads: false, fsync: false })
}

fn default_max_batch() -> ByteSize {
    ByteSize::new(16 << 20)
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            listen: default_listen(),
            root: None,
            role: Role::default(),
            instance_names: default_instances(),
            tls: None,
            auth: AuthConfig::default(),
            storage: default_storage(),
            stores: BTreeMap::new(),
            max_batch_size: default_max_batch(),
            sync: SyncPolicy::default(),
            large_blob_io: LargeBlobIo::default(),
            metrics: None,
            execution: ExecutionConfig::default(),
        }
    }
}

impl WorkerConfig {
    /// Reads and parses a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.into(), message })
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }

    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.root.is_none() {
            return Err(ConfigError::Invalid("no root directory: set `root:` or pass --root".into()));
        }
        if self.max_batch_size.bytes() < 1024 || self.max_batch_size.bytes() > (1 << 30) {
            return Err(ConfigError::Invalid("max_batch_size must lie between 1KiB and 1GiB".into()));
        }
        for token in &self.auth.tokens {
            if token.token.is_some() == token.token_file.is_some() {
                return Err(ConfigError::Invalid("each token needs exactly one of `token` and `token_file`".into()));
            }
        }
        Ok(())
    }

    /// The store graph and the shared stores, with `fsync` set on every
    /// filesystem store when `sync` is `always`.
    pub fn synced_storage(&self) -> (StoreSpec, BTreeMap<String, StoreSpec>) {
        let (mut storage, mut stores) = (self.storage.clone(), self.stores.clone());
        if self.sync == SyncPolicy::Always {
            storage.sync_filesystems();
            stores.values_mut().for_each(StoreSpec::sync_filesystems);
        }
        (storage, stores)
    }

    /// The root directory (after [`WorkerConfig::validate`]).
    pub fn root_dir(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| PathBuf::from("."))
    }

    /// `path` resolved against the root directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.root_dir().join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_always_syncs_every_filesystem_store_and_defaults_to_never() {
        assert_eq!(WorkerConfig::parse("{}").unwrap().sync, SyncPolicy::Never);
        let text = "sync: always\nstorage: { fast_slow: { fast: { size_limited: { max_size: 1GiB, inner: { filesystem: { path: a } } } }, slow: { shared: disk } } }\nstores: { disk: { verify: { inner: { filesystem: { path: b } } } } }\n";
        let fsyncs = |config: &WorkerConfig| {
            let (storage, stores) = config.synced_storage();
            let text = serde_yaml_ng::to_string(&(storage, stores)).unwrap();
            (text.matches("fsync: true").count(), text.matches("fsync: false").count())
        };
        let config = WorkerConfig::parse(text).unwrap();
        assert_eq!(config.sync, SyncPolicy::Always);
        assert_eq!(fsyncs(&config), (2, 0));
        let config = WorkerConfig::parse(&text.replace("sync: always", "sync: never")).unwrap();
        assert_eq!(fsyncs(&config), (0, 2));
        assert!(WorkerConfig::parse("sync: sometimes").is_err());
    }

    #[test]
    fn large_blob_io_defaults_to_direct() {
        assert_eq!(WorkerConfig::parse("{}").unwrap().large_blob_io, LargeBlobIo::Direct);
        assert_eq!(WorkerConfig::parse("large_blob_io: page_cache").unwrap().large_blob_io, LargeBlobIo::PageCache);
        assert!(WorkerConfig::parse("large_blob_io: mmap").is_err());
    }

    #[test]
    fn defaults_from_an_empty_file() {
        let config = WorkerConfig::parse("{}").unwrap();
        assert_eq!(config.role, Role::Both);
        assert_eq!(config.instance_names, vec![String::new()]);
        assert!(matches!(config.storage, StoreSpec::Filesystem(_)));
        assert!(config.validate().is_err(), "a config without root must be refused");
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let err = WorkerConfig::parse("root: /x\nlisten_addr: 1.2.3.4:5\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
        assert!(WorkerConfig::parse("auth: { tokens: [ { token: a, access: admin } ] }").is_err());
    }

    #[test]
    fn a_full_config_parses() {
        let config = WorkerConfig::parse(
            "listen: 0.0.0.0:1\nroot: /r\nrole: cache\ninstance_names: ['', a/b]\n\
             auth: { tokens: [ { token: s3cret, access: read_write }, { token_file: t, access: read_only } ] }\n\
             storage: { size_limited: { max_size: 1GiB, inner: { shared: disk } } }\n\
             stores: { disk: { filesystem: { path: cas, verify_reads: true } } }\n\
             max_batch_size: 4MiB\nmetrics: { listen: 127.0.0.1:0 }\n\
             execution: { sandbox: host, slots: 2, platform: { pool: big } }\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.role, Role::Cache);
        assert_eq!(config.max_batch_size.bytes(), 4 << 20);
        assert_eq!(config.auth.tokens[1].access, Access::ReadOnly);
        assert_eq!(config.execution.sandbox, SandboxChoice::Host);
    }

    fn repo_file(path: &str) -> PathBuf {
        // At run time first: a test binary built from another checkout of
        // the same commit (a shared target directory) still reads this one.
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from).join("..").join(path)
    }

    fn deploy_examples() -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(repo_file("deploy"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("worker-") && n.ends_with(".yaml")))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn every_deploy_example_parses_and_validates() {
        let examples = deploy_examples();
        assert!(examples.len() >= 3, "{examples:?}");
        for path in examples {
            let config = WorkerConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
            config.validate().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    /// Collects the keys of every map in `value`, except the user-chosen
    /// names under `stores` and `platform`.
    fn keys(value: &serde_yaml_ng::Value, out: &mut std::collections::BTreeSet<String>) {
        match value {
            serde_yaml_ng::Value::Mapping(map) => {
                for (k, v) in map {
                    let Some(k) = k.as_str() else { continue };
                    out.insert(k.to_string());
                    if k == "stores" || k == "platform" {
                        if let serde_yaml_ng::Value::Mapping(named) = v {
                            named.values().for_each(|inner| keys(inner, out));
                        }
                    } else {
                        keys(v, out);
                    }
                }
            }
            serde_yaml_ng::Value::Sequence(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_reference_documents_every_key() {
        // Every key in the examples, plus the ones no example sets.
        let mut all = std::collections::BTreeSet::new();
        for path in deploy_examples() {
            let text = std::fs::read_to_string(&path).unwrap();
            keys(&serde_yaml_ng::from_str(&text).unwrap(), &mut all);
        }
        let extra = "tls: { cert: a, key: b, client_ca: c }\nauth: { tokens: [ { token: t, access: read_only } ], anonymous: read_only }\n\
                     storage: { verify: { inner: { upstream: { endpoint: x, ca_cert: c } }, verify_reads: true } }\n";
        keys(&serde_yaml_ng::from_str(extra).unwrap(), &mut all);
        // Everything a default config serializes to must be covered too.
        keys(&serde_yaml_ng::to_value(WorkerConfig::default()).unwrap(), &mut all);
        let docs = std::fs::read_to_string(repo_file("docs/worker.md")).unwrap();
        let undocumented: Vec<_> = all.iter().filter(|k| !docs.contains(&format!("`{k}`"))).collect();
        assert!(undocumented.is_empty(), "docs/worker.md does not mention {undocumented:?}");
        assert!(all.len() > 30, "{all:?}");
    }
}
