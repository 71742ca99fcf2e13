//! [`PlatformMatcher`]: decides whether this worker can run an action with the
//! platform properties it asks for, and which sandbox options they select.
//!
//! Key decision: the worker serves a fixed set of `name=value` pairs (e.g.
//! `OSFamily=linux`, `ISA=x86-64`, from configuration). An action may ask
//! only for those, plus the properties the runner itself interprets:
//! `network` (`on`/`off`), `unixUID`/`unixGID` (only `0`, the uid the
//! sandbox maps), as BuildStream sends them. Following REAPI's platform
//! document, a property name the worker does not know is INVALID_ARGUMENT and
//! a known name with a value it does not serve is FAILED_PRECONDITION (no
//! worker available). Values compare case-insensitively (`Linux` = `linux`),
//! names exactly.

use std::collections::{BTreeMap, BTreeSet};

use weir_proto::reapi::Platform;

use super::ExecutionError;

/// Options an action's platform selects for its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunOptions {
    /// `network=on`: the command may use the network.
    pub network: bool,
}

/// The platform properties a worker serves.
#[derive(Debug, Clone, Default)]
pub struct PlatformMatcher {
    served: BTreeMap<String, BTreeSet<String>>,
}

impl PlatformMatcher {
    /// A matcher serving `properties` (a name may be given several times with
    /// different values).
    pub fn new(properties: &[(String, String)]) -> Self {
        let mut served: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, value) in properties {
            served.entry(name.clone()).or_default().insert(value.to_lowercase());
        }
        PlatformMatcher { served }
    }

    /// The served properties, for `Capabilities` and status pages.
    pub fn served(&self) -> impl Iterator<Item = (&str, &str)> {
        self.served.iter().flat_map(|(name, values)| values.iter().map(move |v| (name.as_str(), v.as_str())))
    }

    /// Checks `platform` and returns the run options it selects.
    pub fn check(&self, platform: Option<&Platform>) -> Result<RunOptions, ExecutionError> {
        let mut options = RunOptions::default();
        for property in platform.map(|p| p.properties.as_slice()).unwrap_or_default() {
            let value = property.value.to_lowercase();
            let unsupported = || {
                ExecutionError::FailedPrecondition(format!(
                    "no worker serves platform property {}={}",
                    property.name, property.value
                ))
            };
            match property.name.as_str() {
                "network" => match value.as_str() {
                    "on" | "true" | "1" | "yes" => options.network = true,
                    "off" | "false" | "0" | "no" | "" => options.network = false,
                    _ => return Err(unsupported()),
                },
                "unixUID" | "unixGID" => {
                    if value != "0" {
                        return Err(unsupported());
                    }
                }
                name => match self.served.get(name) {
                    None => {
                        return Err(ExecutionError::InvalidArgument(format!(
                            "unknown platform property {name:?} (this worker knows {})",
                            self.known_names()
                        )))
                    }
                    Some(values) if !values.contains(&value) => return Err(unsupported()),
                    Some(_) => {}
                },
            }
        }
        Ok(options)
    }

    /// A key naming the platform an action asks for (sorted `name=value`
    /// pairs), used to keep queue depths per platform.
    pub fn queue_key(platform: Option<&Platform>) -> String {
        let mut pairs: Vec<String> = platform
            .map(|p| p.properties.iter().map(|prop| format!("{}={}", prop.name, prop.value)).collect())
            .unwrap_or_default();
        pairs.sort();
        pairs.join(",")
    }

    fn known_names(&self) -> String {
        let mut names: Vec<&str> = self.served.keys().map(String::as_str).collect();
        names.extend(["network", "unixUID", "unixGID"]);
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::reapi::platform::Property;

    fn platform(pairs: &[(&str, &str)]) -> Platform {
        Platform { properties: pairs.iter().map(|(n, v)| Property { name: (*n).into(), value: (*v).into() }).collect() }
    }

    fn matcher() -> PlatformMatcher {
        PlatformMatcher::new(&[("OSFamily".into(), "linux".into()), ("ISA".into(), "x86-64".into())])
    }

    #[test]
    fn accepts_served_properties_and_runner_options() {
        let options = matcher().check(Some(&platform(&[("OSFamily", "Linux"), ("network", "on")]))).unwrap();
        assert!(options.network);
        assert_eq!(matcher().check(None).unwrap(), RunOptions::default());
        assert!(matcher().check(Some(&platform(&[("unixUID", "0")]))).is_ok());
    }

    #[test]
    fn refuses_unknown_names_and_unserved_values_with_reapi_codes() {
        let err = matcher().check(Some(&platform(&[("ISA", "aarch64")]))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        let err = matcher().check(Some(&platform(&[("container-image", "docker://x")]))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = matcher().check(Some(&platform(&[("unixUID", "1000")]))).unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }

    #[test]
    fn queue_keys_ignore_property_order() {
        let a = PlatformMatcher::queue_key(Some(&platform(&[("ISA", "x86-64"), ("OSFamily", "linux")])));
        let b = PlatformMatcher::queue_key(Some(&platform(&[("OSFamily", "linux"), ("ISA", "x86-64")])));
        assert_eq!(a, b);
    }
}
