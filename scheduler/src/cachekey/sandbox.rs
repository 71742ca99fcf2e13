//! The `sandbox` entry of the key dict (spec §5.5) and the host platform.
//!
//! It owns [`HostPlatform`] and the conversion of a composed `sandbox`
//! mapping into BuildStream's `SandboxConfig.to_dict()`. Key decision: only the
//! fields BuildStream ever serialises are emitted (`build-os`, `build-arch`,
//! and `build-uid`, `build-gid`, `remote-apis-socket` only when set), because
//! adding any other field would change every key.

use std::collections::BTreeMap;

use super::value::Value;
use super::value_read::{read_bool, read_int, read_str};
use super::CacheKeyError;

/// The operating system and architecture keys default to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlatform {
    /// Lowercased OS name (`linux`).
    pub os: String,
    /// Canonical architecture name (`x86-64`).
    pub arch: String,
}

impl HostPlatform {
    /// The platform this process runs on, named as BuildStream names it.
    pub fn detect() -> Self {
        let os = match std::env::consts::OS {
            "macos" => "darwin".to_owned(),
            other => other.to_lowercase(),
        };
        let arch = canonicalize_arch(std::env::consts::ARCH).unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        HostPlatform { os, arch }
    }
}

/// BuildStream's canonical architecture name for `arch` (`Platform.canonicalize_arch`).
pub fn canonicalize_arch(arch: &str) -> Option<String> {
    let lookup = arch.replace('_', "-").to_lowercase();
    let canonical = match lookup.as_str() {
        "aarch32" | "arm" => "aarch32",
        "aarch64" | "armv8l" => "aarch64",
        "aarch64-be" | "armv8b" => "aarch64-be",
        "amd64" | "x86-64" => "x86-64",
        "i386" | "i486" | "i586" | "i686" | "x86-32" => "x86-32",
        "la64v100" | "loong64" | "loongarch64" => "la64v100",
        "power-isa-be" | "powerpc" | "powerpc64" | "ppc64" => "power-isa-be",
        "power-isa-le" | "powerpc64le" | "ppc64le" => "power-isa-le",
        "riscv32" | "rv32g" => "rv32g",
        "riscv64" | "rv64g" => "rv64g",
        "sparc" | "sparc64" | "sparc-v9" | "sun4v" => "sparc-v9",
        _ => return None,
    };
    Some(canonical.to_owned())
}

/// The serialised sandbox dict for a composed `sandbox` mapping.
pub fn sandbox_dict(element: &str, sandbox: &Value, host: &HostPlatform) -> Result<Value, CacheKeyError> {
    let field = |name: &str| sandbox.get(name);
    let mut dict = BTreeMap::new();
    let os = match field("build-os").map(|v| read_str(element, "sandbox.build-os", v)).transpose()? {
        Some(os) if !os.is_empty() => os.to_lowercase(),
        _ => host.os.clone(),
    };
    let arch = match field("build-arch").map(|v| read_str(element, "sandbox.build-arch", v)).transpose()? {
        Some(arch) if !arch.is_empty() => canonicalize_arch(&arch)
            .ok_or_else(|| CacheKeyError::UnknownArchitecture { element: element.to_owned(), arch: arch.clone() })?,
        _ => host.arch.clone(),
    };
    dict.insert("build-os".into(), Value::from(os));
    dict.insert("build-arch".into(), Value::from(arch));
    for id in ["build-uid", "build-gid"] {
        if let Some(value) = field(id).filter(|v| !matches!(v, Value::Null)) {
            dict.insert(id.into(), Value::Int(read_int(element, id, value)?));
        }
    }
    if let Some(socket) = field("remote-apis-socket").and_then(Value::as_map).filter(|m| !m.is_empty()) {
        let path = socket.get("path").ok_or_else(|| CacheKeyError::InvalidConfig {
            element: element.to_owned(),
            detail: "sandbox.remote-apis-socket: missing key 'path'".to_owned(),
        })?;
        let mut entry = BTreeMap::new();
        entry.insert("path".into(), Value::from(read_str(element, "remote-apis-socket.path", path)?));
        let update = socket
            .get("action-cache-enable-update")
            .map(|v| read_bool(element, "action-cache-enable-update", v))
            .transpose()?
            .unwrap_or(false);
        if update {
            entry.insert("action-cache-enable-update".into(), Value::Bool(true));
        }
        dict.insert("remote-apis-socket".into(), Value::Map(entry.into()));
    }
    Ok(Value::Map(dict.into()))
}

#[cfg(test)]
mod tests {
    use super::super::canonical::to_canonical;
    use super::*;

    fn host() -> HostPlatform {
        HostPlatform { os: "linux".into(), arch: "x86-64".into() }
    }

    fn mapping(pairs: &[(&str, Value)]) -> Value {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn defaults_to_host() {
        let dict = sandbox_dict("e", &Value::map(), &host()).unwrap();
        assert_eq!(to_canonical(&dict), r#"{"build-arch":"x86-64","build-os":"linux"}"#);
    }

    #[test]
    fn ids_are_integers_and_arch_is_canonical() {
        let sandbox = mapping(&[
            ("build-uid", "20".into()),
            ("build-gid", "20".into()),
            ("build-arch", "AMD64".into()),
            ("build-os", "FreeBSD".into()),
        ]);
        let dict = sandbox_dict("e", &sandbox, &host()).unwrap();
        assert_eq!(
            to_canonical(&dict),
            r#"{"build-arch":"x86-64","build-gid":20,"build-os":"freebsd","build-uid":20}"#
        );
    }

    #[test]
    fn unknown_arch_is_an_error() {
        let sandbox = mapping(&[("build-arch", "vax".into())]);
        assert!(matches!(sandbox_dict("e", &sandbox, &host()), Err(CacheKeyError::UnknownArchitecture { .. })));
    }

    #[test]
    fn remote_apis_socket_flag_only_when_true() {
        let socket = mapping(&[("path", "/run/x".into()), ("action-cache-enable-update", "False".into())]);
        let dict = sandbox_dict("e", &mapping(&[("remote-apis-socket", socket)]), &host()).unwrap();
        assert_eq!(dict.get("remote-apis-socket"), Some(&mapping(&[("path", "/run/x".into())])));
        let socket = mapping(&[("path", "/run/x".into()), ("action-cache-enable-update", "true".into())]);
        let dict = sandbox_dict("e", &mapping(&[("remote-apis-socket", socket)]), &host()).unwrap();
        assert_eq!(
            to_canonical(dict.get("remote-apis-socket").unwrap()),
            r#"{"action-cache-enable-update":true,"path":"/run/x"}"#
        );
    }

    #[test]
    fn canonical_arch_names() {
        assert_eq!(canonicalize_arch("x86_64").as_deref(), Some("x86-64"));
        assert_eq!(canonicalize_arch("i686").as_deref(), Some("x86-32"));
        assert_eq!(canonicalize_arch("ppc64le").as_deref(), Some("power-isa-le"));
        assert_eq!(canonicalize_arch("riscv64").as_deref(), Some("rv64g"));
        assert_eq!(canonicalize_arch("loongarch64").as_deref(), Some("la64v100"));
        assert_eq!(canonicalize_arch("vax"), None);
    }
}
