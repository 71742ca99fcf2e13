//! [`RemoteConfig`]: the remotes named in a BuildStream-shaped user
//! configuration file (`-c FILE`): `remote-execution:` (execution, storage
//! and action-cache services) and `artifacts: servers:`.
//!
//! Key decision: Weir's model is one storage remote (CAS and artifact index)
//! plus execution endpoints that share its CAS, so the file maps onto it as:
//! storage = `artifacts: servers:` first entry, else
//! `remote-execution: storage-service`, else the execution service;
//! executors = `remote-execution: execution-service`. Only the keys Weir
//! uses are read (`url`, `instance-name`, `server-cert`, and
//! `access-token`, a file holding a bearer token; and `cachedir`, the
//! embedded worker's root); errors carry the file's
//! provenance through the YAML reader.

use std::path::{Path, PathBuf};

use super::EndpointSpec;
use crate::yaml::{parser, LoadError, LoadErrorReason, LoadResult, Map, SourceMap};

/// Remotes from a user configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Where artifacts and inputs are stored.
    pub storage: Option<EndpointSpec>,
    /// Where actions run.
    pub executors: Vec<EndpointSpec>,
    /// `cachedir`: the root of the embedded worker (used when no remote is named).
    pub cache_dir: Option<PathBuf>,
}

impl RemoteConfig {
    /// Reads the remotes of `path`; errors are rendered with provenance.
    pub fn load(path: &Path) -> Result<RemoteConfig, String> {
        let mut sources = SourceMap::new();
        let file = sources.add(path.display().to_string());
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read user configuration {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        parser::parse(&text, file).and_then(|doc| RemoteConfig::from_map(&doc, base)).map_err(|e| e.render(&sources))
    }

    /// The remotes of a parsed file; relative file names are relative to `base`.
    pub fn from_map(doc: &Map, base: &Path) -> LoadResult<RemoteConfig> {
        let mut config = RemoteConfig::default();
        let remote_execution = doc.get_map("remote-execution")?;
        let execution = match remote_execution {
            Some(re) => re.get_map("execution-service")?.map(|s| endpoint(s, base)).transpose()?,
            None => None,
        };
        let storage_service = match remote_execution {
            Some(re) => re.get_map("storage-service")?.map(|s| endpoint(s, base)).transpose()?,
            None => None,
        };
        let artifact_server = match doc.get_map("artifacts")? {
            Some(artifacts) => match artifacts.get_seq("servers")? {
                Some(servers) => match servers.items.first() {
                    Some(crate::yaml::Node::Map(server)) => Some(endpoint(server, base)?),
                    Some(other) => {
                        return Err(LoadError::at(other.span(), LoadErrorReason::InvalidData, "artifact server is not a mapping"))
                    }
                    None => None,
                },
                None => None,
            },
            None => None,
        };
        config.storage = artifact_server.or(storage_service).or_else(|| execution.clone());
        config.executors = execution.into_iter().collect();
        config.cache_dir = doc.get_str("cachedir")?.map(|dir| resolve(base, &expand_home(dir)));
        Ok(config)
    }
}

/// One `{url, instance-name, server-cert, access-token}` (or `auth:` holding
/// the last two, as BuildStream's artifact servers do).
fn endpoint(service: &Map, base: &Path) -> LoadResult<EndpointSpec> {
    let url = service.req_scalar("url")?;
    let mut spec = EndpointSpec::new(url.value.as_ref())
        .map_err(|e| LoadError::at(url.span, LoadErrorReason::InvalidData, e.to_string()))?;
    spec.instance_name = service.get_str("instance-name")?.unwrap_or_default().to_string();
    let auth = service.get_map("auth")?.unwrap_or(service);
    if let Some(cert) = auth.get_str("server-cert")? {
        spec.ca_certificate = Some(resolve(base, cert));
    }
    if let Some(token) = auth.get_scalar("access-token")? {
        let path = resolve(base, &token.value);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LoadError::at(token.span, LoadErrorReason::MissingFile, format!("cannot read access token {}: {e}", path.display()))
        })?;
        spec.token = Some(text.trim().to_string());
    }
    Ok(spec)
}

/// `~/...` as BuildStream's user configuration allows it.
fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    base.join(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, base: &Path) -> Result<RemoteConfig, String> {
        let mut sources = SourceMap::new();
        let file = sources.add("user.conf");
        parser::parse(text, file).and_then(|doc| RemoteConfig::from_map(&doc, base)).map_err(|e| e.render(&sources))
    }

    #[test]
    fn reads_buildstream_remote_execution_and_artifact_servers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let config = parse(
            "remote-execution:\n  execution-service:\n    url: http://exec:50051\n    instance-name: main\n  storage-service:\n    url: http://cas:50052\nartifacts:\n  servers:\n  - url: https://cache:11002\n    push: true\n    auth:\n      server-cert: ca.pem\n      access-token: token\n",
            dir.path(),
        )
        .unwrap();
        let storage = config.storage.unwrap();
        assert_eq!(storage.url, "https://cache:11002");
        assert_eq!(storage.token.as_deref(), Some("s3cret"));
        assert_eq!(storage.ca_certificate, Some(dir.path().join("ca.pem")));
        assert_eq!(config.executors.len(), 1);
        assert_eq!(config.executors[0].url, "http://exec:50051");
        assert_eq!(config.executors[0].instance_name, "main");
    }

    #[test]
    fn the_execution_service_stores_when_nothing_else_does() {
        let config = parse("remote-execution:\n  execution-service:\n    url: grpc://127.0.0.1:9\n", Path::new(".")).unwrap();
        assert_eq!(config.storage.unwrap().url, "grpc://127.0.0.1:9");
        assert_eq!(parse("projects: {}\n", Path::new(".")).unwrap(), RemoteConfig::default());
    }

    #[test]
    fn cachedir_is_read_relative_to_the_file() {
        let config = parse("cachedir: cache\n", Path::new("/etc/weir")).unwrap();
        assert_eq!(config.cache_dir, Some(PathBuf::from("/etc/weir/cache")));
        assert_eq!(config.storage, None);
        let config = parse("cachedir: /var/cache/weir\n", Path::new("/etc/weir")).unwrap();
        assert_eq!(config.cache_dir, Some(PathBuf::from("/var/cache/weir")));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err = parse("remote-execution:\n  execution-service:\n    url: ftp://x:1\n", Path::new(".")).unwrap_err();
        assert!(err.contains("user.conf") && err.contains("ftp"), "{err}");
        let err = parse("remote-execution:\n  execution-service:\n    instance-name: x\n", Path::new(".")).unwrap_err();
        assert!(err.contains("url"), "{err}");
    }
}
